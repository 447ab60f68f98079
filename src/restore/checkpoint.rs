//! Checkpointed (Remus) streams: after the first CHECKPOINT, records are
//! held back until the next CHECKPOINT completes the set, so that a
//! failover always restores the last complete checkpoint.

use crate::hv::TscInfo;
use crate::stream::{Record, RecordType};

/// An owned copy of a record held back until its checkpoint completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Buffered {
    /// PAGE_DATA: (pfn, PFINFO type) pairs and the pages with data.
    PageData {
        entries: Vec<(u64, u32)>,
        data: Vec<u8>,
    },
    /// VERIFY.
    Verify,
    /// X86_TSC_INFO.
    TscInfo(TscInfo),
    /// HVM_CONTEXT.
    HvmContext(Vec<u8>),
    /// HVM_PARAMS as (index, value).
    HvmParams(Vec<(u64, u64)>),
    /// An optional record (ignored when applied).
    Optional(RecordType),
    /// Any other record type: applying it fails as for an unbuffered one.
    Other(RecordType),
}

impl Buffered {
    /// Copies `rec` out of the reader's buffer.
    pub(crate) fn from_record(rec: &Record<'_>) -> Buffered {
        match rec {
            Record::PageData(pd) => Buffered::PageData {
                entries: pd
                    .entries()
                    .iter()
                    .map(|e| (e.pfn, e.page_type.domctl_value()))
                    .collect(),
                data: pd.data().to_vec(),
            },
            Record::Verify => Buffered::Verify,
            Record::X86TscInfo(t) => Buffered::TscInfo(TscInfo {
                mode: t.mode,
                elapsed_nsec: t.elapsed_nsec,
                gtsc_khz: t.gtsc_khz,
                incarnation: t.incarnation,
            }),
            Record::HvmContext(b) => Buffered::HvmContext(b.to_vec()),
            Record::HvmParams(a) => {
                Buffered::HvmParams(a.iter().map(|p| (p.index, p.value)).collect())
            }
            Record::Optional { record_type, .. } => Buffered::Optional(*record_type),
            other => Buffered::Other(other.record_type()),
        }
    }
}

impl Buffered {
    /// Reads a PAGE_DATA record whose pages are still in the stream into
    /// an owned copy.
    pub(crate) fn from_pages<R: std::io::Read>(
        pages: &mut crate::stream::PageReader<'_, R>,
    ) -> Result<Buffered, crate::stream::Error> {
        let entries = pages
            .entries()
            .iter()
            .map(|e| (e.pfn, e.page_type.domctl_value()))
            .collect();
        let mut data = vec![0u8; pages.data_pages() * crate::hv::PAGE_SIZE];
        pages.read_all(&mut data)?;
        Ok(Buffered::PageData { entries, data })
    }
}

/// `XGR_CHECKPOINT_SUCCESS`.
pub const XGR_CHECKPOINT_SUCCESS: i32 = 1;
/// `XGR_CHECKPOINT_FAILOVER`.
pub const XGR_CHECKPOINT_FAILOVER: i32 = 2;
