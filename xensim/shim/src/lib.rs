//! `xensim-shim`: the C ABI of libxenctrl.so.4.17, libxenforeignmemory.so.1,
//! libxencall.so.1 and libxenevtchn.so.1 implemented over the xensim core.
//!
//! Built as a staticlib and linked into shared objects with Debian's sonames
//! and symbol version nodes by `scripts/link-shims.sh` (see xensim/README.md,
//! section "Shim libraries").

pub mod abi;
pub mod ctx;
pub mod dispatch;
pub mod error;
pub mod exports;
pub mod fdio;
pub mod ffi;
pub mod fmap;
pub mod hcall;
pub mod iface;
pub mod pv;
pub mod xtl;
