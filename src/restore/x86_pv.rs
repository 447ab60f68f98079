//! The x86 PV parts of a restore (libxenguest's `restore_ops_x86_pv`,
//! `xg_sr_restore_x86_pv.c`), with the CPU policy and TSC records of
//! `x86.rs`.
//!
//! A PV guest names machine frames (MFNs) in its page tables, vCPU state,
//! start_info and p2m, and the stream names pfns instead. The restore
//! builds the pfn -> MFN map (the p2m) as populate hands out MFNs, rewrites
//! each page table on its way in (populating the frames it refers to
//! first), and at the end of the stream converts the stashed vCPU
//! contexts and start_info, pins the page tables the sender saw pinned,
//! and writes the p2m into the guest's own p2m frames. Every frame it
//! writes into a guest structure must round-trip through the M2P (libxenguest's
//! `mfn_in_pseudophysmap`).

use std::collections::{HashMap, HashSet};

use super::callbacks::MissingStaticData;
use super::ctx::RestoreCtx;
use super::error::RestoreError;
use super::guest::{unhandled, RestoreGuest};
use super::memory::PageHooks;
use super::x86::{self, CpuPolicyRecords};
use crate::hv::{
    DomId, HvError, Hypervisor, M2pTable, MappedPages, MappedPagesMut, MsrEntry, PAGE_SIZE,
};
use crate::log::Level;
use crate::stream::{Array, DomainType, Endian, P2mFrames, PageType, Record, VcpuKind, X86PvInfo};
use crate::x86::pv::{
    self, table_level, write_u32, GuestWidth, PageTableError, SharedInfo, SharedInfoLayout,
    StartInfoLayout, VcpuContext, SHARED_INFO_VCPUS, VGCF_ONLINE,
};

/// Page-table pins per `xc_mmuext_op` call (libxenguest's `MAX_PIN_BATCH`).
const PIN_BATCH: usize = 1024;

/// Largest X86_PV_VCPU_EXTENDED blob (`xen_domctl_ext_vcpucontext`'s room
/// in a domctl).
const EXT_CONTEXT_MAX: usize = 128;

/// Smallest X86_PV_VCPU_XSAVE blob: `xcr0` and `xcr0_accum`.
const XSAVE_MIN: usize = 16;

/// Largest X86_PV_VCPU_XSAVE blob kept: Xen refuses more than 16 bytes plus
/// the host's XSAVE area (CPUID leaf 0xd; 11008 bytes with AMX, the
/// largest today), so 64 KiB is generous and bounds what is stashed per
/// vCPU until the stream completes.
const XSAVE_MAX: usize = 64 << 10;

/// Size of one `xen_domctl_vcpu_msr_t` in X86_PV_VCPU_MSRS.
const MSR_ENTRY_SIZE: usize = 16;

/// Most entries kept from X86_PV_VCPU_MSRS: Xen 4.17 sends a handful
/// (`msrs_to_send` and the four DR address masks) and refuses MSRs it
/// does not know; 16 KiB per vCPU at most.
const MSRS_MAX: usize = 1024;

/// No frame (`INVALID_MFN`).
const INVALID_MFN: u64 = u64::MAX;

/// Pfns per leaf of [`P2m`]: small, so that a stream scattering its pages
/// one per leaf costs a leaf (160 bytes with the allocator's header) per
/// populated page, not a page of tracking per page of guest.
const LEAF: usize = 16;

/// What the restore knows of each pfn, sparse: the MFN populate gave it
/// (or none) and the type the stream gave it (NOTAB until then, as
/// libxenguest's table starts). Leaves are made only by populate, so
/// memory grows with the populated set, not with the `max_pfn` a stream
/// claims or the pfns its XTAB/BROKEN entries name: the type of a pfn
/// without a frame is not kept (every use of a type needs the frame too).
#[derive(Debug, Default)]
struct P2m {
    leaves: HashMap<u64, Box<P2mLeaf>>,
}

#[derive(Debug)]
struct P2mLeaf {
    mfns: [u64; LEAF],
    types: [PageType; LEAF],
}

impl P2m {
    fn mfn(&self, pfn: u64) -> u64 {
        self.leaves
            .get(&(pfn / LEAF as u64))
            .map_or(INVALID_MFN, |c| c.mfns[(pfn % LEAF as u64) as usize])
    }

    fn page_type(&self, pfn: u64) -> PageType {
        self.leaves
            .get(&(pfn / LEAF as u64))
            .map_or(PageType::NoTab, |c| c.types[(pfn % LEAF as u64) as usize])
    }

    fn set_mfn(&mut self, pfn: u64, mfn: u64) {
        let c = self.leaves.entry(pfn / LEAF as u64).or_insert_with(|| {
            Box::new(P2mLeaf {
                mfns: [INVALID_MFN; LEAF],
                types: [PageType::NoTab; LEAF],
            })
        });
        c.mfns[(pfn % LEAF as u64) as usize] = mfn;
    }

    /// Record `t` for `pfn` if it has a leaf (populated pfns always do).
    fn set_type(&mut self, pfn: u64, t: PageType) {
        if let Some(c) = self.leaves.get_mut(&(pfn / LEAF as u64)) {
            c.types[(pfn % LEAF as u64) as usize] = t;
        }
    }

