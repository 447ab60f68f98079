//! Walking a whole stream (libxc, libxl, xl; xenstore in [`crate::xenstore`]), checking every rule and
//! reporting what it holds to a [`Visitor`]. `verify` and `inspect` share it.
//!
//! The libxl layer and the libxc stream inside it read the same input in
//! turn (libxc after LIBXC_CONTEXT and after each CHECKPOINT_END, libxl
//! after libxc's END and CHECKPOINT): the codec's [`NestedReader`] keeps
//! the two readers' offsets in step.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read};

use xcmig_stream::libxc::WarningKind;
use xcmig_stream::libxl::{
    self, LibxlError, LibxlErrorKind, LibxlHeader, LibxlNext, LibxlRecord, RecordPos,
};
use xcmig_stream::nested::{LibxcStop, NestedReader, SharedInput, StartError};
use xcmig_stream::xenstore::{XsHeader, XsRecord, XsRecordPos};
use xcmig_stream::xl::{XlError, XlHeader};
use xcmig_stream::{
    DomainHeader, Error as XcError, ErrorKind as XcErrorKind, ImageHeader, Item, PageDecompressor,
    PfnEntry, Reader, ReaderOptions, Record, RecordType, StreamEnd, Warning as XcWarning,
    DOMAIN_HEADER_LEN, IMAGE_HEADER_LEN, PAGE_SIZE, RECORD_HEADER_LEN,
};

/// The stream formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A bare libxc stream (what `xc_domain_save` writes).
    Libxc,
    /// A libxl stream wrapping a libxc stream.
    Libxl,
    /// An `xl save` file: xl header, then a libxl stream.
    Xl,
    /// A xenstore migration stream (xenstored live update, or one domain's
    /// nodes, watches and transactions).
    Xenstore,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Libxc => "libxc",
            Format::Libxl => "libxl",
            Format::Xl => "xl",
            Format::Xenstore => "xenstore",
        })
    }
}

/// Which layer a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The libxl wrapper.
    Libxl,
    /// The libxc stream.
    Libxc,
    /// The xenstore stream.
    Xenstore,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Libxl => "libxl",
            Layer::Libxc => "libxc",
            Layer::Xenstore => "xenstore",
        })
    }
}

/// One record as the walker saw it.
#[derive(Debug, Clone)]
pub struct RecordInfo {
    /// Its layer.
    pub layer: Layer,
    /// Offset of its header in the input.
    pub offset: u64,
    /// Index within its layer.
    pub index: u64,
    /// Type code.
    pub code: u32,
    /// Type name.
    pub name: String,
    /// `body_length`.
    pub body_len: u64,
    /// Octets on the wire (header, body, padding).
    pub wire_len: u64,
    /// One-line description, when the visitor asked for summaries.
    pub summary: Option<String>,
}

/// How a complete stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The END record (of the outermost layer).
    End,
    /// EOF just after a complete checkpoint (Remus/COLO failover).
    EofAfterCheckpoint,
}

