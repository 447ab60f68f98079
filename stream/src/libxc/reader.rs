//! Reading a libxc stream from any [`Read`].
//!
//! The reader reads exactly the bytes of each structure (no read-ahead, so
//! an enclosing libxl stream can continue on the same input after END or
//! CHECKPOINT), checks the record header before reading a body (length at
//! most 128 MiB, type known or optional), grows its one reusable body buffer
//! only as bytes arrive, enforces zero padding, parses the record
//! ([`super::record::parse`]) and runs the [`Grammar`].

use std::io::{self, Read};

use super::compressed::MAX_COMPRESSED_BODY;
use super::error::{Error, ErrorKind, Part, Warning, WarningKind};
use super::grammar::{Channel, Grammar, GrammarOptions, State};
use super::record::{self, PageData, Record, Reserved};
use super::types::{
    DomainHeader, DomainType, ImageHeader, PfnEntry, RecordType, Version, DOMAIN_HEADER_LEN,
    IHDR_ID, IHDR_MARKER, IHDR_OPT_BIG_ENDIAN, IMAGE_HEADER_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN,
};
use crate::input::read_upto;
use crate::wire::{padded_len, Endian};
use crate::x86::{PAGE_SHIFT, PAGE_SIZE};

/// Reader parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Grammar parameters (checkpoint policy).
    pub grammar: GrammarOptions,
    /// Offset of the first byte in the enclosing stream (for error reports
    /// when the libxc stream is embedded, e.g. in a libxl stream).
    pub start_offset: u64,
    /// At most this many warnings are kept; later ones are only counted.
    pub max_warnings: usize,
    /// Non-zero reserved fields and padding: errors (default) or ignored.
    pub reserved: Reserved,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            grammar: GrammarOptions::default(),
            start_offset: 0,
            max_warnings: 1000,
            reserved: Reserved::Reject,
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamEnd {
    /// An END record.
    End,
    /// EOF right after a CHECKPOINT record: the valid end of a checkpointed
    /// stream whose sender stopped (failover to the last checkpoint).
    EofAfterCheckpoint,
    /// EOF on the back channel.
    BackChannelEof,
}

/// Largest read used to discard unread page bytes.
const SKIP_CHUNK: u64 = 1 << 20;

/// Where the record being read starts, for error reports.
#[derive(Debug, Clone, Copy)]
struct Current {
    offset: u64,
    index: u64,
    rtype: RecordType,
}

/// Record framing, parsing and grammar, shared by [`Reader`] and
/// [`BackChannelReader`].
#[derive(Debug)]
struct Core<R> {
    inner: R,
    endian: Endian,
    offset: u64,
    next_index: u64,
    grammar: Grammar,
    buf: Vec<u8>,
    entries: Vec<PfnEntry>,
    warnings: Warnings,
    reserved: Reserved,
    end: Option<StreamEnd>,
    /// Page bytes of a streamed PAGE_DATA record the caller did not read.
    pending_skip: u64,
    /// The record whose page bytes are pending.
    pending: Option<Current>,
    failed: Option<Error>,
}

/// Reads a fixed-size header starting at stream offset `start`; a short
/// read is `Truncated(part)` at the offset where the input ended.
fn read_header<R: Read, const N: usize>(
    inner: &mut R,
    start: u64,
    part: Part,
) -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    let n = read_upto(inner, &mut b).map_err(|e| Error::io(start, &e))?;
    if n < N {
        return Err(Error::at(start + n as u64, ErrorKind::Truncated(part)));
    }
    Ok(b)
}

/// The warnings a reader keeps: at most `max`, then only counted.
#[derive(Debug)]
struct Warnings {
    kept: Vec<Warning>,
    dropped: u64,
    max: usize,
}

impl Warnings {
    fn push(&mut self, cur: Current, kind: WarningKind) {
        if self.kept.len() < self.max {
            self.kept.push(Warning {
                offset: cur.offset,
                record_index: cur.index,
                record_type: cur.rtype,
                kind,
            });
        } else {
            self.dropped += 1;
        }
    }
}

