//! Host-level tests: each builds a host in a fresh temporary directory.

use crate::testutil::TempHost;
use crate::*;
use std::time::{Duration, Instant};

fn cfg(t: GuestType, mem: u64, empty: bool) -> DomainConfig {
    DomainConfig {
        guest_type: t,
        memory_bytes: mem,
        vcpus: 2,
        fill: Fill::Mixed,
        seed: 42,
        empty,
        ..Default::default()
    }
}

fn small_hvm(h: &Host) -> Domain {
    let id = h
        .create_domain(&cfg(GuestType::Hvm, 16 << 20, false))
        .unwrap();
    h.domain(id).unwrap()
}

#[test]
fn getdomaininfo_lookup_returns_the_next_domain() {
    let t = TempHost::new("unit");
    let a = t
        .host
        .create_domain(&cfg(GuestType::Hvm, 2 << 20, true))
        .unwrap();
    let b = t
        .host
        .create_domain(&cfg(GuestType::Pvh, 2 << 20, true))
        .unwrap();
    assert!(b > a);
    assert_eq!(t.host.first_domain_at_or_after(0).unwrap(), Some(a));
    assert_eq!(t.host.first_domain_at_or_after(a + 1).unwrap(), Some(b));
    t.host.destroy_domain(a).unwrap();
    assert_eq!(t.host.first_domain_at_or_after(a).unwrap(), Some(b));
    assert_eq!(t.host.first_domain_at_or_after(b + 1).unwrap(), None);
    assert_eq!(t.host.domain(a).err().unwrap().errno(), libc::ESRCH);
    assert_eq!(t.host.destroy_domain(a).unwrap_err().errno(), libc::ESRCH);
    // Ids are not reused right away.
    let c = t
        .host
        .create_domain(&cfg(GuestType::Hvm, 2 << 20, true))
        .unwrap();
    assert!(c > b);
}

#[test]
fn destroyed_domain_turns_dying_for_open_handles() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    // Destroyed through another opener: this host's cached handle notices.
    Host::open(&t.dir).unwrap().destroy_domain(d.id()).unwrap();
    assert_eq!(t.host.domain(d.id()).err().unwrap().errno(), libc::ESRCH);
    assert!(d.info().unwrap().dying);
    assert_eq!(d.populate(&[1]).unwrap_err().errno(), libc::ESRCH);
}

#[test]
fn page_types_are_notab_for_ram_and_special_pages_and_xtab_for_holes() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    let mut f = vec![
        0,
        0x9f,
        0xa5,
        0xc0,
        0xfeffc,
        0xfeff0,
        0xfefff,
        0xff000,
        0xf0000,
        INVALID_FRAME,
        1 << 40,
    ];
    d.page_types(&mut f).unwrap();
    let n = PFINFO_NOTAB;
    let x = PFINFO_XTAB;
    assert_eq!(f, vec![n, n, x, n, n, n, n, x, x, x, x]);
    let mut big = vec![0u64; MAX_PFINFO_BATCH + 1];
    assert_eq!(d.page_types(&mut big).unwrap_err().errno(), libc::E2BIG);
    let mut max = vec![0u64; MAX_PFINFO_BATCH];
    d.page_types(&mut max).unwrap();
    assert_eq!(d.max_gpfn(), 0xfefff);
    let pvh = t
        .host
        .create_domain(&cfg(GuestType::Pvh, 16 << 20, false))
        .unwrap();
    let pvh = t.host.domain(pvh).unwrap();
    let mut f = vec![0xa5, 0xfeff0, 0xfeff8];
    pvh.page_types(&mut f).unwrap();
    assert_eq!(f, vec![n, x, n]);
}

