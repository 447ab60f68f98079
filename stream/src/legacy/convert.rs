//! Legacy image → v2/v3 stream, one part at a time (memory does not grow
//! with the image).
//!
//! The output is what Debian's `convert-legacy-stream` (Xen 4.17) writes
//! for the same input, octet for octet, where that tool is right:
//!
//! - libxc layer: image header (v3, or v2), domain header (Xen "0.1", the
//!   mark of a converted image), PV: X86_PV_INFO; STATIC_DATA_END (v3);
//!   PV: X86_PV_P2M_FRAMES; then in body order PAGE_DATA for every batch
//!   (entry types moved to bits 60-63) and X86_TSC_INFO; at the body's end
//!   one HVM_PARAMS with the HVM chunks' parameters in their order; HVM:
//!   HVM_PARAMS of the three magic pfns, HVM_CONTEXT; PV: per vCPU
//!   X86_PV_VCPU_BASIC/_EXTENDED/_XSAVE, SHARED_INFO; END.
//! - libxl layer (`--format libxl`): header with the legacy option bit,
//!   LIBXC_CONTEXT, the libxc stream, EMULATOR_XENSTORE_DATA with libxl's
//!   QEMU physmap from the TOOLSTACK chunk, EMULATOR_CONTEXT with the
//!   device model record (emulator id "unknown"), END.
//! - an `xl` header in front is copied with its "stream v2" flag set.
//!
//! Where it departs from that tool (each one a case the tool gets wrong or
//! refuses for no reason): a batch whose entries are all filler writes no
//! record (the tool writes a PAGE_DATA with count 0, which the spec
//! forbids); an HVM image without the device model record converts (the
//! tool needs `--skip-qemu`); octets after the image are an error (the
//! tool stops reading and reports success); a 64-bit entry with bits
//! 32-63 set, a reserved page type, a pfn not below `p2m_size` or an empty
//! body are errors (the tool writes them on, or writes a stream without
//! pages); unknown extended-info blocks are skipped as Xen's restorer
//! skips them (the tool refuses); a libxl physmap entry without a name is
//! carried without its name key (the tool refuses); the
//! "RemusDeviceModelState" signature is accepted like
//! "DeviceModelRecord0002", and xend's (and libxl 4.0's)
//! "QemuDeviceModelRecord", whose data runs to the end of the file, is
//! carried too (the tool refuses both); an xend file ("LinuxGuestRecord")
//! converts, its SXP config dropped with a note; each vCPU's xsave block is
//! read at its own size (the tool asserts they all have vCPU 0's, and
//! Xen's own restorer misreads such an image); `--xl` with the libxc
//! format is refused (an `xl` file holds a libxl stream).

use std::io::{self, Read, Write};

use super::error::{LegacyError, LegacyErrorKind};
use super::reader::{Chunk, DeviceModel, Item, LegacyReader};
use super::{
    Guest, Width, HVM_PARAM_BUFIOREQ_PFN, HVM_PARAM_IOREQ_PFN, HVM_PARAM_STORE_PFN, MAX_BLOB,
    XEND_SIGNATURE,
};
use crate::libxc::{
    DomainHeader, DomainType, Error, GrammarOptions, HvmParam, ImageHeader, PfnEntry, VcpuKind,
    Version, Writer, WriterOptions, X86PvInfo,
};
use crate::libxl::{rec_type, LibxlHeader, LIBXL_OPT_LEGACY};
use crate::wire::{padded_len, Endian};
use crate::xl::{XlHeader, XL_MANDATORY_STREAM_V2};

/// The stream to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A bare libxc stream (what `xc_domain_restore` reads).
    Libxc,
    /// A libxl stream around it (what libxl reads after an `xl` header).
    Libxl,
}

/// What follows the image's libxc part in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    /// The input is a whole image: an HVM image may end with the device
    /// model record, and nothing may follow.
    Image,
    /// Stop right after the libxc part and leave the rest unread (a
    /// toolstack's fd, where the device model record is the caller's).
    Stop,
}

