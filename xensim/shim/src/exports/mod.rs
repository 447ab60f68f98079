//! One module of `extern "C"` exports per replaced library (`xenctrl` is a
//! directory, one file per group of functions); each module's functions are
//! exactly the globals of the matching `vers/*.map`.

pub mod xencall;
pub mod xenctrl;
pub mod xenevtchn;
pub mod xenforeignmemory;
