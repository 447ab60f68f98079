//! Exports of `libxenctrl.so.4.17` (version node `VERS_4.17.0`; the list is
//! `vers/libxenctrl.map`), one file per group of functions. The variadic
//! `xc_report`, `xc_report_error` and `xc_reportv` are in `c/variadic.c` and
//! call [`logging::xensim_shim_report_msg`].
//!
//! Safety contract of every function: the one documented in Xen 4.17's
//! `xenctrl.h` / `xc_private.h` for the function of the same name.
#![allow(clippy::missing_safety_doc)]

pub mod buffers;
pub mod domains;
pub mod fileio;
pub mod hvm;
pub mod hypercalls;
pub mod interface;
pub mod logdirty;
pub mod logging;
pub mod memory;
pub mod pv;
pub mod sched;
pub mod unsupported;
pub mod version;

use xensim::DomId;

use crate::ctx::Xch;
use crate::error::ShimResult;

/// Domain `domid` of the interface's host (libxenctrl's `uint32_t` domid,
/// cut to the 16-bit `domid_t` as C does).
fn domain(x: &Xch, domid: u32) -> ShimResult<xensim::Domain> {
    Ok(x.host().domain(domid as DomId)?)
}
