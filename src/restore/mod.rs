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

mod checkpoint;
mod memory;
mod x86_hvm;

use std::io::Read;

use crate::hv::{DomId, HvError, Hypervisor, Level, Log};
use crate::save::StreamType;
use crate::stream;

pub use checkpoint::{XGR_CHECKPOINT_FAILOVER, XGR_CHECKPOINT_SUCCESS};

/// `XGR_SDD_MISSING_CPUID`: the stream had no X86_CPUID_POLICY.
pub const XGR_SDD_MISSING_CPUID: u32 = 1 << 0;
/// `XGR_SDD_MISSING_MSR`: the stream had no X86_MSR_POLICY.
pub const XGR_SDD_MISSING_MSR: u32 = 1 << 1;

/// The scalar arguments of `xc_domain_restore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreParams {
    /// Event channel of the xenstore ring (set as HVM_PARAM_STORE_EVTCHN).
    pub store_evtchn: u32,
    /// Domain running xenstored (granted the store page).
    pub store_domid: u32,
    /// Event channel of the console ring (HVM_PARAM_CONSOLE_EVTCHN).
    pub console_evtchn: u32,
    /// Domain running the console backend (granted the console page).
    pub console_domid: u32,
    /// Plain or checkpointed.
    pub stream_type: StreamType,
}

/// The optional members of `struct restore_callbacks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreHook {
    /// `static_data_done`.
    StaticDataDone,
    /// `suspend`.
    Suspend,
    /// `postcopy`.
    Postcopy,
    /// `checkpoint`.
    Checkpoint,
    /// `wait_checkpoint`.
    WaitCheckpoint,
    /// `restore_results`.
    RestoreResults,
}

/// The toolstack side of a restore (`struct restore_callbacks`). A
/// callback whose [`RestoreCallbacks::has`] is false is never called.
pub trait RestoreCallbacks {
    /// Whether an optional callback is provided (a non-NULL pointer in C).
    fn has(&self, hook: RestoreHook) -> bool;

    /// Static data is complete (STATIC_DATA_END seen or inferred);
    /// `missing` has `XGR_SDD_MISSING_*` bits for CPU policy records the
    /// stream lacked. **0 = success.**
    fn static_data_done(&mut self, missing: u32) -> i32 {
        let _ = missing;
        0
    }

    /// Checkpointed streams: a CHECKPOINT record arrived. 1 = continue,
    /// 2 = failover, anything else = error.
    fn checkpoint(&mut self) -> i32 {
        0
    }

    /// COLO: suspend the secondary (1 = ok).
    fn suspend(&mut self) -> i32 {
        0
    }

    /// COLO: resume the secondary (1 = ok).
    fn postcopy(&mut self) -> i32 {
        0
    }

    /// COLO: wait for the next checkpoint (1 = ok).
    fn wait_checkpoint(&mut self) -> i32 {
        0
    }

    /// COLO: report the store and console gfns before the restore returns.
    fn restore_results(&mut self, store_gfn: u64, console_gfn: u64) {
        let _ = (store_gfn, console_gfn);
    }
}

