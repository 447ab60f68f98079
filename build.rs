//! Build script for xcmig.
//!
//! * The shared library is linked from the staticlib by
//!   `scripts/link-lib.sh` (soname `libxcmig.so.0`, symbol version nodes).
//! * With the `xen` feature: generates Rust bindings with bindgen from the
//!   installed Xen headers (`xenctrl.h`, `xenforeignmemory.h`, `xenguest.h`,
//!   the public `xen/*.h`), allowlisting only what `hv::xen` and `capi` use,
//!   with bindgen's layout tests kept, and links libxenctrl,
//!   libxenforeignmemory and libxenguest (whose public CPU-policy API is
//!   used), and libxentoollog for the C layer's unit tests (`--as-needed`
//!   keeps it out of the library itself).
//!
//! `XEN_INCLUDE_DIR` overrides the header directory (default `/usr/include`).

use std::env;
use std::path::PathBuf;

/// The headers bindgen reads, in the order a C user includes them.
const WRAPPER: &str = r#"
#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenguest.h>
#include <xen/hvm/params.h>
#include <xen/memory.h>
#include <xen/grant_table.h>
"#;

/// Functions used from libxenctrl, libxenforeignmemory and libxenguest.
const FUNCTIONS: &[&str] = &[
    // libxenctrl
    "xc_domain_getinfo",
    "xc_domain_nr_gpfns",
    "xc_shadow_control",
    "xc_logdirty_control",
    "xc__hypercall_buffer_alloc_pages",
    "xc__hypercall_buffer_free_pages",
    "xc_get_pfn_type_batch",
    "xc_domain_populate_physmap_exact",
    "xc_domain_populate_physmap",
    "xc_domain_hvm_getcontext",
    "xc_domain_hvm_setcontext",
    "xc_hvm_param_get",
    "xc_hvm_param_set",
    "xc_domain_get_tsc_info",
    "xc_domain_set_tsc_info",
    "xc_clear_domain_pages",
    "xc_version",
    "xc_strerror",
    // x86 PV
    "xc_domain_get_guest_width",
    "xc_domctl",
    "xc_memory_op",
    "xc_maximum_ram_page",
    "xc_machphys_mfn_list",
    "xc_vcpu_getinfo",
    "xc_vcpu_getcontext",
    "xc_vcpu_setcontext",
    "xc_mmuext_op",
    "xc__hypercall_buffer_alloc",
    "xc__hypercall_buffer_free",
    // scheduler (auto-converge)
    "xc_sched_id",
    "xc_sched_credit_domain_get",
    "xc_sched_credit_domain_set",
    "xc_sched_credit2_domain_get",
    "xc_sched_credit2_domain_set",
    // Used by the unit tests of the C layer (a dummy interface and a stdio
    // logger); with --as-needed they add no dependency to the library.
    "xc_interface_open",
    "xc_interface_close",
    "xc_get_last_error",
    "xtl_createlogger_stdiostream",
    "xtl_logger_destroy",
    // libxenforeignmemory
    "xenforeignmemory_open",
    "xenforeignmemory_close",
    "xenforeignmemory_map",
    "xenforeignmemory_unmap",
    "xenforeignmemory_map_resource",
    "xenforeignmemory_unmap_resource",
    // libxenguest: the two functions xcmig replaces, declared so that the
    // build can check the installed prototypes (`check_prototypes`).
    "xc_domain_save",
    "xc_domain_restore",
    // libxenguest (public CPU-policy API)
    "xc_cpu_policy_get_size",
    "xc_cpu_policy_init",
    "xc_cpu_policy_destroy",
    "xc_cpu_policy_get_domain",
    "xc_cpu_policy_serialise",
    "xc_set_domain_cpu_policy",
];

/// Types whose layout the Rust side relies on (mirrored or passed by pointer).
const TYPES: &[&str] = &[
    "xc_dominfo_t",
    "xc_hypercall_buffer_t",
    "xen_cpuid_leaf_t",
    "xen_msr_entry_t",
    "xen_domctl_shadow_op_stats",
    "grant_entry_v1_t",
    "save_callbacks",
    "restore_callbacks",
    "precopy_stats",
    "xc_stream_type_t",
    "xen_domctl",
    "xc_vcpuinfo_t",
    "vcpu_guest_context_any_t",
    "mmuext_op",
    "xen_machphys_mfn_list",
    "xen_domctl_sched_credit",
    "xen_domctl_sched_credit2",
];

