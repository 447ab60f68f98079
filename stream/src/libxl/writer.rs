//! Writing a libxl stream.

use std::io::{self, Write};

use super::record::{LibxlHeader, LibxlRecord};
use crate::output::write_all_vectored;
use crate::wire::{padded_len, Endian};

/// Writes a libxl stream: the header on creation, then records with their
/// padding. After a `LIBXC_CONTEXT` record, write the libxc stream to
/// [`inner_mut`](Self::inner_mut).
#[derive(Debug)]
pub struct LibxlWriter<W> {
    inner: W,
    endianness: Endian,
}

impl<W: Write> LibxlWriter<W> {
    /// Writes `header` and returns the writer.
    pub fn new(mut inner: W, header: LibxlHeader) -> io::Result<Self> {
        inner.write_all(&header.to_bytes())?;
        Ok(LibxlWriter {
            inner,
            endianness: header.endianness(),
        })
    }

    /// A writer that continues a stream whose `header` was already written,
    /// e.g. after the sink was handed to a libxc writer and back.
    pub fn resume(inner: W, header: &LibxlHeader) -> Self {
        LibxlWriter {
            inner,
            endianness: header.endianness(),
        }
    }

    /// Writes one record with its padding. Fails (writing nothing) when the
    /// body does not fit the 32-bit length field.
    pub fn write_record(&mut self, rec: &LibxlRecord) -> io::Result<()> {
        let body_len = u32::try_from(rec.body_len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "libxl record body over 4 GiB")
        })?;
        let e = self.endianness;
        let mut head = Vec::with_capacity(16);
        e.put_u32(&mut head, rec.rtype());
        e.put_u32(&mut head, body_len);
        let payload: &[u8] = match rec {
            LibxlRecord::End | LibxlRecord::LibxcContext | LibxlRecord::CheckpointEnd => &[],
            LibxlRecord::EmulatorXenstoreData { emulator, data } => {
                e.put_u32(&mut head, emulator.id);
                e.put_u32(&mut head, emulator.index);
                data
            }
            LibxlRecord::EmulatorContext { emulator, blob } => {
                e.put_u32(&mut head, emulator.id);
                e.put_u32(&mut head, emulator.index);
                blob
            }
            LibxlRecord::CheckpointState { control } => {
                e.put_u32(&mut head, control.to_u32());
                &[]
            }
            LibxlRecord::Optional { body, .. } => body,
        };
        let pad = (padded_len(u64::from(body_len)) - u64::from(body_len)) as usize;
        let zeros = [0u8; 8];
        write_all_vectored(&mut self.inner, &[&head, payload, &zeros[..pad]])
    }

    /// The byte sink, for writing the inline libxc stream.
    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Flushes and gives the sink back.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}