impl<R: Read> Core<R> {
    fn new(inner: R, endian: Endian, grammar: Grammar, opts: &ReaderOptions, offset: u64) -> Self {
        Core {
            inner,
            endian,
            offset,
            next_index: 0,
            grammar,
            buf: Vec::new(),
            entries: Vec::new(),
            warnings: Warnings {
                kept: Vec::new(),
                dropped: 0,
                max: opts.max_warnings,
            },
            reserved: opts.reserved,
            end: None,
            pending_skip: 0,
            pending: None,
            failed: None,
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.failed = Some(e.clone());
        e
    }

    fn rec_err(&self, cur: Current, kind: ErrorKind) -> Error {
        Error::in_record(cur.offset, cur.index, cur.rtype, kind)
    }

    fn warn(&mut self, cur: Current, kind: WarningKind) {
        self.warnings.push(cur, kind);
    }

    /// Reads exactly `buf.len()` bytes or reports truncation of `part`.
    fn read_exact_part(&mut self, buf: &mut [u8], part: Part, cur: Current) -> Result<(), Error> {
        let n = read_upto(&mut self.inner, buf).map_err(|e| {
            let mut err = Error::io(self.offset, &e);
            err.record_index = Some(cur.index);
            err.record_type = Some(cur.rtype);
            err
        })?;
        self.offset += n as u64;
        if n < buf.len() {
            let mut err = self.rec_err(cur, ErrorKind::Truncated(part));
            err.offset = self.offset;
            return Err(err);
        }
        Ok(())
    }

    /// Reads `len` body bytes into `self.buf`, growing it only as bytes arrive.
    fn read_body(&mut self, len: u64, cur: Current) -> Result<(), Error> {
        self.buf.clear();
        let got = (&mut self.inner)
            .take(len)
            .read_to_end(&mut self.buf)
            .map_err(|e| {
                let mut err = Error::io(self.offset, &e);
                err.record_index = Some(cur.index);
                err.record_type = Some(cur.rtype);
                err
            })? as u64;
        self.offset += got;
        if got < len {
            let mut err = self.rec_err(cur, ErrorKind::Truncated(Part::RecordBody));
            err.offset = self.offset;
            return Err(err);
        }
        Ok(())
    }

    /// Skips page bytes a streaming caller left unread.
    fn skip_pending(&mut self) -> Result<(), Error> {
        if self.pending_skip == 0 {
            return Ok(());
        }
        let cur = self.pending.take().unwrap_or(Current {
            offset: self.offset,
            index: self.next_index,
            rtype: RecordType::PAGE_DATA,
        });
        let want = self.pending_skip;
        self.pending_skip = 0;
        // Discard through the body buffer in large reads (io::copy's 8 KiB
        // buffer would cost a syscall per two pages).
        let chunk = want.min(SKIP_CHUNK) as usize;
        if self.buf.len() < chunk {
            self.buf.resize(chunk, 0);
        }
        let mut got = 0u64;
        while got < want {
            let n = (want - got).min(self.buf.len() as u64) as usize;
            match self.inner.read(&mut self.buf[..n]) {
                Ok(0) => break,
                Ok(k) => got += k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.offset += got;
                    return Err(Error::io(self.offset, &e));
                }
            }
        }
        self.offset += got;
        if got < want {
            let mut err = self.rec_err(cur, ErrorKind::Truncated(Part::RecordBody));
            err.offset = self.offset;
            return Err(err);
        }
        Ok(())
    }

