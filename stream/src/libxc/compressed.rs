//! xcmig's compressed page data record, XCMIG_COMPRESSED_PAGE_DATA
//! (`0x58430001`): PAGE_DATA whose pages are compressed one by one.
//!
//! An extension of xcmig's, documented in `docs/compressed-page-data.md`.
//! Its type is in the spec's range for future mandatory records, so a
//! restorer that does not know it (libxenguest) refuses the stream at that
//! record instead of misreading it. Body, in the stream's byte order:
//!
//! ```text
//! 0        u32 count          pfn entries, 1..=1024
//! 4        u8  compression    1 = LZ4 block, 2 = zstd frame
//! 5        u8  reserved[3]    zero
//! 8        u64 pfn[count]     as PAGE_DATA: type in bits 60-63, pfn in 0-51
//! 8+8c     u16 size[m]        one per entry whose type carries data:
//!                             1..=4095 compressed octets, 4096 = stored as is
//! 8+8c+2m  page data          the m pages' octets, back to back
//! ```
//!
//! Each page is compressed on its own (as zram does), so a page's size is
//! known before its octets are read, a page decompresses into exactly one
//! page of memory or fails, and incompressible pages cost two octets each.
//! The body length must equal `8 + 8c + 2m + sum(size)`.

use super::error::{ErrorKind, LengthRule};
use super::record::{decode_pfns, reserved_zero, Reserved};
use super::types::PfnEntry;
use crate::wire::Endian;
use crate::x86::PAGE_SIZE;

/// At most this many entries per record: a batch, as libxenguest sends.
pub const MAX_COMPRESSED_ENTRIES: u32 = 1024;

/// The longest valid body: a full batch of stored pages. Longer ones are
/// refused before they are read.
pub const MAX_COMPRESSED_BODY: u32 = 8 + (8 + 2 + PAGE_SIZE as u32) * MAX_COMPRESSED_ENTRIES;

/// The size entry of a page stored uncompressed.
pub const STORED_PAGE: u16 = PAGE_SIZE as u16;

/// The compressor of an XCMIG_COMPRESSED_PAGE_DATA record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// LZ4 block format (no frame, no size prefix), id 1.
    Lz4,
    /// A zstd frame per page, id 2.
    Zstd,
}

