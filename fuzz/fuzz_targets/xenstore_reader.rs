//! Fuzzes the xenstore stream reader and its grammar: no panic, no
//! allocation ahead of the input, every error printable on one line, and
//! whatever it accepts re-encodes through the writer to a stream that reads
//! back to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcmig_stream::xenstore::{read_stream, XsWriter};

fuzz_target!(|data: &[u8]| {
    let s = match read_stream(data) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().contains('\n'));
            return;
        }
    };
    let mut w = XsWriter::new(Vec::new(), s.header).expect("header writes");
    for r in &s.records {
        w.write_record(r).expect("an accepted record re-encodes");
    }
    let bytes = w.finish().expect("END writes");
    let again = read_stream(&bytes[..]).expect("the re-encoded stream is valid");
    assert_eq!(again.records, s.records);
    assert_eq!(again.header, s.header);
});
