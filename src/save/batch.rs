//! Where the pages of one PAGE_DATA batch are: which mapping holds each,
//! and the runs of consecutive pages written from them.

use crate::stream::PageType;

/// Where the page of a data-bearing entry of the batch is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    /// In the cached mapping of this chunk.
    Chunk(u64),
    /// In the batch's own mapping of the frames not in a cached chunk.
    Batch,
}

/// Consecutive pages of one mapping, sent as one slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// The mapping.
    pub(crate) src: Src,
    /// Its first page in the mapping.
    pub(crate) first: usize,
    /// Pages in the run.
    pub(crate) n: usize,
    /// The pages go through a copy (the mapping cannot lend the run's
    /// bytes, or the guest type normalises them); set once the batch's
    /// runs are formed.
    pub(crate) copy: bool,
    /// A page the guest type normalises (a run of one), and its type.
    pub(crate) normalise: Option<PageType>,
    /// The record entry of the run's first page.
    pub(crate) entry: usize,
    /// The guest type deferred the run's page (normalised runs only): it
    /// leaves the record.
    pub(crate) deferred: bool,
}
