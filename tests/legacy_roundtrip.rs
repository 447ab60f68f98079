//! Legacy images of xensim domains (issue 12): a domain is saved by
//! Debian's libxenguest, its stream is written back in the legacy layout of
//! Xen 4.5 (`legacy_from_v3`, field by field through
//! `xcmig_testkit::legacy_image`) for a 32- and a 64-bit toolstack, then
//! converted by `xcmig convert-legacy` and by Debian's
//! `convert-legacy-stream`, and restored by xcmig and by libxenguest on
//! another host: every restored domain digests as the source at suspend.
//! Both converters' outputs pass `verify-stream-v2`; the in-library legacy
//! restore (`XCMIG_LEGACY_RESTORE`) reads the image directly.
//!
//! Prerequisites come from `make build` (xensim, target/xensim/lib,
//! target/capi-tests, target/release/xcmig); a missing one fails the test
//! with that step.

#![cfg(feature = "xen")]

mod capi_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use capi_support::host::Host;
use capi_support::{assert_bound_to_xcmig, describe, run, verify_stream, TIMEOUT};
use xcmig_stream::{Reader, Record, VcpuKind};
use xcmig_testkit::legacy_image::{
    hvm_chunk, last_checkpoint, tsc_info, vcpu_info, LegacyImage, Part, PvHead, PvVcpu, Tail,
};

const CONVERT_LEGACY_STREAM: &str = "/usr/lib/xen-4.17/bin/convert-legacy-stream";

/// HVM params and the legacy chunk that carries each.
const HVM_CHUNKS: &[(u64, i32)] = &[
    (12, -3),  // IDENT_PT
    (17, -8),  // CONSOLE_PFN
    (19, -10), // ACPI_IOPORTS_LOCATION
    (9, -11),  // VIRIDIAN
    (34, -14), // VM_GENERATION_ID_ADDR
    (27, -15), // PAGING_RING_PFN
    (28, -16), // MONITOR (access) RING_PFN
    (29, -17), // SHARING_RING_PFN
    (32, -19), // IOREQ_SERVER_PFN
    (33, -20), // NR_IOREQ_SERVER_PAGES
];
const HVM_PARAM_STORE_PFN: u64 = 1;
const HVM_PARAM_IOREQ_PFN: u64 = 5;
const HVM_PARAM_BUFIOREQ_PFN: u64 = 6;
const HVM_PARAM_VM86_TSS_SIZED: u64 = 37;

