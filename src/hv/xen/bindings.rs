//! Raw bindings to libxenctrl, libxenforeignmemory and libxenguest, generated
//! by bindgen from the installed headers at build time (see `build.rs`).
//! Only `hv::xen` and `capi` use them; nothing else in the crate knows C.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    clippy::all,
    missing_docs,
    unsafe_op_in_unsafe_fn
)]

include!(concat!(env!("OUT_DIR"), "/xen_bindings.rs"));
