//! Writing a libxc stream to any [`Write`].
//!
//! Every record goes out as one vectored write of header, body parts and
//! padding ([`Write::write_vectored`], looping on partial writes), so page
//! contents go from the caller's slices (e.g. a foreign mapping of guest
//! memory) to the output without being copied. The writer applies the same
//! layout rules as the reader and, unless told otherwise, runs the
//! [`Grammar`], so what it writes is a valid stream in the spec's order.

use std::io::Write;

use crate::output::write_all_vectored;

use super::compressed::{self, CompressedPages, Compression, MAX_COMPRESSED_ENTRIES, STORED_PAGE};
use super::error::{Error, ErrorKind, LengthRule, Warning};
use super::grammar::{Channel, Grammar, GrammarOptions};
use super::record::{
    self, data_pages, Element, P2mFrames, PageData, Record, Reserved, VcpuContext,
};
use super::types::{
    DomainHeader, DomainType, HvmParam, ImageHeader, PfnEntry, RecordType, VcpuKind, Version,
    X86PvInfo, MAX_RECORD_LEN, PFN_MASK,
};
use crate::wire::{padded_len, Endian};
use crate::x86::{CpuidLeaf, MsrEntry, TscInfo, PAGE_SIZE};

/// Writer parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Image header to write (xcmig writes v3 little-endian; others for tests
    /// and conversions).
    pub image: ImageHeader,
    /// Grammar parameters.
    pub grammar: GrammarOptions,
    /// Run the grammar on every record and refuse out-of-order ones.
    pub check_grammar: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            image: ImageHeader::V3_LE,
            grammar: GrammarOptions::default(),
            check_grammar: true,
        }
    }
}

/// Writes a libxc stream.
///
/// ```
/// # fn main() -> Result<(), xcmig_stream::Error> {
/// use xcmig_stream::{DomainHeader, DomainType, PageType, PfnEntry, Writer, Reader};
/// let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17))?;
/// w.write_static_data_end()?;
/// let page = [0u8; 4096];
/// w.write_page_data(&[PfnEntry::new(0x100, PageType::NoTab)], &[&page])?;
/// w.write_end()?;
/// let bytes = w.into_inner();
/// let mut r = Reader::new(&bytes[..])?;
/// while r.next_record()?.is_some() {}
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Writer<W: Write> {
    inner: W,
    endian: Endian,
    offset: u64,
    next_index: u64,
    grammar: Option<Grammar>,
    scratch: Vec<u8>,
    entries: Vec<PfnEntry>,
    warnings: Vec<Warning>,
}

impl<W: Write> Writer<W> {
    /// Writes a v3 little-endian image header and `domain`, and checks
    /// everything written after against the grammar.
    pub fn new(inner: W, domain: &DomainHeader) -> Result<Writer<W>, Error> {
        Writer::with_options(inner, domain, WriterOptions::default())
    }

