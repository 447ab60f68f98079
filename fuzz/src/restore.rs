//! The whole restore, in-process: each input is restored by
//! `xcmig::restore::restore_domain_with_back_channel` over `hv::sim` into a
//! fresh empty simulated domain (the target a toolstack creates), which is
//! destroyed afterwards.
//!
//! The input is one mode byte ([`Mode`]) and then the stream. After every
//! input [`Target::run`] checks what a hostile stream must never break:
//! the restore returns (no panic, no hang: the input is finite and every
//! callback answers at once), and either succeeds or fails with an error
//! whose message names the problem and whose errno is set; no foreign
//! mapping is left (`xensim::live_mappings() == 0`); the domain is then
//! destroyed without error.
//!
//! Cost per input: one domain created and destroyed on a host directory
//! made once per process under `/dev/shm` (memory-backed), removed by the
//! next process when its owner has died.

use std::path::{Path, PathBuf};

use xcmig::hv::sim::SimHypervisor;
use xcmig::restore::{
    restore_domain_with_back_channel, MissingStaticData, Proceed, RestoreCallbacks, RestoreError,
    RestoreHook, RestoreOutputs, RestoreParams, DEFAULT_CHECKPOINT_BUFFER_LIMIT,
};
use xcmig::toolstack::{CallbackFailed, StreamType};
use xensim::{DomainConfig, GuestType, Host};

/// Memory of the empty target domain: the seeds are 1 MiB guests, and a
/// little room lets a stream populate more than it should.
pub const TARGET_MEMORY: u64 = 2 << 20;
/// vCPUs of the target (the seeds have two).
pub const TARGET_VCPUS: u32 = 2;

/// The guest type of the empty domain a target restores into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HVM.
    Hvm,
    /// PVH.
    Pvh,
    /// x86 PV (created 64-bit, as libxl does; a 32-bit stream switches it).
    Pv,
}

impl Kind {
    fn guest_type(self) -> GuestType {
        match self {
            Kind::Hvm => GuestType::Hvm,
            Kind::Pvh => GuestType::Pvh,
            Kind::Pv => GuestType::Pv,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Kind::Hvm => "hvm",
            Kind::Pvh => "pvh",
            Kind::Pv => "pv",
        }
    }
}

/// The checkpoint buffer limit of mode bit 7: less than one page, and
/// less than the vCPU and HVM context of a seed's later checkpoints, so a
/// checkpoint of any seed after the first exceeds it.
pub const SMALL_CHECKPOINT_BUFFER: u64 = 512;

/// What the input's first byte asks of the toolstack side:
///
/// - bits 0-1: the stream type: 1 Remus, 2 COLO (with the back channel
///   collected in memory and log-dirty on in the target, as libxl sets it
///   up), 0 and 3 plain;
/// - bits 2-4: the CHECKPOINT (1-7) at which the `checkpoint` callback asks
///   for failover; 0: never, the stream's end fails over;
/// - bit 5: `static_data_done` fails;
/// - bit 6: the back channel refuses writes (COLO);
/// - bit 7: a checkpointed restore holds back at most
///   [`SMALL_CHECKPOINT_BUFFER`] bytes per checkpoint (else the default
///   limit, which no input reaches), so the refusal path runs too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u8);

impl Mode {
    /// The stream type.
    pub fn stream_type(self) -> StreamType {
        match self.0 & 3 {
            1 => StreamType::Remus,
            2 => StreamType::Colo,
            _ => StreamType::Plain,
        }
    }

    /// The checkpoint answered with failover (0: none).
    pub fn failover_at(self) -> u32 {
        u32::from((self.0 >> 2) & 7)
    }

    /// Whether `static_data_done` fails.
    pub fn static_data_fails(self) -> bool {
        self.0 & 0x20 != 0
    }

    /// Whether the back channel refuses writes.
    pub fn back_channel_fails(self) -> bool {
        self.0 & 0x40 != 0
    }

    /// The checkpoint buffer limit the restore is given.
    pub fn checkpoint_buffer_limit(self) -> u64 {
        if self.0 & 0x80 != 0 {
            SMALL_CHECKPOINT_BUFFER
        } else {
            DEFAULT_CHECKPOINT_BUFFER_LIMIT
        }
    }

    /// The mode byte of a stream type with nothing else asked.
    pub fn of(t: StreamType) -> Mode {
        Mode(match t {
            StreamType::Plain => 0,
            StreamType::Remus => 1,
            StreamType::Colo => 2,
        })
    }
}

/// A toolstack that answers every callback at once, as [`Mode`] says.
struct Toolstack {
    mode: Mode,
    checkpoints: u32,
}

impl Toolstack {
    fn next_checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        self.checkpoints += 1;
        if self.checkpoints == self.mode.failover_at() {
            Ok(Proceed::Failover)
        } else {
            Ok(Proceed::Continue)
        }
    }
}

impl RestoreCallbacks for Toolstack {
    fn has(&self, _hook: RestoreHook) -> bool {
        true
    }

    fn static_data_done(&mut self, _missing: MissingStaticData) -> Result<(), CallbackFailed> {
        if self.mode.static_data_fails() {
            Err(CallbackFailed { code: -1 })
        } else {
            Ok(())
        }
    }