/// How to convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    /// The saving toolstack's word size.
    pub width: Width,
    /// The guest kind.
    pub guest: Guest,
    /// Output layers.
    pub format: OutputFormat,
    /// libxc stream version to write (2 or 3).
    pub version: Version,
    /// The input starts with an `xl` save-file header.
    pub xl: bool,
    /// What may follow the libxc part.
    pub trailer: Trailer,
}

/// What was converted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertSummary {
    /// The image's p2m size.
    pub p2m_size: u64,
    /// Page batches read.
    pub batches: u64,
    /// Pages of data written.
    pub pages: u64,
    /// vCPUs (PV tail).
    pub vcpus: u64,
    /// Octets of the device model record's data carried.
    pub device_model: Option<u64>,
    /// Octets read.
    pub input_octets: u64,
    /// Octets written.
    pub output_octets: u64,
    /// What was dropped or noticed on the way, one line each.
    pub notes: Vec<String>,
}

/// Counts the octets that go through.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Converts the legacy image on `input` into a stream on `output`.
pub fn convert<R: Read, W: Write>(
    mut input: R,
    output: W,
    opts: &ConvertOptions,
) -> Result<ConvertSummary, LegacyError> {
    let mut out = Counting {
        inner: output,
        n: 0,
    };
    let mut start = 0;
    if opts.xl {
        if opts.format == OutputFormat::Libxc {
            return Err(LegacyError::new(
                0,
                "options",
                LegacyErrorKind::Usage(
                    "an xl save file holds a libxl stream: convert with --format libxl, or drop \
                     --xl to convert an image without its xl header"
                        .into(),
                ),
            ));
        }
        let mut hdr = XlHeader::read_from(&mut input).map_err(|e| {
            LegacyError::new(
                e.offset,
                "xl header",
                LegacyErrorKind::Usage(e.kind.to_string()),
            )
        })?;
        start = hdr.encoded_len();
        if hdr.stream_v2() {
            return Err(LegacyError::new(
                36,
                "xl header",
                LegacyErrorKind::Usage(
                    "the xl header says a v2 stream follows: this is not a legacy image".into(),
                ),
            ));
        }
        hdr.mandatory_flags |= XL_MANDATORY_STREAM_V2;
        hdr.write_to(&mut out)
            .map_err(|e| LegacyError::io(0, "output", &e))?;
    }
    // An xend file: its header and SXP config, which no v2 layer carries.
    let mut head = Vec::with_capacity(XEND_SIGNATURE.len());
    (&mut input)
        .take(XEND_SIGNATURE.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| LegacyError::io(start, "input", &e))?;
    let mut notes = Vec::new();
    let mut input: Box<dyn Read + '_> = if !opts.xl && head == XEND_SIGNATURE {
        let mut len = [0u8; 4];
        crate::input::read_upto(&mut input, &mut len)
            .map_err(|e| LegacyError::io(16, "xend header", &e))
            .and_then(|n| {
                if n < 4 {
                    Err(LegacyError::new(
                        16 + n as u64,
                        "xend header",
                        LegacyErrorKind::Truncated {
                            what: "the config length",
                        },
                    ))
                } else {
                    Ok(())
                }
            })?;
        let len = u32::from_be_bytes(len);
        if len > MAX_BLOB {
            return Err(LegacyError::new(
                16,
                "xend header",
                LegacyErrorKind::BadLength {
                    what: "xend config length",
                    len: u64::from(len),
                },
            ));
        }
        let got = io::copy(&mut (&mut input).take(u64::from(len)), &mut io::sink())
            .map_err(|e| LegacyError::io(20, "xend header", &e))?;
        if got < u64::from(len) {
            return Err(LegacyError::new(
                20 + got,
                "xend header",
                LegacyErrorKind::Truncated { what: "the config" },
            ));
        }
        start = 20 + got;
        notes.push(format!(
            "an xend save file: dropped its header and {len} octets of SXP config (no v2 \
             layer carries it; recreate the guest's config for xl)"
        ));
        Box::new(input)
    } else {
        Box::new(io::Cursor::new(head).chain(input))
    };
    if opts.format == OutputFormat::Libxl {
        let hdr = LibxlHeader {
            options: LIBXL_OPT_LEGACY,
            ..LibxlHeader::new()
        };
        out.write_all(&hdr.to_bytes())
            .and_then(|()| libxl_record(&mut out, rec_type::LIBXC_CONTEXT, &[]))
            .map_err(|e| LegacyError::io(start, "output", &e))?;
    }
    let mut stream = Converted::new(
        LegacyReader::new(&mut input, opts.width, opts.guest, start),
        opts,
    );
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(stream
                    .take_error()
                    .unwrap_or_else(|| LegacyError::io(stream.reader.offset(), "input", &e)))
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| LegacyError::io(stream.reader.offset(), "output", &e))?;
    }
    let (mut reader, mut summary, xenstore) = stream.into_parts();
    summary.notes.splice(0..0, notes);
    let ioerr = |at: u64| move |e: io::Error| LegacyError::io(at, "output", &e);
    if opts.format == OutputFormat::Libxl && !xenstore.is_empty() {
        let mut body = emulator_header();
        body.extend_from_slice(&xenstore);
        libxl_record(&mut out, rec_type::EMULATOR_XENSTORE_DATA, &body)
            .map_err(ioerr(reader.offset()))?;
    }
    if opts.guest == Guest::Hvm && opts.trailer == Trailer::Image {
        if let Some(dm) = reader.device_model()? {
            summary.device_model = Some(copy_device_model(&mut reader, &mut out, opts, &dm)?);
        }
    }
    if opts.format == OutputFormat::Libxl {
        libxl_record(&mut out, rec_type::END, &[]).map_err(ioerr(reader.offset()))?;
    }
    if opts.trailer == Trailer::Image {
        reader.expect_eof()?;
    }
    out.flush().map_err(ioerr(reader.offset()))?;
    summary.input_octets = reader.offset();
    summary.output_octets = out.n;
    Ok(summary)
}

