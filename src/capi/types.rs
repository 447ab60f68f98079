//! `#[repr(C)]` mirrors of the `xenguest.h` structures xcmig receives, with
//! compile-time checks that size, alignment and every field offset equal
//! those bindgen computed from the installed header.

use std::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use std::mem::{align_of, offset_of, size_of};

use crate::hv::xen::bindings as sys;

/// `struct precopy_stats`: what a `precopy_policy` callback is given (by
/// value).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrecopyStatsC {
    /// Completed pre-copy rounds.
    pub iteration: c_uint,
    /// Pages written so far.
    pub total_written: c_ulong,
    /// Pages dirtied since the last round; -1 if unknown.
    pub dirty_count: c_long,
}

/// `int (*)(void *data)`: suspend, postcopy, checkpoint, wait_checkpoint.
pub type DataFn = unsafe extern "C" fn(data: *mut c_void) -> c_int;
/// `precopy_policy_t`.
pub type PrecopyPolicyFn = unsafe extern "C" fn(stats: PrecopyStatsC, data: *mut c_void) -> c_int;
/// `switch_qemu_logdirty`.
pub type SwitchQemuLogdirtyFn =
    unsafe extern "C" fn(domid: u32, enable: c_uint, data: *mut c_void) -> c_int;
/// `static_data_done`.
pub type StaticDataDoneFn = unsafe extern "C" fn(missing: c_uint, data: *mut c_void) -> c_int;
/// `restore_results`.
pub type RestoreResultsFn =
    unsafe extern "C" fn(store_gfn: sys::xen_pfn_t, console_gfn: sys::xen_pfn_t, data: *mut c_void);

/// `struct save_callbacks`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SaveCallbacksC {
    /// Suspend the guest; non-zero = success.
    pub suspend: Option<DataFn>,
    /// Optional live pre-copy policy.
    pub precopy_policy: Option<PrecopyPolicyFn>,
    /// Checkpointed streams: resume after a checkpoint.
    pub postcopy: Option<DataFn>,
    /// Checkpointed streams: wait for / announce the next checkpoint.
    pub checkpoint: Option<DataFn>,
    /// COLO: wait for the secondary.
    pub wait_checkpoint: Option<DataFn>,
    /// HVM: qemu log-dirty on/off; 0 = success.
    pub switch_qemu_logdirty: Option<SwitchQemuLogdirtyFn>,
    /// Passed to every callback.
    pub data: *mut c_void,
}

/// `struct restore_callbacks`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RestoreCallbacksC {
    /// STATIC_DATA_END seen or inferred; 0 = success.
    pub static_data_done: Option<StaticDataDoneFn>,
    /// COLO: suspend the secondary.
    pub suspend: Option<DataFn>,
    /// COLO: resume the secondary.
    pub postcopy: Option<DataFn>,
    /// A CHECKPOINT record arrived (`XGR_CHECKPOINT_*`).
    pub checkpoint: Option<DataFn>,
    /// COLO: wait for the next checkpoint.
    pub wait_checkpoint: Option<DataFn>,
    /// COLO: store and console gfns at each checkpoint.
    pub restore_results: Option<RestoreResultsFn>,
    /// Passed to every callback.
    pub data: *mut c_void,
}

impl RestoreCallbacksC {
    /// No callbacks (what a NULL `struct restore_callbacks *` means).
    pub fn none() -> Self {
        RestoreCallbacksC {
            static_data_done: None,
            suspend: None,
            postcopy: None,
            checkpoint: None,
            wait_checkpoint: None,
            restore_results: None,
            data: std::ptr::null_mut(),
        }
    }
}

macro_rules! same_layout {
    ($ours:ty, $theirs:ty { $($field:ident),* $(,)? }) => {
        const _: () = {
            assert!(size_of::<$ours>() == size_of::<$theirs>());
            assert!(align_of::<$ours>() == align_of::<$theirs>());
            $( assert!(offset_of!($ours, $field) == offset_of!($theirs, $field)); )*
        };
    };
}

same_layout!(
    PrecopyStatsC,
    sys::precopy_stats {
        iteration,
        total_written,
        dirty_count
    }
);
same_layout!(
    SaveCallbacksC,
    sys::save_callbacks {
        suspend,
        precopy_policy,
        postcopy,
        checkpoint,
        wait_checkpoint,
        switch_qemu_logdirty,
        data,
    }
);
same_layout!(
    RestoreCallbacksC,
    sys::restore_callbacks {
        static_data_done,
        suspend,
        postcopy,
        checkpoint,
        wait_checkpoint,
        restore_results,
        data,
    }
);

// The values of the xenguest.h constants the C layer interprets.
const _: () = {
    assert!(sys::XC_STREAM_PLAIN == 0);
    assert!(sys::XC_STREAM_REMUS == 1);
    assert!(sys::XC_STREAM_COLO == 2);
    assert!(sys::XCFLAGS_LIVE == super::save::XCFLAGS_LIVE);
    assert!(sys::XCFLAGS_DEBUG == super::save::XCFLAGS_DEBUG);
    assert!(sys::XGS_POLICY_ABORT == -1);
    assert!(sys::XGS_POLICY_CONTINUE_PRECOPY == 0);
    assert!(sys::XGS_POLICY_STOP_AND_COPY == 1);
    assert!(sys::XGR_SDD_MISSING_CPUID == super::callbacks::XGR_SDD_MISSING_CPUID);
    assert!(sys::XGR_SDD_MISSING_MSR == super::callbacks::XGR_SDD_MISSING_MSR);
    assert!(sys::XGR_CHECKPOINT_ERROR == 0);
    assert!(sys::XGR_CHECKPOINT_SUCCESS as i32 == super::callbacks::XGR_CHECKPOINT_SUCCESS);
    assert!(sys::XGR_CHECKPOINT_FAILOVER as i32 == super::callbacks::XGR_CHECKPOINT_FAILOVER);
};

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! layout_of {
    ($out:ident, $cname:literal, $ty:ty { $($field:ident),* $(,)? }) => {
        $out.push(format!("size {} {}", $cname, size_of::<$ty>()));
        $out.push(format!("align {} {}", $cname, align_of::<$ty>()));
        $(
            $out.push(format!("offset {} {} {}", $cname, stringify!($field), offset_of!($ty, $field)));
            $out.push(format!(
                "fieldsize {} {} {}",
                $cname,
                stringify!($field),
                field_size(|s: &$ty| &s.$field)
            ));
        )*
    };
}

/// The sizes, alignments and field offsets of the mirrors, one fact per
/// line in the format `capi-tests/xg-layout` prints from the C header
/// (`size S N`, `align S N`, `offset S F N`, `fieldsize S F N`), so that a
/// test can compare the two.
pub fn layout_lines() -> Vec<String> {
    let mut v = Vec::new();
    layout_of!(
        v,
        "precopy_stats",
        PrecopyStatsC {
            iteration,
            total_written,
            dirty_count
        }
    );
    layout_of!(
        v,
        "save_callbacks",
        SaveCallbacksC {
            suspend,
            precopy_policy,
            postcopy,
            checkpoint,
            wait_checkpoint,
            switch_qemu_logdirty,
            data,
        }
    );
    layout_of!(
        v,
        "restore_callbacks",
        RestoreCallbacksC {
            static_data_done,
            suspend,
            postcopy,
            checkpoint,
            wait_checkpoint,
            restore_results,
            data,
        }
    );
    v
}
