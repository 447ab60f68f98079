//! The restore engine: `xc_domain_restore()` without the C.
//!
//! [`restore_domain`] reads a libxc migration stream (version 2 or 3)
//! through the stream layer's [`Reader`](crate::stream::Reader), whose
//! grammar rejects any record out of place, and rebuilds the domain through
//! [`Hypervisor`], with libxenguest 4.17's calls and callback conventions:
//!
//! ```text
//!  domain_info ── headers (guest type must match the domain) ── nr_gpfns
//!       │
//!  records until END:
//!    X86_CPUID_POLICY / X86_MSR_POLICY   stashed
//!    STATIC_DATA_END (v2: inferred at the first PAGE_DATA)
//!                     set CPU policy; static_data_done(missing)
//!    PAGE_DATA        populate new frames; map RW; copy (VERIFY: compare)
//!    X86_TSC_INFO     set TSC info
//!    HVM_PARAMS       set each (PAE_ENABLED skipped; store/console/ioreq
//!                     pages cleared; store/console gfns remembered)
//!    HVM_CONTEXT      stashed
//!       │
//!  stream complete: STORE_EVTCHN, CONSOLE_EVTCHN params; HVM context;
//!                   grant entries 0 (console) and 1 (xenstore)
//!       │
//!  outputs: store gfn, console gfn
//! ```
//!
//! A stream that breaks a rule ends the restore with an error that names
//! the rule and where it was broken; nothing in here panics on bad input.
//! Messages go through the `log` facade ([`crate::log`]).
//!
//! Modules, top down (none imports one above it): this one (checks, the
//! choice of guest type, the record loop) → `checkpoint` (the loop's
//! `Phase`, records held between CHECKPOINTs) and `colo` (the secondary's
//! side of a COLO checkpoint) → `records` (the common records; the rest go
//! to the guest type) → `x86_hvm` (HVM/PVH), `x86_pv` (PV: p2m, page-table
//! localisation, vCPU records, start_info, pins) and `x86` (CPU policy,
//! TSC and grant seeding, for every x86 guest type) → `guest` (the guest-type seam, libxenguest's
//! `restore_ops`) → `ctx` (the state of one restore) → `memory` (the page
//! path, with the guest type's `PageHooks`), `params`, `callbacks`, `error`.
//! `legacy` sits beside the entry points: it converts a legacy (Xen 4.5 and
//! earlier) image on the input in-process when the caller allows it.

mod callbacks;
mod checkpoint;
mod colo;
mod ctx;
mod error;
mod guest;
mod legacy;
mod memory;
mod params;
mod records;
mod x86;
mod x86_hvm;
mod x86_pv;

use std::io::Read;

use crate::hv::{DomId, Hypervisor};
use crate::log::Level;
use crate::stream;
use crate::toolstack::StreamType;

pub use callbacks::{MissingStaticData, Proceed, RestoreCallbacks, RestoreHook};
pub use error::RestoreError;
pub use legacy::{restore_domain_accepting_legacy, LegacyImages};
pub use params::{RestoreOutputs, RestoreParams, DEFAULT_CHECKPOINT_BUFFER_LIMIT};

use checkpoint::Phase;
use ctx::RestoreCtx;
use guest::RestoreGuest;
use memory::Target;

/// Restore domain `domid` (created, paused, empty) from the stream `io`
/// (the `xc_domain_restore` engine).
///
/// On success the domain holds the saved memory, CPU policy, TSC, params
/// and HVM context, its grant table is seeded, and the outputs carry the
/// store and console gfns. COLO streams need
/// [`restore_domain_with_back_channel`].
pub fn restore_domain<H: Hypervisor, R: Read>(
    hv: &H,
    domid: DomId,
    io: &mut R,
    params: &RestoreParams,
    callbacks: &mut dyn RestoreCallbacks,
) -> Result<RestoreOutputs, RestoreError> {
    restore_domain_with_back_channel(hv, domid, io, None, params, callbacks)
}

