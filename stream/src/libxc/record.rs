//! Typed records and the per-record layout rules (context free: rules that
//! need earlier records live in [`super::grammar`]).
//!
//! Record values borrow their variable parts from the buffer they were
//! parsed from; arrays stay in the stream's byte order and are decoded on
//! access ([`Array`]), so parsing a record never copies it.

use std::fmt;
use std::marker::PhantomData;

use super::error::{ErrorKind, LengthRule};
use super::types::{
    HvmParam, PfnEntry, RecordType, VcpuKind, X86PvInfo, PFN_MASK, PFN_RESERVED_MASK,
};
use crate::wire::Endian;
use crate::x86::{CpuidLeaf, MsrEntry, PageType, TscInfo, PAGE_SIZE};

/// What to do with non-zero reserved fields and padding.
///
/// The spec says savers zero them and restorers ignore them. A checker
/// wants them rejected ([`Reserved::Reject`], the default); a restore that
/// follows the spec to the letter (as libxenguest does) ignores them
/// ([`Reserved::Ignore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reserved {
    /// Non-zero reserved bits, bytes or padding are errors.
    #[default]
    Reject,
    /// They are ignored (PAGE_DATA pfn bits 52-59 are masked off).
    Ignore,
}

/// A fixed-size element of a record array.
pub trait Element: Copy {
    /// Wire size in bytes.
    const SIZE: usize;
    /// Decodes one element from `b[..SIZE]`.
    fn decode(b: &[u8], e: Endian) -> Self;
    /// Appends the wire form to `out`.
    fn encode(&self, out: &mut Vec<u8>, e: Endian);
}

impl Element for u64 {
    const SIZE: usize = 8;
    fn decode(b: &[u8], e: Endian) -> Self {
        e.u64(b, 0)
    }
    fn encode(&self, out: &mut Vec<u8>, e: Endian) {
        e.put_u64(out, *self)
    }
}

impl Element for HvmParam {
    const SIZE: usize = 16;
    fn decode(b: &[u8], e: Endian) -> Self {
        HvmParam {
            index: e.u64(b, 0),
            value: e.u64(b, 8),
        }
    }
    fn encode(&self, out: &mut Vec<u8>, e: Endian) {
        e.put_u64(out, self.index);
        e.put_u64(out, self.value);
    }
}

impl Element for CpuidLeaf {
    const SIZE: usize = 24;
    fn decode(b: &[u8], e: Endian) -> Self {
        CpuidLeaf {
            leaf: e.u32(b, 0),
            subleaf: e.u32(b, 4),
            a: e.u32(b, 8),
            b: e.u32(b, 12),
            c: e.u32(b, 16),
            d: e.u32(b, 20),
        }
    }
    fn encode(&self, out: &mut Vec<u8>, e: Endian) {
        for v in [self.leaf, self.subleaf, self.a, self.b, self.c, self.d] {
            e.put_u32(out, v);
        }
    }
}

impl Element for MsrEntry {
    const SIZE: usize = 16;
    fn decode(b: &[u8], e: Endian) -> Self {
        MsrEntry {
            idx: e.u32(b, 0),
            flags: e.u32(b, 4),
            val: e.u64(b, 8),
        }
    }
    fn encode(&self, out: &mut Vec<u8>, e: Endian) {
        e.put_u32(out, self.idx);
        e.put_u32(out, self.flags);
        e.put_u64(out, self.val);
    }
}

/// A borrowed array of `T` in the stream's byte order, decoded on access.
#[derive(Clone, Copy)]
pub struct Array<'a, T> {
    bytes: &'a [u8],
    endian: Endian,
    _t: PhantomData<T>,
}

