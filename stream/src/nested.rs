//! A libxl stream and the libxc stream inline in it, read in turn over one
//! input: the hand-off between the two layers, written once for every tool
//! that walks a whole libxl stream (`xcmig verify`/`inspect`, the fuzz
//! target).
//!
//! The libxl layer never knows the length of the libxc stream, so both
//! readers take turns on the same bytes: libxc after LIBXC_CONTEXT and after
//! each CHECKPOINT_END, libxl after libxc's END and CHECKPOINT. Both hold a
//! [`SharedInput`] handle on the input; [`NestedReader`] keeps their offsets
//! in step and tells the [`LibxlGrammar`] the libxc milestones it needs.
//!
//! ```text
//! loop {
//!     (pos, rec) = n.next_record()?        // a libxl record
//!     match n.check(pos, &rec)? {          // the libxl grammar
//!         LibxlRecord => continue,
//!         Done => break,
//!         StartLibxc => n.start_libxc(opts)?,
//!         ResumeLibxc => n.resume_libxc(),
//!     }
//!     read n.libxc_mut() until END, CHECKPOINT or its end
//!     n.libxc_stopped()                    // hands back to libxl
//! }
//! ```

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read};

use crate::libxc::{DomainType, Error, Reader, ReaderOptions, StreamEnd};
use crate::libxl::{
    GuestKind, LibxlError, LibxlGrammar, LibxlNext, LibxlReader, LibxlRecord, LibxlWarning,
    RecordPos,
};

/// A `Read` that several readers share in turn. Reads never overlap (one
/// reader is driven at a time), so the `RefCell` borrow cannot conflict.
#[derive(Debug)]
pub struct SharedInput<'a, R>(&'a RefCell<R>);

impl<'a, R> SharedInput<'a, R> {
    /// A handle on `input`; clone it for each reader.
    pub fn new(input: &'a RefCell<R>) -> Self {
        SharedInput(input)
    }
}

impl<R> Clone for SharedInput<'_, R> {
    fn clone(&self) -> Self {
        SharedInput(self.0)
    }
}

impl<R: Read> Read for SharedInput<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// Why [`NestedReader::start_libxc`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The libxc headers are invalid.
    Libxc(Error),
    /// The libxc domain header contradicts the libxl records read before it
    /// (emulator records for a PV guest).
    Libxl(LibxlError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Libxc(e) => e.fmt(f),
            StartError::Libxl(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

/// Where the libxc stream handed control back to the libxl layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibxcStop {
    /// libxc END: libxl records follow, up to libxl END.
    End,
    /// libxc CHECKPOINT: the libxl records of the checkpoint follow, up to
    /// CHECKPOINT_END.
    Checkpoint,
    /// The input ended after a checkpoint: the sender stopped (Remus/COLO
    /// failover); the stream is complete as far as it goes.
    EofAfterCheckpoint,
}

/// A libxl stream with its inline libxc stream: the libxl reader and
/// grammar, the libxc reader once the libxc stream has started, and the
/// offsets of both kept in step (see the module documentation).
#[derive(Debug)]
pub struct NestedReader<'a, R> {
    input: SharedInput<'a, R>,
    libxl: LibxlReader<SharedInput<'a, R>>,
    grammar: LibxlGrammar,
    libxc: Option<Reader<SharedInput<'a, R>>>,
}

impl<'a, R: Read> NestedReader<'a, R> {
    /// Reads and checks the libxl header, which starts `offset` octets into
    /// the input (0, or after an `xl` save-file header).
    pub fn new(input: SharedInput<'a, R>, offset: u64) -> Result<Self, LibxlError> {
        Ok(NestedReader {
            libxl: LibxlReader::with_offset(input.clone(), offset)?,
            input,
            grammar: LibxlGrammar::new(),
            libxc: None,
        })
    }

    /// Reads the next libxl record (layout checked; order is [`check`](Self::check)'s job).
    pub fn next_record(&mut self) -> Result<(RecordPos, LibxlRecord), LibxlError> {
        self.libxl.next_record()
    }

    /// Checks a record just read against the libxl grammar and says what
    /// comes next.
    pub fn check(&mut self, pos: RecordPos, rec: &LibxlRecord) -> Result<LibxlNext, LibxlError> {
        self.grammar.on_record(pos, rec)
    }

    /// [`LibxlNext::StartLibxc`]: opens the libxc stream where the libxl
    /// reader stopped (`options.start_offset` is set to that offset) and
    /// tells the grammar the guest type. When only the guest type is refused
    /// ([`StartError::Libxl`]), the libxc reader is open all the same, so
    /// [`libxc`](Self::libxc) shows its headers.
    pub fn start_libxc(&mut self, options: ReaderOptions) -> Result<(), StartError> {
        let options = ReaderOptions {
            start_offset: self.libxl.offset(),
            ..options
        };
        let reader =
            Reader::with_options(self.input.clone(), options).map_err(StartError::Libxc)?;
        let guest = match reader.domain_header().domain_type {
            DomainType::X86Pv => GuestKind::Pv,
            DomainType::X86Hvm => GuestKind::Hvm,
        };
        self.libxc = Some(reader);
        self.grammar.set_guest(guest).map_err(StartError::Libxl)
    }

