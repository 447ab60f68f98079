//! Process-wide pre-copy settings for `xc_domain_save` calls that pass no
//! `precopy_policy`, the page compression of every save, and the restore's
//! checkpoint buffer limit and legacy image setting: set by the `xcmig_set_*` functions of `include/xcmig.h`
//! or, for a library preloaded under an unmodified toolstack, by
//! environment variables.
//!
//! Each setting is resolved at the start of every save: a value set through
//! the C API wins, then the environment variable, then the default of
//! [`PrecopySettings`]. An environment variable that does not parse is
//! reported as a warning to the caller's logger and ignored. The values
//! live in atomics, so the setters may be called from any thread, also
//! while another thread saves (that save keeps the values it started with).

use std::ffi::OsString;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::log::{Level, Log};
use crate::restore::{LegacyImages, DEFAULT_CHECKPOINT_BUFFER_LIMIT};
use crate::save::{CompressMode, CompressionSettings, PolicyChoice, PrecopySettings};
use crate::stream::legacy::Width;
use crate::stream::{ZSTD_DEFAULT_LEVEL, ZSTD_LEVELS};

/// `XCMIG_PRECOPY_POLICY`: `targeted` (default) or `classic`.
pub const ENV_POLICY: &str = "XCMIG_PRECOPY_POLICY";
/// `XCMIG_TARGET_DOWNTIME_MS`: milliseconds.
pub const ENV_TARGET_DOWNTIME_MS: &str = "XCMIG_TARGET_DOWNTIME_MS";
/// `XCMIG_MAX_ITERATIONS`: live rounds, at least 1.
pub const ENV_MAX_ITERATIONS: &str = "XCMIG_MAX_ITERATIONS";
/// `XCMIG_MAX_PRECOPY_SECONDS`: seconds after the first pass, 0 = no limit.
pub const ENV_MAX_PRECOPY_SECONDS: &str = "XCMIG_MAX_PRECOPY_SECONDS";
/// `XCMIG_ABORT_IF_NOT_CONVERGING`: `1`/`0`, `true`/`false`, `yes`/`no`,
/// `on`/`off`.
pub const ENV_ABORT_IF_NOT_CONVERGING: &str = "XCMIG_ABORT_IF_NOT_CONVERGING";
/// `XCMIG_AUTO_CONVERGE`: a boolean as for `XCMIG_ABORT_IF_NOT_CONVERGING`.
pub const ENV_AUTO_CONVERGE: &str = "XCMIG_AUTO_CONVERGE";
/// `XCMIG_AUTO_CONVERGE_INITIAL`: percent, 1 to 100.
pub const ENV_AUTO_CONVERGE_INITIAL: &str = "XCMIG_AUTO_CONVERGE_INITIAL";
/// `XCMIG_AUTO_CONVERGE_STEP`: percentage points, 1 to 100.
pub const ENV_AUTO_CONVERGE_STEP: &str = "XCMIG_AUTO_CONVERGE_STEP";
/// `XCMIG_AUTO_CONVERGE_FLOOR`: percent, 1 to 100 (at most the initial
/// share: a higher floor is lowered to it).
pub const ENV_AUTO_CONVERGE_FLOOR: &str = "XCMIG_AUTO_CONVERGE_FLOOR";

/// `XCMIG_LEGACY_RESTORE`: `off` (default), `auto` (also `on`, `1`), `32`
/// or `64`: whether `xc_domain_restore` accepts a legacy image.
pub const ENV_LEGACY_RESTORE: &str = "XCMIG_LEGACY_RESTORE";

/// `XCMIG_LEGACY_RESTORE_OFF` in C.
pub const LEGACY_RESTORE_OFF: i32 = 0;
/// `XCMIG_LEGACY_RESTORE_AUTO` in C.
pub const LEGACY_RESTORE_AUTO: i32 = 1;

/// The atomics' "not set through the C API" value.
const UNSET: u32 = u32::MAX;

static POLICY: AtomicU32 = AtomicU32::new(UNSET);
static TARGET_DOWNTIME_MS: AtomicU32 = AtomicU32::new(UNSET);
static MAX_ITERATIONS: AtomicU32 = AtomicU32::new(UNSET);
static MAX_PRECOPY_SECONDS: AtomicU32 = AtomicU32::new(UNSET);
static ABORT_IF_NOT_CONVERGING: AtomicU32 = AtomicU32::new(UNSET);
static AUTO_CONVERGE: AtomicU32 = AtomicU32::new(UNSET);
static AUTO_CONVERGE_INITIAL: AtomicU32 = AtomicU32::new(UNSET);
static AUTO_CONVERGE_STEP: AtomicU32 = AtomicU32::new(UNSET);
static AUTO_CONVERGE_FLOOR: AtomicU32 = AtomicU32::new(UNSET);
static LEGACY_RESTORE: AtomicU32 = AtomicU32::new(UNSET);

/// `XCMIG_PRECOPY_TARGETED` in C.
pub const POLICY_TARGETED: i32 = 0;
/// `XCMIG_PRECOPY_CLASSIC` in C.
pub const POLICY_CLASSIC: i32 = 1;

/// Why a setter refused its value (reported as `EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// `xcmig_set_precopy_policy`.
pub fn set_policy(policy: i32) -> Result<(), Invalid> {
    match policy {
        POLICY_TARGETED | POLICY_CLASSIC => {
            POLICY.store(policy as u32, Ordering::SeqCst);
            Ok(())
        }
        _ => Err(Invalid),
    }
}

/// `xcmig_set_target_downtime_ms`: any value but `UINT_MAX`.
pub fn set_target_downtime_ms(ms: u32) -> Result<(), Invalid> {
    store(&TARGET_DOWNTIME_MS, ms, ms != UNSET)
}

/// `xcmig_set_max_iterations`: at least 1, less than `UINT_MAX`.
pub fn set_max_iterations(n: u32) -> Result<(), Invalid> {
    store(&MAX_ITERATIONS, n, n >= 1 && n != UNSET)
}

/// `xcmig_set_max_precopy_seconds`: 0 for no limit, less than `UINT_MAX`.
pub fn set_max_precopy_seconds(s: u32) -> Result<(), Invalid> {
    store(&MAX_PRECOPY_SECONDS, s, s != UNSET)
}

/// `xcmig_set_abort_if_not_converging`.
pub fn set_abort_if_not_converging(on: bool) {
    ABORT_IF_NOT_CONVERGING.store(u32::from(on), Ordering::SeqCst);
}

