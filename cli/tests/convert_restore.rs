//! `xcmig convert` on a real stream: Debian's libxenguest 4.17 saves a
//! guest of the simulated host xensim, the stream is carried through the xl
//! and libxl layers and through v2 and back, and libxenguest restores every
//! libxc result to the guest's digest.
//!
//! Needs what `make build` makes, in this target directory: the `xensim`
//! command (`cargo build --release -p xensim`), the simulated libraries
//! (`cargo build --release -p xensim-shim && scripts/link-shims.sh`) and
//! the C harnesses (`make -C capi-tests OUT=<target>/capi-tests`). Without
//! them the test fails, naming the step that makes them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use xcmig_testkit::process::run;

const XCMIG: &str = env!("CARGO_BIN_EXE_xcmig");
const TIMEOUT: Duration = Duration::from_secs(240);
const SYSTEM_XEN_LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";
const CHECKER: &str = "/usr/lib/xen-4.17/bin/verify-stream-v2";

struct Env {
    xensim: PathBuf,
    shims: PathBuf,
    harnesses: PathBuf,
}

impl Env {
    /// The prerequisites, or why they are missing.
    fn locate() -> Result<Env, String> {
        // CARGO_TARGET_TMPDIR is <target>/tmp.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("<target>/tmp")
            .to_path_buf();
        let xensim = ["release", "debug"]
            .iter()
            .map(|p| target.join(p).join("xensim"))
            .find(|p| p.exists())
            .ok_or("no xensim command (cargo build --release -p xensim)")?;
        let shims = target.join("xensim").join("lib");
        if !shims.join("libxenctrl.so.4.17").exists() {
            return Err(
                "no simulated Xen libraries (cargo build --release -p xensim-shim && \
                        scripts/link-shims.sh)"
                    .into(),
            );
        }
        let harnesses = target.join("capi-tests");
        if !harnesses.join("xg-save").exists() || !harnesses.join("xg-restore").exists() {
            return Err("no C harnesses (make -C capi-tests OUT=<target>/capi-tests)".into());
        }
        Ok(Env {
            xensim,
            shims,
            harnesses,
        })
    }
}

