//! Debian's unmodified libxenguest.so.4.17 saves and restores an HVM guest on
//! xensim through the shim libraries: the stream passes verify-stream-v2 and
//! the restored domain's digest equals the source's after suspend. Injected
//! faults on the save and the restore path make the call fail with a logged
//! reason.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use xensim::{DomainConfig, Fill, GuestType, Host};

const TOOL: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xenguest.h>
#include <xentoollog.h>

static xc_interface *xch;
static uint32_t domid;

static int on_suspend(void *data)
{
    (void)data;
    return xc_domain_shutdown(xch, domid, SHUTDOWN_suspend) == 0;
}

static int on_logdirty(uint32_t d, unsigned int enable, void *data)
{
    (void)d; (void)enable; (void)data;
    return 0;
}

static int on_static_data_done(unsigned int missing, void *data)
{
    (void)missing; (void)data;
    return 0;
}

int main(int argc, char **argv)
{
    int rc, fd;
    xentoollog_logger *lg;

    if (argc != 4)
        return 2;
    domid = strtoul(argv[2], NULL, 10);
    lg = (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, XTL_DEBUG, 0);
    xch = xc_interface_open(lg, lg, 0);
    if (!xch)
        return 3;
    if (!strcmp(argv[1], "save")) {
        struct save_callbacks cb;
        memset(&cb, 0, sizeof(cb));
        cb.suspend = on_suspend;
        cb.switch_qemu_logdirty = on_logdirty;
        fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        rc = xc_domain_save(xch, fd, domid, 0, &cb, XC_STREAM_PLAIN, -1);
    } else {
        struct restore_callbacks cb;
        unsigned long store = 0, console = 0;
        memset(&cb, 0, sizeof(cb));
        cb.static_data_done = on_static_data_done;
        fd = open(argv[3], O_RDONLY);
        rc = xc_domain_restore(xch, fd, domid, 1, &store, 0, 2, &console, 0,
                               XC_STREAM_PLAIN, &cb, -1);
        printf("store %#lx console %#lx\n", store, console);
    }
    printf("rc %d\n", rc);
    close(fd);
    xc_interface_close(xch);
    xtl_logger_destroy(lg);
    return rc == 0 ? 0 : 1;
}
"#;

struct Setup {
    host: Host,
    dir: std::path::PathBuf,
    tool: std::path::PathBuf,
}

fn setup(name: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("xensim-shim-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let host = Host::open(&dir.join("host")).unwrap();
    let tool = common::compile(
        "xg-tool",
        TOOL,
        &["-lxenguest", "-lxenctrl", "-lxentoollog"],
    );
    Setup { host, dir, tool }
}

fn hvm(host: &Host, empty: bool) -> u32 {
    host.create_domain(&DomainConfig {
        guest_type: GuestType::Hvm,
        memory_bytes: 64 << 20,
        vcpus: 2,
        fill: Fill::Mixed,
        seed: 11,
        empty,
        ..DomainConfig::default()
    })
    .unwrap()
}

fn run_tool(s: &Setup, args: &[&str], faults: Option<&str>) -> Output {
    let mut c = Command::new(&s.tool);
    c.args(args)
        .env("XENSIM_HOST", s.dir.join("host"))
        .env("LD_LIBRARY_PATH", common::lib_dir())
        .env_remove("XENSIM_FAULTS");
    if let Some(f) = faults {
        c.env("XENSIM_FAULTS", f);
    }
    common::output(&mut c)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verify_stream(img: &Path) {
    let out = common::output(
        Command::new("/usr/lib/xen-4.17/bin/verify-stream-v2")
            .args(["-f", "libxc", "-i"])
            .arg(img)
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
    );
    assert!(out.status.success(), "verify-stream-v2: {}", text(&out));
}

#[test]
fn debian_libxenguest_round_trips_an_hvm_guest_with_equal_digests() {
    let s = setup("roundtrip");
    let src = hvm(&s.host, false);
    let img = s.dir.join("hvm.img");
    let out = run_tool(&s, &["save", &src.to_string(), img.to_str().unwrap()], None);
    assert!(out.status.success(), "save: {}", text(&out));
    let info = s.host.domain(src).unwrap().info().unwrap();
    assert!(info.shutdown && info.shutdown_reason == xensim::SHUTDOWN_SUSPEND);
    verify_stream(&img);
    let before = s.host.domain(src).unwrap().digest().unwrap();

    let dst = hvm(&s.host, true);
    let out = run_tool(
        &s,
        &["restore", &dst.to_string(), img.to_str().unwrap()],
        None,
    );
    let t = text(&out);
    assert!(out.status.success(), "restore: {t}");
    assert!(t.contains("store 0xfeffc console 0xfefff"), "{t}");
    assert!(
        t.contains("gnt[0] -> d0 0xfefff"),
        "grant seeding not logged: {t}"
    );
    let after = s.host.domain(dst).unwrap().digest().unwrap();
    assert_eq!(before, after, "restored domain differs from the saved one");
    std::fs::remove_dir_all(&s.dir).ok();
}

#[test]
fn injected_faults_fail_save_and_restore_with_a_logged_reason() {
    let s = setup("faults");
    let src = hvm(&s.host, false);
    let img = s.dir.join("hvm.img");
    let out = run_tool(
        &s,
        &["save", &src.to_string(), img.to_str().unwrap()],
        Some("xc_get_pfn_type_batch:EIO:3"),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("rc -1"), "{t}");
    assert!(t.contains("xc_get_pfn_type_batch: injected fault"), "{t}");
    assert!(
        t.contains("Failed to get types for pfn batch (5 = Input/output error)"),
        "{t}"
    );

    // A clean save for the restore case.
    s.host.domain(src).unwrap().resume().unwrap();
    let out = run_tool(&s, &["save", &src.to_string(), img.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out));
    let dst = hvm(&s.host, true);
    let out = run_tool(
        &s,
        &["restore", &dst.to_string(), img.to_str().unwrap()],
        Some("xenforeignmemory_map:ENOMEM:2"),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("xenforeignmemory_map: injected fault"), "{t}");
    assert!(
        t.contains("Restore failed (12 = Cannot allocate memory)"),
        "{t}"
    );
    std::fs::remove_dir_all(&s.dir).ok();
}