    /// Every pfn with a pinned page-table type, in pfn order.
    fn pinned(&self) -> Vec<(u64, PageType)> {
        let mut keys: Vec<u64> = self.leaves.keys().copied().collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for k in keys {
            let c = &self.leaves[&k];
            for (i, t) in c.types.iter().enumerate() {
                if t.is_pinned() {
                    out.push((k * LEAF as u64 + i as u64, *t));
                }
            }
        }
        out
    }
}

/// The four vCPU records of one vCPU, stashed until the stream completes.
#[derive(Debug, Default, Clone)]
struct VcpuRecords {
    basic: Option<Vec<u8>>,
    extended: Option<Vec<u8>>,
    xsave: Option<Vec<u8>>,
    msrs: Option<Vec<u8>>,
}

/// The x86 PV state of one restore.
pub(crate) struct PvRestore<'a, H: Hypervisor> {
    hv: &'a H,
    domid: DomId,
    /// The domain's width (from Xen; X86_PV_INFO may switch it).
    width: GuestWidth,
    m2p: Option<Box<dyn M2pTable + 'a>>,
    shared_info_frame: u64,
    vcpus: Vec<VcpuRecords>,
    seen_pv_info: bool,
    cpu_policy: CpuPolicyRecords,
    /// Highest pfn of the guest, once X86_PV_P2M_FRAMES named it.
    max_pfn: Option<u64>,
    p2m: P2m,
    /// The pfns of the guest's p2m frames, by frame index (INVALID where
    /// the stream named none).
    p2m_frame_pfns: Vec<u64>,
    /// Pfns pinned by an earlier completion of the stream (COLO completes
    /// it at every checkpoint), with the MFN pinned.
    pinned: HashSet<(u64, u64)>,
    /// The start_info pfn whose store and console frames were converted to
    /// MFNs by an earlier completion, until PAGE_DATA rewrites it.
    start_info_converted: Option<u64>,
}

impl<'a, H: Hypervisor> PvRestore<'a, H> {
    /// A restore into PV domain `domid`; [`RestoreGuest::setup`] asks Xen
    /// for the rest.
    pub(crate) fn new(hv: &'a H, domid: DomId) -> Self {
        PvRestore {
            hv,
            domid,
            width: GuestWidth::Bits64,
            m2p: None,
            shared_info_frame: INVALID_MFN,
            vcpus: Vec::new(),
            seen_pv_info: false,
            cpu_policy: CpuPolicyRecords::default(),
            max_pfn: None,
            p2m: P2m::default(),
            p2m_frame_pfns: Vec::new(),
            pinned: HashSet::new(),
            start_info_converted: None,
        }
    }

    /// The domain's width, as `x86_pv_domain_info` reads it.
    fn query_width(&mut self) -> Result<(), RestoreError> {
        let bits = self.hv.pv_address_size(self.domid)?;
        self.width = GuestWidth::from_bits(bits).ok_or_else(|| RestoreError::Refused {
            what: "X86_PV_INFO",
            msg: format!("d{} has an address size of {bits} bits", self.domid),
            errno: libc::EINVAL,
        })?;
        Ok(())
    }

    /// Whether `pfn` is at most the guest's `max_pfn`.
    fn pfn_in_range(&self, pfn: u64) -> bool {
        matches!(self.max_pfn, Some(m) if pfn <= m)
    }

    /// libxenguest's `mfn_in_pseudophysmap`: the M2P maps `mfn` to a pfn
    /// of the guest whose p2m entry is `mfn` again.
    fn in_pseudophysmap(&self, mfn: u64) -> bool {
        let (Some(m2p), Some(max_pfn)) = (&self.m2p, self.max_pfn) else {
            return false;
        };
        m2p.entry(mfn)
            .is_some_and(|pfn| pfn <= max_pfn && self.p2m.mfn(pfn) == mfn)
    }

    /// What the M2P and p2m say about `mfn`, for an error message
    /// (libxenguest's `dump_bad_pseudophysmap_entry`).
    fn describe_mfn(&self, mfn: u64) -> String {
        let Some(m2p) = &self.m2p else {
            return format!("mfn {mfn:#x}");
        };
        let mut s = format!("mfn {mfn:#x} (max {:#x})", m2p.max_mfn());
        if mfn == INVALID_MFN {
            return "no mfn".into();
        }
        if let Some(pfn) = m2p.entry(mfn) {
            s += &format!(", m2p[{mfn:#x}] = {pfn:#x}");
            if self.max_pfn.is_some_and(|m| pfn <= m) {
                s += &format!(", p2m[{pfn:#x}] = {:#x}", self.p2m.mfn(pfn));
            }
        }
        s
    }