impl Compression {
    /// The id in the record header.
    pub fn id(self) -> u8 {
        match self {
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The compressor with this id.
    pub fn from_id(id: u8) -> Option<Compression> {
        match id {
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// "lz4" or "zstd".
    pub fn name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// A checked XCMIG_COMPRESSED_PAGE_DATA record, borrowing the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedPageData<'a> {
    entries: &'a [PfnEntry],
    compression: Compression,
    sizes: &'a [u8],
    data: &'a [u8],
    endian: Endian,
}

impl<'a> CompressedPageData<'a> {
    /// The pfn/type entries.
    pub fn entries(&self) -> &'a [PfnEntry] {
        self.entries
    }

    /// The compressor.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Entries whose type carries a page.
    pub fn data_pages(&self) -> usize {
        self.sizes.len() / 2
    }

    /// The size entry of data page `i` (1..=4096; 4096 = stored).
    pub fn size(&self, i: usize) -> u16 {
        self.endian.u16(self.sizes, 2 * i)
    }

    /// The page octets of the record (compressed and stored), back to back.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Pages stored uncompressed (their compressed form was not smaller).
    pub fn stored_pages(&self) -> usize {
        (0..self.data_pages())
            .filter(|&i| self.size(i) == STORED_PAGE)
            .count()
    }

    /// The octets of each data page in order, as in the record.
    pub fn pages(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let sizes = self.sizes;
        let data = self.data;
        let endian = self.endian;
        let mut off = 0usize;
        sizes.chunks_exact(2).map(move |c| {
            let n = usize::from(endian.u16(c, 0));
            let page = &data[off..off + n];
            off += n;
            page
        })
    }

    /// Decompresses every data page, in order, into `out` (cleared first):
    /// 4096 octets per data page, as PAGE_DATA carries them.
    pub fn decompress_all(
        &self,
        d: &mut PageDecompressor,
        out: &mut Vec<u8>,
    ) -> Result<(), ErrorKind> {
        out.clear();
        out.resize(self.data_pages() * PAGE_SIZE, 0);
        for (i, (src, dst)) in self
            .pages()
            .zip(out.chunks_exact_mut(PAGE_SIZE))
            .enumerate()
        {
            d.page(self.compression, i, src, dst)?;
        }
        Ok(())
    }
}

/// Parses and checks a body (without padding). `entries` receives the
/// decoded pfn array.
pub(crate) fn parse<'a>(
    body: &'a [u8],
    endian: Endian,
    policy: Reserved,
    entries: &'a mut Vec<PfnEntry>,
) -> Result<CompressedPageData<'a>, ErrorKind> {
    let len = body.len() as u64;
    if len < 8 {
        return Err(ErrorKind::BadLength {
            rule: LengthRule::AtLeast(8),
            got: len,
        });
    }
    let count = endian.u32(body, 0);
    if count == 0 {
        return Err(ErrorKind::ZeroPageCount);
    }
    if count > MAX_COMPRESSED_ENTRIES {
        return Err(ErrorKind::TooManyEntries {
            count,
            max: MAX_COMPRESSED_ENTRIES,
        });
    }
    let compression =
        Compression::from_id(body[4]).ok_or(ErrorKind::UnknownCompression(body[4]))?;
    reserved_zero(&body[5..8], "XCMIG_COMPRESSED_PAGE_DATA reserved", policy)?;
    let pfn_end = 8 + 8 * count as usize;
    if body.len() < pfn_end {
        return Err(ErrorKind::BadLength {
            rule: LengthRule::AtLeast(pfn_end as u64),
            got: len,
        });
    }
    let with_data = decode_pfns(&body[8..pfn_end], endian, policy, entries)?;
    let sizes_end = pfn_end + 2 * with_data;
    if body.len() < sizes_end {
        return Err(ErrorKind::BadLength {
            rule: LengthRule::AtLeast(sizes_end as u64),
            got: len,
        });
    }
    let sizes = &body[pfn_end..sizes_end];
    let mut total = 0u64;
    for (i, c) in sizes.chunks_exact(2).enumerate() {
        let size = endian.u16(c, 0);
        if size == 0 || size > STORED_PAGE {
            return Err(ErrorKind::BadCompressedSize {
                index: i as u32,
                size,
            });
        }
        total += u64::from(size);
    }
    let expected = sizes_end as u64 + total;
    if len != expected {
        return Err(ErrorKind::BadLength {
            rule: LengthRule::Exactly(expected),
            got: len,
        });
    }
    Ok(CompressedPageData {
        entries: entries.as_slice(),
        compression,
        sizes,
        data: &body[sizes_end..],
        endian,
    })
}

/// A record's compressed pages, ready to be written: one size entry per
/// data page and the pages' octets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompressedPages {
    /// One per data page: 1..=4095 compressed octets, or [`STORED_PAGE`].
    pub sizes: Vec<u16>,
    /// The pages' octets back to back.
    pub data: Vec<u8>,
}

impl CompressedPages {
    /// Empties both parts, keeping their allocations.
    pub fn clear(&mut self) {
        self.sizes.clear();
        self.data.clear();
    }

    /// Pages whose compressed form was not smaller, stored as they are.
    pub fn stored_pages(&self) -> usize {
        self.sizes.iter().filter(|&&s| s == STORED_PAGE).count()
    }
}

