//! The guest-type seam of the restore engine (libxenguest's
//! `restore_ops`): what differs between HVM/PVH and, later, PV guests.
//!
//! The common path (`records.rs`) handles END, PAGE_DATA, VERIFY,
//! STATIC_DATA_END and optional records; every other record goes to the
//! guest type, which also names the frame behind each pfn and localises
//! page contents ([`PageHooks`]). A new guest type is a new file
//! implementing [`RestoreGuest`] and one arm where `restore_inner`
//! chooses the guest type.

use super::callbacks::MissingStaticData;
use super::ctx::RestoreCtx;
use super::error::RestoreError;
use super::memory::PageHooks;
use crate::hv::Hypervisor;
use crate::stream::{DomainType, Record};

/// One guest type's part of a restore.
pub(crate) trait RestoreGuest<H: Hypervisor>: PageHooks {
    /// The guest type, as messages name it ("x86 HVM").
    fn name(&self) -> &'static str;

    /// The stream's domain type this guest type restores.
    fn domain_type(&self) -> DomainType;

    /// The page hooks of this guest type (for the memory path).
    fn page_hooks(&mut self) -> &mut dyn PageHooks;

    /// Prepare for the stream, once its headers are read (libxenguest's
    /// `setup` op: what the guest type asks of Xen before any record).
    fn setup(&mut self, ctx: &mut RestoreCtx<'_, H>) -> Result<(), RestoreError> {
        let _ = ctx;
        Ok(())
    }

    /// Apply a record that is not one of the common ones. A record type
    /// this guest type does not handle is an error.
    fn process_record(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
        rec: &Record<'_>,
    ) -> Result<(), RestoreError>;

    /// The static data is complete: apply it, and say which parts of it
    /// the stream lacked.
    fn static_data_complete(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
    ) -> Result<MissingStaticData, RestoreError>;

    /// The stream (or, for COLO, a checkpoint) is complete: apply what was
    /// kept for the end.
    fn stream_complete(&mut self, ctx: &mut RestoreCtx<'_, H>) -> Result<(), RestoreError>;
}

/// The error for a mandatory record `guest` does not handle.
pub(crate) fn unhandled(guest: &str, rec: &Record<'_>) -> RestoreError {
    RestoreError::Record {
        what: "mandatory",
        msg: format!("{} not handled in an {guest} restore", rec.record_type()),
    }
}
