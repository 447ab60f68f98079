//! Fuzzes the `xl` save-file header reader: no panic, no allocation ahead
//! of the input, and whatever it accepts re-encodes to the same octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcmig_stream::xl::XlHeader;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let Ok(h) = XlHeader::read_from(&mut rest) else {
        return;
    };
    let used = data.len() - rest.len();
    assert_eq!(h.encoded_len(), used as u64);
    let bytes = h.to_bytes().expect("an accepted header re-encodes");
    assert_eq!(&bytes[..], &data[..used]);
    let _ = h.warnings();
});
