//! A restore target's input as records.
//!
//! Input layout: one mode byte (see [`crate::restore::Mode`]), then a libxc
//! stream: the 24-octet image header, the 16-octet domain header, records of
//! an 8-octet header (type, body length) and a body padded to 8 octets.
//! [`Input::parse`] cuts it up without judging it (the restore does that):
//! whatever does not make a whole record is kept as the tail, so
//! [`Input::to_bytes`] gives back the input exactly, except for nonzero
//! padding octets, which come back as zeros (the restore ignores them).

/// Octets of the libxc image header plus domain header.
pub const HEADERS_LEN: usize = 40;
/// Octets of a record header.
pub const RECORD_HEADER_LEN: usize = 8;
/// A page.
pub const PAGE_SIZE: usize = 4096;
/// PAGE_DATA's record type.
pub const REC_PAGE_DATA: u32 = 1;
/// Bits 0-51 of a PAGE_DATA entry: the pfn.
pub const PFN_MASK: u64 = (1 << 52) - 1;

/// Byte order of the domain header and records (the image header's
/// options bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Little-endian (every x86 stream).
    Little,
    /// Big-endian.
    Big,
}

impl Order {
    /// `u32` at `off` of `b`; None past the end.
    pub fn u32(self, b: &[u8], off: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Order::Little => u32::from_le_bytes(a),
            Order::Big => u32::from_be_bytes(a),
        })
    }

    /// `u64` at `off` of `b`; None past the end.
    pub fn u64(self, b: &[u8], off: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Order::Little => u64::from_le_bytes(a),
            Order::Big => u64::from_be_bytes(a),
        })
    }

    /// The octets of `v`.
    pub fn u32_bytes(self, v: u32) -> [u8; 4] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }

    /// The octets of `v`.
    pub fn u64_bytes(self, v: u64) -> [u8; 8] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }

    /// Writes `v` at `off` of `b` if it fits.
    pub fn put_u32(self, b: &mut [u8], off: usize, v: u32) {
        if let Some(s) = b.get_mut(off..off.saturating_add(4)) {
            s.copy_from_slice(&self.u32_bytes(v));
        }
    }

    /// Writes `v` at `off` of `b` if it fits.
    pub fn put_u64(self, b: &mut [u8], off: usize, v: u64) {
        if let Some(s) = b.get_mut(off..off.saturating_add(8)) {
            s.copy_from_slice(&self.u64_bytes(v));
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Record type (bit 31: optional).
    pub rtype: u32,
    /// The body, unpadded.
    pub body: Vec<u8>,
    /// A length to declare instead of the body's (a mutation that breaks
    /// the framing on purpose); None declares the body's length.
    pub length: Option<u32>,
}

impl Rec {
    /// A record of type `rtype` with `body`, its length declared truly.
    pub fn new(rtype: u32, body: Vec<u8>) -> Rec {
        Rec {
            rtype,
            body,
            length: None,
        }
    }

    /// Octets this record takes in the stream.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.body.len().next_multiple_of(8)
    }
}

/// A restore target's input, cut into records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The mode byte (absent only for an empty input).
    pub mode: Option<u8>,
    /// The image and domain headers (shorter when the input is).
    pub headers: Vec<u8>,
    /// Whole records after the headers.
    pub records: Vec<Rec>,
    /// Octets after the last whole record.
    pub tail: Vec<u8>,
}

impl Input {
    /// Cuts `data` up; never fails.
    pub fn parse(data: &[u8]) -> Input {
        let Some((&mode, rest)) = data.split_first() else {
            return Input {
                mode: None,
                headers: Vec::new(),
                records: Vec::new(),
                tail: Vec::new(),
            };
        };
        let hl = rest.len().min(HEADERS_LEN);
        let headers = rest[..hl].to_vec();
        let order = order_of(&headers);
        let mut at = hl;
        let mut records = Vec::new();
        if hl == HEADERS_LEN {
            while let (Some(rtype), Some(len)) = (order.u32(rest, at), order.u32(rest, at + 4)) {
                let start = at + RECORD_HEADER_LEN;
                let padded = (len as usize).next_multiple_of(8);
                if rest.len() - start < padded {
                    break;
                }
                records.push(Rec::new(rtype, rest[start..start + len as usize].to_vec()));
                at = start + padded;
            }
        }
        Input {
            mode: Some(mode),
            headers,
            records,
            tail: rest[at..].to_vec(),
        }
    }

