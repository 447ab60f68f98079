//! The guest seam of the save engine with a guest type other than HVM's:
//! the memory mechanism queries and maps the frames the guest type names,
//! and sends the pages it normalises from a rewritten copy, the others
//! straight from the mappings.

use xensim::GuestType;

use super::ctx::Ctx;
use super::guest::PageFrames;
use super::memory;
use super::testutil::{RecLog, TempHost, ToolstackSave};
use super::{SaveError, SaveParams};
use crate::hv::{DomainCtl, PAGE_SIZE};
use crate::stream::{DomainType, PageType, Reader, Record};

/// A guest type whose pfn `p` lives at frame `p + 1`, and whose pages with
/// an odd first byte it rewrites (every byte inverted) for the stream.
struct Shifted;

impl PageFrames for Shifted {
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        pfn + 1
    }

    fn needs_normalise(&self, t: PageType) -> bool {
        t == PageType::NoTab
    }

    fn normalise_page(&self, t: PageType, page: &mut [u8; PAGE_SIZE]) -> Result<(), SaveError> {
        assert_eq!(t, PageType::NoTab);
        if page[0] % 2 == 1 {
            for b in page.iter_mut() {
                *b = !*b;
            }
        }
        Ok(())
    }
}

/// A guest type that leaves pages alone but names shifted frames.
struct ShiftedOnly;

impl PageFrames for ShiftedOnly {
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        pfn + 1
    }
}

/// Every data page of `stream` by pfn.
fn data_pages(stream: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut r = Reader::new(stream).expect("headers");
    let mut pages = Vec::new();
    while let Some(rec) = r.next_record().expect("record") {
        if let Record::PageData(pd) = rec {
            for (e, page) in pd.pages() {
                if let Some(p) = page {
                    pages.push((e.pfn, p.to_vec()));
                }
            }
        }
    }
    pages
}

/// Sends every pfn of a 4 MiB guest but the last through `guest`.
fn send_through(guest: &dyn PageFrames) -> (Vec<u8>, xensim::Domain) {
    let h = TempHost::new("seam");
    let id = h.create(GuestType::Hvm, 4 << 20, 77, false);
    let hv = h.hv();
    let info = hv.domain_info(id).expect("domain info");
    let p2m = hv.nr_gpfns(id).expect("p2m size") - 1;
    let mut out = Vec::new();
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let params = SaveParams::default();
    {
        let mut ctx = Ctx::new(&hv, id, &mut out, None, &params, &mut cb, &log, info);
        ctx.mem.setup(p2m);
        ctx.out.headers(DomainType::X86Hvm, 4, 17).expect("headers");
        ctx.out.static_data_end().expect("static data end");
        memory::send_all_pages(&mut ctx, guest).expect("send pages");
        ctx.out.end().expect("end");
    }
    (out, h.domain(id))
}

fn frame(dom: &xensim::Domain, frame: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    dom.read_frame(frame, &mut page).expect("read frame");
    page
}

#[test]
fn pages_are_read_at_the_frames_the_guest_type_names() {
    let (out, dom) = send_through(&ShiftedOnly);
    let pages = data_pages(&out);
    assert!(pages.len() > 100, "a mixed guest has data pages");
    for (pfn, page) in &pages {
        assert_eq!(*page, frame(&dom, pfn + 1), "pfn {pfn:#x}");
    }
}

#[test]
fn pages_the_guest_type_normalises_go_out_rewritten() {
    let (out, dom) = send_through(&Shifted);
    let pages = data_pages(&out);
    let mut rewritten = 0;
    for (pfn, page) in &pages {
        let mut want = frame(&dom, pfn + 1);
        if want[0] % 2 == 1 {
            want.iter_mut().for_each(|b| *b = !*b);
            rewritten += 1;
        }
        assert_eq!(*page, want, "pfn {pfn:#x}");
    }
    assert!(rewritten > 0, "some pages had an odd first byte");
    assert!(rewritten < pages.len(), "and some an even one");
}
