//! The whole restore engine over `hv::sim`, in-process, into an empty PVH domain;
//! see `xcmig_fuzz::restore` for the input's mode byte and the checks
//! made after every input, `xcmig_fuzz::mutator` for the mutations.
#![no_main]

xcmig_fuzz::restore_fuzz_target!(xcmig_fuzz::restore::Kind::Pvh);
