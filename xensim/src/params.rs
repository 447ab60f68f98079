//! HVM parameters: indices and the rules Xen 4.17 applies on get/set.

use crate::error::{err, Result};

/// Number of HVM params (`HVM_NR_PARAMS`); indices at or above it are EINVAL.
pub const HVM_NR_PARAMS: u32 = 39;

/// `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_PAE_ENABLED` (deprecated).
pub const HVM_PARAM_PAE_ENABLED: u32 = 4;
/// `HVM_PARAM_IOREQ_PFN`.
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
/// `HVM_PARAM_BUFIOREQ_PFN`.
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
/// `HVM_PARAM_VIRIDIAN`.
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
/// `HVM_PARAM_TIMER_MODE`.
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
/// `HVM_PARAM_HPET_ENABLED`.
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
/// `HVM_PARAM_IDENT_PT` (a byte address).
pub const HVM_PARAM_IDENT_PT: u32 = 12;
/// `HVM_PARAM_DM_DOMAIN` (deprecated).
pub const HVM_PARAM_DM_DOMAIN: u32 = 13;
/// `HVM_PARAM_ACPI_S_STATE`.
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
/// `HVM_PARAM_VM86_TSS` (legacy alias of VM86_TSS_SIZED).
pub const HVM_PARAM_VM86_TSS: u32 = 15;
/// `HVM_PARAM_VPT_ALIGN`.
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// `HVM_PARAM_CONSOLE_PFN`.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_PARAM_ACPI_IOPORTS_LOCATION`.
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
/// `HVM_PARAM_NESTEDHVM` (deprecated).
pub const HVM_PARAM_NESTEDHVM: u32 = 24;
/// `HVM_PARAM_BUFIOREQ_EVTCHN` (deprecated).
pub const HVM_PARAM_BUFIOREQ_EVTCHN: u32 = 26;
/// `HVM_PARAM_PAGING_RING_PFN`.
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
/// `HVM_PARAM_MONITOR_RING_PFN`.
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// `HVM_PARAM_SHARING_RING_PFN`.
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `HVM_PARAM_TRIPLE_FAULT_REASON`.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
/// `HVM_PARAM_IOREQ_SERVER_PFN`.
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
/// `HVM_PARAM_NR_IOREQ_SERVER_PAGES`.
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
/// `HVM_PARAM_VM_GENERATION_ID_ADDR`.
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
/// `HVM_PARAM_ALTP2M`.
pub const HVM_PARAM_ALTP2M: u32 = 35;
/// `HVM_PARAM_X87_FIP_WIDTH`.
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
/// `HVM_PARAM_VM86_TSS_SIZED`: `(size << 32) | address`.
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
/// `HVM_PARAM_MCA_CAP`.
pub const HVM_PARAM_MCA_CAP: u32 = 38;

/// `HVMPV_base_freq`: the bit VIRIDIAN requires.
pub const HVMPV_BASE_FREQ: u64 = 1;
/// `HVMPV_feature_mask` of Xen 4.17 (bits 0..=12).
pub const HVMPV_FEATURE_MASK: u64 = 0x1fff;
/// `VM86_TSS_UPDATED`: ORed in on set, stripped on get.
pub const VM86_TSS_UPDATED: u64 = 1 << 63;
/// `XEN_HVM_MCA_CAP_LMCE`, the only valid MCA_CAP bit.
pub const XEN_HVM_MCA_CAP_MASK: u64 = 1;

/// The params libxenguest's HVM save reads and sends (non-zero ones only), in
/// its order (`xg_sr_save_x86_hvm.c`).
pub const SAVED_HVM_PARAMS: [u32; 16] = [
    HVM_PARAM_STORE_PFN,
    HVM_PARAM_IOREQ_PFN,
    HVM_PARAM_BUFIOREQ_PFN,
    HVM_PARAM_PAGING_RING_PFN,
    HVM_PARAM_MONITOR_RING_PFN,
    HVM_PARAM_SHARING_RING_PFN,
    HVM_PARAM_VM86_TSS_SIZED,
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_ACPI_IOPORTS_LOCATION,
    HVM_PARAM_VIRIDIAN,
    HVM_PARAM_IDENT_PT,
    HVM_PARAM_VM_GENERATION_ID_ADDR,
    HVM_PARAM_IOREQ_SERVER_PFN,
    HVM_PARAM_NR_IOREQ_SERVER_PAGES,
    HVM_PARAM_X87_FIP_WIDTH,
    HVM_PARAM_MCA_CAP,
];

