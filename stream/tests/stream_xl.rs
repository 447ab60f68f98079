//! The `xl` save-file header: hand-built byte vectors, malformed headers
//! with the error each must produce, and round trips (proptest).

use proptest::prelude::*;
use xcmig_stream::xl::*;
use xcmig_stream::Endian;

/// The header exactly as `xl save` lays it out on x86 (little-endian),
/// with optional data = u32 config_len + config.
fn xl_bytes(mandatory: u32, optional_flags: u32, config: Option<&[u8]>, tail: &[u8]) -> Vec<u8> {
    let mut v = b"Xen saved domain, xl format\n \0 \r".to_vec();
    assert_eq!(v.len(), 32);
    v.extend_from_slice(&[0x04, 0x03, 0x02, 0x01]);
    v.extend_from_slice(&mandatory.to_le_bytes());
    v.extend_from_slice(&optional_flags.to_le_bytes());
    let optlen = config.map_or(0, |c| 4 + c.len() + tail.len()) as u32;
    v.extend_from_slice(&optlen.to_le_bytes());
    if let Some(c) = config {
        v.extend_from_slice(&(c.len() as u32).to_le_bytes());
        v.extend_from_slice(c);
        v.extend_from_slice(tail);
    }
    v
}

#[test]
fn xl_save_header_decodes_with_json_config_and_leaves_the_reader_at_the_stream() {
    let cfg = b"{\"c_info\":{}}\0";
    let mut bytes = xl_bytes(3, 0, Some(cfg), b"");
    bytes.extend_from_slice(b"LibxlFmt");
    let mut r = &bytes[..];
    let h = XlHeader::read_from(&mut r).unwrap();
    assert_eq!(h.byte_order, Endian::Little);
    assert!(h.stream_v2() && h.config_json());
    assert_eq!(h.config(), Some(&cfg[..]));
    assert_eq!(h.encoded_len(), 48 + 4 + cfg.len() as u64);
    assert_eq!(r, b"LibxlFmt", "reader stops exactly at the libxl stream");
    assert!(h.warnings().is_empty(), "{:?}", h.warnings());
}

#[test]
fn writer_matches_what_xl_save_writes() {
    let cfg = b"{}\0".to_vec();
    let h = XlHeader::new_json(cfg.clone());
    assert_eq!(h.to_bytes().unwrap(), xl_bytes(3, 0, Some(&cfg), b""));
    // No config: xl still writes the 4-byte zero length, without the JSON flag.
    let h = XlHeader::new_json(Vec::new());
    assert_eq!(h.to_bytes().unwrap(), xl_bytes(2, 0, Some(b""), b""));
}

#[test]
fn big_endian_header_is_read_and_warned_about() {
    let h = XlHeader {
        byte_order: Endian::Big,
        mandatory_flags: XL_MANDATORY_STREAM_V2,
        optional_flags: 0,
        optional: Some(XlOptionalData {
            config: b"name=\"x\"\n".to_vec(),
            tail: vec![],
        }),
    };
    let bytes = h.to_bytes().unwrap();
    assert_eq!(&bytes[32..36], &[1, 2, 3, 4]);
    assert_eq!(&bytes[48..52], &9u32.to_be_bytes());
    let got = XlHeader::read_from(&mut &bytes[..]).unwrap();
    assert_eq!(got, h);
    assert!(got.warnings().iter().any(|w| w.contains("big-endian")));
}

#[test]
fn unknown_optional_tail_and_flags_are_kept_and_warned_about() {
    let bytes = xl_bytes(3, 0x10, Some(b"{}\0"), b"future");
    let h = XlHeader::read_from(&mut &bytes[..]).unwrap();
    assert_eq!(h.optional.as_ref().unwrap().tail, b"future");
    assert_eq!(h.optional_flags, 0x10);
    let w = h.warnings();
    assert!(w.iter().any(|m| m.contains("optional_flags")), "{w:?}");
    assert!(
        w.iter().any(|m| m.contains("unknown optional data")),
        "{w:?}"
    );
    assert_eq!(h.to_bytes().unwrap(), bytes, "round trip keeps the tail");
}

