//! Xen's x86 values, defined once for the codec, the hypervisor layer and
//! the engines: page size, page types, CPUID leaves, MSR entries and TSC
//! information; and in [`pv`], the PV guest maths both engines share (guest
//! width, page-table entries, normalising and localising page tables, cr3).
//!
//! A leaf module: it depends on nothing else of the crate. Layouts follow
//! Xen's public headers (`xen_cpuid_leaf_t`, `xen_msr_entry_t`,
//! `XEN_DOMCTL_PFINFO_*`, `XEN_DOMCTL_{get,set}tscinfo`); the wire encoding
//! of each lives with the codec that carries it.

pub mod pv;

/// Size of a guest page (x86: 4 KiB; every stream has `page_shift` 12).
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`], as a stream's domain header and Xen's
/// `XC_PAGE_SHIFT` give it.
pub const PAGE_SHIFT: u32 = 12;

/// The raw `XEN_DOMCTL_PFINFO_*` encoding of a page type: what
/// `XEN_DOMCTL_getpageframeinfo3` (`xc_get_pfn_type_batch`) returns per
/// frame, the type in bits 28-31 of a `u32`. [`PageType`] is the typed form;
/// the functions here answer for raw values, so an array of them can be
/// tested in place.
pub mod pfinfo {
    use super::PageType;

    /// Shift of the type field.
    pub const LTAB_SHIFT: u32 = 28;
    /// Mask of the whole type field.
    pub const LTAB_MASK: u32 = 0xf << LTAB_SHIFT;
    /// Mask of the page-table level (L1..L4) within the type field.
    pub const LTABTYPE_MASK: u32 = 0x7 << LTAB_SHIFT;
    /// "Pinned" flag, ORed into L1..L4.
    pub const LPINTAB: u32 = 1 << 31;
    /// Ordinary page, not a page table.
    pub const NOTAB: u32 = PageType::NoTab.domctl_value();
    /// L1 page table.
    pub const L1TAB: u32 = PageType::L1Tab.domctl_value();
    /// L2 page table.
    pub const L2TAB: u32 = PageType::L2Tab.domctl_value();
    /// L3 page table.
    pub const L3TAB: u32 = PageType::L3Tab.domctl_value();
    /// L4 page table.
    pub const L4TAB: u32 = PageType::L4Tab.domctl_value();
    /// Broken page (machine check); carries no data.
    pub const BROKEN: u32 = PageType::Broken.domctl_value();
    /// Allocate-only; carries no data.
    pub const XALLOC: u32 = PageType::XAlloc.domctl_value();
    /// Invalid frame or hole; carries no data.
    pub const XTAB: u32 = PageType::XTab.domctl_value();

    /// Whether a page of raw type `t` is followed by 4096 bytes of data in
    /// a PAGE_DATA record: NOTAB and L1..L4, pinned or not.
    pub fn has_data(t: u32) -> bool {
        PageType::from_domctl_value(t).is_some_and(PageType::has_data)
    }

    /// Whether `t` is a type Xen may return or a stream may carry
    /// (libxenguest's `is_known_page_type`).
    pub fn is_known(t: u32) -> bool {
        PageType::from_domctl_value(t).is_some()
    }

    /// Whether the restorer must populate a frame of raw type `t` (data
    /// pages and XALLOC).
    pub fn needs_populate(t: u32) -> bool {
        PageType::from_domctl_value(t).is_some_and(PageType::needs_populate)
    }
}

/// `XEN_DOMCTL_PFINFO_*` page type, as PAGE_DATA carries it (bits 60-63 of
/// an entry) and as `XEN_DOMCTL_getpageframeinfo3` reports it (bits 28-31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageType {
    /// 0x0: normal page.
    NoTab,
    /// 0x1: L1 page table.
    L1Tab,
    /// 0x2: L2 page table.
    L2Tab,
    /// 0x3: L3 page table.
    L3Tab,
    /// 0x4: L4 page table.
    L4Tab,
    /// 0x9: pinned L1 page table.
    L1TabPin,
    /// 0xA: pinned L2 page table.
    L2TabPin,
    /// 0xB: pinned L3 page table.
    L3TabPin,
    /// 0xC: pinned L4 page table.
    L4TabPin,
    /// 0xD: broken page, no data.
    Broken,
    /// 0xE: allocate only, no data.
    XAlloc,
    /// 0xF: invalid page (e.g. ballooned out during live migration), no data.
    XTab,
}

impl PageType {
    /// Every valid type, in value order.
    pub const ALL: [PageType; 12] = [
        PageType::NoTab,
        PageType::L1Tab,
        PageType::L2Tab,
        PageType::L3Tab,
        PageType::L4Tab,
        PageType::L1TabPin,
        PageType::L2TabPin,
        PageType::L3TabPin,
        PageType::L4TabPin,
        PageType::Broken,
        PageType::XAlloc,
        PageType::XTab,
    ];

    /// The 4-bit value (as in bits 60-63 of the entry).
    pub const fn bits(self) -> u8 {
        match self {
            PageType::NoTab => 0x0,
            PageType::L1Tab => 0x1,
            PageType::L2Tab => 0x2,
            PageType::L3Tab => 0x3,
            PageType::L4Tab => 0x4,
            PageType::L1TabPin => 0x9,
            PageType::L2TabPin => 0xA,
            PageType::L3TabPin => 0xB,
            PageType::L4TabPin => 0xC,
            PageType::Broken => 0xD,
            PageType::XAlloc => 0xE,
            PageType::XTab => 0xF,
        }
    }

    /// The type for a 4-bit value; 0x5-0x8 are reserved and give `None`.
    pub fn from_bits(bits: u8) -> Option<PageType> {
        PageType::ALL.iter().copied().find(|t| t.bits() == bits)
    }

    /// The value in the `XEN_DOMCTL_PFINFO_*` encoding (`bits << 28`), as
    /// `xc_get_pfn_type_batch` reports it.
    pub const fn domctl_value(self) -> u32 {
        (self.bits() as u32) << pfinfo::LTAB_SHIFT
    }

    /// The type for a raw `XEN_DOMCTL_PFINFO_*` value; `None` for a
    /// reserved type or when bits outside the type field are set.
    pub fn from_domctl_value(raw: u32) -> Option<PageType> {
        if raw & !pfinfo::LTAB_MASK != 0 {
            return None;
        }
        PageType::from_bits((raw >> pfinfo::LTAB_SHIFT) as u8)
    }

    /// True when a page of data follows in the record (NOTAB and L1-L4, pinned or not).
    pub fn has_data(self) -> bool {
        !matches!(self, PageType::Broken | PageType::XAlloc | PageType::XTab)
    }

    /// True when a restorer must populate the frame: data pages and XALLOC.
    pub fn needs_populate(self) -> bool {
        self.has_data() || self == PageType::XAlloc
    }

    /// True for a pinned page table (`XEN_DOMCTL_PFINFO_LPINTAB` set).
    pub fn is_pinned(self) -> bool {
        // Bit 31 is also set in BROKEN, XALLOC and XTAB, which are no
        // page tables: only L1..L4 carry the flag.
        matches!(
            self,
            PageType::L1TabPin | PageType::L2TabPin | PageType::L3TabPin | PageType::L4TabPin
        )
    }

    /// Short name as in the spec's table.
    pub fn name(self) -> &'static str {
        match self {
            PageType::NoTab => "NOTAB",
            PageType::L1Tab => "L1TAB",
            PageType::L2Tab => "L2TAB",
            PageType::L3Tab => "L3TAB",
            PageType::L4Tab => "L4TAB",
            PageType::L1TabPin => "L1TAB_PIN",
            PageType::L2TabPin => "L2TAB_PIN",
            PageType::L3TabPin => "L3TAB_PIN",
            PageType::L4TabPin => "L4TAB_PIN",
            PageType::Broken => "BROKEN",
            PageType::XAlloc => "XALLOC",
            PageType::XTab => "XTAB",
        }
    }
}

/// TSC state: the X86_TSC_INFO record (24 bytes) and
/// `XEN_DOMCTL_gettscinfo` / `settscinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TscInfo {
    /// `TSC_MODE_*`: 0 default, 1 always emulate, 2 never emulate.
    pub mode: u32,
    /// Guest TSC frequency in kHz.
    pub gtsc_khz: u32,
    /// Guest-visible elapsed time in nanoseconds.
    pub elapsed_nsec: u64,
    /// Incarnation; Xen stores the value given plus one on set.
    pub incarnation: u32,
}