/// The 8-octet emulator sub-header: id "unknown", index 0.
fn emulator_header() -> Vec<u8> {
    vec![0; 8]
}

/// A whole libxl record (little-endian).
fn libxl_record<W: Write>(out: &mut W, rtype: u32, body: &[u8]) -> io::Result<()> {
    let mut head = Vec::with_capacity(8);
    Endian::Little.put_u32(&mut head, rtype);
    Endian::Little.put_u32(&mut head, body.len() as u32);
    let pad = (padded_len(body.len() as u64) - body.len() as u64) as usize;
    out.write_all(&head)?;
    out.write_all(body)?;
    out.write_all(&[0u8; 8][..pad])
}

/// The device model record: as EMULATOR_CONTEXT for libxl, copied as it
/// was after the libxc stream otherwise (where a toolstack that restores
/// the libxc part itself, like XAPI's, reads it next).
fn copy_device_model<R: Read, W: Write>(
    reader: &mut LegacyReader<R>,
    out: &mut W,
    opts: &ConvertOptions,
    dm: &DeviceModel,
) -> Result<u64, LegacyError> {
    let at = reader.offset();
    let ioerr = |e: io::Error| LegacyError::io(at, "output", &e);
    match (opts.format, dm.len) {
        (OutputFormat::Libxc, len) => {
            out.write_all(&dm.signature).map_err(ioerr)?;
            if let Some(l) = len {
                out.write_all(&l.to_le_bytes()).map_err(ioerr)?;
            }
            reader.copy_device_model(len, out)
        }
        (OutputFormat::Libxl, Some(len)) => {
            let body_len = len + 8;
            let mut head = Vec::with_capacity(16);
            Endian::Little.put_u32(&mut head, rec_type::EMULATOR_CONTEXT);
            Endian::Little.put_u32(&mut head, body_len);
            head.extend_from_slice(&emulator_header());
            out.write_all(&head).map_err(ioerr)?;
            let n = reader.copy_device_model(Some(len), out)?;
            let pad = (padded_len(u64::from(body_len)) - u64::from(body_len)) as usize;
            out.write_all(&[0u8; 8][..pad]).map_err(ioerr)?;
            Ok(n)
        }
        (OutputFormat::Libxl, None) => {
            // The data runs to the end of the file and the record needs its
            // length first: held, within the record limit.
            let data = reader.device_model_to_end(MAX_BLOB - 8)?;
            let mut body = emulator_header();
            body.extend_from_slice(&data);
            libxl_record(out, rec_type::EMULATOR_CONTEXT, &body).map_err(ioerr)?;
            Ok(data.len() as u64)
        }
    }
}

