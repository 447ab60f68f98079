//! Writing helpers shared by the libxc and libxl writers.

use std::io::{self, IoSlice, Write};

/// Most iovecs passed to one `write_vectored` call (Linux `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// Writes all of `parts` with vectored writes, looping on partial writes.
pub fn write_all_vectored<W: Write + ?Sized>(w: &mut W, parts: &[&[u8]]) -> io::Result<()> {
    let mut first = 0; // index of the first part not fully written
    let mut skip = 0; // bytes of parts[first] already written
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len().min(MAX_IOVECS));
    while first < parts.len() {
        if parts[first].len() == skip {
            first += 1;
            skip = 0;
            continue;
        }
        iov.clear();
        iov.push(IoSlice::new(&parts[first][skip..]));
        for p in parts[first + 1..].iter().filter(|p| !p.is_empty()) {
            if iov.len() == MAX_IOVECS {
                break;
            }
            iov.push(IoSlice::new(p));
        }
        let mut n = match w.write_vectored(&iov) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write whole record",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 && first < parts.len() {
            let left = parts[first].len() - skip;
            if n >= left {
                n -= left;
                first += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes one byte per call and fails every other call with EINTR.
    struct Stutter {
        out: Vec<u8>,
        calls: usize,
    }

    impl Write for Stutter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            self.out.push(buf[0]);
            Ok(1)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_write_survives_one_byte_writes_and_eintr() {
        let parts: [&[u8]; 4] = [b"ab", b"", b"cde", b"f"];
        let mut s = Stutter {
            out: Vec::new(),
            calls: 0,
        };
        write_all_vectored(&mut s, &parts).unwrap();
        assert_eq!(s.out, b"abcdef");
    }

    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_write_reports_a_sink_that_takes_nothing() {
        let e = write_all_vectored(&mut Full, &[b"x"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn vectored_write_caps_iovecs_per_call() {
        struct Count(Vec<usize>);
        impl Write for Count {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                Ok(b.len())
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.0.push(bufs.len());
                Ok(bufs.iter().map(|b| b.len()).sum())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let page = [0u8; 16];
        let parts: Vec<&[u8]> = vec![&page; 2500];
        let mut c = Count(Vec::new());
        write_all_vectored(&mut c, &parts).unwrap();
        assert_eq!(c.0, vec![1024, 1024, 452]);
    }
}
