//! xensim counts the foreign mapping regions a process holds, so that tests
//! of a failed save or restore can prove nothing was left mapped. This file
//! is its own test binary (its own process): no other test maps meanwhile.

use xensim::{live_mappings, DomainConfig, Host, Prot};

#[test]
fn live_mappings_counts_regions_until_they_are_dropped() {
    let dir = std::env::temp_dir().join(format!("xensim-live-mappings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = Host::open(&dir).expect("open host");
    let cfg = DomainConfig {
        memory_bytes: 1 << 20,
        ..DomainConfig::default()
    };
    let dom = host
        .domain(host.create_domain(&cfg).expect("create"))
        .expect("open");
    assert_eq!(live_mappings(), 0);
    let a = dom.map_frames(&[0, 1, 2], Prot::Read).expect("map");
    let b = dom.map_frames(&[5], Prot::ReadWrite).expect("map");
    assert_eq!(live_mappings(), 2);
    drop(a);
    assert_eq!(live_mappings(), 1);
    // A region handed to C stays counted until its owner releases it.
    let pages = b.pages();
    let addr = b.into_raw();
    assert_eq!(live_mappings(), 1);
    // SAFETY: `addr` is the region `into_raw` gave up, `pages` pages long.
    unsafe { libc::munmap(addr.cast(), pages * 4096) };
    xensim::release_raw();
    assert_eq!(live_mappings(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
