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

/// Re-exported for [`restore_fuzz_target!`], whose expansion names it.
pub use libfuzzer_sys;

/// The whole body of a whole-restore fuzz target (`fuzz_targets/restore_*.rs`):
/// a [`restore::Target`] of the given [`restore::Kind`] per thread, every input
/// run through it, and the structure-aware [`mutator`] and crossover installed.
/// The targets differ only in the guest type, so they share this.
#[macro_export]
macro_rules! restore_fuzz_target {
    ($kind:expr) => {
        thread_local! {
            static TARGET: $crate::restore::Target = $crate::restore::Target::new($kind);
        }

        $crate::libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            TARGET.with(|t| {
                let _ = t.run(data);
            });
        });

        $crate::libfuzzer_sys::fuzz_mutator!(|data: &mut [u8],
                                              size: usize,
                                              max_size: usize,
                                              seed: u32| {
            $crate::mutator::mutate(
                data,
                size,
                max_size,
                seed,
                $crate::libfuzzer_sys::fuzzer_mutate,
            )
        });

        $crate::libfuzzer_sys::fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
            $crate::mutator::crossover(a, b, out, seed)
        });
    };
}
