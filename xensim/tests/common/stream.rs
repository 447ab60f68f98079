//! A small, independent reader of libxc migration streams (spec rev 2/3),
//! enough to count what a saver sent: records by type, PAGE_DATA entries
//! and how often each pfn was sent. `verify-stream-v2` checks conformance;
//! this only gathers figures for the evidence.

use std::collections::HashMap;

/// Record type of PAGE_DATA.
pub const REC_PAGE_DATA: u32 = 1;
/// Record type of END.
pub const REC_END: u32 = 0;

const IMAGE_HEADER_LEN: usize = 24;
const DOMAIN_HEADER_LEN: usize = 16;
const IHDR_MARKER: u64 = u64::MAX;
const IHDR_ID: u32 = 0x5845_4e46; // "XENF"
const PAGE_SIZE: usize = 4096;

/// Page types (upper nibble of a PAGE_DATA entry) that carry no data.
const XTAB: u64 = 0xf;
const BROKEN: u64 = 0xd;
const XALLOC: u64 = 0xe;

/// Figures gathered from one stream.
#[derive(Debug, Default)]
pub struct StreamSummary {
    /// Stream version from the image header (2 or 3).
    pub version: u32,
    /// Guest type from the domain header (1 x86 PV, 2 x86 HVM; PVH streams say HVM).
    pub guest_type: u32,
    /// Records seen, by type, in stream order of first appearance.
    pub records: Vec<(u32, usize)>,
    /// PAGE_DATA entries that carried a page.
    pub pages_with_data: u64,
    /// Distinct pfns sent with data.
    pub distinct_pfns: u64,
    /// Pfns sent with data more than once (live rounds resend dirty pages).
    pub resent_pfns: u64,
    /// The largest number of times one pfn was sent.
    pub max_sends_per_pfn: u32,
    /// Whether the stream ended with an END record.
    pub ended: bool,
}

impl StreamSummary {
    /// How many records of a type the stream holds.
    pub fn count(&self, rec_type: u32) -> usize {
        self.records
            .iter()
            .find(|(t, _)| *t == rec_type)
            .map_or(0, |(_, n)| *n)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Walks a whole stream held in memory.
pub fn summarise(data: &[u8]) -> Result<StreamSummary, String> {
    if data.len() < IMAGE_HEADER_LEN + DOMAIN_HEADER_LEN {
        return Err(format!(
            "stream of {} bytes is shorter than its headers",
            data.len()
        ));
    }
    let marker = u64::from_be_bytes(data[0..8].try_into().expect("8 bytes"));
    if marker != IHDR_MARKER || be_u32(data, 8) != IHDR_ID {
        return Err("not a libxc migration stream (bad marker or id)".into());
    }
    let mut s = StreamSummary {
        version: be_u32(data, 12),
        guest_type: le_u32(data, IMAGE_HEADER_LEN),
        ..StreamSummary::default()
    };
    let mut sends: HashMap<u64, u32> = HashMap::new();
    let mut pos = IMAGE_HEADER_LEN + DOMAIN_HEADER_LEN;
    while pos < data.len() {
        if data.len() - pos < 8 {
            return Err(format!("truncated record header at offset {pos}"));
        }
        let rtype = le_u32(data, pos);
        let len = le_u32(data, pos + 4) as usize;
        let body_start = pos + 8;
        let padded = len.div_ceil(8) * 8;
        if data.len() - body_start < padded {
            return Err(format!(
                "record type {rtype:#x} at offset {pos} is truncated"
            ));
        }
        let body = &data[body_start..body_start + len];
        match s.records.iter_mut().find(|(t, _)| *t == rtype) {
            Some((_, n)) => *n += 1,
            None => s.records.push((rtype, 1)),
        }
        if rtype == REC_PAGE_DATA {
            if body.len() < 8 {
                return Err(format!("PAGE_DATA at offset {pos} is too short"));
            }
            let count = le_u32(body, 0) as usize;
            if body.len() < 8 + count * 8 {
                return Err(format!(
                    "PAGE_DATA at offset {pos} lists more pfns than it holds"
                ));
            }
            let mut data_pages = 0usize;
            for i in 0..count {
                let entry = le_u64(body, 8 + i * 8);
                let ptype = entry >> 60;
                let pfn = entry & ((1u64 << 52) - 1);
                if ptype != XTAB && ptype != BROKEN && ptype != XALLOC {
                    data_pages += 1;
                    *sends.entry(pfn).or_default() += 1;
                }
            }
            if body.len() != 8 + count * 8 + data_pages * PAGE_SIZE {
                return Err(format!(
                    "PAGE_DATA at offset {pos}: {} bytes for {count} entries and {data_pages} pages",
                    body.len()
                ));
            }
            s.pages_with_data += data_pages as u64;
        }
        pos = body_start + padded;
        if rtype == REC_END {
            s.ended = true;
            break;
        }
    }
    s.distinct_pfns = sends.len() as u64;
    s.resent_pfns = sends.values().filter(|&&n| n > 1).count() as u64;
    s.max_sends_per_pfn = sends.values().copied().max().unwrap_or(0);
    Ok(s)
}
