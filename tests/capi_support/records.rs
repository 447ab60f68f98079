//! Little-endian libxc streams taken apart and put together by hand, for
//! the tests that build hostile streams from a valid one (`capi_hostile`,
//! `capi_memory_bound`). Deliberately independent of the codec crate: the
//! streams these tests make are ones the codec would refuse to write.

/// Image header (24 bytes) plus domain header (16 bytes).
pub const HEADERS: usize = 40;

/// The little-endian `u32` at `at`.
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// One record: type, length, body, padding to 8 octets.
pub fn record(rtype: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len() + 7);
    v.extend_from_slice(&rtype.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v.resize(8 + body.len().div_ceil(8) * 8, 0);
    v
}

/// A little-endian stream split into its headers and records (each test
/// adds the edits it needs in its own `impl Parsed`).
#[derive(Clone)]
pub struct Parsed {
    /// The image and domain headers.
    pub headers: Vec<u8>,
    /// Type and body (without padding) of every record, in order.
    pub records: Vec<(u32, Vec<u8>)>,
}

impl Parsed {
    /// Splits a stream that must parse to its end.
    pub fn parse(stream: &[u8]) -> Parsed {
        let mut records = Vec::new();
        let mut off = HEADERS;
        while off + 8 <= stream.len() {
            let rtype = le32(stream, off);
            let len = le32(stream, off + 4) as usize;
            records.push((rtype, stream[off + 8..off + 8 + len].to_vec()));
            off += 8 + len.div_ceil(8) * 8;
        }
        assert_eq!(off, stream.len(), "saved stream does not parse");
        Parsed {
            headers: stream[..HEADERS].to_vec(),
            records,
        }
    }
}