#[test]
fn logdirty_clean_and_peek_follow_xen() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    // Off: CLEAN/PEEK succeed with zeros, even over a dirty buffer.
    let mut bm = vec![0xffu8; 16];
    let s = d
        .logdirty_op(LogDirtyOp::Clean, Some(&mut bm), 128, false)
        .unwrap();
    assert_eq!(s, DirtyStats::default());
    assert!(bm.iter().all(|&b| b == 0));
    assert!(!d.mark_dirty(3), "no tracking while disabled");

    d.logdirty_enable().unwrap();
    assert_eq!(d.logdirty_enable().unwrap_err().errno(), libc::EINVAL);
    for pfn in [0u64, 3, 3, 9, 64, 100, 0xfeffc] {
        d.mark_dirty(pfn);
    }
    assert!(!d.mark_dirty(0xa5), "holes are never dirtied");
    // Toolstack writes don't count.
    d.write_frame(5, &[1u8; 4096]).unwrap();

    let mut bm = vec![0u8; 13];
    let s = d
        .logdirty_op(LogDirtyOp::Peek, Some(&mut bm), 100, false)
        .unwrap();
    assert_eq!(
        s,
        DirtyStats {
            fault_count: 7,
            dirty_count: 6
        }
    );
    assert_eq!(bm[0], 0b0000_1001);
    assert_eq!(bm[1], 0b0000_0010);
    assert_eq!(bm[8], 1);
    assert_eq!(bm[12], 0, "pfn 100 is outside the first 100 pages");

    // CLEAN of 100 pages returns the pre-clean stats and keeps bits >= 100.
    let mut bm2 = vec![0u8; 13];
    let s = d
        .logdirty_op(LogDirtyOp::Clean, Some(&mut bm2), 100, true)
        .unwrap();
    assert_eq!(s.dirty_count, 6);
    assert_eq!(bm, bm2);
    let s = d
        .logdirty_op(LogDirtyOp::Peek, None, 0x100000, false)
        .unwrap();
    assert_eq!(s, DirtyStats::default(), "counters cleared");
    let mut all = vec![0u8; 0x100000 / 8];
    d.logdirty_op(LogDirtyOp::Clean, Some(&mut all), 0x100000, false)
        .unwrap();
    let set: Vec<u64> = (0..0x100000u64)
        .filter(|&p| all[(p / 8) as usize] & (1 << (p % 8)) != 0)
        .collect();
    assert_eq!(set, vec![100, 0xfeffc]);
    d.logdirty_op(LogDirtyOp::Clean, Some(&mut all), 0x100000, false)
        .unwrap();
    assert!(all.iter().all(|&b| b == 0));

    let mut short = vec![0u8; 3];
    let e = d
        .logdirty_op(LogDirtyOp::Peek, Some(&mut short), 100, false)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EFAULT);
    d.logdirty_disable().unwrap();
    d.logdirty_disable().unwrap();
    d.logdirty_enable().unwrap();
}

#[test]
fn populate_maps_and_repopulates_like_xen() {
    let t = TempHost::new("unit");
    let id = t
        .host
        .create_domain(&cfg(GuestType::Hvm, 1 << 20, true))
        .unwrap();
    let d = t.host.domain(id).unwrap();
    let info = d.info().unwrap();
    assert!(
        info.paused && !info.creation_finished && info.nr_online_vcpus == 0 && info.tot_pages == 0
    );
    assert_eq!(d.max_gpfn(), 0);
    assert_eq!(d.populate(&[1, 2, 3, 7, 8]).unwrap(), vec![1, 2, 3, 7, 8]);
    assert_eq!(d.max_gpfn(), 8);
    let m = d.map_frames(&[1, 2, 3, 5, 7, 8], Prot::ReadWrite).unwrap();
    assert_eq!(m.mmap_calls(), 2, "one mmap per contiguous run");
    assert_eq!(m.errors(), &[0, 0, 0, -libc::EINVAL, 0, 0]);
    m.write_page(4, &[0xab; 4096]).unwrap();
    let mut page = vec![0u8; 4096];
    d.read_frame(7, &mut page).unwrap();
    assert!(
        page.iter().all(|&b| b == 0xab),
        "shared mapping reaches the file"
    );
    assert_eq!(m.read_page(3, &mut page).unwrap_err().errno(), libc::EINVAL);
    drop(m);
    let ro = d.map_frames(&[7], Prot::Read).unwrap();
    assert_eq!(ro.write_page(0, &[1]).unwrap_err().errno(), libc::EACCES);
    // Re-populating gives a fresh zero page; the old one stays counted.
    let before = d.info().unwrap().tot_pages;
    d.populate(&[7]).unwrap();
    d.read_frame(7, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0));
    assert_eq!(d.info().unwrap().tot_pages, before + 1);
    // max_pages = 256 RAM pages + 1024 slack.
    let many: Vec<u64> = (100..100 + 2000).collect();
    let (done, e) = d.populate_partial(&many);
    assert_eq!(e.unwrap().errno(), libc::ENOMEM);
    assert_eq!(d.info().unwrap().tot_pages, 256 + 1024);
    assert_eq!(done.len() as u64, 256 + 1024 - before - 1);
    assert_eq!(d.populate(&[GFN_LIMIT]).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(d.clear_frames(6, 3).unwrap_err().errno(), libc::EINVAL);
}

