//! Every symbol libxcmig exports. Logic-free on purpose: each function packs
//! its arguments and hands them to [`boundary`], which catches panics and
//! maps the result to the C convention (`0`, or `-1` with `errno`).
//!
//! The prototypes are those of the installed `xenguest.h` (plus
//! `xcmig_version`, the live migration settings, the restore's checkpoint
//! buffer limit and the I/O timeout, declared in
//! `include/xcmig.h`).

use std::ffi::{c_char, c_int, c_uint, c_ulong};
use std::ptr;

use super::restore::{restore, RestoreArgs};
use super::save::{save, SaveArgs};
use super::types::{RestoreCallbacksC, SaveCallbacksC};
use super::{boundary, settings, Failure};
use crate::hv::xen::bindings::{xc_interface, xc_stream_type_t};

/// `xc_domain_save()` of `xenguest.h`: save domain `dom` to `io_fd`.
/// Returns 0 on success, -1 with `errno` set on failure.
///
/// # Safety
/// As for libxenguest's: `xch` from `xc_interface_open`, `callbacks` valid
/// with a non-NULL `suspend`, `io_fd` open for writing.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_save(
    xch: *mut xc_interface,
    io_fd: c_int,
    dom: u32,
    flags: u32,
    callbacks: *mut SaveCallbacksC,
    stream_type: xc_stream_type_t,
    recv_fd: c_int,
) -> c_int {
    let args = SaveArgs {
        xch,
        io_fd,
        dom,
        flags,
        callbacks,
        stream_type,
        recv_fd,
    };
    // SAFETY: the caller upholds xenguest.h's contract for these arguments.
    boundary(xch, "xc_domain_save", || unsafe { save(&args) })
}

/// `xc_domain_restore()` of `xenguest.h`: restore domain `dom` from
/// `io_fd`. Returns 0 on success, -1 with `errno` set on failure.
///
/// # Safety
/// As for libxenguest's: `xch` from `xc_interface_open`, `store_mfn` and
/// `console_mfn` writable, `callbacks` valid or NULL, `io_fd` open for
/// reading.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_restore(
    xch: *mut xc_interface,
    io_fd: c_int,
    dom: u32,
    store_evtchn: c_uint,
    store_mfn: *mut c_ulong,
    store_domid: u32,
    console_evtchn: c_uint,
    console_mfn: *mut c_ulong,
    console_domid: u32,
    stream_type: xc_stream_type_t,
    callbacks: *mut RestoreCallbacksC,
    send_back_fd: c_int,
) -> c_int {
    let args = RestoreArgs {
        xch,
        io_fd,
        dom,
        store_evtchn,
        store_mfn,
        store_domid,
        console_evtchn,
        console_mfn,
        console_domid,
        stream_type,
        callbacks,
        send_back_fd,
    };
    // SAFETY: the caller upholds xenguest.h's contract for these arguments.
    boundary(xch, "xc_domain_restore", || unsafe { restore(&args) })
}

/// The xcmig version, e.g. `"0.1.0"`: a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn xcmig_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

// Live migration policy. These settings apply to every `xc_domain_save`
// call of the process whose callbacks have no `precopy_policy` (a caller's
// policy is always followed exactly). A value set here wins over the
// matching environment variable (read at the start of each save; see
// README "Live migration policy"), which wins over the default.

/// `xcmig_set_precopy_policy()`: xcmig's downtime-targeted policy (the
/// default): pre-copy ends when the predicted stop-and-copy fits the
/// target downtime. Environment: `XCMIG_PRECOPY_POLICY=targeted`.
pub const XCMIG_PRECOPY_TARGETED: c_int = 0;

/// `xcmig_set_precopy_policy()`: libxenguest's classic policy (stop after
/// 5 rounds or under 50 dirty pages), for comparisons. Environment:
/// `XCMIG_PRECOPY_POLICY=classic`.
pub const XCMIG_PRECOPY_CLASSIC: c_int = 1;

fn einval(_: settings::Invalid) -> Failure {
    Failure::Silent(libc::EINVAL)
}

/// Choose the pre-copy policy: `XCMIG_PRECOPY_TARGETED` or
/// `XCMIG_PRECOPY_CLASSIC`. Returns 0, or -1 with `errno` `EINVAL` for
/// another value.
#[no_mangle]
pub extern "C" fn xcmig_set_precopy_policy(policy: c_int) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_precopy_policy", || {
        settings::set_policy(policy).map_err(einval)
    })
}

/// Target downtime of the downtime-targeted policy, in milliseconds
/// (default 300): pre-copy stops once the predicted stop-and-copy (dirty
/// pages x page size / measured bandwidth, plus a fixed allowance for the
/// final records) fits it and the dirty set no longer shrinks by a quarter
/// or more each round.
/// 0 never fits: pre-copy then ends when the dirty set stops shrinking or at
/// a cap. Returns 0, or -1 with `errno` `EINVAL` for `UINT_MAX`.
/// Environment: `XCMIG_TARGET_DOWNTIME_MS`.
#[no_mangle]
pub extern "C" fn xcmig_set_target_downtime_ms(ms: c_uint) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_target_downtime_ms", || {
        settings::set_target_downtime_ms(ms).map_err(einval)
    })
}

