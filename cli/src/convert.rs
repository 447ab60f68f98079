//! `xcmig convert`: carries an image between toolstacks by adding or
//! removing the layers around the libxc stream, and re-versions the libxc
//! stream (v2 <-> v3).
//!
//! ```text
//! xl file:      xl header (config) | libxl stream
//! libxl stream: header | LIBXC_CONTEXT | libxc stream | EMULATOR_* | END
//! libxc stream: headers | records ... | END
//! ```
//!
//! The input is read once, front to back, and checked as `xcmig verify`
//! checks it (the same readers, strict about reserved fields); each record is
//! written out as soon as it is read, so memory is bounded by the largest
//! record (a PAGE_DATA batch), never the image. A record read strictly
//! re-encodes to the same octets, so layers that are kept come out
//! byte-identical.
//!
//! What each layer change does:
//! - wrap in libxl: the records libxl 4.17 writes (libxl_stream_write.c):
//!   header, LIBXC_CONTEXT, the libxc stream, an EMULATOR_CONTEXT when
//!   `--emulator-record` gives the device model's save blob (HVM only), END.
//!   A checkpointed libxc stream gets a CHECKPOINT_END after each
//!   CHECKPOINT, as libxl's checkpoint loop writes it.
//! - wrap in xl: the header `xl save` writes (xl_saverestore.c): its magic,
//!   host byte order, mandatory flags STREAMv2 and JSON, and the config
//!   octets with their trailing NUL.
//! - unwrap: the xl header and the libxl records are dropped; the config and
//!   the EMULATOR_CONTEXT blob can be saved to files first.
//! - v2 -> v3: STATIC_DATA_END goes where Xen 4.17's saver writes it, after
//!   the static data (X86_PV_INFO for PV) and before everything else. The
//!   stream has no CPU policy records, so a 4.17 restorer does what it does
//!   for a v2 stream: libxl regenerates the CPUID policy from the config.
//! - v3 -> v2: STATIC_DATA_END is dropped (a v2 restorer infers it at the
//!   first PAGE_DATA). X86_CPUID_POLICY and X86_MSR_POLICY have no v2 form:
//!   the conversion is refused unless `--drop-cpu-policy` says to drop them,
//!   since the guest would then get the restoring host's policy instead of
//!   the one it ran with. What was dropped is listed on stderr.
//! - `--decompress`: every XCMIG_COMPRESSED_PAGE_DATA record (xcmig's
//!   extension, docs/compressed-page-data.md) becomes the PAGE_DATA record
//!   of the same entries and pages, so any restorer takes the stream; every
//!   page is checked as it is decompressed. `--compress lz4|zstd[:LEVEL]`
//!   does the reverse, a batch of at most 1024 entries per record (a
//!   longer PAGE_DATA is split); a batch in which no page shrinks stays
//!   PAGE_DATA, as xcmig's saver writes it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xcmig_stream::libxc::WarningKind;
use xcmig_stream::libxl::{
    self, emulator_id, EmulatorHeader, LibxlErrorKind, LibxlHeader, LibxlNext, LibxlRecord,
    LibxlWriter, LIBXL_OPT_LEGACY,
};
use xcmig_stream::nested::{LibxcStop, NestedReader, SharedInput, StartError};
use xcmig_stream::xl::{XlHeader, XlOptionalData, XL_MANDATORY_JSON};
use xcmig_stream::{
    data_pages, CompressedPages, Compression, DomainHeader, DomainType, Error as XcError,
    ErrorKind as XcErrorKind, ImageHeader, PageCompressor, PageDecompressor, PfnEntry, Reader,
    ReaderOptions, Record, StreamEnd, Version, Writer, WriterOptions, MAX_COMPRESSED_ENTRIES,
    PAGE_SIZE, ZSTD_DEFAULT_LEVEL, ZSTD_LEVELS,
};

use crate::staged::{is_stdio, Staged};
use crate::walk::{self, Format, LibxcCtx, WalkError};

/// Which device model an `--emulator-record` blob belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emulator {
    /// Upstream QEMU (`device_model_version="qemu-xen"`), libxl's default.
    QemuUpstream,
    /// qemu-xen-traditional.
    QemuTraditional,
}

