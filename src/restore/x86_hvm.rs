//! The x86 HVM/PVH parts of a restore (libxenguest's
//! `restore_ops_x86_hvm` plus the common record handling).

use super::memory::{self, MemoryStats, Populated};
use super::{RestoreCallbacks, RestoreError, RestoreHook, RestoreOutputs, RestoreParams};
use super::{XGR_SDD_MISSING_CPUID, XGR_SDD_MISSING_MSR};
use crate::hv::{
    param, CpuPolicy, CpuidLeaf, DomId, GrantEntry, Hypervisor, Level, Log, MsrEntry, TscInfo,
    GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GTF_PERMIT_ACCESS,
};
use crate::stream::{Record, RecordType};

use super::checkpoint::Buffered;

fn unhandled(t: RecordType) -> RestoreError {
    RestoreError::Record {
        what: "mandatory",
        msg: format!("{t} not handled in an x86 HVM restore"),
    }
}

/// What a COLO checkpoint leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Colo {
    /// Wait for the next checkpoint.
    Continue,
    /// The channel broke: the secondary takes over.
    Failover,
}

/// State of one HVM restore.
pub(crate) struct HvmRestore<'a, H: Hypervisor> {
    hv: &'a H,
    domid: DomId,
    params: RestoreParams,
    cb: &'a mut dyn RestoreCallbacks,
    log: &'a dyn Log,
    cpuid: Option<Vec<CpuidLeaf>>,
    msrs: Option<Vec<MsrEntry>>,
    seen_static_data_end: bool,
    verify: bool,
    context: Option<Vec<u8>>,
    populated: Populated,
    mem: MemoryStats,
    entries: Vec<(u64, u32)>,
    pub(crate) outputs: RestoreOutputs,
}

impl<'a, H: Hypervisor> HvmRestore<'a, H> {
    pub(crate) fn new(
        hv: &'a H,
        domid: DomId,
        params: RestoreParams,
        cb: &'a mut dyn RestoreCallbacks,
        log: &'a dyn Log,
    ) -> Self {
        HvmRestore {
            hv,
            domid,
            params,
            cb,
            log,
            cpuid: None,
            msrs: None,
            seen_static_data_end: false,
            verify: false,
            context: None,
            populated: Populated::default(),
            mem: MemoryStats::default(),
            entries: Vec::new(),
            outputs: RestoreOutputs::default(),
        }
    }

    /// Apply one record. `v2`: the stream is version 2, so the end of
    /// static data is inferred at the first PAGE_DATA.
    pub(crate) fn process_record(
        &mut self,
        rec: &Record<'_>,
        v2: bool,
    ) -> Result<(), RestoreError> {
        match rec {
            Record::End => Ok(()),
            Record::PageData(pd) => {
                let mut entries = std::mem::take(&mut self.entries);
                entries.clear();
                entries.extend(
                    pd.entries()
                        .iter()
                        .map(|e| (e.pfn, e.page_type.domctl_value())),
                );
                let r = self.page_data(&entries, pd.data(), v2);
                self.entries = entries;
                r
            }
            Record::Verify => {
                self.log.log(Level::Debug, None, "Verify mode enabled");
                self.verify = true;
                Ok(())
            }
            Record::StaticDataEnd => self.static_data_end(),
            Record::X86CpuidPolicy(a) => {
                // Non-empty and a multiple of 24 bytes: checked by the reader.
                self.cpuid = Some(
                    a.iter()
                        .map(|l| CpuidLeaf {
                            leaf: l.leaf,
                            subleaf: l.subleaf,
                            a: l.a,
                            b: l.b,
                            c: l.c,
                            d: l.d,
                        })
                        .collect(),
                );
                Ok(())
            }
            Record::X86MsrPolicy(a) => {
                self.msrs = Some(
                    a.iter()
                        .map(|m| MsrEntry {
                            idx: m.idx,
                            flags: m.flags,
                            val: m.val,
                        })
                        .collect(),
                );
                Ok(())
            }
            Record::X86TscInfo(t) => self.tsc_info(&TscInfo {
                mode: t.mode,
                elapsed_nsec: t.elapsed_nsec,
                gtsc_khz: t.gtsc_khz,
                incarnation: t.incarnation,
            }),
            Record::HvmContext(blob) => {
                self.context = Some(blob.to_vec());
                Ok(())
            }
            Record::HvmParams(a) => self.hvm_params(a.iter().map(|p| (p.index, p.value))),
            Record::Optional { record_type, .. } => {
                self.optional(*record_type);
                Ok(())
            }
            other => Err(unhandled(other.record_type())),
        }
    }

