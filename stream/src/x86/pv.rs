//! x86 PV guest maths both engines share: the guest's width, page-table
//! entries, the rewriting of page tables between machine frames (in
//! memory) and pfns (in the stream), and cr3 values.
//!
//! A PV guest's page tables name machine frames (MFNs). A stream names pfns
//! instead, so that the guest can land on other frames: the saver
//! *normalises* each page-table page (every present entry's frame from MFN
//! to pfn, Xen's own slots cleared), the restorer *localises* it (pfn to
//! the MFN it populated). The two are mirror images; both are pure here,
//! over the caller's frame lookups, so they are tested without a
//! hypervisor. The rules follow libxenguest 4.17 (`normalise_pagetable` in
//! `xg_sr_save_x86_pv.c`, `x86_pv_localise_page` in
//! `xg_sr_restore_x86_pv.c`, `xg_sr_common_x86_pv.{c,h}`).

use std::fmt;
use std::ops::RangeInclusive;

use super::{PageType, PAGE_SHIFT, PAGE_SIZE};

/// Entries in a page-table page (8-byte entries at every level, PAE
/// included).
pub const PTES_PER_PAGE: usize = PAGE_SIZE / 8;

/// The frame bits of an entry: bits 12 to 51.
pub const PTE_FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;
/// `_PAGE_PRESENT`.
pub const PTE_PRESENT: u64 = 1 << 0;
/// `_PAGE_PSE`: a superpage at L2 and above (the PAT bit in an L1 entry).
pub const PTE_PSE: u64 = 1 << 7;

/// Start of Xen's part of a 64-bit guest's address space
/// (`HYPERVISOR_VIRT_START` for x86_64).
pub const XEN_VIRT_START_64: u64 = 0xffff_8000_0000_0000;
/// Last byte of Xen's part of a 64-bit guest's address space.
pub const XEN_VIRT_END_64: u64 = 0xffff_87ff_ffff_ffff;
/// Start of Xen's part of a 32-bit (PAE) guest's address space.
pub const XEN_VIRT_START_32: u64 = 0xf580_0000;
/// Last byte of Xen's part of a 32-bit guest's address space.
pub const XEN_VIRT_END_32: u64 = 0xffff_ffff;

/// Shift of an L4 index in a 64-bit virtual address.
const L4_SHIFT: u32 = 39;
/// Shift of an L2 index in a PAE virtual address.
const L2_SHIFT_PAE: u32 = 21;

/// Size of the basic vCPU context of a 64-bit PV guest
/// (`vcpu_guest_context_x86_64_t`), as X86_PV_VCPU_BASIC carries it.
pub const VCPU_CONTEXT_SIZE_64: usize = 5168;
/// Size of the basic vCPU context of a 32-bit PV guest
/// (`vcpu_guest_context_x86_32_t`).
pub const VCPU_CONTEXT_SIZE_32: usize = 2800;

/// The width of a PV guest, which fixes its page-table levels and the size
/// of its p2m entries and vCPU context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestWidth {
    /// 32-bit guest: 3-level PAE page tables, 4-byte p2m entries.
    Bits32,
    /// 64-bit guest: 4-level page tables, 8-byte p2m entries.
    Bits64,
}

impl GuestWidth {
    /// From X86_PV_INFO's `guest_width` and `pt_levels`; only the pairs Xen
    /// has (4 bytes with 3 levels, 8 bytes with 4) exist.
    pub fn from_pv_info(guest_width: u8, pt_levels: u8) -> Option<GuestWidth> {
        match (guest_width, pt_levels) {
            (4, 3) => Some(GuestWidth::Bits32),
            (8, 4) => Some(GuestWidth::Bits64),
            _ => None,
        }
    }

    /// From `XEN_DOMCTL_get_address_size` (bits) or `xc_domain_get_guest_width`
    /// (bytes times 8).
    pub fn from_bits(bits: u32) -> Option<GuestWidth> {
        match bits {
            32 => Some(GuestWidth::Bits32),
            64 => Some(GuestWidth::Bits64),
            _ => None,
        }
    }

    /// Width in bytes, as X86_PV_INFO's `guest_width` (4 or 8).
    pub fn bytes(self) -> u8 {
        match self {
            GuestWidth::Bits32 => 4,
            GuestWidth::Bits64 => 8,
        }
    }

    /// Page-table levels (3 or 4).
    pub fn levels(self) -> u8 {
        match self {
            GuestWidth::Bits32 => 3,
            GuestWidth::Bits64 => 4,
        }
    }

    /// Entries of the guest's p2m per page (1024 or 512).
    pub fn p2m_entries_per_page(self) -> u64 {
        (PAGE_SIZE / usize::from(self.bytes())) as u64
    }

    /// Frames of p2m needed for `p2m_size` pfns.
    pub fn p2m_frames(self, p2m_size: u64) -> u64 {
        p2m_size.div_ceil(self.p2m_entries_per_page())
    }

    /// Size of the basic vCPU context (X86_PV_VCPU_BASIC).
    pub fn vcpu_context_size(self) -> usize {
        match self {
            GuestWidth::Bits32 => VCPU_CONTEXT_SIZE_32,
            GuestWidth::Bits64 => VCPU_CONTEXT_SIZE_64,
        }
    }

    /// The frame a cr3 value names. A 32-bit guest's cr3 uses Xen's
    /// extended format (frame bits 20..31 rotated into cr3 bits 0..11, so
    /// that a 32-bit frame number, a 44-bit address, fits in 32 bits); a
    /// value over 32 bits names no frame.
    pub fn cr3_to_frame(self, cr3: u64) -> Option<u64> {
        match self {
            GuestWidth::Bits64 => Some(cr3 >> PAGE_SHIFT),
            GuestWidth::Bits32 if cr3 >> 32 != 0 => None,
            GuestWidth::Bits32 => Some(u64::from(((cr3 >> 12) | (cr3 << 20)) as u32)),
        }
    }