    /// The byte order the headers declare.
    pub fn order(&self) -> Order {
        order_of(&self.headers)
    }

    /// Octets [`Input::to_bytes`] will produce.
    pub fn encoded_len(&self) -> usize {
        usize::from(self.mode.is_some())
            + self.headers.len()
            + self.records.iter().map(Rec::encoded_len).sum::<usize>()
            + self.tail.len()
    }

    /// Puts the input back together.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        let Some(mode) = self.mode else {
            return out;
        };
        out.push(mode);
        out.extend_from_slice(&self.headers);
        let order = self.order();
        for r in &self.records {
            out.extend_from_slice(&order.u32_bytes(r.rtype));
            let len = r.length.unwrap_or(r.body.len() as u32);
            out.extend_from_slice(&order.u32_bytes(len));
            out.extend_from_slice(&r.body);
            out.resize(
                out.len() + (r.body.len().next_multiple_of(8) - r.body.len()),
                0,
            );
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

fn order_of(headers: &[u8]) -> Order {
    // The image header is big-endian; options are at octets 16-17.
    match headers.get(17) {
        Some(b) if b & 1 == 1 => Order::Big,
        _ => Order::Little,
    }
}

/// Whether a PAGE_DATA entry's type (bits 60-63, XEN_DOMCTL_PFINFO_* >> 28)
/// carries a page of data: all but XTAB (0xf), BROKEN (0xe), XALLOC (0xd).
pub fn type_has_data(t: u64) -> bool {
    t < 0xd
}

/// A PAGE_DATA body taken apart: count, entries, pages. `extra` holds the
/// octets after the pages the entries account for (or the short fall, as
/// a body that ends early: then `pages` is what there was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageData {
    /// The count field (may disagree with `entries`).
    pub count: u32,
    /// The reserved field after the count.
    pub reserved: u32,
    /// The entries (pfn | type << 60, reserved bits and all).
    pub entries: Vec<u64>,
    /// One page per entry whose type has data, in order (the last may be
    /// short when the body was).
    pub pages: Vec<Vec<u8>>,
    /// Octets after the last page.
    pub extra: Vec<u8>,
}

impl PageData {
    /// Takes `body` apart in byte order `o`; None when it is too short for
    /// its header or its entries as counted.
    pub fn parse(o: Order, body: &[u8]) -> Option<PageData> {
        let count = o.u32(body, 0)?;
        let reserved = o.u32(body, 4)?;
        let n = count as usize;
        if body.len() < 8 + n.checked_mul(8)? {
            return None;
        }
        let entries: Vec<u64> = (0..n)
            .map(|i| o.u64(body, 8 + 8 * i).unwrap_or(0))
            .collect();
        let mut at = 8 + 8 * n;
        let mut pages = Vec::new();
        for e in &entries {
            if at >= body.len() {
                break;
            }
            if type_has_data(e >> 60) {
                let end = (at + PAGE_SIZE).min(body.len());
                pages.push(body[at..end].to_vec());
                at = end;
            }
        }
        Some(PageData {
            count,
            reserved,
            entries,
            pages,
            extra: body[at..].to_vec(),
        })
    }

