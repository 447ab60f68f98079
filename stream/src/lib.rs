//! The Xen migration stream codecs: pure, no hypervisor, no I/O policy.
//! Every reader takes any `Read`, every writer any `Write`.
//!
//! # Formats
//! - [`libxc`]: the libxc migration stream (v2 and v3), what
//!   `xc_domain_save` writes. Its items are re-exported at the crate root
//!   ([`Reader`], [`Writer`], [`Record`], ...), where they have always been.
//! - [`libxl`]: the libxl stream libxl wraps around a libxc stream.
//! - [`xl`]: the `xl save` file header in front of a libxl stream.
//! - [`legacy`]: the image `xc_domain_save` wrote up to Xen 4.5, with no
//!   header and its toolstack's word size, and its conversion to v2/v3.
//! - [`xenstore`]: the xenstore migration stream (xenstored live update
//!   and non-cooperative migration): nodes, watches, transactions and
//!   connections.
//! - [`nested`]: a libxl stream with its inline libxc stream, read in turn
//!   over one input (the hand-off the tools and the fuzz target share).
//!
//! # Shared base
//! - [`x86`]: Xen's x86 values (page size and types, CPUID leaves, MSRs,
//!   TSC info), a leaf module also used by the hypervisor layer and the
//!   engines of the `xcmig` library.
//! - [`Endian`] (module `wire`): explicit endian field reads and writes and
//!   the 8-octet record alignment; `input` and `output`: the exact and
//!   growing reads and the vectored write every codec uses.
//!
//! A new stream format goes into its own module beside these, built on that
//! base, with its errors carrying the byte offset like theirs.

#![deny(missing_docs)]

mod input;
pub mod legacy;
pub mod libxc;
pub mod libxl;
pub mod nested;
mod output;
mod wire;
pub mod x86;
pub mod xenstore;
pub mod xl;

pub use libxc::*;
pub use output::write_all_vectored;
pub use wire::Endian;
pub use x86::{CpuidLeaf, MsrEntry, PageType, TscInfo, PAGE_SHIFT, PAGE_SIZE};