/// `xcmig_set_auto_converge`.
pub fn set_auto_converge(on: bool) {
    AUTO_CONVERGE.store(u32::from(on), Ordering::SeqCst);
}

/// `xcmig_set_auto_converge_shares`: each 1..=100, the floor at most the
/// initial share.
pub fn set_auto_converge_shares(initial: u32, step: u32, floor: u32) -> Result<(), Invalid> {
    let pct = |v: u32| (1..=100).contains(&v);
    if !(pct(initial) && pct(step) && pct(floor) && floor <= initial) {
        return Err(Invalid);
    }
    AUTO_CONVERGE_INITIAL.store(initial, Ordering::SeqCst);
    AUTO_CONVERGE_STEP.store(step, Ordering::SeqCst);
    AUTO_CONVERGE_FLOOR.store(floor, Ordering::SeqCst);
    Ok(())
}

/// `xcmig_set_legacy_restore`: off, auto, 32 or 64.
pub fn set_legacy_restore(mode: i32) -> Result<(), Invalid> {
    match mode {
        LEGACY_RESTORE_OFF | LEGACY_RESTORE_AUTO | 32 | 64 => {
            LEGACY_RESTORE.store(mode as u32, Ordering::SeqCst);
            Ok(())
        }
        _ => Err(Invalid),
    }
}

/// Whether this restore accepts legacy images, from the process
/// environment.
pub fn current_legacy_restore(log: &dyn Log) -> LegacyImages {
    resolve_legacy_restore(&|name| std::env::var_os(name), log)
}

/// The legacy restore setting from the C API's value, then `env`, then
/// off; an environment value that does not parse is reported on `log`.
pub fn resolve_legacy_restore(
    env: &dyn Fn(&str) -> Option<OsString>,
    log: &dyn Log,
) -> LegacyImages {
    let mut mode = LEGACY_RESTORE.load(Ordering::SeqCst);
    if mode == UNSET {
        mode = LEGACY_RESTORE_OFF as u32;
        if let Some(raw) = env(ENV_LEGACY_RESTORE) {
            match raw.to_str().map(str::trim).and_then(parse_legacy_restore) {
                Some(m) => mode = m,
                None => log.log(
                    Level::Warn,
                    None,
                    &format!(
                        "xcmig: ignoring {ENV_LEGACY_RESTORE}={:?}: expected off, auto, 32 or 64; \
                         legacy images stay refused",
                        raw.to_string_lossy()
                    ),
                ),
            }
        }
    }
    match mode {
        32 => LegacyImages::Width(Width::Bits32),
        64 => LegacyImages::Width(Width::Bits64),
        m if m == LEGACY_RESTORE_AUTO as u32 => LegacyImages::Detect,
        _ => LegacyImages::Refuse,
    }
}

fn parse_legacy_restore(v: &str) -> Option<u32> {
    match v.to_ascii_lowercase().as_str() {
        "off" | "0" | "no" | "false" => Some(LEGACY_RESTORE_OFF as u32),
        "auto" | "on" | "1" | "yes" | "true" => Some(LEGACY_RESTORE_AUTO as u32),
        "32" => Some(32),
        "64" => Some(64),
        _ => None,
    }
}

/// `XCMIG_COMPRESS`: `off` (default), `lz4`, `zstd`, `zstd:LEVEL` (1-19)
/// or `auto`: page data of every save as xcmig's compressed record.
pub const ENV_COMPRESS: &str = "XCMIG_COMPRESS";
/// `XCMIG_COMPRESS_THREADS`: compression threads, 1-64 (default: the
/// cores available).
pub const ENV_COMPRESS_THREADS: &str = "XCMIG_COMPRESS_THREADS";
/// `XCMIG_COMPRESS_OFF` in C.
pub const COMPRESS_OFF: i32 = 0;
/// `XCMIG_COMPRESS_LZ4` in C.
pub const COMPRESS_LZ4: i32 = 1;
/// `XCMIG_COMPRESS_ZSTD` in C.
pub const COMPRESS_ZSTD: i32 = 2;
/// `XCMIG_COMPRESS_AUTO` in C.
pub const COMPRESS_AUTO: i32 = 3;
/// The most compression threads a setting takes.
pub const MAX_COMPRESS_THREADS: u32 = 64;

/// Mode in bits 8-15, zstd level in bits 0-7, so one store sets both.
static COMPRESS: AtomicU32 = AtomicU32::new(UNSET);
static COMPRESS_THREADS: AtomicU32 = AtomicU32::new(UNSET);

/// `xcmig_set_compression`: `mode` one of the `COMPRESS_*` values;
/// `level` 0 (zstd's default here, 1) or 1-19 for zstd, 0 otherwise.
pub fn set_compression(mode: i32, level: i32) -> Result<(), Invalid> {
    let ok = match mode {
        COMPRESS_OFF | COMPRESS_LZ4 | COMPRESS_AUTO => level == 0,
        COMPRESS_ZSTD => level == 0 || ZSTD_LEVELS.contains(&level),
        _ => false,
    };
    if !ok {
        return Err(Invalid);
    }
    COMPRESS.store(((mode as u32) << 8) | level as u32, Ordering::SeqCst);
    Ok(())
}

/// `xcmig_set_compress_threads`: 0 (the cores available) to 64.
pub fn set_compress_threads(n: u32) -> Result<(), Invalid> {
    store(&COMPRESS_THREADS, n, n <= MAX_COMPRESS_THREADS)
}

/// The compression of a save starting now, from the process environment.
pub fn current_compression(log: &dyn Log) -> CompressionSettings {
    resolve_compression(&|name| std::env::var_os(name), log)
}

