//! Compressing page batches on a small worker pool while the engine's
//! thread goes on mapping and writing (issue 13).
//!
//! The engine hands each batch over as an owned [`Job`] (its entries and a
//! copy of its data pages: the guest may write its pages at any time, and
//! a copy is what log-dirty's resend covers), tagged with a sequence
//! number. Workers compress jobs in any order; [`Pool::ready`] gives them
//! back strictly in sequence, so the stream's record order is the order the
//! batches were made in. At most `2 x threads` jobs are out at once: the
//! engine blocks on the oldest before it makes another, so memory is fixed
//! (about 8 MiB a job) whatever the guest's size, and jobs' buffers are
//! reused.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::stream::{CompressedPages, Compression, PageCompressor, PfnEntry};

/// One batch: filled by the engine, compressed by a worker.
#[derive(Debug, Default)]
pub(crate) struct Job {
    seq: u64,
    /// The record's entries.
    pub(crate) entries: Vec<PfnEntry>,
    /// The data pages, 4096 octets each, in entry order.
    pub(crate) raw: Vec<u8>,
    /// What the worker made of `raw`.
    pub(crate) compressed: CompressedPages,
    /// A compressor failure, reported by the engine.
    error: Option<String>,
}

impl Job {
    /// Pages of data in the job.
    pub(crate) fn data_pages(&self) -> usize {
        self.raw.len() / crate::hv::PAGE_SIZE
    }

    /// Whether no page got smaller: the batch goes as plain PAGE_DATA.
    pub(crate) fn nothing_shrank(&self) -> bool {
        self.compressed.stored_pages() == self.compressed.sizes.len()
    }
}

