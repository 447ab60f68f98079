//! Record output of a save: each method writes one record of the libxc
//! stream (version 3, little-endian) and counts the bytes written.

use std::io::Write;

use crate::hv::{CpuidLeaf, MsrEntry, TscInfo, PAGE_SHIFT, PAGE_SIZE};

const IHDR_MARKER: u64 = u64::MAX;
const IHDR_ID: u32 = 0x5845_4E46; // "XENF"
const STREAM_VERSION: u32 = 3;

const REC_END: u32 = 0x00;
const REC_PAGE_DATA: u32 = 0x01;
const REC_X86_TSC_INFO: u32 = 0x08;
const REC_HVM_CONTEXT: u32 = 0x09;
const REC_HVM_PARAMS: u32 = 0x0a;
const REC_VERIFY: u32 = 0x0d;
const REC_CHECKPOINT: u32 = 0x0e;
const REC_STATIC_DATA_END: u32 = 0x10;
const REC_X86_CPUID_POLICY: u32 = 0x11;
const REC_X86_MSR_POLICY: u32 = 0x12;

/// Domain header guest types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestType {
    /// `DHDR_TYPE_X86_HVM`.
    X86Hvm = 2,
}

/// The record writer of one save.
pub(crate) struct Out<'a, W: Write> {
    w: &'a mut W,
    bytes: u64,
    scratch: Vec<u8>,
}

impl<'a, W: Write> Out<'a, W> {
    pub(crate) fn new(w: &'a mut W) -> Self {
        Out {
            w,
            bytes: 0,
            scratch: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Image header (big-endian) and domain header.
    pub(crate) fn headers(
        &mut self,
        guest: GuestType,
        major: u16,
        minor: u16,
    ) -> std::io::Result<()> {
        let mut h = Vec::with_capacity(40);
        h.extend_from_slice(&IHDR_MARKER.to_be_bytes());
        h.extend_from_slice(&IHDR_ID.to_be_bytes());
        h.extend_from_slice(&STREAM_VERSION.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes()); // options: little-endian
        h.extend_from_slice(&[0; 6]);
        h.extend_from_slice(&(guest as u32).to_le_bytes());
        h.extend_from_slice(&(PAGE_SHIFT as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&u32::from(major).to_le_bytes());
        h.extend_from_slice(&u32::from(minor).to_le_bytes());
        self.put(&h)
    }

    /// One record from body parts, padded to 8 bytes.
    fn record(&mut self, rtype: u32, parts: &[&[u8]]) -> std::io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len32 = u32::try_from(len)
            .ok()
            .filter(|l| *l <= 128 << 20)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("record {rtype:#x} of {len} bytes exceeds the 128 MiB limit"),
                )
            })?;
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&rtype.to_le_bytes());
        hdr[4..].copy_from_slice(&len32.to_le_bytes());
        self.put(&hdr)?;
        for p in parts {
            self.put(p)?;
        }
        let pad = (8 - len % 8) % 8;
        self.put(&[0u8; 8][..pad])
    }

    pub(crate) fn static_data_end(&mut self) -> std::io::Result<()> {
        self.record(REC_STATIC_DATA_END, &[])
    }

    pub(crate) fn end(&mut self) -> std::io::Result<()> {
        self.record(REC_END, &[])
    }

    pub(crate) fn verify(&mut self) -> std::io::Result<()> {
        self.record(REC_VERIFY, &[])
    }

    pub(crate) fn checkpoint(&mut self) -> std::io::Result<()> {
        self.record(REC_CHECKPOINT, &[])
    }

    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }

    /// PAGE_DATA: `{u32 count, u32 reserved}`, `count` entries
    /// `type << 32 | pfn` (the type in Xen's PFINFO encoding, so in bits
    /// 60..63), then the pages with data.
    pub(crate) fn page_data(
        &mut self,
        pfns: &[u64],
        types: &[u64],
        data: &[u8],
    ) -> std::io::Result<()> {
        debug_assert_eq!(pfns.len(), types.len());
        debug_assert_eq!(data.len() % PAGE_SIZE, 0);
        let mut head = std::mem::take(&mut self.scratch);
        head.clear();
        head.extend_from_slice(&(pfns.len() as u32).to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        for (pfn, t) in pfns.iter().zip(types) {
            head.extend_from_slice(&((t << 32) | pfn).to_le_bytes());
        }
        let res = self.record(REC_PAGE_DATA, &[&head, data]);
        self.scratch = head;
        res
    }

    pub(crate) fn cpuid_policy(&mut self, leaves: &[CpuidLeaf]) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(leaves.len() * 24);
        for l in leaves {
            for v in [l.leaf, l.subleaf, l.a, l.b, l.c, l.d] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.record(REC_X86_CPUID_POLICY, &[&b])
    }

    pub(crate) fn msr_policy(&mut self, msrs: &[MsrEntry]) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(msrs.len() * 16);
        for m in msrs {
            b.extend_from_slice(&m.idx.to_le_bytes());
            b.extend_from_slice(&m.flags.to_le_bytes());
            b.extend_from_slice(&m.val.to_le_bytes());
        }
        self.record(REC_X86_MSR_POLICY, &[&b])
    }

    /// X86_TSC_INFO `{u32 mode, u32 khz, u64 nsec, u32 incarnation, u32 reserved}`.
    pub(crate) fn tsc_info(&mut self, t: &TscInfo) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&t.mode.to_le_bytes());
        b.extend_from_slice(&t.gtsc_khz.to_le_bytes());
        b.extend_from_slice(&t.elapsed_nsec.to_le_bytes());
        b.extend_from_slice(&t.incarnation.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        self.record(REC_X86_TSC_INFO, &[&b])
    }

    /// HVM_PARAMS `{u32 count, u32 reserved}` then `{u64 index, u64 value}`.
    pub(crate) fn hvm_params(&mut self, params: &[(u32, u64)]) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(8 + params.len() * 16);
        b.extend_from_slice(&(params.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for (i, v) in params {
            b.extend_from_slice(&u64::from(*i).to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.record(REC_HVM_PARAMS, &[&b])
    }

    pub(crate) fn hvm_context(&mut self, blob: &[u8]) -> std::io::Result<()> {
        self.record(REC_HVM_CONTEXT, &[blob])
    }
}
