//! Foreign mappings handed to C callers.
//!
//! The mapping itself is xensim's [`xensim::Domain::map_frames`]: one
//! reservation, one `MAP_SHARED` `mmap` of the domain's memory file per
//! contiguous run of frames, unmappable slots left `PROT_NONE`. Here the
//! region is given up to the C caller, which releases it with a plain
//! `munmap(addr, n*4096)` (through [`unmap`]).
//!
//! `DOMID_XEN` names Xen's own frames: the M2P and the compat M2P, mapped
//! live from the host's M2P files ([`xensim::Host::map_xen_frames`]).

use std::ffi::c_int;

use xensim::{DomId, Domain, ForeignMapping, Host, Prot};

use crate::abi::DOMID_XEN;

use crate::error::{ShimError, ShimResult};
use crate::hcall::PAGE_SIZE;

/// A region now owned by the C caller, with some slots mapped.
#[derive(Debug)]
pub struct Mapping {
    /// Start of the region (one page per requested frame).
    pub addr: *mut u8,
    /// Per-slot result: 0, or a negative errno (`-EINVAL` for a hole).
    pub errs: Vec<i32>,
}

/// The access a C `PROT_*` mask asks for: any write bit needs a writable
/// mapping; everything else is served read-only.
fn prot_of(prot: c_int) -> Prot {
    if prot & libc::PROT_WRITE != 0 {
        Prot::ReadWrite
    } else {
        Prot::Read
    }
}

/// Whose frames a foreign mapping names.
pub enum Owner<'h> {
    /// A guest's (gfns for HVM, MFNs for PV).
    Domain(Domain),
    /// Xen's own (`DOMID_XEN`): the M2P chunks and the compat M2P.
    Xen(&'h Host),
}

impl<'h> Owner<'h> {
    /// The owner `domid` names on `host`.
    pub fn of(host: &'h Host, domid: u32) -> ShimResult<Owner<'h>> {
        if domid == DOMID_XEN {
            return Ok(Owner::Xen(host));
        }
        Ok(Owner::Domain(host.domain(domid as DomId)?))
    }

    fn map(&self, frames: &[u64], prot: c_int) -> ShimResult<ForeignMapping> {
        Ok(match self {
            Owner::Domain(d) => d.map_frames(frames, prot_of(prot))?,
            Owner::Xen(h) => h.map_xen_frames(frames, prot_of(prot))?,
        })
    }
}

impl From<Domain> for Owner<'_> {
    fn from(d: Domain) -> Self {
        Owner::Domain(d)
    }
}

/// Maps `frames` of `owner`; slots that cannot be mapped report their errno.
pub fn map_frames(owner: &Owner<'_>, frames: &[u64], prot: c_int) -> ShimResult<Mapping> {
    let m = owner.map(frames, prot)?;
    let errs = m.errors().to_vec();
    Ok(Mapping {
        addr: m.into_raw(),
        errs,
    })
}

/// Maps all frames or none: on any failed slot the region is released and the
/// slot's errno returned, as libxenforeignmemory does when `err` is NULL.
pub fn map_all(owner: &Owner<'_>, frames: &[u64], prot: c_int) -> ShimResult<*mut u8> {
    let m = owner.map(frames, prot)?;
    if let Some((idx, &e)) = m.errors().iter().enumerate().find(|(_, &e)| e != 0) {
        // Dropping `m` releases the region.
        return Err(ShimError::new(
            -e,
            format!("frame {idx} of {} could not be mapped", frames.len()),
        ));
    }
    Ok(m.into_raw())
}

/// Hands a region to a caller that releases it with a plain `munmap`, as
/// Xen's `xc_map_foreign_{range,pages,ranges,bulk}` callers do. The shim
/// never sees that `munmap`, so the region leaves [`xensim::live_mappings`]
/// (this library's count, which `xensim_shim_live_mappings` reports) now:
/// the count stays a count of what the shim's own unmap calls must still
/// release. The process's memory map is the record of these regions.
pub fn hand_to_munmap(addr: *mut u8) -> *mut u8 {
    xensim::release_raw();
    addr
}

