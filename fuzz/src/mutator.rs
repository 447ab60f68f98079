//! The structure-aware mutator of the restore targets.
//!
//! [`mutate`] takes an input apart into records ([`Input`]) and makes one to
//! three edits a restore cares about, keeping every other record aligned:
//! PAGE_DATA counts, pfns (neighbours, duplicates, the edges of the pfn
//! space, 2^33), page types (with the page added or dropped so the body
//! stays consistent, or deliberately not), entries added and dropped;
//! record types (known ones, unknown, the optional bit), declared lengths
//! that lie, bodies cut or grown, fields of a body at aligned offsets set
//! to boundary values; record order (swap, move, duplicate, delete, insert
//! END / CHECKPOINT / STATIC_DATA_END); truncation at or inside a record;
//! the headers and the mode byte. A quarter of the calls hand the input to
//! libFuzzer's byte mutator instead, which also covers what the model
//! cannot parse. [`crossover`] splices runs of records of one input into
//! another. Everything is deterministic in the seed libFuzzer passes.

use crate::records::{
    type_has_data, Input, Order, PageData, Rec, PAGE_SIZE, PFN_MASK, REC_PAGE_DATA,
};

/// A small deterministic generator (xorshift64*), seeded by libFuzzer.
pub struct Rng(u64);

impl Rng {
    /// From libFuzzer's seed.
    pub fn new(seed: u32) -> Rng {
        Rng(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.bits() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Record types of the libxc stream (0x00 END .. 0x12 X86_MSR_POLICY).
const KNOWN_TYPES: u32 = 0x13;
const REC_END: u32 = 0x00;
const REC_CHECKPOINT: u32 = 0x0e;
const REC_STATIC_DATA_END: u32 = 0x10;
/// Page types (XEN_DOMCTL_PFINFO_* >> 28): NOTAB, L1-L4, the pinned
/// tables, XALLOC, BROKEN, XTAB, and two no kernel defines.
const PAGE_TYPES: [u64; 14] = [0, 1, 2, 3, 4, 9, 10, 11, 12, 0xd, 0xe, 0xf, 5, 8];

/// Values worth trying in a 64-bit field.
fn interesting_u64(rng: &mut Rng, old: u64) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => old.wrapping_add(1),
        4 => old.wrapping_sub(1),
        5 => 1 << 33,
        6 => PFN_MASK,
        7 => 1 << rng.below(64),
        8 => old ^ (1 << rng.below(64)),
        9 => u64::from(u32::MAX),
        10 => old.wrapping_add(rng.below(64) as u64),
        _ => rng.bits(),
    }
}

/// Values worth trying in a 32-bit field (counts, lengths, indices).
fn interesting_u32(rng: &mut Rng, old: u32) -> u32 {
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => u32::MAX,
        3 => old.wrapping_add(1),
        4 => old.wrapping_sub(1),
        5 => 0x8000_0000,
        6 => 1024,
        7 => 1025,
        8 => 128 << 20,
        _ => old ^ (1 << rng.below(32)),
    }
}

/// A pfn to try: the pfn space's edges, neighbours and other entries'.
fn interesting_pfn(rng: &mut Rng, pd: &PageData, old: u64) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => old.wrapping_add(1) & PFN_MASK,
        2 => old.wrapping_sub(1) & PFN_MASK,
        3 => PFN_MASK,
        4 => 1 << 33,
        5 => 1 << rng.below(52),
        6 => {
            let i = rng.below(pd.entries.len());
            pd.entries.get(i).map_or(0, |e| e & PFN_MASK)
        }
        _ => rng.bits() & 0xfff,
    }
}

fn page_with(rng: &mut Rng) -> Vec<u8> {
    let fill = [0u8, 0xff, rng.bits() as u8][rng.below(3)];
    vec![fill; PAGE_SIZE]
}