    /// The cr3 value that names `frame`; `None` where a 32-bit guest cannot
    /// name it (a frame number over 32 bits).
    pub fn frame_to_cr3(self, frame: u64) -> Option<u64> {
        match self {
            GuestWidth::Bits64 => frame.checked_mul(1 << PAGE_SHIFT),
            GuestWidth::Bits32 if frame >> 32 != 0 => None,
            GuestWidth::Bits32 => Some(u64::from(((frame << 12) | (frame >> 20)) as u32)),
        }
    }
}

impl fmt::Display for GuestWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", u32::from(self.bytes()) * 8)
    }
}

/// The frame an entry points at.
pub fn pte_frame(pte: u64) -> u64 {
    (pte & PTE_FRAME_MASK) >> PAGE_SHIFT
}

/// `pte` pointing at `frame` instead, its flags kept.
pub fn pte_with_frame(pte: u64, frame: u64) -> u64 {
    (pte & !PTE_FRAME_MASK) | ((frame << PAGE_SHIFT) & PTE_FRAME_MASK)
}

/// The page-table level of a page type (1 to 4), pinned or not; `None` for
/// pages that are not page tables.
pub fn table_level(t: PageType) -> Option<u8> {
    match t {
        PageType::L1Tab | PageType::L1TabPin => Some(1),
        PageType::L2Tab | PageType::L2TabPin => Some(2),
        PageType::L3Tab | PageType::L3TabPin => Some(3),
        PageType::L4Tab | PageType::L4TabPin => Some(4),
        _ => None,
    }
}

/// Why a page table cannot be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageTableError {
    /// A 32-bit guest has no L4 tables.
    L4In32BitGuest,
    /// A present entry above L1 maps a superpage, which PV migration
    /// cannot carry.
    Superpage {
        /// Level of the table (2 to 4).
        level: u8,
        /// Index of the entry.
        index: usize,
        /// The entry.
        pte: u64,
    },
    /// A present entry points at a frame outside the guest: an MFN not in
    /// its pseudo-physical map (saving), or a pfn with no frame (restoring).
    FrameOutsideGuest {
        /// Level of the table.
        level: u8,
        /// Index of the entry.
        index: usize,
        /// The frame the entry names.
        frame: u64,
    },
}

impl fmt::Display for PageTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageTableError::L4In32BitGuest => f.write_str("L4 page table in a 32-bit guest"),
            PageTableError::Superpage { level, index, pte } => {
                write!(
                    f,
                    "cannot migrate superpage (L{level}[{index}] = {pte:#018x})"
                )
            }
            PageTableError::FrameOutsideGuest {
                level,
                index,
                frame,
            } => write!(
                f,
                "L{level}[{index}] names frame {frame:#x}, which is not the guest's"
            ),
        }
    }
}

impl std::error::Error for PageTableError {}

/// The entries of a level-`level` table that are Xen's, not the guest's:
/// cleared on save, since Xen writes its own on the other side.
///
/// - 64-bit guests: the L4 slots of Xen's address range (256 to 271).
/// - 32-bit guests: L3 entries 4 to 511 (a PAE L3 has four); and in an L2,
///   the entries from Xen's range start to the end, but only where the
///   first of them maps the compat M2P (`compat_m2p_frame`: its first
///   frame), since most 32-bit L2s hold guest mappings there.
pub fn xen_entries(
    width: GuestWidth,
    level: u8,
    table: &[u64; PTES_PER_PAGE],
    compat_m2p_frame: u64,
) -> Result<Option<RangeInclusive<usize>>, PageTableError> {
    let index = |va: u64, shift: u32| ((va >> shift) & 511) as usize;
    Ok(match (width, level) {
        (GuestWidth::Bits64, 4) => {
            Some(index(XEN_VIRT_START_64, L4_SHIFT)..=index(XEN_VIRT_END_64, L4_SHIFT))
        }
        (GuestWidth::Bits64, _) => None,
        (GuestWidth::Bits32, 4) => return Err(PageTableError::L4In32BitGuest),
        (GuestWidth::Bits32, 3) => Some(4..=PTES_PER_PAGE - 1),
        (GuestWidth::Bits32, 2) => {
            let first = index(XEN_VIRT_START_32, L2_SHIFT_PAE);
            (pte_frame(table[first]) == compat_m2p_frame)
                .then(|| first..=index(XEN_VIRT_END_32, L2_SHIFT_PAE))
        }
        (GuestWidth::Bits32, _) => None,
    })
}

/// A page-table page as its 512 entries (little-endian, as x86 stores
/// them).
pub fn read_table(page: &[u8; PAGE_SIZE]) -> [u64; PTES_PER_PAGE] {
    let mut t = [0u64; PTES_PER_PAGE];
    for (e, b) in t.iter_mut().zip(page.chunks_exact(8)) {
        *e = u64::from_le_bytes(b.try_into().expect("chunks of 8"));
    }
    t
}

/// Writes `table` back into `page`.
pub fn write_table(table: &[u64; PTES_PER_PAGE], page: &mut [u8; PAGE_SIZE]) {
    for (e, b) in table.iter().zip(page.chunks_exact_mut(8)) {
        b.copy_from_slice(&e.to_le_bytes());
    }
}

