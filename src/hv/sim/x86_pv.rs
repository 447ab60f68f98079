//! [`X86Pv`] over xensim's PV model: the guest's width, the host's live
//! M2P, vCPU state and page-table pinning, each behind the fault point of
//! the libxenctrl call it stands for.

use xensim::{Host, MmuextOp};

use super::{hv_err, SimHypervisor};
use crate::hv::{pin_cmd_offset, DomId, HvError, HvResult, M2pTable, MsrEntry, X86Pv};
use crate::x86::pv::GuestWidth;

/// The host's M2P, read entry by entry from its shared file, so it is live
/// as Xen's is: entries a later populate writes are seen.
struct SimM2p<'h> {
    host: &'h Host,
    max_mfn: u64,
}

impl M2pTable for SimM2p<'_> {
    fn max_mfn(&self) -> u64 {
        self.max_mfn
    }

    fn entry(&self, mfn: u64) -> Option<u64> {
        (mfn <= self.max_mfn).then(|| self.host.m2p_entry(mfn))
    }
}

impl SimHypervisor {
    /// `op`'s fault point on the host, for calls about no domain.
    fn host_call(&self, op: &'static str) -> HvResult<&Host> {
        self.host.fault_point(op).map_err(|e| hv_err(op, e))?;
        Ok(&self.host)
    }
}

impl X86Pv for SimHypervisor {
    fn pv_address_size(&self, domid: DomId) -> HvResult<u32> {
        Ok(self
            .domain("xc_domain_get_guest_width", domid)?
            .address_size())
    }

    fn set_pv_address_size(&self, domid: DomId, bits: u32) -> HvResult<()> {
        const OP: &str = "XEN_DOMCTL_set_address_size";
        self.domain(OP, domid)?
            .set_address_size(bits)
            .map_err(|e| hv_err(OP, e))
    }

