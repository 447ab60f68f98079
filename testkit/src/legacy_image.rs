//! A generator of legacy save images (the layout `xc_domain_save` wrote up
//! to Xen 4.5), written field by field with labels, independently of the
//! codec that reads them (`xcmig_stream::legacy`).
//!
//! [`LegacyImage`] is the model (plain integers and octets, so that this
//! crate needs no stream types); [`LegacyImage::write`] streams it, and
//! [`Part::Generated`] writes page batches computed on the fly, so an image
//! of any size needs no memory.

use std::io::{self, Write};

/// Octets of a page.
pub const PAGE: usize = 4096;
/// The filler entry the saver leaves for frames it could not map.
pub const XTAB_FILLER: u64 = 0xf000_0000;
/// The XTAB type in the legacy entry encoding.
pub const XTAB: u64 = 0xf << 28;
/// The XALLOC type in the legacy entry encoding.
pub const XALLOC: u64 = 0xe << 28;
/// The L1TAB type in the legacy entry encoding.
pub const L1TAB: u64 = 0x1 << 28;

/// Writes named fields in the legacy layout: little-endian, `ulong` of the
/// toolstack's width.
pub struct Fields<W> {
    /// The output.
    pub out: W,
    /// 32 or 64.
    pub width: u32,
    /// Octets written.
    pub written: u64,
}

impl<W: Write> Fields<W> {
    /// A field writer for a `width`-bit toolstack.
    pub fn new(out: W, width: u32) -> Self {
        assert!(width == 32 || width == 64, "width {width}");
        Fields {
            out,
            width,
            written: 0,
        }
    }

    /// Raw octets.
    pub fn bytes(&mut self, _field: &str, b: &[u8]) -> io::Result<()> {
        self.written += b.len() as u64;
        self.out.write_all(b)
    }

    /// An `unsigned long` of the toolstack.
    pub fn ulong(&mut self, field: &str, v: u64) -> io::Result<()> {
        if self.width == 32 {
            assert!(
                v <= u64::from(u32::MAX),
                "{field} {v:#x} does not fit 32 bits"
            );
            self.bytes(field, &(v as u32).to_le_bytes())
        } else {
            self.bytes(field, &v.to_le_bytes())
        }
    }

    /// A u32.
    pub fn u32(&mut self, field: &str, v: u32) -> io::Result<()> {
        self.bytes(field, &v.to_le_bytes())
    }

    /// An i32 (chunk markers).
    pub fn i32(&mut self, field: &str, v: i32) -> io::Result<()> {
        self.bytes(field, &v.to_le_bytes())
    }

    /// A u64.
    pub fn u64(&mut self, field: &str, v: u64) -> io::Result<()> {
        self.bytes(field, &v.to_le_bytes())
    }
}

/// A PV image's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvHead {
    /// The "vcpu" block: a vCPU context, 2800 octets (32-bit guest) or
    /// 5168 (64-bit guest).
    pub vcpu_block: Vec<u8>,
    /// An "extv" block.
    pub extv: bool,
    /// An "xcnt" block with this size (xsave data + 16).
    pub xcnt: Option<u32>,
    /// More blocks after those, as (id, data).
    pub extra_blocks: Vec<([u8; 4], Vec<u8>)>,
    /// The p2m frame list.
    pub frames: Vec<u64>,
}

/// One part of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A batch: legacy entries and the data of those whose type carries it.
    Batch {
        /// Entries: type in bits 28-31, pfn in bits 0-27.
        entries: Vec<u64>,
        /// 4096 octets per data-bearing entry.
        pages: Vec<u8>,
    },
    /// Batches of normal pages for `first..first + count`, 1024 per batch,
    /// each page filled by [`generated_page`] with `seed`.
    Generated {
        /// First pfn.
        first: u64,
        /// Pages.
        count: u64,
        /// Fill seed.
        seed: u8,
    },
    /// A negative chunk: its id and the octets after the id.
    Chunk(i32, Vec<u8>),
    /// Octets as they are (for malformed images).
    Raw(Vec<u8>),
}

/// The tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// HVM: magic pfns (ioreq, bufioreq, store) and the HVM context.
    Hvm {
        /// ioreq, bufioreq, store pfns.
        magic: [u64; 3],
        /// The context.
        context: Vec<u8>,
    },
    /// PV.
    Pv {
        /// Unmapped pfns.
        unmapped: Vec<u64>,
        /// Per online vCPU: context, extended context (128 octets, with
        /// "extv"), (mask, xsave data) with "xcnt".
        vcpus: Vec<PvVcpu>,
        /// The shared info page.
        shared_info: Vec<u8>,
    },
}

/// One PV vCPU of the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvVcpu {
    /// `vcpu_guest_context`.
    pub basic: Vec<u8>,
    /// 128 octets, when the head has "extv".
    pub extended: Option<Vec<u8>>,
    /// xfeature mask and xsave data, when the head has "xcnt".
    pub xsave: Option<(u64, Vec<u8>)>,
}

