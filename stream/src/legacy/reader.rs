//! A pull parser of legacy images: [`LegacyReader::next_item`] returns
//! one part at a time, borrowing the reader's buffers, so memory holds at
//! most one page batch (4 MiB) or the PV p2m frame list whatever the image's
//! size. The reader reads exactly the octets of each field and never ahead,
//! so the input can go on past the image (the device model record, or the
//! next thing on a toolstack's fd).

use std::io::{self, Read, Write};

use super::error::{LegacyError, LegacyErrorKind};
use super::{
    ChunkId, Guest, Width, EXTENDED_CONTEXT_LEN, MAX_BATCH, MAX_BLOB, MAX_P2M_SIZE,
    MAX_UNMAPPED_PFNS, MAX_VCPUS, PFN_FIELD, QEMU_SIGNATURE, REMUS_QEMU_SIGNATURE, TYPE_FIELD,
    VCPU_CONTEXT_32, VCPU_CONTEXT_64, XEND_QEMU_SIGNATURE, XTAB_FILLER,
};
use crate::x86::{PageType, TscInfo, PAGE_SIZE};

/// The PV extended info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedInfo {
    /// Guest width in octets (4 or 8), from the "vcpu" block's size.
    pub guest_width: u8,
    /// Octets of each vCPU context in the tail.
    pub vcpu_context_len: u32,
    /// "extv": each vCPU has a 128-octet extended context.
    pub extended: bool,
    /// "xcnt": octets of each vCPU's xsave block including its 16-octet
    /// mask and size; 0 without the block.
    pub xsave_len: u32,
    /// Ids of blocks the reader skipped (Xen's restorer skips unknown ones).
    pub skipped: Vec<[u8; 4]>,
}

/// A page batch, its filler entries (XTAB, pfn 0) dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    /// Index of the batch in the image, from 0.
    pub index: u64,
    /// Entries in the legacy encoding (type in bits 28-31, pfn in 0-27).
    pub entries: &'a [u64],
    /// 4096 octets per entry whose type carries data, in order.
    pub pages: &'a [u8],
    /// Entries dropped as filler.
    pub fillers: u32,
}

impl Batch<'_> {
    /// The entries as (pfn, type).
    pub fn pfns(&self) -> impl Iterator<Item = (u64, PageType)> + '_ {
        self.entries.iter().map(|e| {
            let t = PageType::from_bits(((e & TYPE_FIELD) >> 28) as u8).unwrap_or(PageType::XTab);
            (e & PFN_FIELD, t)
        })
    }
}

/// A negative chunk the reader decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// -1: what follows re-sends pages for verification.
    VerifyMode,
    /// -2: the online vCPUs.
    VcpuInfo {
        /// Highest vCPU id.
        max_vcpu_id: u32,
        /// Online vCPU ids, ascending.
        online: &'a [u32],
    },
    /// One of the HVM chunks that carry a single HVM parameter.
    HvmParam {
        /// The chunk.
        chunk: ChunkId,
        /// `HVM_PARAM_*` index.
        index: u64,
        /// Value.
        value: u64,
    },
    /// -7.
    TscInfo(TscInfo),
    /// -9.
    LastCheckpoint,
    /// -18: the toolstack's data.
    Toolstack(&'a [u8]),
}

/// One vCPU of the PV tail.
#[derive(Debug, PartialEq, Eq)]
pub struct VcpuTail<'a> {
    /// vCPU id.
    pub id: u32,
    /// The `vcpu_guest_context`.
    pub basic: &'a [u8],
    /// The 128-octet extended context ("extv").
    pub extended: Option<&'a [u8]>,
    /// The xfeature mask and the xsave data ("xcnt").
    pub xsave: Option<(u64, &'a [u8])>,
}