/// The options of `xcmig convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input format (guessed from the first octets when absent).
    #[arg(long, value_enum)]
    pub from: Option<Format>,
    /// Output format (the input's when absent, e.g. to re-version only).
    #[arg(long, value_enum)]
    pub to: Option<Format>,
    /// libxc stream version to write: 2 or 3 (the input's when absent).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=3))]
    pub version: Option<u32>,
    /// The input; `-` or none reads stdin.
    #[arg(long, short = 'i', value_name = "IN")]
    pub input: Option<PathBuf>,
    /// The output; `-` or none writes stdout (refused on a terminal).
    #[arg(long, short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Wrapping a libxc stream: put this device-model save blob (e.g.
    /// QEMU's) in an EMULATOR_CONTEXT record after it (HVM only).
    #[arg(long, value_name = "FILE")]
    pub emulator_record: Option<PathBuf>,
    /// The emulator of --emulator-record.
    #[arg(long, value_enum, default_value = "qemu-upstream")]
    pub emulator: Emulator,
    /// Writing an xl file: the domain config, libxl JSON as `xl save`
    /// writes it (replaces the input's config when it has one).
    #[arg(long, value_name = "FILE")]
    pub xl_config: Option<PathBuf>,
    /// Save the blob of the input's EMULATOR_CONTEXT record to FILE.
    #[arg(long, value_name = "FILE")]
    pub extract_emulator: Option<PathBuf>,
    /// Save the domain config of the input's xl header to FILE (without
    /// the trailing NUL xl writes after JSON).
    #[arg(long, value_name = "FILE")]
    pub extract_config: Option<PathBuf>,
    /// v3 -> v2: drop X86_CPUID_POLICY and X86_MSR_POLICY (refused otherwise).
    #[arg(long)]
    pub drop_cpu_policy: bool,
    /// Write xcmig's compressed page data as standard PAGE_DATA, so that
    /// libxenguest (any restorer) takes the stream.
    #[arg(long, conflicts_with = "compress")]
    pub decompress: bool,
    /// Compress page data into xcmig's extension record: lz4, zstd or
    /// zstd:LEVEL (1-19). Only xcmig restores the result.
    #[arg(long, value_name = "lz4|zstd[:LEVEL]", value_parser = parse_compress)]
    pub compress: Option<(Compression, i32)>,
    /// Print nothing on success, and no warnings.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `--compress`'s value.
fn parse_compress(v: &str) -> Result<(Compression, i32), String> {
    let (name, level) = match v.split_once(':') {
        Some((n, l)) => (
            n,
            Some(
                l.parse::<i32>()
                    .map_err(|_| format!("zstd level {l:?} is not a number"))?,
            ),
        ),
        None => (v, None),
    };
    match (name, level) {
        ("lz4", None) => Ok((Compression::Lz4, 0)),
        ("zstd", None) => Ok((Compression::Zstd, ZSTD_DEFAULT_LEVEL)),
        ("zstd", Some(l)) if ZSTD_LEVELS.contains(&l) => Ok((Compression::Zstd, l)),
        ("zstd", Some(l)) => Err(format!("zstd level {l} is not in 1..=19")),
        _ => Err(format!("{v:?}: expected lz4, zstd or zstd:LEVEL")),
    }
}

/// What happens to page data on the way through.
enum Pages {
    /// Copied as it is, compressed or not.
    Keep,
    /// Compressed records become PAGE_DATA.
    Decompress,
    /// PAGE_DATA (and records of another compressor) is compressed.
    Compress(Box<PageCompressor>),
}

/// Why a conversion stopped.
#[derive(Debug)]
enum Fail {
    /// Options that do not fit together or the input (exit 2).
    Usage(String),
    /// The input breaks a rule, or cannot be expressed in the output
    /// (exit 1). One line: offset, record and rule.
    Invalid(String),
    /// Reading the input or writing an output failed (exit 3).
    Io(String),
}

impl From<WalkError> for Fail {
    fn from(e: WalkError) -> Self {
        if e.io {
            Fail::Io(e.line)
        } else {
            Fail::Invalid(e.line)
        }
    }
}

/// Counts octets written.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Sink = Counting<BufWriter<Box<dyn Write>>>;

/// Writes a whole small file (an extracted config or blob), staged.
fn stage_bytes(dest: &Path, bytes: &[u8]) -> Result<Staged, Fail> {
    let (staged, mut f) = Staged::create(dest).map_err(Fail::Io)?;
    f.write_all(bytes)
        .and_then(|_| f.flush())
        .map_err(|e| Fail::Io(format!("cannot write {}: {e}", staged.tmp.display())))?;
    Ok(staged)
}

fn read_file(what: &str, p: &Path) -> Result<Vec<u8>, Fail> {
    std::fs::read(p).map_err(|e| Fail::Io(format!("cannot read {what} {}: {e}", p.display())))
}

/// The config octets for an xl header from `--xl-config`: must be JSON,
/// and gets the trailing NUL xl writes when it lacks one.
fn xl_config_bytes(p: &Path) -> Result<Vec<u8>, Fail> {
    let mut c = read_file("--xl-config", p)?;
    let text = c.strip_suffix(&[0]).unwrap_or(&c);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(Fail::Usage(format!(
            "--xl-config {}: the config is empty",
            p.display()
        )));
    }
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(text) {
        return Err(Fail::Usage(format!(
            "--xl-config {}: not JSON ({e}); xl save files carry the libxl JSON of the domain \
             config (xl -j list DOMAIN, or --extract-config of a save file, gives it)",
            p.display()
        )));
    }
    if c.last() != Some(&0) {
        c.push(0);
    }
    Ok(c)
}

/// One layer of a stream, for messages: `xl`, `libxl v2`, `libxc v3`.
fn layer_names(format: Format, libxc: Version) -> String {
    let xc = format!("libxc v{}", libxc.number());
    match format {
        Format::Libxc => xc,
        Format::Libxl => format!("libxl v2 > {xc}"),
        Format::Xl => format!("xl > libxl v2 > {xc}"),
        Format::Xenstore => "xenstore".into(),
    }
}

