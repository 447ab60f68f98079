//! Stream builders shared by the CLI tests and the `genstream` example:
//! libxc streams from the codec's writer, wrapped in libxl and xl layers by
//! their writers.
#![allow(dead_code)]

use std::io::Write;

use xcmig_stream::libxl::{EmulatorHeader, LibxlHeader, LibxlRecord, LibxlWriter};
use xcmig_stream::xl::XlHeader;
use xcmig_stream::{
    DomainHeader, DomainType, HvmParam, PageType, PfnEntry, TscInfo, VcpuKind, Writer, X86PvInfo,
    PAGE_SIZE,
};

/// Pages per PAGE_DATA record, as libxenguest batches them.
pub const BATCH: usize = 1024;

/// Shape of a generated HVM stream.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Pages written in the first pass.
    pub pages: u64,
    /// Checkpoints after the first pass (each followed by libxl records
    /// when wrapped, then a smaller pass of pages).
    pub checkpoints: u32,
    /// Whether to end with END (false: EOF after the last checkpoint).
    pub end: bool,
}

fn tsc() -> TscInfo {
    TscInfo {
        mode: 0,
        gtsc_khz: 2_000_000,
        elapsed_nsec: 123_456_789,
        incarnation: 1,
    }
}

/// Page contents derived from the pfn, so streams are not all zeros.
fn fill_page(buf: &mut [u8], pfn: u64) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        chunk
            .copy_from_slice(&(pfn ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
    }
}

/// Writes `n` pages starting at `first_pfn` in batches.
fn write_pages<W: Write>(w: &mut Writer<W>, first_pfn: u64, n: u64) {
    let mut buf = vec![0u8; BATCH * PAGE_SIZE];
    let mut pfn = first_pfn;
    let end = first_pfn + n;
    while pfn < end {
        let count = (end - pfn).min(BATCH as u64) as usize;
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let p = pfn + i as u64;
            // Every 64th frame is a hole (XTAB, no data), like a ballooned page.
            let t = if p % 64 == 63 {
                PageType::XTab
            } else {
                PageType::NoTab
            };
            entries.push(PfnEntry::new(p, t));
        }
        let mut pages: Vec<&[u8]> = Vec::with_capacity(count);
        let mut used = 0;
        for e in &entries {
            if e.page_type.has_data() {
                fill_page(&mut buf[used * PAGE_SIZE..(used + 1) * PAGE_SIZE], e.pfn);
                used += 1;
            }
        }
        for i in 0..used {
            pages.push(&buf[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]);
        }
        w.write_page_data(&entries, &pages).expect("page data");
        pfn += count as u64;
    }
}

fn end_of_pass<W: Write>(w: &mut Writer<W>) {
    w.write_x86_tsc_info(&tsc()).expect("tsc");
    w.write_hvm_params(&[
        HvmParam {
            index: 2,
            value: 0xfeff_f000,
        },
        HvmParam {
            index: 4,
            value: 0x1234,
        },
    ])
    .expect("params");
    w.write_hvm_context(&[0x5a; 1000]).expect("context");
}

/// A libxc HVM v3 stream; `between` is called after each CHECKPOINT with
/// the output, to insert the libxl records of the checkpoint.
pub fn hvm_stream<W: Write>(out: W, shape: Shape, mut between: impl FnMut(&mut W, u32)) -> W {
    let mut w = Writer::new(out, &DomainHeader::new(DomainType::X86Hvm, 4, 17)).expect("headers");
    w.write_static_data_end().expect("sde");
    write_pages(&mut w, 0, shape.pages);
    end_of_pass(&mut w);
    for cp in 0..shape.checkpoints {
        w.write_checkpoint().expect("checkpoint");
        between(w.get_mut(), cp);
        if cp + 1 == shape.checkpoints && !shape.end {
            return w.into_inner();
        }
        write_pages(&mut w, 0, (shape.pages / 8).max(1));
        end_of_pass(&mut w);
    }
    w.write_end().expect("end");
    w.into_inner()
}

