//! Reading libxl records, each checked for its layout.

use std::io::Read;

use super::error::{io_err, LibxlError, LibxlErrorKind, LibxlWarning};
use super::record::{
    split_pairs, CheckpointControl, EmulatorHeader, LibxlHeader, LibxlRecord, RecordPos,
};
use super::{
    emulator_id, rec_type, EMULATOR_HEADER_LEN, LIBXL_HEADER_LEN, LIBXL_RECORD_HEADER_LEN,
};
use crate::input::{read_growing, read_upto};
use crate::wire::{padded_len, Endian};

/// Reads libxl records from a byte source, checking each record's layout.
///
/// Ordering between records is [`LibxlGrammar`](super::LibxlGrammar)'s job. After a
/// `LIBXC_CONTEXT` record (or inside a checkpoint) the caller reads the libxc
/// stream from [`inner_mut`](Self::inner_mut) and reports the octets it
/// consumed with [`advance`](Self::advance).
#[derive(Debug)]
pub struct LibxlReader<R> {
    inner: R,
    offset: u64,
    next_index: u64,
    header: LibxlHeader,
    warnings: Vec<LibxlWarning>,
}

impl<R: Read> LibxlReader<R> {
    /// Reads and checks the header at the start of `inner`.
    pub fn new(inner: R) -> Result<Self, LibxlError> {
        Self::with_offset(inner, 0)
    }

    /// Like [`new`](Self::new), for a stream that starts `offset` octets into
    /// the input (e.g. after an `xl` save-file header).
    pub fn with_offset(mut inner: R, offset: u64) -> Result<Self, LibxlError> {
        let mut b = [0u8; 16];
        let got = read_upto(&mut inner, &mut b).map_err(|e| io_err(offset, None, e))?;
        if got < b.len() {
            return Err(LibxlError::header(
                offset + got as u64,
                LibxlErrorKind::Truncated {
                    what: "the stream header",
                    needed: (b.len() - got) as u64,
                },
            ));
        }
        let header = LibxlHeader::parse(&b, offset)?;
        let mut warnings = Vec::new();
        if header.endianness() == Endian::Big {
            warnings.push(LibxlWarning {
                offset: offset + 12,
                record: None,
                message: "big-endian records: libxl on x86 refuses such streams".into(),
            });
        }
        Ok(LibxlReader {
            inner,
            offset: offset + LIBXL_HEADER_LEN,
            next_index: 0,
            header,
            warnings,
        })
    }

    /// The stream header.
    pub fn header(&self) -> &LibxlHeader {
        &self.header
    }

    /// Byte offset (in the whole input) of the next unread octet.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of libxl records read so far.
    pub fn records_read(&self) -> u64 {
        self.next_index
    }

    /// The byte source, for reading the inline libxc stream.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Accounts for `n` octets the caller consumed from
    /// [`inner_mut`](Self::inner_mut).
    pub fn advance(&mut self, n: u64) {
        self.offset += n;
    }

    /// Gives the byte source back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Drains the warnings gathered so far.
    pub fn take_warnings(&mut self) -> Vec<LibxlWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// Reads the next record: header, body and padding, checking the body's
    /// layout for its type and that padding is zero.
    pub fn next_record(&mut self) -> Result<(RecordPos, LibxlRecord), LibxlError> {
        let start = self.offset;
        let mut hb = [0u8; 8];
        let got = read_upto(&mut self.inner, &mut hb).map_err(|e| io_err(start, None, e))?;
        if got == 0 {
            return Err(LibxlError::header(start, LibxlErrorKind::MissingEnd));
        }
        let e = self.header.endianness();
        let rtype = e.u32(&hb, 0);
        let body_len = e.u32(&hb, 4);
        let pos = RecordPos {
            offset: start,
            index: self.next_index,
            rtype,
            body_len,
        };
        if got < hb.len() {
            return Err(LibxlError::at(
                start + got as u64,
                pos,
                LibxlErrorKind::Truncated {
                    what: "a record header",
                    needed: (hb.len() - got) as u64,
                },
            ));
        }
        // Reject before reading the body: an unknown mandatory record cannot
        // be understood, whatever it holds.
        if rtype & rec_type::OPTIONAL_BIT == 0 && rtype > rec_type::CHECKPOINT_STATE {
            return Err(LibxlError::at(start, pos, LibxlErrorKind::UnknownMandatory));
        }
        let body_start = start + LIBXL_RECORD_HEADER_LEN;
        let total = padded_len(u64::from(body_len));
        let raw =
            read_growing(&mut self.inner, total).map_err(|e| io_err(body_start, Some(pos), e))?;
        if (raw.len() as u64) < total {
            let (what, needed) = if (raw.len() as u64) < u64::from(body_len) {
                ("a record body", u64::from(body_len) - raw.len() as u64)
            } else {
                ("record padding", total - raw.len() as u64)
            };
            return Err(LibxlError::at(
                body_start + raw.len() as u64,
                pos,
                LibxlErrorKind::Truncated { what, needed },
            ));
        }
        if raw[body_len as usize..].iter().any(|&b| b != 0) {
            return Err(LibxlError::at(start, pos, LibxlErrorKind::NonZeroPadding));
        }
        let mut body = raw;
        body.truncate(body_len as usize);
        let rec = self.decode(pos, body)?;
        self.offset = start + pos.wire_len();
        self.next_index += 1;
        Ok((pos, rec))
    }