/// What a successful restore hands back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOutputs {
    /// gfn of the xenstore page (`*store_mfn`), 0 if the stream named none.
    pub store_gfn: u64,
    /// gfn of the console page (`*console_gfn`), 0 if the stream named none.
    pub console_gfn: u64,
    /// Stream version read (2 or 3).
    pub stream_version: u32,
    /// Records processed, END included.
    pub records: u64,
    /// PAGE_DATA records processed.
    pub page_data_records: u64,
    /// Pages written into the guest.
    pub pages_written: u64,
    /// Pages compared in verify mode, and how many differed.
    pub pages_verified: u64,
    /// Pages that differed in verify mode (logged, not fatal, as in libxenguest).
    pub verify_mismatches: u64,
    /// Frames populated.
    pub pages_populated: u64,
    /// CHECKPOINT records applied (checkpointed streams).
    pub checkpoints: u64,
    /// Stream warnings (tolerated oddities), one line each.
    pub warnings: Vec<String>,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A hypervisor call failed.
    #[error("{0}")]
    Hv(#[from] HvError),
    /// The stream broke a rule of the format or grammar, or reading failed.
    #[error("stream: {0}")]
    Stream(#[from] stream::Error),
    /// A record's content cannot be applied.
    #[error("{what} record: {msg}")]
    Record {
        /// The record type.
        what: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The domain does not exist.
    #[error("domain {0} does not exist")]
    NoSuchDomain(DomId),
    /// The stream is for another guest type than the domain.
    #[error("unable to restore {stream} domain into an {domain} domain")]
    WrongGuestType {
        /// The stream's domain header type.
        stream: String,
        /// The domain's type.
        domain: &'static str,
    },
    /// The stream ended without a record the restore needs.
    #[error("stream complete without {0}")]
    Incomplete(&'static str),
    /// A callback the stream type needs was not given.
    #[error("the {0} callback is required for this restore")]
    MissingCallback(&'static str),
    /// A callback reported failure.
    #[error("restore callback {name}() failed: {rc}")]
    Callback {
        /// Callback name.
        name: &'static str,
        /// What it returned.
        rc: i32,
    },
    /// Not supported by this implementation (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl RestoreError {
    /// The errno the C layer reports for this error.
    pub fn errno(&self) -> i32 {
        use libc as e;
        match self {
            RestoreError::Hv(h) => h.errno(),
            RestoreError::Stream(s) => match &s.kind {
                stream::ErrorKind::Io { .. } => e::EIO,
                _ => e::EINVAL,
            },
            RestoreError::Record { .. } => e::EINVAL,
            RestoreError::NoSuchDomain(_) => e::ESRCH,
            RestoreError::WrongGuestType { .. } => e::EINVAL,
            RestoreError::Incomplete(_) => e::EINVAL,
            RestoreError::MissingCallback(_) => e::EINVAL,
            RestoreError::Callback { .. } => e::EINVAL,
            RestoreError::Unsupported(_) => e::EOPNOTSUPP,
        }
    }
}

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
    log: &dyn Log,
) -> Result<RestoreOutputs, RestoreError> {
    restore_domain_with_back_channel(hv, domid, io, None, params, callbacks, log)
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
    log: &dyn Log,
) -> Result<RestoreOutputs, RestoreError> {
    let res = restore_inner(hv, domid, io, back, params, callbacks, log);
    if let Err(e) = &res {
        log.log(
            Level::Error,
            Some(e.errno()),
            &format!("Restore failed: {e}"),
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
    log: &dyn Log,
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
    log.log(
        Level::Debug,
        None,
        &format!(
            "dom {domid}, hvm {}, stream_type {:?}",
            info.hvm, params.stream_type
        ),
    );
    if !info.hvm {
        return Err(RestoreError::Unsupported(
            "PV domains are not supported yet".into(),
        ));
    }

    let options = stream::ReaderOptions {
        grammar: stream::GrammarOptions {
            checkpoints: if params.stream_type == StreamType::Plain {
                stream::Checkpoints::Reject
            } else {
                stream::Checkpoints::Accept
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
    if dh.domain_type != stream::DomainType::X86Hvm {
        return Err(RestoreError::WrongGuestType {
            stream: dh.domain_type.to_string(),
            domain: "x86 HVM",
        });
    }
    if dh.is_legacy_converted() {
        log.log(
            Level::Info,
            None,
            &format!(
                "Found {} domain, converted from legacy stream format",
                dh.domain_type
            ),
        );
    } else {
        log.log(
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
    log.log(Level::Info, None, "Restoring domain");

    let mut ctx = x86_hvm::HvmRestore::new(hv, domid, *params, callbacks, log);
    ctx.outputs.stream_version = version.number();
    let v2 = version == stream::Version::V2;
    // Checkpointed streams: after the first CHECKPOINT, records wait here
    // until the next one completes their set.
    let mut buffering = false;
    let mut held: Vec<checkpoint::Buffered> = Vec::new();
    // The primary is gone mid-checkpoint: fail over to the last complete
    // checkpoint, dropping the partial one.
    let failover = |e: &stream::Error| {
        log.log(
            Level::Info,
            None,
            &format!("Failed to read a record ({e}): failing over to the last checkpoint"),
        );
    };
    loop {
        let item = match reader.next_item() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) if buffering && is_broken_channel(&e) => {
                failover(&e);
                break;
            }
            Err(e) => return Err(e.into()),
        };
        ctx.outputs.records += 1;
        let rec = match item {
            stream::Item::Record(rec) => rec,
            stream::Item::Pages(mut pages) if buffering => {
                match checkpoint::Buffered::from_pages(&mut pages) {
                    Ok(b) => held.push(b),
                    Err(e) if is_broken_channel(&e) => {
                        failover(&e);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            stream::Item::Pages(mut pages) => {
                // Straight from the stream into guest memory.
                ctx.page_data_stream(&mut pages, v2)?;
                continue;
            }
        };
        match rec {
            stream::Record::End => {
                ctx.process_record(&rec, v2)?;
                break;
            }
            stream::Record::Checkpoint => {
                let rc = ctx.checkpoint_callback();
                match rc {
                    XGR_CHECKPOINT_SUCCESS => {}
                    XGR_CHECKPOINT_FAILOVER if buffering => {
                        log.log(Level::Info, None, "checkpoint(): failover requested");
                        break;
                    }
                    _ => {
                        return Err(RestoreError::Callback {
                            name: "checkpoint",
                            rc,
                        })
                    }
                }
                if buffering {
                    for b in held.drain(..) {
                        ctx.process_buffered(&b, v2)?;
                    }
                    log.log(Level::Info, None, "All records processed");
                } else {
                    buffering = true;
                    log.log(Level::Info, None, "All records buffered");
                }
                ctx.outputs.checkpoints += 1;
                if colo {
                    let Some(back) = back.as_deref_mut() else {
                        return Err(RestoreError::Unsupported("no back channel".into()));
                    };
                    if ctx.colo_checkpoint(p2m_size, back)? == x86_hvm::Colo::Failover {
                        break;
                    }
                }
            }
            _ if buffering => held.push(checkpoint::Buffered::from_record(&rec)),
            _ => ctx.process_record(&rec, v2)?,
        }
    }
    for w in reader.warnings() {
        log.log(Level::Warn, None, &format!("stream: {w}"));
        ctx.outputs.warnings.push(w.to_string());
    }
    if colo {
        // The stream was completed at each checkpoint; the secondary runs
        // from the last one.
        log.log(Level::Info, None, "COLO Failover");
    } else {
        ctx.stream_complete()?;
        log.log(Level::Info, None, "Restore successful");
    }
    let out = ctx.finish();
    log.log(
        Level::Info,
        None,
        &format!(
            "XenStore: mfn {:#x}, dom {}, evt {}",
            out.store_gfn, params.store_domid, params.store_evtchn
        ),
    );
    log.log(
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
mod tests;