    /// The MFN of `pfn`, which must be a guest pfn of type `want` (NOTAB
    /// for data frames; `None`: a root page table of the guest's levels)
    /// with a frame in the pseudo-physical map. `what` names the frame for
    /// the error.
    fn frame_of(
        &self,
        record: &'static str,
        what: &str,
        pfn: u64,
        want: Option<PageType>,
    ) -> Result<u64, RestoreError> {
        let out_of_range = |msg: String| RestoreError::Refused {
            what: record,
            msg,
            errno: libc::ERANGE,
        };
        if !self.pfn_in_range(pfn) {
            return Err(out_of_range(format!(
                "{what} (pfn {pfn:#x}) out of range (max_pfn {})",
                self.max_pfn
                    .map_or_else(|| "unknown".to_string(), |m| format!("{m:#x}"))
            )));
        }
        let t = self.p2m.page_type(pfn);
        let ok = match want {
            Some(w) => t == w,
            None => table_level(t) == Some(self.width.levels()),
        };
        if !ok {
            let expected = want.map_or_else(
                || format!("L{}TAB", self.width.levels()),
                |w| w.name().into(),
            );
            return Err(RestoreError::Refused {
                what: record,
                msg: format!(
                    "{what} (pfn {pfn:#x}) has bad type {}, expected {expected}",
                    t.name()
                ),
                errno: libc::EINVAL,
            });
        }
        let mfn = self.p2m.mfn(pfn);
        if !self.in_pseudophysmap(mfn) {
            return Err(out_of_range(format!(
                "{what} (pfn {pfn:#x}) has bad {}",
                self.describe_mfn(mfn)
            )));
        }
        Ok(mfn)
    }

    fn pv_info(&mut self, info: &X86PvInfo) -> Result<(), RestoreError> {
        let refuse = |msg: String, errno: i32| RestoreError::Refused {
            what: "X86_PV_INFO",
            msg,
            errno,
        };
        if self.seen_pv_info {
            return Err(refuse("already received X86_PV_INFO".into(), libc::EINVAL));
        }
        let Some(width) = info.width() else {
            return Err(refuse(
                format!(
                    "invalid combination: width {}, pt_levels {}",
                    info.guest_width, info.pt_levels
                ),
                libc::EINVAL,
            ));
        };
        if width != self.width {
            // PV domains start at the native width; a compat guest's
            // stream is usually the first to tell Xen.
            let bits = u32::from(width.bytes()) * 8;
            self.hv
                .set_pv_address_size(self.domid, bits)
                .map_err(|e: HvError| {
                    refuse(
                        format!(
                            "failed to switch d{} to a {bits}-bit guest ({e}); Xen allows it only while the domain has no memory",
                            self.domid
                        ),
                        e.errno(),
                    )
                })?;
            self.query_width()?;
        }
        if width != self.width {
            return Err(refuse(
                format!(
                    "width/pt_levels {}/{} mismatch with d{} {}/{}",
                    info.guest_width,
                    info.pt_levels,
                    self.domid,
                    self.width.bytes(),
                    self.width.levels()
                ),
                libc::EINVAL,
            ));
        }
        self.seen_pv_info = true;
        Ok(())
    }

    fn p2m_frames(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
        rec: &P2mFrames<'_>,
    ) -> Result<(), RestoreError> {
        let refuse = |msg: String| RestoreError::Refused {
            what: "X86_PV_P2M_FRAMES",
            msg,
            errno: libc::EINVAL,
        };
        if !ctx.static_data_ended {
            return Err(refuse("no STATIC_DATA_END seen".into()));
        }
        if !self.seen_pv_info {
            return Err(refuse("not yet received X86_PV_INFO".into()));
        }
        let (start_pfn, end_pfn) = (u64::from(rec.start_pfn), u64::from(rec.end_pfn));
        if start_pfn > end_pfn {
            return Err(refuse(format!(
                "end pfn {end_pfn:#x} is before start pfn {start_pfn:#x}"
            )));
        }
        let fpp = self.width.p2m_entries_per_page();
        let (start, end) = (start_pfn / fpp, end_pfn / fpp + 1);
        if rec.frames.len() as u64 != end - start {
            return Err(refuse(format!(
                "pfns {start_pfn:#x}..={end_pfn:#x} need {} p2m frames of a {} guest, the record has {}",
                end - start,
                self.width,
                rec.frames.len()
            )));
        }
        if !self.pfn_in_range(end_pfn) {
            ctx.msg(
                Level::Detail,
                &format!(
                    "Changed max_pfn from {:#x} to {end_pfn:#x}",
                    self.max_pfn.unwrap_or(0)
                ),
            );
            self.max_pfn = Some(end_pfn);
            if self.p2m_frame_pfns.len() < end as usize {
                self.p2m_frame_pfns.resize(end as usize, INVALID_MFN);
            }
        }
        for (i, pfn) in rec.frames.iter().enumerate() {
            self.p2m_frame_pfns[start as usize + i] = pfn;
        }
        Ok(())
    }