impl<'a, T: Element> Array<'a, T> {
    /// Wraps `bytes` (its length must be a multiple of `T::SIZE`; a tail is ignored).
    pub fn new(bytes: &'a [u8], endian: Endian) -> Self {
        let whole = bytes.len() - bytes.len() % T::SIZE;
        Array {
            bytes: &bytes[..whole],
            endian,
            _t: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / T::SIZE
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Element `i`, if in range.
    pub fn get(&self, i: usize) -> Option<T> {
        let off = i.checked_mul(T::SIZE)?;
        let b = self.bytes.get(off..off + T::SIZE)?;
        Some(T::decode(b, self.endian))
    }

    /// Iterates over the elements.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = T> + 'a {
        let e = self.endian;
        self.bytes
            .chunks_exact(T::SIZE)
            .map(move |c| T::decode(c, e))
    }

    /// Decodes every element into a vector.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// The raw wire bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Byte order of the wire bytes.
    pub fn endian(&self) -> Endian {
        self.endian
    }
}

impl<T: Element + fmt::Debug> fmt::Debug for Array<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Element + PartialEq> PartialEq for Array<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// A PAGE_DATA record: the decoded pfn/type array and the page bytes, both
/// borrowed (no page is copied by the reader after it left the input).
#[derive(Clone, Copy, PartialEq)]
pub struct PageData<'a> {
    entries: &'a [PfnEntry],
    data: &'a [u8],
}

impl<'a> PageData<'a> {
    /// Pairs entries with their pages; `data` must hold 4096 bytes per entry
    /// whose type carries data, in entry order.
    pub fn new(entries: &'a [PfnEntry], data: &'a [u8]) -> Result<Self, ErrorKind> {
        let expected = data_pages(entries) as u64 * PAGE_SIZE as u64;
        if data.len() as u64 != expected {
            return Err(ErrorKind::PageDataMismatch {
                expected,
                got: data.len() as u64,
            });
        }
        Ok(PageData { entries, data })
    }

    /// A value from parts already checked against each other.
    pub(crate) fn from_parts(entries: &'a [PfnEntry], data: &'a [u8]) -> Self {
        debug_assert_eq!(data.len(), data_pages(entries) * PAGE_SIZE);
        PageData { entries, data }
    }

    /// A value with entries only, for callers that read page bytes separately
    /// (the streaming reader); `data()` is then empty.
    pub(crate) fn entries_only(entries: &'a [PfnEntry]) -> Self {
        PageData { entries, data: &[] }
    }

    /// The pfn/type array (`count` entries, at least one).
    pub fn entries(&self) -> &'a [PfnEntry] {
        self.entries
    }

    /// All page bytes, contiguous, one 4096-byte page per data-bearing entry.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Number of entries whose type carries a page of data.
    pub fn data_pages(&self) -> usize {
        data_pages(self.entries)
    }

    /// Each entry with its page (`None` for BROKEN, XALLOC, XTAB).
    pub fn pages(&self) -> impl Iterator<Item = (PfnEntry, Option<&'a [u8]>)> + 'a {
        let mut chunks = self.data.chunks_exact(PAGE_SIZE);
        self.entries.iter().map(move |e| {
            let page = if e.page_type.has_data() {
                chunks.next()
            } else {
                None
            };
            (*e, page)
        })
    }
}

impl fmt::Debug for PageData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageData")
            .field("entries", &self.entries)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Number of entries of `entries` carrying a page of data.
pub fn data_pages(entries: &[PfnEntry]) -> usize {
    entries.iter().filter(|e| e.page_type.has_data()).count()
}

/// An X86_PV_P2M_FRAMES record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct P2mFrames<'a> {
    /// First pfn covered.
    pub start_pfn: u32,
    /// Last pfn covered (inclusive).
    pub end_pfn: u32,
    /// The pfns of the frames holding the P2M for `start_pfn..=end_pfn`.
    pub frames: Array<'a, u64>,
}

impl P2mFrames<'_> {
    /// Frames needed to cover `start_pfn..=end_pfn` for a guest of `guest_width`
    /// bytes per P2M entry (`4096 / width` entries per frame).
    pub fn expected_frames(start_pfn: u32, end_pfn: u32, guest_width: u8) -> u64 {
        let per_frame = (PAGE_SIZE / usize::from(guest_width.max(1))) as u64;
        u64::from(end_pfn) / per_frame - u64::from(start_pfn) / per_frame + 1
    }
}

/// One of the X86_PV_VCPU_{BASIC,EXTENDED,XSAVE,MSRS} records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuContext<'a> {
    /// Which record.
    pub kind: VcpuKind,
    /// The vcpu.
    pub vcpu_id: u32,
    /// The hypercall blob (native layout of the saving host; opaque here).
    pub context: &'a [u8],
}

