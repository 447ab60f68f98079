//! Checkpointed (Remus, COLO) streams: the phase of the record loop, and
//! the records held back between two CHECKPOINTs.
//!
//! Before the first CHECKPOINT (and for the whole of a plain stream)
//! records are applied as they arrive. From then on they are held until the
//! next CHECKPOINT completes the set, so that a failover always restores
//! the last complete checkpoint. What they hold is counted against
//! [`RestoreParams::checkpoint_buffer_limit`](super::RestoreParams) before
//! anything is copied: a checkpoint over the limit is an error, not a
//! failover, because the primary is still alive (`docs/memory.md`).

use super::callbacks::Proceed;
use super::ctx::RestoreCtx;
use super::error::RestoreError;
use super::guest::RestoreGuest;
use super::records;
use crate::hv::{Hypervisor, PAGE_SIZE};
use crate::log::Level;
use crate::stream::{
    Array, Endian, P2mFrames, PageData, PageReader, PfnEntry, Record, RecordType, TscInfo,
    VcpuContext, VcpuKind,
};

/// Where the record loop stands in a checkpointed stream.
pub(crate) enum Phase {
    /// Records are applied as they arrive.
    Direct,
    /// After a CHECKPOINT: the records of the next one, held until it
    /// completes.
    Buffering(Buffer),
}

/// The records held for the checkpoint being received, and what they cost.
#[derive(Debug)]
pub(crate) struct Buffer {
    held: Vec<Held>,
    /// Bytes counted against `limit` so far.
    bytes: u64,
    limit: u64,
    /// The checkpoint being received, numbered as the CHECKPOINT record
    /// that completes it (the initial copy is checkpoint 1).
    checkpoint: u64,
}

/// What holding a record costs beyond its payload: the `Held` value and
/// its slot in the list (allocator overhead is in the documented margin).
const HELD_OVERHEAD: u64 = std::mem::size_of::<Held>() as u64;

impl Buffer {
    fn new(limit: u64, checkpoint: u64) -> Buffer {
        Buffer {
            held: Vec::new(),
            bytes: 0,
            limit,
            checkpoint,
        }
    }

    /// Count `payload` bytes (plus the fixed cost) of a record of type
    /// `record` against the limit, before it is copied.
    fn admit(&mut self, record: RecordType, payload: u64) -> Result<(), RestoreError> {
        let needed = payload.saturating_add(HELD_OVERHEAD);
        match self.bytes.checked_add(needed) {
            Some(total) if total <= self.limit => {
                self.bytes = total;
                Ok(())
            }
            _ => Err(RestoreError::CheckpointBufferFull {
                checkpoint: self.checkpoint,
                limit: self.limit,
                held: self.bytes,
                record,
                needed,
            }),
        }
    }

    /// Hold a copy of `rec`, if it fits.
    pub(crate) fn push_record(&mut self, rec: &Record<'_>) -> Result<(), RestoreError> {
        self.admit(rec.record_type(), payload_len(rec))?;
        let held = match rec {
            // Held decompressed, as counted: a failover applies it as
            // PAGE_DATA, and a bad page fails here, while the primary lives.
            Record::CompressedPageData(c) => {
                let mut data = Vec::new();
                c.decompress_all(&mut crate::stream::PageDecompressor::new(), &mut data)
                    .map_err(|k| RestoreError::Record {
                        what: "XCMIG_COMPRESSED_PAGE_DATA",
                        msg: k.to_string(),
                    })?;
                Held::PageData {
                    entries: c.entries().to_vec(),
                    data,
                }
            }
            _ => Held::from_record(rec),
        };
        self.held.push(held);
        Ok(())
    }

    /// Hold a copy of a PAGE_DATA record whose pages are still in the
    /// stream, if it fits (checked before its pages are read). The outer
    /// error is the limit; the inner one a failure to read the pages,
    /// which the caller may treat as the primary going away.
    pub(crate) fn push_pages<R: std::io::Read>(
        &mut self,
        pages: &mut PageReader<'_, R>,
    ) -> Result<Result<(), crate::stream::Error>, RestoreError> {
        let payload = (pages.entries().len() as u64)
            .saturating_mul(std::mem::size_of::<PfnEntry>() as u64)
            .saturating_add((pages.data_pages() as u64).saturating_mul(PAGE_SIZE as u64));
        self.admit(RecordType::PAGE_DATA, payload)?;
        Ok(Held::from_pages(pages).map(|h| self.held.push(h)))
    }
}

