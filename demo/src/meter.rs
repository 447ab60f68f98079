//! Follows a libxc migration stream as it passes through the relay and
//! counts what it carries: octets, records, and pages of data.
//!
//! It reads only the two headers and each record's header (plus the first
//! word of a PAGE_DATA body), so it keeps up with the stream at memory
//! speed and needs no buffering beyond a few bytes. The restorer judges the
//! stream; the meter only has to find the record boundaries, and reports
//! an error if it cannot (then the counts could not be trusted).

use std::collections::BTreeMap;

/// Image header (24 octets) plus domain header (16 octets).
const HEADERS_LEN: usize = 40;
/// Image header marker: all ones.
const MARKER: u64 = u64::MAX;
/// Image header id: "XENF".
const IMAGE_ID: u32 = 0x5845_4e46;
/// Record type END.
const REC_END: u32 = 0;
/// Record type PAGE_DATA.
const REC_PAGE_DATA: u32 = 1;
/// Bytes per page (x86 page_shift 12, which the domain header confirms).
const PAGE_SIZE: u64 = 4096;

/// What the meter saw so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Octets of the stream, headers included.
    pub bytes: u64,
    /// Complete records, END included.
    pub records: u64,
    /// Complete records per record type code.
    pub records_by_type: BTreeMap<u32, u64>,
    /// PAGE_DATA entries (pfns sent, with or without data).
    pub page_entries: u64,
    /// Pages of data carried by PAGE_DATA records.
    pub data_pages: u64,
    /// The END record has been seen.
    pub ended: bool,
}

#[derive(Debug)]
enum State {
    /// Collecting the headers.
    Headers,
    /// Collecting an 8-octet record header.
    RecordHeader,
    /// In a record body; `left` octets of body and padding remain.
    Body { rtype: u32, length: u32, left: u64 },
    /// After END: nothing may follow.
    Done,
}

/// An incremental stream follower: feed it the stream in any pieces.
#[derive(Debug)]
pub struct StreamMeter {
    state: State,
    /// Partial header bytes (headers, record header or PAGE_DATA count).
    buf: Vec<u8>,
    big_endian: bool,
    counts: StreamCounts,
}

impl Default for StreamMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamMeter {
    /// A meter at the start of a stream.
    pub fn new() -> StreamMeter {
        StreamMeter {
            state: State::Headers,
            buf: Vec::with_capacity(HEADERS_LEN),
            big_endian: false,
            counts: StreamCounts::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> &StreamCounts {
        &self.counts
    }

    fn u32_at(&self, b: &[u8], at: usize) -> u32 {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    }

    /// Takes the next piece of the stream. An error means the data is not
    /// a libxc stream this meter can follow; later calls keep failing.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.state {
                State::Headers => {
                    let took = fill(&mut self.buf, HEADERS_LEN, data);
                    data = &data[took..];
                    self.counts.bytes += took as u64;
                    if self.buf.len() == HEADERS_LEN {
                        self.parse_headers()?;
                        self.buf.clear();
                        self.state = State::RecordHeader;
                    }
                }
                State::RecordHeader => {
                    let took = fill(&mut self.buf, 8, data);
                    data = &data[took..];
                    self.counts.bytes += took as u64;
                    if self.buf.len() == 8 {
                        let rtype = self.u32_at(&self.buf, 0);
                        let length = self.u32_at(&self.buf, 4);
                        self.buf.clear();
                        // count and reserved words come first.
                        if rtype == REC_PAGE_DATA && length < 8 {
                            return Err(format!("PAGE_DATA record of {length} octets"));
                        }
                        let padded = (u64::from(length) + 7) & !7;
                        self.state = State::Body {
                            rtype,
                            length,
                            left: padded,
                        };
                        if padded == 0 {
                            self.finish_record(rtype, length)?;
                        }
                    }
                }
                State::Body {
                    rtype,
                    length,
                    left,
                } => {
                    // A PAGE_DATA body starts with its entry count.
                    if rtype == REC_PAGE_DATA && self.buf.len() < 4 {
                        let took = fill(&mut self.buf, 4, data);
                        data = &data[took..];
                        self.counts.bytes += took as u64;
                        self.advance_body(rtype, length, left - took as u64)?;
                        continue;
                    }
                    let took = (left.min(data.len() as u64)) as usize;
                    data = &data[took..];
                    self.counts.bytes += took as u64;
                    self.advance_body(rtype, length, left - took as u64)?;
                }
                State::Done => {
                    return Err(format!("{} octets after the END record", data.len()));
                }
            }
        }
        Ok(())
    }

    fn advance_body(&mut self, rtype: u32, length: u32, left: u64) -> Result<(), String> {
        if left == 0 {
            self.finish_record(rtype, length)
        } else {
            self.state = State::Body {
                rtype,
                length,
                left,
            };
            Ok(())
        }
    }

    fn parse_headers(&mut self) -> Result<(), String> {
        let b = &self.buf;
        let marker = u64::from_be_bytes(b[0..8].try_into().expect("8 octets"));
        let id = u32::from_be_bytes(b[8..12].try_into().expect("4 octets"));
        let options = u16::from_be_bytes(b[16..18].try_into().expect("2 octets"));
        if marker != MARKER || id != IMAGE_ID {
            return Err(format!(
                "not a libxc migration stream (marker {marker:#x}, id {id:#x})"
            ));
        }
        self.big_endian = options & 1 != 0;
        let page_shift = {
            let w = [b[28], b[29]];
            if self.big_endian {
                u16::from_be_bytes(w)
            } else {
                u16::from_le_bytes(w)
            }
        };
        if page_shift != 12 {
            return Err(format!("unexpected page_shift {page_shift}"));
        }
        Ok(())
    }

    fn finish_record(&mut self, rtype: u32, length: u32) -> Result<(), String> {
        if rtype == REC_PAGE_DATA {
            let count = u64::from(self.u32_at(&self.buf, 0));
            self.buf.clear();
            let payload = u64::from(length)
                .checked_sub(8 + 8 * count)
                .ok_or_else(|| format!("PAGE_DATA record of {length} octets for {count} pfns"))?;
            if payload % PAGE_SIZE != 0 {
                return Err(format!(
                    "PAGE_DATA record of {length} octets: {payload} octets of data is not whole pages"
                ));
            }
            self.counts.page_entries += count;
            self.counts.data_pages += payload / PAGE_SIZE;
        }
        self.counts.records += 1;
        *self.counts.records_by_type.entry(rtype).or_insert(0) += 1;
        if rtype == REC_END {
            self.counts.ended = true;
            self.state = State::Done;
        } else {
            self.state = State::RecordHeader;
        }
        Ok(())
    }
}