    /// Reads a record header; `None` at a valid EOF.
    fn read_header(&mut self) -> Result<Option<(Current, u32)>, Error> {
        let start = self.offset;
        let mut hdr = [0u8; RECORD_HEADER_LEN];
        let n = read_upto(&mut self.inner, &mut hdr).map_err(|e| Error::io(start, &e))?;
        self.offset += n as u64;
        if n == 0 {
            return if self.grammar.eof_is_valid() {
                self.end = Some(if self.grammar.state() == State::BackChannel {
                    StreamEnd::BackChannelEof
                } else {
                    StreamEnd::EofAfterCheckpoint
                });
                Ok(None)
            } else {
                Err(Error {
                    offset: start,
                    record_index: Some(self.next_index),
                    record_type: None,
                    kind: ErrorKind::MissingEnd,
                })
            };
        }
        if n < RECORD_HEADER_LEN {
            return Err(Error {
                offset: self.offset,
                record_index: Some(self.next_index),
                record_type: None,
                kind: ErrorKind::Truncated(Part::RecordHeader),
            });
        }
        let cur = Current {
            offset: start,
            index: self.next_index,
            rtype: RecordType(self.endian.u32(&hdr, 0)),
        };
        let len = self.endian.u32(&hdr, 4);
        if len > MAX_RECORD_LEN {
            return Err(self.rec_err(cur, ErrorKind::RecordTooLong(len)));
        }
        if !cur.rtype.is_known() && !cur.rtype.is_optional() && !cur.rtype.is_xcmig_extension() {
            return Err(self.rec_err(cur, ErrorKind::UnknownMandatory(cur.rtype.0)));
        }
        if cur.rtype == RecordType::XCMIG_COMPRESSED_PAGE_DATA && len > MAX_COMPRESSED_BODY {
            return Err(self.rec_err(
                cur,
                ErrorKind::BadLength {
                    rule: super::error::LengthRule::AtMost(u64::from(MAX_COMPRESSED_BODY)),
                    got: u64::from(len),
                },
            ));
        }
        self.next_index += 1;
        Ok(Some((cur, len)))
    }

