//! Fuzzes the libxl layer the way `xcmig verify --format libxl` walks it:
//! libxl records through `LibxlReader` and `LibxlGrammar`, with the inline
//! libxc stream read by the codec's `Reader` over the same input after
//! LIBXC_CONTEXT and each CHECKPOINT_END. Nothing may panic, and offsets
//! must never run past the input.
#![no_main]

use std::cell::RefCell;
use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use xcmig_stream::libxl::{GuestKind, LibxlGrammar, LibxlNext, LibxlReader};
use xcmig_stream::{DomainType, Item, Reader, ReaderOptions, Record};

/// One input read in turn by the libxl and libxc readers.
struct Shared<'a, 'b>(&'a RefCell<&'b [u8]>);

impl Read for Shared<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

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
    let Ok(mut lx) = LibxlReader::new(Shared(&cell)) else {
        return;
    };
    let mut g = LibxlGrammar::new();
    let mut xc: Option<Reader<Shared<'_, '_>>> = None;
    // Each record consumes at least 8 octets, so this bounds the loop.
    for _ in 0..=(data.len() / 8) {
        let Ok((pos, rec)) = lx.next_record() else {
            return;
        };
        assert!(pos.offset + pos.wire_len() <= len);
        assert_eq!(lx.offset(), pos.offset + pos.wire_len());
        let _ = rec.xenstore_pairs();
        let Ok(next) = g.on_record(pos, &rec) else {
            return;
        };
        let reader = match next {
            LibxlNext::LibxlRecord => continue,
            LibxlNext::Done => return,
            LibxlNext::StartLibxc => {
                let opts = ReaderOptions {
                    start_offset: lx.offset(),
                    ..ReaderOptions::default()
                };
                let Ok(r) = Reader::with_options(Shared(&cell), opts) else {
                    return;
                };
                let guest = match r.domain_header().domain_type {
                    DomainType::X86Pv => GuestKind::Pv,
                    DomainType::X86Hvm => GuestKind::Hvm,
                };
                if g.set_guest(guest).is_err() {
                    return;
                }
                xc.insert(r)
            }
            LibxlNext::ResumeLibxc => {
                let Some(r) = xc.as_mut() else {
                    return;
                };
                r.set_offset(lx.offset());
                r
            }
        };
        let stopped = libxc_until_stop(reader);
        assert!(reader.offset() <= len);
        if !stopped {
            return;
        }
        let checkpoint = reader.end().is_none();
        lx.advance(reader.offset() - lx.offset());
        if checkpoint {
            g.libxc_checkpoint();
        } else {
            g.libxc_end();
        }
    }
});