    fn vcpu_record(
        &mut self,
        ctx: &RestoreCtx<'_, H>,
        kind: VcpuKind,
        vcpu: u32,
        blob: &[u8],
    ) -> Result<(), RestoreError> {
        let name = match kind {
            VcpuKind::Basic => "X86_PV_VCPU_BASIC",
            VcpuKind::Extended => "X86_PV_VCPU_EXTENDED",
            VcpuKind::Xsave => "X86_PV_VCPU_XSAVE",
            VcpuKind::Msrs => "X86_PV_VCPU_MSRS",
        };
        let refuse = |msg: String| RestoreError::Refused {
            what: name,
            msg,
            errno: libc::EINVAL,
        };
        // Older senders wrote empty ones by mistake.
        if blob.is_empty() {
            ctx.msg(
                Level::Debug,
                &format!("Skipping empty {name} record for vcpu {vcpu}"),
            );
            return Ok(());
        }
        let Some(slot) = self.vcpus.get_mut(vcpu as usize) else {
            return Err(refuse(format!(
                "vcpu_id {vcpu} exceeds the domain's max vcpu id {}",
                self.vcpus.len().saturating_sub(1)
            )));
        };
        let len = blob.len();
        let field = match kind {
            VcpuKind::Basic => {
                let want = self.width.vcpu_context_size();
                if len != want {
                    return Err(refuse(format!(
                        "wrong size: a {} guest's context is {want} bytes, got {len}",
                        self.width
                    )));
                }
                &mut slot.basic
            }
            VcpuKind::Extended => {
                if len > EXT_CONTEXT_MAX {
                    return Err(refuse(format!(
                        "too long: at most {EXT_CONTEXT_MAX} bytes, got {len}"
                    )));
                }
                &mut slot.extended
            }
            VcpuKind::Xsave => {
                if len < XSAVE_MIN {
                    return Err(refuse(format!(
                        "too short: at least {XSAVE_MIN} bytes, got {len}"
                    )));
                }
                if len > XSAVE_MAX {
                    return Err(refuse(format!(
                        "too long: at most {XSAVE_MAX} bytes (Xen takes 16 plus the XSAVE area), got {len}"
                    )));
                }
                &mut slot.xsave
            }
            VcpuKind::Msrs => {
                if len % MSR_ENTRY_SIZE != 0 {
                    return Err(refuse(format!(
                        "{len} bytes is not a multiple of {MSR_ENTRY_SIZE}"
                    )));
                }
                if len / MSR_ENTRY_SIZE > MSRS_MAX {
                    return Err(refuse(format!(
                        "{} MSRs, more than the {MSRS_MAX} kept (Xen sends a handful)",
                        len / MSR_ENTRY_SIZE
                    )));
                }
                &mut slot.msrs
            }
        };
        *field = Some(blob.to_vec());
        Ok(())
    }

    fn shared_info(&self, page: &[u8]) -> Result<(), RestoreError> {
        let refuse = |msg: String, errno: i32| RestoreError::Refused {
            what: "SHARED_INFO",
            msg,
            errno,
        };
        if !self.seen_pv_info {
            return Err(refuse("not yet received X86_PV_INFO".into(), libc::EINVAL));
        }
        let Ok(src) = <&[u8; PAGE_SIZE]>::try_from(page) else {
            return Err(refuse(
                format!("wrong size: {} bytes, expected 4096", page.len()),
                libc::EINVAL,
            ));
        };
        let frame = self.shared_info_frame;
        let mut map = self.hv.map_write(self.domid, &[frame])?;
        if map.error(0) != 0 {
            return Err(refuse(
                format!("failed to map shared_info at mfn {frame:#x}"),
                map.error(0).abs(),
            ));
        }
        let mut guest = [0u8; PAGE_SIZE];
        map.read_page(0, &mut guest);
        rewrite_shared_info(self.width, src, &mut guest)?;
        map.write_page(0, &guest);
        Ok(())
    }

    /// vCPU 0's start_info, as libxenguest's `process_start_info`: the
    /// pfn in `edx` becomes its MFN, and the page's store and console
    /// frames (pfns while the guest is suspended) become MFNs, which are
    /// also the restore's outputs.
    fn start_info(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
        vcpu: &mut VcpuContext<&mut [u8]>,
    ) -> Result<(), RestoreError> {
        const WHAT: &str = "X86_PV_VCPU_BASIC";
        let pfn = vcpu.start_info_reg();
        let mfn = self.frame_of(WHAT, "start_info", pfn, Some(PageType::NoTab))?;
        vcpu.set_start_info_reg(mfn);
        let mut map = self.hv.map_write(self.domid, &[mfn])?;
        if map.error(0) != 0 {
            return Err(RestoreError::Refused {
                what: WHAT,
                msg: format!("failed to map start_info at mfn {mfn:#x}"),
                errno: map.error(0).abs(),
            });
        }
        let mut page = [0u8; PAGE_SIZE];
        map.read_page(0, &mut page);
        let l = StartInfoLayout::of(self.width);
        let w = self.width;
        let (store, console) = if self.start_info_converted == Some(pfn) {
            // Converted by an earlier completion and not rewritten since.
            (
                w.read_word(&page, l.store_mfn),
                w.read_word(&page, l.console_mfn),
            )
        } else {
            let store_pfn = w.read_word(&page, l.store_mfn);
            let store = self.data_frame(WHAT, "start_info's xenstore frame", store_pfn)?;
            let console_pfn = w.read_word(&page, l.console_mfn);
            let console = self.data_frame(WHAT, "start_info's console frame", console_pfn)?;
            (store, console)
        };
        w.write_word(&mut page, l.store_mfn, store);
        write_u32(&mut page, l.store_evtchn, ctx.params.store_evtchn);
        w.write_word(&mut page, l.console_mfn, console);
        write_u32(&mut page, l.console_evtchn, ctx.params.console_evtchn);
        let max_pfn = self.max_pfn.unwrap_or(0);
        w.write_word(&mut page, l.nr_pages, max_pfn + 1);
        w.write_word(
            &mut page,
            l.shared_info,
            self.shared_info_frame << crate::x86::PAGE_SHIFT,
        );
        write_u32(&mut page, l.flags, 0);
        map.write_page(0, &page);
        self.start_info_converted = Some(pfn);
        ctx.outputs.store_gfn = store;
        ctx.outputs.console_gfn = console;
        Ok(())
    }