    /// Reads and checks the padding after a body of `len` bytes.
    fn read_padding(&mut self, len: u32, cur: Current) -> Result<(), Error> {
        let pad = (padded_len(u64::from(len)) - u64::from(len)) as usize;
        if pad > 0 {
            let mut p = [0u8; 8];
            self.read_exact_part(&mut p[..pad], Part::Padding, cur)?;
            if self.reserved == Reserved::Reject && p[..pad].iter().any(|&b| b != 0) {
                return Err(self.rec_err(cur, ErrorKind::NonZeroPadding));
            }
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<bool, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.end.is_some() {
            return Ok(false);
        }
        self.skip_pending().map_err(|e| self.fail(e))?;
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, Error> {
        if !self.begin()? {
            return Ok(None);
        }
        let (cur, len) = match self.read_header() {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        if cur.rtype == RecordType::PAGE_DATA {
            return self.full_page_data(cur, len).map(Some);
        }
        self.finish_record(cur, len).map(Some)
    }

    /// A whole PAGE_DATA record, checked in the same order as the streaming
    /// path (header and pfn array before the pages), so both paths give the
    /// same verdict on every input.
    fn full_page_data(&mut self, cur: Current, len: u32) -> Result<Record<'_>, Error> {
        if let Err(e) = self.page_data_head(len, cur) {
            return Err(self.fail(e));
        }
        let pfn_bytes = self.buf.len();
        let want = std::mem::take(&mut self.pending_skip);
        let got = match (&mut self.inner).take(want).read_to_end(&mut self.buf) {
            Ok(n) => n as u64,
            Err(e) => {
                let mut err = Error::io(self.offset, &e);
                err.record_index = Some(cur.index);
                err.record_type = Some(cur.rtype);
                return Err(self.fail(err));
            }
        };
        self.offset += got;
        if got < want {
            let mut err = self.rec_err(cur, ErrorKind::Truncated(Part::RecordBody));
            err.offset = self.offset;
            return Err(self.fail(err));
        }
        self.pending = None;
        Ok(Record::PageData(PageData::from_parts(
            &self.entries,
            &self.buf[pfn_bytes..],
        )))
    }

    /// Reads the body and padding of a record whose header was read, then
    /// parses it and runs the grammar.
    fn finish_record(&mut self, cur: Current, len: u32) -> Result<Record<'_>, Error> {
        if let Err(e) = self
            .read_body(u64::from(len), cur)
            .and_then(|_| self.read_padding(len, cur))
        {
            return Err(self.fail(e));
        }
        // Field-level borrows: the record borrows the body buffer while the
        // grammar, warnings and end marker are updated.
        let rec = match record::parse(
            cur.rtype,
            &self.buf,
            self.endian,
            self.reserved,
            &mut self.entries,
        ) {
            Ok(r) => r,
            Err(kind) => {
                let e = Error::in_record(cur.offset, cur.index, cur.rtype, kind);
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        match self.grammar.feed(&rec) {
            Ok(None) => {}
            // A field of its own, so it is updated while the record borrows
            // the body buffer.
            Ok(Some(kind)) => self.warnings.push(cur, kind),
            Err(v) => {
                let e = Error::in_record(cur.offset, cur.index, cur.rtype, ErrorKind::Grammar(v));
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        if let Record::End = rec {
            self.end = Some(StreamEnd::End);
        }
        Ok(rec)
    }

    /// Streaming variant: for PAGE_DATA reads only the pfn array and leaves
    /// the page bytes in the input.
    fn next_item(&mut self) -> Result<Option<Item<'_, R>>, Error> {
        if !self.begin()? {
            return Ok(None);
        }
        let (cur, len) = match self.read_header() {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        if cur.rtype != RecordType::PAGE_DATA {
            return self.finish_record(cur, len).map(|r| Some(Item::Record(r)));
        }
        match self.page_data_head(len, cur) {
            Ok(pages) => {
                self.pending = Some(cur);
                Ok(Some(Item::Pages(PageReader {
                    core: self,
                    cur,
                    remaining: pages,
                })))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads and checks the PAGE_DATA header and pfn array; returns the
    /// number of pages that follow in the input.
    fn page_data_head(&mut self, len: u32, cur: Current) -> Result<u64, Error> {
        let len64 = u64::from(len);
        if len64 < 8 {
            return Err(self.rec_err(
                cur,
                ErrorKind::BadLength {
                    rule: super::error::LengthRule::AtLeast(8),
                    got: len64,
                },
            ));
        }
        let mut hdr = [0u8; 8];
        self.read_exact_part(&mut hdr, Part::RecordBody, cur)?;
        let count = record::page_data_count(&hdr, self.endian, self.reserved)
            .map_err(|k| self.rec_err(cur, k))?;
        let pfn_bytes = 8 * u64::from(count);
        if len64 < 8 + pfn_bytes {
            return Err(self.rec_err(
                cur,
                ErrorKind::BadLength {
                    rule: super::error::LengthRule::AtLeast(8 + pfn_bytes),
                    got: len64,
                },
            ));
        }
        self.read_body(pfn_bytes, cur)?;
        let with_data =
            record::decode_pfns(&self.buf, self.endian, self.reserved, &mut self.entries)
                .map_err(|k| self.rec_err(cur, k))?;
        record::page_data_length(len64, count, with_data).map_err(|k| self.rec_err(cur, k))?;
        let rec = Record::PageData(PageData::entries_only(&self.entries));
        let warning = self
            .grammar
            .feed(&rec)
            .map_err(|v| self.rec_err(cur, ErrorKind::Grammar(v)))?;
        if let Some(w) = warning {
            self.warn(cur, w);
        }
        // A PAGE_DATA body is 8 + 8n + 4096m bytes: never padded.
        self.pending_skip = with_data as u64 * PAGE_SIZE as u64;
        Ok(with_data as u64)
    }

    fn expect_eof(&mut self) -> Result<(), Error> {
        let mut b = [0u8; 1];
        let n = read_upto(&mut self.inner, &mut b).map_err(|e| Error::io(self.offset, &e))?;
        if n != 0 {
            return Err(Error::at(self.offset, ErrorKind::TrailingData));
        }
        Ok(())
    }
}

/// One step of [`Reader::next_item`]: a whole record, or a PAGE_DATA record
/// whose pages are still in the input.
#[derive(Debug)]
pub enum Item<'r, R: Read> {
    /// Any record but PAGE_DATA, fully read and checked.
    Record(Record<'r>),
    /// A checked PAGE_DATA header and pfn array; read the pages through it.
    Pages(PageReader<'r, R>),
}

/// The page bytes of one PAGE_DATA record, read straight from the input into
/// the caller's memory (e.g. a mapping of guest frames). Pages not read are
/// skipped by the next call on the reader.
#[derive(Debug)]
pub struct PageReader<'r, R: Read> {
    core: &'r mut Core<R>,
    cur: Current,
    remaining: u64,
}

impl<R: Read> PageReader<'_, R> {
    /// The record's pfn/type array.
    pub fn entries(&self) -> &[PfnEntry] {
        &self.core.entries
    }

    /// Number of pages in the record (entries whose type carries data).
    pub fn data_pages(&self) -> usize {
        record::data_pages(&self.core.entries)
    }

    /// Pages not yet read.
    pub fn remaining_pages(&self) -> u64 {
        self.remaining
    }

    /// Offset of the record in the stream.
    pub fn record_offset(&self) -> u64 {
        self.cur.offset
    }

    /// Index of the record in the stream.
    pub fn record_index(&self) -> u64 {
        self.cur.index
    }

    /// Reads the next `dst.len() / 4096` pages into `dst`, in entry order of
    /// the data-bearing entries. `dst.len()` must be a multiple of 4096 and
    /// at most the remaining bytes.
    pub fn read_pages(&mut self, dst: &mut [u8]) -> Result<(), Error> {
        if let Some(e) = &self.core.failed {
            return Err(e.clone());
        }
        let pages = (dst.len() / PAGE_SIZE) as u64;
        if dst.len() % PAGE_SIZE != 0 || pages > self.remaining {
            return Err(self.core.rec_err(
                self.cur,
                ErrorKind::Io {
                    kind: io::ErrorKind::InvalidInput,
                    message: format!(
                        "read_pages: {} bytes requested, {} pages remain",
                        dst.len(),
                        self.remaining
                    ),
                },
            ));
        }
        let cur = self.cur;
        // The bytes are now consumed here, not by the deferred skip.
        self.core.pending_skip -= dst.len() as u64;
        self.remaining -= pages;
        let r = self.core.read_exact_part(dst, Part::RecordBody, cur);
        if let Err(e) = r {
            self.core.pending_skip = 0;
            self.remaining = 0;
            return Err(self.core.fail(e));
        }
        Ok(())
    }

    /// Reads all remaining pages into `dst` (exactly `remaining_pages() * 4096` bytes).
    pub fn read_all(&mut self, dst: &mut [u8]) -> Result<(), Error> {
        if dst.len() as u64 != self.remaining * PAGE_SIZE as u64 {
            return Err(self.core.rec_err(
                self.cur,
                ErrorKind::Io {
                    kind: io::ErrorKind::InvalidInput,
                    message: format!(
                        "read_all: {} bytes given, {} pages remain",
                        dst.len(),
                        self.remaining
                    ),
                },
            ));
        }
        self.read_pages(dst)
    }

    /// Skips the remaining pages now (rather than on the next reader call).
    pub fn skip(self) -> Result<(), Error> {
        let r = self.core.skip_pending();
        if let Err(e) = &r {
            self.core.failed = Some(e.clone());
        }
        r
    }
}

/// Reads a libxc stream: headers on construction, then one record per call.
///
/// ```no_run
/// # fn main() -> Result<(), xcmig_stream::Error> {
/// use xcmig_stream::{Reader, Record};
/// let file = std::fs::File::open("guest.xc").unwrap();
/// let mut r = Reader::new(std::io::BufReader::new(file))?;
/// while let Some(rec) = r.next_record()? {
///     if let Record::PageData(pd) = rec {
///         for (entry, page) in pd.pages() {
///             let _ = (entry.pfn, page);
///         }
///     }
/// }
/// for w in r.warnings() {
///     eprintln!("warning: {w}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reader<R> {
    core: Core<R>,
    image: ImageHeader,
    domain: DomainHeader,
}

/// Checks the 24-byte image header.
pub fn parse_image_header(b: &[u8; IMAGE_HEADER_LEN]) -> Result<ImageHeader, ErrorKind> {
    let be = Endian::Big;
    let marker = be.u64(b, 0);
    if marker != IHDR_MARKER {
        return Err(ErrorKind::BadMarker(marker));
    }
    let id = be.u32(b, 8);
    if id != IHDR_ID {
        return Err(ErrorKind::BadId(id));
    }
    let vnum = be.u32(b, 12);
    let version = Version::from_number(vnum).ok_or(ErrorKind::UnsupportedVersion(vnum))?;
    let options = be.u16(b, 16);
    if options & !IHDR_OPT_BIG_ENDIAN != 0 {
        return Err(ErrorKind::ReservedOptions(options & !IHDR_OPT_BIG_ENDIAN));
    }
    if b[18..24].iter().any(|&x| x != 0) {
        return Err(ErrorKind::ReservedImageHeader);
    }
    let endian = if options & IHDR_OPT_BIG_ENDIAN != 0 {
        Endian::Big
    } else {
        Endian::Little
    };
    Ok(ImageHeader { version, endian })
}

/// Checks the 16-byte domain header in byte order `endian`.
pub fn parse_domain_header(
    b: &[u8; DOMAIN_HEADER_LEN],
    endian: Endian,
) -> Result<DomainHeader, ErrorKind> {
    let t = endian.u32(b, 0);
    let domain_type = DomainType::from_number(t).ok_or(ErrorKind::UnknownDomainType(t))?;
    let page_shift = endian.u16(b, 4);
    if u32::from(page_shift) != PAGE_SHIFT {
        return Err(ErrorKind::BadPageShift(page_shift));
    }
    let reserved = endian.u16(b, 6);
    if reserved != 0 {
        return Err(ErrorKind::ReservedDomainHeader(reserved));
    }
    Ok(DomainHeader {
        domain_type,
        page_shift,
        xen_major: endian.u32(b, 8),
        xen_minor: endian.u32(b, 12),
    })
}

impl<R: Read> Reader<R> {
    /// Reads and checks the image and domain headers, with default options
    /// (checkpointed streams accepted).
    pub fn new(inner: R) -> Result<Reader<R>, Error> {
        Reader::with_options(inner, ReaderOptions::default())
    }

    /// Reads and checks the headers with `options`.
    pub fn with_options(mut inner: R, options: ReaderOptions) -> Result<Reader<R>, Error> {
        let start = options.start_offset;
        let mut ih: [u8; IMAGE_HEADER_LEN] = read_header(&mut inner, start, Part::ImageHeader)?;
        if options.reserved == Reserved::Ignore {
            // Keep only what the spec defines: options bit 0.
            ih[16] = 0;
            ih[17] &= IHDR_OPT_BIG_ENDIAN as u8;
            ih[18..24].fill(0);
        }
        let image = parse_image_header(&ih).map_err(|k| Error::at(start, k))?;
        let dstart = start + IMAGE_HEADER_LEN as u64;
        let mut dh: [u8; DOMAIN_HEADER_LEN] = read_header(&mut inner, dstart, Part::DomainHeader)?;
        if options.reserved == Reserved::Ignore {
            dh[6..8].fill(0);
        }
        let domain = parse_domain_header(&dh, image.endian).map_err(|k| Error::at(dstart, k))?;
        let grammar = Grammar::new(
            image.version,
            domain.domain_type,
            GrammarOptions {
                channel: Channel::Forward,
                ..options.grammar
            },
        );
        let offset = dstart + DOMAIN_HEADER_LEN as u64;
        Ok(Reader {
            core: Core::new(inner, image.endian, grammar, &options, offset),
            image,
            domain,
        })
    }

    /// The image header.
    pub fn image_header(&self) -> &ImageHeader {
        &self.image
    }

    /// The domain header.
    pub fn domain_header(&self) -> &DomainHeader {
        &self.domain
    }

    /// The grammar (state, checkpoint count, PV width).
    pub fn grammar(&self) -> &Grammar {
        &self.core.grammar
    }

    /// Bytes consumed so far, plus the start offset.
    pub fn offset(&self) -> u64 {
        self.core.offset
    }

    /// Sets the offset used in reports, e.g. after the caller read bytes of
    /// an enclosing stream from [`Reader::get_mut`] between two records.
    pub fn set_offset(&mut self, offset: u64) {
        self.core.offset = offset;
    }

    /// Records read so far.
    pub fn records_read(&self) -> u64 {
        self.core.next_index
    }

    /// Reads, checks and returns the next record, or `None` once the stream
    /// has ended (see [`Reader::end`]). The record borrows the reader's
    /// buffer until the next call. After an error every call returns it again.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, Error> {
        self.core.next_record()
    }

    /// Like [`Reader::next_record`], but a PAGE_DATA record comes as a
    /// [`PageReader`] with its pfn array checked and its pages still in the
    /// input, so they can be read straight into their destination.
    pub fn next_item(&mut self) -> Result<Option<Item<'_, R>>, Error> {
        self.core.next_item()
    }

    /// How the stream ended, once it has.
    pub fn end(&self) -> Option<StreamEnd> {
        self.core.end
    }

    /// Reads to the end of the stream, checking every record and skipping
    /// page contents; returns how it ended.
    pub fn verify_to_end(&mut self) -> Result<StreamEnd, Error> {
        while self.next_item()?.is_some() {}
        Ok(self.core.end.unwrap_or(StreamEnd::End))
    }

    /// After END: fails with [`ErrorKind::TrailingData`] if the input has
    /// more bytes. (The reader itself never reads past END, so a caller
    /// embedding the stream in another can continue instead.)
    pub fn expect_eof(&mut self) -> Result<(), Error> {
        self.core.expect_eof()
    }

    /// Warnings so far (at most `max_warnings`).
    pub fn warnings(&self) -> &[Warning] {
        &self.core.warnings.kept
    }

    /// Takes the warnings collected so far.
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.core.warnings.kept)
    }

    /// Warnings not kept because `max_warnings` was reached.
    pub fn warnings_dropped(&self) -> u64 {
        self.core.warnings.dropped
    }

    /// The input.
    pub fn get_ref(&self) -> &R {
        &self.core.inner
    }

    /// The input, e.g. to read an enclosing stream's records after CHECKPOINT.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.core.inner
    }

    /// Gives back the input.
    pub fn into_inner(self) -> R {
        self.core.inner
    }
}

/// Reads the COLO back channel (secondary to primary): no headers, only
/// CHECKPOINT_DIRTY_PFN_LIST records; EOF at a record boundary ends it.
#[derive(Debug)]
pub struct BackChannelReader<R> {
    core: Core<R>,
}

impl<R: Read> BackChannelReader<R> {
    /// A back-channel reader; `endian` is the forward stream's byte order.
    pub fn new(inner: R, endian: Endian) -> BackChannelReader<R> {
        let opts = ReaderOptions {
            grammar: GrammarOptions {
                channel: Channel::Back,
                ..GrammarOptions::default()
            },
            ..ReaderOptions::default()
        };
        let grammar = Grammar::new(Version::V3, DomainType::X86Hvm, opts.grammar);
        BackChannelReader {
            core: Core::new(inner, endian, grammar, &opts, 0),
        }
    }

    /// The next record, or `None` at EOF.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, Error> {
        self.core.next_record()
    }

    /// The input.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.core.inner
    }

    /// Gives back the input.
    pub fn into_inner(self) -> R {
        self.core.inner
    }
}

impl<R: Read> Drop for PageReader<'_, R> {
    fn drop(&mut self) {
        // Unread pages stay counted in `pending_skip`; remember which record
        // they belong to for error reports from the deferred skip.
        if self.core.pending_skip > 0 {
            self.core.pending = Some(self.cur);
        }
    }
}