const DEPRECATED: [u32; 10] = [4, 13, 20, 21, 22, 23, 24, 25, 26, 30];

/// `sizeof(struct tss32)`: the smallest VM86 TSS Xen accepts.
const TSS32_SIZE: u64 = 104;
/// Xen caps the TSS size at the base structure + interrupt redirection bitmap
/// + I/O bitmap + one byte.
const TSS_MAX: u64 = TSS32_SIZE + 0x100 / 8 + 0x10000 / 8 + 1;

fn check_index(idx: u32) -> Result<()> {
    if idx >= HVM_NR_PARAMS {
        return err(libc::EINVAL, format!("HVM param index {idx} out of range"));
    }
    if DEPRECATED.contains(&idx) {
        return err(libc::EINVAL, format!("HVM param {idx} is deprecated"));
    }
    Ok(())
}

/// Validate setting param `idx` from `old` to `new`; returns the index and
/// value actually stored (VM86_TSS is redirected to VM86_TSS_SIZED).
pub(crate) fn apply_set(idx: u32, old: &[u64], new: u64) -> Result<(usize, u64)> {
    check_index(idx)?;
    let cur = old[idx as usize];
    let set_once = matches!(
        idx,
        HVM_PARAM_VIRIDIAN
            | HVM_PARAM_IOREQ_PFN
            | HVM_PARAM_BUFIOREQ_PFN
            | HVM_PARAM_IOREQ_SERVER_PFN
            | HVM_PARAM_NR_IOREQ_SERVER_PAGES
            | HVM_PARAM_ALTP2M
            | HVM_PARAM_MCA_CAP
    );
    if set_once && cur != 0 && new != cur {
        return err(
            libc::EEXIST,
            format!("HVM param {idx} can only be set once (is {cur:#x})"),
        );
    }
    let mut target = idx as usize;
    let mut value = new;
    match idx {
        HVM_PARAM_TIMER_MODE if new > 3 => return err(libc::EINVAL, "bad TIMER_MODE"),
        HVM_PARAM_VIRIDIAN if (new & !HVMPV_FEATURE_MASK) != 0 || (new & HVMPV_BASE_FREQ) == 0 => {
            return err(
                libc::EINVAL,
                "VIRIDIAN needs HVMPV_base_freq and known bits only",
            )
        }
        HVM_PARAM_ACPI_S_STATE if new != 0 && new != 3 => {
            return err(libc::EINVAL, "ACPI_S_STATE must be 0 or 3")
        }
        HVM_PARAM_ACPI_IOPORTS_LOCATION if new > 1 => {
            return err(libc::EINVAL, "ACPI_IOPORTS_LOCATION must be 0 or 1")
        }
        HVM_PARAM_ALTP2M if new > 2 => return err(libc::EINVAL, "bad ALTP2M mode"),
        HVM_PARAM_TRIPLE_FAULT_REASON if new > 5 => {
            return err(libc::EINVAL, "TRIPLE_FAULT_REASON beyond SHUTDOWN_MAX")
        }
        HVM_PARAM_NR_IOREQ_SERVER_PAGES if new == 0 || new > 64 => {
            return err(libc::EINVAL, "NR_IOREQ_SERVER_PAGES must be 1..=64")
        }
        HVM_PARAM_X87_FIP_WIDTH if !matches!(new, 0 | 4 | 8) => {
            return err(libc::EINVAL, "X87_FIP_WIDTH must be 0, 4 or 8")
        }
        HVM_PARAM_MCA_CAP if new & !XEN_HVM_MCA_CAP_MASK != 0 => {
            return err(libc::EINVAL, "unknown MCA_CAP bits")
        }
        HVM_PARAM_VM86_TSS => {
            if new != u64::from(new as u32) {
                return err(libc::EINVAL, "VM86_TSS above 4 GiB");
            }
            if new != 0 {
                value = new | (128 << 32) | VM86_TSS_UPDATED;
            }
            target = HVM_PARAM_VM86_TSS_SIZED as usize;
        }
        HVM_PARAM_VM86_TSS_SIZED => {
            let size = new >> 32;
            if size < TSS32_SIZE {
                return err(libc::EINVAL, "VM86_TSS_SIZED size below sizeof(tss32)");
            }
            if size > TSS_MAX {
                value = u64::from(new as u32) | (TSS_MAX << 32);
            }
            value |= VM86_TSS_UPDATED;
        }
        _ => {}
    }
    Ok((target, value))
}