    /// The MFN of a pfn the guest uses as a plain frame (libxenguest checks
    /// only its range and the pseudo-physical map, not its type).
    fn data_frame(&self, record: &'static str, what: &str, pfn: u64) -> Result<u64, RestoreError> {
        if !self.pfn_in_range(pfn) {
            return Err(RestoreError::Refused {
                what: record,
                msg: format!("{what} (pfn {pfn:#x}) out of range"),
                errno: libc::ERANGE,
            });
        }
        let mfn = self.p2m.mfn(pfn);
        if !self.in_pseudophysmap(mfn) {
            return Err(RestoreError::Refused {
                what: record,
                msg: format!("{what} (pfn {pfn:#x}) has bad {}", self.describe_mfn(mfn)),
                errno: libc::ERANGE,
            });
        }
        Ok(mfn)
    }

    /// One vCPU's basic context with its frames converted, set in Xen.
    fn vcpu_basic(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
        id: u32,
        stashed: &[u8],
    ) -> Result<(), RestoreError> {
        const WHAT: &str = "X86_PV_VCPU_BASIC";
        // Converted in a copy, so that a second completion (COLO) starts
        // from the stream's pfns again.
        let mut bytes = stashed.to_vec();
        let mut vcpu =
            VcpuContext::new(self.width, &mut bytes[..]).map_err(|e| RestoreError::Refused {
                what: WHAT,
                msg: format!("vcpu {id}: {e}"),
                errno: libc::EINVAL,
            })?;
        if id == 0 {
            self.start_info(ctx, &mut vcpu)?;
        }
        vcpu.set_flags(vcpu.flags() | VGCF_ONLINE);
        let Some(gdt_frames) = vcpu.gdt_frame_count() else {
            return Err(RestoreError::Refused {
                what: WHAT,
                msg: format!(
                    "vcpu {id}: GDT entry count {} out of range (max {})",
                    vcpu.gdt_ents(),
                    pv::MAX_GDT_ENTRIES
                ),
                errno: libc::ERANGE,
            });
        };
        for i in 0..gdt_frames {
            let pfn = vcpu.gdt_frame(i);
            let mfn = self.frame_of(
                WHAT,
                &format!("vcpu {id}: GDT frame {i}"),
                pfn,
                Some(PageType::NoTab),
            )?;
            vcpu.set_gdt_frame(i, mfn);
        }
        let cr3 = vcpu.ctrlreg(3);
        let pfn = self.width.cr3_to_frame(cr3).unwrap_or(INVALID_MFN);
        let mfn = self.frame_of(WHAT, &format!("vcpu {id}: cr3"), pfn, None)?;
        let Some(cr3) = self.width.frame_to_cr3(mfn) else {
            return Err(RestoreError::Refused {
                what: WHAT,
                msg: format!("vcpu {id}: cr3 mfn {mfn:#x} does not fit a 32-bit guest's cr3"),
                errno: libc::ERANGE,
            });
        };
        vcpu.set_ctrlreg(3, cr3);
        // A 64-bit guest's user page table, when it has one.
        if self.width == GuestWidth::Bits64 && vcpu.ctrlreg(1) & 1 != 0 {
            let pfn = vcpu.ctrlreg(1) >> crate::x86::PAGE_SHIFT;
            let mfn = self.frame_of(WHAT, &format!("vcpu {id}: cr1"), pfn, None)?;
            vcpu.set_ctrlreg(1, mfn << crate::x86::PAGE_SHIFT);
        }
        // The error names the vCPU; "Restore failed" is its one error line.
        self.hv
            .set_vcpu_context(self.domid, id, vcpu.bytes())
            .map_err(RestoreError::Hv)?;
        Ok(())
    }

    /// Every vCPU's stashed state into Xen (libxenguest's
    /// `update_vcpu_context`).
    fn update_vcpus(&mut self, ctx: &mut RestoreCtx<'_, H>) -> Result<(), RestoreError> {
        let (hv, domid) = (self.hv, self.domid);
        for id in 0..self.vcpus.len() {
            let v = self.vcpus[id].clone();
            let id32 = id as u32;
            match &v.basic {
                Some(basic) => self.vcpu_basic(ctx, id32, basic)?,
                None if id == 0 => {
                    return Err(RestoreError::Incomplete(
                        "vcpu 0's X86_PV_VCPU_BASIC record",
                    ))
                }
                None => {}
            }
            if let Some(ext) = &v.extended {
                hv.set_ext_vcpu_context(domid, id32, ext)?;
            }
            if let Some(xsave) = &v.xsave {
                hv.set_vcpu_xsave(domid, id32, xsave)?;
            }
            if let Some(msrs) = &v.msrs {
                hv.set_vcpu_msrs(domid, id32, &parse_msrs(msrs))?;
            }
        }
        Ok(())
    }