/// Save side: rewrite the level-`level` table in `page` for the stream.
/// Xen's entries are cleared; every present entry's MFN becomes the pfn
/// `mfn_to_pfn` gives (`None`: the MFN is not in the guest's
/// pseudo-physical map). On error `page` is unchanged.
///
/// The caller decides what an error means: while the guest runs, a table
/// can be caught mid-update and is sent again after suspend (libxenguest's
/// EAGAIN); once it is paused, the save fails.
pub fn normalise_table(
    width: GuestWidth,
    level: u8,
    page: &mut [u8; PAGE_SIZE],
    compat_m2p_frame: u64,
    mut mfn_to_pfn: impl FnMut(u64) -> Option<u64>,
) -> Result<(), PageTableError> {
    let mut table = read_table(page);
    let xen = xen_entries(width, level, &table, compat_m2p_frame)?;
    for (i, pte) in table.iter_mut().enumerate() {
        if xen.as_ref().is_some_and(|r| r.contains(&i)) {
            *pte = 0;
        }
        if *pte & PTE_PRESENT == 0 {
            continue;
        }
        if level > 1 && *pte & PTE_PSE != 0 {
            return Err(PageTableError::Superpage {
                level,
                index: i,
                pte: *pte,
            });
        }
        let mfn = pte_frame(*pte);
        let Some(pfn) = mfn_to_pfn(mfn) else {
            return Err(PageTableError::FrameOutsideGuest {
                level,
                index: i,
                frame: mfn,
            });
        };
        *pte = pte_with_frame(*pte, pfn);
    }
    write_table(&table, page);
    Ok(())
}

/// Restore side, first half: the pfns the present entries of a table name,
/// so that the caller can populate those it has not yet (libxenguest
/// populates them before it localises the table).
pub fn referenced_pfns(page: &[u8; PAGE_SIZE]) -> impl Iterator<Item = u64> {
    read_table(page)
        .into_iter()
        .filter(|pte| pte & PTE_PRESENT != 0)
        .map(pte_frame)
}

/// Restore side: rewrite the level-`level` table in `page` for this host,
/// every present entry's pfn becoming the MFN `pfn_to_mfn` gives (`None`:
/// the pfn has no frame in the guest). On error `page` is unchanged.
pub fn localise_table(
    level: u8,
    page: &mut [u8; PAGE_SIZE],
    mut pfn_to_mfn: impl FnMut(u64) -> Option<u64>,
) -> Result<(), PageTableError> {
    let mut table = read_table(page);
    for (i, pte) in table.iter_mut().enumerate() {
        if *pte & PTE_PRESENT == 0 {
            continue;
        }
        let pfn = pte_frame(*pte);
        let Some(mfn) = pfn_to_mfn(pfn) else {
            return Err(PageTableError::FrameOutsideGuest {
                level,
                index: i,
                frame: pfn,
            });
        };
        *pte = pte_with_frame(*pte, mfn);
    }
    write_table(&table, page);
    Ok(())
}

impl GuestWidth {
    /// The guest's `unsigned long` at `off` in `page` (little-endian, 8 or
    /// 4 bytes). `off` is one of the layout offsets of this module, all
    /// inside the page.
    pub fn read_word(self, page: &[u8; PAGE_SIZE], off: usize) -> u64 {
        guest_word(page, off, usize::from(self.bytes()))
    }

    /// Store `value` as the guest's `unsigned long` at `off` (a 32-bit
    /// guest's keeps the low 32 bits, so callers check values that must
    /// fit).
    pub fn write_word(self, page: &mut [u8; PAGE_SIZE], off: usize, value: u64) {
        set_guest_word(page, off, usize::from(self.bytes()), value)
    }
}

/// The guest word of `word` bytes (8, or 4 for a 32-bit guest) at `off`.
fn guest_word(bytes: &[u8], off: usize, word: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..word].copy_from_slice(&bytes[off..off + word]);
    u64::from_le_bytes(b)
}

/// Store `value` as the guest word of `word` bytes at `off` (a 4-byte
/// word keeps the low 32 bits).
fn set_guest_word(bytes: &mut [u8], off: usize, word: usize, value: u64) {
    bytes[off..off + word].copy_from_slice(&value.to_le_bytes()[..word]);
}

/// The `uint32_t` at `off` in `page`.
pub fn read_u32(page: &[u8; PAGE_SIZE], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&page[off..off + 4]);
    u32::from_le_bytes(b)
}

/// Store the `uint32_t` `value` at `off` in `page`.
pub fn write_u32(page: &mut [u8; PAGE_SIZE], off: usize, value: u32) {
    page[off..off + 4].copy_from_slice(&value.to_le_bytes());
}

/// Where the fields restore rewrites sit in a PV guest's start_info page
/// (`start_info_x86_64_t` / `_x86_32_t`). `flags` and the event channels
/// are `uint32_t` at both widths ([`read_u32`]); the rest are the guest's
/// words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartInfoLayout {
    /// `nr_pages`.
    pub nr_pages: usize,
    /// `shared_info`: the machine address of shared_info.
    pub shared_info: usize,
    /// `flags` (`SIF_*`, 32 bits).
    pub flags: usize,
    /// `store_mfn` (a pfn while the guest is suspended).
    pub store_mfn: usize,
    /// `store_evtchn` (32 bits).
    pub store_evtchn: usize,
    /// `console.domU.mfn` (a pfn while the guest is suspended).
    pub console_mfn: usize,
    /// `console.domU.evtchn` (32 bits).
    pub console_evtchn: usize,
}

impl StartInfoLayout {
    /// The layout for a guest of `width`: after the 32-byte magic, each
    /// field at its type's alignment.
    pub fn of(width: GuestWidth) -> StartInfoLayout {
        match width {
            GuestWidth::Bits64 => StartInfoLayout {
                nr_pages: 32,
                shared_info: 40,
                flags: 48,
                store_mfn: 56,
                store_evtchn: 64,
                console_mfn: 72,
                console_evtchn: 80,
            },
            GuestWidth::Bits32 => StartInfoLayout {
                nr_pages: 32,
                shared_info: 36,
                flags: 40,
                store_mfn: 44,
                store_evtchn: 48,
                console_mfn: 52,
                console_evtchn: 56,
            },
        }
    }
}

/// `VGCF_online` in a vCPU context's `flags`: the vCPU is up.
pub const VGCF_ONLINE: u64 = 1 << 5;