    fn map_m2p(&self) -> HvResult<Box<dyn M2pTable + '_>> {
        const OP: &str = "xc_maximum_ram_page";
        let host = self.host_call(OP)?;
        let max_mfn = host.max_mfn().map_err(|e| hv_err(OP, e))?;
        self.host_call("xc_machphys_mfn_list")?;
        self.host_call("xc_map_foreign_ranges")?;
        Ok(Box::new(SimM2p { host, max_mfn }))
    }

    fn compat_m2p_mfn0(&self) -> HvResult<u64> {
        const OP: &str = "xc_memory_op";
        self.host_call(OP)?
            .compat_m2p_mfn0()
            .map_err(|e| hv_err(OP, e))
    }

    fn vcpu_online(&self, domid: DomId, vcpu: u32) -> HvResult<bool> {
        const OP: &str = "xc_vcpu_getinfo";
        let d = self.domain(OP, domid)?;
        if vcpu >= d.vcpus() {
            return Err(HvError::with_detail(
                OP,
                libc::EINVAL,
                format!("vcpu {vcpu} of a domain with {}", d.vcpus()),
            ));
        }
        Ok(d.vcpu_online(vcpu))
    }

    fn vcpu_context(&self, domid: DomId, vcpu: u32, width: GuestWidth) -> HvResult<Vec<u8>> {
        const OP: &str = "xc_vcpu_getcontext";
        let c = self
            .domain(OP, domid)?
            .vcpu_context(vcpu)
            .map_err(|e| hv_err(OP, e))?;
        // Xen writes the domain's width; a caller asking for the other one
        // has a stale idea of the guest.
        if c.len() != width.vcpu_context_size() {
            return Err(HvError::with_detail(
                OP,
                libc::EPROTO,
                format!(
                    "vcpu {vcpu}: a {}-byte context, not the {} of a {width} guest",
                    c.len(),
                    width.vcpu_context_size()
                ),
            ));
        }
        Ok(c)
    }

    fn set_vcpu_context(&self, domid: DomId, vcpu: u32, context: &[u8]) -> HvResult<()> {
        const OP: &str = "xc_vcpu_setcontext";
        self.domain(OP, domid)?
            .set_vcpu_context(vcpu, context)
            .map_err(|e| hv_err(OP, e))
    }

    fn ext_vcpu_context(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<u8>> {
        const OP: &str = "XEN_DOMCTL_get_ext_vcpucontext";
        self.domain("xc_domctl", domid)?
            .ext_vcpu_context(vcpu)
            .map_err(|e| hv_err(OP, e))
    }

    fn set_ext_vcpu_context(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        const OP: &str = "XEN_DOMCTL_set_ext_vcpucontext";
        self.domain("xc_domctl", domid)?
            .set_ext_vcpu_context(vcpu, blob)
            .map_err(|e| hv_err(OP, e))
    }

    fn vcpu_xsave(&self, domid: DomId, vcpu: u32) -> HvResult<Option<Vec<u8>>> {
        const OP: &str = "XEN_DOMCTL_getvcpuextstate";
        let d = self.domain("xc_domctl", domid)?;
        if d.xsave_features() == 0 {
            return Ok(None);
        }
        d.vcpu_xsave(vcpu).map(Some).map_err(|e| hv_err(OP, e))
    }

    fn set_vcpu_xsave(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        const OP: &str = "XEN_DOMCTL_setvcpuextstate";
        self.domain("xc_domctl", domid)?
            .set_vcpu_xsave(vcpu, blob)
            .map_err(|e| hv_err(OP, e))
    }

    fn vcpu_msrs(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<MsrEntry>> {
        const OP: &str = "XEN_DOMCTL_get_vcpu_msrs";
        let m = self
            .domain("xc_domctl", domid)?
            .vcpu_msrs(vcpu)
            .map_err(|e| hv_err(OP, e))?;
        Ok(m.into_iter()
            .map(|(idx, val)| MsrEntry { idx, flags: 0, val })
            .collect())
    }

    fn set_vcpu_msrs(&self, domid: DomId, vcpu: u32, msrs: &[MsrEntry]) -> HvResult<()> {
        const OP: &str = "XEN_DOMCTL_set_vcpu_msrs";
        if let Some(m) = msrs.iter().find(|m| m.flags != 0) {
            return Err(HvError::with_detail(
                OP,
                libc::EINVAL,
                format!("MSR {:#x} with a reserved field set", m.idx),
            ));
        }
        let pairs: Vec<(u32, u64)> = msrs.iter().map(|m| (m.idx, m.val)).collect();
        self.domain("xc_domctl", domid)?
            .set_vcpu_msrs(vcpu, &pairs)
            .map_err(|e| hv_err(OP, e))
    }

    fn pin_page_tables(&self, domid: DomId, pins: &[(u8, u64)]) -> HvResult<()> {
        const OP: &str = "xc_mmuext_op";
        let mut ops = Vec::with_capacity(pins.len());
        for &(level, mfn) in pins {
            ops.push(MmuextOp {
                cmd: xensim::MMUEXT_PIN_L1_TABLE + pin_cmd_offset(OP, level, mfn)?,
                arg1: mfn,
                arg2: 0,
            });
        }
        self.domain(OP, domid)?
            .mmuext_op(&ops)
            .map_err(|e| hv_err(OP, e))
    }
}

#[cfg(test)]
mod tests {
    use xensim::{DomainConfig, GuestType};

    use crate::hv::{pfinfo, GuestMemory, MsrEntry, X86Pv};
    use crate::x86::pv::{GuestWidth, VcpuContext};

    /// `VGCF_online`.
    const VGCF_ONLINE: u64 = 1 << 5;
    use crate::save::testutil::TempHost;

    /// An empty PV domain (the restore target libxl makes: 64-bit, no pages).
    fn empty_pv(t: &TempHost) -> u32 {
        t.host
            .create_domain(&DomainConfig {
                guest_type: GuestType::Pv,
                memory_bytes: 16 << 20,
                vcpus: 2,
                empty: true,
                ..DomainConfig::default()
            })
            .expect("create an empty PV domain")
    }

    #[test]
    fn an_empty_pv_domain_switches_to_32_bits_only_before_it_has_pages() {
        let t = TempHost::new("pv-width");
        let hv = t.hv();
        let a = empty_pv(&t);
        assert_eq!(hv.pv_address_size(a).unwrap(), 64);
        hv.set_pv_address_size(a, 64).expect("64 -> 64 is a no-op");
        hv.set_pv_address_size(a, 32)
            .expect("switch_compat while empty");
        assert_eq!(hv.pv_address_size(a).unwrap(), 32);

        let b = empty_pv(&t);
        hv.populate_physmap(b, &mut [0]).unwrap();
        let e = hv.set_pv_address_size(b, 32).unwrap_err();
        assert_eq!(e.errno(), libc::EACCES, "{e}");
        assert_eq!(hv.pv_address_size(b).unwrap(), 64);
    }

    #[test]
    fn the_m2p_is_live_and_populate_returns_mfns_it_maps_back_to_pfns() {
        let t = TempHost::new("pv-m2p");
        let hv = t.hv();
        let d = empty_pv(&t);
        let m2p = hv.map_m2p().unwrap();
        let mut frames = [3u64, 4, 1000];
        hv.populate_physmap(d, &mut frames).unwrap();
        assert_ne!(frames, [3, 4, 1000], "PV populate writes MFNs back");
        for (pfn, mfn) in [3u64, 4, 1000].into_iter().zip(frames) {
            assert!(mfn <= m2p.max_mfn(), "mfn {mfn:#x} beyond max_mfn");
            assert_eq!(m2p.entry(mfn), Some(pfn), "m2p[{mfn:#x}] after populate");
        }
        assert_eq!(m2p.entry(m2p.max_mfn() + 1), None);
        let mut types = [frames[0], frames[2], u64::MAX];
        hv.page_types(d, &mut types).unwrap();
        assert_eq!(
            types.map(|t| t as u32),
            [pfinfo::NOTAB, pfinfo::NOTAB, pfinfo::XTAB],
            "types by MFN; an invalid frame is XTAB"
        );
        assert_eq!(hv.compat_m2p_mfn0().unwrap(), xensim::COMPAT_M2P_MFN0);
    }

    #[test]
    fn pinning_an_empty_l4_types_it_pinned_and_bad_levels_are_refused() {
        let t = TempHost::new("pv-pin");
        let hv = t.hv();
        let d = empty_pv(&t);
        let mut frames = [7u64];
        hv.populate_physmap(d, &mut frames).unwrap();
        hv.pin_page_tables(d, &[(4, frames[0])]).unwrap();
        let mut types = frames;
        hv.page_types(d, &mut types).unwrap();
        assert_eq!(types[0] as u32, pfinfo::L4TAB | pfinfo::LPINTAB);
        let e = hv.pin_page_tables(d, &[(5, frames[0])]).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{e}");
    }

    #[test]
    fn vcpus_of_an_empty_domain_are_down_and_others_do_not_exist() {
        let t = TempHost::new("pv-vcpu");
        let hv = t.hv();
        let d = empty_pv(&t);
        assert!(!hv.vcpu_online(d, 1).unwrap());
        assert_eq!(hv.vcpu_online(d, 2).unwrap_err().errno(), libc::EINVAL);
    }

    #[test]
    fn a_context_set_on_an_l4_root_types_it_brings_the_vcpu_up_and_reads_back() {
        let t = TempHost::new("pv-ctx");
        let hv = t.hv();
        let d = empty_pv(&t);
        let mut frames = [0u64, 1];
        hv.populate_physmap(d, &mut frames).unwrap();
        let w = GuestWidth::Bits64;
        let mut c = VcpuContext::new(w, vec![0u8; w.vcpu_context_size()]).unwrap();
        c.set_ctrlreg(3, w.frame_to_cr3(frames[0]).unwrap());
        c.set_start_info_reg(frames[1]);
        hv.set_vcpu_context(d, 0, c.bytes()).unwrap();
        assert!(hv.vcpu_online(d, 0).unwrap());
        let mut types = [frames[0]];
        hv.page_types(d, &mut types).unwrap();
        assert_eq!(types[0] as u32, pfinfo::L4TAB, "cr3 typed by validation");

        let got = VcpuContext::new(w, hv.vcpu_context(d, 0, w).unwrap()).unwrap();
        assert_eq!(w.cr3_to_frame(got.ctrlreg(3)), Some(frames[0]));
        assert_eq!(got.start_info_reg(), frames[1]);
        assert_ne!(got.flags() & VGCF_ONLINE, 0, "flags carry VGCF_online");
        let e = hv.vcpu_context(d, 0, GuestWidth::Bits32).unwrap_err();
        assert_eq!(e.errno(), libc::EPROTO, "{e}");

        // A cr3 outside the domain's frame window is refused.
        c.set_ctrlreg(3, w.frame_to_cr3(frames[0] + (1 << 24)).unwrap());
        assert_eq!(
            hv.set_vcpu_context(d, 1, c.bytes()).unwrap_err().errno(),
            libc::EINVAL
        );
    }

    #[test]
    fn extended_xsave_and_msr_state_round_trip_and_bad_msrs_are_refused() {
        let t = TempHost::new("pv-ext");
        let hv = t.hv();
        let d = empty_pv(&t);
        let ext = hv.ext_vcpu_context(d, 1).unwrap();
        assert_eq!(ext.len(), 64);
        assert_eq!(
            u32::from_le_bytes(ext[4..8].try_into().unwrap()),
            64,
            "size field"
        );
        hv.set_ext_vcpu_context(d, 1, &ext).unwrap();

        let x = hv
            .vcpu_xsave(d, 1)
            .unwrap()
            .expect("the simulated host has XSAVE");
        assert!(x.len() > 16);
        hv.set_vcpu_xsave(d, 1, &x).unwrap();
        assert_eq!(hv.vcpu_xsave(d, 1).unwrap(), Some(x));

        let aux = MsrEntry {
            idx: 0xc000_0103,
            flags: 0,
            val: 7,
        };
        hv.set_vcpu_msrs(d, 1, &[aux]).unwrap();
        assert_eq!(hv.vcpu_msrs(d, 1).unwrap(), vec![aux]);
        assert!(
            hv.vcpu_msrs(d, 0).unwrap().is_empty(),
            "zero MSRs are not listed"
        );
        let reserved = MsrEntry { flags: 1, ..aux };
        assert_eq!(
            hv.set_vcpu_msrs(d, 1, &[reserved]).unwrap_err().errno(),
            libc::EINVAL
        );
        let unknown = MsrEntry {
            idx: 0x10,
            flags: 0,
            val: 1,
        };
        assert_eq!(
            hv.set_vcpu_msrs(d, 1, &[unknown]).unwrap_err().errno(),
            libc::EINVAL
        );
    }
}