/// A record of a libxc stream, borrowing its variable parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record<'a> {
    /// END (0x0): end of stream.
    End,
    /// PAGE_DATA (0x1).
    PageData(PageData<'a>),
    /// X86_PV_INFO (0x2).
    X86PvInfo(X86PvInfo),
    /// X86_PV_P2M_FRAMES (0x3).
    X86PvP2mFrames(P2mFrames<'a>),
    /// X86_PV_VCPU_BASIC/EXTENDED/XSAVE/MSRS (0x4, 0x5, 0x6, 0xc).
    X86PvVcpu(VcpuContext<'a>),
    /// SHARED_INFO (0x7): one page.
    SharedInfo(&'a [u8]),
    /// X86_TSC_INFO (0x8).
    X86TscInfo(TscInfo),
    /// HVM_CONTEXT (0x9): non-empty blob.
    HvmContext(&'a [u8]),
    /// HVM_PARAMS (0xa).
    HvmParams(Array<'a, HvmParam>),
    /// TOOLSTACK (0xb, deprecated).
    Toolstack(&'a [u8]),
    /// VERIFY (0xd).
    Verify,
    /// CHECKPOINT (0xe).
    Checkpoint,
    /// CHECKPOINT_DIRTY_PFN_LIST (0xf, back channel).
    CheckpointDirtyPfnList(Array<'a, u64>),
    /// STATIC_DATA_END (0x10).
    StaticDataEnd,
    /// X86_CPUID_POLICY (0x11).
    X86CpuidPolicy(Array<'a, CpuidLeaf>),
    /// X86_MSR_POLICY (0x12).
    X86MsrPolicy(Array<'a, MsrEntry>),
    /// XCMIG_COMPRESSED_PAGE_DATA (0x58430001, xcmig's extension): PAGE_DATA
    /// with each page compressed.
    CompressedPageData(super::compressed::CompressedPageData<'a>),
    /// A record with bit 31 set, carried through unparsed.
    Optional {
        /// Its type.
        record_type: RecordType,
        /// Its body (without padding).
        body: &'a [u8],
    },
}

impl Record<'_> {
    /// The type number of this record.
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::End => RecordType::END,
            Record::PageData(_) => RecordType::PAGE_DATA,
            Record::X86PvInfo(_) => RecordType::X86_PV_INFO,
            Record::X86PvP2mFrames(_) => RecordType::X86_PV_P2M_FRAMES,
            Record::X86PvVcpu(v) => v.kind.record_type(),
            Record::SharedInfo(_) => RecordType::SHARED_INFO,
            Record::X86TscInfo(_) => RecordType::X86_TSC_INFO,
            Record::HvmContext(_) => RecordType::HVM_CONTEXT,
            Record::HvmParams(_) => RecordType::HVM_PARAMS,
            Record::Toolstack(_) => RecordType::TOOLSTACK,
            Record::Verify => RecordType::VERIFY,
            Record::Checkpoint => RecordType::CHECKPOINT,
            Record::CheckpointDirtyPfnList(_) => RecordType::CHECKPOINT_DIRTY_PFN_LIST,
            Record::StaticDataEnd => RecordType::STATIC_DATA_END,
            Record::X86CpuidPolicy(_) => RecordType::X86_CPUID_POLICY,
            Record::X86MsrPolicy(_) => RecordType::X86_MSR_POLICY,
            Record::CompressedPageData(_) => RecordType::XCMIG_COMPRESSED_PAGE_DATA,
            Record::Optional { record_type, .. } => *record_type,
        }
    }
}

fn exactly(body: &[u8], n: u64) -> Result<(), ErrorKind> {
    if body.len() as u64 != n {
        return Err(ErrorKind::BadLength {
            rule: LengthRule::Exactly(n),
            got: body.len() as u64,
        });
    }
    Ok(())
}

fn at_least(body: &[u8], n: u64) -> Result<(), ErrorKind> {
    if (body.len() as u64) < n {
        return Err(ErrorKind::BadLength {
            rule: LengthRule::AtLeast(n),
            got: body.len() as u64,
        });
    }
    Ok(())
}

fn multiple_of(body: &[u8], n: u64, non_zero: bool) -> Result<(), ErrorKind> {
    let len = body.len() as u64;
    if len % n != 0 || (non_zero && len == 0) {
        let rule = if non_zero {
            LengthRule::NonZeroMultipleOf(n)
        } else {
            LengthRule::MultipleOf(n)
        };
        return Err(ErrorKind::BadLength { rule, got: len });
    }
    Ok(())
}

pub(crate) fn reserved_zero(
    bytes: &[u8],
    name: &'static str,
    policy: Reserved,
) -> Result<(), ErrorKind> {
    if policy == Reserved::Reject && bytes.iter().any(|&b| b != 0) {
        return Err(ErrorKind::ReservedField(name));
    }
    Ok(())
}

/// Checks the 8-byte PAGE_DATA header; returns `count`.
pub(crate) fn page_data_count(
    header: &[u8],
    endian: Endian,
    policy: Reserved,
) -> Result<u32, ErrorKind> {
    let count = endian.u32(header, 0);
    reserved_zero(&header[4..8], "PAGE_DATA reserved", policy)?;
    if count == 0 {
        return Err(ErrorKind::ZeroPageCount);
    }
    Ok(count)
}

/// Decodes and checks PAGE_DATA pfn entries into `out` (cleared first);
/// returns the number of entries carrying data.
pub(crate) fn decode_pfns(
    bytes: &[u8],
    endian: Endian,
    policy: Reserved,
    out: &mut Vec<PfnEntry>,
) -> Result<usize, ErrorKind> {
    out.clear();
    out.reserve(bytes.len() / 8);
    let mut with_data = 0;
    for (i, c) in bytes.chunks_exact(8).enumerate() {
        let raw = endian.u64(c, 0);
        let index = i as u32;
        let bits = (raw >> 60) as u8;
        let page_type = PageType::from_bits(bits).ok_or(ErrorKind::BadPageType { index, bits })?;
        if policy == Reserved::Reject && raw & PFN_RESERVED_MASK != 0 {
            return Err(ErrorKind::ReservedPfnBits { index });
        }
        with_data += usize::from(page_type.has_data());
        out.push(PfnEntry {
            pfn: raw & PFN_MASK,
            page_type,
        });
    }
    Ok(with_data)
}

/// Checks the whole PAGE_DATA body length against `count` and the entries.
pub(crate) fn page_data_length(len: u64, count: u32, with_data: usize) -> Result<(), ErrorKind> {
    let expected = 8 + 8 * u64::from(count) + PAGE_SIZE as u64 * with_data as u64;
    if len != expected {
        return Err(ErrorKind::BadLength {
            rule: LengthRule::Exactly(expected),
            got: len,
        });
    }
    Ok(())
}

/// Parses and checks one record body (without padding) of type `rtype`.
/// `entries` is scratch space for PAGE_DATA's decoded pfn array; `policy`
/// says whether non-zero reserved fields are errors.
///
/// Layout rules checked here are those that need nothing but the record;
/// order, guest type and cross-record rules are the grammar's.
pub fn parse<'a>(
    rtype: RecordType,
    body: &'a [u8],
    endian: Endian,
    policy: Reserved,
    entries: &'a mut Vec<PfnEntry>,
) -> Result<Record<'a>, ErrorKind> {
    Ok(match rtype {
        RecordType::END => {
            exactly(body, 0)?;
            Record::End
        }
        RecordType::PAGE_DATA => {
            at_least(body, 8)?;
            let count = page_data_count(&body[..8], endian, policy)?;
            let pfn_end = 8 + 8 * count as usize;
            if body.len() < pfn_end {
                return Err(ErrorKind::BadLength {
                    rule: LengthRule::AtLeast(pfn_end as u64),
                    got: body.len() as u64,
                });
            }
            let with_data = decode_pfns(&body[8..pfn_end], endian, policy, entries)?;
            page_data_length(body.len() as u64, count, with_data)?;
            Record::PageData(PageData {
                entries: entries.as_slice(),
                data: &body[pfn_end..],
            })
        }
        RecordType::X86_PV_INFO => {
            exactly(body, 8)?;
            let (width, levels) = (body[0], body[1]);
            if width != 4 && width != 8 {
                return Err(ErrorKind::BadGuestWidth(width));
            }
            if levels != 3 && levels != 4 {
                return Err(ErrorKind::BadPtLevels(levels));
            }
            if (width == 4) != (levels == 3) {
                return Err(ErrorKind::WidthLevelsMismatch { width, levels });
            }
            reserved_zero(&body[2..8], "X86_PV_INFO reserved", policy)?;
            Record::X86PvInfo(X86PvInfo {
                guest_width: width,
                pt_levels: levels,
            })
        }
        RecordType::X86_PV_P2M_FRAMES => {
            // start <= end, so at least one frame pfn follows the 8-byte header.
            at_least(body, 16)?;
            multiple_of(body, 8, true)?;
            let start = endian.u32(body, 0);
            let end = endian.u32(body, 4);
            if start > end {
                return Err(ErrorKind::P2mStartAfterEnd { start, end });
            }
            Record::X86PvP2mFrames(P2mFrames {
                start_pfn: start,
                end_pfn: end,
                frames: Array::new(&body[8..], endian),
            })
        }
        RecordType::X86_PV_VCPU_BASIC
        | RecordType::X86_PV_VCPU_EXTENDED
        | RecordType::X86_PV_VCPU_XSAVE
        | RecordType::X86_PV_VCPU_MSRS => {
            at_least(body, 8)?;
            reserved_zero(&body[4..8], "X86_PV_VCPU reserved", policy)?;
            let kind = VcpuKind::from_record_type(rtype).unwrap_or(VcpuKind::Basic);
            Record::X86PvVcpu(VcpuContext {
                kind,
                vcpu_id: endian.u32(body, 0),
                context: &body[8..],
            })
        }
        RecordType::SHARED_INFO => {
            exactly(body, PAGE_SIZE as u64)?;
            Record::SharedInfo(body)
        }
        RecordType::X86_TSC_INFO => {
            exactly(body, 24)?;
            reserved_zero(&body[20..24], "X86_TSC_INFO reserved", policy)?;
            Record::X86TscInfo(TscInfo {
                mode: endian.u32(body, 0),
                gtsc_khz: endian.u32(body, 4),
                elapsed_nsec: endian.u64(body, 8),
                incarnation: endian.u32(body, 16),
            })
        }
        RecordType::HVM_CONTEXT => {
            at_least(body, 1)?;
            Record::HvmContext(body)
        }
        RecordType::HVM_PARAMS => {
            at_least(body, 8)?;
            let count = endian.u32(body, 0);
            reserved_zero(&body[4..8], "HVM_PARAMS reserved", policy)?;
            exactly(body, 8 + 16 * u64::from(count))?;
            Record::HvmParams(Array::new(&body[8..], endian))
        }
        RecordType::TOOLSTACK => Record::Toolstack(body),
        RecordType::VERIFY => {
            exactly(body, 0)?;
            Record::Verify
        }
        RecordType::CHECKPOINT => {
            exactly(body, 0)?;
            Record::Checkpoint
        }
        RecordType::CHECKPOINT_DIRTY_PFN_LIST => {
            multiple_of(body, 8, false)?;
            Record::CheckpointDirtyPfnList(Array::new(body, endian))
        }
        RecordType::STATIC_DATA_END => {
            exactly(body, 0)?;
            Record::StaticDataEnd
        }
        RecordType::X86_CPUID_POLICY => {
            multiple_of(body, CpuidLeaf::SIZE as u64, true)?;
            Record::X86CpuidPolicy(Array::new(body, endian))
        }
        RecordType::X86_MSR_POLICY => {
            multiple_of(body, MsrEntry::SIZE as u64, true)?;
            Record::X86MsrPolicy(Array::new(body, endian))
        }
        RecordType::XCMIG_COMPRESSED_PAGE_DATA => {
            Record::CompressedPageData(super::compressed::parse(body, endian, policy, entries)?)
        }
        t if t.is_optional() => Record::Optional {
            record_type: t,
            body,
        },
        t => return Err(ErrorKind::UnknownMandatory(t.0)),
    })
}
