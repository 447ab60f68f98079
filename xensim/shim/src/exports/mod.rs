//! One file of `extern "C"` exports per replaced library; each file's
//! functions are exactly the globals of the matching `vers/*.map`.

pub mod xencall;
pub mod xenctrl;
pub mod xenevtchn;
pub mod xenforeignmemory;