/// The bytes a held copy of `rec` owns.
fn payload_len(rec: &Record<'_>) -> u64 {
    let n = match rec {
        Record::PageData(pd) => std::mem::size_of_val(pd.entries()) + pd.data().len(),
        // Held decompressed.
        Record::CompressedPageData(c) => {
            std::mem::size_of_val(c.entries()) + c.data_pages() * PAGE_SIZE
        }
        Record::HvmContext(b) | Record::SharedInfo(b) => b.len(),
        Record::HvmParams(a) => a.as_bytes().len(),
        Record::X86PvP2mFrames(p) => p.frames.as_bytes().len(),
        Record::X86PvVcpu(v) => v.context.len(),
        Record::Optional { body, .. } => body.len(),
        _ => 0,
    };
    n as u64
}

impl Phase {
    /// Whether a checkpoint is complete, so that a broken stream fails over
    /// to it rather than failing the restore.
    pub(crate) fn has_checkpoint(&self) -> bool {
        matches!(self, Phase::Buffering(_))
    }
}

/// A CHECKPOINT record arrived: ask the toolstack, then apply the held
/// records (or start holding them, after the first).
pub(crate) fn checkpoint_reached<H: Hypervisor>(
    ctx: &mut RestoreCtx<'_, H>,
    guest: &mut dyn RestoreGuest<H>,
    phase: &mut Phase,
) -> Result<Proceed, RestoreError> {
    let answer = ctx
        .cb
        .checkpoint()
        .map_err(|f| RestoreError::callback("checkpoint", f))?;
    match (answer, &mut *phase) {
        (Proceed::Failover, Phase::Buffering(_)) => {
            ctx.msg(Level::Info, "checkpoint(): failover requested");
            return Ok(Proceed::Failover);
        }
        (Proceed::Failover, Phase::Direct) => {
            return Err(RestoreError::Record {
                what: "CHECKPOINT",
                msg: "checkpoint() asked for a failover before any checkpoint was complete".into(),
            });
        }
        (Proceed::Continue, Phase::Buffering(buf)) => {
            let held = std::mem::take(&mut buf.held);
            // The next checkpoint starts empty; this one's copies go as
            // they are applied.
            *buf = Buffer::new(buf.limit, ctx.outputs.checkpoints + 2);
            for h in held {
                let rec = match h.record() {
                    Ok(rec) => rec,
                    Err(HeldError::NotKept(t)) => {
                        return Err(RestoreError::Record {
                            what: "mandatory",
                            msg: format!("{t} not handled in an {} restore", guest.name()),
                        })
                    }
                    Err(HeldError::PageData(e)) => {
                        return Err(RestoreError::Record {
                            what: "PAGE_DATA",
                            msg: e.to_string(),
                        })
                    }
                };
                records::apply_record(ctx, guest, &rec)?;
            }
            ctx.msg(Level::Info, "All records processed");
        }
        (Proceed::Continue, Phase::Direct) => {
            *phase = Phase::Buffering(Buffer::new(
                ctx.params.checkpoint_buffer_limit,
                ctx.outputs.checkpoints + 2,
            ));
            ctx.msg(Level::Info, "All records buffered");
        }
    }
    ctx.outputs.checkpoints += 1;
    Ok(Proceed::Continue)
}

/// Why a held record cannot be given back.
#[derive(Debug)]
pub(crate) enum HeldError {
    /// A record type that is not kept (the guest type does not handle it).
    NotKept(RecordType),
    /// A PAGE_DATA copy whose pages do not match its entries.
    PageData(crate::stream::ErrorKind),
}

/// An owned copy of a record held back until its checkpoint completes,
/// which gives the record back as the reader would have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// PAGE_DATA: entries and the pages with data.
    PageData {
        /// The pfn/type array.
        entries: Vec<PfnEntry>,
        /// One page per data-bearing entry.
        data: Vec<u8>,
    },
    /// VERIFY.
    Verify,
    /// X86_TSC_INFO.
    TscInfo(TscInfo),
    /// HVM_CONTEXT.
    HvmContext(Vec<u8>),
    /// HVM_PARAMS, as wire bytes in `endian`.
    HvmParams(Vec<u8>, Endian),
    /// X86_PV_P2M_FRAMES: the pfn range and the frame pfns as wire bytes
    /// in `endian`.
    P2mFrames {
        /// First pfn covered.
        start_pfn: u32,
        /// Last pfn covered.
        end_pfn: u32,
        /// The frame pfns' wire bytes.
        frames: Vec<u8>,
        /// Their byte order.
        endian: Endian,
    },
    /// One of the X86_PV_VCPU_* records.
    PvVcpu {
        /// Which one.
        kind: VcpuKind,
        /// The vCPU.
        vcpu_id: u32,
        /// Its blob.
        context: Vec<u8>,
    },
    /// SHARED_INFO.
    SharedInfo(Vec<u8>),
    /// An optional record.
    Optional(RecordType, Vec<u8>),
    /// Any other record type (the static records, which cannot follow a
    /// checkpoint): applying it fails as the guest type would fail it
    /// unbuffered.
    Other(RecordType),
}