/// One edit of a PAGE_DATA body in byte order `o`; false when the body is
/// not one (too short for its count).
fn mutate_page_data(rng: &mut Rng, o: Order, rec: &mut Rec, max_growth: usize) -> bool {
    let Some(mut pd) = PageData::parse(o, &rec.body) else {
        return false;
    };
    let n = pd.entries.len();
    let keep_count = !rng.one_in(8);
    match rng.below(9) {
        // A pfn.
        0 | 1 if n > 0 => {
            let i = rng.below(n);
            let e = pd.entries[i];
            let pfn = interesting_pfn(rng, &pd, e & PFN_MASK);
            pd.entries[i] = (e & !PFN_MASK) | (pfn & PFN_MASK);
        }
        // A type, with its page added or dropped so the body stays whole.
        2 | 3 if n > 0 => {
            let i = rng.below(n);
            let t = PAGE_TYPES[rng.below(PAGE_TYPES.len())];
            let before = pd.page_index(i);
            pd.entries[i] = (pd.entries[i] & !(0xf << 60)) | (t << 60);
            if rng.one_in(6) {
                // Leave the pages as they were: the body and its entries
                // now disagree.
            } else {
                match (before, type_has_data(t)) {
                    (Some(p), false) if p < pd.pages.len() => {
                        pd.pages.remove(p);
                    }
                    (None, true) if max_growth >= PAGE_SIZE => {
                        let p = pd.page_index(i).unwrap_or(0).min(pd.pages.len());
                        let page = page_with(rng);
                        pd.pages.insert(p, page);
                    }
                    _ => {}
                }
            }
        }
        // Reserved bits 52-59 of an entry.
        4 if n > 0 => {
            let i = rng.below(n);
            pd.entries[i] ^= 1 << (52 + rng.below(8));
        }
        // Drop an entry and its page.
        5 if n > 0 => {
            let i = rng.below(n);
            if let Some(p) = pd.page_index(i) {
                if p < pd.pages.len() {
                    pd.pages.remove(p);
                }
            }
            pd.entries.remove(i);
            if keep_count {
                pd.count = pd.entries.len() as u32;
            }
        }
        // Add an entry (a neighbour or another record's kind of pfn), with
        // a page when its type has data.
        6 => {
            let t = PAGE_TYPES[rng.below(PAGE_TYPES.len())];
            let needs = if type_has_data(t) { PAGE_SIZE + 8 } else { 8 };
            if needs > max_growth {
                return true;
            }
            let at = rng.below(n + 1);
            let pfn = interesting_pfn(rng, &pd, pd.entries.last().map_or(0, |e| e & PFN_MASK));
            pd.entries.insert(at, pfn | t << 60);
            if type_has_data(t) {
                let p = pd.page_index(at).unwrap_or(0).min(pd.pages.len());
                let page = page_with(rng);
                pd.pages.insert(p, page);
            }
            if keep_count {
                pd.count = pd.entries.len() as u32;
            }
        }
        // The count alone, or the reserved field.
        7 => pd.count = interesting_u32(rng, pd.count),
        _ => pd.reserved = interesting_u32(rng, pd.reserved),
    }
    rec.body = pd.to_body(o);
    true
}

/// Sets a field at an aligned offset of `body` to a boundary value.
fn mutate_field(rng: &mut Rng, o: Order, body: &mut [u8]) {
    if body.len() >= 8 && rng.one_in(2) {
        let off = rng.below(body.len() / 8) * 8;
        let old = o.u64(body, off).unwrap_or(0);
        o.put_u64(body, off, interesting_u64(rng, old));
    } else if body.len() >= 4 {
        let off = rng.below(body.len() / 4) * 4;
        let old = o.u32(body, off).unwrap_or(0);
        o.put_u32(body, off, interesting_u32(rng, old));
    }
}

