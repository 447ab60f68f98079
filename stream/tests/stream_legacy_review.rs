//! Cases from a review of `xcmig_stream::legacy` against Xen's own savers
//! and restorers (`tools/libxc/xc_domain_save.c`, `xc_domain_restore.c`,
//! `tools/libxl/libxl_dom.c` at RELEASE-4.0.0 to RELEASE-4.5.0): images a
//! real Xen 4.0-4.5 toolstack writes, each converted.

mod legacy_support;

use legacy_support::{opts, run};
use xcmig_stream::legacy::{Guest, OutputFormat};
use xcmig_stream::{PageType, PfnEntry, Reader, Record};
use xcmig_testkit::legacy_image::{small_hvm, small_pv, toolstack, vcpu_info, Part, Tail, XTAB};

/// The record type names of a libxc stream up to END, and its PAGE_DATA
/// entries.
fn records(stream: &[u8]) -> (Vec<String>, Vec<Vec<PfnEntry>>) {
    let mut r = Reader::new(stream).expect("libxc headers");
    let (mut names, mut pages) = (Vec::new(), Vec::new());
    while let Some(rec) = r.next_record().expect("valid libxc record") {
        names.push(rec.record_type().name().to_string());
        if let Record::PageData(p) = &rec {
            pages.push(p.entries().to_vec());
        }
        if matches!(rec, Record::End) {
            break;
        }
    }
    (names, pages)
}

/// Xen 4.0's saver marks an HVM batch's unmappable pfns (holes) as
/// `pfn | XTAB` (RELEASE-4.0.0 xc_domain_save.c:1285-1302: for HVM
/// `pfn_type[j]` is the pfn and `|= XEN_DOMCTL_PFINFO_XTAB` on a mapping
/// error), not the bare 0xf0000000 filler of later savers: such entries are
/// XTAB entries with their pfn and no data.
#[test]
fn xen40_hvm_batches_carry_xtab_entries_with_their_pfn() {
    let mut img = small_hvm(64, 2);
    // Pages 0..2 are generated; then a batch of 3 with a hole at 5 and 6.
    let mut pages = vec![0x11u8; 4096];
    pages.extend_from_slice(&[0x22; 4096]);
    img.body.insert(
        2,
        Part::Batch {
            entries: vec![4, XTAB | 5, XTAB | 6, 7],
            pages,
        },
    );
    let out = run(&img.to_bytes(), &opts(64, Guest::Hvm, OutputFormat::Libxc))
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, pages) = records(&out);
    let want = [
        PfnEntry::new(4, PageType::NoTab),
        PfnEntry::new(5, PageType::XTab),
        PfnEntry::new(6, PageType::XTab),
        PfnEntry::new(7, PageType::NoTab),
    ];
    assert!(
        pages.iter().any(|p| p[..] == want[..]),
        "the XTAB entries are carried with their pfn: {pages:?}"
    );
}

/// Xen 4.0 writes no LAST_CHECKPOINT (-9) chunk (it appeared in 4.1,
/// RELEASE-4.1.0 xc_domain_save.c:1653); its restorer then treats EOF after
/// the tail as the end of the only checkpoint.
#[test]
fn xen40_images_without_last_checkpoint_convert() {
    for (guest, mut img) in [
        (Guest::Hvm, small_hvm(32, 2)),
        (Guest::Pv, small_pv(32, 32, 2)),
    ] {
        img.body.retain(|p| !matches!(p, Part::Chunk(-9, _)));
        let out = run(&img.to_bytes(), &opts(32, guest, OutputFormat::Libxc))
            .unwrap_or_else(|e| panic!("{guest}: {e}"));
        assert_eq!(records(&out).0.last().map(String::as_str), Some("END"));
    }
}