impl Held {
    /// Copies `rec` out of the reader's buffer.
    fn from_record(rec: &Record<'_>) -> Held {
        match rec {
            Record::PageData(pd) => Held::PageData {
                entries: pd.entries().to_vec(),
                data: pd.data().to_vec(),
            },
            Record::Verify => Held::Verify,
            Record::X86TscInfo(t) => Held::TscInfo(*t),
            Record::HvmContext(b) => Held::HvmContext(b.to_vec()),
            Record::HvmParams(a) => Held::HvmParams(a.as_bytes().to_vec(), a.endian()),
            Record::X86PvP2mFrames(p) => Held::P2mFrames {
                start_pfn: p.start_pfn,
                end_pfn: p.end_pfn,
                frames: p.frames.as_bytes().to_vec(),
                endian: p.frames.endian(),
            },
            Record::X86PvVcpu(v) => Held::PvVcpu {
                kind: v.kind,
                vcpu_id: v.vcpu_id,
                context: v.context.to_vec(),
            },
            Record::SharedInfo(b) => Held::SharedInfo(b.to_vec()),
            Record::Optional { record_type, body } => Held::Optional(*record_type, body.to_vec()),
            other => Held::Other(other.record_type()),
        }
    }

    /// Reads a PAGE_DATA record whose pages are still in the stream into
    /// an owned copy.
    fn from_pages<R: std::io::Read>(
        pages: &mut PageReader<'_, R>,
    ) -> Result<Held, crate::stream::Error> {
        let entries = pages.entries().to_vec();
        let mut data = vec![0u8; pages.data_pages() * PAGE_SIZE];
        pages.read_all(&mut data)?;
        Ok(Held::PageData { entries, data })
    }

    /// The record, borrowing this copy; `Err` with the type of a record
    /// that is not kept.
    pub(crate) fn record(&self) -> Result<Record<'_>, HeldError> {
        Ok(match self {
            Held::PageData { entries, data } => {
                Record::PageData(PageData::new(entries, data).map_err(HeldError::PageData)?)
            }
            Held::Verify => Record::Verify,
            Held::TscInfo(t) => Record::X86TscInfo(*t),
            Held::HvmContext(b) => Record::HvmContext(b),
            Held::HvmParams(b, e) => Record::HvmParams(Array::new(b, *e)),
            Held::P2mFrames {
                start_pfn,
                end_pfn,
                frames,
                endian,
            } => Record::X86PvP2mFrames(P2mFrames {
                start_pfn: *start_pfn,
                end_pfn: *end_pfn,
                frames: Array::new(frames, *endian),
            }),
            Held::PvVcpu {
                kind,
                vcpu_id,
                context,
            } => Record::X86PvVcpu(VcpuContext {
                kind: *kind,
                vcpu_id: *vcpu_id,
                context,
            }),
            Held::SharedInfo(b) => Record::SharedInfo(b),
            Held::Optional(t, b) => Record::Optional {
                record_type: *t,
                body: b,
            },
            Held::Other(t) => return Err(HeldError::NotKept(*t)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_admits_exactly_up_to_its_limit_and_names_what_did_not_fit() {
        let limit = 3 * HELD_OVERHEAD + 100;
        let mut b = Buffer::new(limit, 7);
        b.admit(RecordType::HVM_CONTEXT, 60).unwrap();
        b.admit(RecordType::VERIFY, 0).unwrap();
        b.admit(RecordType::PAGE_DATA, 40).unwrap();
        assert_eq!(b.bytes, limit, "the limit itself is allowed");
        let e = b.admit(RecordType::VERIFY, 0).unwrap_err();
        assert!(
            matches!(
                e,
                RestoreError::CheckpointBufferFull {
                    checkpoint: 7,
                    held,
                    needed,
                    record: RecordType::VERIFY,
                    ..
                } if held == limit && needed == HELD_OVERHEAD
            ),
            "{e}"
        );
        // A claimed size that would overflow is refused, not wrapped.
        let mut b = Buffer::new(u64::MAX, 2);
        b.admit(RecordType::PAGE_DATA, u64::MAX - HELD_OVERHEAD)
            .unwrap();
        assert!(b.admit(RecordType::PAGE_DATA, 1).is_err());
    }
}