fn has_libxl(f: Format) -> bool {
    matches!(f, Format::Libxl | Format::Xl)
}

/// The output side: the sink (held by the libxc writer while it exists),
/// the libxl header when the output has that layer, and what was changed.
struct Out {
    sink: Option<Sink>,
    xc: Option<Writer<Sink>>,
    libxl: Option<LibxlHeader>,
    /// libxc version to write (None: the input's).
    version: Option<Version>,
    drop_cpu_policy: bool,
    /// v2 -> v3: STATIC_DATA_END still to be inserted.
    pending_sde: bool,
    in_version: Option<Version>,
    dropped: BTreeMap<String, u64>,
    inserted: Vec<String>,
    libxc_records: u64,
    out_version: Option<Version>,
    warnings: u64,
    quiet: bool,
    pages: Pages,
    decompressor: PageDecompressor,
    /// Pages decompressed, and compressed pages made.
    scratch: Vec<u8>,
    packed: CompressedPages,
    entries: Vec<PfnEntry>,
    decompressed_records: u64,
    compressed_records: u64,
}

impl Out {
    fn sink(&mut self) -> &mut Sink {
        match (&mut self.sink, &mut self.xc) {
            (Some(s), _) => s,
            (None, Some(w)) => w.get_mut(),
            // The sink is always in one of the two places.
            (None, None) => unreachable!("output sink lost"),
        }
    }

    fn io(e: io::Error) -> Fail {
        Fail::Io(format!("cannot write the output: {e}"))
    }

    fn write_bytes(&mut self, b: &[u8]) -> Result<(), Fail> {
        self.sink().write_all(b).map_err(Self::io)
    }

    fn begin_libxl(&mut self, header: LibxlHeader) -> Result<(), Fail> {
        self.write_bytes(&header.to_bytes())?;
        self.libxl = Some(header);
        Ok(())
    }

    /// Writes `rec` to the libxl layer; false (nothing written) without one.
    fn libxl_record(&mut self, rec: &LibxlRecord) -> Result<bool, Fail> {
        let Some(h) = self.libxl else {
            return Ok(false);
        };
        LibxlWriter::resume(self.sink(), &h)
            .write_record(rec)
            .map_err(Self::io)?;
        Ok(true)
    }

    fn drop_note(&mut self, what: String) {
        *self.dropped.entry(what).or_default() += 1;
    }

    fn warn(&mut self, line: &str) {
        self.warnings += 1;
        if !self.quiet && self.warnings <= walk::MAX_WARNINGS {
            eprintln!("xcmig convert: warning: {line}");
        }
    }

    /// Writes the libxc headers, in the version asked for.
    fn start_libxc(&mut self, ih: &ImageHeader, dh: &DomainHeader) -> Result<(), Fail> {
        let version = self.version.unwrap_or(ih.version);
        self.pending_sde = ih.version == Version::V2 && version == Version::V3;
        self.out_version = Some(version);
        self.in_version = Some(ih.version);
        let options = WriterOptions {
            image: ImageHeader {
                version,
                endian: ih.endian,
            },
            ..WriterOptions::default()
        };
        let sink = self.sink.take().expect("sink before the libxc stream");
        let w = Writer::with_options(sink, dh, options)
            .map_err(|e| Fail::Io(format!("cannot write the output: {}", e.kind)))?;
        self.xc = Some(w);
        Ok(())
    }

    fn writer_error(&self, e: XcError) -> Fail {
        writer_error(self.out_version, e)
    }

