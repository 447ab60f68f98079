//! A foreign mapping handed to C (`ForeignMapping::into_raw`, what the shim's
//! `xenforeignmemory_map` does) must not leave heap memory behind once its
//! owner unmaps it. Found by the soak's in-process save/restore cycles
//! (tests/capi_soak.rs): the harness's heap grew by 4 bytes per mapped page
//! per cycle, under libxenguest and xcmig alike. This file is its own test
//! binary because it counts every allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use xensim::{DomainConfig, Host, Prot};

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only arithmetic on the sizes the caller passes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn into_raw_frees_the_slot_errors_so_each_c_mapping_leaks_nothing() {
    let dir = std::env::temp_dir().join(format!("xensim-into-raw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = Host::open(&dir).expect("open host");
    let cfg = DomainConfig {
        memory_bytes: 4 << 20,
        ..DomainConfig::default()
    };
    let dom = host
        .domain(host.create_domain(&cfg).expect("create"))
        .expect("open");
    let frames: Vec<u64> = (0..1024).collect();
    let map_give_and_unmap = || {
        let m = dom.map_frames(&frames, Prot::Read).expect("map");
        let pages = m.pages();
        let addr = m.into_raw();
        // SAFETY: `addr` is the region `into_raw` gave up, `pages` pages long.
        assert_eq!(unsafe { libc::munmap(addr.cast(), pages * 4096) }, 0);
        xensim::release_raw();
    };
    map_give_and_unmap(); // anything allocated once, on first use
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    const ROUNDS: isize = 64;
    for _ in 0..ROUNDS {
        map_give_and_unmap();
    }
    let grown = LIVE_BYTES.load(Ordering::SeqCst) - before;
    // The leak this guards against was 4 KiB per round here (1024 pages).
    assert!(
        grown < 4096,
        "{ROUNDS} mappings of 1024 frames given to C and unmapped left {grown} bytes allocated"
    );
    drop(dom);
    let _ = std::fs::remove_dir_all(&dir);
}