/// One structural edit of `input`; `room` is how many octets it may grow.
fn mutate_once(rng: &mut Rng, input: &mut Input, room: usize) {
    let o = input.order();
    let n = input.records.len();
    match rng.below(16) {
        // PAGE_DATA edits, the most frequent: most of a stream is pages.
        0..=3 => {
            let pds: Vec<usize> = (0..n)
                .filter(|&i| input.records[i].rtype == REC_PAGE_DATA)
                .collect();
            if let Some(&i) = pds.get(rng.below(pds.len())) {
                mutate_page_data(rng, o, &mut input.records[i], room);
            } else if n > 0 {
                let i = rng.below(n);
                mutate_field(rng, o, &mut input.records[i].body);
            }
        }
        // A field of any record's body.
        4 | 5 if n > 0 => {
            let i = rng.below(n);
            mutate_field(rng, o, &mut input.records[i].body);
        }
        // A record type.
        6 if n > 0 => {
            let i = rng.below(n);
            let r = &mut input.records[i];
            r.rtype = match rng.below(4) {
                0 => r.rtype ^ 0x8000_0000,
                1 => rng.bits() as u32,
                _ => rng.below(KNOWN_TYPES as usize) as u32,
            };
        }
        // A declared length that lies (the framing after it breaks).
        7 if n > 0 => {
            let i = rng.below(n);
            let r = &mut input.records[i];
            r.length = Some(interesting_u32(rng, r.body.len() as u32));
        }
        // A body cut short or grown (its length follows).
        8 if n > 0 => {
            let i = rng.below(n);
            let r = &mut input.records[i];
            if rng.one_in(2) && !r.body.is_empty() {
                let keep = rng.below(r.body.len());
                r.body.truncate(keep);
            } else {
                let grow = (1 + rng.below(16)).min(room);
                r.body.resize(r.body.len() + grow, rng.bits() as u8);
            }
        }
        // Record order.
        9 if n > 1 => {
            let (a, b) = (rng.below(n), rng.below(n));
            input.records.swap(a, b);
        }
        10 if n > 1 => {
            let r = input.records.remove(rng.below(n));
            let at = rng.below(n);
            input.records.insert(at, r);
        }
        11 if n > 0 => {
            let i = rng.below(n);
            if input.records[i].encoded_len() <= room {
                let r = input.records[i].clone();
                let at = rng.below(n + 1);
                input.records.insert(at, r);
            }
        }
        12 if n > 0 => {
            input.records.remove(rng.below(n));
        }
        13 => {
            let t = [REC_END, REC_CHECKPOINT, REC_STATIC_DATA_END][rng.below(3)];
            let at = rng.below(n + 1);
            input.records.insert(at, Rec::new(t, Vec::new()));
        }
        // Truncation: at a record boundary, or inside a record.
        14 => {
            let keep = rng.below(n + 1);
            let cut: Vec<Rec> = input.records.drain(keep..).collect();
            input.tail.clear();
            if let Some(r) = cut.first() {
                if rng.one_in(2) {
                    let bytes = Input {
                        mode: Some(0),
                        headers: input.headers.clone(),
                        records: vec![r.clone()],
                        tail: Vec::new(),
                    }
                    .to_bytes();
                    let from = 1 + input.headers.len();
                    let len = rng.below(bytes.len() - from);
                    input.tail = bytes[from..from + len].to_vec();
                }
            }
        }
        // The headers or the mode byte.
        _ => {
            if rng.one_in(2) || input.headers.len() < 4 {
                input.mode = Some(rng.bits() as u8);
            } else {
                mutate_field(rng, Order::Big, &mut input.headers);
            }
        }
    }
}

/// Structure-aware mutation of `data[..size]` in place, at most `max_size`
/// octets (`data.len() >= max_size`); returns the new size. `bytes` is the
/// byte-level mutator (libFuzzer's `fuzzer_mutate`), used a quarter of the
/// time and whenever the input has no records to edit.
pub fn mutate(
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    bytes: impl FnOnce(&mut [u8], usize, usize) -> usize,
) -> usize {
    let mut rng = Rng::new(seed);
    let mut input = Input::parse(&data[..size]);
    if input.records.is_empty() || rng.one_in(4) {
        return bytes(data, size, max_size);
    }
    for _ in 0..1 + rng.below(3) {
        let room = max_size.saturating_sub(input.encoded_len());
        mutate_once(&mut rng, &mut input, room);
    }
    emit(&input.to_bytes(), data, max_size)
}

/// Writes `out` into `data`, cut to `max_size`; returns its length.
fn emit(out: &[u8], data: &mut [u8], max_size: usize) -> usize {
    let n = out.len().min(max_size).min(data.len());
    data[..n].copy_from_slice(&out[..n]);
    n
}

