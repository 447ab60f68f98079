//! The libxc (and libxl) migration stream codec: pure, no hypervisor.