/// What a walk reports, as it goes.
pub trait Visitor {
    /// Whether [`RecordInfo::summary`] should be filled in.
    fn wants_summaries(&self) -> bool {
        false
    }
    /// The xl save-file header.
    fn xl_header(&mut self, _h: &XlHeader) {}
    /// The libxl stream header at `offset`.
    fn libxl_header(&mut self, _offset: u64, _h: &LibxlHeader) {}
    /// The libxc image and domain headers at `offset`.
    fn libxc_headers(&mut self, _offset: u64, _ih: &ImageHeader, _dh: &DomainHeader) {}
    /// A record.
    fn record(&mut self, _r: &RecordInfo) {}
    /// The pfn/type entries of a PAGE_DATA record.
    fn pages(&mut self, _entries: &[PfnEntry]) {}
    /// A libxc record other than PAGE_DATA, decoded.
    fn libxc_record(&mut self, _rec: &Record<'_>) {}
    /// A warning, as one line.
    fn warning(&mut self, _w: &str) {}
    /// A note, as one line: a deviation from the spec that stock
    /// libxenguest always makes, which nobody can act on.
    fn note(&mut self, _n: &str) {}
    /// Number of complete checkpoints per layer, at the end.
    fn checkpoints(&mut self, _libxc: u64, _libxl: u64) {}
    /// The xenstore stream header.
    fn xenstore_header(&mut self, _h: &XsHeader) {}
    /// A xenstore record, decoded.
    fn xenstore_record(&mut self, _pos: &XsRecordPos, _rec: &XsRecord) {}
}

/// Why a walk stopped: an invalid stream or an unreadable input.
#[derive(Debug)]
pub struct WalkError {
    /// One line: offset, layer, record index and type, rule.
    pub line: String,
    /// True when the input itself failed (I/O), not a rule.
    pub io: bool,
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// Where the libxc stream starts, to name the header an error is in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LibxcCtx {
    pub(crate) start: u64,
}

pub(crate) fn xc_error(e: &XcError, ctx: LibxcCtx) -> WalkError {
    let io = matches!(e.kind, XcErrorKind::Io { .. });
    let place = match (e.record_index, e.record_type) {
        (Some(i), Some(t)) => format!("libxc record #{i} {t}"),
        (Some(i), None) => format!("libxc record #{i}"),
        (None, Some(t)) => format!("libxc record {t}"),
        (None, None) => {
            let rel = e.offset.saturating_sub(ctx.start);
            if rel < IMAGE_HEADER_LEN as u64 {
                "libxc image header".to_string()
            } else if rel < (IMAGE_HEADER_LEN + DOMAIN_HEADER_LEN) as u64 {
                "libxc domain header".to_string()
            } else {
                "libxc stream".to_string()
            }
        }
    };
    WalkError {
        line: format!("offset {}, {}: {}", e.offset, place, e.kind),
        io,
    }
}

pub(crate) fn xc_warning(w: &XcWarning) -> String {
    format!(
        "offset {}, libxc record #{} {}: {}",
        w.offset, w.record_index, w.record_type, w.kind
    )
}

impl From<LibxlError> for WalkError {
    fn from(e: LibxlError) -> Self {
        WalkError {
            io: matches!(e.kind, LibxlErrorKind::Io(_)),
            line: e.to_string(),
        }
    }
}

impl From<XlError> for WalkError {
    fn from(e: XlError) -> Self {
        WalkError {
            io: matches!(e.kind, xcmig_stream::xl::XlErrorKind::Io(_)),
            line: e.to_string(),
        }
    }
}

/// The outcome of a successful walk.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// Octets read.
    pub bytes: u64,
    /// How the stream ended.
    pub ending: Ending,
}

/// Warnings passed on to the visitor; later ones are only counted, so a
/// hostile stream repeating a warned-about record cannot flood the output
/// or the memory of `inspect`.
pub const MAX_WARNINGS: u64 = 1000;

/// Forwards to a visitor, capping warnings and notes at [`MAX_WARNINGS`]
/// each.
struct Capped<'v, V> {
    inner: &'v mut V,
    warnings: u64,
    notes: u64,
}

impl<V: Visitor> Visitor for Capped<'_, V> {
    fn wants_summaries(&self) -> bool {
        self.inner.wants_summaries()
    }
    fn xl_header(&mut self, h: &XlHeader) {
        self.inner.xl_header(h)
    }
    fn libxl_header(&mut self, offset: u64, h: &LibxlHeader) {
        self.inner.libxl_header(offset, h)
    }
    fn libxc_headers(&mut self, offset: u64, ih: &ImageHeader, dh: &DomainHeader) {
        self.inner.libxc_headers(offset, ih, dh)
    }
    fn record(&mut self, r: &RecordInfo) {
        self.inner.record(r)
    }
    fn pages(&mut self, entries: &[PfnEntry]) {
        self.inner.pages(entries)
    }
    fn libxc_record(&mut self, rec: &Record<'_>) {
        self.inner.libxc_record(rec)
    }
    fn warning(&mut self, w: &str) {
        self.warnings += 1;
        if self.warnings <= MAX_WARNINGS {
            self.inner.warning(w)
        }
    }
    fn note(&mut self, n: &str) {
        self.notes += 1;
        if self.notes <= MAX_WARNINGS {
            self.inner.note(n)
        }
    }
    fn checkpoints(&mut self, libxc: u64, libxl: u64) {
        self.inner.checkpoints(libxc, libxl)
    }
    fn xenstore_header(&mut self, h: &XsHeader) {
        self.inner.xenstore_header(h)
    }
    fn xenstore_record(&mut self, pos: &XsRecordPos, rec: &XsRecord) {
        self.inner.xenstore_record(pos, rec)
    }
}