/// Splices records of `b` into `a`: a run of `b`'s records inserted into
/// `a`'s, or replacing a run of them (both stay aligned). Returns the size
/// written to `out`.
pub fn crossover(a: &[u8], b: &[u8], out: &mut [u8], seed: u32) -> usize {
    let mut rng = Rng::new(seed);
    let mut x = Input::parse(a);
    let y = Input::parse(b);
    if x.mode.is_none() || y.records.is_empty() {
        let n = a.len().min(out.len());
        out[..n].copy_from_slice(&a[..n]);
        return n;
    }
    let from = rng.below(y.records.len());
    let len = 1 + rng.below((y.records.len() - from).min(8));
    let run = &y.records[from..from + len];
    let at = rng.below(x.records.len() + 1);
    let replace = if rng.one_in(2) {
        rng.below((x.records.len() - at).min(len) + 1)
    } else {
        0
    };
    x.records.splice(at..at + replace, run.iter().cloned());
    let max = out.len();
    emit(&x.to_bytes(), out, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::sample;

    #[test]
    fn page_data_edits_keep_the_body_consistent_unless_they_mean_not_to() {
        let input = Input::parse(&sample());
        let mut consistent = 0;
        for seed in 0..2000 {
            let mut rng = Rng::new(seed);
            let mut rec = input.records[0].clone();
            assert!(mutate_page_data(&mut rng, Order::Little, &mut rec, 1 << 20));
            let pd = PageData::parse(Order::Little, &rec.body);
            if pd.as_ref().is_some_and(PageData::consistent) {
                consistent += 1;
            }
        }
        // Most edits keep count, entries and pages in step; some are meant
        // to break them (count alone, types without their page, ...).
        assert!((1200..2000).contains(&consistent), "{consistent}");
    }

    #[test]
    fn mutated_inputs_stay_within_max_size_and_mostly_parse_whole() {
        let s = sample();
        let max = s.len() + 5000;
        let mut whole = 0;
        let mut changed = 0;
        for seed in 0..3000 {
            let mut buf = s.clone();
            buf.resize(max, 0);
            let n = mutate(&mut buf, s.len(), max, seed, |d, size, _| {
                d[0] ^= 1;
                size
            });
            assert!(n <= max);
            let out = &buf[..n];
            if out != s.as_slice() {
                changed += 1;
            }
            let i = Input::parse(out);
            if i.tail.is_empty() {
                whole += 1;
            }
        }
        // Only lying lengths and truncation inside a record leave a tail.
        assert!(whole > 2000, "{whole} of 3000 parse into whole records");
        assert!(changed > 2500, "{changed} of 3000 changed");
    }

    #[test]
    fn an_input_without_records_goes_to_the_byte_mutator() {
        let mut buf = vec![0u8; 64];
        let n = mutate(&mut buf, 10, 64, 1, |d, _, _| {
            d[0] = 0xaa;
            3
        });
        assert_eq!((n, buf[0]), (3, 0xaa));
        // With records, a quarter of the calls.
        let s = sample();
        let mut used_bytes = 0;
        for seed in 0..400 {
            let mut b = s.clone();
            b.resize(s.len() + 100, 0);
            let _ = mutate(&mut b, s.len(), s.len() + 100, seed, |_, size, _| {
                used_bytes += 1;
                size
            });
        }
        assert!((50..200).contains(&used_bytes), "{used_bytes} of 400");
    }

    #[test]
    fn crossover_splices_whole_records_of_the_other_input() {
        let a = sample();
        let mut b_in = Input::parse(&a);
        b_in.records = vec![Rec::new(0x08, vec![9; 24]), Rec::new(0x11, vec![5; 16])];
        let b = b_in.to_bytes();
        for seed in 0..500 {
            let mut out = vec![0u8; a.len() + b.len()];
            let n = crossover(&a, &b, &mut out, seed);
            let x = Input::parse(&out[..n]);
            assert!(x.tail.is_empty(), "seed {seed}");
            assert_eq!(x.mode, Some(a[0]));
            assert!(
                x.records.iter().any(|r| r.rtype == 0x08 || r.rtype == 0x11),
                "seed {seed}: nothing spliced"
            );
        }
    }
}