/// The compression setting from the C API's values, then `env`, then off
/// (threads: the cores available); a value that does not parse is
/// reported on `log` and ignored.
pub fn resolve_compression(
    env: &dyn Fn(&str) -> Option<OsString>,
    log: &dyn Log,
) -> CompressionSettings {
    let mut packed = COMPRESS.load(Ordering::SeqCst);
    if packed == UNSET {
        packed = (COMPRESS_OFF as u32) << 8;
        if let Some(raw) = env(ENV_COMPRESS) {
            match raw.to_str().map(str::trim).and_then(parse_compress) {
                Some(p) => packed = p,
                None => log.log(
                    Level::Warn,
                    None,
                    &format!(
                        "xcmig: ignoring {ENV_COMPRESS}={:?}: expected off, lz4, zstd, zstd:LEVEL (1-19) or auto; \
                         page data goes uncompressed",
                        raw.to_string_lossy()
                    ),
                ),
            }
        }
    }
    let level = (packed & 0xff) as i32;
    let mode = match (packed >> 8) as i32 {
        COMPRESS_LZ4 => CompressMode::Lz4,
        COMPRESS_ZSTD => CompressMode::Zstd {
            level: if level == 0 {
                ZSTD_DEFAULT_LEVEL
            } else {
                level
            },
        },
        COMPRESS_AUTO => CompressMode::Auto,
        _ => CompressMode::Off,
    };
    let mut threads = COMPRESS_THREADS.load(Ordering::SeqCst);
    if threads == UNSET {
        threads = 0;
        if let Some(raw) = env(ENV_COMPRESS_THREADS) {
            match raw
                .to_str()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| (1..=MAX_COMPRESS_THREADS).contains(n))
            {
                Some(n) => threads = n,
                None => log.log(
                    Level::Warn,
                    None,
                    &format!(
                        "xcmig: ignoring {ENV_COMPRESS_THREADS}={:?}: expected 1 to {MAX_COMPRESS_THREADS}; \
                         using the cores available",
                        raw.to_string_lossy()
                    ),
                ),
            }
        }
    }
    CompressionSettings {
        mode,
        threads: threads as usize,
    }
}

fn parse_compress(v: &str) -> Option<u32> {
    let v = v.to_ascii_lowercase();
    let (name, level) = match v.split_once(':') {
        Some((n, l)) => (n, Some(l.parse::<i32>().ok()?)),
        None => (v.as_str(), None),
    };
    let mode = match (name, level) {
        ("off" | "0" | "no" | "false" | "none", None) => COMPRESS_OFF,
        ("lz4", None) => COMPRESS_LZ4,
        ("auto", None) => COMPRESS_AUTO,
        ("zstd", None) => COMPRESS_ZSTD,
        ("zstd", Some(l)) if ZSTD_LEVELS.contains(&l) => COMPRESS_ZSTD,
        _ => return None,
    };
    Some(((mode as u32) << 8) | level.unwrap_or(0) as u32)
}

/// `xcmig_reset_precopy_settings`: back to the environment and defaults
/// (the checkpoint buffer limit, the I/O timeout, the legacy restore and
/// the compression settings too).
pub fn reset() {
    for a in [
        &POLICY,
        &TARGET_DOWNTIME_MS,
        &MAX_ITERATIONS,
        &MAX_PRECOPY_SECONDS,
        &ABORT_IF_NOT_CONVERGING,
        &AUTO_CONVERGE,
        &AUTO_CONVERGE_INITIAL,
        &AUTO_CONVERGE_STEP,
        &AUTO_CONVERGE_FLOOR,
        &LEGACY_RESTORE,
        &COMPRESS,
        &COMPRESS_THREADS,
    ] {
        a.store(UNSET, Ordering::SeqCst);
    }
    set_checkpoint_buffer_limit(0);
    reset_io_timeout();
}

fn store(a: &AtomicU32, v: u32, ok: bool) -> Result<(), Invalid> {
    if !ok {
        return Err(Invalid);
    }
    a.store(v, Ordering::SeqCst);
    Ok(())
}

/// The settings for a save starting now, from the process environment.
pub fn current(log: &dyn Log) -> PrecopySettings {
    resolve(&|name| std::env::var_os(name), log)
}

/// The settings from the C API's values, then `env`, then the defaults;
/// each environment value that does not parse is reported on `log`.
pub fn resolve(env: &dyn Fn(&str) -> Option<OsString>, log: &dyn Log) -> PrecopySettings {
    let mut s = PrecopySettings::default();
    let read = |name: &str, api: &AtomicU32, parse: &dyn Fn(&str) -> Option<u32>| -> Option<u32> {
        let v = api.load(Ordering::SeqCst);
        if v != UNSET {
            return Some(v);
        }
        let raw = env(name)?;
        let parsed = raw.to_str().map(str::trim).and_then(parse);
        if parsed.is_none() {
            log.log(
                Level::Warn,
                None,
                &format!(
                    "xcmig: ignoring {name}={:?}: {}; using the default",
                    raw.to_string_lossy(),
                    expected(name)
                ),
            );
        }
        parsed
    };
    if let Some(p) = read(ENV_POLICY, &POLICY, &parse_policy) {
        s.policy = if p == POLICY_CLASSIC as u32 {
            PolicyChoice::Classic
        } else {
            PolicyChoice::Targeted
        };
    }
    if let Some(ms) = read(ENV_TARGET_DOWNTIME_MS, &TARGET_DOWNTIME_MS, &|v| {
        parse_u32(v).filter(|&n| n != UNSET)
    }) {
        s.target_downtime = Duration::from_millis(u64::from(ms));
    }
    if let Some(n) = read(ENV_MAX_ITERATIONS, &MAX_ITERATIONS, &|v| {
        parse_u32(v).filter(|&n| n >= 1 && n != UNSET)
    }) {
        s.max_iterations = n;
    }
    if let Some(secs) = read(ENV_MAX_PRECOPY_SECONDS, &MAX_PRECOPY_SECONDS, &|v| {
        parse_u32(v).filter(|&n| n != UNSET)
    }) {
        s.max_precopy_time = (secs > 0).then(|| Duration::from_secs(u64::from(secs)));
    }
    if let Some(b) = read(
        ENV_ABORT_IF_NOT_CONVERGING,
        &ABORT_IF_NOT_CONVERGING,
        &parse_bool,
    ) {
        s.abort_if_not_converging = b != 0;
    }
    if let Some(b) = read(ENV_AUTO_CONVERGE, &AUTO_CONVERGE, &parse_bool) {
        s.auto_converge.enabled = b != 0;
    }
    let percent = |v: &str| parse_u32(v).filter(|n| (1..=100).contains(n));
    let ac = &mut s.auto_converge;
    if let Some(n) = read(ENV_AUTO_CONVERGE_INITIAL, &AUTO_CONVERGE_INITIAL, &percent) {
        ac.initial_share = n as u8;
    }
    if let Some(n) = read(ENV_AUTO_CONVERGE_STEP, &AUTO_CONVERGE_STEP, &percent) {
        ac.step = n as u8;
    }
    if let Some(n) = read(ENV_AUTO_CONVERGE_FLOOR, &AUTO_CONVERGE_FLOOR, &percent) {
        ac.floor = n as u8;
    }
    if ac.floor > ac.initial_share {
        log.log(
            Level::Warn,
            None,
            &format!(
                "xcmig: auto-converge floor {}% is above the initial share {}%; using {}% for both",
                ac.floor, ac.initial_share, ac.initial_share
            ),
        );
        ac.floor = ac.initial_share;
    }
    s
}