#[test]
fn malformed_headers_fail_with_the_expected_rule_and_offset() {
    let good = xl_bytes(3, 0, Some(b"{}\0"), b"");
    let mut bad_magic = good.clone();
    bad_magic[4] = b'S';
    let mut bad_order = good.clone();
    bad_order[32..36].copy_from_slice(&[1, 2, 4, 3]);
    let mut short_opt = xl_bytes(2, 0, None, b"");
    short_opt[44] = 3;
    short_opt.extend_from_slice(&[0, 0, 0]);
    let mut cfg_too_long = good.clone();
    cfg_too_long[48..52].copy_from_slice(&4u32.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, XlErrorKind, u64)> = vec![
        ("bad magic", bad_magic, XlErrorKind::BadMagic, 4),
        (
            "not an xl file at all",
            b"LibxlFmt".to_vec(),
            XlErrorKind::BadMagic,
            0,
        ),
        (
            "bad byte order",
            bad_order,
            XlErrorKind::BadByteOrder(0x0304_0201),
            32,
        ),
        (
            "unknown mandatory flag",
            xl_bytes(7, 0, Some(b"{}\0"), b""),
            XlErrorKind::UnknownMandatoryFlags(4),
            36,
        ),
        (
            "optional data too short",
            short_opt,
            XlErrorKind::OptionalDataTooShort(3),
            44,
        ),
        (
            "config longer than optional data",
            cfg_too_long,
            XlErrorKind::ConfigExceedsOptionalData {
                config_len: 4,
                available: 3,
            },
            48,
        ),
        (
            "truncated fixed header",
            good[..40].to_vec(),
            XlErrorKind::Truncated {
                what: "the fixed header",
                needed: 8,
            },
            40,
        ),
        (
            "truncated config length",
            good[..50].to_vec(),
            XlErrorKind::Truncated {
                what: "the optional data",
                needed: 5,
            },
            50,
        ),
        (
            "truncated config",
            good[..53].to_vec(),
            XlErrorKind::Truncated {
                what: "the optional data",
                needed: 2,
            },
            53,
        ),
        (
            "empty input",
            Vec::new(),
            XlErrorKind::Truncated {
                what: "the fixed header",
                needed: 48,
            },
            0,
        ),
    ];
    for (name, bytes, kind, offset) in cases {
        let e = XlHeader::read_from(&mut &bytes[..]).expect_err(name);
        assert_eq!(e.kind, kind, "{name}: {e}");
        assert_eq!(e.offset, offset, "{name}: {e}");
        let line = e.to_string();
        assert!(
            line.starts_with(&format!("offset {offset}, xl header: ")),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}

#[test]
fn a_huge_optional_data_length_fails_as_truncation() {
    let mut bytes = xl_bytes(3, 0, None, b"");
    bytes[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let e = XlHeader::read_from(&mut &bytes[..]).unwrap_err();
    assert_eq!(e.offset, 52);
    assert!(matches!(e.kind, XlErrorKind::Truncated { .. }));
}

fn arb_header() -> impl Strategy<Value = XlHeader> {
    (
        any::<bool>(),
        0u32..4,
        any::<u32>(),
        proptest::option::of((
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(any::<u8>(), 0..20),
        )),
    )
        .prop_map(|(big, mandatory_flags, optional_flags, opt)| XlHeader {
            byte_order: if big { Endian::Big } else { Endian::Little },
            mandatory_flags,
            optional_flags,
            optional: opt.map(|(config, tail)| XlOptionalData { config, tail }),
        })
}

proptest! {
    #[test]
    fn header_round_trips_through_writer_and_reader(h in arb_header(), after in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = Vec::new();
        h.write_to(&mut bytes).unwrap();
        prop_assert_eq!(bytes.len() as u64, h.encoded_len());
        bytes.extend_from_slice(&after);
        let mut r = &bytes[..];
        let got = XlHeader::read_from(&mut r).unwrap();
        prop_assert_eq!(got, h);
        prop_assert_eq!(r, &after[..]);
    }

    #[test]
    fn reader_never_panics_on_arbitrary_bytes_after_the_magic(tail in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut bytes = XL_MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = XlHeader::read_from(&mut &bytes[..]);
    }
}