#[test]
fn created_guests_have_the_documented_params() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    assert_eq!(d.hvm_param(HVM_PARAM_STORE_PFN).unwrap(), 0xfeffc);
    assert_eq!(d.hvm_param(HVM_PARAM_CONSOLE_PFN).unwrap(), 0xfefff);
    assert_eq!(d.hvm_param(HVM_PARAM_IOREQ_PFN).unwrap(), 0xfeffd);
    assert_eq!(d.hvm_param(HVM_PARAM_BUFIOREQ_PFN).unwrap(), 0xfeffb);
    assert_eq!(d.hvm_param(HVM_PARAM_IDENT_PT).unwrap(), 0xfeffe << 12);
    assert_eq!(d.hvm_param(HVM_PARAM_IOREQ_SERVER_PFN).unwrap(), 0xfeff0);
    assert_eq!(d.hvm_param(HVM_PARAM_NR_IOREQ_SERVER_PAGES).unwrap(), 8);
    assert_eq!(d.hvm_param(HVM_PARAM_VM86_TSS_SIZED).unwrap() >> 32, 128);
    assert_eq!(
        d.set_hvm_param(HVM_PARAM_IOREQ_PFN, 5).unwrap_err().errno(),
        libc::EEXIST
    );
    assert_eq!(
        d.hvm_param(HVM_NR_PARAMS).unwrap_err().errno(),
        libc::EINVAL
    );
    assert_eq!(
        d.hvm_param(HVM_PARAM_PAE_ENABLED).unwrap_err().errno(),
        libc::EINVAL
    );
    d.set_hvm_param(HVM_PARAM_STORE_EVTCHN, 7).unwrap();
    assert_eq!(d.hvm_param(HVM_PARAM_STORE_EVTCHN).unwrap(), 7);
    let mut ident = vec![0u8; 4096];
    d.read_frame(0xfeffe, &mut ident).unwrap();
    assert_eq!(
        u32::from_le_bytes([ident[4], ident[5], ident[6], ident[7]]),
        (1 << 22) | 0xe7
    );
    let g = d.grant_entries().unwrap();
    assert_eq!(g[0], (1, 0, 0xfefff));
    assert_eq!(g[1], (1, 0, 0xfeffc));
}

#[test]
fn cpu_policy_and_tsc_follow_xen_rules() {
    let t = TempHost::new("unit");
    let id = t
        .host
        .create_domain(&cfg(GuestType::Hvm, 2 << 20, true))
        .unwrap();
    let d = t.host.domain(id).unwrap();
    let p = CpuPolicy::default_guest();
    d.set_cpu_policy(&p).unwrap();
    assert_eq!(d.cpu_policy().unwrap(), p);
    d.set_tsc_info(TscInfo {
        mode: 1,
        elapsed_nsec: 5,
        gtsc_khz: 3000,
        incarnation: 4,
    })
    .unwrap();
    assert_eq!(
        d.tsc_info().unwrap(),
        TscInfo {
            mode: 1,
            elapsed_nsec: 5,
            gtsc_khz: 3000,
            incarnation: 5
        }
    );
    assert_eq!(
        d.set_tsc_info(TscInfo {
            mode: 3,
            ..Default::default()
        })
        .unwrap_err()
        .errno(),
        libc::EINVAL
    );
    d.unpause().unwrap();
    assert!(d.info().unwrap().creation_finished);
    assert_eq!(d.unpause().unwrap_err().errno(), libc::EINVAL);
    assert_eq!(d.set_cpu_policy(&p).unwrap_err().errno(), libc::EEXIST);
    d.pause().unwrap();
    assert_eq!(
        d.set_cpu_policy(&p).unwrap_err().errno(),
        libc::EEXIST,
        "still finished after a re-pause"
    );
}

