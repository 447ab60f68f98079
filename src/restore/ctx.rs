//! The state of one restore that every guest type shares: the domain, the
//! toolstack, where the stream stands, guest memory and the outputs.

use super::callbacks::RestoreCallbacks;
use super::memory::{RestoreMemory, Target};
use super::params::{RestoreOutputs, RestoreParams};
use crate::hv::{DomId, Hypervisor};
use crate::log::Level;

/// State of one restore, common to all guest types (libxenguest's
/// `struct xc_sr_context` restore half, without the guest-type parts).
pub(crate) struct RestoreCtx<'a, H: Hypervisor> {
    /// The domain restored into.
    pub(crate) target: Target<'a, H>,
    /// The scalar arguments of the restore.
    pub(crate) params: RestoreParams,
    /// The toolstack.
    pub(crate) cb: &'a mut dyn RestoreCallbacks,
    /// The stream is version 2: the end of static data is inferred at the
    /// first PAGE_DATA.
    pub(crate) v2: bool,
    /// STATIC_DATA_END was seen (or inferred).
    pub(crate) static_data_ended: bool,
    /// VERIFY was seen: pages are compared, not written.
    pub(crate) verify: bool,
    /// Guest memory.
    pub(crate) memory: RestoreMemory,
    /// What the restore hands back.
    pub(crate) outputs: RestoreOutputs,
    /// Decompresses XCMIG_COMPRESSED_PAGE_DATA (a zstd context, kept).
    pub(crate) decompressor: crate::stream::PageDecompressor,
}

impl<'a, H: Hypervisor> RestoreCtx<'a, H> {
    /// A restore of `target` that has read no record yet.
    pub(crate) fn new(
        target: Target<'a, H>,
        params: RestoreParams,
        cb: &'a mut dyn RestoreCallbacks,
        v2: bool,
    ) -> Self {
        RestoreCtx {
            target,
            params,
            cb,
            v2,
            static_data_ended: false,
            verify: false,
            memory: RestoreMemory::default(),
            outputs: RestoreOutputs::default(),
            decompressor: crate::stream::PageDecompressor::new(),
        }
    }

    /// The hypervisor.
    pub(crate) fn hv(&self) -> &'a H {
        self.target.hv
    }

    /// The domain restored into.
    pub(crate) fn domid(&self) -> DomId {
        self.target.domid
    }

    /// A message to the caller's log.
    pub(crate) fn msg(&self, level: Level, msg: &str) {
        crate::log::message(level, None, msg);
    }

    /// A message naming an errno.
    pub(crate) fn msg_errno(&self, level: Level, errno: i32, msg: &str) {
        crate::log::message(level, Some(errno), msg);
    }

    /// The outputs, with the memory counters filled in.
    pub(crate) fn finish(self) -> RestoreOutputs {
        let mut out = self.outputs;
        let stats = self.memory.stats();
        out.pages_written = stats.pages_written;
        out.pages_verified = stats.pages_verified;
        out.verify_mismatches = stats.verify_mismatches;
        out.pages_populated = self.memory.populated_count();
        out
    }
}