/// Most live rounds, the first full pass included (default 30); reaching
/// it stops pre-copy. Returns 0, or -1 with `errno` `EINVAL` for 0 or
/// `UINT_MAX`. Environment: `XCMIG_MAX_ITERATIONS`.
#[no_mangle]
pub extern "C" fn xcmig_set_max_iterations(n: c_uint) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_max_iterations", || {
        settings::set_max_iterations(n).map_err(einval)
    })
}

/// Longest time, in seconds, spent in pre-copy rounds after the first full
/// pass (default 60; 0 = no limit); reaching it stops pre-copy. Returns 0,
/// or -1 with `errno` `EINVAL` for `UINT_MAX`. Environment:
/// `XCMIG_MAX_PRECOPY_SECONDS`.
#[no_mangle]
pub extern "C" fn xcmig_set_max_precopy_seconds(seconds: c_uint) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_max_precopy_seconds", || {
        settings::set_max_precopy_seconds(seconds).map_err(einval)
    })
}

/// What to do when the guest does not converge (the dirty set stopped
/// shrinking for 2 rounds, or a cap was reached) while the predicted
/// downtime is over the target: `false` (default) suspends it anyway, as
/// libxenguest's forced stop does; `true` fails `xc_domain_save` with
/// `errno` `ECANCELED` and an error message, the guest still running.
/// Environment: `XCMIG_ABORT_IF_NOT_CONVERGING` (`1`/`0`, `true`/`false`,
/// `yes`/`no`, `on`/`off`).
#[no_mangle]
pub extern "C" fn xcmig_set_abort_if_not_converging(abort: bool) {
    settings::set_abort_if_not_converging(abort);
}

/// Auto-converge (default off): when the guest does not converge under the
/// downtime-targeted policy (its dirty set stopped shrinking), cap its CPU
/// through the scheduler (credit or credit2, `xc_sched_credit2_domain_set`
/// on the caller's `xc_interface`) so that it dirties memory more slowly
/// than the stream carries it: first at the initial share of the CPU it
/// could use (default 50%), then a step lower (default 20 points) every
/// round that still does not converge, down to a floor (default 5%). The
/// guest runs slower while it migrates; its original cap and weight are put
/// back once it is suspended, or when the save fails. Never applied when
/// the caller passes its own `precopy_policy` or chose the classic policy;
/// with `xcmig_set_abort_if_not_converging(true)` the save aborts only
/// after the floor did not make the guest converge. Environment:
/// `XCMIG_AUTO_CONVERGE` (`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`).
#[no_mangle]
pub extern "C" fn xcmig_set_auto_converge(enable: bool) {
    settings::set_auto_converge(enable);
}

/// Auto-converge's shares, in percent of the CPU the guest could use
/// before the save: `initial` at the first step (default 50), `step`
/// points lower at each further one (default 20), never below `floor`
/// (default 5). Returns 0, or -1 with `errno` `EINVAL` unless each is 1 to
/// 100 and `floor <= initial`. Environment: `XCMIG_AUTO_CONVERGE_INITIAL`,
/// `XCMIG_AUTO_CONVERGE_STEP`, `XCMIG_AUTO_CONVERGE_FLOOR`.
#[no_mangle]
pub extern "C" fn xcmig_set_auto_converge_shares(
    initial: c_uint,
    step: c_uint,
    floor: c_uint,
) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_auto_converge_shares", || {
        settings::set_auto_converge_shares(initial, step, floor).map_err(einval)
    })
}

/// Forget every value set by the `xcmig_set_*` functions (the checkpoint
/// buffer limit and the I/O timeout too): the environment variables and
/// defaults apply again.
#[no_mangle]
pub extern "C" fn xcmig_reset_precopy_settings() {
    settings::reset();
}

// Restore: the checkpoint buffer limit (see README "Bounded memory" and
// docs/memory.md). Read at the start of each xc_domain_restore.

/// Most bytes of records a Remus or COLO restore holds back while it
/// receives one checkpoint (default 1 GiB, 1073741824): page data, pfn
/// entries and blobs, plus a fixed cost per record. A checkpoint that needs
/// more fails `xc_domain_restore` with `errno` `ENOBUFS` and an error naming
/// the limit and the checkpoint; it does not fail over, since the primary is
/// still running. 0 goes back to the environment variable and the default.
/// Environment: `XCMIG_CHECKPOINT_BUFFER_MAX` (bytes, or with a `K`, `M`,
/// `G` or `T` suffix).
#[no_mangle]
pub extern "C" fn xcmig_set_checkpoint_buffer_limit(bytes: u64) {
    settings::set_checkpoint_buffer_limit(bytes);
}