/// Appends to `buf` up to `want` octets in all from `data`; returns how
/// many it took.
fn fill(buf: &mut Vec<u8>, want: usize, data: &[u8]) -> usize {
    let take = want.saturating_sub(buf.len()).min(data.len());
    buf.extend_from_slice(&data[..take]);
    take
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(big_endian: bool) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&MARKER.to_be_bytes());
        v.extend_from_slice(&IMAGE_ID.to_be_bytes());
        v.extend_from_slice(&3u32.to_be_bytes());
        v.extend_from_slice(&u16::from(big_endian).to_be_bytes());
        v.extend_from_slice(&[0; 6]);
        let put32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        put32(&mut v, 2); // x86 HVM
        v.extend_from_slice(&if big_endian {
            12u16.to_be_bytes()
        } else {
            12u16.to_le_bytes()
        });
        v.extend_from_slice(&[0; 2]);
        put32(&mut v, 4);
        put32(&mut v, 17);
        v
    }

    fn record(rtype: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&rtype.to_le_bytes());
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    /// A PAGE_DATA body: `pfns` entries of which the first `with_data` carry a page.
    fn page_data(pfns: u32, with_data: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&pfns.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for pfn in 0..u64::from(pfns) {
            b.extend_from_slice(&pfn.to_le_bytes());
        }
        b.extend(std::iter::repeat(0xa5).take(with_data as usize * 4096));
        b
    }

    fn sample_stream() -> Vec<u8> {
        let mut s = headers(false);
        s.extend(record(0x14, &[1, 2, 3])); // padded body
        s.extend(record(REC_PAGE_DATA, &page_data(3, 2)));
        s.extend(record(REC_PAGE_DATA, &page_data(5, 5)));
        s.extend(record(REC_END, &[]));
        s
    }

    #[test]
    fn counts_records_pages_and_octets_of_a_whole_stream() {
        let s = sample_stream();
        let mut m = StreamMeter::new();
        m.feed(&s).unwrap();
        let c = m.counts();
        assert_eq!(c.bytes, s.len() as u64);
        assert_eq!(c.records, 4);
        assert_eq!(c.records_by_type[&REC_PAGE_DATA], 2);
        assert_eq!(c.page_entries, 8);
        assert_eq!(c.data_pages, 7);
        assert!(c.ended);
    }

    #[test]
    fn counts_are_the_same_whatever_the_piece_sizes() {
        let s = sample_stream();
        let mut whole = StreamMeter::new();
        whole.feed(&s).unwrap();
        for step in [1, 3, 7, 8, 4095, 4097] {
            let mut m = StreamMeter::new();
            for piece in s.chunks(step) {
                m.feed(piece).unwrap();
            }
            assert_eq!(m.counts(), whole.counts(), "pieces of {step}");
        }
    }

    #[test]
    fn follows_a_big_endian_stream() {
        let mut s = headers(true);
        let mut rec = Vec::new();
        rec.extend_from_slice(&REC_END.to_be_bytes());
        rec.extend_from_slice(&0u32.to_be_bytes());
        s.extend(rec);
        let mut m = StreamMeter::new();
        m.feed(&s).unwrap();
        assert!(m.counts().ended);
    }

    #[test]
    fn rejects_data_that_is_not_a_libxc_stream() {
        let mut m = StreamMeter::new();
        let err = m.feed(&[0u8; 64]).unwrap_err();
        assert!(err.contains("not a libxc migration stream"), "{err}");
    }

    #[test]
    fn rejects_page_data_whose_length_disagrees_with_its_count() {
        let mut s = headers(false);
        let mut body = page_data(2, 1);
        body[0] = 9; // claims 9 pfns
        s.extend(record(REC_PAGE_DATA, &body));
        let err = StreamMeter::new().feed(&s).unwrap_err();
        assert!(err.contains("PAGE_DATA record"), "{err}");
    }

    #[test]
    fn rejects_octets_after_end() {
        let mut s = sample_stream();
        s.extend_from_slice(&[0; 8]);
        let err = StreamMeter::new().feed(&s).unwrap_err();
        assert!(err.contains("after the END record"), "{err}");
    }
}