/// Releases `pages` pages at `addr`.
pub fn unmap(addr: *mut u8, pages: usize) -> ShimResult<()> {
    if addr.is_null() {
        return Err(ShimError::inval("unmap of NULL"));
    }
    let len = pages
        .checked_mul(PAGE_SIZE)
        .ok_or_else(|| ShimError::inval(format!("unmap of {pages} pages")))?;
    // SAFETY: the caller hands back a region it got from map_frames (the C
    // contract of xenforeignmemory_unmap); munmap validates the range itself.
    if unsafe { libc::munmap(addr.cast(), len) } != 0 {
        return Err(ShimError::last_os("munmap"));
    }
    xensim::release_raw();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xensim::{DomainConfig, Fill, GuestType, Host};

    /// A host in a fresh directory with one populated HVM domain.
    struct TestDomain {
        dir: std::path::PathBuf,
        dom: Domain,
    }

    impl TestDomain {
        fn new(tag: &str) -> TestDomain {
            let dir =
                std::env::temp_dir().join(format!("xensim-shim-fmap-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let host = Host::open(&dir).expect("open host");
            let id = host
                .create_domain(&DomainConfig {
                    guest_type: GuestType::Hvm,
                    memory_bytes: 16 << 20,
                    vcpus: 1,
                    fill: Fill::Random,
                    seed: 5,
                    empty: false,
                    ..DomainConfig::default()
                })
                .expect("create domain");
            let dom = host.domain(id).expect("domain");
            TestDomain { dir, dom }
        }
    }

    impl TestDomain {
        fn owner(&self) -> Owner<'static> {
            Owner::Domain(self.dom.clone())
        }
    }

    impl Drop for TestDomain {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A frame number no domain has populated.
    const HOLE: u64 = u64::MAX - 1;

    #[test]
    fn mapped_slots_share_guest_memory_and_holes_report_einval() {
        let t = TestDomain::new("shared");
        let m = map_frames(
            &t.owner(),
            &[2, 3, HOLE, 0],
            libc::PROT_READ | libc::PROT_WRITE,
        )
        .unwrap();
        assert_eq!(m.errs, vec![0, 0, -libc::EINVAL, 0]);
        let mut page = vec![0u8; PAGE_SIZE];
        t.dom.read_frame(3, &mut page).unwrap();
        // SAFETY: slots 0, 1 and 3 are mapped pages of the domain.
        unsafe {
            assert_eq!(*m.addr.add(PAGE_SIZE), page[0]);
            *m.addr.add(3 * PAGE_SIZE) = !page[0];
        }
        unmap(m.addr, 4).unwrap();
        let mut frame0 = vec![0u8; PAGE_SIZE];
        t.dom.read_frame(0, &mut frame0).unwrap();
        assert_eq!(frame0[0], !page[0], "writes reach the guest's memory");
    }

    #[test]
    fn map_all_fails_whole_call_on_any_bad_slot() {
        let t = TestDomain::new("all");
        let e = map_all(&t.owner(), &[0, HOLE], libc::PROT_READ).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
    }

    #[test]
    fn plain_munmap_releases_a_mapping() {
        let t = TestDomain::new("munmap");
        let a = map_all(&t.owner(), &[0, 1], libc::PROT_READ).unwrap();
        // SAFETY: a is a 2-page region from map_all.
        assert_eq!(unsafe { libc::munmap(a.cast(), 2 * PAGE_SIZE) }, 0);
        // The range is now free: mincore reports ENOMEM for unmapped memory.
        let mut vec = [0u8; 2];
        // SAFETY: vec has one byte per page of the queried range.
        let r = unsafe { libc::mincore(a.cast(), 2 * PAGE_SIZE, vec.as_mut_ptr()) };
        assert_eq!(r, -1);
    }
}
