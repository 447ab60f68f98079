//! Reading helpers shared by the libxc, libxl and `xl` readers.

use std::io::{self, Read};

/// Reads until `buf` is full or the input ends; returns how many octets were
/// read (fewer than `buf.len()` only at end of input). Interrupted reads are
/// retried.
pub(crate) fn read_upto<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads up to `len` octets into a vector that grows only as octets
/// arrive, so that a hostile length cannot force a large allocation; fewer
/// than `len` octets means the input ended.
pub(crate) fn read_growing<R: Read + ?Sized>(r: &mut R, len: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(len).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `step` octets per read, with an interruption
    /// before each.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_upto_fills_across_short_and_interrupted_reads_and_stops_at_eof() {
        let data: Vec<u8> = (0..10).collect();
        let mut r = Trickle {
            data: &data,
            step: 3,
            interrupt: false,
        };
        let mut buf = [0u8; 8];
        assert_eq!(read_upto(&mut r, &mut buf).unwrap(), 8);
        assert_eq!(buf, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(read_upto(&mut r, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], &[8, 9]);
    }

    #[test]
    fn read_growing_allocates_for_what_arrives_not_for_the_claimed_length() {
        let data = [7u8; 100];
        let got = read_growing(&mut &data[..], 1 << 40).unwrap();
        assert_eq!(got, data);
        assert!(got.capacity() < 1 << 20, "capacity {}", got.capacity());
        assert_eq!(read_growing(&mut &data[..], 10).unwrap(), [7u8; 10]);
    }
}