/// A whole legacy image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyImage {
    /// Toolstack width, 32 or 64.
    pub width: u32,
    /// p2m size.
    pub p2m_size: u64,
    /// PV head (absent for HVM).
    pub pv: Option<PvHead>,
    /// Body parts, without the 0 marker.
    pub body: Vec<Part>,
    /// The tail.
    pub tail: Tail,
    /// The device model record after the libxc part: signature and data.
    pub qemu: Option<(Vec<u8>, Vec<u8>)>,
    /// Octets after everything (for malformed images).
    pub trailing: Vec<u8>,
}

/// The contents [`Part::Generated`] gives `pfn`: a page of the seed,
/// with the pfn in its first 8 octets so that every page differs.
pub fn generated_page(pfn: u64, seed: u8, page: &mut [u8; PAGE]) {
    page.fill(seed);
    page[..8].copy_from_slice(&pfn.to_le_bytes());
}

impl LegacyImage {
    /// Writes the image; returns the octets written.
    pub fn write<W: Write>(&self, out: W) -> io::Result<u64> {
        let mut f = Fields::new(out, self.width);
        f.ulong("p2m_size", self.p2m_size)?;
        if let Some(pv) = &self.pv {
            f.ulong(
                "extended-info signature ~0UL",
                if self.width == 32 {
                    0xffff_ffff
                } else {
                    u64::MAX
                },
            )?;
            let mut blocks: Vec<([u8; 4], Vec<u8>)> = vec![(*b"vcpu", pv.vcpu_block.clone())];
            if pv.extv {
                blocks.push((*b"extv", Vec::new()));
            }
            if let Some(n) = pv.xcnt {
                blocks.push((*b"xcnt", n.to_le_bytes().to_vec()));
            }
            blocks.extend(pv.extra_blocks.iter().cloned());
            let total: usize = blocks.iter().map(|(_, d)| 8 + d.len()).sum();
            f.u32("extended-info total length", total as u32)?;
            for (id, data) in &blocks {
                f.bytes("block id", id)?;
                f.u32("block size", data.len() as u32)?;
                f.bytes("block data", data)?;
            }
            for fr in &pv.frames {
                f.ulong("p2m frame list entry", *fr)?;
            }
        }
        for part in &self.body {
            write_part(&mut f, part)?;
        }
        f.i32("end-of-body marker", 0)?;
        match &self.tail {
            Tail::Hvm { magic, context } => {
                f.u64("ioreq pfn", magic[0])?;
                f.u64("bufioreq pfn", magic[1])?;
                f.u64("store pfn", magic[2])?;
                f.u32("HVM context length", context.len() as u32)?;
                f.bytes("HVM context", context)?;
            }
            Tail::Pv {
                unmapped,
                vcpus,
                shared_info,
            } => {
                f.u32("unmapped pfn count", unmapped.len() as u32)?;
                for p in unmapped {
                    f.ulong("unmapped pfn", *p)?;
                }
                for v in vcpus {
                    f.bytes("vcpu context", &v.basic)?;
                    if let Some(x) = &v.extended {
                        f.bytes("extended vcpu context", x)?;
                    }
                    if let Some((mask, x)) = &v.xsave {
                        f.u64("xfeature mask", *mask)?;
                        f.u64("xsave size", x.len() as u64)?;
                        f.bytes("xsave data", x)?;
                    }
                }
                f.bytes("shared info", shared_info)?;
            }
        }
        if let Some((sig, data)) = &self.qemu {
            f.bytes("device model signature", sig)?;
            f.u32("device model length", data.len() as u32)?;
            f.bytes("device model data", data)?;
        }
        f.bytes("trailing", &self.trailing)?;
        f.out.flush()?;
        Ok(f.written)
    }

    /// The image's octets.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v).expect("write to a Vec");
        v
    }
}

fn write_part<W: Write>(f: &mut Fields<W>, part: &Part) -> io::Result<()> {
    match part {
        Part::Batch { entries, pages } => {
            f.i32("batch count", entries.len() as i32)?;
            for e in entries {
                f.ulong("batch entry", *e)?;
            }
            f.bytes("batch pages", pages)
        }
        Part::Generated { first, count, seed } => {
            let mut page = Box::new([0u8; PAGE]);
            let mut pfn = *first;
            let end = first + count;
            while pfn < end {
                let n = (end - pfn).min(1024);
                f.i32("batch count", n as i32)?;
                for p in pfn..pfn + n {
                    f.ulong("batch entry", p)?;
                }
                for p in pfn..pfn + n {
                    generated_page(p, *seed, &mut page);
                    f.bytes("batch page", &page[..])?;
                }
                pfn += n;
            }
            Ok(())
        }
        Part::Chunk(id, body) => {
            f.i32("chunk id", *id)?;
            f.bytes("chunk body", body)
        }
        Part::Raw(b) => f.bytes("raw", b),
    }
}

