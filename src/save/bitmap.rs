//! A fixed-size bitmap in the layout Xen uses for log-dirty: bit `p` is
//! bit `p % 64` of word `p / 64` (an x86-64 `unsigned long` bitmap).

/// A bitmap of `len` bits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    len: u64,
}

impl Bitmap {
    /// All clear, `len` bits.
    #[cfg(test)]
    pub(crate) fn new(len: u64) -> Self {
        Self::try_new(len).expect("bitmap allocation")
    }

    /// All clear, `len` bits, or `None` if the memory cannot be had: the
    /// length comes from the hypervisor, and a save that cannot track the
    /// p2m fails rather than aborting the process.
    pub(crate) fn try_new(len: u64) -> Option<Self> {
        let n = usize::try_from(len.div_ceil(64)).ok()?;
        let mut words = Vec::new();
        words.try_reserve_exact(n).ok()?;
        words.resize(n, 0);
        Some(Bitmap { words, len })
    }

    pub(crate) fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    pub(crate) fn test(&self, bit: u64) -> bool {
        bit < self.len && self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// Sets `bit`; out-of-range bits are ignored.
    pub(crate) fn set(&mut self, bit: u64) {
        if bit < self.len {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    pub(crate) fn set_all(&mut self) {
        self.words.fill(!0);
        self.trim();
    }

    pub(crate) fn clear_all(&mut self) {
        self.words.fill(0);
    }

    pub(crate) fn or_with(&mut self, other: &Bitmap) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
        self.trim();
    }

    /// Clears bits past `len` that a hypervisor may have written into the
    /// last word.
    pub(crate) fn trim(&mut self) {
        let rem = self.len % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }

    /// Set bits in `start .. end` (clamped to the length).
    pub(crate) fn count_range(&self, start: u64, end: u64) -> u64 {
        let end = end.min(self.len);
        if start >= end {
            return 0;
        }
        let (first, last) = ((start / 64) as usize, ((end - 1) / 64) as usize);
        let mut n = 0u64;
        for (i, &w) in self.words[first..=last].iter().enumerate() {
            let i = first + i;
            let mut w = w;
            if i == first {
                w &= !0u64 << (start % 64);
            }
            if i == last && end % 64 != 0 {
                w &= (1u64 << (end % 64)) - 1;
            }
            n += u64::from(w.count_ones());
        }
        n
    }

    #[cfg(test)]
    pub(crate) fn count_ones(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The set bits, ascending.
    pub(crate) fn iter_ones(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let base = i as u64 * 64;
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    None
                } else {
                    let b = w.trailing_zeros();
                    w &= w - 1;
                    Some(base + u64::from(b))
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitmap_too_large_to_allocate_is_refused_not_aborted() {
        assert!(Bitmap::try_new(u64::MAX).is_none());
        assert!(Bitmap::try_new(1 << 63).is_none());
        assert_eq!(Bitmap::try_new(65).map(|b| b.words.len()), Some(2));
    }

    #[test]
    fn set_all_stays_within_length_and_iterates_in_order() {
        let mut b = Bitmap::new(70);
        b.set_all();
        assert_eq!(b.count_ones(), 70);
        assert_eq!(
            b.iter_ones().collect::<Vec<_>>(),
            (0..70).collect::<Vec<_>>()
        );
        b.clear_all();
        b.set(3);
        b.set(64);
        b.set(69);
        b.set(70);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![3, 64, 69]);
        assert!(b.test(64) && !b.test(65) && !b.test(1000));
    }

    #[test]
    fn count_range_counts_only_bits_inside_the_range() {
        let mut b = Bitmap::new(300);
        for bit in [0, 1, 63, 64, 65, 127, 128, 200, 299] {
            b.set(bit);
        }
        let naive = |s: u64, e: u64| (s..e.min(300)).filter(|&x| b.test(x)).count() as u64;
        for (s, e) in [
            (0, 300),
            (0, 1),
            (1, 64),
            (63, 65),
            (64, 128),
            (65, 129),
            (129, 200),
            (200, 1000),
            (299, 300),
            (5, 5),
            (10, 3),
        ] {
            assert_eq!(b.count_range(s, e), naive(s, e), "{s}..{e}");
        }
    }

    #[test]
    fn or_with_merges_and_trims() {
        let mut a = Bitmap::new(10);
        let mut b = Bitmap::new(10);
        a.set(1);
        b.set(9);
        b.words_mut()[0] |= 1 << 20;
        a.or_with(&b);
        assert_eq!(a.iter_ones().collect::<Vec<_>>(), vec![1, 9]);
    }
}