#[test]
fn hvm_context_round_trips_into_an_empty_domain() {
    let t = TempHost::new("unit");
    let src = small_hvm(&t.host);
    let blob = src.hvm_context().unwrap();
    assert!(src.hvm_context_size().unwrap() >= blob.len());
    let id = t
        .host
        .create_domain(&cfg(GuestType::Hvm, 16 << 20, true))
        .unwrap();
    let dst = t.host.domain(id).unwrap();
    assert_ne!(dst.hvm_context().unwrap(), blob);
    dst.set_hvm_context(&blob).unwrap();
    assert_eq!(dst.hvm_context().unwrap(), blob);
    assert_eq!(dst.info().unwrap().nr_online_vcpus, 2);
    // Broken chains are refused and change nothing.
    assert_eq!(
        dst.set_hvm_context(&blob[..blob.len() - 8])
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
    assert_eq!(dst.set_hvm_context(&[]).unwrap_err().errno(), libc::ENODATA);
    assert_eq!(dst.hvm_context().unwrap(), blob);
    // An HVM blob into a PVH domain: the platform devices are refused.
    let pvh = t
        .host
        .create_domain(&cfg(GuestType::Pvh, 16 << 20, true))
        .unwrap();
    let pvh = t.host.domain(pvh).unwrap();
    assert_eq!(
        pvh.set_hvm_context(&blob).unwrap_err().errno(),
        libc::ENODEV
    );
}

/// Copy a domain's state the way libxenguest's save + restore would, with
/// the changes Xen's restore makes on purpose.
fn simulate_migration(src: &Domain, dst: &Domain) {
    let mut gfns = Vec::new();
    for g in 0..=src.max_gpfn() {
        if src.is_populated(g) {
            gfns.push(g);
        }
    }
    for chunk in gfns.chunks(1024) {
        dst.populate(chunk).unwrap();
        let from = src.map_frames(chunk, Prot::Read).unwrap();
        let to = dst.map_frames(chunk, Prot::ReadWrite).unwrap();
        let mut page = vec![0u8; 4096];
        for i in 0..chunk.len() {
            from.read_page(i, &mut page).unwrap();
            to.write_page(i, &page).unwrap();
        }
    }
    dst.set_cpu_policy(&src.cpu_policy().unwrap()).unwrap();
    dst.set_tsc_info(src.tsc_info().unwrap()).unwrap();
    for p in SAVED_HVM_PARAMS {
        let v = src.hvm_param(p).unwrap();
        if v == 0 {
            continue;
        }
        if matches!(
            p,
            HVM_PARAM_CONSOLE_PFN
                | HVM_PARAM_STORE_PFN
                | HVM_PARAM_IOREQ_PFN
                | HVM_PARAM_BUFIOREQ_PFN
        ) {
            dst.clear_frames(v, 1).unwrap();
        }
        dst.set_hvm_param(p, v).unwrap();
    }
    dst.set_hvm_param(HVM_PARAM_STORE_EVTCHN, 11).unwrap();
    dst.set_hvm_param(HVM_PARAM_CONSOLE_EVTCHN, 12).unwrap();
    dst.set_hvm_context(&src.hvm_context().unwrap()).unwrap();
}

#[test]
fn digest_matches_after_a_migration_and_leaves_out_what_restore_rewrites() {
    let t = TempHost::new("unit");
    for ty in [GuestType::Hvm, GuestType::Pvh] {
        let sid = t.host.create_domain(&cfg(ty, 8 << 20, false)).unwrap();
        let src = t.host.domain(sid).unwrap();
        src.shutdown(SHUTDOWN_SUSPEND).unwrap();
        let before = src.digest().unwrap();
        assert_eq!(src.digest().unwrap(), before, "stable");
        let did = t.host.create_domain(&cfg(ty, 8 << 20, true)).unwrap();
        let dst = t.host.domain(did).unwrap();
        simulate_migration(&src, &dst);
        let r = dst.digest_report().unwrap();
        assert_eq!(r.excluded_pages.len(), 4);
        assert_eq!(
            r.total,
            before,
            "{ty:?}: {:?} vs {:?}",
            r.components,
            src.digest_report().unwrap().components
        );
        assert_ne!(
            dst.tsc_info().unwrap().incarnation,
            src.tsc_info().unwrap().incarnation
        );

        // One RAM byte differs: the digest differs.
        let mut page = vec![0u8; 4096];
        dst.read_frame(0x10, &mut page).unwrap();
        page[100] ^= 1;
        dst.write_frame(0x10, &page).unwrap();
        assert_ne!(dst.digest().unwrap(), before);
        page[100] ^= 1;
        dst.write_frame(0x10, &page).unwrap();
        assert_eq!(dst.digest().unwrap(), before);
        // A saved param differs: the digest differs.
        dst.set_hvm_param(HVM_PARAM_X87_FIP_WIDTH, 4).unwrap();
        assert_ne!(dst.digest().unwrap(), before);
        dst.set_hvm_param(HVM_PARAM_X87_FIP_WIDTH, 0).unwrap();
        // Populating an extra page differs.
        dst.populate(&[0x3000]).unwrap();
        assert_ne!(dst.digest().unwrap(), before);
    }
}

#[test]
fn host_file_faults_fire_once_or_from_the_nth_call() {
    let t = TempHost::new("unit");
    for _ in 0..3 {
        t.host.fault_point("xc_get_pfn_type_batch").unwrap();
    }
    t.host
        .set_faults(
            &FaultRule::parse_list(
                "xc_get_pfn_type_batch:EIO:2,xenforeignmemory_map:ENOMEM:3:always",
            )
            .unwrap(),
        )
        .unwrap();
    let other = Host::open(&t.dir).unwrap();
    let seq = |h: &Host, name: &str, n: usize| -> Vec<i32> {
        (0..n)
            .map(|_| h.fault_point(name).err().map_or(0, |e| e.errno()))
            .collect()
    };
    assert_eq!(
        seq(&t.host, "xc_get_pfn_type_batch", 4),
        [0, libc::EIO, 0, 0]
    );
    assert_eq!(
        seq(&t.host, "xenforeignmemory_map", 4),
        [0, 0, libc::ENOMEM, libc::ENOMEM]
    );
    // Another opener (another process) counts on its own.
    assert_eq!(seq(&other, "xc_get_pfn_type_batch", 2), [0, libc::EIO]);
    assert_eq!(t.host.faults().unwrap().len(), 2);
    t.host.clear_faults().unwrap();
    assert_eq!(seq(&other, "xenforeignmemory_map", 3), [0, 0, 0]);
}

#[test]
fn workload_dirties_its_working_set_and_stops_on_pause() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    d.logdirty_enable().unwrap();
    let d2 = t.host.domain(d.id()).unwrap();
    let worker = std::thread::spawn(move || {
        let o = workload::RunOptions {
            dirty_rate_bytes: 4 << 20,
            working_set_bytes: 64 << 12,
            seed: 1,
            max_duration: Some(Duration::from_secs(20)),
            follow: false,
            pattern: workload::Pattern::Random,
        };
        workload::run(&d2, &o).unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    let s = d
        .logdirty_op(LogDirtyOp::Peek, None, 0x100000, false)
        .unwrap();
    assert!(s.dirty_count > 0);
    let started = Instant::now();
    d.pause().unwrap();
    let stats = worker.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stats.pages_written > 0);
    assert_eq!(stats.working_set_pages, 64);
    let set = workload::working_set(&d, 64 << 12, 1);
    let mut bm = vec![0u8; 0x100000 / 8];
    let s = d
        .logdirty_op(LogDirtyOp::Clean, Some(&mut bm), 0x100000, false)
        .unwrap();
    let dirty: Vec<u64> = (0..0x100000u64)
        .filter(|&p| bm[(p / 8) as usize] & (1 << (p % 8)) != 0)
        .collect();
    assert_eq!(s.dirty_count as usize, dirty.len());
    assert!(dirty.iter().all(|p| set.contains(p)));
    // Paused: memory no longer changes.
    let a = d.digest().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(d.digest().unwrap(), a);
}

#[test]
fn a_capped_workload_dirties_at_its_share_of_the_rate() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    let run = |d: &Domain| {
        let o = workload::RunOptions {
            dirty_rate_bytes: 16 << 20,
            working_set_bytes: 256 << 12,
            seed: 2,
            max_duration: Some(Duration::from_millis(600)),
            follow: false,
            pattern: workload::Pattern::Random,
        };
        workload::run(d, &o).unwrap().pages_written
    };
    let full = run(&d);
    // 2 vCPUs: a cap of 50 is a quarter of their time.
    t.host
        .sched_putinfo(
            d.id(),
            t.host.scheduler().id(),
            SchedParams { weight: 0, cap: 50 },
        )
        .unwrap();
    assert_eq!(d.cpu_share(), 0.25);
    let capped = run(&d);
    assert!(
        capped * 2 < full && capped * 8 > full,
        "capped {capped} pages, uncapped {full}"
    );
    // Another scheduler's id is refused; the cap stays.
    let other = if t.host.scheduler() == Scheduler::Credit2 {
        XEN_SCHEDULER_CREDIT
    } else {
        XEN_SCHEDULER_CREDIT2
    };
    let e = t.host.sched_getinfo(d.id(), other).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert_eq!(d.sched_params().cap, 50);
    assert_eq!(d.sched_history().unwrap().len(), 1);
}