/// VCPU_INFO (-2): max id and the online map (u64 words).
pub fn vcpu_info(max_vcpu_id: i32, online: &[u32]) -> Part {
    let words = (max_vcpu_id.max(0) as usize) / 64 + 1;
    let mut map = vec![0u64; words];
    for &v in online {
        map[v as usize / 64] |= 1 << (v % 64);
    }
    let mut b = max_vcpu_id.to_le_bytes().to_vec();
    for w in map {
        b.extend_from_slice(&w.to_le_bytes());
    }
    Part::Chunk(-2, b)
}

/// An HVM chunk carrying one value: id, u32 padding 0, u64 value.
pub fn hvm_chunk(id: i32, value: u64) -> Part {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend_from_slice(&value.to_le_bytes());
    Part::Chunk(id, b)
}

/// TSC_INFO (-7): mode, elapsed nsec, kHz, incarnation.
pub fn tsc_info(mode: u32, nsec: u64, khz: u32, incarnation: u32) -> Part {
    let mut b = mode.to_le_bytes().to_vec();
    b.extend_from_slice(&nsec.to_le_bytes());
    b.extend_from_slice(&khz.to_le_bytes());
    b.extend_from_slice(&incarnation.to_le_bytes());
    Part::Chunk(-7, b)
}

/// LAST_CHECKPOINT (-9).
pub fn last_checkpoint() -> Part {
    Part::Chunk(-9, Vec::new())
}

/// TOOLSTACK (-18): u32 length and the data.
pub fn toolstack(data: &[u8]) -> Part {
    let mut b = (data.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(data);
    Part::Chunk(-18, b)
}

/// libxl 4.5's toolstack data for QEMU physmap entries (phys_offset,
/// start_addr, size, name): a 64-bit toolstack's struct leaves 4 octets
/// after each name.
pub fn libxl_physmap(width: u32, entries: &[(u64, u64, u64, &str)]) -> Vec<u8> {
    let mut b = 1u32.to_le_bytes().to_vec();
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (phys, start, size, name) in entries {
        b.extend_from_slice(&phys.to_le_bytes());
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        if width == 64 {
            b.extend_from_slice(&[0; 4]);
        }
    }
    b
}

/// A small HVM image of `pages` generated pages at pfn 0.., with the
/// chunks a Xen 4.5 non-live save writes.
pub fn small_hvm(width: u32, pages: u64) -> LegacyImage {
    LegacyImage {
        width,
        p2m_size: pages.max(1) + 16,
        pv: None,
        body: vec![
            tsc_info(0, 1_000_000, 2_000_000, 3),
            Part::Generated {
                first: 0,
                count: pages,
                seed: 0x5a,
            },
            vcpu_info(1, &[0, 1]),
            hvm_chunk(-3, 0xfeffc000),
            hvm_chunk(-8, pages + 1),
            last_checkpoint(),
        ],
        tail: Tail::Hvm {
            magic: [pages + 2, pages + 3, pages + 4],
            context: vec![0xc7; 1000],
        },
        qemu: Some((b"DeviceModelRecord0002".to_vec(), vec![0x51; 333])),
        trailing: Vec::new(),
    }
}

/// A small PV image of a `guest_bits` guest with `pages` generated pages.
pub fn small_pv(width: u32, guest_bits: u32, pages: u64) -> LegacyImage {
    let ctx = if guest_bits == 64 { 0x1430 } else { 0xaf0 };
    let p2m_size = pages.max(1) + 4;
    let fpp = PAGE as u64 / (u64::from(guest_bits) / 8);
    let frames = (0..p2m_size.div_ceil(fpp)).collect();
    let vcpu = |n: u8| PvVcpu {
        basic: vec![n; ctx],
        extended: Some(vec![n ^ 0xff; 128]),
        xsave: Some((7, vec![n.wrapping_add(1); 832 - 16])),
    };
    LegacyImage {
        width,
        p2m_size,
        pv: Some(PvHead {
            vcpu_block: vec![0xab; ctx],
            extv: true,
            xcnt: Some(832),
            extra_blocks: Vec::new(),
            frames,
        }),
        body: vec![
            tsc_info(0, 5, 6, 7),
            Part::Generated {
                first: 0,
                count: pages,
                seed: 0x3c,
            },
            vcpu_info(1, &[0, 1]),
            last_checkpoint(),
        ],
        tail: Tail::Pv {
            unmapped: vec![p2m_size - 1],
            vcpus: vec![vcpu(1), vcpu(2)],
            shared_info: vec![0x99; PAGE],
        },
        qemu: None,
        trailing: Vec::new(),
    }
}
