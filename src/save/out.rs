//! Record output of a save, over the stream layer's [`Writer`] (which
//! checks each record's layout and the record order as it writes).
//!
//! The hypervisor and the stream share Xen's x86 values (`crate::x86`), so
//! records go out without conversions.
//!
//! With compression on, page batches go through the worker pool
//! (`compress.rs`) and are written as they come back, in order; every
//! other record first writes the batches still out, so the record order is
//! the order in which the engine made them.

use std::io::{IoSlice, Write};
use std::time::Instant;

use super::compress::{Job, Pool};
use super::compress_auto::{AutoCompress, AutoVerdict};
use super::params::{CompressMode, CompressionSettings};

use crate::stream::{
    self, DomainHeader, DomainType, PageType, PfnEntry, VcpuKind, Writer, X86PvInfo,
};
use crate::x86::pv::GuestWidth;
use crate::x86::{CpuidLeaf, MsrEntry, TscInfo};

/// The record writer of one save. Created lazily by [`Out::headers`],
/// because libxenguest only writes the headers after its setup.
pub(crate) struct Out<'a, W: Write> {
    io: Option<&'a mut W>,
    w: Option<Writer<&'a mut W>>,
    entries: Vec<PfnEntry>,
    settings: CompressionSettings,
    compress: Option<Compressing>,
}

/// The compression state of a save that compresses.
struct Compressing {
    pool: Pool,
    /// `auto`'s measurements and decision; `None` for a fixed compressor.
    auto: Option<AutoCompress>,
    /// A decision of `auto` not yet logged.
    verdict: Option<AutoVerdict>,
    records: u64,
    pages: u64,
    bytes: u64,
}

/// What a save's compression did, for its summary and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CompressionTotals {
    pub(crate) records: u64,
    pub(crate) pages: u64,
    pub(crate) bytes: u64,
}

fn compress_error(offset: u64, message: String) -> stream::Error {
    stream::Error::at(
        offset,
        stream::ErrorKind::Io {
            kind: std::io::ErrorKind::Other,
            message,
        },
    )
}

impl<'a, W: Write> Out<'a, W> {
    pub(crate) fn new(io: &'a mut W, settings: CompressionSettings) -> Self {
        Out {
            io: Some(io),
            w: None,
            entries: Vec::with_capacity(crate::hv::MAX_BATCH),
            settings,
            compress: None,
        }
    }

    /// Bytes written so far (batches still with the workers not counted:
    /// [`Out::drain`] first).
    pub(crate) fn bytes(&self) -> u64 {
        self.w.as_ref().map_or(0, |w| w.offset())
    }

    /// What compression did so far.
    pub(crate) fn compression_totals(&self) -> CompressionTotals {
        self.compress
            .as_ref()
            .map_or(CompressionTotals::default(), |c| CompressionTotals {
                records: c.records,
                pages: c.pages,
                bytes: c.bytes,
            })
    }

    /// The compressor and its threads, when compressing.
    pub(crate) fn compression(&self) -> Option<(stream::Compression, usize, bool)> {
        self.compress
            .as_ref()
            .map(|c| (c.pool.compression(), c.pool.threads(), c.auto.is_some()))
    }

    /// A decision of `auto` taken since the last call, to log.
    pub(crate) fn take_auto_verdict(&mut self) -> Option<AutoVerdict> {
        self.compress.as_mut().and_then(|c| c.verdict.take())
    }

    /// A memory round begins: `auto` decides afresh.
    pub(crate) fn new_round(&mut self) {
        if let Some(a) = self.compress.as_mut().and_then(|c| c.auto.as_mut()) {
            a.new_round();
        }
    }

    /// Writes every batch still with the workers.
    pub(crate) fn drain(&mut self) -> Result<(), stream::Error> {
        let (Some(w), Some(c)) = (self.w.as_mut(), self.compress.as_mut()) else {
            return Ok(());
        };
        loop {
            match c.pool.wait() {
                Ok(Some(job)) => write_job(w, c, job)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(compress_error(w.offset(), e)),
            }
        }
    }

