//! What the cargo-fuzz targets share (the targets themselves are in
//! `fuzz_targets/`, one `[[bin]]` each):
//!
//! - [`records`]: a restore target's input (a mode byte, then a libxc
//!   stream) cut into its 8-octet-aligned records and put back together,
//!   with typed access to the PAGE_DATA body;
//! - [`mutator`]: the structure-aware mutator the restore targets install
//!   (`fuzz_mutator!` / `fuzz_crossover!`): edits that keep records aligned
//!   (lengths, counts, pfns, page types, record types and order,
//!   truncation, splicing records from another input), libFuzzer's byte
//!   mutation part of the time;
//! - [`restore`]: the whole `restore_domain` engine run in-process over
//!   `hv::sim` on a fresh empty simulated domain, with the checks every
//!   restore target makes after each input;
//! - [`fuzzed_hv`]: the `Hypervisor` of the `save_hypercalls` target, which
//!   delegates to `hv::sim` and lets the input fail or change any answer.
//!
//! A module for another target goes beside these and is declared here.

pub mod fuzzed_hv;
pub mod mutator;
pub mod records;
pub mod restore;