    fn decode(&mut self, pos: RecordPos, body: Vec<u8>) -> Result<LibxlRecord, LibxlError> {
        let e = self.header.endianness();
        let fail = |k| Err(LibxlError::at(pos.offset, pos, k));
        match pos.rtype {
            rec_type::END | rec_type::LIBXC_CONTEXT | rec_type::CHECKPOINT_END => {
                if !body.is_empty() {
                    return fail(LibxlErrorKind::NonEmptyBody);
                }
                Ok(match pos.rtype {
                    rec_type::END => LibxlRecord::End,
                    rec_type::LIBXC_CONTEXT => LibxlRecord::LibxcContext,
                    _ => LibxlRecord::CheckpointEnd,
                })
            }
            rec_type::EMULATOR_XENSTORE_DATA | rec_type::EMULATOR_CONTEXT => {
                if body.len() < EMULATOR_HEADER_LEN {
                    return fail(LibxlErrorKind::ShortEmulatorHeader);
                }
                let emulator = EmulatorHeader {
                    id: e.u32(&body, 0),
                    index: e.u32(&body, 4),
                };
                if emulator.id > emulator_id::QEMU_UPSTREAM {
                    return fail(LibxlErrorKind::ReservedEmulatorId(emulator.id));
                }
                if emulator.id == emulator_id::UNKNOWN && !self.header.legacy() {
                    self.warnings.push(LibxlWarning {
                        offset: pos.offset,
                        record: Some(pos),
                        message: "emulator_id 0 (unknown) outside a legacy-converted stream".into(),
                    });
                }
                let payload = body[EMULATOR_HEADER_LEN..].to_vec();
                if pos.rtype == rec_type::EMULATOR_CONTEXT {
                    return Ok(LibxlRecord::EmulatorContext {
                        emulator,
                        blob: payload,
                    });
                }
                self.check_xenstore(pos, &payload)?;
                Ok(LibxlRecord::EmulatorXenstoreData {
                    emulator,
                    data: payload,
                })
            }
            rec_type::CHECKPOINT_STATE => {
                // libxl writes body_length 4; the spec draws the record as
                // control_id plus a padding word, so 8 with that word zero
                // is accepted too.
                match body.len() {
                    4 => {}
                    8 if body[4..8] == [0; 4] => self.warnings.push(LibxlWarning {
                        offset: pos.offset,
                        record: Some(pos),
                        message: "body_length 8 with a zero padding word (libxl writes 4)".into(),
                    }),
                    _ => return fail(LibxlErrorKind::CheckpointStateLength(pos.body_len)),
                }
                let id = e.u32(&body, 0);
                match CheckpointControl::from_u32(id) {
                    Some(control) => Ok(LibxlRecord::CheckpointState { control }),
                    None => fail(LibxlErrorKind::BadControlId(id)),
                }
            }
            rtype => {
                // Only optional types reach here: unknown mandatory ones were
                // rejected from the header.
                self.warnings.push(LibxlWarning {
                    offset: pos.offset,
                    record: Some(pos),
                    message: "optional record skipped (libxl itself rejects unknown records)"
                        .into(),
                });
                Ok(LibxlRecord::Optional { rtype, body })
            }
        }
    }

    fn check_xenstore(&mut self, pos: RecordPos, data: &[u8]) -> Result<(), LibxlError> {
        let fail = |k| Err(LibxlError::at(pos.offset, pos, k));
        if data.is_empty() {
            return Ok(());
        }
        if data.last() != Some(&0) {
            return fail(LibxlErrorKind::XenstoreNotTerminated);
        }
        let strings = data[..data.len() - 1].split(|&b| b == 0).count();
        if strings % 2 != 0 {
            return fail(LibxlErrorKind::XenstoreOddStrings(strings));
        }
        for (i, (k, v)) in split_pairs(data).into_iter().enumerate() {
            let kname = || String::from_utf8_lossy(k).into_owned();
            if k.is_empty() {
                return fail(LibxlErrorKind::XenstoreEmptyKey(i));
            }
            if k[0] == b'/' {
                return fail(LibxlErrorKind::XenstoreAbsoluteKey(kname()));
            }
            if !k
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"-/_@".contains(&c))
            {
                return fail(LibxlErrorKind::XenstoreBadKeyChar(kname()));
            }
            if v.iter().any(|&c| !(0x20..0x7f).contains(&c)) {
                self.warnings.push(LibxlWarning {
                    offset: pos.offset,
                    record: Some(pos),
                    message: format!("xenstore value of {:?} is not printable ASCII", kname()),
                });
            }
        }
        Ok(())
    }
}
