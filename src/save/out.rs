//! Record output of a save, over the stream layer's [`Writer`] (which
//! checks each record's layout and the record order as it writes).
//!
//! The hypervisor and the stream share Xen's x86 values (`crate::x86`), so
//! records go out without conversions.

use std::io::{IoSlice, Write};

use crate::stream::{
    self, DomainHeader, DomainType, PageType, PfnEntry, VcpuKind, Writer, X86PvInfo,
};
use crate::x86::pv::GuestWidth;
use crate::x86::{CpuidLeaf, MsrEntry, TscInfo};

/// The record writer of one save. Created lazily by [`Out::headers`],
/// because libxenguest only writes the headers after its setup.
pub(crate) struct Out<'a, W: Write> {
    io: Option<&'a mut W>,
    w: Option<Writer<&'a mut W>>,
    entries: Vec<PfnEntry>,
}

impl<'a, W: Write> Out<'a, W> {
    pub(crate) fn new(io: &'a mut W) -> Self {
        Out {
            io: Some(io),
            w: None,
            entries: Vec::with_capacity(crate::hv::MAX_BATCH),
        }
    }

    /// Bytes written so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.w.as_ref().map_or(0, |w| w.offset())
    }

    fn writer(&mut self) -> Result<&mut Writer<&'a mut W>, stream::Error> {
        self.w.as_mut().ok_or_else(|| {
            stream::Error::at(
                0,
                stream::ErrorKind::Io {
                    kind: std::io::ErrorKind::Other,
                    message: "record written before the stream headers".into(),
                },
            )
        })
    }

    /// Image header (v3, little-endian) and domain header.
    pub(crate) fn headers(
        &mut self,
        guest: DomainType,
        major: u16,
        minor: u16,
    ) -> Result<(), stream::Error> {
        let Some(io) = self.io.take() else {
            return Err(stream::Error::at(
                0,
                stream::ErrorKind::Io {
                    kind: std::io::ErrorKind::Other,
                    message: "stream headers written twice".into(),
                },
            ));
        };
        let dh = DomainHeader::new(guest, u32::from(major), u32::from(minor));
        self.w = Some(Writer::new(io, &dh)?);
        Ok(())
    }

    pub(crate) fn static_data_end(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_static_data_end()
    }

    pub(crate) fn end(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_end()
    }

    pub(crate) fn verify(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_verify()
    }

    pub(crate) fn checkpoint(&mut self) -> Result<(), stream::Error> {
        self.writer()?.write_checkpoint()
    }

    pub(crate) fn flush(&mut self) -> Result<(), stream::Error> {
        self.writer()?.flush()
    }

    /// PAGE_DATA for `pfns` with their PFINFO `types` (already checked to
    /// be known types); `pages` hold the pages of the data-bearing entries,
    /// split in any way (e.g. one slice per run of a mapping). Written with
    /// one vectored write, the page bytes uncopied.
    pub(crate) fn page_data_slices(
        &mut self,
        pfns: &[u64],
        types: &[u64],
        pages: &[IoSlice<'_>],
    ) -> Result<(), stream::Error> {
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        for (&pfn, &t) in pfns.iter().zip(types) {
            // The engine checked every type is known before queueing it.
            let page_type = u32::try_from(t)
                .ok()
                .and_then(PageType::from_domctl_value)
                .unwrap_or(PageType::XTab);
            entries.push(PfnEntry::new(pfn, page_type));
        }
        // The writer hands these on to `write_vectored` whole.
        let pages: Vec<&[u8]> = pages.iter().map(|p| &**p).collect();
        let res = self.writer()?.write_page_data(&entries, &pages);
        self.entries = entries;
        res
    }

    pub(crate) fn cpuid_policy(&mut self, leaves: &[CpuidLeaf]) -> Result<(), stream::Error> {
        self.writer()?.write_x86_cpuid_policy(leaves)
    }

    pub(crate) fn msr_policy(&mut self, msrs: &[MsrEntry]) -> Result<(), stream::Error> {
        self.writer()?.write_x86_msr_policy(msrs)
    }

    pub(crate) fn tsc_info(&mut self, t: &TscInfo) -> Result<(), stream::Error> {
        self.writer()?.write_x86_tsc_info(t)
    }

    pub(crate) fn hvm_params(&mut self, params: &[(u32, u64)]) -> Result<(), stream::Error> {
        let p: Vec<stream::HvmParam> = params
            .iter()
            .map(|&(index, value)| stream::HvmParam {
                index: u64::from(index),
                value,
            })
            .collect();
        self.writer()?.write_hvm_params(&p)
    }

    pub(crate) fn hvm_context(&mut self, blob: &[u8]) -> Result<(), stream::Error> {
        self.writer()?.write_hvm_context(blob)
    }

    pub(crate) fn x86_pv_info(&mut self, width: GuestWidth) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_info(&X86PvInfo::new(width))
    }

    /// X86_PV_P2M_FRAMES for pfns `0..=end_pfn`: the pfns of the p2m's
    /// frames.
    pub(crate) fn x86_pv_p2m_frames(
        &mut self,
        end_pfn: u32,
        frames: &[u64],
    ) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_p2m_frames(0, end_pfn, frames)
    }

    /// One X86_PV_VCPU_* record: the `{vcpu_id, pad}` header, then `body`.
    pub(crate) fn x86_pv_vcpu(
        &mut self,
        kind: VcpuKind,
        vcpu: u32,
        body: &[u8],
    ) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_vcpu(kind, vcpu, body)
    }

    /// X86_PV_VCPU_MSRS: `{u32 index, u32 reserved, u64 value}` each.
    pub(crate) fn x86_pv_vcpu_msrs(
        &mut self,
        vcpu: u32,
        msrs: &[MsrEntry],
    ) -> Result<(), stream::Error> {
        self.writer()?.write_x86_pv_vcpu_msrs(vcpu, msrs)
    }

    pub(crate) fn shared_info(&mut self, page: &[u8]) -> Result<(), stream::Error> {
        self.writer()?.write_shared_info(page)
    }
}