    /// [`LibxlNext::ResumeLibxc`]: the libxc stream continues where the
    /// libxl reader stopped. `None` if it never started (the grammar rules
    /// that out).
    pub fn resume_libxc(&mut self) -> Option<&mut Reader<SharedInput<'a, R>>> {
        let offset = self.libxl.offset();
        let reader = self.libxc.as_mut()?;
        reader.set_offset(offset);
        Some(reader)
    }

    /// The libxc reader stopped after END, after a CHECKPOINT record, or
    /// at the end of the input: accounts for the octets it read in the
    /// libxl reader and tells the grammar. Call it only at those points;
    /// `None` if the libxc stream never started.
    pub fn libxc_stopped(&mut self) -> Option<LibxcStop> {
        let reader = self.libxc.as_ref()?;
        // The libxc reader only moves forward from where the libxl reader
        // handed over, so this never saturates when called as documented.
        self.libxl
            .advance(reader.offset().saturating_sub(self.libxl.offset()));
        let stop = match reader.end() {
            Some(StreamEnd::EofAfterCheckpoint) => LibxcStop::EofAfterCheckpoint,
            // END (a main stream never ends as a back channel does).
            Some(_) => LibxcStop::End,
            None => LibxcStop::Checkpoint,
        };
        match stop {
            LibxcStop::End => self.grammar.libxc_end(),
            LibxcStop::Checkpoint => self.grammar.libxc_checkpoint(),
            LibxcStop::EofAfterCheckpoint => {}
        }
        Some(stop)
    }

    /// The libxl reader (header, offset, records read).
    pub fn libxl(&self) -> &LibxlReader<SharedInput<'a, R>> {
        &self.libxl
    }

    /// The libxl grammar (checkpoints seen, whether inside one, done).
    pub fn grammar(&self) -> &LibxlGrammar {
        &self.grammar
    }

    /// The libxc reader, once [`start_libxc`](Self::start_libxc) opened it.
    pub fn libxc(&self) -> Option<&Reader<SharedInput<'a, R>>> {
        self.libxc.as_ref()
    }

    /// The libxc reader, for reading its records.
    pub fn libxc_mut(&mut self) -> Option<&mut Reader<SharedInput<'a, R>>> {
        self.libxc.as_mut()
    }

    /// Byte offset (in the whole input) of the next unread octet of the
    /// libxl layer.
    pub fn offset(&self) -> u64 {
        self.libxl.offset()
    }

    /// Drains the libxl reader's and grammar's warnings, in that order.
    /// (The libxc reader keeps its own: [`Reader::take_warnings`].)
    pub fn take_libxl_warnings(&mut self) -> Vec<LibxlWarning> {
        let mut w = self.libxl.take_warnings();
        w.extend(self.grammar.take_warnings());
        w
    }

    /// A handle on the input, e.g. to check that nothing follows libxl END.
    pub fn input(&self) -> SharedInput<'a, R> {
        self.input.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libxc::{DomainHeader, HvmParam, Item, Record, Writer};
    use crate::libxl::{EmulatorHeader, LibxlErrorKind, LibxlHeader, LibxlWriter};
    use crate::{PageType, PfnEntry, PAGE_SIZE};

    fn emulator() -> LibxlRecord {
        LibxlRecord::EmulatorContext {
            emulator: EmulatorHeader { id: 2, index: 0 },
            blob: vec![7; 5],
        }
    }

    /// A libxl stream around an HVM libxc stream with `checkpoints`
    /// checkpoints (each carrying one emulator record); with `end` false it
    /// stops after the libxl records of the last checkpoint, as a sender
    /// that failed over does.
    fn hvm_libxl(checkpoints: u32, end: bool) -> Vec<u8> {
        let mut lx = LibxlWriter::new(Vec::new(), LibxlHeader::new()).unwrap();
        lx.write_record(&LibxlRecord::LibxcContext).unwrap();
        let out = lx.into_inner().unwrap();
        let mut w = Writer::new(out, &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
        w.write_static_data_end().unwrap();
        let page = [3u8; PAGE_SIZE];
        let pass = |w: &mut Writer<Vec<u8>>| {
            w.write_page_data(&[PfnEntry::new(1, PageType::NoTab)], &[&page])
                .unwrap();
            w.write_hvm_params(&[HvmParam { index: 2, value: 1 }])
                .unwrap();
            w.write_hvm_context(&[1; 16]).unwrap();
        };
        pass(&mut w);
        for cp in 0..checkpoints {
            w.write_checkpoint().unwrap();
            let mut lx = LibxlWriter::resume(std::mem::take(w.get_mut()), &LibxlHeader::new());
            lx.write_record(&emulator()).unwrap();
            lx.write_record(&LibxlRecord::CheckpointEnd).unwrap();
            *w.get_mut() = lx.into_inner().unwrap();
            if cp + 1 == checkpoints && !end {
                return w.into_inner();
            }
            pass(&mut w);
        }
        w.write_end().unwrap();
        let mut lx = LibxlWriter::resume(w.into_inner(), &LibxlHeader::new());
        lx.write_record(&emulator()).unwrap();
        lx.write_record(&LibxlRecord::End).unwrap();
        lx.into_inner().unwrap()
    }

    /// Walks `bytes` as the tools do; returns the stops seen and the final
    /// libxl offset.
    fn walk(bytes: &[u8]) -> Result<(Vec<LibxcStop>, u64), String> {
        let cell = RefCell::new(bytes);
        let mut n = NestedReader::new(SharedInput::new(&cell), 0).map_err(|e| e.to_string())?;
        let mut stops = Vec::new();
        loop {
            let (pos, rec) = n.next_record().map_err(|e| e.to_string())?;
            assert_eq!(n.offset(), pos.offset + pos.wire_len());
            match n.check(pos, &rec).map_err(|e| e.to_string())? {
                LibxlNext::LibxlRecord => continue,
                LibxlNext::Done => return Ok((stops, n.offset())),
                LibxlNext::StartLibxc => n.start_libxc(ReaderOptions::default()).unwrap(),
                LibxlNext::ResumeLibxc => {
                    n.resume_libxc().unwrap();
                }
            }
            let xc = n.libxc_mut().unwrap();
            loop {
                match xc.next_item().map_err(|e| e.to_string())? {
                    Some(Item::Record(Record::End | Record::Checkpoint)) | None => break,
                    Some(_) => {}
                }
            }
            let stop = n.libxc_stopped().unwrap();
            stops.push(stop);
            assert_eq!(n.offset(), n.libxc().unwrap().offset());
            if stop == LibxcStop::EofAfterCheckpoint {
                return Ok((stops, n.offset()));
            }
        }
    }

    #[test]
    fn a_plain_stream_hands_over_once_and_ends_at_the_last_octet() {
        let bytes = hvm_libxl(0, true);
        let (stops, end) = walk(&bytes).unwrap();
        assert_eq!(stops, [LibxcStop::End]);
        assert_eq!(end, bytes.len() as u64);
    }

    #[test]
    fn checkpoints_alternate_the_layers_with_offsets_in_step() {
        let bytes = hvm_libxl(2, true);
        let (stops, end) = walk(&bytes).unwrap();
        use LibxcStop::*;
        assert_eq!(stops, [Checkpoint, Checkpoint, End]);
        assert_eq!(end, bytes.len() as u64);
    }

    #[test]
    fn eof_after_a_checkpoint_is_reported_as_such() {
        let bytes = hvm_libxl(2, false);
        let (stops, end) = walk(&bytes).unwrap();
        use LibxcStop::*;
        assert_eq!(stops, [Checkpoint, Checkpoint, EofAfterCheckpoint]);
        assert_eq!(end, bytes.len() as u64);
    }

    #[test]
    fn a_pv_guest_after_emulator_records_is_refused_with_the_headers_read() {
        let mut lx = LibxlWriter::new(Vec::new(), LibxlHeader::new()).unwrap();
        lx.write_record(&emulator()).unwrap();
        lx.write_record(&LibxlRecord::LibxcContext).unwrap();
        let mut bytes = lx.into_inner().unwrap();
        let w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Pv, 4, 17)).unwrap();
        bytes.extend(w.into_inner());
        let cell = RefCell::new(&bytes[..]);
        let mut n = NestedReader::new(SharedInput::new(&cell), 0).unwrap();
        for _ in 0..2 {
            let (pos, rec) = n.next_record().unwrap();
            n.check(pos, &rec).unwrap();
        }
        match n.start_libxc(ReaderOptions::default()) {
            Err(StartError::Libxl(e)) => assert_eq!(e.kind, LibxlErrorKind::EmulatorForPv),
            other => panic!("{other:?}"),
        }
        let xc = n.libxc().unwrap();
        assert_eq!(xc.domain_header().domain_type, DomainType::X86Pv);
        assert_eq!(xc.offset(), bytes.len() as u64);
        assert!(
            !n.take_libxl_warnings().is_empty(),
            "emulator before LIBXC_CONTEXT"
        );
    }

    #[test]
    fn bad_libxc_headers_fail_at_their_absolute_offset_and_nothing_is_resumed_unstarted() {
        let mut lx = LibxlWriter::new(Vec::new(), LibxlHeader::new()).unwrap();
        lx.write_record(&LibxlRecord::LibxcContext).unwrap();
        let mut bytes = lx.into_inner().unwrap();
        bytes.extend([0u8; 40]);
        let cell = RefCell::new(&bytes[..]);
        let mut n = NestedReader::new(SharedInput::new(&cell), 0).unwrap();
        assert!(n.resume_libxc().is_none() && n.libxc_stopped().is_none());
        let (pos, rec) = n.next_record().unwrap();
        assert_eq!(n.check(pos, &rec).unwrap(), LibxlNext::StartLibxc);
        match n.start_libxc(ReaderOptions::default()) {
            Err(StartError::Libxc(e)) => assert_eq!(e.offset, 24),
            other => panic!("{other:?}"),
        }
        assert!(n.libxc().is_none());
    }
}
