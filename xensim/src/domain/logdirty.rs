//! Log-dirty mode: the shared dirty bitmap, its counters, and the guest's
//! write path that marks pages in it.

use super::{w, Domain, BITMAP_BYTES};
use crate::error::{err, Result};
use crate::GFN_LIMIT;
use std::sync::atomic::Ordering::SeqCst;

/// Log-dirty read operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDirtyOp {
    /// `XEN_DOMCTL_SHADOW_OP_CLEAN`: read, then clear bitmap and counters.
    Clean,
    /// `XEN_DOMCTL_SHADOW_OP_PEEK`: read only.
    Peek,
}

/// Log-dirty statistics (`xen_domctl_shadow_op_stats`), before any clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirtyStats {
    /// Tracked write faults since the last clean.
    pub fault_count: u32,
    /// Pages newly dirtied since the last clean.
    pub dirty_count: u32,
}

impl Domain {
    /// Whether log-dirty mode is on.
    pub fn logdirty_enabled(&self) -> bool {
        self.ctl(w::LOGDIRTY_ENABLED).load(SeqCst) != 0
    }

    fn clear_dirty_bitmap(&self) {
        let limit = (self.highest_pfn() / 64 + 1) as usize;
        for word in &self.i.dirty.words()[..limit.min(BITMAP_BYTES / 8)] {
            word.store(0, SeqCst);
        }
    }

    /// `SHADOW_OP_ENABLE_LOGDIRTY`: EINVAL if already enabled (Xen's answer,
    /// which libxenguest handles with OFF + ENABLE). Starts a clean bitmap.
    pub fn logdirty_enable(&self) -> Result<()> {
        self.require_alive()?;
        if self
            .ctl(w::LOGDIRTY_ENABLED)
            .compare_exchange(0, 1, SeqCst, SeqCst)
            .is_err()
        {
            return err(libc::EINVAL, "log-dirty already enabled");
        }
        self.clear_dirty_bitmap();
        self.ctl(w::DIRTY_COUNT).store(0, SeqCst);
        self.ctl(w::FAULT_COUNT).store(0, SeqCst);
        Ok(())
    }

    /// `SHADOW_OP_OFF`: always succeeds; drops the bitmap.
    pub fn logdirty_disable(&self) -> Result<()> {
        self.ctl(w::LOGDIRTY_ENABLED).store(0, SeqCst);
        self.clear_dirty_bitmap();
        Ok(())
    }

    /// `SHADOW_OP_CLEAN` / `PEEK` over the first `pages` pfns. Copies the
    /// bits LSB-first into `bitmap` (at least `ceil(pages/8)` bytes, else
    /// EFAULT) when given, returns the statistics from before the operation;
    /// CLEAN then zeroes those bits and the counters. With log-dirty off it
    /// reports zeros. `final_pass` is Xen's LOGDIRTY_FINAL mode: accepted; the
    /// simulator has no hypervisor-internal mappings to add.
    pub fn logdirty_op(
        &self,
        op: LogDirtyOp,
        bitmap: Option<&mut [u8]>,
        pages: u64,
        final_pass: bool,
    ) -> Result<DirtyStats> {
        let _ = final_pass;
        self.require_alive()?;
        let nbytes = pages.div_ceil(8) as usize;
        if let Some(b) = &bitmap {
            if b.len() < nbytes {
                return err(
                    libc::EFAULT,
                    format!("bitmap of {} bytes for {pages} pages", b.len()),
                );
            }
        }
        if !self.logdirty_enabled() {
            if let Some(b) = bitmap {
                b[..nbytes].fill(0);
            }
            return Ok(DirtyStats::default());
        }
        let cap = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let stats = match op {
            LogDirtyOp::Clean => DirtyStats {
                fault_count: cap(self.ctl(w::FAULT_COUNT).swap(0, SeqCst)),
                dirty_count: cap(self.ctl(w::DIRTY_COUNT).swap(0, SeqCst)),
            },
            LogDirtyOp::Peek => DirtyStats {
                fault_count: cap(self.ctl(w::FAULT_COUNT).load(SeqCst)),
                dirty_count: cap(self.ctl(w::DIRTY_COUNT).load(SeqCst)),
            },
        };
        let words = self.i.dirty.words();
        let covered = pages.min(GFN_LIMIT);
        let nwords = covered.div_ceil(64) as usize;
        let mut out = bitmap;
        for (i, word) in words.iter().enumerate().take(nwords) {
            let lo = i as u64 * 64;
            let mask = if covered - lo >= 64 {
                u64::MAX
            } else {
                (1u64 << (covered - lo)) - 1
            };
            let v = match op {
                LogDirtyOp::Clean if mask == u64::MAX => word.swap(0, SeqCst),
                LogDirtyOp::Clean => word.fetch_and(!mask, SeqCst) & mask,
                LogDirtyOp::Peek => word.load(SeqCst) & mask,
            };
            if let Some(b) = out.as_deref_mut() {
                let bytes = v.to_le_bytes();
                let start = i * 8;
                let end = (start + 8).min(nbytes);
                b[start..end].copy_from_slice(&bytes[..end - start]);
            }
        }
        if let Some(b) = out {
            let done = (nwords * 8).min(nbytes);
            b[done..nbytes].fill(0);
        }
        Ok(stats)
    }

    /// The guest's write path: mark `pfn` dirty if log-dirty is on and the
    /// pfn is populated. Counts a
    /// fault per call and a dirty page per newly set bit. Returns whether the
    /// bit was newly set.
    pub fn mark_dirty(&self, pfn: u64) -> bool {
        if !self.logdirty_enabled() || !self.is_populated(pfn) {
            return false;
        }
        let bit = 1u64 << (pfn % 64);
        let old = self.i.dirty.words()[(pfn / 64) as usize].fetch_or(bit, SeqCst);
        self.ctl(w::FAULT_COUNT).fetch_add(1, SeqCst);
        if old & bit == 0 {
            self.ctl(w::DIRTY_COUNT).fetch_add(1, SeqCst);
            true
        } else {
            false
        }
    }
}