/// Walks `input` as `format`, checking everything; stops at the first error.
pub fn walk<R: Read, V: Visitor>(input: R, format: Format, v: &mut V) -> Result<Done, WalkError> {
    let mut capped = Capped {
        inner: v,
        warnings: 0,
        notes: 0,
    };
    let result = walk_inner(input, format, &mut capped);
    if capped.warnings > MAX_WARNINGS {
        let n = capped.warnings - MAX_WARNINGS;
        capped
            .inner
            .warning(&format!("{n} further warnings not shown"));
    }
    if capped.notes > MAX_WARNINGS {
        let n = capped.notes - MAX_WARNINGS;
        capped.inner.note(&format!("{n} further notes not shown"));
    }
    result
}

fn walk_inner<R: Read, V: Visitor>(input: R, format: Format, v: &mut V) -> Result<Done, WalkError> {
    let cell = RefCell::new(input);
    let shared = SharedInput::new(&cell);
    match format {
        Format::Libxc => walk_libxc(shared, v),
        Format::Libxl => walk_libxl(shared, 0, v),
        Format::Xenstore => crate::xenstore::walk(shared, v),
        Format::Xl => {
            let mut r = shared.clone();
            let h = XlHeader::read_from(&mut r)?;
            v.xl_header(&h);
            for w in h.warnings() {
                v.warning(&format!("offset 0, xl header: {w}"));
            }
            if !h.stream_v2() {
                return Err(WalkError {
                    line: format!(
                        "offset 36, xl header: mandatory flag STREAMv2 (bit 1) clear: the payload \
                         would be read as a legacy pre-Xen-4.6 stream, which xcmig does not accept \
                         (flags {:#x})",
                        h.mandatory_flags
                    ),
                    io: false,
                });
            }
            walk_libxl(shared, h.encoded_len(), v)
        }
    }
}

/// A state the libxl grammar rules out; reported, never a panic.
fn internal(offset: u64) -> WalkError {
    WalkError {
        line: format!("offset {offset}, libxl stream: internal error: libxc reader missing"),
        io: false,
    }
}

/// Reads one byte past the end; data there is an error.
pub(crate) fn expect_eof<R: Read>(mut r: R, offset: u64, after: &str) -> Result<(), WalkError> {
    let mut b = [0u8; 1];
    loop {
        return match r.read(&mut b) {
            Ok(0) => Ok(()),
            Ok(_) => Err(WalkError {
                line: format!("offset {offset}, {after}: data after the END record"),
                io: false,
            }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(WalkError {
                line: format!("offset {offset}, {after}: read error: {e}"),
                io: true,
            }),
        };
    }
}

fn walk_libxc<R: Read, V: Visitor>(
    input: SharedInput<'_, R>,
    v: &mut V,
) -> Result<Done, WalkError> {
    let ctx = LibxcCtx { start: 0 };
    let mut xc = open_libxc(input.clone(), 0, v)?;
    let stop = libxc_loop(&mut xc, ctx, v, false)?;
    drain_xc_warnings(&mut xc, v);
    v.checkpoints(xc.grammar().checkpoints(), 0);
    match stop {
        // Without `stop_at_checkpoint` the loop only stops at END or EOF.
        LibxcStop::End | LibxcStop::Checkpoint => {
            let end = xc.offset();
            xc.expect_eof().map_err(|e| {
                let mut w = xc_error(&e, ctx);
                w.line = format!(
                    "offset {}, libxc stream: data after the END record",
                    e.offset
                );
                w
            })?;
            Ok(Done {
                bytes: end,
                ending: Ending::End,
            })
        }
        LibxcStop::EofAfterCheckpoint => Ok(Done {
            bytes: xc.offset(),
            ending: Ending::EofAfterCheckpoint,
        }),
    }
}

fn open_libxc<'a, R: Read, V: Visitor>(
    input: SharedInput<'a, R>,
    start: u64,
    v: &mut V,
) -> Result<Reader<SharedInput<'a, R>>, WalkError> {
    let opts = ReaderOptions {
        start_offset: start,
        ..ReaderOptions::default()
    };
    let xc = Reader::with_options(input, opts).map_err(|e| xc_error(&e, LibxcCtx { start }))?;
    v.libxc_headers(start, xc.image_header(), xc.domain_header());
    Ok(xc)
}