/// The libxc stream of a legacy image, converted as it is read: each
/// [`Read::read`] converts the next part of the image when the octets of
/// the previous one are used up, so memory holds one part (at most a page
/// batch). A malformed image is an [`io::ErrorKind::InvalidData`] error
/// whose source is the [`LegacyError`] (also kept for
/// [`Converted::take_error`]). The stream ends after END: with
/// [`LegacyReader`] reading exactly, nothing after the image's libxc part
/// is read, so `xc_domain_restore` can read a legacy image straight off a
/// toolstack's fd.
pub struct Converted<R> {
    reader: LegacyReader<R>,
    w: Writer<Vec<u8>>,
    pos: usize,
    done: bool,
    error: Option<LegacyError>,
    opts: ConvertOptions,
    summary: ConvertSummary,
    params: Vec<HvmParam>,
    xenstore: Vec<u8>,
    entries: Vec<PfnEntry>,
}

impl<R: Read> Converted<R> {
    /// The stream of the image `reader` reads, as `opts` say (only
    /// `version`, `format` for what the toolstack data becomes, and the
    /// reader's own width and guest count).
    pub fn new(reader: LegacyReader<R>, opts: &ConvertOptions) -> Self {
        let dtype = match opts.guest {
            Guest::Pv => DomainType::X86Pv,
            Guest::Hvm => DomainType::X86Hvm,
        };
        let w = Writer::with_options(
            Vec::new(),
            // Xen 0.1: what the reference converter writes, the mark
            // `DomainHeader::is_legacy_converted` tests.
            &DomainHeader::new(dtype, 0, 1),
            WriterOptions {
                image: ImageHeader {
                    version: opts.version,
                    endian: Endian::Little,
                },
                grammar: GrammarOptions::default(),
                check_grammar: true,
            },
        )
        .expect("headers into a Vec");
        Converted {
            reader,
            w,
            pos: 0,
            done: false,
            error: None,
            opts: *opts,
            summary: ConvertSummary::default(),
            params: Vec::new(),
            xenstore: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// The error that ended the stream, once.
    pub fn take_error(&mut self) -> Option<LegacyError> {
        self.error.take()
    }

    /// The reader (positioned after the image's libxc part once the stream
    /// ended), what was converted, and libxl's QEMU physmap as xenstore
    /// pairs for EMULATOR_XENSTORE_DATA (empty unless the format is libxl).
    pub fn into_parts(self) -> (LegacyReader<R>, ConvertSummary, Vec<u8>) {
        let mut summary = self.summary;
        summary.input_octets = self.reader.offset();
        (self.reader, summary, self.xenstore)
    }

    fn static_data_end(&mut self, at: u64) -> Result<(), LegacyError> {
        if self.opts.version == Version::V3 {
            self.w.write_static_data_end().map_err(|e| out_err(at, e))?;
        }
        Ok(())
    }

    /// Converts the next part into the buffer; false after the last.
    fn step(&mut self) -> Result<bool, LegacyError> {
        {
            // Errors are reported at the input octet of the part converted.
            let at = self.reader.offset();
            let Some(item) = self.reader.next_item()? else {
                return Ok(false);
            };
            match item {
                Item::P2mSize(n) => {
                    self.summary.p2m_size = n;
                    if self.opts.guest == Guest::Hvm {
                        self.static_data_end(at)?;
                    }
                }
                Item::ExtendedInfo(ext) => {
                    let info = X86PvInfo {
                        guest_width: ext.guest_width,
                        pt_levels: if ext.guest_width == 8 { 4 } else { 3 },
                    };
                    self.w
                        .write_x86_pv_info(&info)
                        .map_err(|e| out_err(at, e))?;
                    self.static_data_end(at)?;
                    for id in &ext.skipped {
                        self.summary.notes.push(format!(
                            "skipped the unknown extended-info block {:?}",
                            String::from_utf8_lossy(id)
                        ));
                    }
                }
                Item::P2mFrames(frames) => {
                    let end = (self.summary.p2m_size - 1) as u32;
                    self.w
                        .write_x86_pv_p2m_frames(0, end, frames)
                        .map_err(|e| out_err(at, e))?;
                }
                Item::Batch(b) => {
                    self.summary.batches += 1;
                    if b.entries.is_empty() {
                        return Ok(true);
                    }
                    self.entries.clear();
                    self.entries
                        .extend(b.pfns().map(|(pfn, t)| PfnEntry::new(pfn, t)));
                    self.summary.pages += (b.pages.len() / crate::PAGE_SIZE) as u64;
                    self.w
                        .write_page_data(&self.entries, &[b.pages])
                        .map_err(|e| out_err(at, e))?;
                }
                Item::Chunk(c) => match c {
                    Chunk::VerifyMode => self.summary.notes.push(
                        "a debug image: its verification pages are written as page data".into(),
                    ),
                    Chunk::VcpuInfo { .. } | Chunk::LastCheckpoint => {}
                    Chunk::HvmParam { index, value, .. } => {
                        self.params.push(HvmParam { index, value })
                    }
                    Chunk::TscInfo(t) => {
                        self.w.write_x86_tsc_info(&t).map_err(|e| out_err(at, e))?
                    }
                    Chunk::Toolstack(data) => match self.opts.format {
                        OutputFormat::Libxl => {
                            physmap_to_xenstore(data, self.opts.width, &mut self.xenstore).map_err(
                                |m| {
                                    LegacyError::new(
                                        at,
                                        "chunk TOOLSTACK (-18)",
                                        LegacyErrorKind::BadToolstack(m),
                                    )
                                },
                            )?
                        }
                        OutputFormat::Libxc => {
                            if !data.is_empty() {
                                self.summary.notes.push(format!(
                                    "dropped {} octets of toolstack data (only --format libxl \
                                     carries libxl's QEMU physmap)",
                                    data.len()
                                ))
                            }
                        }
                    },
                },
                Item::BodyEnd => {
                    if !self.params.is_empty() {
                        let params = std::mem::take(&mut self.params);
                        self.w
                            .write_hvm_params(&params)
                            .map_err(|e| out_err(at, e))?;
                    }
                }
                Item::UnmappedPfns(n) => {
                    if n > 0 {
                        self.summary.notes.push(format!(
                            "dropped the PV tail's list of {n} unmapped pfns (the v2 stream \
                             has no such list)"
                        ));
                    }
                }
                Item::Vcpu(v) => {
                    self.summary.vcpus += 1;
                    self.w
                        .write_x86_pv_vcpu(VcpuKind::Basic, v.id, v.basic)
                        .map_err(|e| out_err(at, e))?;
                    if let Some(x) = v.extended {
                        self.w
                            .write_x86_pv_vcpu(VcpuKind::Extended, v.id, x)
                            .map_err(|e| out_err(at, e))?;
                    }
                    if let Some((_, x)) = v.xsave {
                        self.w
                            .write_x86_pv_vcpu(VcpuKind::Xsave, v.id, x)
                            .map_err(|e| out_err(at, e))?;
                    }
                }
                Item::SharedInfo(page) => {
                    self.w.write_shared_info(page).map_err(|e| out_err(at, e))?
                }
                Item::HvmMagicPfns {
                    ioreq,
                    bufioreq,
                    store,
                } => {
                    let params = [
                        HvmParam {
                            index: HVM_PARAM_IOREQ_PFN,
                            value: ioreq,
                        },
                        HvmParam {
                            index: HVM_PARAM_BUFIOREQ_PFN,
                            value: bufioreq,
                        },
                        HvmParam {
                            index: HVM_PARAM_STORE_PFN,
                            value: store,
                        },
                    ];
                    self.w
                        .write_hvm_params(&params)
                        .map_err(|e| out_err(at, e))?;
                }
                Item::HvmContext(blob) => {
                    self.w.write_hvm_context(blob).map_err(|e| out_err(at, e))?
                }
                Item::End => self.w.write_end().map_err(|e| out_err(at, e))?,
            }
        }
        Ok(true)
    }
}

impl<R: Read> Read for Converted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let pending = &self.w.get_ref()[self.pos..];
            if !pending.is_empty() {
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                self.pos += n;
                return Ok(n);
            }
            self.w.get_mut().clear();
            self.pos = 0;
            if self.done {
                return Ok(0);
            }
            match self.step() {
                Ok(more) => self.done = !more,
                Err(e) => {
                    self.done = true;
                    let kind = if e.is_io() {
                        io::ErrorKind::Other
                    } else {
                        io::ErrorKind::InvalidData
                    };
                    self.error = Some(e.clone());
                    return Err(io::Error::new(kind, e));
                }
            }
        }
    }
}