    /// Pin every page table the sender saw pinned, in batches (libxenguest's
    /// `pin_pagetables`); those an earlier completion pinned are left.
    fn pin_page_tables(&mut self) -> Result<(), RestoreError> {
        let mut batch = Vec::with_capacity(PIN_BATCH);
        let mut pinned = Vec::new();
        for (pfn, t) in self.p2m.pinned() {
            let Some(level) = table_level(t) else {
                continue;
            };
            let mfn = self.p2m.mfn(pfn);
            if self.pinned.contains(&(pfn, mfn)) {
                continue;
            }
            batch.push((level, mfn));
            pinned.push((pfn, mfn));
            if batch.len() == PIN_BATCH {
                self.hv.pin_page_tables(self.domid, &batch)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.hv.pin_page_tables(self.domid, &batch)?;
        }
        self.pinned.extend(pinned);
        Ok(())
    }

    /// Write the p2m built here into the guest's p2m frames, in the
    /// guest's width (libxenguest's `update_guest_p2m`).
    fn update_guest_p2m(&self) -> Result<(), RestoreError> {
        const WHAT: &str = "X86_PV_P2M_FRAMES";
        let Some(max_pfn) = self.max_pfn else {
            return Err(RestoreError::Incomplete("an X86_PV_P2M_FRAMES record"));
        };
        let mut frames = Vec::with_capacity(self.p2m_frame_pfns.len());
        for (i, &pfn) in self.p2m_frame_pfns.iter().enumerate() {
            frames.push(self.frame_of(
                WHAT,
                &format!("p2m frame {i}"),
                pfn,
                Some(PageType::NoTab),
            )?);
        }
        let mut map = self.hv.map_write(self.domid, &frames)?;
        if let Some(i) = (0..frames.len()).find(|&i| map.error(i) != 0) {
            return Err(RestoreError::Refused {
                what: WHAT,
                msg: format!("failed to map p2m frame {i} (mfn {:#x})", frames[i]),
                errno: map.error(i).abs(),
            });
        }
        let bytes = usize::from(self.width.bytes());
        let fpp = self.width.p2m_entries_per_page();
        let mut page = [0u8; PAGE_SIZE];
        for (i, _) in frames.iter().enumerate() {
            // Entries past max_pfn in the last frame are left as the guest
            // had them, as libxenguest copies only max_pfn + 1 entries.
            map.read_page(i, &mut page);
            let first = i as u64 * fpp;
            for (k, slot) in page.chunks_exact_mut(bytes).enumerate() {
                let pfn = first + k as u64;
                if pfn > max_pfn {
                    break;
                }
                let mfn = self.p2m.mfn(pfn);
                match self.width {
                    GuestWidth::Bits64 => slot.copy_from_slice(&mfn.to_le_bytes()),
                    GuestWidth::Bits32 => {
                        let v = if mfn == INVALID_MFN {
                            u32::MAX
                        } else {
                            u32::try_from(mfn).map_err(|_| RestoreError::Refused {
                                what: WHAT,
                                msg: format!(
                                    "pfn {pfn:#x}: mfn {mfn:#x} does not fit a 32-bit guest's p2m"
                                ),
                                errno: libc::ERANGE,
                            })?
                        };
                        slot.copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            map.write_page(i, &page);
        }
        Ok(())
    }
}

/// SHARED_INFO into the guest's shared_info page: the record's `vcpu_info`
/// and `arch`, then no frame list (the guest rebuilds its p2m references
/// on resume), no pending events and every event masked.
fn rewrite_shared_info(
    width: GuestWidth,
    src: &[u8; PAGE_SIZE],
    guest: &mut [u8; PAGE_SIZE],
) -> Result<(), RestoreError> {
    let l = SharedInfoLayout::of(width);
    guest[l.vcpu_info()].copy_from_slice(&src[l.vcpu_info()]);
    guest[l.arch_range()].copy_from_slice(&src[l.arch_range()]);
    let mut info = SharedInfo::new(width, &mut guest[..]).map_err(|e| RestoreError::Refused {
        what: "SHARED_INFO",
        msg: e.to_string(),
        errno: libc::EINVAL,
    })?;
    info.set_frame_list_list(0);
    info.fill_evtchn_pending(0);
    for v in 0..SHARED_INFO_VCPUS {
        info.set_vcpu_pending_sel(v, 0);
    }
    info.fill_evtchn_mask(0xff);
    Ok(())
}

/// X86_PV_VCPU_MSRS's body (`xen_domctl_vcpu_msr_t`: u32 index, u32
/// reserved, u64 value), a multiple of 16 bytes, in the little-endian
/// order every x86 guest's state is kept in here.
fn parse_msrs(blob: &[u8]) -> Vec<MsrEntry> {
    Array::<MsrEntry>::new(blob, Endian::Little).to_vec()
}

/// A page-table problem as the error of PAGE_DATA.
fn table_error(t: PageType, e: PageTableError) -> RestoreError {
    let errno = match e {
        PageTableError::FrameOutsideGuest { .. } => libc::ERANGE,
        _ => libc::EINVAL,
    };
    RestoreError::Refused {
        what: "PAGE_DATA",
        msg: format!("{} page table: {e}", t.name()),
        errno,
    }
}

impl<H: Hypervisor> PageHooks for PvRestore<'_, H> {
    fn check_pfn(&self, pfn: u64) -> Result<(), RestoreError> {
        if !self.pfn_in_range(pfn) {
            return Err(RestoreError::Refused {
                what: "PAGE_DATA",
                msg: format!(
                    "pfn {pfn:#x} outside the domain maximum {}",
                    self.max_pfn.map_or_else(
                        || "(no X86_PV_P2M_FRAMES yet)".into(),
                        |m| format!("{m:#x}")
                    )
                ),
                errno: libc::ERANGE,
            });
        }
        Ok(())
    }

    fn large_extents(&self) -> bool {
        false
    }

    fn page_type(&mut self, pfn: u64, t: PageType) {
        self.p2m.set_type(pfn, t);
        if self.start_info_converted == Some(pfn) {
            self.start_info_converted = None;
        }
    }

    fn populated(&mut self, pfn: u64, frame: u64) {
        self.p2m.set_mfn(pfn, frame);
    }

    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        self.p2m.mfn(pfn)
    }

    fn needs_localise(&self, t: PageType) -> bool {
        table_level(t).is_some()
    }

    fn unpopulated_references(
        &self,
        t: PageType,
        page: &[u8; PAGE_SIZE],
        out: &mut Vec<u64>,
    ) -> Result<(), RestoreError> {
        let Some(level) = table_level(t) else {
            return Ok(());
        };
        let table = pv::read_table(page);
        // The sender strips Xen's own entries (Xen writes them itself when
        // it validates the table); a stream carrying them is not a
        // sender's. A 32-bit guest's L2 cannot be told apart here.
        if let Some(xen) = pv::xen_entries(self.width, level, &table, INVALID_MFN)
            .map_err(|e| table_error(t, e))?
        {
            if let Some(i) = xen.clone().find(|&i| table[i] != 0) {
                return Err(RestoreError::Refused {
                    what: "PAGE_DATA",
                    msg: format!(
                        "{} page table: L{level}[{i}] = {:#018x} is one of Xen's slots, which a stream leaves empty",
                        t.name(),
                        table[i]
                    ),
                    errno: libc::EINVAL,
                });
            }
        }
        let max_pfn = self.max_pfn.unwrap_or(0);
        for (i, &pte) in table.iter().enumerate() {
            if pte & pv::PTE_PRESENT == 0 {
                continue;
            }
            // Xen refuses PV superpages and senders refuse to save them:
            // say so here rather than as a failed set_vcpu_context.
            if level > 1 && pte & pv::PTE_PSE != 0 {
                return Err(table_error(
                    t,
                    PageTableError::Superpage {
                        level,
                        index: i,
                        pte,
                    },
                ));
            }
            let pfn = pv::pte_frame(pte);
            if pfn > max_pfn {
                return Err(RestoreError::Refused {
                    what: "PAGE_DATA",
                    msg: format!(
                        "{} page table: L{level}[{i}] = {pte:#018x} names pfn {pfn:#x}, beyond max_pfn {max_pfn:#x}",
                        t.name()
                    ),
                    errno: libc::ERANGE,
                });
            }
            if self.p2m.mfn(pfn) == INVALID_MFN {
                out.push(pfn);
            }
        }
        Ok(())
    }

    fn localise_page(
        &mut self,
        t: PageType,
        page: &mut [u8; PAGE_SIZE],
    ) -> Result<(), RestoreError> {
        let Some(level) = table_level(t) else {
            return Ok(());
        };
        pv::localise_table(level, page, |pfn| {
            let mfn = self.p2m.mfn(pfn);
            self.in_pseudophysmap(mfn).then_some(mfn)
        })
        .map_err(|e| table_error(t, e))
    }
}

impl<'a, H: Hypervisor> RestoreGuest<H> for PvRestore<'a, H> {
    fn name(&self) -> &'static str {
        "x86 PV"
    }

    fn domain_type(&self) -> DomainType {
        DomainType::X86Pv
    }

    fn page_hooks(&mut self) -> &mut dyn PageHooks {
        self
    }

    fn setup(&mut self, ctx: &mut RestoreCtx<'_, H>) -> Result<(), RestoreError> {
        self.query_width()?;
        let info = self.hv.domain_info(self.domid)?;
        self.shared_info_frame = info.shared_info_frame;
        self.vcpus = vec![VcpuRecords::default(); info.max_vcpu_id as usize + 1];
        // Before any populate: lookups later see the entries Xen writes.
        self.m2p = Some(self.hv.map_m2p()?);
        ctx.msg(
            Level::Detail,
            &format!(
                "d{}: {} PV guest, {} vcpus",
                self.domid,
                self.width,
                self.vcpus.len()
            ),
        );
        Ok(())
    }

    fn process_record(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
        rec: &Record<'_>,
    ) -> Result<(), RestoreError> {
        match rec {
            Record::X86PvInfo(info) => self.pv_info(info),
            Record::X86PvP2mFrames(p2m) => self.p2m_frames(ctx, p2m),
            Record::X86PvVcpu(v) => self.vcpu_record(ctx, v.kind, v.vcpu_id, v.context),
            Record::SharedInfo(page) => self.shared_info(page),
            Record::X86CpuidPolicy(a) => self.cpu_policy.cpuid(a),
            Record::X86MsrPolicy(a) => self.cpu_policy.msrs(a),
            Record::X86TscInfo(t) => x86::tsc_info(ctx, t),
            other => Err(unhandled("x86 PV", other)),
        }
    }

    fn static_data_complete(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
    ) -> Result<MissingStaticData, RestoreError> {
        self.cpu_policy.apply(ctx)
    }

    fn stream_complete(&mut self, ctx: &mut RestoreCtx<'_, H>) -> Result<(), RestoreError> {
        self.update_vcpus(ctx)?;
        self.pin_page_tables()?;
        self.update_guest_p2m()?;
        x86::seed_grant_table(ctx, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_info_keeps_vcpu_info_and_arch_clears_events_and_the_frame_list() {
        for width in [GuestWidth::Bits64, GuestWidth::Bits32] {
            let l = SharedInfoLayout::of(width);
            let src = [0x11u8; PAGE_SIZE];
            let mut guest = [0x22u8; PAGE_SIZE];
            rewrite_shared_info(width, &src, &mut guest).unwrap();
            let word = usize::from(width.bytes());
            for v in 0..SHARED_INFO_VCPUS {
                let sel = l.vcpu_pending_sel_of(v);
                assert!(
                    guest[sel..sel + word].iter().all(|&b| b == 0),
                    "{width} sel {v}"
                );
                assert_eq!(guest[v * 64], 0x11, "{width} vcpu_info {v} copied");
            }
            let pending = l.evtchn_pending..l.evtchn_pending + l.evtchn_bitmap_len;
            let mask = l.evtchn_mask..l.evtchn_mask + l.evtchn_bitmap_len;
            assert!(guest[pending].iter().all(|&b| b == 0));
            assert!(guest[mask.clone()].iter().all(|&b| b == 0xff));
            let info = SharedInfo::new(width, &guest[..]).unwrap();
            assert_eq!(info.frame_list_list(), 0);
            assert_ne!(info.max_pfn(), 0, "{width}: arch copied");
            assert_ne!(info.p2m_generation(), 0);
            // The wall clock between the arrays and arch is Xen's.
            assert_eq!(guest[mask.end], 0x22, "{width}: wall clock kept");
            assert_eq!(guest[l.arch_range().end], 0x22, "{width}: past arch kept");
        }
    }

    #[test]
    fn msr_records_decode_as_index_flags_value() {
        let mut b = Vec::new();
        b.extend_from_slice(&0xc000_0080u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
        b.extend_from_slice(&0x10u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(
            parse_msrs(&b),
            vec![
                MsrEntry {
                    idx: 0xc000_0080,
                    flags: 0,
                    val: 0x1234_5678_9abc_def0
                },
                MsrEntry {
                    idx: 0x10,
                    flags: 1,
                    val: 7
                }
            ]
        );
    }

    #[test]
    fn the_p2m_is_sparse_invalid_and_notab_until_told_and_lists_pins_in_pfn_order() {
        let mut p = P2m::default();
        assert_eq!(p.mfn(1 << 40), INVALID_MFN);
        assert_eq!(p.page_type(1 << 40), PageType::NoTab);
        p.set_mfn(5, 0x99);
        p.set_mfn(1 << 33, 0x77);
        p.set_type(1 << 33, PageType::L4TabPin);
        p.set_type(3, PageType::L1TabPin);
        p.set_type(4, PageType::L1Tab);
        assert_eq!(p.mfn(5), 0x99);
        assert_eq!(p.mfn(6), INVALID_MFN);
        assert_eq!(
            p.pinned(),
            vec![(3, PageType::L1TabPin), (1 << 33, PageType::L4TabPin)]
        );
        assert_eq!(p.leaves.len(), 2);
    }

    #[test]
    fn types_of_pfns_without_a_frame_make_no_p2m_leaf() {
        let mut p = P2m::default();
        // XTAB/BROKEN entries scattered over a huge max_pfn cost nothing.
        for k in 0..10_000u64 {
            p.set_type(k << 20, PageType::XTab);
        }
        assert!(p.leaves.is_empty());
        assert_eq!(p.page_type(1 << 20), PageType::NoTab);
        p.set_mfn(1 << 20, 0x42);
        p.set_type(1 << 20, PageType::XTab);
        assert_eq!(p.page_type(1 << 20), PageType::XTab);
        assert_eq!(p.leaves.len(), 1);
    }
}