const CHILD_ENV: &str = "XENSIM_UNIT_CHILD";

/// Run in a child process by `shutdown_is_visible_across_processes`: a
/// workload on the domain named in the environment.
#[test]
fn child_process_workload_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, id) = spec.split_once(':').unwrap();
    let h = Host::open(std::path::Path::new(dir)).unwrap();
    let d = h.domain(id.parse().unwrap()).unwrap();
    let o = workload::RunOptions {
        dirty_rate_bytes: 8 << 20,
        working_set_bytes: 1 << 20,
        seed: 3,
        max_duration: Some(Duration::from_secs(30)),
        follow: false,
        pattern: workload::Pattern::Random,
    };
    let s = workload::run(&d, &o).unwrap();
    println!("CHILD-WROTE {}", s.pages_written);
}

#[test]
fn shutdown_is_visible_across_processes_and_stops_the_workload() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    d.logdirty_enable().unwrap();
    // Killed if this test fails before waiting for it.
    let child = xcmig_testkit::process::Background::spawn(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "host_tests::child_process_workload_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}:{}", t.dir.display(), d.id())),
        "the workload child",
    );
    // Wait until the child's writes show up in the log-dirty counters.
    let start = Instant::now();
    while d
        .logdirty_op(LogDirtyOp::Peek, None, 0, false)
        .unwrap()
        .dirty_count
        == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "child never wrote"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.shutdown(SHUTDOWN_SUSPEND).unwrap();
    let out = child.wait(Duration::from_secs(60));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let wrote: u64 = text
        .lines()
        .find_map(|l| l.split_once("CHILD-WROTE ").map(|(_, n)| n))
        .expect("child output")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wrote > 0);
    // Seen from a fresh opener, as another process would.
    let again = Host::open(&t.dir)
        .unwrap()
        .domain(d.id())
        .unwrap()
        .info()
        .unwrap();
    assert!(again.shutdown);
    assert_eq!(again.shutdown_reason, SHUTDOWN_SUSPEND);
    let a = d.digest().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(d.digest().unwrap(), a, "memory is stable after suspend");
    d.resume().unwrap();
    let info = d.info().unwrap();
    assert!(!info.shutdown && info.running);
}

