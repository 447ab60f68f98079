//! The guest-state digest: what a correct save/restore must carry over.
//!
//! Components (each SHA-256; the total hashes their names and values):
//! * `type` — HVM or PVH;
//! * `memory` — every populated pfn and its contents, except the contents of
//!   the pages Xen's HVM restore zeroes on purpose (STORE, CONSOLE, IOREQ and
//!   BUFIOREQ pages, found through their params), whose pfn is hashed alone;
//! * `hvm-context` — the HVM context blob as `gethvmcontext` returns it;
//! * `hvm-params` — the 16 params libxenguest saves (not the event-channel
//!   params restore takes from its arguments, nor params it never saves);
//! * `tsc` — mode, gtsc_khz, elapsed_nsec (not the incarnation, which
//!   restore bumps by one);
//! * `cpu-policy` — non-zero leaves and MSRs, sorted (Xen treats an absent
//!   leaf and a zero leaf alike).

use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::params::{
    HVM_PARAM_BUFIOREQ_PFN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_IOREQ_PFN, HVM_PARAM_STORE_PFN,
    SAVED_HVM_PARAMS,
};
use crate::PAGE_SIZE;
use sha2::{Digest, Sha256};
use std::os::unix::fs::FileExt;

/// A digest and how it was made up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestReport {
    /// `(component name, hex SHA-256)` in a fixed order.
    pub components: Vec<(String, String)>,
    /// Populated pages hashed.
    pub pages: u64,
    /// Pages whose contents were left out (magic pages restore clears).
    pub excluded_pages: Vec<u64>,
    /// The digest of the whole state (hex SHA-256).
    pub total: String,
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The params whose pages Xen's HVM restore clears after loading them
/// (`xg_sr_restore_x86_hvm.c`: console, xenstore, ioreq, bufioreq).
const CLEARED_PAGE_PARAMS: [u32; 4] = [
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_STORE_PFN,
    HVM_PARAM_IOREQ_PFN,
    HVM_PARAM_BUFIOREQ_PFN,
];

fn memory_hash(d: &Domain, excluded: &[u64]) -> Result<(String, u64)> {
    const CHUNK: usize = 256;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK * PAGE_SIZE as usize];
    let words = d.populated_words();
    let last_word = (d.highest_pfn() / 64) as usize;
    let mut pages = 0u64;
    let mut run: Vec<u64> = Vec::with_capacity(CHUNK);
    let file = d.mem_file();
    let mut flush = |run: &mut Vec<u64>, h: &mut Sha256| -> Result<()> {
        let Some(&first) = run.first() else {
            return Ok(());
        };
        let bytes = run.len() * PAGE_SIZE as usize;
        file.read_exact_at(&mut buf[..bytes], first * PAGE_SIZE)
            .map_err(|e| Error::io("reading guest memory", e))?;
        for (k, &pfn) in run.iter().enumerate() {
            h.update(pfn.to_le_bytes());
            if excluded.contains(&pfn) {
                h.update(b"contents-cleared-by-restore");
            } else {
                h.update(&buf[k * PAGE_SIZE as usize..(k + 1) * PAGE_SIZE as usize]);
            }
        }
        run.clear();
        Ok(())
    };
    for (wi, word) in words.iter().enumerate().take(last_word + 1) {
        let mut bits = word.load(std::sync::atomic::Ordering::SeqCst);
        while bits != 0 {
            let b = bits.trailing_zeros() as u64;
            bits &= bits - 1;
            let pfn = wi as u64 * 64 + b;
            pages += 1;
            let contiguous = run.last().is_some_and(|&l| l + 1 == pfn) && run.len() < CHUNK;
            if !contiguous {
                flush(&mut run, &mut h)?;
            }
            run.push(pfn);
        }
    }
    flush(&mut run, &mut h)?;
    Ok((hex(&h.finalize()), pages))
}

pub(crate) fn digest(d: &Domain) -> Result<DigestReport> {
    let mut comps: Vec<(String, String)> = Vec::new();
    let one = |data: &[u8]| hex(&Sha256::digest(data));
    comps.push(("type".into(), one(d.guest_type().as_str().as_bytes())));

    let hvm = d.guest_type().is_hvm();
    let mut excluded = Vec::new();
    if hvm {
        for p in CLEARED_PAGE_PARAMS {
            let v = d.hvm_param(p)?;
            if v != 0 && !excluded.contains(&v) {
                excluded.push(v);
            }
        }
    }
    let (mem, pages) = if d.is_pv() {
        comps.push(("pv-width".into(), one(&d.address_size().to_le_bytes())));
        crate::digest_pv::memory(d)?
    } else {
        memory_hash(d, &excluded)?
    };
    comps.push(("memory".into(), mem));
    if d.is_pv() {
        comps.push(("shared-info".into(), crate::digest_pv::shared_info(d)?));
        comps.push(("vcpus".into(), crate::digest_pv::vcpus(d)?));
    }

    if hvm {
        comps.push(("hvm-context".into(), one(&d.hvm_context()?)));
        let mut h = Sha256::new();
        for p in SAVED_HVM_PARAMS {
            h.update(p.to_le_bytes());
            h.update(d.hvm_param(p)?.to_le_bytes());
        }
        comps.push(("hvm-params".into(), hex(&h.finalize())));
    }

    let t = d.tsc_info()?;
    let mut h = Sha256::new();
    h.update(t.mode.to_le_bytes());
    h.update(t.gtsc_khz.to_le_bytes());
    h.update(t.elapsed_nsec.to_le_bytes());
    comps.push(("tsc".into(), hex(&h.finalize())));

    let pol = d.cpu_policy()?;
    let mut leaves: Vec<_> = pol
        .leaves
        .iter()
        .filter(|l| (l.a | l.b | l.c | l.d) != 0)
        .collect();
    leaves.sort_by_key(|l| (l.leaf, l.subleaf));
    let mut msrs: Vec<_> = pol.msrs.iter().filter(|m| m.val != 0).collect();
    msrs.sort_by_key(|m| m.idx);
    let mut h = Sha256::new();
    for l in leaves {
        for v in [l.leaf, l.subleaf, l.a, l.b, l.c, l.d] {
            h.update(v.to_le_bytes());
        }
    }
    for m in msrs {
        h.update(m.idx.to_le_bytes());
        h.update(m.val.to_le_bytes());
    }
    comps.push(("cpu-policy".into(), hex(&h.finalize())));

    let mut h = Sha256::new();
    h.update(b"xensim-digest-v1\n");
    for (n, v) in &comps {
        h.update(format!("{n}={v}\n").as_bytes());
    }
    Ok(DigestReport {
        components: comps,
        pages,
        excluded_pages: excluded,
        total: hex(&h.finalize()),
    })
}

// The methods live here, not in `domain`, so that the dependency runs one
// way: the digest reads a domain; a domain knows nothing of digests.
impl Domain {
    /// SHA-256 digest of the guest state that a save/restore must preserve
    /// (see README for what it leaves out and why).
    pub fn digest(&self) -> Result<String> {
        Ok(digest(self)?.total)
    }

    /// The digest with a per-component breakdown.
    pub fn digest_report(&self) -> Result<DigestReport> {
        digest(self)
    }
}