    /// Apply a record buffered since the last checkpoint.
    pub(crate) fn process_buffered(
        &mut self,
        rec: &Buffered,
        v2: bool,
    ) -> Result<(), RestoreError> {
        match rec {
            Buffered::PageData { entries, data } => self.page_data(entries, data, v2),
            Buffered::Verify => {
                self.log.log(Level::Debug, None, "Verify mode enabled");
                self.verify = true;
                Ok(())
            }
            Buffered::TscInfo(t) => self.tsc_info(t),
            Buffered::HvmContext(blob) => {
                self.context = Some(blob.clone());
                Ok(())
            }
            Buffered::HvmParams(p) => self.hvm_params(p.iter().copied()),
            Buffered::Optional(t) => {
                self.optional(*t);
                Ok(())
            }
            Buffered::Other(t) => Err(unhandled(*t)),
        }
    }

    fn page_data(
        &mut self,
        entries: &[(u64, u32)],
        data: &[u8],
        v2: bool,
    ) -> Result<(), RestoreError> {
        if v2 && !self.seen_static_data_end {
            self.static_data_end()?;
        }
        if !self.seen_static_data_end {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: "no STATIC_DATA_END seen".into(),
            });
        }
        memory::process_page_data(
            self.hv,
            self.domid,
            &mut self.populated,
            &mut self.mem,
            self.verify,
            entries,
            &mut memory::SlicePages::new(data),
            self.log,
        )?;
        self.outputs.page_data_records += 1;
        Ok(())
    }

    /// Apply a PAGE_DATA record whose pages are still in the stream: they
    /// are read straight into guest memory.
    pub(crate) fn page_data_stream<R: std::io::Read>(
        &mut self,
        pages: &mut crate::stream::PageReader<'_, R>,
        v2: bool,
    ) -> Result<(), RestoreError> {
        if v2 && !self.seen_static_data_end {
            self.static_data_end()?;
        }
        if !self.seen_static_data_end {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: "no STATIC_DATA_END seen".into(),
            });
        }
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        entries.extend(
            pages
                .entries()
                .iter()
                .map(|e| (e.pfn, e.page_type.domctl_value())),
        );
        let r = memory::process_page_data(
            self.hv,
            self.domid,
            &mut self.populated,
            &mut self.mem,
            self.verify,
            &entries,
            pages,
            self.log,
        );
        self.entries = entries;
        r?;
        self.outputs.page_data_records += 1;
        Ok(())
    }

    fn tsc_info(&mut self, tsc: &TscInfo) -> Result<(), RestoreError> {
        self.hv.set_tsc_info(self.domid, tsc)?;
        Ok(())
    }

    fn hvm_params(
        &mut self,
        params: impl ExactSizeIterator<Item = (u64, u64)>,
    ) -> Result<(), RestoreError> {
        if params.len() == 0 {
            self.log
                .log(Level::Debug, None, "Skipping empty HVM_PARAMS record");
        }
        for (index, value) in params {
            self.apply_param(index, value)?;
        }
        Ok(())
    }

    fn optional(&self, t: RecordType) {
        self.log
            .log(Level::Debug, None, &format!("Ignoring optional record {t}"));
    }

    /// COLO, after a checkpoint's records are applied: complete the
    /// stream, report the gfns, resume the secondary, wait for the next
    /// checkpoint, suspend it again, and send the primary the pages it
    /// dirtied meanwhile.
    pub(crate) fn colo_checkpoint(
        &mut self,
        p2m_size: u64,
        back: &mut dyn std::io::Write,
    ) -> Result<Colo, RestoreError> {
        self.stream_complete()?;
        self.cb
            .restore_results(self.outputs.store_gfn, self.outputs.console_gfn);
        for name in ["postcopy", "wait_checkpoint", "suspend"] {
            let rc = match name {
                "postcopy" => self.cb.postcopy(),
                "wait_checkpoint" => self.cb.wait_checkpoint(),
                _ => self.cb.suspend(),
            };
            match rc {
                1 => {}
                2 => {
                    self.log.log(
                        Level::Info,
                        None,
                        &format!("{name}(): broken channel, failing over"),
                    );
                    return Ok(Colo::Failover);
                }
                _ => return Err(RestoreError::Callback { name, rc }),
            }
        }
        let mut bitmap = vec![0u64; p2m_size.div_ceil(64) as usize];
        let r = self
            .hv
            .logdirty_clean(self.domid, &mut bitmap, p2m_size, false)?;
        if r.pages != p2m_size {
            return Err(RestoreError::Record {
                what: "CHECKPOINT",
                msg: format!(
                    "log-dirty bitmap covers {} pages, expected {p2m_size}",
                    r.pages
                ),
            });
        }
        let pfns: Vec<u64> = (0..p2m_size)
            .filter(|&p| bitmap[(p / 64) as usize] & (1 << (p % 64)) != 0)
            .collect();
        let mut w = crate::stream::Writer::back_channel(back);
        w.write_checkpoint_dirty_pfn_list(&pfns)?;
        w.flush()?;
        Ok(Colo::Continue)
    }

    /// The toolstack's `checkpoint` callback (1 continue, 2 failover).
    pub(crate) fn checkpoint_callback(&mut self) -> i32 {
        self.cb.checkpoint()
    }

    /// One HVM_PARAMS entry, as libxenguest applies it.
    fn apply_param(&mut self, index: u64, value: u64) -> Result<(), RestoreError> {
        let Ok(idx) = u32::try_from(index) else {
            return Err(RestoreError::Record {
                what: "HVM_PARAMS",
                msg: format!("parameter index {index:#x} out of range"),
            });
        };
        match idx {
            param::CONSOLE_PFN => {
                self.outputs.console_gfn = value;
                self.clear_page(value);
            }
            param::STORE_PFN => {
                self.outputs.store_gfn = value;
                self.clear_page(value);
            }
            param::IOREQ_PFN | param::BUFIOREQ_PFN => self.clear_page(value),
            // Obsolete: it only ever fed xc_cpuid_apply_policy(); Xen now
            // refuses it, so old streams carrying it must not fail.
            param::PAE_ENABLED => return Ok(()),
            _ => {}
        }
        self.hv.set_hvm_param(self.domid, idx, value).map_err(|e| {
            self.log.log(
                Level::Error,
                Some(e.errno()),
                &format!("set HVM param {idx} = {value:#018x}"),
            );
            RestoreError::Hv(e)
        })
    }

    /// Zero a magic page whose old contents must not survive (rings the
    /// backends set up afresh). libxenguest ignores failures here.
    fn clear_page(&self, gfn: u64) {
        if let Err(e) = self.hv.clear_pages(self.domid, gfn, 1) {
            self.log.log(
                Level::Debug,
                Some(e.errno()),
                &format!("clearing page {gfn:#x}: {e}"),
            );
        }
    }

    /// STATIC_DATA_END: apply the CPU policy (if the stream had any) and
    /// tell the toolstack which parts were missing.
    fn static_data_end(&mut self) -> Result<(), RestoreError> {
        if self.seen_static_data_end {
            return Err(RestoreError::Record {
                what: "STATIC_DATA_END",
                msg: "multiple STATIC_DATA_END records found".into(),
            });
        }
        self.seen_static_data_end = true;
        let mut missing = 0;
        if self.cpuid.is_none() {
            missing |= XGR_SDD_MISSING_CPUID;
        }
        if self.msrs.is_none() {
            missing |= XGR_SDD_MISSING_MSR;
        }
        let policy = CpuPolicy {
            leaves: self.cpuid.take().unwrap_or_default(),
            msrs: self.msrs.take().unwrap_or_default(),
        };
        if !policy.leaves.is_empty() || !policy.msrs.is_empty() {
            self.hv.set_cpu_policy(self.domid, &policy)?;
        }
        if self.cb.has(RestoreHook::StaticDataDone) {
            let rc = self.cb.static_data_done(missing);
            if rc != 0 {
                return Err(RestoreError::Callback {
                    name: "static_data_done",
                    rc,
                });
            }
        }
        Ok(())
    }

    /// After END: event channels, HVM context, grant table.
    pub(crate) fn stream_complete(&mut self) -> Result<(), RestoreError> {
        self.hv.set_hvm_param(
            self.domid,
            param::STORE_EVTCHN,
            u64::from(self.params.store_evtchn),
        )?;
        self.hv.set_hvm_param(
            self.domid,
            param::CONSOLE_EVTCHN,
            u64::from(self.params.console_evtchn),
        )?;
        let Some(ctx) = self.context.as_deref() else {
            return Err(RestoreError::Incomplete("an HVM_CONTEXT record"));
        };
        self.hv.set_hvm_context(self.domid, ctx)?;

        let mut entries = Vec::with_capacity(2);
        for (index, backend, gfn) in [
            (
                GNTTAB_RESERVED_CONSOLE,
                self.params.console_domid,
                self.outputs.console_gfn,
            ),
            (
                GNTTAB_RESERVED_XENSTORE,
                self.params.store_domid,
                self.outputs.store_gfn,
            ),
        ] {
            // The guest granting itself, or no page: nothing to seed.
            if backend == self.domid || gfn == u64::MAX {
                continue;
            }
            let (Ok(domid), Ok(frame)) = (u16::try_from(backend), u32::try_from(gfn)) else {
                return Err(RestoreError::Record {
                    what: "HVM_PARAMS",
                    msg: format!(
                        "grant entry {index}: domain {backend} or frame {gfn:#x} does not fit a v1 grant entry"
                    ),
                });
            };
            self.log.log(
                Level::Detail,
                None,
                &format!(
                    "seed grant table: d{} gnt[{index}] -> d{backend} {gfn:#x}",
                    self.domid
                ),
            );
            entries.push(GrantEntry {
                index,
                flags: GTF_PERMIT_ACCESS,
                domid,
                frame,
            });
        }
        self.hv.seed_grant_table(self.domid, true, &entries)?;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> RestoreOutputs {
        self.outputs.pages_written = self.mem.pages_written;
        self.outputs.pages_verified = self.mem.pages_verified;
        self.outputs.verify_mismatches = self.mem.verify_mismatches;
        self.outputs.pages_populated = self.populated.count();
        self.outputs
    }
}