    /// Copies one libxc record, applying the version change.
    fn libxc_record(&mut self, rec: &Record<'_>, at: u64, index: u64) -> Result<(), Fail> {
        let v2_out = self.out_version == Some(Version::V2);
        if v2_out {
            match rec {
                Record::StaticDataEnd => {
                    self.drop_note("STATIC_DATA_END (a v2 restorer infers it)".into());
                    return Ok(());
                }
                Record::X86CpuidPolicy(_) | Record::X86MsrPolicy(_) => {
                    let name = rec.record_type().name();
                    if !self.drop_cpu_policy {
                        return Err(Fail::Invalid(format!(
                            "offset {at}, libxc record #{index} {name}: no libxc v2 equivalent: a v2 \
                             restorer would give the guest the restoring host's default CPU policy \
                             (libxl regenerates CPUID from the config) instead of the one it ran \
                             with; pass --drop-cpu-policy to accept that"
                        )));
                    }
                    let n = match rec {
                        Record::X86CpuidPolicy(a) => format!("{} leaves", a.len()),
                        Record::X86MsrPolicy(a) => format!("{} MSRs", a.len()),
                        _ => String::new(),
                    };
                    self.drop_note(format!("{name} ({n})"));
                    return Ok(());
                }
                _ => {}
            }
        }
        let w = self.xc.as_mut().expect("libxc writer started");
        if self.pending_sde && !matches!(rec, Record::X86PvInfo(_) | Record::Optional { .. }) {
            self.pending_sde = false;
            w.write_static_data_end()
                .map_err(|e| self.writer_error(e))?;
            self.inserted.push(format!(
                "STATIC_DATA_END before libxc record #{index} {}",
                rec.record_type().name()
            ));
            self.libxc_records += 1;
        }
        match (rec, &self.pages) {
            (Record::CompressedPageData(c), Pages::Decompress) => {
                c.decompress_all(&mut self.decompressor, &mut self.scratch)
                    .map_err(|k| page_error(at, index, &k))?;
                let w = self.xc.as_mut().expect("libxc writer started");
                w.write_page_data(c.entries(), &[&self.scratch])
                    .map_err(|e| self.writer_error(e))?;
                self.decompressed_records += 1;
                self.libxc_records += 1;
                return Ok(());
            }
            (Record::CompressedPageData(c), Pages::Compress(pc))
                if c.compression() != pc.compression() =>
            {
                let mut data = Vec::new();
                c.decompress_all(&mut self.decompressor, &mut data)
                    .map_err(|k| page_error(at, index, &k))?;
                self.decompressed_records += 1;
                return self.compress_pages(c.entries(), &data);
            }
            (Record::PageData(pd), Pages::Compress(_)) => {
                return self.compress_pages(pd.entries(), pd.data());
            }
            _ => {}
        }
        let w = self.xc.as_mut().expect("libxc writer started");
        w.write_record(rec).map_err(|e| self.writer_error(e))?;
        self.libxc_records += 1;
        Ok(())
    }

    /// Writes `entries` and their `data` compressed, at most a batch per
    /// record; a batch in which no page shrinks goes as PAGE_DATA.
    fn compress_pages(&mut self, entries: &[PfnEntry], data: &[u8]) -> Result<(), Fail> {
        let out_version = self.out_version;
        let Pages::Compress(pc) = &mut self.pages else {
            return Err(internal(0));
        };
        let mut off = 0;
        for chunk in entries.chunks(MAX_COMPRESSED_ENTRIES as usize) {
            let n = data_pages(chunk) * PAGE_SIZE;
            let pages = &data[off..off + n];
            off += n;
            self.packed.clear();
            pc.push_pages(pages, &mut self.packed)
                .map_err(|e| Fail::Invalid(format!("compressing pages: {e}")))?;
            let compression = pc.compression();
            let shrank = self.packed.stored_pages() < self.packed.sizes.len();
            self.entries.clear();
            self.entries.extend_from_slice(chunk);
            let w = self.xc.as_mut().expect("libxc writer started");
            let res = if shrank {
                w.write_compressed_page_data(&self.entries, compression, &self.packed)
            } else {
                w.write_page_data(&self.entries, &[pages])
            };
            res.map_err(|e| writer_error(out_version, e))?;
            self.compressed_records += u64::from(shrank);
            self.libxc_records += 1;
        }
        Ok(())
    }

    /// Flushes and gives the output back.
    fn finish(mut self) -> Result<(Sink, Report), Fail> {
        let mut sink = match (self.sink.take(), self.xc.take()) {
            (Some(s), _) => s,
            (None, Some(w)) => w.into_inner(),
            (None, None) => unreachable!("output sink lost"),
        };
        sink.flush().map_err(Self::io)?;
        Ok((
            sink,
            Report {
                dropped: self.dropped,
                inserted: self.inserted,
                libxc_records: self.libxc_records,
                decompressed_records: self.decompressed_records,
                compressed_records: self.compressed_records,
                in_version: self.in_version,
                out_version: self.out_version,
            },
        ))
    }
}

/// A writer error as the conversion reports it.
fn writer_error(out_version: Option<Version>, e: XcError) -> Fail {
    if let XcErrorKind::Io { .. } = e.kind {
        return Fail::Io(format!("cannot write the output: {}", e.kind));
    }
    let place = match (e.record_index, e.record_type) {
        (Some(i), Some(t)) => format!("record #{i} {t}"),
        _ => "stream".into(),
    };
    Fail::Invalid(format!(
        "cannot write a valid libxc v{} stream: output {place}: {} (the record order of the \
         input has no equivalent in that version)",
        out_version.map_or(3, Version::number),
        e.kind
    ))
}

/// What a conversion changed, for the summary line.
struct Report {
    dropped: BTreeMap<String, u64>,
    inserted: Vec<String>,
    libxc_records: u64,
    decompressed_records: u64,
    compressed_records: u64,
    in_version: Option<Version>,
    out_version: Option<Version>,
}

/// A compressed page of the input that does not decompress.
fn page_error(at: u64, index: u64, k: &XcErrorKind) -> Fail {
    Fail::Invalid(format!(
        "offset {at}, libxc record #{index} XCMIG_COMPRESSED_PAGE_DATA: {k}"
    ))
}

/// What was taken out of the input for `--extract-*`.
#[derive(Default)]
struct Extracted {
    config: Option<Vec<u8>>,
    emulator: Option<(EmulatorHeader, Vec<u8>)>,
}

