//! One module of `extern "C"` exports per replaced library (`xenctrl` is a
//! directory, one file per group of functions); each module's functions are
//! exactly the globals of the matching `vers/*.map`; `private` holds what the
//! harnesses find with `dlsym`, exported by several of them.

pub mod private;
pub mod xencall;
pub mod xenctrl;
pub mod xenevtchn;
pub mod xenforeignmemory;