    fn writer(&mut self) -> Result<&mut Writer<&'a mut W>, stream::Error> {
        self.drain()?;
        self.w.as_mut().ok_or_else(|| {
            stream::Error::at(
                0,
                stream::ErrorKind::Io {
                    kind: std::io::ErrorKind::Other,
                    message: "record written before the stream headers".into(),
                },
            )
        })
    }

    /// Image header (v3, little-endian) and domain header.
    pub(crate) fn headers(
        &mut self,
        guest: DomainType,
        major: u16,
        minor: u16,
    ) -> Result<(), stream::Error> {
        let Some(io) = self.io.take() else {
            return Err(stream::Error::at(
                0,
                stream::ErrorKind::Io {
                    kind: std::io::ErrorKind::Other,
                    message: "stream headers written twice".into(),
                },
            ));
        };
        let dh = DomainHeader::new(guest, u32::from(major), u32::from(minor));
        self.w = Some(Writer::new(io, &dh)?);
        let threads = self.settings.worker_threads();
        let (compression, level, auto) = match self.settings.mode {
            CompressMode::Off => return Ok(()),
            CompressMode::Lz4 => (stream::Compression::Lz4, 0, None),
            CompressMode::Zstd { level } => (stream::Compression::Zstd, level, None),
            CompressMode::Auto => (stream::Compression::Lz4, 0, Some(AutoCompress::new())),
        };
        let pool = Pool::start(compression, level, threads)
            .map_err(|e| compress_error(self.bytes(), e))?;
        self.compress = Some(Compressing {
            pool,
            auto,
            verdict: None,
            records: 0,
            pages: 0,
            bytes: 0,
        });
        Ok(())
    }

    pub(crate) fn static_data_end(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_static_data_end()
    }

    pub(crate) fn end(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_end()
    }

    pub(crate) fn verify(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_verify()
    }

    pub(crate) fn checkpoint(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_checkpoint()
    }

    pub(crate) fn flush(&mut self) -> Result<(), stream::Error> {
        self.writer()?.flush()
    }

    /// PAGE_DATA for `pfns` with their PFINFO `types` (already checked to
    /// be known types); `pages` hold the pages of the data-bearing entries,
    /// split in any way (e.g. one slice per run of a mapping). Written with
    /// one vectored write, the page bytes uncopied.
    pub(crate) fn page_data_slices(
        &mut self,
        pfns: &[u64],
        types: &[u64],
        pages: &[IoSlice<'_>],
    ) -> Result<(), stream::Error> {
        let mut entries = std::mem::take(&mut self.entries);
        fill_entries(&mut entries, pfns, types);
        let raw: u64 = pages.iter().map(|p| p.len() as u64).sum();
        if raw > 0 && self.compress_next(raw)? {
            let res = self.submit(&entries, pages);
            self.entries = entries;
            return res;
        }
        // The writer hands these on to `write_vectored` whole.
        let pages: Vec<&[u8]> = pages.iter().map(|p| &**p).collect();
        let res = self
            .writer()
            .and_then(|w| w.write_page_data(&entries, &pages));
        self.entries = entries;
        res?;
        if let Some(a) = self.compress.as_mut().and_then(|c| c.auto.as_mut()) {
            a.wrote(Instant::now());
        }
        Ok(())
    }

    /// Whether the batch being written (`raw` page octets) goes to the
    /// workers.
    fn compress_next(&mut self, raw: u64) -> Result<bool, stream::Error> {
        let Some(c) = self.compress.as_mut() else {
            return Ok(false);
        };
        let Some(a) = c.auto.as_ref() else {
            return Ok(true);
        };
        if a.window_ends() {
            self.drain()?;
        }
        let Some(c) = self.compress.as_mut() else {
            return Ok(false);
        };
        let Some(a) = c.auto.as_mut() else {
            return Ok(true);
        };
        let (compress, verdict) = a.next_batch(raw, Instant::now());
        if verdict.is_some() {
            c.verdict = verdict;
        }
        Ok(compress)
    }

    /// Copies the batch into a job for the workers, after writing the
    /// oldest ones back while as many as allowed are out; writes whatever
    /// else is finished.
    fn submit(&mut self, entries: &[PfnEntry], pages: &[IoSlice<'_>]) -> Result<(), stream::Error> {
        let (Some(w), Some(c)) = (self.w.as_mut(), self.compress.as_mut()) else {
            return Err(compress_error(
                0,
                "record written before the stream headers".into(),
            ));
        };
        let offset = w.offset();
        while c.pool.in_flight() >= c.pool.max_in_flight() {
            match c.pool.wait() {
                Ok(Some(job)) => write_job(w, c, job)?,
                Ok(None) => break,
                Err(e) => return Err(compress_error(offset, e)),
            }
        }
        let mut job = c.pool.job();
        job.entries.extend_from_slice(entries);
        for p in pages {
            job.raw.extend_from_slice(p);
        }
        c.pool.submit(job).map_err(|e| compress_error(offset, e))?;
        loop {
            match c.pool.ready() {
                Ok(Some(job)) => write_job(w, c, job)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(compress_error(w.offset(), e)),
            }
        }
    }

    pub(crate) fn cpuid_policy(&mut self, leaves: &[CpuidLeaf]) -> Result<(), stream::Error> {
        self.writer()?.write_x86_cpuid_policy(leaves)
    }

    pub(crate) fn msr_policy(&mut self, msrs: &[MsrEntry]) -> Result<(), stream::Error> {
        self.writer()?.write_x86_msr_policy(msrs)
    }

    pub(crate) fn tsc_info(&mut self, t: &TscInfo) -> Result<(), stream::Error> {
        self.writer()?.write_x86_tsc_info(t)
    }

    pub(crate) fn hvm_params(&mut self, params: &[(u32, u64)]) -> Result<(), stream::Error> {
        let p: Vec<stream::HvmParam> = params
            .iter()
            .map(|&(index, value)| stream::HvmParam {
                index: u64::from(index),
                value,
            })
            .collect();
        self.writer()?.write_hvm_params(&p)
    }

    pub(crate) fn hvm_context(&mut self, blob: &[u8]) -> Result<(), stream::Error> {
        self.writer()?.write_hvm_context(blob)
    }

    pub(crate) fn x86_pv_info(&mut self, width: GuestWidth) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_info(&X86PvInfo::new(width))
    }

    /// X86_PV_P2M_FRAMES for pfns `0..=end_pfn`: the pfns of the p2m's
    /// frames.
    pub(crate) fn x86_pv_p2m_frames(
        &mut self,
        end_pfn: u32,
        frames: &[u64],
    ) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_p2m_frames(0, end_pfn, frames)
    }

    /// One X86_PV_VCPU_* record: the `{vcpu_id, pad}` header, then `body`.
    pub(crate) fn x86_pv_vcpu(
        &mut self,
        kind: VcpuKind,
        vcpu: u32,
        body: &[u8],
    ) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_vcpu(kind, vcpu, body)
    }

    /// X86_PV_VCPU_MSRS: `{u32 index, u32 reserved, u64 value}` each.
    pub(crate) fn x86_pv_vcpu_msrs(
        &mut self,
        vcpu: u32,
        msrs: &[MsrEntry],
    ) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_vcpu_msrs(vcpu, msrs)
    }

    pub(crate) fn shared_info(&mut self, page: &[u8]) -> Result<(), stream::Error> {
        self.writer()?.write_shared_info(page)
    }
}