/// Copies libxc records until END, EOF after a checkpoint or (when
/// `stop_at_checkpoint`) a CHECKPOINT record.
fn copy_libxc<R: Read>(
    xc: &mut Reader<R>,
    ctx: LibxcCtx,
    out: &mut Out,
    stop_at_checkpoint: bool,
) -> Result<LibxcStop, Fail> {
    loop {
        let at = xc.offset();
        let index = xc.records_read();
        let stop = {
            let rec = xc.next_record().map_err(|e| walk::xc_error(&e, ctx))?;
            let Some(rec) = rec else {
                return Ok(match xc.end() {
                    Some(StreamEnd::EofAfterCheckpoint) => LibxcStop::EofAfterCheckpoint,
                    _ => LibxcStop::End,
                });
            };
            let stop = match rec {
                Record::End => Some(LibxcStop::End),
                Record::Checkpoint if stop_at_checkpoint => Some(LibxcStop::Checkpoint),
                _ => None,
            };
            out.libxc_record(&rec, at, index)?;
            stop
        };
        for w in xc.take_warnings() {
            // Decompressing is what the extension's warning asks for.
            let expected =
                w.kind == WarningKind::XcmigExtension && matches!(out.pages, Pages::Decompress);
            if !expected && !walk::is_stock_libxenguest_deviation(&w.kind) {
                out.warn(&walk::xc_warning(&w));
            }
        }
        if let Some(s) = stop {
            return Ok(s);
        }
    }
}

fn emulator_summary(emulator: &EmulatorHeader, len: usize) -> String {
    format!(
        "{} #{}, {len} octets",
        libxl::emulator_name(emulator.id),
        emulator.index
    )
}

/// The config octets `--extract-config` saves: without the NUL xl puts
/// after JSON (so the file is plain JSON text, and `--xl-config` adds the
/// NUL back).
fn config_to_extract(h: &XlHeader) -> Option<Vec<u8>> {
    let c = h.config()?;
    let c = if h.config_json() {
        c.strip_suffix(&[0]).unwrap_or(c)
    } else {
        c
    };
    Some(c.to_vec())
}

/// The xl header to write: the input's (its config replaced by
/// `--xl-config` if given) or the one `xl save` writes around `config`.
fn xl_header_out(input: Option<&XlHeader>, config: Option<Vec<u8>>) -> XlHeader {
    match (input, config) {
        (Some(h), None) => h.clone(),
        (Some(h), Some(c)) => {
            let mut h = h.clone();
            h.mandatory_flags |= XL_MANDATORY_JSON;
            let tail = h.optional.take().map(|o| o.tail).unwrap_or_default();
            h.optional = Some(XlOptionalData { config: c, tail });
            h
        }
        (None, c) => XlHeader::new_json(c.unwrap_or_default()),
    }
}

