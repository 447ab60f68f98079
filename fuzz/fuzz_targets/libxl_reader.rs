//! Fuzzes the libxl layer the way `xcmig verify --format libxl` walks it:
//! libxl records and the inline libxc stream read in turn over the same
//! input by the codec's `NestedReader` (after LIBXC_CONTEXT and each
//! CHECKPOINT_END). Nothing may panic, and offsets must never run past the
//! input.
#![no_main]

use std::cell::RefCell;
use std::io::Read;

use libfuzzer_sys::fuzz_target;
use xcmig_stream::libxl::LibxlNext;
use xcmig_stream::nested::{LibxcStop, NestedReader, SharedInput};
use xcmig_stream::{Item, Reader, ReaderOptions, Record};

/// Reads libxc records until END or CHECKPOINT; false on error or EOF.
fn libxc_until_stop<R: Read>(xc: &mut Reader<R>) -> bool {
    loop {
        match xc.next_item() {
            Ok(Some(Item::Record(Record::End))) | Ok(Some(Item::Record(Record::Checkpoint))) => {
                return true
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let cell = RefCell::new(data);
    let Ok(mut n) = NestedReader::new(SharedInput::new(&cell), 0) else {
        return;
    };
    // Each record consumes at least 8 octets, so this bounds the loop.
    for _ in 0..=(data.len() / 8) {
        let Ok((pos, rec)) = n.next_record() else {
            return;
        };
        assert!(pos.offset + pos.wire_len() <= len);
        assert_eq!(n.offset(), pos.offset + pos.wire_len());
        let _ = rec.xenstore_pairs();
        let Ok(next) = n.check(pos, &rec) else {
            return;
        };
        match next {
            LibxlNext::LibxlRecord => continue,
            LibxlNext::Done => return,
            LibxlNext::StartLibxc => {
                if n.start_libxc(ReaderOptions::default()).is_err() {
                    return;
                }
            }
            LibxlNext::ResumeLibxc => {
                if n.resume_libxc().is_none() {
                    return;
                }
            }
        }
        let Some(reader) = n.libxc_mut() else {
            return;
        };
        let stopped = libxc_until_stop(reader);
        assert!(reader.offset() <= len);
        if !stopped {
            return;
        }
        let stop = n.libxc_stopped();
        assert!(matches!(stop, Some(LibxcStop::End | LibxcStop::Checkpoint)));
        assert!(n.offset() <= len);
    }
});