/// [`restore_domain`] with the COLO back channel (`send_back_fd`): at each
/// checkpoint the secondary is resumed and suspended again through the
/// callbacks, and the pages it dirtied meanwhile are reported to the
/// primary as a CHECKPOINT_DIRTY_PFN_LIST record on `back`. Ignored for
/// plain and Remus streams.
pub fn restore_domain_with_back_channel<H: Hypervisor, R: Read>(
    hv: &H,
    domid: DomId,
    io: &mut R,
    back: Option<&mut dyn std::io::Write>,
    params: &RestoreParams,
    callbacks: &mut dyn RestoreCallbacks,
) -> Result<RestoreOutputs, RestoreError> {
    let mut changed = false;
    let res = restore_inner(hv, domid, io, back, params, callbacks, &mut changed);
    if let Err(e) = &res {
        // What the toolstack must do with the domain: once the restore has
        // begun building it, it holds part of a guest and cannot run.
        let state = if changed {
            format!("; domain {domid} is incomplete and must be destroyed")
        } else {
            format!("; domain {domid} was not changed")
        };
        crate::log::message(
            Level::Error,
            Some(e.errno()),
            &format!("Restore failed: {e}{state}"),
        );
    }
    res
}

/// Whether a reader error means the sender went away (input ended or
/// failed) rather than that the stream broke a rule.
fn is_broken_channel(e: &stream::Error) -> bool {
    matches!(
        e.kind,
        stream::ErrorKind::Io { .. }
            | stream::ErrorKind::Truncated(_)
            | stream::ErrorKind::MissingEnd
    )
}