fn drain_xc_warnings<R: Read, V: Visitor>(xc: &mut Reader<R>, v: &mut V) {
    for w in xc.take_warnings() {
        if is_stock_libxenguest_deviation(&w.kind) {
            v.note(&xc_warning(&w));
        } else {
            v.warning(&xc_warning(&w));
        }
    }
}

/// Whether a libxc warning is a deviation stock libxenguest always makes
/// (so every stream from a stock Xen host has it): reported as a note.
/// Restore logs the same kinds at detail level (src/restore/mod.rs).
pub fn is_stock_libxenguest_deviation(kind: &WarningKind) -> bool {
    match kind {
        WarningKind::HvmParamsAfterHvmContext => true,
        WarningKind::DeprecatedToolstack
        | WarningKind::XcmigExtension
        | WarningKind::EmptyRecord
        | WarningKind::VcpuContextSize { .. } => false,
    }
}

/// Reads libxc records until END, EOF after a checkpoint or (when
/// `stop_at_checkpoint`) a CHECKPOINT record.
fn libxc_loop<R: Read, V: Visitor>(
    xc: &mut Reader<R>,
    ctx: LibxcCtx,
    v: &mut V,
    stop_at_checkpoint: bool,
) -> Result<LibxcStop, WalkError> {
    let summaries = v.wants_summaries();
    // Where the next record starts: PAGE_DATA pages are skipped lazily, so
    // the reader's own offset lags behind until the next call.
    let mut next_start = xc.offset();
    // Compressed pages are decompressed to check them, one record at a time.
    let mut decompressor = PageDecompressor::new();
    let mut scratch = Vec::new();
    loop {
        // Take what is needed from the item inside this block: it borrows
        // the reader until dropped.
        let got = {
            let index = xc.records_read();
            let item = xc.next_item().map_err(|e| xc_error(&e, ctx))?;
            match item {
                None => None,
                Some(Item::Pages(pr)) => {
                    let entries = pr.entries();
                    let n = entries.len() as u64;
                    let data = pr.data_pages() as u64;
                    let body_len = 8 + 8 * n + PAGE_SIZE as u64 * data;
                    v.pages(entries);
                    let summary = summaries.then(|| page_summary(entries, data));
                    Some(Got::Pages(RecordInfo {
                        layer: Layer::Libxc,
                        offset: pr.record_offset(),
                        index: pr.record_index(),
                        code: 1,
                        name: "PAGE_DATA".into(),
                        body_len,
                        wire_len: RECORD_HEADER_LEN as u64 + body_len,
                        summary,
                    }))
                }
                Some(Item::Record(rec)) => {
                    if let Record::CompressedPageData(c) = &rec {
                        if let Err(kind) = c.decompress_all(&mut decompressor, &mut scratch) {
                            let e = XcError::in_record(
                                next_start,
                                index,
                                RecordType::XCMIG_COMPRESSED_PAGE_DATA,
                                kind,
                            );
                            return Err(xc_error(&e, ctx));
                        }
                        v.pages(c.entries());
                    }
                    v.libxc_record(&rec);
                    let rtype = rec.record_type();
                    let stop = match rec {
                        Record::End => Some(LibxcStop::End),
                        Record::Checkpoint if stop_at_checkpoint => Some(LibxcStop::Checkpoint),
                        _ => None,
                    };
                    Some(Got::Record {
                        code: rtype.0,
                        name: rtype.name(),
                        exact: exact_body_len(&rec),
                        summary: summaries.then(|| record_summary(&rec)),
                        stop,
                    })
                }
            }
        };
        let (info, stop) = match got {
            None => {
                return match xc.end() {
                    Some(StreamEnd::EofAfterCheckpoint) => Ok(LibxcStop::EofAfterCheckpoint),
                    _ => Ok(LibxcStop::End),
                };
            }
            Some(Got::Pages(info)) => (info, None),
            Some(Got::Record {
                code,
                name,
                exact,
                summary,
                stop,
            }) => {
                let wire_len = xc.offset() - next_start;
                let info = RecordInfo {
                    layer: Layer::Libxc,
                    offset: next_start,
                    index: xc.records_read() - 1,
                    code,
                    name: name.to_string(),
                    body_len: exact.unwrap_or(wire_len - RECORD_HEADER_LEN as u64),
                    wire_len,
                    summary,
                };
                (info, stop)
            }
        };
        next_start = info.offset + info.wire_len;
        v.record(&info);
        drain_xc_warnings(xc, v);
        if let Some(s) = stop {
            return Ok(s);
        }
    }
}