#[test]
fn creating_a_256_mib_mixed_guest_is_quick_and_sparse() {
    let t = TempHost::new("unit");
    let start = Instant::now();
    let id = t
        .host
        .create_domain(&cfg(GuestType::Hvm, 256 << 20, false))
        .unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let d = t.host.domain(id).unwrap();
    let info = d.info().unwrap();
    assert_eq!(info.tot_pages, 65536 + 16 + 16);
    assert!(info.running && !info.paused);
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(d.dir().join("mem")).unwrap().blocks() * 512;
    // About half of 256 MiB is written; the 64 GiB file stays sparse.
    assert!(blocks > (100 << 20) && blocks < (160 << 20), "{blocks}");
}

const FAULT_CHILD_ENV: &str = "XENSIM_UNIT_FAULT_CHILD";

/// Run in a child process by `env_faults_count_per_process`.
#[test]
fn child_process_fault_entry() {
    let Ok(dir) = std::env::var(FAULT_CHILD_ENV) else {
        return;
    };
    let seq: Vec<String> = match Host::open(std::path::Path::new(&dir)) {
        Ok(h) => (0..4)
            .map(|_| match h.fault_point("xc_domain_getinfo") {
                Ok(()) => "ok".to_string(),
                Err(e) => errno_name(e.errno()),
            })
            .collect(),
        Err(e) => vec![format!("open-{}", errno_name(e.errno()))],
    };
    println!("CHILD-FAULTS {}", seq.join(","));
}