/// Most GDT entries a PV guest may have (`FIRST_RESERVED_GDT_ENTRY`: the
/// entries above belong to Xen), 14 frames of 512.
pub const MAX_GDT_ENTRIES: u64 = 14 * 512;

/// GDT entries per frame.
const GDT_ENTRIES_PER_FRAME: u64 = 512;

/// Offsets of the fields the engines read and rewrite in a basic vCPU
/// context, by guest width. Every field is an `unsigned long` of the
/// guest, 8 or 4 bytes.
#[derive(Debug, Clone, Copy)]
struct VcpuLayout {
    word: usize,
    flags: usize,
    /// `user_regs.rdx` / `user_regs.edx`: the start_info frame at suspend.
    start_info: usize,
    gdt_frames: usize,
    gdt_ents: usize,
    ctrlreg: usize,
}

impl VcpuLayout {
    fn of(width: GuestWidth) -> VcpuLayout {
        match width {
            // 512 bytes of FPU state, flags, then `cpu_user_regs` (200
            // bytes, rdx the 13th word), 256 16-byte trap entries, LDT
            // base and count, then the GDT frames.
            GuestWidth::Bits64 => VcpuLayout {
                word: 8,
                flags: 512,
                start_info: 616,
                gdt_frames: 4832,
                gdt_ents: 4960,
                ctrlreg: 4984,
            },
            // The same fields with 4-byte words: 68-byte registers (edx
            // the 3rd word), 8-byte trap entries.
            GuestWidth::Bits32 => VcpuLayout {
                word: 4,
                flags: 512,
                start_info: 524,
                gdt_frames: 2640,
                gdt_ents: 2704,
                ctrlreg: 2716,
            },
        }
    }
}

/// A basic vCPU context of a PV guest (`vcpu_guest_context_x86_64_t` or
/// `_x86_32_t`, what `xc_vcpu_getcontext` returns and X86_PV_VCPU_BASIC
/// carries after its 8-byte header), with the fields the engines convert
/// between frames and pfns read and written at their offsets.
///
/// Wraps the raw bytes (`B` is `&[u8]`, `&mut [u8]` or `Vec<u8>`), whose
/// length [`VcpuContext::new`] checks against the width.
#[derive(Debug, Clone)]
pub struct VcpuContext<B> {
    width: GuestWidth,
    layout: VcpuLayout,
    bytes: B,
}

/// A vCPU context of the wrong size for its guest's width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuContextSizeError {
    /// The guest's width.
    pub width: GuestWidth,
    /// The size given.
    pub len: usize,
}

impl fmt::Display for VcpuContextSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} PV vCPU context is {} bytes, not {}",
            self.width,
            self.width.vcpu_context_size(),
            self.len
        )
    }
}

impl std::error::Error for VcpuContextSizeError {}

impl<B: AsRef<[u8]>> VcpuContext<B> {
    /// View `bytes` as the context of a guest of `width`; they must be
    /// exactly [`GuestWidth::vcpu_context_size`] long.
    pub fn new(width: GuestWidth, bytes: B) -> Result<Self, VcpuContextSizeError> {
        let len = bytes.as_ref().len();
        if len != width.vcpu_context_size() {
            return Err(VcpuContextSizeError { width, len });
        }
        Ok(VcpuContext {
            width,
            layout: VcpuLayout::of(width),
            bytes,
        })
    }