/// The conversion proper (options already checked against the formats).
fn convert<R: Read>(
    args: &Args,
    from: Format,
    to: Format,
    xl_config: Option<Vec<u8>>,
    input: R,
    out: &mut Out,
    ex: &mut Extracted,
) -> Result<(), Fail> {
    let cell = RefCell::new(input);
    let shared = SharedInput::new(&cell);
    if from == Format::Libxc {
        return convert_libxc(args, to, xl_config, shared, out);
    }
    let mut start = 0;
    let mut xl_in = None;
    if from == Format::Xl {
        let mut r = shared.clone();
        let h = XlHeader::read_from(&mut r).map_err(WalkError::from)?;
        for w in h.warnings() {
            out.warn(&format!("offset 0, xl header: {w}"));
        }
        if !h.stream_v2() {
            return Err(Fail::Invalid(format!(
                "offset 36, xl header: mandatory flag STREAMv2 (bit 1) clear: a legacy pre-Xen-4.6 \
                 stream follows, which convert does not read (flags {:#x})",
                h.mandatory_flags
            )));
        }
        if args.extract_config.is_some() {
            ex.config = Some(config_to_extract(&h).ok_or_else(|| {
                Fail::Invalid(
                    "offset 44, xl header: --extract-config: optional_data_len is 0, the file \
                     carries no config"
                        .into(),
                )
            })?);
        }
        start = h.encoded_len();
        xl_in = Some(h);
    }
    if to == Format::Xl {
        let h = xl_header_out(xl_in.as_ref(), xl_config);
        out.write_bytes(&h.to_bytes().map_err(Out::io)?)?;
    }
    let mut n = NestedReader::new(shared, start).map_err(WalkError::from)?;
    if has_libxl(to) {
        out.begin_libxl(*n.libxl().header())?;
    }
    let mut ctx = LibxcCtx { start: 0 };
    loop {
        for w in n.take_libxl_warnings() {
            out.warn(&w.to_string());
        }
        let (pos, rec) = match n.next_record() {
            Ok(r) => r,
            Err(e) if e.kind == LibxlErrorKind::MissingEnd => {
                let why = if n.grammar().in_checkpoint() {
                    "input ends inside a checkpoint, before CHECKPOINT_END"
                } else {
                    "input ends before the libxl END record"
                };
                return Err(Fail::Invalid(format!(
                    "offset {}, libxl record #{}: truncated: {why}",
                    e.offset,
                    n.libxl().records_read()
                )));
            }
            Err(e) => return Err(WalkError::from(e).into()),
        };
        let next = n.check(pos, &rec).map_err(WalkError::from)?;
        if let LibxlRecord::EmulatorContext { emulator, blob } = &rec {
            if args.extract_emulator.is_some() {
                if let Some((first, b)) = &ex.emulator {
                    return Err(Fail::Invalid(format!(
                        "offset {}, libxl record #{} EMULATOR_CONTEXT: --extract-emulator: a second \
                         emulator context ({}; the first was {}): only a stream with exactly one \
                         can be extracted",
                        pos.offset,
                        pos.index,
                        emulator_summary(emulator, blob.len()),
                        emulator_summary(first, b.len())
                    )));
                }
                ex.emulator = Some((*emulator, blob.clone()));
            }
        }
        if !out.libxl_record(&rec)? {
            let name = libxl::record_type_name(rec.rtype());
            match &rec {
                LibxlRecord::EmulatorContext { emulator, blob } => {
                    let how = if args.extract_emulator.is_some() {
                        ", extracted"
                    } else {
                        ""
                    };
                    out.drop_note(format!(
                        "libxl {name} ({}{how})",
                        emulator_summary(emulator, blob.len())
                    ));
                }
                LibxlRecord::EmulatorXenstoreData { emulator, .. } => out.drop_note(format!(
                    "libxl {name} ({} #{}, {} keys)",
                    libxl::emulator_name(emulator.id),
                    emulator.index,
                    rec.xenstore_pairs().len()
                )),
                LibxlRecord::Optional { body, .. } => {
                    out.drop_note(format!("libxl {name} ({} octets)", body.len()))
                }
                LibxlRecord::CheckpointState { .. } => out.drop_note(format!("libxl {name}")),
                LibxlRecord::End | LibxlRecord::LibxcContext | LibxlRecord::CheckpointEnd => {}
            }
        }
        match next {
            LibxlNext::LibxlRecord => continue,
            LibxlNext::Done => {
                for w in n.take_libxl_warnings() {
                    out.warn(&w.to_string());
                }
                walk::expect_eof(n.input(), n.offset(), "libxl stream")?;
                return Ok(());
            }
            LibxlNext::StartLibxc => {
                ctx = LibxcCtx { start: n.offset() };
                match n.start_libxc(ReaderOptions::default()) {
                    Ok(()) => {}
                    Err(StartError::Libxc(e)) => return Err(walk::xc_error(&e, ctx).into()),
                    Err(StartError::Libxl(e)) => return Err(WalkError::from(e).into()),
                }
                let r = n.libxc().ok_or_else(|| internal(pos.offset))?;
                let (ih, dh) = (*r.image_header(), *r.domain_header());
                out.start_libxc(&ih, &dh)?;
            }
            LibxlNext::ResumeLibxc => {
                n.resume_libxc().ok_or_else(|| internal(pos.offset))?;
            }
        }
        let r = n.libxc_mut().ok_or_else(|| internal(pos.offset))?;
        copy_libxc(r, ctx, out, true)?;
        if n.libxc_stopped() == Some(LibxcStop::EofAfterCheckpoint) {
            for w in n.take_libxl_warnings() {
                out.warn(&w.to_string());
            }
            return Ok(());
        }
    }
}

/// A state the libxl grammar rules out; reported, never a panic.
fn internal(offset: u64) -> Fail {
    Fail::Invalid(format!(
        "offset {offset}, libxl stream: internal error: libxc reader missing"
    ))
}