fn restore_inner<H: Hypervisor, R: Read>(
    hv: &H,
    domid: DomId,
    io: &mut R,
    mut back: Option<&mut dyn std::io::Write>,
    params: &RestoreParams,
    callbacks: &mut dyn RestoreCallbacks,
    changed: &mut bool,
) -> Result<RestoreOutputs, RestoreError> {
    match params.stream_type {
        StreamType::Plain => {}
        StreamType::Remus => {
            if !callbacks.has(RestoreHook::Checkpoint) {
                return Err(RestoreError::MissingCallback("checkpoint"));
            }
        }
        StreamType::Colo => {
            for (hook, name) in [
                (RestoreHook::Suspend, "suspend"),
                (RestoreHook::Postcopy, "postcopy"),
                (RestoreHook::WaitCheckpoint, "wait_checkpoint"),
                (RestoreHook::RestoreResults, "restore_results"),
                (RestoreHook::Checkpoint, "checkpoint"),
            ] {
                if !callbacks.has(hook) {
                    return Err(RestoreError::MissingCallback(name));
                }
            }
            if back.is_none() {
                return Err(RestoreError::Unsupported(
                    "a COLO restore needs the back channel (send_back_fd)".into(),
                ));
            }
        }
    }
    let colo = params.stream_type == StreamType::Colo;
    let info = hv.domain_info(domid)?;
    if info.domid != domid {
        return Err(RestoreError::NoSuchDomain(domid));
    }
    crate::log::message(
        Level::Detail,
        None,
        &format!(
            "dom {domid}, hvm {}, stream_type {}",
            u8::from(info.hvm),
            params.stream_type
        ),
    );
    // The one place that knows every guest type.
    let mut guest: Box<dyn RestoreGuest<H> + '_> = if info.hvm {
        Box::new(x86_hvm::HvmRestore::default())
    } else {
        Box::new(x86_pv::PvRestore::new(hv, domid))
    };

    let options = stream::ReaderOptions {
        grammar: stream::GrammarOptions {
            checkpoints: if params.stream_type.is_checkpointed() {
                stream::Checkpoints::Accept
            } else {
                stream::Checkpoints::Reject
            },
            ..Default::default()
        },
        // The spec: reserved fields and padding "must be ignored during
        // restore" (libxenguest ignores them too).
        reserved: stream::Reserved::Ignore,
        ..Default::default()
    };
    let mut reader = stream::Reader::with_options(io, options)?;
    let dh = *reader.domain_header();
    let version = reader.image_header().version;
    if dh.domain_type != guest.domain_type() {
        return Err(RestoreError::WrongGuestType {
            stream: dh.domain_type.to_string(),
            domain: guest.name(),
        });
    }
    if dh.is_legacy_converted() {
        crate::log::message(
            Level::Info,
            None,
            &format!(
                "Found {} domain, converted from legacy stream format",
                dh.domain_type
            ),
        );
    } else {
        crate::log::message(
            Level::Info,
            None,
            &format!(
                "Found {} domain from Xen {}.{}",
                dh.domain_type, dh.xen_major, dh.xen_minor
            ),
        );
    }
    // libxenguest reads the p2m size here; it only matters to COLO, but the
    // call also confirms the domain can be queried before any change.
    let p2m_size = hv.nr_gpfns(domid)?;
    crate::log::message(Level::Info, None, "Restoring domain");

    let target = Target { hv, domid };
    let mut ctx = RestoreCtx::new(target, *params, callbacks, version == stream::Version::V2);
    ctx.outputs.stream_version = version.number();
    let guest = &mut *guest;
    // Everything before this only read the domain.
    *changed = true;
    guest.setup(&mut ctx)?;
    let mut phase = Phase::Direct;
    // The primary is gone mid-checkpoint: fail over to the last complete
    // checkpoint, dropping the partial one.
    let failover = |e: &stream::Error| {
        crate::log::message(
            Level::Info,
            None,
            &format!("Failed to read a record ({e}): failing over to the last checkpoint"),
        );
    };
    loop {
        let item = match reader.next_item() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) if phase.has_checkpoint() && is_broken_channel(&e) => {
                failover(&e);
                break;
            }
            Err(e) => return Err(e.into()),
        };
        ctx.outputs.records += 1;
        let rec = match item {
            stream::Item::Record(rec) => rec,
            stream::Item::Pages(mut pages) => {
                match &mut phase {
                    Phase::Buffering(buf) => match buf.push_pages(&mut pages)? {
                        Ok(()) => {}
                        Err(e) if is_broken_channel(&e) => {
                            failover(&e);
                            break;
                        }
                        Err(e) => return Err(e.into()),
                    },
                    // Straight from the stream into guest memory.
                    Phase::Direct => records::apply_pages(&mut ctx, guest, &mut pages)?,
                }
                continue;
            }
        };
        match (&rec, &mut phase) {
            (stream::Record::End, _) => {
                records::apply_record(&mut ctx, guest, &rec)?;
                break;
            }
            (stream::Record::Checkpoint, _) => {
                if checkpoint::checkpoint_reached(&mut ctx, guest, &mut phase)? == Proceed::Failover
                {
                    break;
                }
                if colo {
                    let Some(back) = back.as_deref_mut() else {
                        return Err(RestoreError::Unsupported("no back channel".into()));
                    };
                    if colo::checkpoint(&mut ctx, guest, p2m_size, back)? == Proceed::Failover {
                        break;
                    }
                }
            }
            (_, Phase::Buffering(buf)) => buf.push_record(&rec)?,
            (_, Phase::Direct) => records::apply_record(&mut ctx, guest, &rec)?,
        }
    }
    for w in reader.warnings() {
        // Stock libxenguest always writes HVM_PARAMS after HVM_CONTEXT: not
        // something the user can act on, so not a warning in xl's output.
        let level = match w.kind {
            xcmig_stream::libxc::WarningKind::HvmParamsAfterHvmContext => Level::Detail,
            _ => Level::Warn,
        };
        crate::log::message(level, None, &format!("stream: {w}"));
        ctx.outputs.warnings.push(w.to_string());
    }
    if colo {
        // The stream was completed at each checkpoint; the secondary runs
        // from the last one.
        crate::log::message(Level::Info, None, "COLO Failover");
    } else {
        guest.stream_complete(&mut ctx)?;
        crate::log::message(Level::Info, None, "Restore successful");
    }
    let out = ctx.finish();
    crate::log::message(
        Level::Info,
        None,
        &format!(
            "XenStore: mfn {:#x}, dom {}, evt {}",
            out.store_gfn, params.store_domid, params.store_evtchn
        ),
    );
    crate::log::message(
        Level::Info,
        None,
        &format!(
            "Console: mfn {:#x}, dom {}, evt {}",
            out.console_gfn, params.console_domid, params.console_evtchn
        ),
    );
    Ok(out)
}

#[cfg(test)]
mod pv_tests;
#[cfg(test)]
mod tests;