    /// Writes the headers given by `options` and `domain`.
    pub fn with_options(
        mut inner: W,
        domain: &DomainHeader,
        options: WriterOptions,
    ) -> Result<Writer<W>, Error> {
        let ih = options.image.to_bytes();
        let dh = domain.to_bytes(options.image.endian);
        write_all_vectored(&mut inner, &[&ih, &dh]).map_err(|e| Error::io(0, &e))?;
        let grammar = options.check_grammar.then(|| {
            Grammar::new(
                options.image.version,
                domain.domain_type,
                GrammarOptions {
                    channel: Channel::Forward,
                    ..options.grammar
                },
            )
        });
        Ok(Writer {
            inner,
            endian: options.image.endian,
            offset: (ih.len() + dh.len()) as u64,
            next_index: 0,
            grammar,
            scratch: Vec::new(),
            entries: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// A writer for the COLO back channel: no headers, only
    /// CHECKPOINT_DIRTY_PFN_LIST records, in little-endian order.
    pub fn back_channel(inner: W) -> Writer<W> {
        let grammar = Grammar::new(
            Version::V3,
            DomainType::X86Hvm,
            GrammarOptions {
                channel: Channel::Back,
                ..GrammarOptions::default()
            },
        );
        Writer {
            inner,
            endian: Endian::Little,
            offset: 0,
            next_index: 0,
            grammar: Some(grammar),
            scratch: Vec::new(),
            entries: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Records written so far.
    pub fn records_written(&self) -> u64 {
        self.next_index
    }

    /// Byte order of the records.
    pub fn endian(&self) -> Endian {
        self.endian
    }

    /// Grammar warnings about records written (empty for streams in the
    /// spec's order).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    fn err(&self, rtype: RecordType, kind: ErrorKind) -> Error {
        Error::in_record(self.offset, self.next_index, rtype, kind)
    }

    /// Runs the grammar on `rec` (when enabled).
    fn check(&mut self, rec: &Record<'_>) -> Result<(), Error> {
        let rtype = rec.record_type();
        if let Some(g) = &mut self.grammar {
            match g.feed(rec) {
                Ok(Some(kind)) => self.warnings.push(Warning {
                    offset: self.offset,
                    record_index: self.next_index,
                    record_type: rtype,
                    kind,
                }),
                Ok(None) => {}
                Err(v) => return Err(self.err(rtype, ErrorKind::Grammar(v))),
            }
        }
        Ok(())
    }

    /// Writes header, `parts` and padding as one vectored write.
    fn emit(&mut self, rtype: RecordType, parts: &[&[u8]]) -> Result<(), Error> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if len > u64::from(MAX_RECORD_LEN) {
            return Err(self.err(
                rtype,
                ErrorKind::RecordTooLong(len.min(u64::from(u32::MAX)) as u32),
            ));
        }
        let mut hdr = Vec::with_capacity(8);
        self.endian.put_u32(&mut hdr, rtype.0);
        self.endian.put_u32(&mut hdr, len as u32);
        let pad = [0u8; 8];
        let pad_len = (padded_len(len) - len) as usize;
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
        all.push(&hdr);
        all.extend_from_slice(parts);
        all.push(&pad[..pad_len]);
        let start = self.offset;
        write_all_vectored(&mut self.inner, &all).map_err(|e| {
            let mut err = Error::io(start, &e);
            err.record_index = Some(self.next_index);
            err.record_type = Some(rtype);
            err
        })?;
        self.offset += 8 + padded_len(len);
        self.next_index += 1;
        Ok(())
    }

    /// Encodes a fixed or array record into scratch, checks it with the
    /// reader's own parser and the grammar, and writes it.
    fn emit_encoded(&mut self, rtype: RecordType) -> Result<(), Error> {
        let scratch = std::mem::take(&mut self.scratch);
        let mut entries = std::mem::take(&mut self.entries);
        let result =
            match record::parse(rtype, &scratch, self.endian, Reserved::Reject, &mut entries) {
                Ok(rec) => self.check(&rec),
                Err(kind) => Err(self.err(rtype, kind)),
            }
            .and_then(|_| self.emit(rtype, &[&scratch]));
        self.scratch = scratch;
        self.entries = entries;
        result
    }

    /// END.
    pub fn write_end(&mut self) -> Result<(), Error> {
        self.check(&Record::End)?;
        self.emit(RecordType::END, &[])
    }

    /// STATIC_DATA_END.
    pub fn write_static_data_end(&mut self) -> Result<(), Error> {
        self.check(&Record::StaticDataEnd)?;
        self.emit(RecordType::STATIC_DATA_END, &[])
    }

    /// VERIFY.
    pub fn write_verify(&mut self) -> Result<(), Error> {
        self.check(&Record::Verify)?;
        self.emit(RecordType::VERIFY, &[])
    }

    /// CHECKPOINT.
    pub fn write_checkpoint(&mut self) -> Result<(), Error> {
        self.check(&Record::Checkpoint)?;
        self.emit(RecordType::CHECKPOINT, &[])
    }

    /// PAGE_DATA: `entries` (at least one) and the pages of the entries whose
    /// type carries data, in order. `pages` may split the bytes any way
    /// (one slice per page, or one per contiguous mapping); their total must
    /// be 4096 per data-bearing entry. The page bytes are not copied.
    pub fn write_page_data(&mut self, entries: &[PfnEntry], pages: &[&[u8]]) -> Result<(), Error> {
        let rtype = RecordType::PAGE_DATA;
        if entries.is_empty() {
            return Err(self.err(rtype, ErrorKind::ZeroPageCount));
        }
        if entries.len() > u32::MAX as usize {
            return Err(self.err(rtype, ErrorKind::RecordTooLong(u32::MAX)));
        }
        if let Some(e) = entries.iter().find(|e| e.pfn & !PFN_MASK != 0) {
            return Err(self.err(rtype, ErrorKind::PfnTooLarge(e.pfn)));
        }
        let expected = data_pages(entries) as u64 * PAGE_SIZE as u64;
        let got: u64 = pages.iter().map(|p| p.len() as u64).sum();
        if got != expected {
            return Err(self.err(rtype, ErrorKind::PageDataMismatch { expected, got }));
        }
        self.check(&Record::PageData(PageData::entries_only(entries)))?;
        let mut head = std::mem::take(&mut self.scratch);
        head.clear();
        self.endian.put_u32(&mut head, entries.len() as u32);
        self.endian.put_u32(&mut head, 0);
        for e in entries {
            self.endian.put_u64(&mut head, e.to_raw());
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(pages.len() + 1);
        parts.push(&head);
        parts.extend(pages.iter().copied());
        let r = self.emit(rtype, &parts);
        drop(parts);
        self.scratch = head;
        r
    }

    /// XCMIG_COMPRESSED_PAGE_DATA (xcmig's extension): `entries` as for
    /// PAGE_DATA (at most [`MAX_COMPRESSED_ENTRIES`]), the compressor, and
    /// the data pages as [`CompressedPages`] made by a
    /// [`PageCompressor`]: one size per data-bearing entry, each 1..=4096,
    /// adding up to the octets given. The octets are not copied.
    pub fn write_compressed_page_data(
        &mut self,
        entries: &[PfnEntry],
        compression: Compression,
        pages: &CompressedPages,
    ) -> Result<(), Error> {
        self.write_compressed_parts(entries, compression, &pages.sizes, &pages.data)
    }

    /// [`Writer::write_compressed_page_data`] from its parts: the size
    /// table and the pages' octets.
    pub fn write_compressed_parts(
        &mut self,
        entries: &[PfnEntry],
        compression: Compression,
        sizes: &[u16],
        data: &[u8],
    ) -> Result<(), Error> {
        let rtype = RecordType::XCMIG_COMPRESSED_PAGE_DATA;
        if entries.is_empty() {
            return Err(self.err(rtype, ErrorKind::ZeroPageCount));
        }
        if entries.len() > MAX_COMPRESSED_ENTRIES as usize {
            return Err(self.err(
                rtype,
                ErrorKind::TooManyEntries {
                    count: entries.len().min(u32::MAX as usize) as u32,
                    max: MAX_COMPRESSED_ENTRIES,
                },
            ));
        }
        if let Some(e) = entries.iter().find(|e| e.pfn & !PFN_MASK != 0) {
            return Err(self.err(rtype, ErrorKind::PfnTooLarge(e.pfn)));
        }
        let with_data = data_pages(entries);
        if sizes.len() != with_data {
            return Err(self.err(
                rtype,
                ErrorKind::PageDataMismatch {
                    expected: with_data as u64,
                    got: sizes.len() as u64,
                },
            ));
        }
        if let Some((i, &size)) = sizes
            .iter()
            .enumerate()
            .find(|&(_, &s)| s == 0 || s > STORED_PAGE)
        {
            return Err(self.err(
                rtype,
                ErrorKind::BadCompressedSize {
                    index: i as u32,
                    size,
                },
            ));
        }
        let total: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
        if total != data.len() as u64 {
            return Err(self.err(
                rtype,
                ErrorKind::PageDataMismatch {
                    expected: total,
                    got: data.len() as u64,
                },
            ));
        }
        self.check(&Record::PageData(PageData::entries_only(entries)))?;
        let mut head = std::mem::take(&mut self.scratch);
        compressed::encode_head(&mut head, self.endian, entries, compression, sizes);
        let r = self.emit(rtype, &[&head, data]);
        self.scratch = head;
        r
    }

    /// X86_PV_INFO.
    pub fn write_x86_pv_info(&mut self, info: &X86PvInfo) -> Result<(), Error> {
        self.scratch.clear();
        self.scratch.push(info.guest_width);
        self.scratch.push(info.pt_levels);
        self.scratch.extend_from_slice(&[0; 6]);
        self.emit_encoded(RecordType::X86_PV_INFO)
    }

    /// X86_PV_P2M_FRAMES: the frames holding the P2M entries of
    /// `start_pfn..=end_pfn`.
    pub fn write_x86_pv_p2m_frames(
        &mut self,
        start_pfn: u32,
        end_pfn: u32,
        frames: &[u64],
    ) -> Result<(), Error> {
        self.scratch.clear();
        self.endian.put_u32(&mut self.scratch, start_pfn);
        self.endian.put_u32(&mut self.scratch, end_pfn);
        for f in frames {
            self.endian.put_u64(&mut self.scratch, *f);
        }
        self.emit_encoded(RecordType::X86_PV_P2M_FRAMES)
    }

    /// One of the X86_PV_VCPU_* records; `context` is not copied.
    pub fn write_x86_pv_vcpu(
        &mut self,
        kind: VcpuKind,
        vcpu_id: u32,
        context: &[u8],
    ) -> Result<(), Error> {
        self.check(&Record::X86PvVcpu(VcpuContext {
            kind,
            vcpu_id,
            context,
        }))?;
        let mut head = Vec::with_capacity(8);
        self.endian.put_u32(&mut head, vcpu_id);
        self.endian.put_u32(&mut head, 0);
        self.emit(kind.record_type(), &[&head, context])
    }

    /// X86_PV_VCPU_MSRS for `vcpu_id`: the vCPU's MSRs in the record's
    /// `{u32 index, u32 reserved, u64 value}` form.
    pub fn write_x86_pv_vcpu_msrs(&mut self, vcpu_id: u32, msrs: &[MsrEntry]) -> Result<(), Error> {
        let mut body = Vec::with_capacity(msrs.len() * MsrEntry::SIZE);
        for m in msrs {
            m.encode(&mut body, self.endian);
        }
        self.write_x86_pv_vcpu(VcpuKind::Msrs, vcpu_id, &body)
    }

    /// SHARED_INFO: exactly one page.
    pub fn write_shared_info(&mut self, page: &[u8]) -> Result<(), Error> {
        let rtype = RecordType::SHARED_INFO;
        if page.len() != PAGE_SIZE {
            return Err(self.err(
                rtype,
                ErrorKind::BadLength {
                    rule: LengthRule::Exactly(PAGE_SIZE as u64),
                    got: page.len() as u64,
                },
            ));
        }
        self.check(&Record::SharedInfo(page))?;
        self.emit(rtype, &[page])
    }

    /// X86_TSC_INFO.
    pub fn write_x86_tsc_info(&mut self, tsc: &TscInfo) -> Result<(), Error> {
        self.scratch.clear();
        let e = self.endian;
        e.put_u32(&mut self.scratch, tsc.mode);
        e.put_u32(&mut self.scratch, tsc.gtsc_khz);
        e.put_u64(&mut self.scratch, tsc.elapsed_nsec);
        e.put_u32(&mut self.scratch, tsc.incarnation);
        e.put_u32(&mut self.scratch, 0);
        self.emit_encoded(RecordType::X86_TSC_INFO)
    }

    /// HVM_CONTEXT: a non-empty blob, not copied.
    pub fn write_hvm_context(&mut self, blob: &[u8]) -> Result<(), Error> {
        let rtype = RecordType::HVM_CONTEXT;
        if blob.is_empty() {
            return Err(self.err(
                rtype,
                ErrorKind::BadLength {
                    rule: LengthRule::AtLeast(1),
                    got: 0,
                },
            ));
        }
        self.check(&Record::HvmContext(blob))?;
        self.emit(rtype, &[blob])
    }

    /// HVM_PARAMS.
    pub fn write_hvm_params(&mut self, params: &[HvmParam]) -> Result<(), Error> {
        self.scratch.clear();
        let e = self.endian;
        e.put_u32(&mut self.scratch, params.len() as u32);
        e.put_u32(&mut self.scratch, 0);
        for p in params {
            p.encode(&mut self.scratch, e);
        }
        self.emit_encoded(RecordType::HVM_PARAMS)
    }

    /// TOOLSTACK (deprecated; for tests and conversions only).
    pub fn write_toolstack(&mut self, blob: &[u8]) -> Result<(), Error> {
        self.check(&Record::Toolstack(blob))?;
        self.emit(RecordType::TOOLSTACK, &[blob])
    }

    /// CHECKPOINT_DIRTY_PFN_LIST (back channel).
    pub fn write_checkpoint_dirty_pfn_list(&mut self, pfns: &[u64]) -> Result<(), Error> {
        self.scratch.clear();
        for p in pfns {
            self.endian.put_u64(&mut self.scratch, *p);
        }
        self.emit_encoded(RecordType::CHECKPOINT_DIRTY_PFN_LIST)
    }

    /// X86_CPUID_POLICY (at least one leaf).
    pub fn write_x86_cpuid_policy(&mut self, leaves: &[CpuidLeaf]) -> Result<(), Error> {
        self.scratch.clear();
        for l in leaves {
            l.encode(&mut self.scratch, self.endian);
        }
        self.emit_encoded(RecordType::X86_CPUID_POLICY)
    }

    /// X86_MSR_POLICY (at least one entry).
    pub fn write_x86_msr_policy(&mut self, msrs: &[MsrEntry]) -> Result<(), Error> {
        self.scratch.clear();
        for m in msrs {
            m.encode(&mut self.scratch, self.endian);
        }
        self.emit_encoded(RecordType::X86_MSR_POLICY)
    }

    /// An optional record (`rtype` must have bit 31 set).
    pub fn write_optional(&mut self, rtype: RecordType, body: &[u8]) -> Result<(), Error> {
        if !rtype.is_optional() {
            return Err(self.err(rtype, ErrorKind::UnknownMandatory(rtype.0)));
        }
        self.check(&Record::Optional {
            record_type: rtype,
            body,
        })?;
        self.emit(rtype, &[body])
    }

    /// Writes any record, e.g. one read from a [`super::Reader`] (arrays are
    /// re-encoded in this writer's byte order).
    pub fn write_record(&mut self, rec: &Record<'_>) -> Result<(), Error> {
        match rec {
            Record::End => self.write_end(),
            Record::PageData(pd) => self.write_page_data(pd.entries(), &[pd.data()]),
            Record::CompressedPageData(c) => {
                let sizes: Vec<u16> = (0..c.data_pages()).map(|i| c.size(i)).collect();
                self.write_compressed_parts(c.entries(), c.compression(), &sizes, c.data())
            }
            Record::X86PvInfo(i) => self.write_x86_pv_info(i),
            Record::X86PvP2mFrames(P2mFrames {
                start_pfn,
                end_pfn,
                frames,
            }) => self.write_x86_pv_p2m_frames(*start_pfn, *end_pfn, &frames.to_vec()),
            Record::X86PvVcpu(v) => self.write_x86_pv_vcpu(v.kind, v.vcpu_id, v.context),
            Record::SharedInfo(b) => self.write_shared_info(b),
            Record::X86TscInfo(t) => self.write_x86_tsc_info(t),
            Record::HvmContext(b) => self.write_hvm_context(b),
            Record::HvmParams(p) => self.write_hvm_params(&p.to_vec()),
            Record::Toolstack(b) => self.write_toolstack(b),
            Record::Verify => self.write_verify(),
            Record::Checkpoint => self.write_checkpoint(),
            Record::CheckpointDirtyPfnList(p) => self.write_checkpoint_dirty_pfn_list(&p.to_vec()),
            Record::StaticDataEnd => self.write_static_data_end(),
            Record::X86CpuidPolicy(p) => self.write_x86_cpuid_policy(&p.to_vec()),
            Record::X86MsrPolicy(p) => self.write_x86_msr_policy(&p.to_vec()),
            Record::Optional { record_type, body } => self.write_optional(*record_type, body),
        }
    }

    /// Writes a record of any type with body `parts` and correct padding,
    /// without layout or grammar checks (for building invalid test input).
    pub fn write_raw(&mut self, rtype: RecordType, parts: &[&[u8]]) -> Result<(), Error> {
        self.emit(rtype, parts)
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush().map_err(|e| Error::io(self.offset, &e))
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The output (writing to it directly breaks the offsets reported).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives back the output.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_padded_to_eight_bytes() {
        let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
        w.write_static_data_end().unwrap();
        w.write_hvm_context(&[9; 3]).unwrap();
        let b = w.into_inner();
        assert_eq!(b.len(), 40 + 8 + 16);
        assert_eq!(
            &b[48..64],
            &[9, 0, 0, 0, 3, 0, 0, 0, 9, 9, 9, 0, 0, 0, 0, 0]
        );
    }
}