/// Converts a bare libxc stream (wrapping it when `to` has layers).
fn convert_libxc<R: Read>(
    args: &Args,
    to: Format,
    xl_config: Option<Vec<u8>>,
    shared: SharedInput<'_, R>,
    out: &mut Out,
) -> Result<(), Fail> {
    let ctx = LibxcCtx { start: 0 };
    let mut xc = Reader::with_options(shared, ReaderOptions::default())
        .map_err(|e| walk::xc_error(&e, ctx))?;
    let (ih, dh) = (*xc.image_header(), *xc.domain_header());
    let emulator =
        match &args.emulator_record {
            None => None,
            Some(_) if dh.domain_type == DomainType::X86Pv => return Err(Fail::Usage(
                "--emulator-record: the libxc stream is of a PV guest, which has no device model \
                 (libxl writes EMULATOR_CONTEXT for HVM guests only)"
                    .into(),
            )),
            Some(p) => {
                let blob = read_file("--emulator-record", p)?;
                let id = match args.emulator {
                    Emulator::QemuUpstream => emulator_id::QEMU_UPSTREAM,
                    Emulator::QemuTraditional => emulator_id::QEMU_TRADITIONAL,
                };
                Some(LibxlRecord::EmulatorContext {
                    emulator: EmulatorHeader { id, index: 0 },
                    blob,
                })
            }
        };
    if to == Format::Xl {
        let h = xl_header_out(None, xl_config);
        out.write_bytes(&h.to_bytes().map_err(Out::io)?)?;
    }
    if has_libxl(to) {
        let mut h = LibxlHeader::new();
        // convert-legacy-stream marks both layers of a converted image.
        if dh.is_legacy_converted() {
            h.options |= LIBXL_OPT_LEGACY;
        }
        out.begin_libxl(h)?;
        out.libxl_record(&LibxlRecord::LibxcContext)?;
    }
    out.start_libxc(&ih, &dh)?;
    let ended = loop {
        match copy_libxc(&mut xc, ctx, out, has_libxl(to))? {
            LibxcStop::End => break true,
            LibxcStop::EofAfterCheckpoint => break false,
            LibxcStop::Checkpoint => {
                if emulator.is_some() {
                    return Err(Fail::Usage(format!(
                        "--emulator-record: the libxc stream is checkpointed (CHECKPOINT at offset \
                         {}), and libxl writes the emulator state once per checkpoint: one blob \
                         cannot stand for them",
                        xc.offset() - 8
                    )));
                }
                out.libxl_record(&LibxlRecord::CheckpointEnd)?;
            }
        }
    };
    for w in xc.take_warnings() {
        if !walk::is_stock_libxenguest_deviation(&w.kind) {
            out.warn(&walk::xc_warning(&w));
        }
    }
    if ended {
        xc.expect_eof().map_err(|e| {
            let mut w = walk::xc_error(&e, ctx);
            w.line = format!(
                "offset {}, libxc stream: data after the END record",
                e.offset
            );
            Fail::from(w)
        })?;
        if let Some(rec) = &emulator {
            out.libxl_record(rec)?;
        }
        out.libxl_record(&LibxlRecord::End)?;
    }
    Ok(())
}

/// Checks the options against the formats; the usage error if they clash.
fn check_options(args: &Args, from: Format, to: Format) -> Result<(), Fail> {
    let usage = |s: &str| Err(Fail::Usage(s.to_string()));
    if from == Format::Xenstore || to == Format::Xenstore {
        return usage(
            "a xenstore stream holds no domain image: convert carries libxc, libxl and xl images",
        );
    }
    if args.emulator_record.is_some() && !(from == Format::Libxc && has_libxl(to)) {
        return usage(if from != Format::Libxc {
            "--emulator-record: the input already has its libxl layer (and its emulator records); \
             it only applies when wrapping a bare libxc stream"
        } else {
            "--emulator-record: the output has no libxl layer to carry it (use --to libxl or --to xl)"
        });
    }
    if args.xl_config.is_some() && to != Format::Xl {
        return usage("--xl-config: the output is not an xl file (use --to xl)");
    }
    if to == Format::Xl && from != Format::Xl && args.xl_config.is_none() {
        return usage(
            "--to xl: an xl save file carries the domain config; give it with --xl-config FILE \
             (libxl JSON)",
        );
    }
    if args.extract_emulator.is_some() && !has_libxl(from) {
        return usage("--extract-emulator: the input has no libxl layer, so no emulator record");
    }
    if args.extract_config.is_some() && from != Format::Xl {
        return usage("--extract-config: the input has no xl header, so no config");
    }
    for (name, p) in [
        ("--extract-emulator", &args.extract_emulator),
        ("--extract-config", &args.extract_config),
    ] {
        if p.as_deref().is_some_and(is_stdio) {
            return usage(&format!(
                "{name}: give a file name (- is the stream's own stdio)"
            ));
        }
    }
    Ok(())
}

/// The summary printed to stderr on success.
fn summary(
    from: Format,
    to: Format,
    report: &Report,
    written: u64,
    extracted: &[String],
) -> String {
    let mut s = String::new();
    let (vin, vout) = (
        report.in_version.unwrap_or(Version::V3),
        report.out_version.unwrap_or(Version::V3),
    );
    let _ = writeln!(
        s,
        "xcmig convert: {} -> {}: {}, {} written",
        layer_names(from, vin),
        layer_names(to, vout),
        crate::plural(report.libxc_records, "libxc record", "libxc records"),
        crate::plural(written, "octet", "octets"),
    );
    if report.decompressed_records > 0 {
        let _ = writeln!(
            s,
            "  decompressed: {}",
            crate::plural(
                report.decompressed_records,
                "XCMIG_COMPRESSED_PAGE_DATA record",
                "XCMIG_COMPRESSED_PAGE_DATA records"
            )
        );
    }
    if report.compressed_records > 0 {
        let _ = writeln!(
            s,
            "  compressed: {} (only xcmig restores this stream; --decompress undoes it)",
            crate::plural(
                report.compressed_records,
                "XCMIG_COMPRESSED_PAGE_DATA record",
                "XCMIG_COMPRESSED_PAGE_DATA records"
            )
        );
    }
    for i in &report.inserted {
        let _ = writeln!(s, "  inserted: {i}");
    }
    for (what, n) in &report.dropped {
        let _ = writeln!(s, "  dropped: {n} x {what}");
    }
    for e in extracted {
        let _ = writeln!(s, "  extracted: {e}");
    }
    s
}

