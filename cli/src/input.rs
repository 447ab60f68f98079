//! Opening the input (a file or stdin) with a large buffer, and guessing
//! its format from the first octets.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use xcmig_stream::libxl::LIBXL_IDENT;
use xcmig_stream::xenstore::XS_IDENT;
use xcmig_stream::xl::XL_MAGIC;

use crate::walk::Format;

/// Read buffer size: large reads keep a multi-GiB walk I/O bound.
const BUF_SIZE: usize = 1 << 20;

/// Octets looked at to guess the format.
const PROBE_LEN: usize = 8;

/// The input with the probed octets put back in front.
pub type Input = io::Chain<Cursor<Vec<u8>>, BufReader<Box<dyn Read>>>;

/// Opens `path` (`-` for stdin).
pub fn open(path: &Path) -> io::Result<BufReader<Box<dyn Read>>> {
    let src: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path)?)
    };
    Ok(BufReader::with_capacity(BUF_SIZE, src))
}

/// Reads up to [`PROBE_LEN`] octets and returns the guessed format and the
/// whole input (probe included). Unrecognised input is treated as libxc,
/// whose reader then names what is wrong with its first octets.
pub fn detect(mut src: BufReader<Box<dyn Read>>) -> io::Result<(Format, Input)> {
    let mut probe = Vec::with_capacity(PROBE_LEN);
    (&mut src).take(PROBE_LEN as u64).read_to_end(&mut probe)?;
    let format = guess(&probe);
    Ok((format, Cursor::new(probe).chain(src)))
}

/// The format the first octets announce.
pub fn guess(probe: &[u8]) -> Format {
    if probe.starts_with(&LIBXL_IDENT.to_be_bytes()) {
        Format::Libxl
    } else if probe.len() >= PROBE_LEN && probe.starts_with(&XL_MAGIC[..PROBE_LEN]) {
        Format::Xl
    } else if probe.starts_with(&XS_IDENT) {
        Format::Xenstore
    } else {
        Format::Libxc
    }
}
