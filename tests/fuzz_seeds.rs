//! The seed generator of the whole-restore fuzz targets
//! (`fuzz/corpus/restore_{hvm,pvh,pv}/seed-*`): real streams written by
//! both engines on xensim, through the C harnesses and Debian's
//! `libxl-save-helper`, libxcmig preloaded or not:
//!
//! | stream | how | guests |
//! |---|---|---|
//! | plain | `xg-save` | HVM, PVH, PV 64-bit, PV 32-bit |
//! | live | `xg-save --live` | the same |
//! | Remus (three checkpoints) | `libxl-save-helper`, as libxl drives it | the same |
//! | COLO (two checkpoints) | two helpers, the stream copied off between them | HVM |
//!
//! Guests are 1 MiB, two vCPUs, zero-filled, so that inputs stay small.
//! libxenguest sends every page with its data; here a page that is all
//! zero, of type NOTAB and not sent with data before in the stream becomes
//! an XALLOC entry without data (what xcmig sends for it, and the same
//! state on restore), and a PAGE_DATA record of holes only (XTAB entries:
//! libxenguest lists every pfn of an HVM guest up to its highest, 1 MiB
//! of them) is left out; that takes a libxenguest HVM stream from 9 MiB to
//! tens of KiB. Every other octet is the engine's; a seed equal to one
//! already written is not written again. Each file is one mode
//! byte (`xcmig_fuzz::restore::Mode`: 0 plain, 1 Remus, 2 COLO) and the
//! stream.
//!
//! Re-run (rewrites the seeds; `make build` first):
//! `make fuzz-seeds`, i.e.
//! `cargo test --release -p xcmig --test fuzz_seeds -- --ignored`.

mod capi_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use capi_support::host::{restore_argv, save_argv, Host};
use capi_support::save_helper::{run_helper_fds, Redir};
use capi_support::{describe, run, TIMEOUT};

const SEED_MEMORY: &str = "1M";
const SEED_VCPUS: &str = "2";

/// A guest to save: its name in the seed files, the fuzz target's corpus,
/// and `xensim domain create` arguments.
struct Guest {
    name: &'static str,
    target: &'static str,
    args: &'static [&'static str],
}

const GUESTS: [Guest; 4] = [
    Guest {
        name: "hvm",
        target: "restore_hvm",
        args: &["--type", "hvm"],
    },
    Guest {
        name: "pvh",
        target: "restore_pvh",
        args: &["--type", "pvh"],
    },
    Guest {
        name: "pv64",
        target: "restore_pv",
        args: &["--type", "pv", "--address-size", "64"],
    },
    Guest {
        name: "pv32",
        target: "restore_pv",
        args: &["--type", "pv", "--address-size", "32", "--p2m", "tree"],
    },
];

fn create(h: &Host, g: &Guest, seed: u64) -> u32 {
    let mut args = vec!["create"];
    args.extend_from_slice(g.args);
    let seed = seed.to_string();
    args.extend_from_slice(&[
        "--memory",
        SEED_MEMORY,
        "--vcpus",
        SEED_VCPUS,
        "--fill",
        "zero",
        "--seed",
        &seed,
    ]);
    Host::last_line(&h.xensim(&args)).parse().expect("domid")
}

/// `xg-save [--live]` of a fresh guest; the stream.
fn harness_save(h: &Host, g: &Guest, xcmig: bool, live: bool, seed: u64) -> Vec<u8> {
    let id = create(h, g, seed);
    let img = h.dir.join(&format!("plain-{seed}.img"));
    let mut c = h.harness("xg-save", xcmig);
    if live {
        c.arg("--live");
    }
    c.arg(id.to_string()).arg(&img);
    let out = run(&mut c, TIMEOUT);
    assert!(
        out.status.success(),
        "xg-save {}\n{}",
        g.name,
        describe(&out)
    );
    std::fs::read(&img).expect("stream")
}

/// A Remus save through the helper (three checkpoints); the stream.
fn remus_save(h: &Host, g: &Guest, xcmig: bool, seed: u64) -> Vec<u8> {
    let id = create(h, g, seed);
    let img = h.dir.join(&format!("remus-{seed}.img"));
    let host = h.path();
    let lib = h.env.libxcmig.clone();
    let cmd = h.helper_cmd(&host, xcmig.then_some(lib.as_path()));
    h.remus_save(&cmd, id, &img, g.name);
    std::fs::read(&img).expect("stream")
}

