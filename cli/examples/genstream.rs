//! Writes a generated HVM migration stream, for trying `xcmig` on large
//! inputs: `genstream FORMAT MIB [CHECKPOINTS] > out`
//! (FORMAT: libxc, libxl or xl).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{self, BufWriter, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: genstream libxc|libxl|xl MIB [CHECKPOINTS] > out");
        std::process::exit(2)
    };
    let format = args.get(1).map(String::as_str).unwrap_or_else(|| usage());
    let mib: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage());
    let checkpoints: u32 = args
        .get(3)
        .map_or(Some(0), |s| s.parse().ok())
        .unwrap_or_else(|| usage());
    let shape = common::Shape {
        pages: mib * 256,
        checkpoints,
        end: true,
    };
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    match format {
        "libxc" => {
            common::hvm_stream(&mut out, shape, |_, _| {});
        }
        "libxl" => {
            common::libxl_hvm_into(&mut out, shape);
        }
        "xl" => {
            let hdr = common::xl_file(&[]);
            out.write_all(&hdr).expect("write");
            common::libxl_hvm_into(&mut out, shape);
        }
        _ => usage(),
    }
    out.flush().expect("flush");
}
