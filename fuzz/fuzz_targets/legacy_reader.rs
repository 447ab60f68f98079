//! Fuzzes the legacy save image codec (`xcmig_stream::legacy`): width
//! detection and conversion to a v2/v3 stream. No panic, no allocation
//! ahead of the input, every error on one line, detection consistent with
//! what conversion accepts, and every stream the converter writes is one
//! the libxc `Reader` reads to END: a converted stream our own reader
//! rejects is a bug.
//!
//! Input: one selector byte, then the image. Selector bits: 0 the toolstack
//! width (0: 32-bit, 1: 64-bit), 1 the guest (0: PV, 1: HVM), 2 the output
//! format (0: libxc, 1: libxl), 3 the libxc version (0: v3, 1: v2); the
//! other bits are ignored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcmig_stream::legacy::{
    convert, detect_width, xend_header_len, ConvertOptions, Detection, Guest, OutputFormat,
    Trailer, Width,
};
use xcmig_stream::{Reader, Record, Version};

/// The libxl header (16 octets) and the LIBXC_CONTEXT record (8) that the
/// libxl format puts in front of the libxc stream.
const LIBXL_PREFIX: usize = 24;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, image)) = data.split_first() else {
        return;
    };
    let width = if sel & 1 == 0 {
        Width::Bits32
    } else {
        Width::Bits64
    };
    let guest = if sel & 2 == 0 { Guest::Pv } else { Guest::Hvm };
    let format = if sel & 4 == 0 {
        OutputFormat::Libxc
    } else {
        OutputFormat::Libxl
    };
    let version = if sel & 8 == 0 {
        Version::V3
    } else {
        Version::V2
    };

    // The converter skips an xend file's header and config; detection
    // looks at the image after them, as `xcmig convert-legacy` does.
    let skip = xend_header_len(image).unwrap_or(0);
    let detection = detect_width(image.get(skip..).unwrap_or_default(), guest);
    assert!(!detection.explain(guest).contains('\n'));

    let opts = ConvertOptions {
        width,
        guest,
        format,
        version,
        xl: false,
        trailer: Trailer::Image,
    };
    let mut out = Vec::new();
    let converted = convert(image, &mut out, &opts);

    // Detection runs the same reader: a width it rules out (a rule broken,
    // not a truncation) cannot convert the whole input.
    let ruled_out = match &detection {
        Detection::Decided { width: w, .. } => *w != width,
        Detection::Neither { .. } => true,
        Detection::Ambiguous { .. } => false,
    };
    if ruled_out {
        assert!(
            converted.is_err(),
            "detection ruled out {width} ({detection:?}) but conversion succeeded"
        );
    }

    let summary = match converted {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            return;
        }
    };
    assert_eq!(summary.output_octets, out.len() as u64);
    assert_eq!(summary.input_octets, image.len() as u64);

    let stream = match format {
        OutputFormat::Libxc => &out[..],
        OutputFormat::Libxl => {
            assert!(out.len() >= LIBXL_PREFIX, "libxl output without its header");
            assert_eq!(&out[..8], b"LibxlFmt");
            assert_eq!(&out[16..24], &[1, 0, 0, 0, 0, 0, 0, 0], "LIBXC_CONTEXT");
            &out[LIBXL_PREFIX..]
        }
    };
    let mut r = Reader::new(stream)
        .unwrap_or_else(|e| panic!("the reader rejects the converted stream's headers: {e}"));
    assert_eq!(r.image_header().version, version);
    loop {
        match r.next_record() {
            Ok(Some(Record::End)) => break,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the converted stream ends before END"),
            Err(e) => panic!("the reader rejects the converted stream: {e}"),
        }
    }
    if format == OutputFormat::Libxc {
        // A libxc stream ends at END, unless a device model record was
        // carried after it as it was.
        let used = r.offset() as usize;
        assert!(
            used == stream.len() || summary.device_model.is_some(),
            "{} octets after END without a device model record",
            stream.len() - used
        );
    }
});
