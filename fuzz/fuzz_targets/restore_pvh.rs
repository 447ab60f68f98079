//! The whole restore engine over `hv::sim`, in-process, into an empty PVH domain;
//! see `xcmig_fuzz::restore` for the input's mode byte and the checks
//! made after every input, `xcmig_fuzz::mutator` for the mutations.
#![no_main]

use libfuzzer_sys::{fuzz_crossover, fuzz_mutator, fuzz_target};
use xcmig_fuzz::restore::{Kind, Target};

thread_local! {
    static TARGET: Target = Target::new(Kind::Pvh);
}

fuzz_target!(|data: &[u8]| {
    TARGET.with(|t| {
        let _ = t.run(data);
    });
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    xcmig_fuzz::mutator::mutate(data, size, max_size, seed, libfuzzer_sys::fuzzer_mutate)
});

fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
    xcmig_fuzz::mutator::crossover(a, b, out, seed)
});