/// The PAGE_DATA entries for `pfns` with their PFINFO `types`.
fn fill_entries(entries: &mut Vec<PfnEntry>, pfns: &[u64], types: &[u64]) {
    entries.clear();
    for (&pfn, &t) in pfns.iter().zip(types) {
        // The engine checked every type is known before queueing it.
        let page_type = u32::try_from(t)
            .ok()
            .and_then(PageType::from_domctl_value)
            .unwrap_or(PageType::XTab);
        entries.push(PfnEntry::new(pfn, page_type));
    }
}

/// Writes a compressed batch: XCMIG_COMPRESSED_PAGE_DATA, or PAGE_DATA
/// when no page got smaller (the stream stays standard where compression
/// gains nothing).
fn write_job<W: Write>(
    w: &mut Writer<W>,
    c: &mut Compressing,
    job: Job,
) -> Result<(), stream::Error> {
    let res = if job.nothing_shrank() {
        w.write_page_data(&job.entries, &[&job.raw])
    } else {
        w.write_compressed_page_data(&job.entries, c.pool.compression(), &job.compressed)
    };
    res?;
    if !job.nothing_shrank() {
        c.records += 1;
        c.pages += job.data_pages() as u64;
        c.bytes += 2 * job.compressed.sizes.len() as u64 + job.compressed.data.len() as u64;
    }
    if let Some(a) = c.auto.as_mut() {
        a.compressed(
            job.raw.len() as u64,
            2 * job.compressed.sizes.len() as u64 + job.compressed.data.len() as u64,
        );
        a.wrote(Instant::now());
    }
    c.pool.recycle(job);
    Ok(())
}