/// The value `HVMOP_get_param` reports for `idx` given the stored array.
pub(crate) fn get_value(idx: u32, stored: &[u64]) -> Result<u64> {
    check_index(idx)?;
    Ok(match idx {
        HVM_PARAM_VM86_TSS => u64::from(stored[HVM_PARAM_VM86_TSS_SIZED as usize] as u32),
        HVM_PARAM_VM86_TSS_SIZED => stored[idx as usize] & !VM86_TSS_UPDATED,
        _ => stored[idx as usize],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros() -> Vec<u64> {
        vec![0; HVM_NR_PARAMS as usize]
    }

    #[test]
    fn index_beyond_nr_params_is_einval() {
        assert_eq!(
            apply_set(39, &zeros(), 1).unwrap_err().errno(),
            libc::EINVAL
        );
        assert_eq!(get_value(39, &zeros()).unwrap_err().errno(), libc::EINVAL);
    }

    #[test]
    fn deprecated_params_are_einval() {
        for i in DEPRECATED {
            assert_eq!(apply_set(i, &zeros(), 1).unwrap_err().errno(), libc::EINVAL);
            assert_eq!(get_value(i, &zeros()).unwrap_err().errno(), libc::EINVAL);
        }
    }

    #[test]
    fn set_once_params_reject_change_but_accept_same_value() {
        let mut p = zeros();
        p[HVM_PARAM_IOREQ_PFN as usize] = 0xfeffd;
        assert_eq!(
            apply_set(HVM_PARAM_IOREQ_PFN, &p, 0x1234)
                .unwrap_err()
                .errno(),
            libc::EEXIST
        );
        assert!(apply_set(HVM_PARAM_IOREQ_PFN, &p, 0xfeffd).is_ok());
        // STORE_PFN is not set-once.
        p[HVM_PARAM_STORE_PFN as usize] = 1;
        assert!(apply_set(HVM_PARAM_STORE_PFN, &p, 2).is_ok());
    }

    #[test]
    fn x87_fip_width_and_viridian_are_checked() {
        assert!(apply_set(HVM_PARAM_X87_FIP_WIDTH, &zeros(), 8).is_ok());
        assert_eq!(
            apply_set(HVM_PARAM_X87_FIP_WIDTH, &zeros(), 2)
                .unwrap_err()
                .errno(),
            libc::EINVAL
        );
        assert_eq!(
            apply_set(HVM_PARAM_VIRIDIAN, &zeros(), 2)
                .unwrap_err()
                .errno(),
            libc::EINVAL
        );
        assert!(apply_set(HVM_PARAM_VIRIDIAN, &zeros(), 3).is_ok());
    }

    #[test]
    fn vm86_tss_sized_round_trips_through_get() {
        let v = (128u64 << 32) | 0xfc01_2000;
        let (i, stored) = apply_set(HVM_PARAM_VM86_TSS_SIZED, &zeros(), v).unwrap();
        assert_eq!(i, HVM_PARAM_VM86_TSS_SIZED as usize);
        assert_ne!(stored, v);
        let mut p = zeros();
        p[i] = stored;
        assert_eq!(get_value(HVM_PARAM_VM86_TSS_SIZED, &p).unwrap(), v);
        assert_eq!(
            apply_set(HVM_PARAM_VM86_TSS_SIZED, &zeros(), 50 << 32)
                .unwrap_err()
                .errno(),
            libc::EINVAL
        );
    }
}