/// A bare libxc HVM stream.
pub fn libxc_hvm(shape: Shape) -> Vec<u8> {
    hvm_stream(Vec::new(), shape, |_, _| {})
}

/// A minimal valid PV stream (64-bit guest, 4 pages).
pub fn libxc_pv() -> Vec<u8> {
    let mut w =
        Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Pv, 4, 17)).expect("headers");
    w.write_x86_pv_info(&X86PvInfo {
        guest_width: 8,
        pt_levels: 4,
    })
    .expect("pv info");
    w.write_static_data_end().expect("sde");
    w.write_x86_pv_p2m_frames(0, 3, &[2]).expect("p2m");
    let page = [0u8; PAGE_SIZE];
    let entries: Vec<PfnEntry> = (0..4).map(|p| PfnEntry::new(p, PageType::NoTab)).collect();
    w.write_page_data(&entries, &[&page, &page, &page, &page])
        .expect("pages");
    w.write_x86_pv_vcpu(VcpuKind::Basic, 0, &[0u8; 5168])
        .expect("vcpu");
    w.write_x86_tsc_info(&tsc()).expect("tsc");
    w.write_shared_info(&page).expect("shared info");
    w.write_end().expect("end");
    w.into_inner()
}

/// The libxl records libxl writes for an HVM guest after its libxc stream
/// (or within a checkpoint).
pub fn emulator_records<W: Write>(lx: &mut LibxlWriter<W>) {
    let emulator = EmulatorHeader { id: 2, index: 0 };
    lx.write_record(&LibxlRecord::EmulatorXenstoreData {
        emulator,
        data: b"physmap/f0000000/start_addr\0f0000000\0physmap/f0000000/size\0800000\0".to_vec(),
    })
    .expect("xenstore");
    lx.write_record(&LibxlRecord::EmulatorContext {
        emulator,
        blob: b"QEVM\0\0\0\x03device state".to_vec(),
    })
    .expect("emulator context");
}

/// A libxl stream around an HVM libxc stream, with emulator records after
/// it and inside each checkpoint.
pub fn libxl_hvm(shape: Shape) -> Vec<u8> {
    libxl_hvm_into(Vec::new(), shape)
}

/// [`libxl_hvm`] written to any sink.
pub fn libxl_hvm_into<W: Write>(out: W, shape: Shape) -> W {
    let header = LibxlHeader::new();
    let mut lx = LibxlWriter::new(out, header).expect("libxl header");
    lx.write_record(&LibxlRecord::LibxcContext)
        .expect("libxc context");
    let inner = lx.into_inner().expect("flush");
    let inner = hvm_stream(inner, shape, |o, _| {
        let mut cp = LibxlWriter::resume(o, &header);
        emulator_records(&mut cp);
        cp.write_record(&LibxlRecord::CheckpointEnd)
            .expect("checkpoint end");
    });
    if !shape.end {
        return inner;
    }
    let mut lx = LibxlWriter::resume(inner, &header);
    emulator_records(&mut lx);
    lx.write_record(&LibxlRecord::End).expect("end");
    lx.into_inner().expect("flush")
}

/// An `xl save` file: xl header with a JSON config, then `libxl`.
pub fn xl_file(libxl: &[u8]) -> Vec<u8> {
    let mut out = XlHeader::new_json(b"{\"c_info\":{\"name\":\"guest\"}}\0".to_vec())
        .to_bytes()
        .expect("xl header");
    out.extend_from_slice(libxl);
    out
}

/// A libxl stream around a PV libxc stream (no emulator records).
pub fn libxl_pv() -> Vec<u8> {
    let mut lx = LibxlWriter::new(Vec::new(), LibxlHeader::new()).expect("header");
    lx.write_record(&LibxlRecord::LibxcContext)
        .expect("libxc context");
    lx.inner_mut().write_all(&libxc_pv()).expect("libxc");
    lx.write_record(&LibxlRecord::End).expect("end");
    lx.into_inner().expect("flush")
}