fn expected(name: &str) -> &'static str {
    match name {
        ENV_POLICY => "expected \"targeted\" or \"classic\"",
        ENV_MAX_ITERATIONS => "expected a whole number from 1 to 4294967294",
        ENV_ABORT_IF_NOT_CONVERGING | ENV_AUTO_CONVERGE => {
            "expected 1/0, true/false, yes/no or on/off"
        }
        ENV_AUTO_CONVERGE_INITIAL | ENV_AUTO_CONVERGE_STEP | ENV_AUTO_CONVERGE_FLOOR => {
            "expected a whole number of percent from 1 to 100"
        }
        _ => "expected a whole number from 0 to 4294967294",
    }
}

/// Decimal digits only: no sign, no spaces inside, no other base.
fn parse_u32(v: &str) -> Option<u32> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_bool(v: &str) -> Option<u32> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(1),
        "0" | "false" | "no" | "off" => Some(0),
        _ => None,
    }
}

fn parse_policy(v: &str) -> Option<u32> {
    match v.to_ascii_lowercase().as_str() {
        "targeted" => Some(POLICY_TARGETED as u32),
        "classic" => Some(POLICY_CLASSIC as u32),
        _ => None,
    }
}

// ---- Restore: the checkpoint buffer limit (issue 10, bounded memory) ----
//
// Resolved at the start of every restore like the settings above: the
// value set through `xcmig_set_checkpoint_buffer_limit`, then
// `XCMIG_CHECKPOINT_BUFFER_MAX`, then the engine's default, and passed to
// the engine in `RestoreParams::checkpoint_buffer_limit`.

/// `XCMIG_CHECKPOINT_BUFFER_MAX`: bytes, optionally with a binary suffix
/// `K`, `M`, `G` or `T` (also `KiB`...), at least 1.
pub const ENV_CHECKPOINT_BUFFER_MAX: &str = "XCMIG_CHECKPOINT_BUFFER_MAX";

/// 0: not set through the C API (0 is not a valid limit).
static CHECKPOINT_BUFFER_LIMIT: AtomicU64 = AtomicU64::new(0);

/// `xcmig_set_checkpoint_buffer_limit`: a limit in bytes, or 0 to go back
/// to the environment variable and the default.
pub fn set_checkpoint_buffer_limit(bytes: u64) {
    CHECKPOINT_BUFFER_LIMIT.store(bytes, Ordering::SeqCst);
}

/// The checkpoint buffer limit for a restore starting now, from the
/// process environment.
pub fn current_checkpoint_buffer_limit(log: &dyn Log) -> u64 {
    resolve_checkpoint_buffer_limit(&|name| std::env::var_os(name), log)
}

/// The C API's limit, then `env`'s, then the default; an environment value
/// that does not parse is reported on `log` and ignored.
pub fn resolve_checkpoint_buffer_limit(
    env: &dyn Fn(&str) -> Option<OsString>,
    log: &dyn Log,
) -> u64 {
    let api = CHECKPOINT_BUFFER_LIMIT.load(Ordering::SeqCst);
    if api != 0 {
        return api;
    }
    let Some(raw) = env(ENV_CHECKPOINT_BUFFER_MAX) else {
        return DEFAULT_CHECKPOINT_BUFFER_LIMIT;
    };
    match raw.to_str().map(str::trim).and_then(parse_bytes) {
        Some(n) => n,
        None => {
            log.log(
                Level::Warn,
                None,
                &format!(
                    "xcmig: ignoring {ENV_CHECKPOINT_BUFFER_MAX}={:?}: expected a number of bytes \
                     from 1, optionally with a K, M, G or T suffix; using the default of {DEFAULT_CHECKPOINT_BUFFER_LIMIT} bytes",
                    raw.to_string_lossy()
                ),
            );
            DEFAULT_CHECKPOINT_BUFFER_LIMIT
        }
    }
}

/// Decimal digits, then an optional binary suffix (`K`, `M`, `G`, `T`, any
/// case, optionally followed by `iB` or `B`); at least 1, no overflow.
fn parse_bytes(v: &str) -> Option<u64> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (num, suffix) = v.split_at(digits);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    let n: u64 = num.parse().ok()?;
    let bytes = n.checked_mul(1u64 << shift)?;
    (bytes >= 1).then_some(bytes)
}

// ---- Stream I/O timeout (issue 10, the network fails) ----
//
// Not a pre-copy setting: it applies to every save and restore (plain, live,
// Remus, COLO) and to both descriptors of a call (the stream and the COLO
// back channel), resolved at the start of each call like the settings above.

/// `XCMIG_IO_TIMEOUT`: seconds without progress on the stream before the
/// call fails with `ETIMEDOUT`; 0 = wait forever (libxenguest's behaviour).
pub const ENV_IO_TIMEOUT: &str = "XCMIG_IO_TIMEOUT";

/// The default I/O timeout, in seconds. The stream legitimately stalls
/// while libxl works inside a callback, and the longest of those waits is
/// the guest's suspend: libxl gives a guest 60 s to acknowledge it
/// (`libxl_dom_suspend.c`), preceded on HVM by the device model's log-dirty
/// switch (10 s, `libxl_dom_save.c`); the restorer (and, for COLO, the
/// primary reading the back channel while the secondary suspends) sees no
/// byte meanwhile. Remus checkpoints every 200 ms by default and COLO at
/// least every 5 s (`COLO_PROXY_CHECKPOINT_TIMEOUT`). 120 s is those 70 s
/// with room to spare, and still detects a dead peer well before TCP does
/// (15 retransmissions, about 15 minutes, and never for a reader waiting on
/// an idle connection).
pub const DEFAULT_IO_TIMEOUT_SECS: u32 = 120;

static IO_TIMEOUT: AtomicU32 = AtomicU32::new(UNSET);