// Stream I/O timeout (README "Network failures").

/// Seconds an `xc_domain_save` or `xc_domain_restore` of this process
/// waits for progress on its stream (and on the COLO back channel) before
/// failing with `errno` `ETIMEDOUT` (default 120; 0 = wait forever, as
/// libxenguest does). Where the descriptor is a TCP socket the same limit
/// is set as its `TCP_USER_TIMEOUT` for the call, so data the kernel
/// accepted but the peer never acknowledged also fails the connection. A
/// checkpointed (Remus, COLO) restore that times out after a complete
/// checkpoint fails over to it, as it does at the end of the stream.
/// Returns 0, or -1 with `errno` `EINVAL` for `UINT_MAX`. Environment:
/// `XCMIG_IO_TIMEOUT`; `xcmig_reset_precopy_settings` forgets this value too.
#[no_mangle]
pub extern "C" fn xcmig_set_io_timeout(seconds: c_uint) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_io_timeout", || {
        settings::set_io_timeout(seconds).map_err(einval)
    })
}

// Legacy images (README "Converting legacy images").

/// `xcmig_set_legacy_restore`: legacy images stay refused (the default).
pub const XCMIG_LEGACY_RESTORE_OFF: c_int = 0;
/// `xcmig_set_legacy_restore`: legacy images are accepted, the toolstack
/// width read from their first octets.
pub const XCMIG_LEGACY_RESTORE_AUTO: c_int = 1;

/// Whether `xc_domain_restore` also accepts a legacy image, as saved by
/// `xc_domain_save` of Xen 4.5 and earlier, on its fd, converting it
/// in-process to a v3 stream (no helper process): `XCMIG_LEGACY_RESTORE_OFF`
/// (0, the default: only v2 and v3 streams, as libxenguest), or the saving
/// toolstack's word size: `32`, `64`, or `XCMIG_LEGACY_RESTORE_AUTO` (1) to
/// read it from the image's first octets (refused, with a message, when
/// they do not decide). The guest kind is the restored domain's. A stream
/// that starts with the v2 image header is restored as always. After an
/// HVM image the fd is left at its device model record, for the caller.
/// Returns 0, or -1 with `errno` `EINVAL` for another value. Environment:
/// `XCMIG_LEGACY_RESTORE` (`off`, `auto`, `32`, `64`);
/// `xcmig_reset_precopy_settings` forgets this value too.
#[no_mangle]
pub extern "C" fn xcmig_set_legacy_restore(mode: c_int) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_legacy_restore", || {
        settings::set_legacy_restore(mode).map_err(einval)
    })
}

/// `xcmig_set_compression`: page data goes as standard PAGE_DATA (the
/// default).
pub const XCMIG_COMPRESS_OFF: c_int = 0;
/// `xcmig_set_compression`: every batch compressed with LZ4.
pub const XCMIG_COMPRESS_LZ4: c_int = 1;
/// `xcmig_set_compression`: every batch compressed with zstd.
pub const XCMIG_COMPRESS_ZSTD: c_int = 2;
/// `xcmig_set_compression`: LZ4 while the measured link is slower than the
/// compression threads can feed it, standard PAGE_DATA otherwise.
pub const XCMIG_COMPRESS_AUTO: c_int = 3;

/// Compress the page data of every following `xc_domain_save` of this
/// process into xcmig's extension record (type 0x58430001,
/// `docs/compressed-page-data.md`), which only xcmig's `xc_domain_restore`
/// reads; `xcmig convert --decompress` turns such a stream into a standard
/// one. `mode` is `XCMIG_COMPRESS_OFF`, `_LZ4`, `_ZSTD` or `_AUTO`;
/// `level` is zstd's level 1-19, or 0 for its default here (1), and must
/// be 0 for the other modes. Returns 0, or -1 with `errno` `EINVAL`.
/// Environment: `XCMIG_COMPRESS` (`off`, `lz4`, `zstd`, `zstd:LEVEL`,
/// `auto`); `xcmig_reset_precopy_settings` forgets this value too.
#[no_mangle]
pub extern "C" fn xcmig_set_compression(mode: c_int, level: c_int) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_compression", || {
        settings::set_compression(mode, level).map_err(einval)
    })
}

/// The threads that compress page data: 1-64, or 0 for the cores
/// available to the process (the default). Returns 0, or -1 with `errno`
/// `EINVAL` above 64. Environment: `XCMIG_COMPRESS_THREADS`.
#[no_mangle]
pub extern "C" fn xcmig_set_compress_threads(threads: c_uint) -> c_int {
    boundary(ptr::null_mut(), "xcmig_set_compress_threads", || {
        settings::set_compress_threads(threads).map_err(einval)
    })
}
