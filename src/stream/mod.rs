//! The libxc (and libxl) migration stream codec: pure, no hypervisor.
pub mod libxl;
pub mod xl;