    fn checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        self.next_checkpoint()
    }

    fn suspend(&mut self) -> Result<Proceed, CallbackFailed> {
        Ok(Proceed::Continue)
    }

    fn postcopy(&mut self) -> Result<Proceed, CallbackFailed> {
        Ok(Proceed::Continue)
    }

    fn wait_checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        Ok(Proceed::Continue)
    }
}

/// The COLO back channel: kept in memory, or refusing every write.
struct BackChannel {
    fail: bool,
    bytes: Vec<u8>,
}

impl std::io::Write for BackChannel {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.fail {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        // Only the size matters; keep the buffer from growing unbounded.
        if self.bytes.len() < 1 << 20 {
            self.bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A simulated host for one process's restores, and the guest type of
/// its targets.
pub struct Target {
    kind: Kind,
    dir: PathBuf,
    host: Host,
}

impl Target {
    /// A host in a new directory under `/dev/shm` (the system temporary
    /// directory where there is none), after removing those of dead
    /// fuzzing processes.
    pub fn new(kind: Kind) -> Target {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base);
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!(
            "xcmig-fuzz-{}-{}-{n}",
            std::process::id(),
            kind.tag()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let host = Host::open(&dir).expect("open the fuzzing xensim host");
        Target { kind, dir, host }
    }

    /// The host directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Restores `input` (mode byte, stream) into a fresh empty domain and
    /// checks the outcome (panics if a check fails: that is the finding).
    pub fn run(&self, input: &[u8]) -> Result<RestoreOutputs, RestoreError> {
        let (mode, stream) = match input.split_first() {
            Some((&m, s)) => (Mode(m), s),
            None => (Mode(0), input),
        };
        let id = self
            .host
            .create_domain(&DomainConfig {
                guest_type: self.kind.guest_type(),
                memory_bytes: TARGET_MEMORY,
                vcpus: TARGET_VCPUS,
                empty: true,
                ..DomainConfig::default()
            })
            .expect("create the empty target domain");
        let stream_type = mode.stream_type();
        let params = RestoreParams {
            store_evtchn: 5,
            store_domid: 0,
            console_evtchn: 6,
            console_domid: 0,
            stream_type,
            checkpoint_buffer_limit: mode.checkpoint_buffer_limit(),
        };
        let mut back = BackChannel {
            fail: mode.back_channel_fails(),
            bytes: Vec::new(),
        };
        if stream_type == StreamType::Colo {
            self.host
                .domain(id)
                .and_then(|d| d.logdirty_enable())
                .expect("log-dirty on the COLO secondary");
        }
        let mut toolstack = Toolstack {
            mode,
            checkpoints: 0,
        };
        let hv = SimHypervisor::new(Host::open(&self.dir).expect("reopen the host"));
        let mut io = stream;
        let back_ref: Option<&mut dyn std::io::Write> =
            (stream_type == StreamType::Colo).then_some(&mut back as &mut dyn std::io::Write);
        let res =
            restore_domain_with_back_channel(&hv, id, &mut io, back_ref, &params, &mut toolstack);
        let left = xensim::live_mappings();
        assert_eq!(left, 0, "{left} foreign mappings left after {res:?}");
        if let Err(e) = &res {
            check_error(e);
        }
        drop(hv);
        if verbose() {
            match &res {
                Ok(o) => eprintln!(
                    "restore: ok, {} records, {} pages, {} checkpoints",
                    o.records, o.pages_written, o.checkpoints
                ),
                Err(e) => eprintln!("restore: refused: {e}"),
            }
        }
        self.host
            .destroy_domain(id)
            .unwrap_or_else(|e| panic!("destroying the domain after {res:?}: {e}"));
        res
    }
}

/// Whether `XCMIG_FUZZ_VERBOSE` is set: each outcome is printed (for
/// replaying a corpus by hand).
fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("XCMIG_FUZZ_VERBOSE").is_some())
}

/// An error must say what went wrong and carry an errno for the C caller.
fn check_error(e: &RestoreError) {
    let msg = e.to_string();
    assert!(!msg.trim().is_empty(), "an error with no message: {e:?}");
    assert!(
        !msg.contains('\n'),
        "a message of more than one line: {msg:?}"
    );
    assert!(e.errno() > 0, "no errno for {msg:?}");
}

/// Removes `xcmig-fuzz-PID-*` directories under `base` whose process is
/// gone (libFuzzer ends with `exit`, so a process cannot clean up after
/// itself).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("xcmig-fuzz-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `live_mappings` counts the whole process: one restore at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed seeds (real streams of both engines, see
    /// tests/fuzz_seeds.rs) restore, each into its target's guest type.
    #[test]
    fn every_committed_seed_restores() {
        let _one = serial();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let mut n = 0;
        for (dir, kind) in [
            ("restore_hvm", Kind::Hvm),
            ("restore_pvh", Kind::Pvh),
            ("restore_pv", Kind::Pv),
        ] {
            let t = Target::new(kind);
            let mut seeds: Vec<PathBuf> = std::fs::read_dir(corpus.join(dir))
                .expect("corpus directory")
                .map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with("seed-"))
                })
                .collect();
            seeds.sort();
            assert!(!seeds.is_empty(), "no seeds in {dir}");
            for s in seeds {
                let input = std::fs::read(&s).expect("seed");
                let out = t
                    .run(&input)
                    .unwrap_or_else(|e| panic!("{}: {e}", s.display()));
                assert!(out.pages_written > 0, "{}", s.display());
                n += 1;
            }
            let _ = std::fs::remove_dir_all(t.dir());
        }
        assert!(n >= 20, "{n} seeds");
    }

    #[test]
    fn the_mode_byte_selects_stream_type_failover_and_failures() {
        assert_eq!(Mode(0).stream_type(), StreamType::Plain);
        assert_eq!(Mode(1).stream_type(), StreamType::Remus);
        assert_eq!(Mode(2).stream_type(), StreamType::Colo);
        assert_eq!(Mode(3).stream_type(), StreamType::Plain);
        assert_eq!(Mode(0b1_0101).failover_at(), 5);
        assert!(Mode(0x20).static_data_fails() && !Mode(0x20).back_channel_fails());
        assert!(Mode(0x40).back_channel_fails());
        assert_eq!(
            Mode(0x81).checkpoint_buffer_limit(),
            SMALL_CHECKPOINT_BUFFER
        );
        assert_eq!(
            Mode(0x41).checkpoint_buffer_limit(),
            DEFAULT_CHECKPOINT_BUFFER_LIMIT
        );
        assert_eq!(Mode::of(StreamType::Colo), Mode(2));
    }

    /// A Remus seed restored with failover asked at its second checkpoint
    /// keeps the first; with the static-data callback failing, it names it.
    #[test]
    fn mode_bits_reach_the_restore() {
        let _one = serial();
        let seed =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/restore_hvm/seed-hvm-remus-xcmig");
        let mut input = std::fs::read(seed).expect("seed");
        let t = Target::new(Kind::Hvm);
        assert_eq!(t.run(&input).expect("to the end").checkpoints, 3);
        input[0] = 1 | 2 << 2;
        assert_eq!(t.run(&input).expect("failover at 2").checkpoints, 1);
        input[0] = 1 | 0x20;
        let e = t.run(&input).expect_err("static_data_done fails");
        assert!(e.to_string().contains("static_data_done"), "{e}");
        input[0] = 1 | 0x80;
        let e = t
            .run(&input)
            .expect_err("a checkpoint over the small buffer");
        assert_eq!(e.errno(), libc::ENOBUFS, "{e}");
        let _ = std::fs::remove_dir_all(t.dir());
    }

    /// A stream whose pages are in xcmig's compressed record, rewritten
    /// from the plain HVM seed: each PAGE_DATA becomes an LZ4 record (odd
    /// ones) or a zstd one (even), its pages replaced by text so that they
    /// compress. Committed as `corpus/restore_hvm/seed-hvm-compressed`.
    fn compressed_seed() -> Vec<u8> {
        use xcmig_stream::{
            CompressedPages, Compression, PageCompressor, Reader, Record, Writer, WriterOptions,
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/restore_hvm");
        let plain = std::fs::read(dir.join("seed-hvm-plain-xcmig")).expect("plain seed");
        let mut r = Reader::new(&plain[1..]).expect("plain seed headers");
        let opts = WriterOptions {
            image: *r.image_header(),
            ..WriterOptions::default()
        };
        let mut w = Writer::with_options(vec![plain[0]], r.domain_header(), opts).unwrap();
        let mut n = 0u32;
        while let Some(rec) = r.next_record().expect("plain seed record") {
            let Record::PageData(pd) = &rec else {
                w.write_record(&rec).unwrap();
                continue;
            };
            n += 1;
            let c = if n % 2 == 1 {
                Compression::Lz4
            } else {
                Compression::Zstd
            };
            let mut pc = PageCompressor::new(c, 3).unwrap();
            let mut out = CompressedPages::default();
            for (i, _) in pd.data().chunks(4096).enumerate() {
                let line = format!("page {i} of record {n}: struct task *next;\n");
                let page: Vec<u8> = line.bytes().cycle().take(4096).collect();
                pc.push_page(&page, &mut out).unwrap();
            }
            if out.sizes.is_empty() {
                w.write_record(&rec).unwrap();
            } else {
                w.write_compressed_page_data(pd.entries(), c, &out).unwrap();
            }
        }
        w.into_inner()
    }

    #[test]
    fn the_compressed_seed_matches_its_generator_and_restores() {
        let _one = serial();
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/restore_hvm/seed-hvm-compressed");
        let bytes = compressed_seed();
        if std::env::var_os("XCMIG_REGEN_CORPUS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).expect("seed-hvm-compressed (XCMIG_REGEN_CORPUS=1)");
        assert!(
            committed == bytes,
            "committed seed differs from its generator"
        );
        let t = Target::new(Kind::Hvm);
        let out = t.run(&bytes).expect("the compressed seed restores");
        assert!(out.pages_written > 0);
        let _ = std::fs::remove_dir_all(t.dir());
    }
}