/// The worker pool of one save.
pub(crate) struct Pool {
    compression: Compression,
    threads: usize,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Job>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    /// The sequence number the stream needs next.
    next_out: u64,
    /// Finished jobs waiting for an earlier one.
    waiting: BTreeMap<u64, Job>,
    /// Buffers of written jobs, for reuse.
    spare: Vec<Job>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("compression", &self.compression)
            .field("threads", &self.threads)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts `threads` workers (at least one) compressing with
    /// `compression` at zstd `level`. Fails if a compressor cannot be made
    /// or a thread cannot be started.
    pub(crate) fn start(
        compression: Compression,
        level: i32,
        threads: usize,
    ) -> Result<Pool, String> {
        let threads = threads.max(1);
        // Checked here, where the error can be reported, not in a worker.
        PageCompressor::new(compression, level).map_err(|e| e.to_string())?;
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let (finished, done) = mpsc::channel::<Job>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let finished: Sender<Job> = finished.clone();
            let handle = std::thread::Builder::new()
                .name(format!("xcmig-compress-{i}"))
                .spawn(move || worker(compression, level, &queue, &finished))
                .map_err(|e| format!("starting compression thread {i}: {e}"))?;
            workers.push(handle);
        }
        Ok(Pool {
            compression,
            threads,
            jobs: Some(jobs),
            done,
            workers,
            next_seq: 0,
            next_out: 0,
            waiting: BTreeMap::new(),
            spare: Vec::new(),
        })
    }

    /// The compressor.
    pub(crate) fn compression(&self) -> Compression {
        self.compression
    }

    /// Worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs handed out and not yet given back.
    pub(crate) fn in_flight(&self) -> usize {
        (self.next_seq - self.next_out) as usize
    }

    /// The most jobs out at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        2 * self.threads
    }

    /// An empty job to fill (its buffers from an earlier one).
    pub(crate) fn job(&mut self) -> Job {
        let mut j = self.spare.pop().unwrap_or_default();
        j.entries.clear();
        j.raw.clear();
        j.compressed.clear();
        j.error = None;
        j
    }

    /// Gives a written job's buffers back.
    pub(crate) fn recycle(&mut self, job: Job) {
        if self.spare.len() < self.max_in_flight() {
            self.spare.push(job);
        }
    }

    /// Hands `job` to the workers. The caller first takes the finished
    /// ones ([`Pool::ready`], [`Pool::wait`]) while [`Pool::in_flight`]
    /// is at [`Pool::max_in_flight`].
    pub(crate) fn submit(&mut self, mut job: Job) -> Result<(), String> {
        job.seq = self.next_seq;
        let Some(jobs) = &self.jobs else {
            return Err("the compression pool is stopped".into());
        };
        jobs.send(job)
            .map_err(|_| "every compression thread has stopped".to_string())?;
        self.next_seq += 1;
        Ok(())
    }

    /// The next job in sequence if it is finished, without waiting.
    pub(crate) fn ready(&mut self) -> Result<Option<Job>, String> {
        while let Ok(j) = self.done.try_recv() {
            self.waiting.insert(j.seq, j);
        }
        self.take_next()
    }

    /// The next job in sequence, waiting for it; `None` when none is out.
    pub(crate) fn wait(&mut self) -> Result<Option<Job>, String> {
        if self.in_flight() == 0 {
            return Ok(None);
        }
        while !self.waiting.contains_key(&self.next_out) {
            let j = self
                .done
                .recv()
                .map_err(|_| "a compression thread stopped with work in hand".to_string())?;
            self.waiting.insert(j.seq, j);
        }
        self.take_next()
    }

    fn take_next(&mut self) -> Result<Option<Job>, String> {
        let Some(j) = self.waiting.remove(&self.next_out) else {
            return Ok(None);
        };
        self.next_out += 1;
        if let Some(e) = &j.error {
            return Err(e.clone());
        }
        Ok(Some(j))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends every worker once it is idle.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(
    compression: Compression,
    level: i32,
    queue: &Mutex<Receiver<Job>>,
    finished: &Sender<Job>,
) {
    let mut compressor = PageCompressor::new(compression, level);
    loop {
        // The lock is held only to take a job.
        let next = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = next else { return };
        job.compressed.clear();
        let res = match &mut compressor {
            Ok(c) => c
                .push_pages(&job.raw, &mut job.compressed)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = res {
            job.error = Some(format!("compressing pages ({}): {e}", compression.name()));
        }
        if finished.send(job).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::PAGE_SIZE;
    use crate::stream::PageType;

    fn job_with(pool: &mut Pool, seed: u8, pages: usize) -> Job {
        let mut j = pool.job();
        for i in 0..pages {
            j.entries.push(PfnEntry::new(
                (seed as u64) << 16 | i as u64,
                PageType::NoTab,
            ));
            j.raw
                .extend(std::iter::repeat_n(seed.wrapping_add(i as u8), PAGE_SIZE));
        }
        j
    }

    #[test]
    fn jobs_come_back_in_the_order_they_were_submitted() {
        for c in [Compression::Lz4, Compression::Zstd] {
            let mut pool = Pool::start(c, 1, 3).unwrap();
            let mut got = Vec::new();
            for seed in 0..40u8 {
                while pool.in_flight() >= pool.max_in_flight() {
                    let j = pool.wait().unwrap().unwrap();
                    got.push(j.entries[0].pfn >> 16);
                    pool.recycle(j);
                }
                // Uneven sizes, so workers finish out of order.
                let j = job_with(&mut pool, seed, 1 + (seed as usize * 37) % 200);
                pool.submit(j).unwrap();
                while let Some(j) = pool.ready().unwrap() {
                    got.push(j.entries[0].pfn >> 16);
                    pool.recycle(j);
                }
            }
            while let Some(j) = pool.wait().unwrap() {
                got.push(j.entries[0].pfn >> 16);
            }
            assert_eq!(got, (0..40u64).collect::<Vec<_>>(), "{c:?}");
            assert_eq!(pool.in_flight(), 0);
        }
    }

    #[test]
    fn a_job_keeps_its_pages_and_shrinks_repetitive_ones() {
        let mut pool = Pool::start(Compression::Lz4, 1, 1).unwrap();
        let j = job_with(&mut pool, 7, 4);
        pool.submit(j).unwrap();
        let j = pool.wait().unwrap().unwrap();
        assert_eq!(j.data_pages(), 4);
        assert_eq!(j.compressed.sizes.len(), 4);
        assert!(!j.nothing_shrank());
        assert!(j.compressed.data.len() < 4 * 100);
    }

    #[test]
    fn a_bad_zstd_level_fails_at_start_not_in_a_worker() {
        let e = Pool::start(Compression::Zstd, 42, 2).unwrap_err();
        assert!(e.contains("level 42"), "{e}");
    }

    #[test]
    fn a_partial_page_is_reported_as_the_jobs_error() {
        let mut pool = Pool::start(Compression::Lz4, 1, 1).unwrap();
        let mut j = pool.job();
        j.entries.push(PfnEntry::new(1, PageType::NoTab));
        j.raw.extend_from_slice(&[1; 100]);
        pool.submit(j).unwrap();
        let e = pool.wait().unwrap_err();
        assert!(e.contains("compressing pages (lz4)"), "{e}");
    }
}