/// `xcmig_set_io_timeout`: seconds, 0 for none, less than `UINT_MAX`.
pub fn set_io_timeout(seconds: u32) -> Result<(), Invalid> {
    store(&IO_TIMEOUT, seconds, seconds != UNSET)
}

fn reset_io_timeout() {
    IO_TIMEOUT.store(UNSET, Ordering::SeqCst);
}

/// The I/O timeout for a call starting now (`None`: wait forever), from
/// the process environment.
pub fn current_io_timeout(log: &dyn Log) -> Option<Duration> {
    resolve_io_timeout(&|name| std::env::var_os(name), log)
}

/// The I/O timeout from the C API's value, then `env`, then the default; an
/// environment value that does not parse is reported on `log`.
pub fn resolve_io_timeout(
    env: &dyn Fn(&str) -> Option<OsString>,
    log: &dyn Log,
) -> Option<Duration> {
    let mut secs = IO_TIMEOUT.load(Ordering::SeqCst);
    if secs == UNSET {
        secs = DEFAULT_IO_TIMEOUT_SECS;
        if let Some(raw) = env(ENV_IO_TIMEOUT) {
            match raw
                .to_str()
                .map(str::trim)
                .and_then(parse_u32)
                .filter(|&n| n != UNSET)
            {
                Some(n) => secs = n,
                None => log.log(
                    Level::Warn,
                    None,
                    &format!(
                        "xcmig: ignoring {ENV_IO_TIMEOUT}={:?}: expected whole seconds from 0 \
                         (no timeout) to 4294967294; using the default ({DEFAULT_IO_TIMEOUT_SECS} s)",
                        raw.to_string_lossy()
                    ),
                ),
            }
        }
    }
    (secs > 0).then(|| Duration::from_secs(u64::from(secs)))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::save::policy::{DEFAULT_MAX_ITERATIONS, DEFAULT_TARGET_DOWNTIME};

    /// The C API's values are process-wide: tests that set them run one at
    /// a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[derive(Default)]
    struct Warnings(RefCell<Vec<(Level, String)>>);

    impl Log for Warnings {
        fn log(&self, level: Level, _errno: Option<i32>, msg: &str) {
            self.0.borrow_mut().push((level, msg.to_owned()));
        }
        fn progress(&self, _doing_what: &str, _done: u64, _total: u64) {}
    }

    fn with_env(vars: &[(&str, &str)]) -> (PrecopySettings, Vec<(Level, String)>) {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let log = Warnings::default();
        let s = resolve(&|name| map.get(name).cloned(), &log);
        let lines = log.0.into_inner();
        (s, lines)
    }

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        reset();
        g
    }

    #[test]
    fn no_settings_give_the_targeted_defaults() {
        let _g = serial();
        let (s, warnings) = with_env(&[]);
        assert_eq!(s, PrecopySettings::default());
        assert_eq!(s.policy, PolicyChoice::Targeted);
        assert_eq!(s.target_downtime, DEFAULT_TARGET_DOWNTIME);
        assert_eq!(s.max_iterations, DEFAULT_MAX_ITERATIONS);
        assert!(warnings.is_empty());
    }

    #[test]
    fn environment_variables_take_effect() {
        let _g = serial();
        let (s, warnings) = with_env(&[
            (ENV_POLICY, "classic"),
            (ENV_TARGET_DOWNTIME_MS, "50"),
            (ENV_MAX_ITERATIONS, "7"),
            (ENV_MAX_PRECOPY_SECONDS, "0"),
            (ENV_ABORT_IF_NOT_CONVERGING, "yes"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            s,
            PrecopySettings {
                policy: PolicyChoice::Classic,
                target_downtime: Duration::from_millis(50),
                max_iterations: 7,
                max_precopy_time: None,
                abort_if_not_converging: true,
                ..PrecopySettings::default()
            }
        );
        let (s, _) = with_env(&[
            (ENV_POLICY, " Targeted "),
            (ENV_MAX_PRECOPY_SECONDS, "12"),
            (ENV_ABORT_IF_NOT_CONVERGING, "off"),
        ]);
        assert_eq!(s.policy, PolicyChoice::Targeted);
        assert_eq!(s.max_precopy_time, Some(Duration::from_secs(12)));
        assert!(!s.abort_if_not_converging);
    }

    #[test]
    fn invalid_environment_values_are_ignored_with_a_warning() {
        let _g = serial();
        let bad = [
            (ENV_POLICY, "fastest"),
            (ENV_TARGET_DOWNTIME_MS, "-5"),
            (ENV_MAX_ITERATIONS, "0"),
            (ENV_MAX_PRECOPY_SECONDS, "1e3"),
            (ENV_ABORT_IF_NOT_CONVERGING, "maybe"),
        ];
        let (s, warnings) = with_env(&bad);
        assert_eq!(s, PrecopySettings::default());
        assert_eq!(warnings.len(), bad.len(), "{warnings:?}");
        for ((name, value), (level, msg)) in bad.iter().zip(&warnings) {
            assert_eq!(*level, Level::Warn);
            assert!(msg.contains(name) && msg.contains(value), "{msg}");
            assert!(msg.contains("using the default"), "{msg}");
        }
        for v in ["", "99999999999", "4294967295", "0x10", "12ms", "\u{0}"] {
            let (s, warnings) = with_env(&[(ENV_TARGET_DOWNTIME_MS, v)]);
            assert_eq!(s.target_downtime, DEFAULT_TARGET_DOWNTIME, "{v:?}");
            assert_eq!(warnings.len(), 1, "{v:?}");
        }
    }

    #[test]
    fn non_utf8_environment_value_is_ignored_with_a_warning() {
        use std::os::unix::ffi::OsStringExt;
        let _g = serial();
        let log = Warnings::default();
        let s = resolve(
            &|name| (name == ENV_MAX_ITERATIONS).then(|| OsString::from_vec(vec![0xff, b'3'])),
            &log,
        );
        assert_eq!(s.max_iterations, DEFAULT_MAX_ITERATIONS);
        assert_eq!(log.0.borrow().len(), 1);
    }

    #[test]
    fn c_setters_take_effect_and_win_over_the_environment() {
        let _g = serial();
        set_policy(POLICY_CLASSIC).unwrap();
        set_target_downtime_ms(20).unwrap();
        set_max_iterations(3).unwrap();
        set_max_precopy_seconds(0).unwrap();
        set_abort_if_not_converging(true);
        let env = [
            (ENV_POLICY, "targeted"),
            (ENV_TARGET_DOWNTIME_MS, "900"),
            (ENV_MAX_ITERATIONS, "nonsense"),
        ];
        let (s, warnings) = with_env(&env);
        // The C API's values are used; the environment is not even read.
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            s,
            PrecopySettings {
                policy: PolicyChoice::Classic,
                target_downtime: Duration::from_millis(20),
                max_iterations: 3,
                max_precopy_time: None,
                abort_if_not_converging: true,
                ..PrecopySettings::default()
            }
        );
        reset();
        let (s, _) = with_env(&env);
        assert_eq!(s.policy, PolicyChoice::Targeted);
        assert_eq!(s.target_downtime, Duration::from_millis(900));
    }

    #[test]
    fn c_setters_refuse_out_of_range_values_and_keep_the_old_ones() {
        let _g = serial();
        set_max_iterations(9).unwrap();
        assert_eq!(set_max_iterations(0), Err(Invalid));
        assert_eq!(set_max_iterations(u32::MAX), Err(Invalid));
        assert_eq!(set_target_downtime_ms(u32::MAX), Err(Invalid));
        assert_eq!(set_max_precopy_seconds(u32::MAX), Err(Invalid));
        assert_eq!(set_policy(2), Err(Invalid));
        assert_eq!(set_policy(-1), Err(Invalid));
        let (s, _) = with_env(&[]);
        assert_eq!(s.max_iterations, 9);
        assert_eq!(s.policy, PolicyChoice::Targeted);
        reset();
    }

    #[test]
    fn exported_setters_report_einval_and_take_effect() {
        use crate::capi::exports::*;
        let _g = serial();
        let errno = || std::io::Error::last_os_error().raw_os_error();
        assert_eq!(xcmig_set_max_iterations(0), -1);
        assert_eq!(errno(), Some(libc::EINVAL));
        assert_eq!(xcmig_set_precopy_policy(7), -1);
        assert_eq!(errno(), Some(libc::EINVAL));
        assert_eq!(xcmig_set_target_downtime_ms(u32::MAX), -1);
        assert_eq!(xcmig_set_max_precopy_seconds(u32::MAX), -1);
        assert_eq!(xcmig_set_precopy_policy(XCMIG_PRECOPY_CLASSIC), 0);
        assert_eq!(xcmig_set_target_downtime_ms(40), 0);
        assert_eq!(xcmig_set_max_iterations(12), 0);
        assert_eq!(xcmig_set_max_precopy_seconds(5), 0);
        xcmig_set_abort_if_not_converging(true);
        let (s, _) = with_env(&[]);
        assert_eq!(
            s,
            PrecopySettings {
                policy: PolicyChoice::Classic,
                target_downtime: Duration::from_millis(40),
                max_iterations: 12,
                max_precopy_time: Some(Duration::from_secs(5)),
                abort_if_not_converging: true,
                ..PrecopySettings::default()
            }
        );
        assert_eq!(xcmig_set_precopy_policy(XCMIG_PRECOPY_TARGETED), 0);
        assert_eq!(with_env(&[]).0.policy, PolicyChoice::Targeted);
        xcmig_reset_precopy_settings();
        assert_eq!(with_env(&[]).0, PrecopySettings::default());
    }

    #[test]
    fn auto_converge_is_off_by_default_and_read_from_the_environment() {
        use crate::save::AutoConverge;
        let _g = serial();
        assert_eq!(with_env(&[]).0.auto_converge, AutoConverge::default());
        assert!(!AutoConverge::default().enabled);
        let (s, warnings) = with_env(&[
            (ENV_AUTO_CONVERGE, "1"),
            (ENV_AUTO_CONVERGE_INITIAL, "70"),
            (ENV_AUTO_CONVERGE_STEP, "15"),
            (ENV_AUTO_CONVERGE_FLOOR, "10"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            s.auto_converge,
            AutoConverge {
                enabled: true,
                initial_share: 70,
                step: 15,
                floor: 10,
            }
        );
        // Out of range or malformed: a warning each and the default.
        let bad = [
            (ENV_AUTO_CONVERGE, "sometimes"),
            (ENV_AUTO_CONVERGE_INITIAL, "0"),
            (ENV_AUTO_CONVERGE_STEP, "101"),
            (ENV_AUTO_CONVERGE_FLOOR, "5%"),
        ];
        let (s, warnings) = with_env(&bad);
        assert_eq!(s.auto_converge, AutoConverge::default());
        assert_eq!(warnings.len(), bad.len(), "{warnings:?}");
        // A floor above the initial share is lowered to it, with a warning.
        let (s, warnings) = with_env(&[
            (ENV_AUTO_CONVERGE_INITIAL, "20"),
            (ENV_AUTO_CONVERGE_FLOOR, "40"),
        ]);
        assert_eq!(
            (s.auto_converge.initial_share, s.auto_converge.floor),
            (20, 20)
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].1.contains("floor 40%"), "{warnings:?}");
    }

    #[test]
    fn auto_converge_setters_win_over_the_environment_and_refuse_bad_shares() {
        use crate::capi::exports::*;
        let _g = serial();
        let errno = || std::io::Error::last_os_error().raw_os_error();
        for (i, st, f) in [
            (0, 10, 5),
            (50, 0, 5),
            (50, 10, 0),
            (101, 10, 5),
            (30, 10, 40),
        ] {
            assert_eq!(xcmig_set_auto_converge_shares(i, st, f), -1, "{i} {st} {f}");
            assert_eq!(errno(), Some(libc::EINVAL));
        }
        xcmig_set_auto_converge(true);
        assert_eq!(xcmig_set_auto_converge_shares(40, 10, 10), 0);
        let env = [(ENV_AUTO_CONVERGE, "0"), (ENV_AUTO_CONVERGE_INITIAL, "90")];
        let (s, warnings) = with_env(&env);
        assert!(warnings.is_empty(), "{warnings:?}");
        let a = s.auto_converge;
        assert!(a.enabled);
        assert_eq!((a.initial_share, a.step, a.floor), (40, 10, 10));
        xcmig_reset_precopy_settings();
        let (s, _) = with_env(&env);
        assert!(!s.auto_converge.enabled);
        assert_eq!(s.auto_converge.initial_share, 90);
    }

    fn legacy_with_env(value: Option<&str>) -> (LegacyImages, Vec<(Level, String)>) {
        let log = Warnings::default();
        let v = resolve_legacy_restore(
            &|name| {
                (name == ENV_LEGACY_RESTORE)
                    .then(|| value.map(OsString::from))
                    .flatten()
            },
            &log,
        );
        (v, log.0.into_inner())
    }

    #[test]
    fn legacy_restore_is_off_by_default_and_read_from_the_environment() {
        let _g = serial();
        assert_eq!(legacy_with_env(None).0, LegacyImages::Refuse);
        for (v, want) in [
            ("off", LegacyImages::Refuse),
            ("0", LegacyImages::Refuse),
            ("auto", LegacyImages::Detect),
            ("On", LegacyImages::Detect),
            (" 32 ", LegacyImages::Width(Width::Bits32)),
            ("64", LegacyImages::Width(Width::Bits64)),
        ] {
            let (got, warnings) = legacy_with_env(Some(v));
            assert_eq!(got, want, "{v:?}");
            assert!(warnings.is_empty(), "{warnings:?}");
        }
        let (got, warnings) = legacy_with_env(Some("48"));
        assert_eq!(got, LegacyImages::Refuse);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].1.contains("XCMIG_LEGACY_RESTORE=\"48\""),
            "{warnings:?}"
        );
    }

    #[test]
    fn legacy_restore_setter_wins_over_the_environment_refuses_bad_modes_and_resets() {
        use crate::capi::exports::*;
        let _g = serial();
        let errno = || std::io::Error::last_os_error().raw_os_error();
        for bad in [-1, 2, 16, 65] {
            assert_eq!(xcmig_set_legacy_restore(bad), -1, "{bad}");
            assert_eq!(errno(), Some(libc::EINVAL));
        }
        assert_eq!(xcmig_set_legacy_restore(32), 0);
        assert_eq!(
            legacy_with_env(Some("auto")).0,
            LegacyImages::Width(Width::Bits32)
        );
        assert_eq!(xcmig_set_legacy_restore(XCMIG_LEGACY_RESTORE_OFF), 0);
        assert_eq!(legacy_with_env(Some("auto")).0, LegacyImages::Refuse);
        assert_eq!(xcmig_set_legacy_restore(XCMIG_LEGACY_RESTORE_AUTO), 0);
        assert_eq!(legacy_with_env(None).0, LegacyImages::Detect);
        xcmig_reset_precopy_settings();
        assert_eq!(
            legacy_with_env(Some("64")).0,
            LegacyImages::Width(Width::Bits64)
        );
        assert_eq!(legacy_with_env(None).0, LegacyImages::Refuse);
    }

    fn io_timeout_with_env(vars: &[(&str, &str)]) -> (Option<Duration>, Vec<(Level, String)>) {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let log = Warnings::default();
        let t = resolve_io_timeout(&|name| map.get(name).cloned(), &log);
        (t, log.0.into_inner())
    }

    #[test]
    fn io_timeout_defaults_to_two_minutes_and_zero_means_none() {
        let _g = serial();
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(io_timeout_with_env(&[]), (secs(120), vec![]));
        assert_eq!(io_timeout_with_env(&[(ENV_IO_TIMEOUT, "7")]).0, secs(7));
        assert_eq!(io_timeout_with_env(&[(ENV_IO_TIMEOUT, " 0 ")]).0, None);
        for bad in ["-1", "2.5", "4294967295", "5s", ""] {
            let (t, warnings) = io_timeout_with_env(&[(ENV_IO_TIMEOUT, bad)]);
            assert_eq!(t, secs(120), "{bad:?}");
            assert_eq!(warnings.len(), 1, "{bad:?}");
            assert!(warnings[0].1.contains(ENV_IO_TIMEOUT), "{warnings:?}");
        }
    }

    #[test]
    fn io_timeout_setter_wins_over_the_environment_until_reset() {
        use crate::capi::exports::{xcmig_reset_precopy_settings, xcmig_set_io_timeout};
        let _g = serial();
        assert_eq!(xcmig_set_io_timeout(u32::MAX), -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(xcmig_set_io_timeout(0), 0);
        assert_eq!(io_timeout_with_env(&[(ENV_IO_TIMEOUT, "9")]).0, None);
        assert_eq!(xcmig_set_io_timeout(3), 0);
        assert_eq!(
            io_timeout_with_env(&[(ENV_IO_TIMEOUT, "junk")]),
            (Some(Duration::from_secs(3)), vec![])
        );
        xcmig_reset_precopy_settings();
        assert_eq!(
            io_timeout_with_env(&[(ENV_IO_TIMEOUT, "9")]).0,
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn setters_are_safe_from_many_threads() {
        let _g = serial();
        std::thread::scope(|t| {
            for i in 0..8u32 {
                t.spawn(move || {
                    for j in 0..1000u32 {
                        set_target_downtime_ms(i * 1000 + j).unwrap();
                        set_abort_if_not_converging(j % 2 == 0);
                    }
                });
            }
        });
        let (s, _) = with_env(&[]);
        let ms = s.target_downtime.as_millis() as u32;
        assert!(ms % 1000 == 999 && ms / 1000 < 8, "{ms}");
        reset();
    }

    fn limit_with_env(value: Option<&str>) -> (u64, Vec<(Level, String)>) {
        let log = Warnings::default();
        let n = resolve_checkpoint_buffer_limit(
            &|name| {
                assert_eq!(name, ENV_CHECKPOINT_BUFFER_MAX);
                value.map(OsString::from)
            },
            &log,
        );
        (n, log.0.into_inner())
    }

    #[test]
    fn checkpoint_buffer_limit_reads_bytes_with_binary_suffixes() {
        let _g = serial();
        assert_eq!(
            limit_with_env(None),
            (DEFAULT_CHECKPOINT_BUFFER_LIMIT, vec![])
        );
        for (v, want) in [
            ("1", 1),
            ("4096", 4096),
            (" 64K ", 64 << 10),
            ("512m", 512 << 20),
            ("2GiB", 2 << 30),
            ("3gb", 3 << 30),
            ("1T", 1 << 40),
            ("100B", 100),
        ] {
            assert_eq!(limit_with_env(Some(v)), (want, vec![]), "{v:?}");
        }
    }

    #[test]
    fn invalid_checkpoint_buffer_limits_are_ignored_with_a_warning() {
        let _g = serial();
        for v in [
            "",
            "0",
            "0K",
            "-1",
            "1.5G",
            "12 M",
            "5P",
            "0x100",
            "K",
            "20000000T",
        ] {
            let (n, warnings) = limit_with_env(Some(v));
            assert_eq!(n, DEFAULT_CHECKPOINT_BUFFER_LIMIT, "{v:?}");
            assert_eq!(warnings.len(), 1, "{v:?}");
            let (level, msg) = &warnings[0];
            assert_eq!(*level, Level::Warn);
            assert!(
                msg.contains(ENV_CHECKPOINT_BUFFER_MAX) && msg.contains("default"),
                "{msg}"
            );
        }
    }

    #[test]
    fn the_c_checkpoint_buffer_limit_wins_and_zero_or_reset_forgets_it() {
        use crate::capi::exports::*;
        let _g = serial();
        xcmig_set_checkpoint_buffer_limit(12345);
        // The environment is not even read (no warning for its nonsense).
        assert_eq!(limit_with_env(Some("nonsense")), (12345, vec![]));
        xcmig_set_checkpoint_buffer_limit(0);
        assert_eq!(limit_with_env(Some("8M")).0, 8 << 20);
        xcmig_set_checkpoint_buffer_limit(u64::MAX);
        assert_eq!(limit_with_env(None).0, u64::MAX);
        xcmig_reset_precopy_settings();
        assert_eq!(limit_with_env(None).0, DEFAULT_CHECKPOINT_BUFFER_LIMIT);
    }

    fn compression_with_env(vars: &[(&str, &str)]) -> (CompressionSettings, Vec<(Level, String)>) {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let log = Warnings::default();
        let s = resolve_compression(&|name| map.get(name).cloned(), &log);
        (s, log.0.into_inner())
    }

    #[test]
    fn compression_is_off_by_default_and_every_form_of_xcmig_compress_parses() {
        let _g = serial();
        assert_eq!(compression_with_env(&[]).0, CompressionSettings::default());
        assert_eq!(CompressionSettings::default().mode, CompressMode::Off);
        for (v, mode) in [
            ("lz4", CompressMode::Lz4),
            (" LZ4 ", CompressMode::Lz4),
            ("zstd", CompressMode::Zstd { level: 1 }),
            ("zstd:7", CompressMode::Zstd { level: 7 }),
            ("zstd:19", CompressMode::Zstd { level: 19 }),
            ("auto", CompressMode::Auto),
            ("off", CompressMode::Off),
            ("none", CompressMode::Off),
        ] {
            let (s, w) = compression_with_env(&[(ENV_COMPRESS, v), (ENV_COMPRESS_THREADS, "3")]);
            assert!(w.is_empty(), "{v}: {w:?}");
            assert_eq!(s, CompressionSettings { mode, threads: 3 }, "{v}");
        }
    }

    #[test]
    fn invalid_compression_values_are_ignored_with_a_warning() {
        let _g = serial();
        for v in ["gzip", "zstd:0", "zstd:20", "zstd:x", "lz4:3", "auto:1", ""] {
            let (s, w) = compression_with_env(&[(ENV_COMPRESS, v)]);
            assert_eq!(s.mode, CompressMode::Off, "{v}");
            assert_eq!(w.len(), 1, "{v}: {w:?}");
            assert!(w[0].1.contains("XCMIG_COMPRESS"), "{w:?}");
        }
        for v in ["0", "65", "two", "-1"] {
            let (s, w) = compression_with_env(&[(ENV_COMPRESS_THREADS, v)]);
            assert_eq!(s.threads, 0, "{v}");
            assert!(w[0].1.contains("XCMIG_COMPRESS_THREADS"), "{w:?}");
        }
        // 0 threads resolves to the cores available, at least one.
        assert!(compression_with_env(&[]).0.worker_threads() >= 1);
    }

    #[test]
    fn exported_compression_setters_win_refuse_bad_values_and_reset() {
        use crate::capi::exports::*;
        let _g = serial();
        let errno = || std::io::Error::last_os_error().raw_os_error();
        assert_eq!(xcmig_set_compression(4, 0), -1);
        assert_eq!(errno(), Some(libc::EINVAL));
        assert_eq!(xcmig_set_compression(XCMIG_COMPRESS_LZ4, 3), -1);
        assert_eq!(xcmig_set_compression(XCMIG_COMPRESS_ZSTD, 20), -1);
        assert_eq!(xcmig_set_compression(XCMIG_COMPRESS_ZSTD, -1), -1);
        assert_eq!(xcmig_set_compress_threads(65), -1);
        assert_eq!(errno(), Some(libc::EINVAL));
        assert_eq!(compression_with_env(&[]).0, CompressionSettings::default());
        assert_eq!(xcmig_set_compression(XCMIG_COMPRESS_ZSTD, 5), 0);
        assert_eq!(xcmig_set_compress_threads(2), 0);
        // The C values win over the environment, which is not read.
        let (s, w) = compression_with_env(&[(ENV_COMPRESS, "lz4"), (ENV_COMPRESS_THREADS, "x")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            s,
            CompressionSettings {
                mode: CompressMode::Zstd { level: 5 },
                threads: 2
            }
        );
        assert_eq!(xcmig_set_compression(XCMIG_COMPRESS_ZSTD, 0), 0);
        assert_eq!(
            compression_with_env(&[]).0.mode,
            CompressMode::Zstd { level: 1 }
        );
        assert_eq!(xcmig_set_compression(XCMIG_COMPRESS_AUTO, 0), 0);
        assert_eq!(compression_with_env(&[]).0.mode, CompressMode::Auto);
        assert_eq!(xcmig_set_compression(XCMIG_COMPRESS_OFF, 0), 0);
        assert_eq!(
            compression_with_env(&[(ENV_COMPRESS, "lz4")]).0.mode,
            CompressMode::Off
        );
        xcmig_reset_precopy_settings();
        assert_eq!(
            compression_with_env(&[(ENV_COMPRESS, "lz4")]).0.mode,
            CompressMode::Lz4
        );
        // The C constants are the settings' values.
        assert_eq!(
            [
                XCMIG_COMPRESS_OFF,
                XCMIG_COMPRESS_LZ4,
                XCMIG_COMPRESS_ZSTD,
                XCMIG_COMPRESS_AUTO
            ],
            [COMPRESS_OFF, COMPRESS_LZ4, COMPRESS_ZSTD, COMPRESS_AUTO]
        );
    }
}