    /// The guest's width.
    pub fn width(&self) -> GuestWidth {
        self.width
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> B {
        self.bytes
    }

    fn word(&self, off: usize) -> u64 {
        guest_word(self.bytes.as_ref(), off, self.layout.word)
    }

    /// `flags` (`VGCF_*`).
    pub fn flags(&self) -> u64 {
        self.word(self.layout.flags)
    }

    /// `user_regs.rdx` (`edx`): at suspend, vCPU 0's holds the frame of
    /// the guest's start_info page (the argument of its suspend hypercall).
    pub fn start_info_reg(&self) -> u64 {
        self.word(self.layout.start_info)
    }

    /// `gdt_ents`: the number of GDT entries.
    pub fn gdt_ents(&self) -> u64 {
        self.word(self.layout.gdt_ents)
    }

    /// Frames the GDT occupies (`gdt_ents` rounded up to frames of 512
    /// entries), or `None` when `gdt_ents` is over [`MAX_GDT_ENTRIES`].
    pub fn gdt_frame_count(&self) -> Option<usize> {
        let n = self.gdt_ents();
        (n <= MAX_GDT_ENTRIES).then(|| n.div_ceil(GDT_ENTRIES_PER_FRAME) as usize)
    }

    /// `gdt_frames[i]`, `i < 16`.
    pub fn gdt_frame(&self, i: usize) -> u64 {
        assert!(i < 16, "a vCPU context has 16 GDT frames");
        self.word(self.layout.gdt_frames + i * self.layout.word)
    }

    /// `ctrlreg[n]`, `n < 8` (cr3 is 3; a 64-bit guest keeps its user page
    /// table in 1).
    pub fn ctrlreg(&self, n: usize) -> u64 {
        assert!(n < 8, "a vCPU context has 8 control registers");
        self.word(self.layout.ctrlreg + n * self.layout.word)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> VcpuContext<B> {
    /// Store `value` in the field at `off`; a 32-bit guest's field keeps
    /// the low 32 bits, so callers check values that must fit.
    fn set_word(&mut self, off: usize, value: u64) {
        set_guest_word(self.bytes.as_mut(), off, self.layout.word, value)
    }

    /// Set `flags`.
    pub fn set_flags(&mut self, value: u64) {
        self.set_word(self.layout.flags, value)
    }

    /// Set `user_regs.rdx` (`edx`).
    pub fn set_start_info_reg(&mut self, value: u64) {
        self.set_word(self.layout.start_info, value)
    }

    /// Set `gdt_frames[i]`, `i < 16`.
    pub fn set_gdt_frame(&mut self, i: usize, value: u64) {
        assert!(i < 16, "a vCPU context has 16 GDT frames");
        self.set_word(self.layout.gdt_frames + i * self.layout.word, value)
    }

    /// Set `ctrlreg[n]`, `n < 8`.
    pub fn set_ctrlreg(&mut self, n: usize, value: u64) {
        assert!(n < 8, "a vCPU context has 8 control registers");
        self.set_word(self.layout.ctrlreg + n * self.layout.word, value)
    }
}

/// Size of a 64-bit guest's `shared_info` (`shared_info_x86_64_t`); the
/// rest of its page is unused.
pub const SHARED_INFO_SIZE_64: usize = 3136;
/// Size of a 32-bit guest's `shared_info` (`shared_info_x86_32_t`).
pub const SHARED_INFO_SIZE_32: usize = 2344;

/// `vcpu_info` slots in `shared_info` (`XEN_LEGACY_MAX_VCPUS` on x86).
pub const SHARED_INFO_VCPUS: usize = 32;
/// Size of one `vcpu_info`, at both widths.
const VCPU_INFO_SIZE: usize = 64;

/// Offsets of the parts of `shared_info` the engines read and rewrite, by
/// guest width: the `vcpu_info` array, the event-channel bitmaps (one bit
/// per channel, in guest words: 64 of 8 bytes or 32 of 4), and
/// `arch_shared_info`, whose fields are guest words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedInfoLayout {
    /// Bytes in a guest word (8 or 4).
    pub word: usize,
    /// `evtchn_pending_sel` inside each `vcpu_info` (after two flag bytes,
    /// aligned to a word).
    pub vcpu_pending_sel: usize,
    /// `evtchn_pending[]`.
    pub evtchn_pending: usize,
    /// `evtchn_mask[]`.
    pub evtchn_mask: usize,
    /// Bytes in each of the two bitmaps.
    pub evtchn_bitmap_len: usize,
    /// `arch` (`arch_shared_info`).
    pub arch: usize,
    /// Bytes of `arch`.
    pub arch_len: usize,
    /// The whole structure.
    pub size: usize,
}

impl SharedInfoLayout {
    /// The layout of a guest of `width`.
    pub const fn of(width: GuestWidth) -> SharedInfoLayout {
        match width {
            // 32 x 64-byte vcpu_info, 64 x 8-byte pending and mask words,
            // wc_version/wc_sec/wc_nsec/wc_sec_hi, then arch (6 words).
            GuestWidth::Bits64 => SharedInfoLayout {
                word: 8,
                vcpu_pending_sel: 8,
                evtchn_pending: 2048,
                evtchn_mask: 2560,
                evtchn_bitmap_len: 512,
                arch: 3088,
                arch_len: 48,
                size: SHARED_INFO_SIZE_64,
            },
            // 32 x 4-byte words per bitmap, no wc_sec_hi before arch (it
            // is arch's 7th word instead).
            GuestWidth::Bits32 => SharedInfoLayout {
                word: 4,
                vcpu_pending_sel: 4,
                evtchn_pending: 2048,
                evtchn_mask: 2176,
                evtchn_bitmap_len: 128,
                arch: 2316,
                arch_len: 28,
                size: SHARED_INFO_SIZE_32,
            },
        }
    }

    /// Offset of `vcpu_info[vcpu].evtchn_pending_sel`, `vcpu < 32`.
    pub fn vcpu_pending_sel_of(&self, vcpu: usize) -> usize {
        assert!(
            vcpu < SHARED_INFO_VCPUS,
            "shared_info has 32 vcpu_info slots"
        );
        vcpu * VCPU_INFO_SIZE + self.vcpu_pending_sel
    }

    /// Byte range of the `vcpu_info` array.
    pub fn vcpu_info(&self) -> std::ops::Range<usize> {
        0..SHARED_INFO_VCPUS * VCPU_INFO_SIZE
    }

    /// Byte range of `arch`.
    pub fn arch_range(&self) -> std::ops::Range<usize> {
        self.arch..self.arch + self.arch_len
    }

    fn arch_field(&self, index: usize) -> usize {
        self.arch + index * self.word
    }
}

/// A PV guest's `shared_info` page, as the save maps it and the
/// SHARED_INFO record carries it, with the `arch` fields read and written
/// at the offsets of the guest's width. Wraps at least
/// [`SharedInfoLayout::size`] bytes (a page, usually).
#[derive(Debug, Clone)]
pub struct SharedInfo<B> {
    layout: SharedInfoLayout,
    bytes: B,
}

/// A `shared_info` buffer too short for its guest's width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedInfoSizeError {
    /// The guest's width.
    pub width: GuestWidth,
    /// The size given.
    pub len: usize,
}

impl fmt::Display for SharedInfoSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} guest's shared_info is {} bytes, {} given",
            self.width,
            SharedInfoLayout::of(self.width).size,
            self.len
        )
    }
}

impl std::error::Error for SharedInfoSizeError {}

impl<B: AsRef<[u8]>> SharedInfo<B> {
    /// View `bytes` as the `shared_info` of a guest of `width`.
    pub fn new(width: GuestWidth, bytes: B) -> Result<Self, SharedInfoSizeError> {
        let layout = SharedInfoLayout::of(width);
        let len = bytes.as_ref().len();
        if len < layout.size {
            return Err(SharedInfoSizeError { width, len });
        }
        Ok(SharedInfo { layout, bytes })
    }