/// Constants (macros) from the headers.
const VARS: &[&str] = &[
    "XEN_DOMCTL_SHADOW_OP_.*",
    "XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL",
    "XEN_DOMCTL_PFINFO_.*",
    "HVM_PARAM_.*",
    "XENVER_version",
    "XENMEM_resource_grant_table.*",
    "GNTTAB_RESERVED_.*",
    "GTF_permit_access",
    "XGS_POLICY_.*",
    "XCFLAGS_.*",
    "XGR_SDD_.*",
    "XGR_CHECKPOINT_.*",
    "XC_PAGE_SHIFT",
    "XTL_STDIOSTREAM_.*",
    "SHUTDOWN_suspend",
    "XEN_DOMCTL_INTERFACE_VERSION",
    "XEN_DOMCTL_set_address_size",
    "XEN_DOMCTL_get_ext_vcpucontext",
    "XEN_DOMCTL_set_ext_vcpucontext",
    "XEN_DOMCTL_getvcpuextstate",
    "XEN_DOMCTL_setvcpuextstate",
    "XEN_DOMCTL_get_vcpu_msrs",
    "XEN_DOMCTL_set_vcpu_msrs",
    "MMUEXT_PIN_L.*",
    "XENMEM_machphys_compat_mfn_list",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=XEN_INCLUDE_DIR");

    if env::var_os("CARGO_FEATURE_XEN").is_some() {
        generate_xen_bindings();
        for lib in ["xenctrl", "xenforeignmemory", "xenguest", "xentoollog"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
}

fn generate_xen_bindings() {
    let include = env::var("XEN_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".to_owned());
    for header in ["xenctrl.h", "xenforeignmemory.h", "xenguest.h"] {
        println!("cargo:rerun-if-changed={include}/{header}");
    }

    let mut builder = bindgen::Builder::default()
        .header_contents("xcmig_xen_wrapper.h", WRAPPER)
        .clang_arg(format!("-I{include}"))
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .allowlist_recursively(true)
        .generate_comments(false)
        .use_core();
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    // `enum xc_open_flags`, for the C layer's unit tests.
    builder = builder.allowlist_type("xc_open_flags");

    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on the Xen headers in {include}: {e}"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let text = bindings.to_string();
    check_prototypes(&text, &include);
    std::fs::write(out.join("xen_bindings.rs"), text).expect("write xen_bindings.rs");
}

/// Parameter types of the prototypes `src/capi/exports.rs` implements: those
/// of Xen 4.17's `xenguest.h` (unchanged up to 4.21).
const SAVE_PARAMS: &[&str] = &[
    "*mut xc_interface",
    "::core::ffi::c_int",
    "u32",
    "u32",
    "*mut save_callbacks",
    "xc_stream_type_t",
    "::core::ffi::c_int",
];
const RESTORE_PARAMS: &[&str] = &[
    "*mut xc_interface",
    "::core::ffi::c_int",
    "u32",
    "::core::ffi::c_uint",
    "*mut ::core::ffi::c_ulong",
    "u32",
    "::core::ffi::c_uint",
    "*mut ::core::ffi::c_ulong",
    "u32",
    "xc_stream_type_t",
    "*mut restore_callbacks",
    "::core::ffi::c_int",
];

/// The parameters (`name: type`) of `pub fn NAME(...)` in bindgen's output.
fn declared_params(bindings: &str, name: &str) -> Option<Vec<(String, String)>> {
    let start = bindings.find(&format!("pub fn {name}("))? + "pub fn (".len() + name.len();
    let end = start + bindings[start..].find(')')?;
    Some(
        bindings[start..end]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once(':') {
                Some((n, t)) => (n.trim().to_owned(), t.trim().to_owned()),
                None => (String::new(), p.to_owned()),
            })
            .collect(),
    )
}

/// Refuse, with a message saying what to do, headers whose
/// `xc_domain_save`/`xc_domain_restore` differ from the prototypes xcmig
/// implements (Xen 4.22 adds `memflags` to `xc_domain_restore`), or whose
/// libxenctrl lacks what `hv::xen` calls (4.18 removed
/// `xc_domain_getinfo`): a build would otherwise export functions a
/// toolstack calls with other arguments, or fail deep in the crate.
fn check_prototypes(bindings: &str, include: &str) {
    for (name, want) in [
        ("xc_domain_save", SAVE_PARAMS),
        ("xc_domain_restore", RESTORE_PARAMS),
    ] {
        let got = declared_params(bindings, name).unwrap_or_else(|| {
            panic!("{include}/xenguest.h declares no {name}(): not a libxenguest header xcmig can replace")
        });
        let types: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        if types != want {
            let declared: Vec<String> = got.iter().map(|(n, t)| format!("{n}: {t}")).collect();
            panic!(
                "{include}/xenguest.h declares {name}({}), but xcmig implements the \
                 prototype of Xen 4.17 to 4.21, {name}({}); build against those \
                 headers (XEN_INCLUDE_DIR) or port src/capi/exports.rs to the new one",
                declared.join(", "),
                want.join(", ")
            );
        }
    }
    if !bindings.contains("pub fn xc_domain_getinfo(") {
        panic!(
            "the xenctrl.h found with {include} has no xc_domain_getinfo() (Xen 4.18 removed \
             it): xcmig's hv::xen is written for Xen 4.17's libxenctrl; build against Xen \
             4.17's headers (libxen-dev 4.17)"
        );
    }
}