/// libxl (4.2-4.5) installs `libxl__toolstack_save` for every guest
/// (RELEASE-4.5.0 libxl_dom.c:1850), so a PV image has a TOOLSTACK chunk
/// too: version 1, no physmap entries. It converts to no
/// EMULATOR_XENSTORE_DATA record.
#[test]
fn libxl_pv_images_carry_an_empty_physmap() {
    let mut img = small_pv(64, 64, 2);
    let mut data = 1u32.to_le_bytes().to_vec();
    data.extend_from_slice(&0u32.to_le_bytes());
    img.body.insert(2, toolstack(&data));
    let out = run(&img.to_bytes(), &opts(64, Guest::Pv, OutputFormat::Libxl))
        .unwrap_or_else(|e| panic!("{e}"));
    let (names, _) = records(&out[24..]);
    assert_eq!(names.last().map(String::as_str), Some("END"));
}

/// Xen 4.2+ writes VCPU_INFO's map as `max_vcpu_id / 64 + 1` u64 words
/// (`vcpumap_sz`); 4.0/4.1 wrote one u64 and refused guests with 64 vCPUs
/// or more, the same octets for those. 65 vCPUs take two words.
#[test]
fn vcpu_info_of_65_vcpus_has_two_map_words() {
    let mut img = small_hvm(64, 2);
    let online: Vec<u32> = (0..65).collect();
    for p in &mut img.body {
        if matches!(p, Part::Chunk(-2, _)) {
            *p = vcpu_info(64, &online);
        }
    }
    run(&img.to_bytes(), &opts(64, Guest::Hvm, OutputFormat::Libxc))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Xen 4.0's libxl (`xl save`) ended an HVM image with
/// "QemuDeviceModelRecord" and the QEMU data to EOF (RELEASE-4.0.0
/// libxl_dom.c:333-351, libxl_internal.h:35), like xend in every release,
/// not with libxl 4.1's "DeviceModelRecord0002" + length. An `xl` file
/// holds a libxl stream, so `--xl` needs `--format libxl`, which refuses
/// that record ("xend's ... convert with --format libxc"), and `--format
/// libxc` refuses `--xl`: no option converts the file.
#[test]
fn xl40_hvm_save_file_with_qemu_record_to_eof_converts() {
    let mut img = small_hvm(64, 2);
    img.qemu = None;
    img.trailing = b"QemuDeviceModelRecord".to_vec();
    img.trailing.extend_from_slice(&[0x51; 333]);
    // xl 4.0's header: no JSON config (mandatory flags 0).
    let config = b"name = \"guest\"\n\0";
    let mut bytes = b"Xen saved domain, xl format\n \0 \r".to_vec();
    bytes.extend_from_slice(&0x0102_0304u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(4 + config.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&(config.len() as u32).to_le_bytes());
    bytes.extend_from_slice(config);
    bytes.extend_from_slice(&img.to_bytes());
    let mut o = opts(64, Guest::Hvm, OutputFormat::Libxl);
    o.xl = true;
    run(&bytes, &o).unwrap_or_else(|e| panic!("{e}"));
}

/// Xen 4.4/4.5 size each vCPU's xsave block by that vCPU's `xcr0_accum`
/// (RELEASE-4.5.0 xen/arch/x86/domctl.c:1038, `PV_XSAVE_SIZE(v->arch.
/// xcr0_accum)`), but the "xcnt" block holds vCPU 0's size, asked at the
/// start of the save (xc_domain_save.c:722-735); the tail writes each
/// vCPU's own mask, size and data (xc_domain_save.c:2007-2042). A vCPU
/// whose xcr0_accum differs from vCPU 0's (or vCPU 0's grown during a live
/// save) gives a size other than xcnt - 16. Xen's restorer reads
/// `vcpucount * xcnt` octets and then walks the per-vCPU sizes
/// (xc_domain_restore.c:627-636, 2174-2192), so it misreads such an image;
/// Debian's tool asserts. The sizes are in the image, so a reader can take
/// each vCPU's own, as ours does.
#[test]
fn per_vcpu_xsave_sizes_other_than_vcpu0s_convert() {
    let mut img = small_pv(64, 64, 2);
    if let Tail::Pv { vcpus, .. } = &mut img.tail {
        // vCPU 1 never enabled AVX: 16 + 512 + 64 octets of buffer.
        vcpus[1].xsave = Some((7, vec![0x33; 576]));
    }
    run(&img.to_bytes(), &opts(64, Guest::Pv, OutputFormat::Libxc))
        .unwrap_or_else(|e| panic!("{e}"));
}