/// A compressor for pages, holding its state (a zstd context) across
/// pages and records.
pub struct PageCompressor {
    compression: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for PageCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCompressor")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// The zstd levels a [`PageCompressor`] takes (the library's own range,
/// without its negative "fast" levels).
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

/// The zstd level used when none is given: fast, and on guest pages
/// within a few per cent of level 3's ratio.
pub const ZSTD_DEFAULT_LEVEL: i32 = 1;

impl PageCompressor {
    /// A compressor; `level` is zstd's (see [`ZSTD_LEVELS`]), ignored by
    /// LZ4.
    pub fn new(compression: Compression, level: i32) -> std::io::Result<PageCompressor> {
        let zstd = match compression {
            Compression::Lz4 => None,
            Compression::Zstd => {
                if !ZSTD_LEVELS.contains(&level) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("zstd level {level} is not in 1..=19"),
                    ));
                }
                let mut c = zstd::bulk::Compressor::new(level)?;
                // A page is small: no checksum, the size is implied.
                use zstd::zstd_safe::CParameter;
                c.set_parameter(CParameter::ChecksumFlag(false))?;
                c.set_parameter(CParameter::ContentSizeFlag(false))?;
                c.set_parameter(CParameter::DictIdFlag(false))?;
                Some(c)
            }
        };
        let bound = lz4_flex::block::get_maximum_output_size(PAGE_SIZE)
            .max(zstd::zstd_safe::compress_bound(PAGE_SIZE));
        Ok(PageCompressor {
            compression,
            zstd,
            scratch: vec![0; bound],
        })
    }

    /// The compressor this one writes.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Appends page `page` (4096 octets) to `out`: compressed when that is
    /// smaller, stored otherwise.
    pub fn push_page(&mut self, page: &[u8], out: &mut CompressedPages) -> std::io::Result<()> {
        if page.len() != PAGE_SIZE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a page is {PAGE_SIZE} octets, not {}", page.len()),
            ));
        }
        let n = match &mut self.zstd {
            None => lz4_flex::block::compress_into(page, &mut self.scratch).ok(),
            // Too small an output buffer is an error: stored, like any
            // page that does not shrink.
            Some(z) => z.compress_to_buffer(page, &mut self.scratch).ok(),
        };
        match n {
            Some(n) if n > 0 && n < PAGE_SIZE => {
                out.sizes.push(n as u16);
                out.data.extend_from_slice(&self.scratch[..n]);
            }
            _ => {
                out.sizes.push(STORED_PAGE);
                out.data.extend_from_slice(page);
            }
        }
        Ok(())
    }

    /// Appends every page of `pages` (a multiple of 4096 octets).
    pub fn push_pages(&mut self, pages: &[u8], out: &mut CompressedPages) -> std::io::Result<()> {
        if pages.len() % PAGE_SIZE != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} octets are not whole pages", pages.len()),
            ));
        }
        for page in pages.chunks_exact(PAGE_SIZE) {
            self.push_page(page, out)?;
        }
        Ok(())
    }
}

/// A decompressor for pages, holding a zstd context across pages.
#[derive(Default)]
pub struct PageDecompressor {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl std::fmt::Debug for PageDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageDecompressor").finish_non_exhaustive()
    }
}

impl PageDecompressor {
    /// A decompressor (its zstd context is made when first needed).
    pub fn new() -> PageDecompressor {
        PageDecompressor::default()
    }

    /// Fills `dst` (one page) from data page `index`'s octets `src`: a
    /// stored page is copied, a compressed one must decompress to exactly
    /// one page. Never writes past `dst` nor allocates for the output, so
    /// a page that would inflate further is an error, not a bomb.
    pub fn page(
        &mut self,
        compression: Compression,
        index: usize,
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<(), ErrorKind> {
        if dst.len() != PAGE_SIZE {
            return Err(ErrorKind::PageDataMismatch {
                expected: PAGE_SIZE as u64,
                got: dst.len() as u64,
            });
        }
        let index = index as u32;
        if src.len() == PAGE_SIZE {
            dst.copy_from_slice(src);
            return Ok(());
        }
        let fail = |message: String| ErrorKind::Decompress {
            index,
            compression,
            message,
        };
        let n = match compression {
            Compression::Lz4 => lz4_flex::block::decompress_into(src, dst)
                .map_err(|e| fail(format!("invalid LZ4 block: {e}")))?,
            Compression::Zstd => {
                if self.zstd.is_none() {
                    self.zstd = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| fail(format!("zstd context: {e}")))?,
                    );
                }
                let z = self.zstd.as_mut().expect("made above");
                z.decompress_to_buffer(src, dst)
                    .map_err(|e| fail(format!("invalid zstd frame or more than a page: {e}")))?
            }
        };
        if n != PAGE_SIZE {
            return Err(fail(format!("decompressed to {n} octets, not a page")));
        }
        Ok(())
    }
}

/// Encodes a body: the header, pfn array and size table into `head`
/// (cleared first); the page octets follow it unchanged.
pub(crate) fn encode_head(
    head: &mut Vec<u8>,
    endian: Endian,
    entries: &[PfnEntry],
    compression: Compression,
    sizes: &[u16],
) {
    head.clear();
    endian.put_u32(head, entries.len() as u32);
    head.push(compression.id());
    head.extend_from_slice(&[0; 3]);
    for e in entries {
        endian.put_u64(head, e.to_raw());
    }
    for &s in sizes {
        endian.put_u16(head, s);
    }
}

#[cfg(test)]
#[path = "compressed_tests.rs"]
mod tests;