fn fail_code(f: Fail) -> ExitCode {
    let (line, code) = match f {
        Fail::Usage(l) => (l, crate::EXIT_USAGE),
        Fail::Invalid(l) => (l, crate::EXIT_INVALID),
        Fail::Io(l) => (l, crate::EXIT_IO),
    };
    eprintln!("xcmig convert: {line}");
    ExitCode::from(code)
}

/// `xcmig convert`.
pub fn run(args: Args) -> ExitCode {
    match run_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail_code(f),
    }
}

fn run_inner(args: &Args) -> Result<(), Fail> {
    let in_path = args.input.clone().unwrap_or_else(|| PathBuf::from("-"));
    let out_path = args.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    if is_stdio(&in_path) && io::stdin().is_terminal() {
        return Err(Fail::Usage(
            "no input given and stdin is a terminal; name one with -i IN, or pipe one in".into(),
        ));
    }
    if is_stdio(&out_path) && io::stdout().is_terminal() {
        return Err(Fail::Usage(
            "no output given and stdout is a terminal; name one with -o OUT, or redirect stdout"
                .into(),
        ));
    }
    let src = crate::input::open(&in_path)
        .map_err(|e| Fail::Io(format!("cannot open {}: {e}", in_path.display())))?;
    let (guessed, inp) = crate::input::detect(src)
        .map_err(|e| Fail::Io(format!("cannot read {}: {e}", in_path.display())))?;
    let from = args.from.unwrap_or(guessed);
    let to = args.to.unwrap_or(from);
    check_options(args, from, to)?;
    let xl_config = args.xl_config.as_deref().map(xl_config_bytes).transpose()?;
    if !is_stdio(&in_path) && !is_stdio(&out_path) {
        if let (Ok(a), Ok(b)) = (in_path.canonicalize(), out_path.canonicalize()) {
            if a == b {
                return Err(Fail::Usage(format!(
                    "{}: the output is the input; write elsewhere and rename",
                    out_path.display()
                )));
            }
        }
    }
    let (staged, dest): (Option<Staged>, Box<dyn Write>) = if is_stdio(&out_path) {
        (None, Box::new(io::stdout().lock()))
    } else {
        let (s, f) = Staged::create(&out_path).map_err(Fail::Io)?;
        (Some(s), Box::new(f))
    };
    let mut out = Out {
        sink: Some(Counting {
            inner: BufWriter::with_capacity(1 << 20, dest),
            written: 0,
        }),
        xc: None,
        libxl: None,
        version: args.version.and_then(Version::from_number),
        drop_cpu_policy: args.drop_cpu_policy,
        pending_sde: false,
        dropped: BTreeMap::new(),
        inserted: Vec::new(),
        libxc_records: 0,
        in_version: None,
        out_version: None,
        warnings: 0,
        quiet: args.quiet,
        pages: match args.compress {
            Some((c, level)) => Pages::Compress(Box::new(
                PageCompressor::new(c, level)
                    .map_err(|e| Fail::Usage(format!("--compress: {e}")))?,
            )),
            None if args.decompress => Pages::Decompress,
            None => Pages::Keep,
        },
        decompressor: PageDecompressor::new(),
        scratch: Vec::new(),
        packed: CompressedPages::default(),
        entries: Vec::new(),
        decompressed_records: 0,
        compressed_records: 0,
    };
    let mut ex = Extracted::default();
    convert(args, from, to, xl_config, inp, &mut out, &mut ex)?;
    let warnings = out.warnings;
    let (sink, report) = out.finish()?;
    let written = sink.written;
    drop(sink);
    let mut extracted = Vec::new();
    let mut commits = Vec::new();
    if let Some(p) = &args.extract_config {
        let c = ex.config.as_deref().unwrap_or_default();
        commits.push(stage_bytes(p, c)?);
        extracted.push(format!("config, {} octets, to {}", c.len(), p.display()));
    }
    if let Some(p) = &args.extract_emulator {
        let Some((emu, blob)) = &ex.emulator else {
            return Err(Fail::Invalid(
                "--extract-emulator: the input has no EMULATOR_CONTEXT record (a PV guest, or a \
                 stream saved without a device model)"
                    .into(),
            ));
        };
        commits.push(stage_bytes(p, blob)?);
        extracted.push(format!(
            "EMULATOR_CONTEXT blob ({}) to {}",
            emulator_summary(emu, blob.len()),
            p.display()
        ));
    }
    for c in commits {
        c.commit().map_err(Fail::Io)?;
    }
    if let Some(s) = staged {
        s.commit().map_err(Fail::Io)?;
    }
    if !args.quiet {
        let mut s = summary(from, to, &report, written, &extracted);
        if warnings > walk::MAX_WARNINGS {
            let _ = writeln!(
                s,
                "  {} further warnings not shown",
                warnings - walk::MAX_WARNINGS
            );
        }
        eprint!("{s}");
    }
    Ok(())
}
