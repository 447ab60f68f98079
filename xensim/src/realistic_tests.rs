//! Domain-level tests of the realistic fill and workload pattern: built and
//! rewritten pages are recognisably of the kind their gfn has.

use crate::realistic::{page_kind, PageKind};
use crate::testutil::TempHost;
use crate::workload::{self, Pattern, RunOptions};
use crate::*;
use std::time::Duration;

/// Shannon entropy of the bytes of `b`, in bits per byte.
pub(crate) fn entropy(b: &[u8]) -> f64 {
    let mut n = [0u32; 256];
    for &x in b {
        n[x as usize] += 1;
    }
    let len = b.len() as f64;
    n.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Words that look like heap data: small values (integers, flags, ids,
/// zero), kernel direct-map addresses, user heap addresses.
pub(crate) fn structured_words(b: &[u8]) -> usize {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .filter(|&w| w < 0x1_0000_0000 || w >> 44 == 0xf_fff8 || w >> 40 == 0x55)
        .count()
}

/// What a page looks like, judged from its bytes alone.
pub(crate) fn classify(b: &[u8]) -> PageKind {
    if b.iter().all(|&c| c == 0) {
        PageKind::Zero
    } else if b
        .iter()
        .all(|&c| c == b'\n' || c == b'\t' || (0x20..0x7f).contains(&c))
    {
        PageKind::Text
    } else if entropy(b) > 7.9 {
        PageKind::Random
    } else if structured_words(b) * 4 >= b.len() / 8 * 3 && entropy(b) < 6.5 {
        PageKind::Heap
    } else {
        PageKind::Code
    }
}

fn realistic(t: GuestType, mem: u64, seed: u64) -> DomainConfig {
    DomainConfig {
        guest_type: t,
        memory_bytes: mem,
        fill: Fill::Realistic,
        seed,
        ..Default::default()
    }
}

fn ram_gfns(cfg: &DomainConfig) -> Vec<u64> {
    let l = MemoryLayout::for_config(cfg).unwrap();
    l.ram.iter().flat_map(|r| r.clone()).collect()
}

#[test]
fn realistic_fill_builds_every_page_recognisably_of_its_kind() {
    let t = TempHost::new("realistic");
    let cfg = realistic(GuestType::Hvm, 32 << 20, 9);
    let d = t.host.domain(t.host.create_domain(&cfg).unwrap()).unwrap();
    let mut page = vec![0u8; PAGE_SIZE as usize];
    let mut seen = std::collections::HashSet::new();
    for gfn in ram_gfns(&cfg) {
        d.read_frame(gfn, &mut page).unwrap();
        let want = page_kind(9, gfn);
        // A code page of symbol records is structured like heap: accept it.
        let got = classify(&page);
        let ok = got == want || (want == PageKind::Code && got == PageKind::Heap);
        assert!(ok, "gfn {gfn:#x}: built {want:?}, looks like {got:?}");
        seen.insert(want);
    }
    assert_eq!(seen.len(), 5, "kinds present: {seen:?}");
}

#[test]
fn realistic_fill_is_deterministic_by_seed() {
    let t = TempHost::new("realistic");
    let a = t
        .host
        .create_domain(&realistic(GuestType::Pvh, 8 << 20, 4))
        .unwrap();
    let b = t
        .host
        .create_domain(&realistic(GuestType::Pvh, 8 << 20, 4))
        .unwrap();
    let c = t
        .host
        .create_domain(&realistic(GuestType::Pvh, 8 << 20, 5))
        .unwrap();
    let (a, b, c) = (
        t.host.domain(a).unwrap(),
        t.host.domain(b).unwrap(),
        t.host.domain(c).unwrap(),
    );
    let mut pa = vec![0u8; PAGE_SIZE as usize];
    let mut pb = pa.clone();
    let mut pc = pa.clone();
    let mut differ = 0;
    for gfn in 0..2048 {
        a.read_frame(gfn, &mut pa).unwrap();
        b.read_frame(gfn, &mut pb).unwrap();
        c.read_frame(gfn, &mut pc).unwrap();
        assert_eq!(pa, pb, "gfn {gfn:#x}");
        differ += usize::from(pa != pc);
    }
    assert!(
        differ > 1000,
        "seed 5 differs from seed 4 in {differ} pages"
    );
}

#[test]
fn realistic_workload_rewrites_pages_with_content_of_their_kind() {
    let t = TempHost::new("realistic");
    let cfg = realistic(GuestType::Hvm, 16 << 20, 5);
    let d = t.host.domain(t.host.create_domain(&cfg).unwrap()).unwrap();
    let set = workload::working_set(&d, 8 << 20, 3);
    let read = |gfn: u64| {
        let mut p = vec![0u8; PAGE_SIZE as usize];
        d.read_frame(gfn, &mut p).unwrap();
        p
    };
    let before: Vec<Vec<u8>> = set.iter().map(|&g| read(g)).collect();
    let o = RunOptions {
        dirty_rate_bytes: 256 << 20,
        working_set_bytes: 8 << 20,
        seed: 3,
        max_duration: Some(Duration::from_millis(400)),
        follow: false,
        pattern: Pattern::Realistic,
    };
    let s = workload::run(&d, &o).unwrap();
    assert!(s.pages_written > 500, "{s:?}");
    let mut rewritten = std::collections::HashMap::new();
    let mut zero_to_heap = 0;
    for (&gfn, old) in set.iter().zip(&before) {
        let now = read(gfn);
        if &now == old {
            continue;
        }
        let want = page_kind(5, gfn);
        let got = classify(&now);
        *rewritten.entry(want).or_insert(0) += 1;
        let ok = match want {
            PageKind::Zero => got == PageKind::Heap,
            PageKind::Code => got == PageKind::Code || got == PageKind::Heap,
            k => got == k,
        };
        assert!(ok, "gfn {gfn:#x}: a {want:?} page rewritten as {got:?}");
        zero_to_heap += usize::from(want == PageKind::Zero);
    }
    for k in [
        PageKind::Text,
        PageKind::Code,
        PageKind::Heap,
        PageKind::Random,
    ] {
        assert!(
            rewritten.get(&k).copied().unwrap_or(0) > 0,
            "no {k:?} page rewritten: {rewritten:?}"
        );
    }
    // Most writes to zero pages clear them again (unchanged, so not seen
    // here); about one in four allocate them as heap.
    let zero_pages = set
        .iter()
        .filter(|&&g| page_kind(5, g) == PageKind::Zero)
        .count();
    assert!(
        zero_pages == 0 || zero_to_heap < zero_pages,
        "{zero_to_heap} of {zero_pages} zero pages became heap"
    );
}