/// What [`libxc_loop`] keeps of one item.
enum Got {
    Pages(RecordInfo),
    Record {
        code: u32,
        name: &'static str,
        exact: Option<u64>,
        summary: Option<String>,
        stop: Option<LibxcStop>,
    },
}

/// Exact body length for records whose body is not a multiple of 8 octets
/// (blobs); `None` when the wire length minus the header is exact.
fn exact_body_len(rec: &Record<'_>) -> Option<u64> {
    match rec {
        Record::SharedInfo(b) | Record::HvmContext(b) | Record::Toolstack(b) => {
            Some(b.len() as u64)
        }
        Record::X86PvVcpu(c) => Some(8 + c.context.len() as u64),
        Record::Optional { body, .. } => Some(body.len() as u64),
        _ => None,
    }
}

fn page_summary(entries: &[PfnEntry], data: u64) -> String {
    let lo = entries.iter().map(|e| e.pfn).min().unwrap_or(0);
    let hi = entries.iter().map(|e| e.pfn).max().unwrap_or(0);
    format!(
        "{} entries, {} pages, pfn {:#x}-{:#x}",
        entries.len(),
        data,
        lo,
        hi
    )
}

fn record_summary(rec: &Record<'_>) -> String {
    match rec {
        Record::End => String::new(),
        Record::PageData(pd) => page_summary(pd.entries(), pd.data_pages() as u64),
        Record::CompressedPageData(c) => format!(
            "{}, {}: {} octets, {} stored",
            page_summary(c.entries(), c.data_pages() as u64),
            c.compression().name(),
            c.data().len(),
            c.stored_pages()
        ),
        Record::X86PvInfo(i) => format!("guest_width {}, pt_levels {}", i.guest_width, i.pt_levels),
        Record::X86PvP2mFrames(p) => format!(
            "pfn {:#x}-{:#x}, {} frames",
            p.start_pfn,
            p.end_pfn,
            p.frames.len()
        ),
        Record::X86PvVcpu(c) => format!("vcpu {}, {} octets", c.vcpu_id, c.context.len()),
        Record::SharedInfo(b) => format!("{} octets", b.len()),
        Record::X86TscInfo(t) => format!(
            "mode {}, {} kHz, nsec {}, incarnation {}",
            t.mode, t.gtsc_khz, t.elapsed_nsec, t.incarnation
        ),
        Record::HvmContext(b) => format!("{} octets", b.len()),
        Record::HvmParams(a) => {
            let list: Vec<String> = a
                .iter()
                .take(8)
                .map(|p| match crate::inspect::hvm_param_name(p.index) {
                    Some(name) => format!("{name}={:#x}", p.value),
                    None => format!("{}={:#x}", p.index, p.value),
                })
                .collect();
            let more = if a.len() > 8 { ", ..." } else { "" };
            format!("{} params: {}{}", a.len(), list.join(", "), more)
        }
        Record::Toolstack(b) => format!("{} octets (deprecated)", b.len()),
        Record::Verify => "verify the following pages".into(),
        Record::Checkpoint => "end of checkpoint".into(),
        Record::CheckpointDirtyPfnList(a) => format!("{} pfns", a.len()),
        Record::StaticDataEnd => String::new(),
        Record::X86CpuidPolicy(a) => format!("{} leaves", a.len()),
        Record::X86MsrPolicy(a) => format!("{} MSRs", a.len()),
        Record::Optional { body, .. } => format!("{} octets (optional, skipped)", body.len()),
    }
}

fn libxl_summary(rec: &LibxlRecord) -> String {
    match rec {
        LibxlRecord::End | LibxlRecord::CheckpointEnd => String::new(),
        LibxlRecord::LibxcContext => "libxc stream follows".into(),
        LibxlRecord::EmulatorXenstoreData { emulator, .. } => format!(
            "{} #{}, {} keys",
            libxl::emulator_name(emulator.id),
            emulator.index,
            rec.xenstore_pairs().len()
        ),
        LibxlRecord::EmulatorContext { emulator, blob } => format!(
            "{} #{}, {} octets",
            libxl::emulator_name(emulator.id),
            emulator.index,
            blob.len()
        ),
        LibxlRecord::CheckpointState { control } => format!("{control:?}"),
        LibxlRecord::Optional { body, .. } => format!("{} octets (optional, skipped)", body.len()),
    }
}

