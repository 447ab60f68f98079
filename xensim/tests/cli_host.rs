//! The `xensim` command refuses a host directory that does not exist,
//! unless `domain create --create-host` is asked to make it.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xensim");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xensim-cli-host-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn xensim(args: &[&str], env_host: Option<&PathBuf>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("XENSIM_HOST")
        .env_remove("XENSIM_FAULTS");
    if let Some(h) = env_host {
        c.env("XENSIM_HOST", h);
    }
    c.output().expect("run xensim")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CREATE: [&str; 6] = ["--type", "hvm", "--memory", "4M", "--fill", "zero"];

#[test]
fn a_missing_host_directory_is_refused_by_every_kind_of_command() {
    let base = scratch("refuse");
    let missing = base.join("no-such-host");
    let m = missing.to_str().unwrap();
    let mut create = vec!["domain", "create", "--host", m];
    create.extend(CREATE);
    for args in [
        create,
        vec!["domain", "list", "--host", m],
        vec!["domain", "info", "--host", m, "1"],
        vec!["fault", "list", "--host", m],
        vec!["fault", "clear", "--host", m],
    ] {
        let o = xensim(&args, None);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        let e = err(&o);
        assert!(
            e.starts_with("xensim: error: host directory") && e.contains("does not exist"),
            "{args:?}: {e}"
        );
        assert!(e.contains("--create-host"), "{e}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    // The same through $XENSIM_HOST.
    let o = xensim(&["domain", "list"], Some(&missing));
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("does not exist"), "{}", err(&o));
    assert!(!missing.exists());
    // A file is not a host directory either.
    let file = base.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = xensim(&["domain", "list", "--host", file.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("is not a directory"), "{}", err(&o));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn create_host_creates_the_directory_and_its_parents() {
    let base = scratch("create");
    let host = base.join("a").join("b").join("host");
    let h = host.to_str().unwrap();
    let mut args = vec!["domain", "create", "--create-host", "--host", h];
    args.extend(CREATE);
    let o = xensim(&args, None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(host.is_dir());
    let id = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    // Now it exists, the other commands use it.
    let o = xensim(&["domain", "info", "--host", h, &id], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("domid={id}")));
    // An existing directory with --create-host is fine too.
    let o = xensim(&args, Some(&host));
    assert!(o.status.success(), "{}", err(&o));
    let _ = xensim(&["domain", "destroy", "--host", h, &id], None);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn an_existing_empty_directory_is_a_host() {
    let base = scratch("empty");
    let o = xensim(&["domain", "list"], Some(&base));
    assert!(o.status.success(), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("domid"));
    let _ = std::fs::remove_dir_all(&base);
}