fn describe(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Host {
    env: Env,
    dir: PathBuf,
}

impl Host {
    fn host(&self) -> PathBuf {
        self.dir.join("host")
    }

    /// `xensim domain ARGS...`: its last line of output.
    fn xensim(&self, args: &[&str]) -> String {
        let o = run(
            Command::new(&self.env.xensim)
                .arg("domain")
                .arg(args[0])
                .arg("--host")
                .arg(self.host())
                .args(&args[1..]),
            TIMEOUT,
        );
        assert!(o.status.success(), "xensim {args:?}: {}", describe(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn create(&self, args: &[&str]) -> u32 {
        let mut a = vec!["create", "--type", "hvm", "--memory", "64M"];
        a.extend_from_slice(args);
        self.xensim(&a).parse().expect("domid")
    }

    fn digest(&self, domid: u32) -> String {
        self.xensim(&["digest", &domid.to_string()])
    }

    /// A C harness over libxenguest on this host (no xcmig preloaded).
    fn harness(&self, name: &str, domid: u32, img: &Path) -> Output {
        let o = run(
            Command::new(self.env.harnesses.join(name))
                .arg(domid.to_string())
                .arg(img)
                .env(
                    "LD_LIBRARY_PATH",
                    format!("{}:{SYSTEM_XEN_LIBDIR}", self.env.shims.display()),
                )
                .env("XENSIM_HOST", self.host())
                .env_remove("LD_PRELOAD")
                .env_remove("XENSIM_FAULTS"),
            TIMEOUT,
        );
        assert!(
            o.status.success(),
            "{name} {}: {}",
            img.display(),
            describe(&o)
        );
        o
    }

    /// Restores `img` into a new empty domain; its domid and the
    /// static_data_done line libxenguest's restore reported.
    fn restore(&self, img: &Path) -> (u32, String) {
        let dst = self.create(&["--empty"]);
        let o = self.harness("xg-restore", dst, img);
        let err = String::from_utf8_lossy(&o.stderr);
        let sdd = err
            .lines()
            .find(|l| l.contains("static_data_done"))
            .unwrap_or("no static_data_done")
            .to_owned();
        (dst, sdd)
    }
}

fn convert(args: &[&str]) -> String {
    let mut all = vec!["convert"];
    all.extend_from_slice(args);
    let o = run(Command::new(XCMIG).args(&all), TIMEOUT);
    assert!(o.status.success(), "xcmig {all:?}: {}", describe(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify(img: &Path, format: &str) {
    let o = run(
        Command::new(XCMIG)
            .args(["verify", "--format", format])
            .arg(img),
        TIMEOUT,
    );
    assert!(
        o.status.success(),
        "xcmig verify {}: {}",
        img.display(),
        describe(&o)
    );
    if Path::new(CHECKER).exists() {
        let o = run(
            Command::new("python3")
                .arg(CHECKER)
                .args(["-f", format, "-i"])
                .arg(img)
                .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
            TIMEOUT,
        );
        assert!(
            o.status.success(),
            "verify-stream-v2 {}: {}",
            img.display(),
            describe(&o)
        );
    }
}

#[test]
fn a_libxenguest_stream_converted_every_way_restores_with_libxenguest() {
    let env = Env::locate().unwrap_or_else(|why| panic!("prerequisite missing: {why}"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("convert-restore");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("host")).unwrap();
    let h = Host { env, dir };
    let p = |name: &str| h.dir.join(name);
    let s = |name: &str| p(name).to_str().unwrap().to_owned();

    let src = h.create(&["--fill", "mixed", "--seed", "12"]);
    h.harness("xg-save", src, &p("saved.xc"));
    let digest = h.digest(src);

    // Xen 4.17 writes v3 with both CPU policy records.
    let (dst, sdd) = h.restore(&p("saved.xc"));
    assert_eq!(h.digest(dst), digest, "the stream as saved");
    assert!(sdd.contains("missing=0x0"), "{sdd}");

    // libxc -> xl (config, QEMU blob) -> libxc: identical, restorable.
    std::fs::write(
        p("cfg.json"),
        b"{\"c_info\":{\"type\":\"hvm\",\"name\":\"g\"}}\n",
    )
    .unwrap();
    std::fs::write(p("qemu"), b"QEVM qemu device state").unwrap();
    convert(&[
        "--to",
        "xl",
        "--xl-config",
        &s("cfg.json"),
        "--emulator-record",
        &s("qemu"),
        "-i",
        &s("saved.xc"),
        "-o",
        &s("saved.xl"),
    ]);
    verify(&p("saved.xl"), "xl");
    convert(&[
        "--to",
        "libxl",
        "-i",
        &s("saved.xl"),
        "-o",
        &s("saved.libxl"),
    ]);
    verify(&p("saved.libxl"), "libxl");
    convert(&[
        "--to",
        "libxc",
        "--extract-emulator",
        &s("qemu.out"),
        "-i",
        &s("saved.libxl"),
        "-o",
        &s("back.xc"),
    ]);
    assert!(std::fs::read(p("back.xc")).unwrap() == std::fs::read(p("saved.xc")).unwrap());
    assert_eq!(
        std::fs::read(p("qemu.out")).unwrap(),
        b"QEVM qemu device state"
    );

    // v3 -> v2 is refused for its CPU policy, then done with the option:
    // libxenguest restores the v2 stream (inferring STATIC_DATA_END) and
    // reports both policies missing, as for a pre-4.14 stream.
    let o = run(
        Command::new(XCMIG).args([
            "convert",
            "--version",
            "2",
            "-i",
            &s("saved.xc"),
            "-o",
            &s("v2.xc"),
        ]),
        TIMEOUT,
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(!p("v2.xc").exists());
    let summary = convert(&[
        "--version",
        "2",
        "--drop-cpu-policy",
        "-i",
        &s("saved.xc"),
        "-o",
        &s("v2.xc"),
    ]);
    assert!(
        summary.contains("X86_CPUID_POLICY") && summary.contains("X86_MSR_POLICY"),
        "{summary}"
    );
    verify(&p("v2.xc"), "libxc");
    let (dst, sdd) = h.restore(&p("v2.xc"));
    assert_eq!(h.digest(dst), digest, "the v2 stream");
    assert!(sdd.contains("missing=0x3"), "{sdd}");

    // v2 -> v3: STATIC_DATA_END back in place, restorable again.
    convert(&["--version", "3", "-i", &s("v2.xc"), "-o", &s("v3.xc")]);
    verify(&p("v3.xc"), "libxc");
    let (dst, sdd) = h.restore(&p("v3.xc"));
    assert_eq!(h.digest(dst), digest, "the v2 -> v3 stream");
    assert!(sdd.contains("missing=0x3"), "{sdd}");
}