/// A COLO pair through two helpers (as `tests/capi_dropin.rs` runs it),
/// the primary's stream copied to the secondary through this process;
/// the stream.
fn colo_save(h: &Host, g: &Guest, xcmig: bool, seed: u64) -> Vec<u8> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;

    let src = create(h, g, seed);
    let dst = Host::last_line(&h.xensim(&[
        "create",
        g.args[0],
        g.args[1],
        "--memory",
        SEED_MEMORY,
        "--vcpus",
        SEED_VCPUS,
        "--empty",
    ]))
    .parse::<u32>()
    .expect("domid");
    let fifo = |name: &str| -> PathBuf {
        let p = h.dir.join(&format!("{name}-{seed}.fifo"));
        capi_support::run_ok(std::process::Command::new("mkfifo").arg(&p));
        p
    };
    let (out, inp, back) = (fifo("out"), fifo("in"), fifo("back"));
    // Held open so the secondary's last dirty list cannot fail with EPIPE.
    let _back_reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&back)
        .expect("back channel FIFO");
    let host = h.path();
    let lib = h.env.libxcmig.clone();
    let cmd = h.helper_cmd(&host, xcmig.then_some(lib.as_path()));
    let primary_cb = h.colo_primary_replies(src);
    let (save, restore, stream) = std::thread::scope(|s| {
        let copier = s.spawn(|| {
            let mut from = std::fs::File::open(&out).expect("primary's stream");
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .open(&inp)
                .expect("secondary's stream");
            let mut all = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = from.read(&mut buf).expect("read the primary's stream");
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                to.write_all(&buf[..n])
                    .expect("write the secondary's stream");
            }
            all
        });
        let r = s.spawn(|| {
            run_helper_fds(
                &cmd,
                &restore_argv(4, dst, 0x378, 2),
                &[(3, Redir::Read, &inp), (4, Redir::Write, &back)],
                |_| 1,
            )
        });
        let save = run_helper_fds(
            &cmd,
            &save_argv(4, src, 1, 0xf8, 2),
            &[(3, Redir::Write, &out), (4, Redir::Read, &back)],
            primary_cb,
        );
        let stream = copier.join().expect("copier");
        (save, r.join().expect("secondary"), stream)
    });
    assert_eq!(
        save.complete,
        Some((0, 0)),
        "COLO primary\n{}",
        save.log_text()
    );
    assert_eq!(
        restore.complete,
        Some((0, 0)),
        "COLO secondary\n{}",
        restore.log_text()
    );
    stream
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 octets"))
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 octets"))
}

/// Re-types zero NOTAB pages never sent with data before as XALLOC
/// without data and drops PAGE_DATA records of holes (XTAB) only (see the
/// module doc); every other octet is kept.
fn thin(stream: &[u8]) -> Vec<u8> {
    const PAGE: usize = 4096;
    const XALLOC: u64 = 0xd;
    let mut out = stream[..40].to_vec();
    let mut sent: HashSet<u64> = HashSet::new();
    let mut at = 40;
    while at + 8 <= stream.len() {
        let rtype = le32(stream, at);
        let len = le32(stream, at + 4) as usize;
        let body = &stream[at + 8..at + 8 + len];
        let padded = len.next_multiple_of(8);
        if rtype != 1 {
            out.extend_from_slice(&stream[at..at + 8 + padded]);
            at += 8 + padded;
            continue;
        }
        let n = le32(body, 0) as usize;
        let mut entries = Vec::new();
        let mut pages = Vec::new();
        let mut data = 8 + 8 * n;
        for i in 0..n {
            let e = le64(body, 8 + 8 * i);
            let (t, pfn) = (e >> 60, e & ((1 << 52) - 1));
            if t >= 0xd {
                entries.push(e);
                continue;
            }
            let page = &body[data..data + PAGE];
            data += PAGE;
            if t == 0 && !sent.contains(&pfn) && page.iter().all(|&b| b == 0) {
                entries.push(pfn | XALLOC << 60);
            } else {
                sent.insert(pfn);
                entries.push(e);
                pages.extend_from_slice(page);
            }
        }
        // A record of holes only (libxenguest walks an HVM guest's pfns up
        // to its highest, 1 MiB of them, in records of 1024): nothing to
        // restore.
        if n > 0 && entries.iter().all(|e| e >> 60 == 0xf) {
            at += 8 + padded;
            continue;
        }
        let mut b = body[..8].to_vec();
        for e in entries {
            b.extend_from_slice(&e.to_le_bytes());
        }
        b.extend_from_slice(&pages);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(&b);
        at += 8 + padded;
    }
    assert_eq!(at, stream.len(), "a whole number of records");
    out
}

fn write_seed(corpus: &Path, name: &str, mode: u8, stream: &[u8], seen: &mut Vec<Vec<u8>>) {
    let mut bytes = vec![mode];
    bytes.extend_from_slice(&thin(stream));
    let path = corpus.join(format!("seed-{name}"));
    if seen.contains(&bytes) {
        eprintln!("{}: the same as one written before", path.display());
        let _ = std::fs::remove_file(&path);
        return;
    }
    seen.push(bytes.clone());
    std::fs::write(&path, &bytes).expect("write seed");
    eprintln!(
        "{}: {} octets (stream {})",
        path.display(),
        bytes.len(),
        stream.len()
    );
}

#[test]
#[ignore = "writes fuzz/corpus/restore_*/seed-*: run by `make fuzz-seeds`"]
fn write_the_restore_fuzz_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    let h = Host::new("fuzz-seeds");
    std::fs::create_dir_all(h.path()).expect("host dir");
    let mut seed = 100;
    let mut seen = Vec::new();
    for g in &GUESTS {
        let corpus = root.join(g.target);
        std::fs::create_dir_all(&corpus).expect("corpus dir");
        for (who, xcmig) in [("xcmig", true), ("libxenguest", false)] {
            seed += 1;
            let s = harness_save(&h, g, xcmig, false, seed);
            write_seed(
                &corpus,
                &format!("{}-plain-{who}", g.name),
                0,
                &s,
                &mut seen,
            );
            seed += 1;
            let s = harness_save(&h, g, xcmig, true, seed);
            write_seed(&corpus, &format!("{}-live-{who}", g.name), 0, &s, &mut seen);
            seed += 1;
            let s = remus_save(&h, g, xcmig, seed);
            write_seed(
                &corpus,
                &format!("{}-remus-{who}", g.name),
                1,
                &s,
                &mut seen,
            );
            if g.name == "hvm" {
                seed += 1;
                let s = colo_save(&h, g, xcmig, seed);
                write_seed(&corpus, &format!("{}-colo-{who}", g.name), 2, &s, &mut seen);
            }
        }
    }
}
