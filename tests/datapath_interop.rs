//! Issue 5's data path against Debian's libxenguest, through the C
//! harnesses on xensim: a half-zero guest saved by xcmig (preloaded) makes
//! a much smaller stream than libxenguest's (zero pages go as XALLOC
//! without data), the stream passes verify-stream-v2, and both
//! libxenguest and xcmig restore it to the source's digest.
//!
//! Prerequisites come from `make build` (xensim, target/xensim/lib,
//! target/capi-tests); a missing one fails the test with that step.

#![cfg(feature = "xen")]

mod capi_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use capi_support::{describe, run, run_ok, Env, TempDir, TIMEOUT};

struct Host {
    env: Env,
    dir: TempDir,
}

impl Host {
    fn new(tag: &str) -> Host {
        let env = Env::locate();
        env.require_libxcmig();
        let dir = TempDir::new(tag);
        // `xensim` refuses a host directory that does not exist.
        std::fs::create_dir_all(dir.join("host")).expect("create the host directory");
        Host { env, dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("host")
    }

    /// `xensim domain ARGS...` on this host; its last line of output.
    fn xensim(&self, args: &[&str]) -> String {
        let mut c = Command::new(self.env.xensim());
        c.arg("domain")
            .arg(args[0])
            .arg("--host")
            .arg(self.path())
            .args(&args[1..]);
        run_ok(&mut c).lines().last().unwrap_or_default().to_owned()
    }

    fn create(&self, args: &[&str]) -> u32 {
        let mut a = vec!["create", "--type", "hvm", "--memory", "256M"];
        a.extend_from_slice(args);
        self.xensim(&a).trim().parse().expect("domid")
    }

    fn digest(&self, domid: u32) -> String {
        self.xensim(&["digest", &domid.to_string()])
    }

    fn harness(&self, name: &str, xcmig: bool) -> Command {
        let mut c = Command::new(self.env.capi(name));
        c.env("LD_LIBRARY_PATH", self.env.ld_library_path())
            .env("XENSIM_HOST", self.path())
            .env_remove("LD_PRELOAD")
            .env_remove("XENSIM_FAULTS");
        if xcmig {
            c.env("LD_PRELOAD", &self.env.libxcmig);
        }
        c
    }

    fn save(&self, xcmig: bool, domid: u32, img: &Path) {
        let out = run(
            self.harness("xg-save", xcmig)
                .arg(domid.to_string())
                .arg(img),
            TIMEOUT,
        );
        assert!(out.status.success(), "xg-save failed\n{}", describe(&out));
    }

    fn restore(&self, xcmig: bool, img: &Path) -> u32 {
        let dst = self.create(&["--empty"]);
        let out = run(
            self.harness("xg-restore", xcmig)
                .arg(dst.to_string())
                .arg(img),
            TIMEOUT,
        );
        assert!(
            out.status.success(),
            "{} restore failed\n{}",
            if xcmig { "xcmig" } else { "libxenguest" },
            describe(&out)
        );
        dst
    }
}

#[test]
fn half_zero_guest_stream_is_much_smaller_and_both_restorers_reproduce_it() {
    let h = Host::new("datapath-zero");
    let src = h.create(&["--fill", "mixed", "--seed", "51"]);
    let theirs = h.dir.join("libxenguest.img");
    let ours = h.dir.join("xcmig.img");
    h.save(false, src, &theirs);
    let digest = h.digest(src);
    h.xensim(&["resume", &src.to_string()]);
    h.save(true, src, &ours);
    assert_eq!(h.digest(src), digest, "the two saves saw different guests");

    let size = |p: &Path| std::fs::metadata(p).expect("stream file").len();
    let (ours_len, theirs_len) = (size(&ours), size(&theirs));
    assert!(
        ours_len * 100 <= theirs_len * 55,
        "xcmig's stream is {ours_len} bytes, libxenguest's {theirs_len}"
    );
    eprintln!("half-zero 256 MiB guest: xcmig {ours_len} bytes, libxenguest {theirs_len} bytes");

    let out = run(
        Command::new("python3")
            .arg(capi_support::VERIFY_STREAM)
            .args(["-f", "libxc", "-i"])
            .arg(&ours)
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
        TIMEOUT,
    );
    assert!(
        out.status.success(),
        "verify-stream-v2 rejected xcmig's stream\n{}",
        describe(&out)
    );

    for xcmig in [false, true] {
        let dst = h.restore(xcmig, &ours);
        assert_eq!(
            h.digest(dst),
            digest,
            "{} restore of xcmig's stream differs",
            if xcmig { "xcmig" } else { "libxenguest" }
        );
    }
}

#[test]
fn zero_filled_guest_restores_from_a_stream_of_entries_only() {
    let h = Host::new("datapath-allzero");
    let src = h.create(&["--fill", "zero"]);
    let ours = h.dir.join("xcmig.img");
    h.save(true, src, &ours);
    let digest = h.digest(src);
    // 65536 RAM pages at 8 bytes an entry, a few special pages with data,
    // headers and the HVM records.
    let len = std::fs::metadata(&ours).expect("stream").len();
    assert!(len < (1 << 20), "{len} bytes for a zero guest");
    let dst = h.restore(false, &ours);
    assert_eq!(h.digest(dst), digest, "libxenguest restore differs");
}