fn run_fault_child(dir: &std::path::Path, spec: &str) -> String {
    let out = xcmig_testkit::process::run(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "host_tests::child_process_fault_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FAULT_CHILD_ENV, dir)
            .env("XENSIM_FAULTS", spec),
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.split_once("CHILD-FAULTS ").map(|(_, r)| r))
        .expect("child output")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn env_faults_count_per_process() {
    if std::env::var(FAULT_CHILD_ENV).is_ok() {
        return;
    }
    let t = TempHost::new("unit");
    assert_eq!(
        run_fault_child(&t.dir, "xc_domain_getinfo:ESRCH:2"),
        "ok,ESRCH,ok,ok"
    );
    assert_eq!(
        run_fault_child(&t.dir, "xc_domain_getinfo:EIO:3:always"),
        "ok,ok,EIO,EIO"
    );
    // Each process counts from its own start.
    assert_eq!(
        run_fault_child(&t.dir, "xc_domain_getinfo:5:1"),
        "EIO,ok,ok,ok"
    );
    assert_eq!(
        run_fault_child(&t.dir, "xc_domain_getinfo:EWHAT"),
        "open-EINVAL"
    );
}

#[test]
fn following_workload_survives_suspend_resume_and_stops_on_destroy() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    d.logdirty_enable().unwrap();
    let d2 = d.clone();
    let worker = std::thread::spawn(move || {
        let o = workload::RunOptions {
            dirty_rate_bytes: 4 << 20,
            working_set_bytes: 32 << 12,
            seed: 2,
            max_duration: Some(Duration::from_secs(30)),
            follow: true,
            pattern: workload::Pattern::Random,
        };
        workload::run(&d2, &o).unwrap()
    });
    let wait_dirty = || {
        let start = Instant::now();
        while d
            .logdirty_op(LogDirtyOp::Peek, None, 0, false)
            .unwrap()
            .dirty_count
            == 0
        {
            assert!(start.elapsed() < Duration::from_secs(10), "no writes");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_dirty();
    d.shutdown(SHUTDOWN_SUSPEND).unwrap();
    d.logdirty_op(LogDirtyOp::Clean, None, 0, false).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        d.logdirty_op(LogDirtyOp::Peek, None, 0, false)
            .unwrap()
            .dirty_count,
        0,
        "quiet while suspended"
    );
    assert!(!worker.is_finished());
    d.resume().unwrap();
    wait_dirty();
    t.host.destroy_domain(d.id()).unwrap();
    let stats = worker.join().unwrap();
    assert!(stats.pages_written > 0);
}

#[test]
fn corrupt_domain_files_give_errors_not_crashes() {
    let t = TempHost::new("unit");
    let d = small_hvm(&t.host);
    let dir = d.dir().to_path_buf();
    let fresh = || {
        Host::open(&t.dir)
            .unwrap()
            .domain(d.id())
            .err()
            .map(|e| e.errno())
    };
    std::fs::write(dir.join("config"), "type=hvm\nhandle=\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\n").unwrap();
    assert_eq!(fresh(), Some(libc::EIO));
    std::fs::write(dir.join("config"), "garbage").unwrap();
    assert_eq!(fresh(), Some(libc::EIO));
    let id = t
        .host
        .create_domain(&cfg(GuestType::Hvm, 2 << 20, true))
        .unwrap();
    let d2 = t.host.domain(id).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(d2.dir().join("ctl"))
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_eq!(
        Host::open(&t.dir)
            .unwrap()
            .domain(id)
            .err()
            .map(|e| e.errno()),
        Some(libc::EIO)
    );
    std::fs::write(
        d2.dir().join("hvmctx"),
        [1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
    )
    .unwrap();
    assert!(d2.hvm_context().is_err());
    std::fs::write(d2.dir().join("cpu_policy"), [9u8; 5]).unwrap();
    assert_eq!(d2.cpu_policy().unwrap_err().errno(), libc::EIO);
    std::fs::write(d2.dir().join("params"), [0u8; 7]).unwrap();
    assert_eq!(d2.hvm_param(1).unwrap_err().errno(), libc::EIO);
    std::fs::write(t.dir.join("faults"), "not a rule\n").unwrap();
    // A bad host fault file counts as no rules rather than failing every call.
    t.host.clear_faults().unwrap();
    std::fs::write(t.dir.join("faults"), "not a rule\n").unwrap();
    assert!(t.host.faults().is_err());
    t.host.fault_point("xc_domain_getinfo").unwrap();
}