/// The legacy image a Xen 4.5 `xc_domain_save` with a `width`-bit
/// toolstack would have written for the guest of the v3 `stream`: TSC
/// info, the pages in 1024-entry batches, VCPU_INFO, the HVM chunks and
/// LAST_CHECKPOINT in the body, then the tail. CPU policy records (which
/// Xen 4.5 had no form for) are dropped; anything else legacy cannot carry
/// fails the test.
fn legacy_from_v3(stream: &[u8], width: u32) -> LegacyImage {
    let mut r = Reader::new(stream).expect("v3 headers");
    let mut tsc = None;
    let mut batches = Vec::new();
    let mut max_pfn = 0u64;
    let mut chunks = Vec::new();
    let mut magic = [0u64; 3];
    let mut context = Vec::new();
    let mut pv: Option<PvHead> = None;
    let mut p2m_size = 0;
    let mut vcpus: BTreeMap<u32, PvVcpu> = BTreeMap::new();
    let mut shared_info = Vec::new();
    while let Some(rec) = r.next_record().expect("valid v3 stream") {
        match rec {
            Record::X86PvInfo(_) => {}
            Record::X86PvP2mFrames(f) => {
                p2m_size = u64::from(f.end_pfn) + 1;
                pv = Some(PvHead {
                    vcpu_block: Vec::new(),
                    extv: false,
                    xcnt: None,
                    extra_blocks: Vec::new(),
                    frames: f.frames.to_vec(),
                });
            }
            Record::PageData(pd) => {
                for chunk in pd.pages().collect::<Vec<_>>().chunks(1024) {
                    let mut entries = Vec::new();
                    let mut pages = Vec::new();
                    for (entry, data) in chunk {
                        assert!(entry.pfn < 1 << 28, "pfn {:#x} beyond 28 bits", entry.pfn);
                        max_pfn = max_pfn.max(entry.pfn);
                        entries.push((u64::from(entry.page_type.bits()) << 28) | entry.pfn);
                        if let Some(d) = data {
                            pages.extend_from_slice(d);
                        }
                    }
                    batches.push(Part::Batch { entries, pages });
                }
            }
            Record::X86TscInfo(t) => {
                tsc = Some(tsc_info(t.mode, t.elapsed_nsec, t.gtsc_khz, t.incarnation))
            }
            Record::HvmParams(ps) => {
                for p in ps.to_vec() {
                    match p.index {
                        HVM_PARAM_IOREQ_PFN => magic[0] = p.value,
                        HVM_PARAM_BUFIOREQ_PFN => magic[1] = p.value,
                        HVM_PARAM_STORE_PFN => magic[2] = p.value,
                        HVM_PARAM_VM86_TSS_SIZED => {
                            // Xen 4.5's VM86_TSS had no size: 4.17 reads an
                            // old value as a 128-octet TSS.
                            assert_eq!(p.value >> 32, 128, "VM86_TSS_SIZED {:#x}", p.value);
                            chunks.push(hvm_chunk(-4, p.value & 0xffff_ffff));
                        }
                        i => match HVM_CHUNKS.iter().find(|(param, _)| *param == i) {
                            Some((_, id)) => chunks.push(hvm_chunk(*id, p.value)),
                            None => assert_eq!(
                                p.value, 0,
                                "HVM param {i} has no legacy chunk (value {:#x})",
                                p.value
                            ),
                        },
                    }
                }
            }
            Record::HvmContext(b) => context = b.to_vec(),
            Record::X86PvVcpu(v) => {
                let e = vcpus.entry(v.vcpu_id).or_insert_with(|| PvVcpu {
                    basic: Vec::new(),
                    extended: None,
                    xsave: None,
                });
                match v.kind {
                    VcpuKind::Basic => e.basic = v.context.to_vec(),
                    VcpuKind::Extended => {
                        assert!(
                            v.context.len() <= 128,
                            "extended context of {}",
                            v.context.len()
                        );
                        let mut x = v.context.to_vec();
                        x.resize(128, 0);
                        e.extended = Some(x);
                    }
                    VcpuKind::Xsave => e.xsave = Some((0x7, v.context.to_vec())),
                    VcpuKind::Msrs => assert!(v.context.is_empty(), "PV MSRs have no legacy form"),
                }
            }
            Record::SharedInfo(b) => shared_info = b.to_vec(),
            Record::X86CpuidPolicy(_) | Record::X86MsrPolicy(_) | Record::StaticDataEnd => {}
            Record::End => break,
            other => panic!("no legacy form for {:?}", other.record_type()),
        }
    }
    let mut body = Vec::new();
    body.extend(tsc);
    body.extend(batches);
    let tail = match &mut pv {
        None => {
            p2m_size = max_pfn + 1;
            body.push(vcpu_info(0, &[0]));
            body.extend(chunks);
            Tail::Hvm { magic, context }
        }
        Some(head) => {
            let ids: Vec<u32> = vcpus.keys().copied().collect();
            let first = vcpus.values().next().expect("a vCPU");
            head.vcpu_block = first.basic.clone();
            head.extv = first.extended.is_some();
            head.xcnt = first.xsave.as_ref().map(|(_, x)| x.len() as u32 + 16);
            body.push(vcpu_info(*ids.last().unwrap() as i32, &ids));
            Tail::Pv {
                unmapped: Vec::new(),
                vcpus: vcpus.into_values().collect(),
                shared_info,
            }
        }
    };
    body.push(last_checkpoint());
    LegacyImage {
        width,
        p2m_size,
        pv,
        body,
        tail,
        qemu: None,
        trailing: Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Libxenguest,
    Xcmig,
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Restores `img` into a new empty domain of `h` with `tool`; its digest.
fn restore(
    h: &Host,
    guest: &str,
    vcpus: u32,
    img: &Path,
    tool: Tool,
    env: &[(&str, &str)],
) -> String {
    let dst = h.create_empty_with_vcpus(guest, vcpus);
    let mut c = h.harness("xg-restore", tool == Tool::Xcmig);
    if tool == Tool::Xcmig {
        c.env("LD_DEBUG", "bindings");
    }
    c.envs(env.iter().copied());
    let out = run(c.arg(dst.to_string()).arg(img), TIMEOUT);
    assert!(
        out.status.success(),
        "{tool:?} restore of {} failed\n{}",
        img.display(),
        describe(&out)
    );
    if tool == Tool::Xcmig {
        assert_bound_to_xcmig(
            &stderr(&out),
            "xg-restore",
            "xc_domain_restore",
            &h.env.libxcmig,
        );
    }
    h.digest(dst)
}

/// One guest kind: (label, xensim create arguments, guest for the
/// converters, vCPUs).
fn guests() -> Vec<(&'static str, Vec<&'static str>, &'static str, u32)> {
    vec![
        ("hvm", vec!["--type", "hvm"], "hvm", 1),
        // One vCPU: xensim gives the others PV MSRs, which Xen 4.5's saver
        // refused to migrate ("Unable to migrate PV guest using MSRs").
        (
            "pv64",
            vec!["--type", "pv", "--address-size", "64", "--vcpus", "1"],
            "pv",
            1,
        ),
        (
            "pv32",
            vec!["--type", "pv", "--address-size", "32", "--vcpus", "1"],
            "pv",
            1,
        ),
    ]
}

/// Creates a 32 MiB guest on `host` (`create`: its xensim arguments) filled
/// from `seed`, saves it with libxenguest into `<dir>/<label>.v3`; the
/// file and the guest's digest at suspend.
fn save_source(
    host: &Host,
    dir: &Path,
    label: &str,
    create: &[&str],
    seed: u64,
) -> (std::path::PathBuf, String) {
    let seed = seed.to_string();
    let mut args = vec!["create"];
    args.extend(create);
    args.extend(["--memory", "32M", "--fill", "mixed", "--seed", &seed]);
    let src = Host::last_line(&host.xensim(&args)).parse::<u32>().unwrap();
    let v3 = dir.join(format!("{label}.v3"));
    let out = run(
        host.harness("xg-save", false).arg(src.to_string()).arg(&v3),
        TIMEOUT,
    );
    assert!(out.status.success(), "save {label}\n{}", describe(&out));
    (v3, host.digest(src))
}

#[test]
fn legacy_images_of_xensim_domains_restore_digest_equal_through_both_converters() {
    assert!(
        Path::new(CONVERT_LEGACY_STREAM).exists(),
        "prerequisite missing: {CONVERT_LEGACY_STREAM} (package xen-utils-4.17; make deps)"
    );
    let src_host = Host::new("legacy-src");
    let dst_host = Host::new("legacy-dst");
    // A bystander, so that restored domains get other domids and MFNs.
    dst_host.xensim(&["create", "--type", "pv", "--memory", "16M", "--empty"]);
    let xcmig = src_host.env.xcmig_cli();
    let dir = src_host.path().parent().unwrap().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let mut restored = 0;
    for (seed, (label, create, guest, vcpus)) in guests().into_iter().enumerate() {
        let (v3, digest) = save_source(&src_host, &dir, label, &create, 40 + seed as u64);
        let stream = std::fs::read(&v3).unwrap();
        for width in [32, 64] {
            let tag = format!("{label}-w{width}");
            let img = legacy_from_v3(&stream, width);
            let legacy = dir.join(format!("{tag}.legacy"));
            img.write(std::fs::File::create(&legacy).unwrap()).unwrap();
            // Ours, with the width detected.
            let ours = dir.join(format!("{tag}.ours"));
            let o = run(
                Command::new(&xcmig)
                    .args(["convert-legacy", "-g", guest, "-w", "auto", "-i"])
                    .arg(&legacy)
                    .arg("-o")
                    .arg(&ours),
                TIMEOUT,
            );
            assert!(
                o.status.success(),
                "{tag}: convert-legacy\n{}",
                describe(&o)
            );
            assert!(
                stderr(&o).contains(&format!("width: {width}-bit toolstack")),
                "{tag}: {}",
                stderr(&o)
            );
            // Debian's.
            let theirs = dir.join(format!("{tag}.theirs"));
            let o = run(
                Command::new("python3")
                    .arg(CONVERT_LEGACY_STREAM)
                    .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python")
                    .arg("-i")
                    .arg(&legacy)
                    .arg("-o")
                    .arg(&theirs)
                    .args(["-w", &width.to_string(), "-g", guest, "--skip-qemu"]),
                TIMEOUT,
            );
            assert!(
                o.status.success(),
                "{tag}: convert-legacy-stream\n{}",
                describe(&o)
            );
            assert_eq!(
                std::fs::read(&ours).unwrap(),
                std::fs::read(&theirs).unwrap(),
                "{tag}: the two converters differ"
            );
            for (which, file) in [("ours", &ours), ("theirs", &theirs)] {
                verify_stream(file);
                for tool in [Tool::Xcmig, Tool::Libxenguest] {
                    let got = restore(&dst_host, guest, vcpus, file, tool, &[]);
                    assert_eq!(got, digest, "{tag}: {which} restored by {tool:?}");
                    restored += 1;
                }
            }
        }
    }
    assert_eq!(restored, 3 * 2 * 2 * 2);
}

/// `xg-restore DOMID fd:0` under xcmig with `env`, its stdin the file
/// `img`; what is left of the file after the restore returns is printed
/// after xg-restore's own stdout line (the same open file, read by `cat`).
fn restore_from_fd(h: &Host, dst: u32, img: &Path, env: &[(&str, &str)]) -> Output {
    let xg = h.harness("xg-restore", true);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"exec 0<"$2"; "$0" "$1" fd:0 || exit $?; cat"#)
        .arg(xg.get_program())
        .arg(dst.to_string())
        .arg(img);
    for (k, v) in xg.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.env("LD_DEBUG", "bindings").envs(env.iter().copied());
    run(&mut sh, TIMEOUT)
}

#[test]
fn xc_domain_restore_converts_a_legacy_image_in_process_when_the_setting_allows_it() {
    let src_host = Host::new("legacy-lib-src");
    let dst_host = Host::new("legacy-lib-dst");
    dst_host.xensim(&["create", "--type", "pv", "--memory", "16M", "--empty"]);
    let dir = src_host.path().parent().unwrap().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let qemu: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    for (seed, (label, create, guest, vcpus)) in guests().into_iter().enumerate() {
        let (v3, digest) = save_source(&src_host, &dir, label, &create, 60 + seed as u64);
        let stream = std::fs::read(&v3).unwrap();
        for width in [32, 64] {
            let tag = format!("{label}-w{width}");
            let mut img = legacy_from_v3(&stream, width);
            let mut rest = Vec::new();
            if guest == "hvm" {
                // The device model record follows the libxc part, for the
                // toolstack to read once xc_domain_restore returns.
                img.qemu = Some((b"DeviceModelRecord0002".to_vec(), qemu.clone()));
                rest.extend_from_slice(b"DeviceModelRecord0002");
                rest.extend_from_slice(&(qemu.len() as u32).to_le_bytes());
                rest.extend_from_slice(&qemu);
            }
            let file = dir.join(format!("{tag}.legacy"));
            img.write(std::fs::File::create(&file).unwrap()).unwrap();

            // Off (the default): refused as libxenguest refuses it.
            let dst = dst_host.create_empty_with_vcpus(guest, vcpus);
            let o = restore_from_fd(&dst_host, dst, &file, &[]);
            assert!(!o.status.success(), "{tag}: restored without the setting");
            assert!(
                stderr(&o).contains("legacy image or not a stream"),
                "{tag}: {}",
                stderr(&o)
            );

            // The wrong width: refused, naming the rule.
            let wrong = if width == 32 { "64" } else { "32" };
            let dst = dst_host.create_empty_with_vcpus(guest, vcpus);
            let o = restore_from_fd(&dst_host, dst, &file, &[("XCMIG_LEGACY_RESTORE", wrong)]);
            assert!(!o.status.success(), "{tag}: restored at the wrong width");
            assert!(stderr(&o).contains("legacy"), "{tag}: {}", stderr(&o));

            // Given and detected widths: restored, and the fd left at the
            // device model record.
            for setting in [width.to_string(), "auto".to_string()] {
                let dst = dst_host.create_empty_with_vcpus(guest, vcpus);
                let o =
                    restore_from_fd(&dst_host, dst, &file, &[("XCMIG_LEGACY_RESTORE", &setting)]);
                assert!(o.status.success(), "{tag} {setting}\n{}", describe(&o));
                let err = stderr(&o);
                assert!(
                    err.contains(&format!(
                        "legacy (Xen 4.5 or earlier) {} image from a {width}-bit toolstack",
                        guest.to_uppercase()
                    )),
                    "{tag}: {err}"
                );
                assert_bound_to_xcmig(
                    &err,
                    "xg-restore",
                    "xc_domain_restore",
                    &dst_host.env.libxcmig,
                );
                assert_eq!(dst_host.digest(dst), digest, "{tag} {setting}");
                let line_end = o.stdout.iter().position(|&b| b == b'\n').unwrap() + 1;
                assert!(o.stdout[..line_end].starts_with(b"store_gfn="), "{tag}");
                assert_eq!(
                    &o.stdout[line_end..],
                    &rest[..],
                    "{tag}: what xc_domain_restore left on the fd"
                );
            }
        }
        // A v2/v3 stream with the setting on is restored as always.
        let dst = dst_host.create_empty_with_vcpus(guest, vcpus);
        let o = restore_from_fd(&dst_host, dst, &v3, &[("XCMIG_LEGACY_RESTORE", "auto")]);
        assert!(
            o.status.success(),
            "{label} v3 with the setting on\n{}",
            describe(&o)
        );
        assert_eq!(dst_host.digest(dst), digest, "{label} v3");
    }
}
