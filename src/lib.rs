//! xcmig: a memory-safe implementation of libxenguest's `xc_domain_save()` and
//! `xc_domain_restore()`, reading and writing the libxc migration stream
//! (spec revision 3; v3 written, v2 and v3 read).
//!
//! Layers, top to bottom (see `docs/ARCHITECTURE.md`):
//! - `capi`: the C ABI (`xenguest.h` entry points), the only code that knows C;
//! - `save`, `restore`: the engines, generic over `hv::Hypervisor`;
//! - `stream`: typed records, reader and writer, no I/O policy;
//! - `hv`: what the engines need from Xen.

#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

#[cfg(feature = "xen")]
pub mod capi;
pub mod hv;
pub mod log;
pub mod restore;
pub mod save;
/// The migration stream codecs: the `xcmig-stream` crate, under the path
/// the library has always used for them.
pub use xcmig_stream as stream;
/// Xen's x86 values (page size and types, CPUID leaves, MSRs, TSC info),
/// defined once in the codec crate.
pub use xcmig_stream::x86;
pub mod toolstack;