/// One CPUID leaf of a serialised CPU policy (`xen_cpuid_leaf_t`, 24
/// bytes), as X86_CPUID_POLICY carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuidLeaf {
    /// Leaf (EAX input).
    pub leaf: u32,
    /// Subleaf (ECX input), `0xffffffff` when the leaf has none.
    pub subleaf: u32,
    /// EAX output.
    pub a: u32,
    /// EBX output.
    pub b: u32,
    /// ECX output.
    pub c: u32,
    /// EDX output.
    pub d: u32,
}

/// One MSR of a serialised CPU policy (`xen_msr_entry_t`, 16 bytes), as
/// X86_MSR_POLICY carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsrEntry {
    /// MSR index.
    pub idx: u32,
    /// Flags (Xen requires zero; carried as is).
    pub flags: u32,
    /// Value.
    pub val: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_type_bits_round_trip_and_reserved_values_are_rejected() {
        for t in PageType::ALL {
            assert_eq!(PageType::from_bits(t.bits()), Some(t));
            assert_eq!(t.domctl_value() >> 28, u32::from(t.bits()));
        }
        for bits in 5..=8 {
            assert_eq!(PageType::from_bits(bits), None);
        }
        let without_data: Vec<_> = PageType::ALL.iter().filter(|t| !t.has_data()).collect();
        assert_eq!(
            without_data,
            [&PageType::Broken, &PageType::XAlloc, &PageType::XTab]
        );
    }

    #[test]
    fn raw_pfinfo_values_convert_both_ways_and_answer_as_the_enum() {
        for t in PageType::ALL {
            let raw = t.domctl_value();
            assert_eq!(PageType::from_domctl_value(raw), Some(t));
            assert_eq!(pfinfo::has_data(raw), t.has_data());
            assert_eq!(pfinfo::needs_populate(raw), t.needs_populate());
            assert!(pfinfo::is_known(raw));
        }
        for raw in [
            5 << 28,
            8 << 28,
            pfinfo::NOTAB | 1,
            pfinfo::L1TAB | 0x0fff_ffff,
        ] {
            assert_eq!(PageType::from_domctl_value(raw), None, "{raw:#x}");
            assert!(!pfinfo::is_known(raw) && !pfinfo::has_data(raw));
        }
        assert_eq!(
            pfinfo::L2TAB | pfinfo::LPINTAB,
            PageType::L2TabPin.domctl_value()
        );
        assert!(PageType::L2TabPin.is_pinned() && !PageType::L2Tab.is_pinned());
        assert!(!PageType::XTab.is_pinned());
        assert!(pfinfo::needs_populate(pfinfo::XALLOC));
        assert!(!pfinfo::needs_populate(pfinfo::XTAB) && !pfinfo::needs_populate(pfinfo::BROKEN));
    }
}