    /// The body in byte order `o`.
    pub fn to_body(&self, o: Order) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 8 * self.entries.len() + PAGE_SIZE * self.pages.len());
        b.extend_from_slice(&o.u32_bytes(self.count));
        b.extend_from_slice(&o.u32_bytes(self.reserved));
        for e in &self.entries {
            b.extend_from_slice(&o.u64_bytes(*e));
        }
        for p in &self.pages {
            b.extend_from_slice(p);
        }
        b.extend_from_slice(&self.extra);
        b
    }

    /// Whether count, entries and pages agree (what a writer produces).
    pub fn consistent(&self) -> bool {
        self.count as usize == self.entries.len()
            && self.extra.is_empty()
            && self.pages.iter().all(|p| p.len() == PAGE_SIZE)
            && self.pages.len()
                == self
                    .entries
                    .iter()
                    .filter(|e| type_has_data(*e >> 60))
                    .count()
    }

    /// Index into `pages` of entry `i`'s page, if its type has data.
    pub fn page_index(&self, i: usize) -> Option<usize> {
        let e = *self.entries.get(i)?;
        type_has_data(e >> 60).then(|| {
            self.entries[..i]
                .iter()
                .filter(|e| type_has_data(*e >> 60))
                .count()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A little-endian v3 HVM stream: headers, one PAGE_DATA of two pages
    /// and an XALLOC entry, an odd-length record, END.
    pub(crate) fn sample() -> Vec<u8> {
        let o = Order::Little;
        let mut s = vec![2u8]; // mode
        s.extend_from_slice(&[0xff; 8]);
        s.extend_from_slice(&0x5845_4E46u32.to_be_bytes());
        s.extend_from_slice(&3u32.to_be_bytes());
        s.extend_from_slice(&[0; 8]);
        s.extend_from_slice(&o.u32_bytes(2)); // HVM
        s.extend_from_slice(&[12, 0, 0, 0]);
        s.extend_from_slice(&o.u32_bytes(3));
        s.extend_from_slice(&[0; 4]);
        let pd = PageData {
            count: 3,
            reserved: 0,
            entries: vec![1, 2, 3 | 0xd << 60],
            pages: vec![vec![1; PAGE_SIZE], vec![2; PAGE_SIZE]],
            extra: Vec::new(),
        };
        let recs = [
            Rec::new(REC_PAGE_DATA, pd.to_body(o)),
            Rec::new(0x0a, vec![7; 13]),
            Rec::new(0, Vec::new()),
        ];
        for r in recs {
            s.extend_from_slice(&o.u32_bytes(r.rtype));
            s.extend_from_slice(&o.u32_bytes(r.body.len() as u32));
            s.extend_from_slice(&r.body);
            s.resize(s.len() + r.body.len().next_multiple_of(8) - r.body.len(), 0);
        }
        s
    }

    #[test]
    fn parse_then_encode_gives_back_an_aligned_input() {
        let s = sample();
        let i = Input::parse(&s);
        assert_eq!(i.records.len(), 3);
        assert!(i.tail.is_empty());
        assert_eq!(i.to_bytes(), s);
        assert_eq!(i.encoded_len(), s.len());
    }

    #[test]
    fn a_cut_record_is_kept_as_the_tail() {
        let s = sample();
        for cut in 0..s.len() {
            let i = Input::parse(&s[..cut]);
            assert_eq!(i.to_bytes(), &s[..cut], "cut at {cut}");
        }
    }

    #[test]
    fn page_data_round_trips_and_reports_consistency() {
        let i = Input::parse(&sample());
        let pd = PageData::parse(Order::Little, &i.records[0].body).unwrap();
        assert!(pd.consistent());
        assert_eq!(pd.pages.len(), 2);
        assert_eq!(pd.page_index(1), Some(1));
        assert_eq!(pd.page_index(2), None);
        assert_eq!(pd.to_body(Order::Little), i.records[0].body);
        let mut short = i.records[0].body.clone();
        short.truncate(100);
        let p = PageData::parse(Order::Little, &short).unwrap();
        assert!(!p.consistent());
        assert_eq!(p.to_body(Order::Little), short);
    }
}