/// A failure of the libxc writer: an I/O error on the output, or (a bug)
/// a record the writer's own checks refuse.
fn out_err(at: u64, e: Error) -> LegacyError {
    LegacyError::new(at, "output", LegacyErrorKind::Io(e.to_string()))
}

/// libxl 4.5's toolstack data (`libxl__toolstack_save`: u32 version 1,
/// u32 count, then per entry u64 phys_offset, u64 start_addr, u64 size,
/// u32 namelen, the NUL-terminated name; a 64-bit toolstack's struct has 4
/// more octets of padding after the name) as the xenstore pairs libxl 4.6+
/// keeps under `physmap/<phys_offset>/`.
pub fn physmap_to_xenstore(data: &[u8], width: Width, out: &mut Vec<u8>) -> Result<(), String> {
    if data.is_empty() {
        return Ok(());
    }
    if data.len() < 8 {
        return Err(format!(
            "{} octets, shorter than its version and count",
            data.len()
        ));
    }
    let version = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let count = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if version != 1 {
        return Err(format!("version {version}, expected 1"));
    }
    let pad = match width {
        Width::Bits32 => 0,
        Width::Bits64 => 4,
    };
    let mut rest = &data[8..];
    for i in 0..count {
        if rest.len() < 28 {
            return Err(format!("entry {i} truncated in its header"));
        }
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let (phys, start, size) = (u64_at(0), u64_at(8), u64_at(16));
        let namelen = u32::from_le_bytes([rest[24], rest[25], rest[26], rest[27]]) as usize;
        let take = namelen + pad;
        if rest.len() < 28 + take {
            return Err(format!("entry {i} truncated in its name"));
        }
        let name = &rest[28..28 + namelen];
        rest = &rest[28 + take..];
        if namelen > 0 && name[namelen - 1] != 0 {
            return Err(format!("entry {i}: name not NUL-terminated"));
        }
        let root = format!("physmap/{phys:x}");
        let mut pair = |k: String, v: &[u8]| {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        };
        pair(
            format!("{root}/start_addr"),
            format!("{start:x}").as_bytes(),
        );
        pair(format!("{root}/size"), format!("{size:x}").as_bytes());
        if namelen > 0 {
            pair(format!("{root}/name"), &name[..namelen - 1]);
        }
    }
    if !rest.is_empty() {
        return Err(format!("{} octets after its {count} entries", rest.len()));
    }
    Ok(())
}
