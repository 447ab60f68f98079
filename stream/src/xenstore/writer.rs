//! Writing xenstore streams.

use std::io::{self, Write};

use super::record::{XsHeader, XsRecord};
use crate::output::write_all_vectored;
use crate::wire::padded_len;

/// What a record header's `len` counts (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LenMode {
    /// `len` rounded up to 8, padding included: what xenstored writes, and
    /// what both it and a reader following the design accept.
    #[default]
    IncludesPadding,
    /// `len` is the body alone and the padding follows it, as the design
    /// draws it; xenstored misreads such a stream whenever a body is not a
    /// multiple of 8 octets.
    BodyOnly,
}

/// Writes a xenstore stream to any `Write`: the header on creation, then
/// records, then END on [`finish`](Self::finish).
///
/// The writer encodes what it is given; it does not apply the rules
/// between records (write them in an order [`XsGrammar`](super::XsGrammar)
/// accepts).
#[derive(Debug)]
pub struct XsWriter<W> {
    inner: W,
    header: XsHeader,
    mode: LenMode,
}

const ZEROS: [u8; 8] = [0; 8];

impl<W: Write> XsWriter<W> {
    /// Writes `header` and returns a writer whose `len` includes padding.
    pub fn new(inner: W, header: XsHeader) -> io::Result<Self> {
        Self::with_mode(inner, header, LenMode::default())
    }

    /// Like [`new`](Self::new), choosing what `len` counts.
    pub fn with_mode(mut inner: W, header: XsHeader, mode: LenMode) -> io::Result<Self> {
        inner.write_all(&header.to_bytes())?;
        Ok(XsWriter {
            inner,
            header,
            mode,
        })
    }

    /// The header written.
    pub fn header(&self) -> &XsHeader {
        &self.header
    }

    /// Writes one record (END too, though [`finish`](Self::finish) is the
    /// usual way to end).
    pub fn write_record(&mut self, rec: &XsRecord) -> io::Result<()> {
        let e = self.header.endian;
        let body = rec.encode_body(e)?;
        let padded = padded_len(body.len() as u64);
        let len = match self.mode {
            LenMode::IncludesPadding => padded,
            LenMode::BodyOnly => body.len() as u64,
        };
        let len = u32::try_from(len).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "xenstore record over 4 GiB")
        })?;
        let mut head = Vec::with_capacity(8);
        e.put_u32(&mut head, rec.record_type());
        e.put_u32(&mut head, len);
        let pad = &ZEROS[..(padded - body.len() as u64) as usize];
        write_all_vectored(&mut self.inner, &[&head, &body, pad])
    }

    /// Writes END and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_record(&XsRecord::End)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}