/// One part of the image, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// The first field.
    P2mSize(u64),
    /// PV: the extended info.
    ExtendedInfo(ExtendedInfo),
    /// PV: the p2m frame list (pfns of the frames holding the p2m).
    P2mFrames(&'a [u64]),
    /// A page batch.
    Batch(Batch<'a>),
    /// A negative chunk.
    Chunk(Chunk<'a>),
    /// The body's 0 marker.
    BodyEnd,
    /// PV tail: how many unmapped pfns were listed (and skipped).
    UnmappedPfns(u32),
    /// PV tail: one vCPU.
    Vcpu(VcpuTail<'a>),
    /// PV tail: the shared info page.
    SharedInfo(&'a [u8]),
    /// HVM tail: the three magic pfns.
    HvmMagicPfns {
        /// `HVM_PARAM_IOREQ_PFN`.
        ioreq: u64,
        /// `HVM_PARAM_BUFIOREQ_PFN`.
        bufioreq: u64,
        /// `HVM_PARAM_STORE_PFN`.
        store: u64,
    },
    /// HVM tail: the HVM context.
    HvmContext(&'a [u8]),
    /// The libxc part is complete.
    End,
}

/// The device model record's header, after the libxc part of an HVM image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceModel {
    /// The 21-octet signature.
    pub signature: [u8; 21],
    /// Octets of QEMU data; `None` for xend's record, which runs to the
    /// end of the input.
    pub len: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    P2mSize,
    ExtendedInfo,
    P2mFrames,
    Body,
    Tail,
    Vcpus(usize),
    SharedInfo,
    HvmContext,
    End,
    Done,
}

/// Reads a legacy image of a given toolstack width and guest kind.
#[derive(Debug)]
pub struct LegacyReader<R> {
    inner: R,
    offset: u64,
    width: Width,
    guest: Guest,
    state: State,
    p2m_size: u64,
    ext: Option<ExtendedInfo>,
    online: Vec<u32>,
    saw_vcpu_info: bool,
    last_checkpoint: bool,
    ioreq_server: (bool, bool),
    batches: u64,
    entries: Vec<u64>,
    pages: Vec<u8>,
    frames: Vec<u64>,
    blob: Vec<u8>,
    blob2: Vec<u8>,
    scratch: Vec<u8>,
}

impl<R: Read> LegacyReader<R> {
    /// A reader of `inner`, positioned at the image's first octet, which is
    /// at `offset` of the whole input (after an `xl` header, say).
    pub fn new(inner: R, width: Width, guest: Guest, offset: u64) -> LegacyReader<R> {
        LegacyReader {
            inner,
            offset,
            width,
            guest,
            state: State::P2mSize,
            p2m_size: 0,
            ext: None,
            online: Vec::new(),
            saw_vcpu_info: false,
            last_checkpoint: false,
            ioreq_server: (false, false),
            batches: 0,
            entries: Vec::new(),
            pages: Vec::new(),
            frames: Vec::new(),
            blob: Vec::new(),
            blob2: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Octets consumed so far, counted from the start of the whole input.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The image's p2m size (0 before it is read).
    pub fn p2m_size(&self) -> u64 {
        self.p2m_size
    }

    /// The toolstack width the reader applies.
    pub fn width(&self) -> Width {
        self.width
    }

    /// The guest kind the reader applies.
    pub fn guest(&self) -> Guest {
        self.guest
    }

    /// Whether the body had LAST_CHECKPOINT.
    pub fn last_checkpoint(&self) -> bool {
        self.last_checkpoint
    }

    /// The input.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn err(&self, at: u64, part: impl Into<String>, kind: LegacyErrorKind) -> LegacyError {
        LegacyError::new(at, part, kind)
    }

    /// Fills `buf`, advancing the offset; a short input is `Truncated`.
    fn fill(
        inner: &mut R,
        offset: &mut u64,
        buf: &mut [u8],
        part: &str,
        what: &'static str,
    ) -> Result<(), LegacyError> {
        let start = *offset;
        let got =
            crate::input::read_upto(inner, buf).map_err(|e| LegacyError::io(start, part, &e))?;
        *offset += got as u64;
        if got < buf.len() {
            return Err(LegacyError::new(
                *offset,
                part,
                LegacyErrorKind::Truncated { what },
            ));
        }
        Ok(())
    }

    fn read_array<const N: usize>(
        &mut self,
        part: &str,
        what: &'static str,
    ) -> Result<[u8; N], LegacyError> {
        let mut b = [0u8; N];
        Self::fill(&mut self.inner, &mut self.offset, &mut b, part, what)?;
        Ok(b)
    }

    fn read_u32(&mut self, part: &str, what: &'static str) -> Result<u32, LegacyError> {
        Ok(u32::from_le_bytes(self.read_array::<4>(part, what)?))
    }

    fn read_i32(&mut self, part: &str, what: &'static str) -> Result<i32, LegacyError> {
        Ok(i32::from_le_bytes(self.read_array::<4>(part, what)?))
    }

    fn read_u64(&mut self, part: &str, what: &'static str) -> Result<u64, LegacyError> {
        Ok(u64::from_le_bytes(self.read_array::<8>(part, what)?))
    }

    /// An `unsigned long` of the toolstack.
    fn read_ulong(&mut self, part: &str, what: &'static str) -> Result<u64, LegacyError> {
        match self.width {
            Width::Bits32 => self.read_u32(part, what).map(u64::from),
            Width::Bits64 => self.read_u64(part, what),
        }
    }

    /// Reads `n` ulongs into `out` (cleared), growing it only as octets
    /// arrive.
    fn read_ulongs(
        &mut self,
        n: u64,
        out: &mut Vec<u64>,
        part: &str,
        what: &'static str,
    ) -> Result<(), LegacyError> {
        out.clear();
        let w = self.width.bytes();
        let mut left = n;
        let mut buf = [0u8; 4096];
        while left > 0 {
            let take = left.min((buf.len() / w) as u64) as usize;
            Self::fill(
                &mut self.inner,
                &mut self.offset,
                &mut buf[..take * w],
                part,
                what,
            )?;
            for c in buf[..take * w].chunks_exact(w) {
                out.push(match self.width {
                    Width::Bits32 => u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    Width::Bits64 => {
                        u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                    }
                });
            }
            left -= take as u64;
        }
        Ok(())
    }

    /// Reads `len` octets into `buf` (cleared), growing it as they arrive.
    fn read_blob(
        inner: &mut R,
        offset: &mut u64,
        buf: &mut Vec<u8>,
        len: u64,
        part: &str,
        what: &'static str,
    ) -> Result<(), LegacyError> {
        buf.clear();
        let start = *offset;
        let got = inner
            .by_ref()
            .take(len)
            .read_to_end(buf)
            .map_err(|e| LegacyError::io(start, part, &e))?;
        *offset += got as u64;
        if (got as u64) < len {
            return Err(LegacyError::new(
                *offset,
                part,
                LegacyErrorKind::Truncated { what },
            ));
        }
        Ok(())
    }

    /// Reads and drops `len` octets.
    fn skip(&mut self, len: u64, part: &str, what: &'static str) -> Result<(), LegacyError> {
        let start = self.offset;
        let got = io::copy(&mut self.inner.by_ref().take(len), &mut io::sink())
            .map_err(|e| LegacyError::io(start, part, &e))?;
        self.offset += got;
        if got < len {
            return Err(self.err(self.offset, part, LegacyErrorKind::Truncated { what }));
        }
        Ok(())
    }

    /// The next part of the image; `None` once [`Item::End`] was returned.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, LegacyError> {
        match self.state {
            State::P2mSize => {
                let at = self.offset;
                let n = self.read_ulong("header", "p2m_size")?;
                if n == 0 || n > MAX_P2M_SIZE {
                    return Err(self.err(at, "header", LegacyErrorKind::BadP2mSize(n)));
                }
                self.p2m_size = n;
                self.state = match self.guest {
                    Guest::Pv => State::ExtendedInfo,
                    Guest::Hvm => State::Body,
                };
                Ok(Some(Item::P2mSize(n)))
            }
            State::ExtendedInfo => {
                let ext = self.read_extended_info()?;
                self.ext = Some(ext.clone());
                self.state = State::P2mFrames;
                Ok(Some(Item::ExtendedInfo(ext)))
            }
            State::P2mFrames => {
                let gw = u64::from(self.ext.as_ref().map_or(8, |e| e.guest_width));
                let fpp = PAGE_SIZE as u64 / gw;
                let n = self.p2m_size.div_ceil(fpp);
                let at = self.offset;
                let mut frames = std::mem::take(&mut self.frames);
                let r = self.read_ulongs(n, &mut frames, "p2m frame list", "the p2m frame list");
                self.frames = frames;
                r?;
                if let Some((index, &pfn)) = self
                    .frames
                    .iter()
                    .enumerate()
                    .find(|(_, &f)| f >= self.p2m_size)
                {
                    return Err(self.err(
                        at + (index * self.width.bytes()) as u64,
                        "p2m frame list",
                        LegacyErrorKind::P2mFrameOutOfRange { index, pfn },
                    ));
                }
                self.state = State::Body;
                Ok(Some(Item::P2mFrames(&self.frames)))
            }
            State::Body => self.read_chunk(),
            State::Tail => match self.guest {
                Guest::Hvm => {
                    let ioreq = self.read_u64("HVM tail", "the magic pfns")?;
                    let bufioreq = self.read_u64("HVM tail", "the magic pfns")?;
                    let store = self.read_u64("HVM tail", "the magic pfns")?;
                    self.state = State::HvmContext;
                    Ok(Some(Item::HvmMagicPfns {
                        ioreq,
                        bufioreq,
                        store,
                    }))
                }
                Guest::Pv => {
                    let at = self.offset;
                    let n = self.read_u32("PV tail", "the unmapped pfn count")?;
                    if n > MAX_UNMAPPED_PFNS {
                        return Err(self.err(
                            at,
                            "PV tail",
                            LegacyErrorKind::TooManyUnmappedPfns(n),
                        ));
                    }
                    self.skip(
                        u64::from(n) * self.width.bytes() as u64,
                        "PV tail",
                        "the unmapped pfns",
                    )?;
                    self.state = State::Vcpus(0);
                    Ok(Some(Item::UnmappedPfns(n)))
                }
            },
            State::Vcpus(i) => {
                if i >= self.online.len() {
                    self.state = State::SharedInfo;
                    return self.next_item();
                }
                self.state = State::Vcpus(i + 1);
                self.read_vcpu(i).map(Some)
            }
            State::SharedInfo => {
                let mut blob = std::mem::take(&mut self.blob);
                let r = Self::read_blob(
                    &mut self.inner,
                    &mut self.offset,
                    &mut blob,
                    PAGE_SIZE as u64,
                    "PV tail",
                    "the shared info page",
                );
                self.blob = blob;
                r?;
                self.state = State::End;
                Ok(Some(Item::SharedInfo(&self.blob)))
            }
            State::HvmContext => {
                let at = self.offset;
                let len = self.read_u32("HVM tail", "the HVM context length")?;
                if len == 0 || len > MAX_BLOB {
                    return Err(self.err(
                        at,
                        "HVM tail",
                        LegacyErrorKind::BadLength {
                            what: "HVM context length",
                            len: u64::from(len),
                        },
                    ));
                }
                let mut blob = std::mem::take(&mut self.blob);
                let r = Self::read_blob(
                    &mut self.inner,
                    &mut self.offset,
                    &mut blob,
                    u64::from(len),
                    "HVM tail",
                    "the HVM context",
                );
                self.blob = blob;
                r?;
                self.state = State::End;
                Ok(Some(Item::HvmContext(&self.blob)))
            }
            State::End => {
                self.state = State::Done;
                Ok(Some(Item::End))
            }
            State::Done => Ok(None),
        }
    }

    fn read_extended_info(&mut self) -> Result<ExtendedInfo, LegacyError> {
        const PART: &str = "extended info";
        let at = self.offset;
        let sig = self.read_ulong(PART, "the signature")?;
        if sig != self.width.all_ones() {
            return Err(self.err(
                at,
                PART,
                LegacyErrorKind::NoExtendedInfo {
                    found: sig,
                    width: self.width,
                },
            ));
        }
        let mut left = self.read_u32(PART, "the total length")?;
        let mut ext = ExtendedInfo {
            guest_width: 0,
            vcpu_context_len: 0,
            extended: false,
            xsave_len: 0,
            skipped: Vec::new(),
        };
        while left > 0 {
            let at = self.offset;
            if left < 8 {
                return Err(self.err(
                    at,
                    PART,
                    LegacyErrorKind::ExtendedInfoOverrun {
                        id: *b"????",
                        size: 0,
                        left,
                    },
                ));
            }
            let id = self.read_array::<4>(PART, "a block id")?;
            let size = self.read_u32(PART, "a block size")?;
            if u64::from(size) + 8 > u64::from(left) {
                return Err(self.err(
                    at,
                    PART,
                    LegacyErrorKind::ExtendedInfoOverrun { id, size, left },
                ));
            }
            left -= 8 + size;
            match &id {
                b"vcpu" => {
                    ext.guest_width = match size {
                        VCPU_CONTEXT_32 => 4,
                        VCPU_CONTEXT_64 => 8,
                        _ => {
                            return Err(self.err(
                                at + 4,
                                PART,
                                LegacyErrorKind::BadVcpuBlockSize(size),
                            ))
                        }
                    };
                    ext.vcpu_context_len = size;
                    self.skip(u64::from(size), PART, "the \"vcpu\" block")?;
                }
                b"extv" => {
                    ext.extended = true;
                    self.skip(u64::from(size), PART, "the \"extv\" block")?;
                }
                b"xcnt" => {
                    // Xen's restorer reads 4 octets and takes the block as
                    // done, so any other size misreads the blocks after it.
                    if size != 4 {
                        return Err(self.err(at + 4, PART, LegacyErrorKind::BadXcntBlock(size)));
                    }
                    let vat = self.offset;
                    let n = self.read_u32(PART, "the \"xcnt\" size")?;
                    if !(16..=MAX_BLOB).contains(&n) {
                        return Err(self.err(vat, PART, LegacyErrorKind::BadXcntBlock(n)));
                    }
                    ext.xsave_len = n;
                }
                _ => {
                    ext.skipped.push(id);
                    self.skip(u64::from(size), PART, "an unknown block")?;
                }
            }
        }
        if ext.guest_width == 0 {
            return Err(self.err(self.offset, PART, LegacyErrorKind::NoVcpuBlock));
        }
        Ok(ext)
    }

    fn read_chunk(&mut self) -> Result<Option<Item<'_>>, LegacyError> {
        let at = self.offset;
        let marker = self.read_i32("body", "a chunk marker")?;
        if marker == 0 {
            if !self.saw_vcpu_info {
                return Err(self.err(at, "body", LegacyErrorKind::NoVcpuInfo));
            }
            if self.ioreq_server.0 != self.ioreq_server.1 {
                return Err(self.err(at, "body", LegacyErrorKind::IoreqServerPair));
            }
            self.state = State::Tail;
            return Ok(Some(Item::BodyEnd));
        }
        if marker > 0 {
            if marker as u32 > MAX_BATCH {
                return Err(self.err(at, "body", LegacyErrorKind::UnknownChunk(marker)));
            }
            return self.read_batch(marker as u32).map(Some);
        }
        let Some(chunk) = ChunkId::from_value(marker) else {
            return Err(self.err(at, "body", LegacyErrorKind::UnknownChunk(marker)));
        };
        let part = format!("chunk {chunk}");
        if let Some(index) = chunk.hvm_param() {
            if self.guest == Guest::Pv {
                return Err(self.err(at, part, LegacyErrorKind::HvmChunkInPv(chunk)));
            }
            let pad = self.read_u32(&part, "the chunk padding")?;
            if pad != 0 {
                return Err(self.err(at + 4, part, LegacyErrorKind::NonZeroChunkPad(chunk)));
            }
            let value = self.read_u64(&part, "the chunk value")?;
            match chunk {
                ChunkId::HvmIoreqServerPfn => self.ioreq_server.0 = true,
                ChunkId::HvmNrIoreqServerPages => self.ioreq_server.1 = true,
                _ => {}
            }
            return Ok(Some(Item::Chunk(Chunk::HvmParam {
                chunk,
                index,
                value,
            })));
        }
        match chunk {
            ChunkId::EnableVerifyMode => Ok(Some(Item::Chunk(Chunk::VerifyMode))),
            ChunkId::VcpuInfo => {
                let mat = self.offset;
                let max = self.read_i32(&part, "max_vcpu_id")?;
                if max < 0 || max as u32 >= MAX_VCPUS {
                    return Err(self.err(mat, part, LegacyErrorKind::BadMaxVcpuId(max)));
                }
                let words = max as u64 / 64 + 1;
                let mut map = std::mem::take(&mut self.frames);
                let r = self.read_ulongs_u64(words, &mut map, &part);
                let mut online = std::mem::take(&mut self.online);
                online.clear();
                if r.is_ok() {
                    for (w, bits) in map.iter().enumerate() {
                        for b in 0..64 {
                            if bits & (1 << b) != 0 {
                                online.push(w as u32 * 64 + b);
                            }
                        }
                    }
                }
                self.frames = map;
                self.online = online;
                r?;
                if let Some(&above) = self.online.iter().find(|&&v| v > max as u32) {
                    return Err(self.err(
                        mat + 4,
                        part,
                        LegacyErrorKind::BadVcpuMap(format!(
                            "sets vCPU {above}, above max_vcpu_id {max}"
                        )),
                    ));
                }
                if self.online.is_empty() {
                    return Err(self.err(
                        mat + 4,
                        part,
                        LegacyErrorKind::BadVcpuMap("has no vCPU online".into()),
                    ));
                }
                self.saw_vcpu_info = true;
                Ok(Some(Item::Chunk(Chunk::VcpuInfo {
                    max_vcpu_id: max as u32,
                    online: &self.online,
                })))
            }
            ChunkId::TscInfo => {
                let mode = self.read_u32(&part, "the TSC mode")?;
                let elapsed_nsec = self.read_u64(&part, "the TSC elapsed time")?;
                let gtsc_khz = self.read_u32(&part, "the TSC frequency")?;
                let incarnation = self.read_u32(&part, "the TSC incarnation")?;
                Ok(Some(Item::Chunk(Chunk::TscInfo(TscInfo {
                    mode,
                    gtsc_khz,
                    elapsed_nsec,
                    incarnation,
                }))))
            }
            ChunkId::LastCheckpoint => {
                self.last_checkpoint = true;
                Ok(Some(Item::Chunk(Chunk::LastCheckpoint)))
            }
            ChunkId::Toolstack => {
                let lat = self.offset;
                let len = self.read_u32(&part, "the toolstack data length")?;
                if len > MAX_BLOB {
                    return Err(self.err(
                        lat,
                        part,
                        LegacyErrorKind::BadLength {
                            what: "toolstack data length",
                            len: u64::from(len),
                        },
                    ));
                }
                let mut blob = std::mem::take(&mut self.blob2);
                let r = Self::read_blob(
                    &mut self.inner,
                    &mut self.offset,
                    &mut blob,
                    u64::from(len),
                    &part,
                    "the toolstack data",
                );
                self.blob2 = blob;
                r?;
                Ok(Some(Item::Chunk(Chunk::Toolstack(&self.blob2))))
            }
            ChunkId::Tmem | ChunkId::TmemExtra => Err(self.err(
                at,
                part,
                LegacyErrorKind::Unsupported {
                    chunk,
                    why: "transcendent memory (tmem) pages; Xen removed tmem in 4.13, so no \
                          current Xen can restore them",
                },
            )),
            ChunkId::CompressedData | ChunkId::EnableCompression => Err(self.err(
                at,
                part,
                LegacyErrorKind::Unsupported {
                    chunk,
                    why: "Remus checkpoint compression, which the v2 stream has no form for",
                },
            )),
            _ => Err(self.err(at, part, LegacyErrorKind::UnknownChunk(marker))),
        }
    }

    /// `n` u64 words (VCPU_INFO's map is u64 whatever the toolstack width).
    fn read_ulongs_u64(
        &mut self,
        n: u64,
        out: &mut Vec<u64>,
        part: &str,
    ) -> Result<(), LegacyError> {
        out.clear();
        for _ in 0..n {
            out.push(self.read_u64(part, "the vCPU map")?);
        }
        Ok(())
    }

    fn read_batch(&mut self, count: u32) -> Result<Item<'_>, LegacyError> {
        let index = self.batches;
        self.batches += 1;
        let part = format!("batch {index}");
        let at = self.offset;
        let mut entries = std::mem::take(&mut self.entries);
        let r = self.read_ulongs(
            u64::from(count),
            &mut entries,
            &part,
            "the batch's pfn array",
        );
        let checked = r.and_then(|()| self.check_batch(&mut entries, at, &part));
        let fillers = count - entries.len() as u32;
        self.entries = entries;
        let data = checked?;
        let mut pages = std::mem::take(&mut self.pages);
        pages.resize(data * PAGE_SIZE, 0);
        let r = Self::fill(
            &mut self.inner,
            &mut self.offset,
            &mut pages,
            &part,
            "the batch's pages",
        );
        self.pages = pages;
        r?;
        Ok(Item::Batch(Batch {
            index,
            entries: &self.entries,
            pages: &self.pages,
            fillers,
        }))
    }

    /// Checks a batch's entries and drops the fillers; returns how many
    /// pages of data follow.
    fn check_batch(
        &self,
        entries: &mut Vec<u64>,
        at: u64,
        part: &str,
    ) -> Result<usize, LegacyError> {
        let w = self.width.bytes() as u64;
        let mut data = 0;
        let mut seen: Vec<u64> = Vec::with_capacity(entries.len());
        for (index, &e) in entries.iter().enumerate() {
            let eat = at + index as u64 * w;
            if e >> 32 != 0 {
                return Err(self.err(
                    eat,
                    part,
                    LegacyErrorKind::HighEntryBits { index, entry: e },
                ));
            }
            let bits = ((e & TYPE_FIELD) >> 28) as u8;
            let Some(t) = PageType::from_bits(bits) else {
                return Err(self.err(eat, part, LegacyErrorKind::BadPageType { index, bits }));
            };
            if e == XTAB_FILLER {
                continue;
            }
            let pfn = e & PFN_FIELD;
            if pfn >= self.p2m_size {
                return Err(self.err(
                    eat,
                    part,
                    LegacyErrorKind::PfnOutOfRange {
                        index,
                        pfn,
                        p2m_size: self.p2m_size,
                    },
                ));
            }
            if t.has_data() {
                data += 1;
            }
            seen.push(pfn);
        }
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(self.err(at, part, LegacyErrorKind::DuplicatePfn(w[0])));
        }
        entries.retain(|&e| e != XTAB_FILLER);
        Ok(data)
    }

    fn read_vcpu(&mut self, i: usize) -> Result<Item<'_>, LegacyError> {
        let id = self.online[i];
        let part = format!("PV tail, vCPU {id}");
        let ext = self.ext.clone().unwrap_or(ExtendedInfo {
            guest_width: 8,
            vcpu_context_len: VCPU_CONTEXT_64,
            extended: false,
            xsave_len: 0,
            skipped: Vec::new(),
        });
        // One buffer holds basic | extended | xsave, sliced below.
        let basic_len = ext.vcpu_context_len as usize;
        let ext_len = if ext.extended {
            EXTENDED_CONTEXT_LEN
        } else {
            0
        };
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.resize(basic_len + ext_len, 0);
        let r = Self::fill(
            &mut self.inner,
            &mut self.offset,
            &mut buf,
            &part,
            "a vCPU context",
        );
        self.scratch = buf;
        r?;
        let mut mask = 0;
        if ext.xsave_len > 0 {
            mask = self.read_u64(&part, "the xsave mask")?;
            // Each vCPU's own size: Xen 4.4 and 4.5 size a vCPU's block by
            // its own xcr0_accum, while "xcnt" holds vCPU 0's.
            let sat = self.offset;
            let size = self.read_u64(&part, "the xsave size")?;
            if size > u64::from(MAX_BLOB) {
                return Err(self.err(
                    sat,
                    part,
                    LegacyErrorKind::BadLength {
                        what: "xsave size",
                        len: size,
                    },
                ));
            }
            let mut blob = std::mem::take(&mut self.blob);
            let r = Self::read_blob(
                &mut self.inner,
                &mut self.offset,
                &mut blob,
                size,
                &part,
                "the xsave data",
            );
            self.blob = blob;
            r?;
        }
        let (basic, extended) = self.scratch.split_at(basic_len);
        Ok(Item::Vcpu(VcpuTail {
            id,
            basic,
            extended: ext.extended.then_some(extended),
            xsave: (ext.xsave_len > 0).then_some((mask, &self.blob[..])),
        }))
    }

    /// After [`Item::End`] of an HVM image: the device model record's
    /// header, or `None` when the input ends there.
    pub fn device_model(&mut self) -> Result<Option<DeviceModel>, LegacyError> {
        const PART: &str = "device model record";
        let at = self.offset;
        let mut sig = [0u8; 21];
        let got = crate::input::read_upto(&mut self.inner, &mut sig)
            .map_err(|e| LegacyError::io(at, PART, &e))?;
        self.offset += got as u64;
        if got == 0 {
            return Ok(None);
        }
        if got < sig.len() {
            return Err(self.err(
                self.offset,
                PART,
                LegacyErrorKind::Truncated {
                    what: "the signature",
                },
            ));
        }
        if &sig == XEND_QEMU_SIGNATURE {
            return Ok(Some(DeviceModel {
                signature: sig,
                len: None,
            }));
        }
        if &sig != QEMU_SIGNATURE && &sig != REMUS_QEMU_SIGNATURE {
            return Err(self.err(at, PART, LegacyErrorKind::BadQemuSignature(sig)));
        }
        let lat = self.offset;
        let len = self.read_u32(PART, "the length")?;
        if len > MAX_BLOB {
            return Err(self.err(
                lat,
                PART,
                LegacyErrorKind::BadLength {
                    what: "device model record length",
                    len: u64::from(len),
                },
            ));
        }
        Ok(Some(DeviceModel {
            signature: sig,
            len: Some(len),
        }))
    }

    /// Copies `len` octets of device model data to `out` without holding
    /// them (or, with `None`, everything to the end of the input); returns
    /// how many were copied.
    pub fn copy_device_model<W: Write>(
        &mut self,
        len: Option<u32>,
        out: &mut W,
    ) -> Result<u64, LegacyError> {
        const PART: &str = "device model record";
        let at = self.offset;
        let limit = len.map_or(u64::MAX, u64::from);
        let got = copy_counting(&mut self.inner.by_ref().take(limit), out)
            .map_err(|(n, e)| LegacyError::io(at + n, PART, &e))?;
        self.offset += got;
        if let Some(l) = len {
            if got < u64::from(l) {
                return Err(self.err(
                    self.offset,
                    PART,
                    LegacyErrorKind::Truncated {
                        what: "the QEMU data",
                    },
                ));
            }
        }
        Ok(got)
    }

    /// xend's (and libxl 4.0's) device model data: everything to the end
    /// of the input, at most `max` octets.
    pub fn device_model_to_end(&mut self, max: u32) -> Result<Vec<u8>, LegacyError> {
        const PART: &str = "device model record";
        let mut data = Vec::new();
        Self::read_blob(
            &mut self.inner,
            &mut self.offset,
            &mut data,
            u64::from(max) + 1,
            PART,
            "the QEMU data",
        )
        .or_else(|e| match e.kind {
            LegacyErrorKind::Truncated { .. } => Ok(()),
            _ => Err(e),
        })?;
        if data.len() > max as usize {
            return Err(self.err(
                self.offset,
                PART,
                LegacyErrorKind::BadLength {
                    what: "device model data to the end of the file",
                    len: data.len() as u64,
                },
            ));
        }
        Ok(data)
    }

    /// Fails unless the input ends here.
    pub fn expect_eof(&mut self) -> Result<(), LegacyError> {
        let mut b = [0u8; 1];
        let at = self.offset;
        let got = crate::input::read_upto(&mut self.inner, &mut b)
            .map_err(|e| LegacyError::io(at, "end", &e))?;
        if got > 0 {
            return Err(self.err(
                at,
                "end",
                LegacyErrorKind::TrailingData {
                    checkpointed: !self.last_checkpoint,
                },
            ));
        }
        Ok(())
    }
}

/// `io::copy` that reports how far it got when it fails.
fn copy_counting<R: Read, W: Write>(r: &mut R, w: &mut W) -> Result<u64, (u64, io::Error)> {
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let got = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((n, e)),
        };
        w.write_all(&buf[..got]).map_err(|e| (n, e))?;
        n += got as u64;
    }
}