fn libxl_info(pos: &RecordPos, rec: &LibxlRecord, summaries: bool) -> RecordInfo {
    RecordInfo {
        layer: Layer::Libxl,
        offset: pos.offset,
        index: pos.index,
        code: pos.rtype,
        name: libxl::record_type_name(pos.rtype),
        body_len: u64::from(pos.body_len),
        wire_len: pos.wire_len(),
        summary: summaries.then(|| libxl_summary(rec)),
    }
}

fn walk_libxl<R: Read, V: Visitor>(
    input: SharedInput<'_, R>,
    start: u64,
    v: &mut V,
) -> Result<Done, WalkError> {
    let mut n = NestedReader::new(input, start)?;
    v.libxl_header(start, n.libxl().header());
    let mut ctx = LibxcCtx { start: 0 };
    let summaries = v.wants_summaries();
    loop {
        for w in n.take_libxl_warnings() {
            v.warning(&w.to_string());
        }
        let (pos, rec) = match n.next_record() {
            Ok(r) => r,
            Err(e) if e.kind == LibxlErrorKind::MissingEnd => {
                let why = if n.grammar().in_checkpoint() {
                    "input ends inside a checkpoint, before CHECKPOINT_END"
                } else {
                    "input ends before the libxl END record"
                };
                return Err(WalkError {
                    line: format!(
                        "offset {}, libxl record #{}: truncated: {}",
                        e.offset,
                        n.libxl().records_read(),
                        why
                    ),
                    io: false,
                });
            }
            Err(e) => return Err(e.into()),
        };
        v.record(&libxl_info(&pos, &rec, summaries));
        match n.check(pos, &rec)? {
            LibxlNext::LibxlRecord => continue,
            LibxlNext::Done => {
                let end = n.offset();
                for w in n.take_libxl_warnings() {
                    v.warning(&w.to_string());
                }
                let xc_cp = n.libxc().map_or(0, |r| r.grammar().checkpoints());
                v.checkpoints(xc_cp, n.grammar().checkpoints());
                expect_eof(n.input(), end, "libxl stream")?;
                return Ok(Done {
                    bytes: end,
                    ending: Ending::End,
                });
            }
            LibxlNext::StartLibxc => {
                ctx = LibxcCtx { start: n.offset() };
                let started = n.start_libxc(ReaderOptions::default());
                if let Some(r) = n.libxc() {
                    v.libxc_headers(ctx.start, r.image_header(), r.domain_header());
                }
                match started {
                    Ok(()) => {}
                    Err(StartError::Libxc(e)) => return Err(xc_error(&e, ctx)),
                    Err(StartError::Libxl(e)) => return Err(e.into()),
                }
                let Some(reader) = n.libxc() else {
                    return Err(internal(pos.offset));
                };
                // convert-legacy-stream marks both layers: the libxl legacy
                // bit and xen_major 0 in the libxc domain header.
                let converted = reader.domain_header().is_legacy_converted();
                let legacy = n.libxl().header().legacy();
                if converted != legacy {
                    v.warning(&format!(
                        "offset {}, libxc domain header: xen_major {} but the libxl legacy bit is {}",
                        ctx.start + IMAGE_HEADER_LEN as u64,
                        reader.domain_header().xen_major,
                        if legacy { "set" } else { "clear" }
                    ));
                }
            }
            LibxlNext::ResumeLibxc => {
                // The grammar resumes libxc only after it started.
                if n.resume_libxc().is_none() {
                    return Err(internal(pos.offset));
                }
            }
        }
        let Some(r) = n.libxc_mut() else {
            return Err(internal(pos.offset));
        };
        libxc_loop(r, ctx, v, true)?;
        drain_xc_warnings(r, v);
        let xc_cp = r.grammar().checkpoints();
        if n.libxc_stopped() == Some(LibxcStop::EofAfterCheckpoint) {
            for w in n.take_libxl_warnings() {
                v.warning(&w.to_string());
            }
            v.checkpoints(xc_cp, n.grammar().checkpoints());
            return Ok(Done {
                bytes: n.offset(),
                ending: Ending::EofAfterCheckpoint,
            });
        }
    }
}
