//! The guest-type seam of the save engine (libxenguest's `save_ops`):
//! what differs between HVM/PVH and, later, PV guests.
//!
//! The engine runs the phases (`checkpoint.rs`, `live.rs`) and the memory
//! mechanism (`memory.rs`); the guest type sets up and cleans up, writes
//! its static data and its end-of-checkpoint records, names the frame
//! behind each pfn and normalises page contents for the stream
//! ([`PageFrames`]). A new guest type is a new file implementing
//! [`SaveGuest`] and one arm where `save_domain_with_back_channel` chooses
//! the guest type.

use std::io::Write;

use super::ctx::Ctx;
use super::error::SaveError;
use crate::hv::{Hypervisor, MappingHints, PAGE_SIZE};
use crate::stream::{DomainType, PageType};

/// The frame [`PageFrames::pfn_to_frame`] gives for a pfn with no frame
/// behind it (a PV guest's ballooned page, `INVALID_MFN`): the page is
/// deferred to the final pass, as libxenguest does, and its type query
/// answers XTAB.
pub(crate) const INVALID_FRAME: u64 = u64::MAX;

/// What became of a page the guest type was asked to normalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Normalised {
    /// The copy is rewritten and goes out.
    Ready,
    /// The page cannot be rewritten now (a PV page table caught mid-update
    /// while the guest runs, libxenguest's EAGAIN): it is left out of this
    /// record and sent again in the final pass.
    Deferred,
}

/// What the memory mechanism asks of the guest type for each batch.
pub(crate) trait PageFrames {
    /// The frame to query and map for `pfn` (HVM: the pfn itself; PV: the
    /// machine frame the guest's p2m names, or [`INVALID_FRAME`]).
    fn pfn_to_frame(&self, pfn: u64) -> u64;

    /// Before each pass over the dirty bitmap: bring what the guest type
    /// reads of the guest up to date (PV: its p2m). Returns whether the
    /// frame behind any pfn may have changed since the previous pass, in
    /// which case mappings kept from before are dropped.
    fn begin_pass(&self) -> Result<bool, SaveError> {
        Ok(false)
    }

    /// libxenguest's `check_vm_state`: at the start of each checkpoint and
    /// after each pass, whether the guest is still in a state this save
    /// can carry (PV with a linear p2m: its generation has not moved
    /// during a live save). `live` is whether the save is in its live part.
    fn check_vm_state(&self, live: bool) -> Result<(), SaveError> {
        let _ = live;
        Ok(())
    }

    /// Whether pages of type `t` must be rewritten before they go out (PV
    /// page tables name machine frames in memory, pfns in the stream).
    fn needs_normalise(&self, t: PageType) -> bool {
        let _ = t;
        false
    }

    /// Rewrite a copy of the page of `pfn`, of type `t`, for the stream.
    /// Called only where [`PageFrames::needs_normalise`] said so. `paused` is whether
    /// the toolstack holds the domain paused (`dominfo.paused`; a guest
    /// that merely suspended is not), which decides whether a page that
    /// cannot be rewritten is deferred or fails the save.
    fn normalise_page(
        &self,
        pfn: u64,
        t: PageType,
        page: &mut [u8; PAGE_SIZE],
        paused: bool,
    ) -> Result<Normalised, SaveError> {
        let _ = (pfn, t, page, paused);
        Ok(Normalised::Ready)
    }
}

/// One guest type's part of a save.
pub(crate) trait SaveGuest<H: Hypervisor, W: Write>: PageFrames {
    /// The guest type, as messages name it ("x86 HVM").
    fn name(&self) -> &'static str;

    /// The domain type written in the stream's domain header.
    fn domain_type(&self) -> DomainType;

    /// The page hooks of this guest type (for the memory mechanism).
    fn frames(&self) -> &dyn PageFrames;

    /// Before the headers: size the save (set `ctx.summary.p2m_size`) and
    /// prepare the guest type's state.
    fn setup(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError>;

    /// How the engine may keep mappings of this guest's frames, given the
    /// backend's `hints` (the default: as the backend says).
    fn mapping_hints(&self, hints: MappingHints) -> MappingHints {
        hints
    }

    /// The static data records, before STATIC_DATA_END.
    fn static_data(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError>;

    /// After STATIC_DATA_END, once: the records a receiver needs before
    /// any memory (PV: X86_PV_P2M_FRAMES).
    fn start_of_stream(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        let _ = ctx;
        Ok(())
    }

    /// Before each checkpoint's memory is sent.
    fn start_of_checkpoint(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        let _ = ctx;
        Ok(())
    }

    /// After each checkpoint's memory: the records that describe the
    /// suspended guest.
    fn end_of_checkpoint(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError>;

    /// Always run at the end, also after errors.
    fn cleanup(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError>;
}