    /// The layout in use.
    pub fn layout(&self) -> &SharedInfoLayout {
        &self.layout
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> B {
        self.bytes
    }

    fn word(&self, off: usize) -> u64 {
        guest_word(self.bytes.as_ref(), off, self.layout.word)
    }

    /// `arch.max_pfn`: the number of pfns the guest's p2m covers (despite
    /// the name, one more than the highest pfn).
    pub fn max_pfn(&self) -> u64 {
        self.word(self.layout.arch_field(0))
    }

    /// `arch.pfn_to_mfn_frame_list_list`: the MFN of the top of the p2m
    /// tree (0: not set up).
    pub fn frame_list_list(&self) -> u64 {
        self.word(self.layout.arch_field(1))
    }

    /// `arch.p2m_cr3`: the root page table (in cr3 format) under which
    /// `p2m_vaddr` maps the linear p2m; 0 when the guest has none.
    pub fn p2m_cr3(&self) -> u64 {
        self.word(self.layout.arch_field(3))
    }

    /// `arch.p2m_vaddr`: the guest virtual address of the linear p2m.
    pub fn p2m_vaddr(&self) -> u64 {
        self.word(self.layout.arch_field(4))
    }

    /// `arch.p2m_generation`: bumped by the guest before and after every
    /// change to the mappings of its linear p2m.
    pub fn p2m_generation(&self) -> u64 {
        self.word(self.layout.arch_field(5))
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> SharedInfo<B> {
    fn set_word(&mut self, off: usize, value: u64) {
        set_guest_word(self.bytes.as_mut(), off, self.layout.word, value)
    }

    /// Set `arch.pfn_to_mfn_frame_list_list` (a 32-bit guest keeps the low
    /// 32 bits).
    pub fn set_frame_list_list(&mut self, mfn: u64) {
        self.set_word(self.layout.arch_field(1), mfn)
    }

    /// Set `vcpu_info[vcpu].evtchn_pending_sel`, `vcpu < 32`.
    pub fn set_vcpu_pending_sel(&mut self, vcpu: usize, value: u64) {
        let off = self.layout.vcpu_pending_sel_of(vcpu);
        self.set_word(off, value)
    }

    /// Fill `evtchn_pending[]` with `byte`.
    pub fn fill_evtchn_pending(&mut self, byte: u8) {
        let l = self.layout;
        self.bytes.as_mut()[l.evtchn_pending..l.evtchn_pending + l.evtchn_bitmap_len].fill(byte);
    }

    /// Fill `evtchn_mask[]` with `byte`.
    pub fn fill_evtchn_mask(&mut self, byte: u8) {
        let l = self.layout;
        self.bytes.as_mut()[l.evtchn_mask..l.evtchn_mask + l.evtchn_bitmap_len].fill(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn page_of(table: &[u64; PTES_PER_PAGE]) -> [u8; PAGE_SIZE] {
        let mut p = [0u8; PAGE_SIZE];
        write_table(table, &mut p);
        p
    }

    #[test]
    fn widths_exist_only_as_xen_pairs_them() {
        assert_eq!(GuestWidth::from_pv_info(8, 4), Some(GuestWidth::Bits64));
        assert_eq!(GuestWidth::from_pv_info(4, 3), Some(GuestWidth::Bits32));
        for (w, l) in [(8, 3), (4, 4), (2, 2), (0, 0), (16, 5)] {
            assert_eq!(GuestWidth::from_pv_info(w, l), None, "({w}, {l})");
        }
        assert_eq!(GuestWidth::Bits32.p2m_entries_per_page(), 1024);
        assert_eq!(GuestWidth::Bits64.p2m_entries_per_page(), 512);
        assert_eq!(GuestWidth::Bits64.p2m_frames(513), 2);
        assert_eq!(GuestWidth::Bits32.p2m_frames(1024), 1);
        assert_eq!(GuestWidth::Bits64.vcpu_context_size(), 5168);
        assert_eq!(GuestWidth::Bits32.vcpu_context_size(), 2800);
        assert_eq!(GuestWidth::Bits32.to_string(), "32-bit");
        for w in [GuestWidth::Bits32, GuestWidth::Bits64] {
            assert_eq!(crate::X86PvInfo::new(w).width(), Some(w));
            assert_eq!(GuestWidth::from_bits(u32::from(w.bytes()) * 8), Some(w));
        }
    }

    #[test]
    fn xen_slots_are_256_to_271_of_a_64_bit_l4_only() {
        let t = [0u64; PTES_PER_PAGE];
        assert_eq!(
            xen_entries(GuestWidth::Bits64, 4, &t, 0),
            Ok(Some(256..=271))
        );
        for level in 1..=3 {
            assert_eq!(xen_entries(GuestWidth::Bits64, level, &t, 0), Ok(None));
        }
    }

    #[test]
    fn a_32_bit_guest_has_xen_entries_in_l3_and_in_l2s_mapping_the_compat_m2p() {
        let mut t = [0u64; PTES_PER_PAGE];
        assert_eq!(xen_entries(GuestWidth::Bits32, 3, &t, 7), Ok(Some(4..=511)));
        assert_eq!(xen_entries(GuestWidth::Bits32, 2, &t, 7), Ok(None));
        t[428] = pte_with_frame(PTE_PRESENT, 7);
        assert_eq!(
            xen_entries(GuestWidth::Bits32, 2, &t, 7),
            Ok(Some(428..=511))
        );
        assert_eq!(
            xen_entries(GuestWidth::Bits32, 4, &t, 7),
            Err(PageTableError::L4In32BitGuest)
        );
    }

    #[test]
    fn normalising_clears_xen_slots_and_rewrites_present_frames_only() {
        let mut t = [0u64; PTES_PER_PAGE];
        t[0] = pte_with_frame(0x63, 0x1000); // present, flags kept
        t[1] = pte_with_frame(0x62, 0x2000); // not present: left alone
        t[256] = pte_with_frame(0x63, 0x3000); // Xen's slot
        t[300] = pte_with_frame(0x8000_0000_0000_0027, 0x4000); // NX kept
        let mut page = page_of(&t);
        normalise_table(GuestWidth::Bits64, 4, &mut page, 0, |mfn| Some(mfn - 0xf00)).unwrap();
        let n = read_table(&page);
        assert_eq!(n[0], pte_with_frame(0x63, 0x100));
        assert_eq!(n[1], t[1]);
        assert_eq!(n[256], 0);
        assert_eq!(n[300], pte_with_frame(0x8000_0000_0000_0027, 0x3100));
    }

    #[test]
    fn superpages_are_refused_above_l1_and_the_pat_bit_is_kept_in_l1() {
        let mut t = [0u64; PTES_PER_PAGE];
        t[9] = pte_with_frame(PTE_PRESENT | PTE_PSE, 5);
        let mut page = page_of(&t);
        let before = page;
        assert_eq!(
            normalise_table(GuestWidth::Bits64, 2, &mut page, 0, Some),
            Err(PageTableError::Superpage {
                level: 2,
                index: 9,
                pte: t[9]
            })
        );
        assert_eq!(page, before, "unchanged on error");
        normalise_table(GuestWidth::Bits64, 1, &mut page, 0, |m| Some(m + 1)).unwrap();
        assert_eq!(
            read_table(&page)[9],
            pte_with_frame(PTE_PRESENT | PTE_PSE, 6)
        );
    }

    #[test]
    fn a_frame_outside_the_guest_is_named_with_its_entry() {
        let mut t = [0u64; PTES_PER_PAGE];
        t[3] = pte_with_frame(PTE_PRESENT, 0x99);
        let mut page = page_of(&t);
        let e = normalise_table(GuestWidth::Bits32, 1, &mut page, 0, |_| None).unwrap_err();
        assert_eq!(
            e,
            PageTableError::FrameOutsideGuest {
                level: 1,
                index: 3,
                frame: 0x99
            }
        );
        assert_eq!(
            e.to_string(),
            "L1[3] names frame 0x99, which is not the guest's"
        );
        assert!(localise_table(1, &mut page, |_| None).is_err());
    }

    #[test]
    fn cr3_round_trips_and_32_bit_guests_use_the_extended_format() {
        let w = GuestWidth::Bits32;
        // Frame bits 20..31 go into cr3 bits 0..11.
        assert_eq!(w.frame_to_cr3(0x1234_5678), Some(0x4567_8123));
        assert_eq!(w.cr3_to_frame(0x4567_8123), Some(0x1234_5678));
        assert_eq!(w.frame_to_cr3(1 << 32), None);
        assert_eq!(w.cr3_to_frame(1 << 32), None);
        assert_eq!(GuestWidth::Bits64.frame_to_cr3(0x1234), Some(0x123_4000));
        assert_eq!(GuestWidth::Bits64.cr3_to_frame(0x123_4000), Some(0x1234));
    }

    proptest! {
        #[test]
        fn localising_undoes_normalising(
            entries in proptest::collection::vec((any::<u64>(), 0u64..1 << 20), PTES_PER_PAGE),
            offset in 1u64..1 << 30,
            level in 1u8..=3,
        ) {
            // A guest whose pfn p lives at MFN p + offset; present entries
            // without PSE (refused above L1), outside Xen's slots.
            let mut t = [0u64; PTES_PER_PAGE];
            for (e, (flags, pfn)) in t.iter_mut().zip(&entries) {
                let flags = flags & !PTE_FRAME_MASK & !PTE_PSE;
                *e = pte_with_frame(flags, pfn + offset);
            }
            let original = page_of(&t);
            let mut page = original;
            normalise_table(GuestWidth::Bits64, level, &mut page, 0, |m| m.checked_sub(offset))
                .unwrap();
            for (pfn, pte) in referenced_pfns(&page).zip(read_table(&page).iter().filter(|p| *p & PTE_PRESENT != 0)) {
                prop_assert_eq!(pfn, pte_frame(*pte));
                prop_assert!(pfn < 1 << 20);
            }
            localise_table(level, &mut page, |p| Some(p + offset)).unwrap();
            prop_assert_eq!(page, original);
        }

        #[test]
        fn cr3_of_any_32_bit_frame_round_trips(frame in 0u64..1 << 32) {
            let w = GuestWidth::Bits32;
            let cr3 = w.frame_to_cr3(frame).unwrap();
            prop_assert!(cr3 >> 32 == 0);
            prop_assert_eq!(w.cr3_to_frame(cr3), Some(frame));
        }
    }

    #[test]
    fn vcpu_context_fields_sit_at_the_xen_offsets_for_both_widths() {
        let mut raw = vec![0u8; VCPU_CONTEXT_SIZE_64];
        raw[616..624].copy_from_slice(&0x1234_5678_9abcu64.to_le_bytes());
        raw[4960..4968].copy_from_slice(&513u64.to_le_bytes());
        raw[4984 + 3 * 8..4984 + 4 * 8].copy_from_slice(&(0x42u64 << 12).to_le_bytes());
        let mut c = VcpuContext::new(GuestWidth::Bits64, raw).unwrap();
        assert_eq!(c.start_info_reg(), 0x1234_5678_9abc);
        assert_eq!(c.gdt_ents(), 513);
        assert_eq!(c.gdt_frame_count(), Some(2));
        assert_eq!(c.ctrlreg(3), 0x42 << 12);
        c.set_gdt_frame(1, 7);
        c.set_flags(VGCF_ONLINE);
        let raw = c.into_inner();
        assert_eq!(u64::from_le_bytes(raw[4840..4848].try_into().unwrap()), 7);
        assert_eq!(
            u64::from_le_bytes(raw[512..520].try_into().unwrap()),
            VGCF_ONLINE
        );

        let mut raw = vec![0u8; VCPU_CONTEXT_SIZE_32];
        raw[524..528].copy_from_slice(&0x9abcu32.to_le_bytes());
        raw[2704..2708].copy_from_slice(&7168u32.to_le_bytes());
        let mut c = VcpuContext::new(GuestWidth::Bits32, &mut raw[..]).unwrap();
        assert_eq!(c.start_info_reg(), 0x9abc);
        assert_eq!(c.gdt_frame_count(), Some(14));
        c.set_ctrlreg(3, 0xdead_beef_1234);
        c.set_gdt_frame(15, 3);
        assert_eq!(
            u32::from_le_bytes(raw[2716 + 12..2716 + 16].try_into().unwrap()),
            0xbeef_1234
        );
        assert_eq!(
            u32::from_le_bytes(raw[2640 + 60..2640 + 64].try_into().unwrap()),
            3
        );
    }

    #[test]
    fn start_info_words_follow_the_guest_width() {
        let mut page = [0u8; PAGE_SIZE];
        let l = StartInfoLayout::of(GuestWidth::Bits32);
        GuestWidth::Bits32.write_word(&mut page, l.store_mfn, 0x1_2345_6789);
        assert_eq!(
            GuestWidth::Bits32.read_word(&page, l.store_mfn),
            0x2345_6789
        );
        assert_eq!(read_u32(&page, 44), 0x2345_6789);
        assert_eq!(page[48], 0, "the next field is untouched");
        let l = StartInfoLayout::of(GuestWidth::Bits64);
        GuestWidth::Bits64.write_word(&mut page, l.console_mfn, 0x1_2345_6789);
        assert_eq!(GuestWidth::Bits64.read_word(&page, 72), 0x1_2345_6789);
        write_u32(&mut page, l.console_evtchn, 9);
        assert_eq!(read_u32(&page, 80), 9);
    }

    #[test]
    fn vcpu_context_of_the_wrong_size_or_with_too_many_gdt_entries_is_refused() {
        let e = VcpuContext::new(GuestWidth::Bits32, vec![0u8; VCPU_CONTEXT_SIZE_64]).unwrap_err();
        assert_eq!(e.len, VCPU_CONTEXT_SIZE_64);
        assert!(e.to_string().contains("2800"));
        let mut raw = vec![0u8; VCPU_CONTEXT_SIZE_64];
        raw[4960..4968].copy_from_slice(&(MAX_GDT_ENTRIES + 1).to_le_bytes());
        let c = VcpuContext::new(GuestWidth::Bits64, &raw[..]).unwrap();
        assert_eq!(c.gdt_frame_count(), None);
    }
    #[test]
    fn shared_info_arch_fields_sit_at_the_xen_offsets_for_both_widths() {
        // x86_64: arch at 3088, six 8-byte words.
        let mut page = vec![0u8; PAGE_SIZE];
        for (i, v) in [0x4_0000u64, 0x1234, 7, 0x5_6000, 0xffff_c900_0000_0000, 42]
            .iter()
            .enumerate()
        {
            page[3088 + 8 * i..3096 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let s = SharedInfo::new(GuestWidth::Bits64, &page[..]).unwrap();
        assert_eq!(s.max_pfn(), 0x4_0000);
        assert_eq!(s.frame_list_list(), 0x1234);
        assert_eq!(s.p2m_cr3(), 0x5_6000);
        assert_eq!(s.p2m_vaddr(), 0xffff_c900_0000_0000);
        assert_eq!(s.p2m_generation(), 42);
        assert_eq!(s.layout().arch_range(), 3088..3136);

        // x86_32: arch at 2316, 4-byte words; the word after arch's six is
        // wc_sec_hi and is not read as any of them.
        let mut page = vec![0u8; PAGE_SIZE];
        for (i, v) in [0x8000u32, 0x99, 0, 0x123, 0xc100_0000, 3, 0xdead]
            .iter()
            .enumerate()
        {
            page[2316 + 4 * i..2320 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let mut s = SharedInfo::new(GuestWidth::Bits32, &mut page[..]).unwrap();
        assert_eq!(s.max_pfn(), 0x8000);
        assert_eq!(s.frame_list_list(), 0x99);
        assert_eq!(s.p2m_cr3(), 0x123);
        assert_eq!(s.p2m_vaddr(), 0xc100_0000);
        assert_eq!(s.p2m_generation(), 3);
        assert_eq!(s.layout().arch_range(), 2316..2344);
        s.set_frame_list_list(0x1_0000_0042);
        s.set_vcpu_pending_sel(1, 0xffff_ffff);
        s.fill_evtchn_mask(0xff);
        assert_eq!(s.frame_list_list(), 0x42, "a 32-bit field keeps 32 bits");
        assert_eq!(&page[64 + 4..64 + 8], &[0xff; 4]);
        assert!(page[2176..2304].iter().all(|&b| b == 0xff));
        assert_eq!(page[2304], 0, "the mask ends where wc_version starts");
        assert_eq!(page[2175], 0, "the pending bitmap is left alone");
    }

    #[test]
    fn shared_info_sizes_match_xens_and_short_buffers_are_refused() {
        assert_eq!(SharedInfoLayout::of(GuestWidth::Bits64).size, 3136);
        assert_eq!(SharedInfoLayout::of(GuestWidth::Bits32).size, 2344);
        for w in [GuestWidth::Bits32, GuestWidth::Bits64] {
            let l = SharedInfoLayout::of(w);
            assert_eq!(l.arch + l.arch_len, l.size);
            assert_eq!(
                l.evtchn_mask + l.evtchn_bitmap_len + 12 + (l.word == 8) as usize * 4,
                l.arch
            );
            assert_eq!(
                l.evtchn_bitmap_len,
                l.word * l.word * 8,
                "one bit per channel, word^2*8 channels"
            );
        }
        let e = SharedInfo::new(GuestWidth::Bits64, vec![0u8; 3135]).unwrap_err();
        assert_eq!(e.len, 3135);
        assert!(e.to_string().contains("3136"));
        assert!(SharedInfo::new(GuestWidth::Bits32, vec![0u8; 2344]).is_ok());
    }
}
