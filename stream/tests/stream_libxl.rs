//! The libxl stream layer: hand-built byte vectors for the header and every
//! record, a table of malformed inputs with the error each must produce,
//! the ordering rules, and writer -> reader round trips (proptest).

use proptest::prelude::*;
use xcmig_stream::libxl::*;
use xcmig_stream::Endian;

/// A little-endian record as libxl lays it out: header, body, zero padding.
fn rec(rtype: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&rtype.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    while v.len() % 8 != 0 {
        v.push(0);
    }
    v
}

fn emu_body(id: u32, index: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

const HDR_LE: [u8; 16] = *b"LibxlFmt\x00\x00\x00\x02\x00\x00\x00\x00";

fn stream(records: &[Vec<u8>]) -> Vec<u8> {
    let mut v = HDR_LE.to_vec();
    for r in records {
        v.extend_from_slice(r);
    }
    v
}

/// Reads every record until END or an error.
fn read_all(bytes: &[u8]) -> Result<Vec<(RecordPos, LibxlRecord)>, LibxlError> {
    let mut r = LibxlReader::new(bytes)?;
    let mut out = Vec::new();
    loop {
        let (pos, rec) = r.next_record()?;
        let end = rec == LibxlRecord::End;
        out.push((pos, rec));
        if end {
            return Ok(out);
        }
    }
}

fn first_error(bytes: &[u8]) -> LibxlError {
    read_all(bytes).expect_err("stream must be rejected")
}

#[test]
fn header_bytes_are_ident_version_options_big_endian() {
    assert_eq!(LibxlHeader::new().to_bytes(), HDR_LE);
    let h = LibxlHeader {
        version: 2,
        options: LIBXL_OPT_LEGACY | LIBXL_OPT_BIG_ENDIAN,
    };
    assert_eq!(&h.to_bytes()[12..], &[0, 0, 0, 3]);
    let parsed = LibxlHeader::parse(&h.to_bytes(), 0).unwrap();
    assert!(parsed.legacy());
    assert_eq!(parsed.endianness(), Endian::Big);
}

#[test]
fn every_record_type_decodes_from_hand_built_bytes() {
    let xs = b"physmap/1/start_addr\0f0000000\0physmap/1/name\0vga.vram\0";
    let bytes = stream(&[
        rec(rec_type::LIBXC_CONTEXT, &[]),
        rec(rec_type::EMULATOR_XENSTORE_DATA, &emu_body(2, 0, xs)),
        rec(
            rec_type::EMULATOR_CONTEXT,
            &emu_body(1, 3, b"QEVM\x00\x00\x00\x03abc"),
        ),
        rec(rec_type::CHECKPOINT_END, &[]),
        rec(rec_type::CHECKPOINT_STATE, &2u32.to_le_bytes()),
        rec(0x8000_0042, b"opaque"),
        rec(rec_type::END, &[]),
    ]);
    let recs = read_all(&bytes).unwrap();
    let kinds: Vec<LibxlRecord> = recs.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(kinds[0], LibxlRecord::LibxcContext);
    assert_eq!(kinds[1].xenstore_pairs().len(), 2);
    assert_eq!(
        kinds[1].xenstore_pairs()[1],
        (&b"physmap/1/name"[..], &b"vga.vram"[..])
    );
    assert_eq!(
        kinds[2],
        LibxlRecord::EmulatorContext {
            emulator: EmulatorHeader { id: 1, index: 3 },
            blob: b"QEVM\x00\x00\x00\x03abc".to_vec()
        }
    );
    assert_eq!(kinds[3], LibxlRecord::CheckpointEnd);
    assert_eq!(
        kinds[4],
        LibxlRecord::CheckpointState {
            control: CheckpointControl::SvmReady
        }
    );
    assert_eq!(
        kinds[5],
        LibxlRecord::Optional {
            rtype: 0x8000_0042,
            body: b"opaque".to_vec()
        }
    );
    assert_eq!(kinds[6], LibxlRecord::End);
    // Offsets: header 16, then 8-byte aligned records.
    assert_eq!(recs[0].0.offset, 16);
    assert_eq!(recs[1].0.offset, 24);
    let xs_len = 8 + 8 + xs.len() as u64;
    assert_eq!(recs[2].0.offset, 24 + ((xs_len + 7) & !7));
    assert!(recs.iter().all(|(p, _)| p.offset % 8 == 0));
    assert_eq!(recs[6].0.index, 6);
}

#[test]
fn writer_output_equals_hand_built_bytes() {
    let mut w = LibxlWriter::new(Vec::new(), LibxlHeader::new()).unwrap();
    w.write_record(&LibxlRecord::LibxcContext).unwrap();
    w.write_record(&LibxlRecord::EmulatorContext {
        emulator: EmulatorHeader { id: 2, index: 0 },
        blob: vec![0xAA; 5],
    })
    .unwrap();
    w.write_record(&LibxlRecord::CheckpointState {
        control: CheckpointControl::SvmResumed,
    })
    .unwrap();
    w.write_record(&LibxlRecord::End).unwrap();
    let got = w.into_inner().unwrap();
    let want = stream(&[
        rec(rec_type::LIBXC_CONTEXT, &[]),
        rec(rec_type::EMULATOR_CONTEXT, &emu_body(2, 0, &[0xAA; 5])),
        rec(rec_type::CHECKPOINT_STATE, &3u32.to_le_bytes()),
        rec(rec_type::END, &[]),
    ]);
    assert_eq!(got, want);
    // CHECKPOINT_STATE: body_length 4 and 4 octets of padding, as libxl writes.
    let cs = &got[16 + 8 + 24..16 + 8 + 24 + 16];
    assert_eq!(&cs[4..8], &4u32.to_le_bytes());
    assert_eq!(&cs[12..16], &[0, 0, 0, 0]);
}

#[test]
fn big_endian_records_are_read_and_warned_about() {
    let mut w = LibxlWriter::new(
        Vec::new(),
        LibxlHeader {
            version: 2,
            options: LIBXL_OPT_BIG_ENDIAN,
        },
    )
    .unwrap();
    w.write_record(&LibxlRecord::EmulatorContext {
        emulator: EmulatorHeader { id: 2, index: 7 },
        blob: vec![1, 2, 3],
    })
    .unwrap();
    w.write_record(&LibxlRecord::End).unwrap();
    let bytes = w.into_inner().unwrap();
    assert_eq!(&bytes[16..20], &[0, 0, 0, 3], "type is big-endian");
    let mut r = LibxlReader::new(&bytes[..]).unwrap();
    assert_eq!(r.take_warnings().len(), 1);
    let (_, rec) = r.next_record().unwrap();
    assert_eq!(
        rec,
        LibxlRecord::EmulatorContext {
            emulator: EmulatorHeader { id: 2, index: 7 },
            blob: vec![1, 2, 3]
        }
    );
}

/// Name, input, expected rule, offset, and (record index, type).
type Case = (
    &'static str,
    Vec<u8>,
    LibxlErrorKind,
    u64,
    Option<(u64, u32)>,
);

#[test]
fn malformed_streams_fail_with_the_expected_rule_and_offset() {
    use LibxlErrorKind as K;
    let end = rec(rec_type::END, &[]);
    let mut bad_ident = stream(std::slice::from_ref(&end));
    bad_ident[0] = b'l';
    let mut bad_version = stream(std::slice::from_ref(&end));
    bad_version[11] = 3;
    let mut reserved = stream(std::slice::from_ref(&end));
    reserved[15] = 4;
    let mut bad_pad = stream(&[rec(rec_type::EMULATOR_CONTEXT, &emu_body(2, 0, b"abc"))]);
    let last = bad_pad.len() - 1;
    bad_pad[last] = 1;
    let cases: Vec<Case> = vec![
        (
            "bad ident",
            bad_ident,
            K::BadIdent(0x6c69_6278_6c46_6d74),
            0,
            None,
        ),
        ("bad version", bad_version, K::BadVersion(3), 8, None),
        (
            "reserved options",
            reserved,
            K::ReservedOptions(4),
            12,
            None,
        ),
        (
            "unknown mandatory",
            stream(&[rec(6, &[])]),
            K::UnknownMandatory,
            16,
            Some((0, 6)),
        ),
        (
            "END with body",
            stream(&[rec(rec_type::END, &[0; 8])]),
            K::NonEmptyBody,
            16,
            Some((0, 0)),
        ),
        (
            "LIBXC_CONTEXT with body",
            stream(&[rec(rec_type::LIBXC_CONTEXT, &[1])]),
            K::NonEmptyBody,
            16,
            Some((0, 1)),
        ),
        (
            "CHECKPOINT_END with body",
            stream(&[rec(rec_type::CHECKPOINT_END, &[0; 4])]),
            K::NonEmptyBody,
            16,
            Some((0, 4)),
        ),
        (
            "short emulator header",
            stream(&[rec(rec_type::EMULATOR_CONTEXT, &[2, 0, 0, 0])]),
            K::ShortEmulatorHeader,
            16,
            Some((0, 3)),
        ),
        (
            "reserved emulator id",
            stream(&[rec(rec_type::EMULATOR_CONTEXT, &emu_body(3, 0, b""))]),
            K::ReservedEmulatorId(3),
            16,
            Some((0, 3)),
        ),
        (
            "xenstore not terminated",
            stream(&[rec(
                rec_type::EMULATOR_XENSTORE_DATA,
                &emu_body(2, 0, b"a\0b"),
            )]),
            K::XenstoreNotTerminated,
            16,
            Some((0, 2)),
        ),
        (
            "xenstore odd strings",
            stream(&[rec(
                rec_type::EMULATOR_XENSTORE_DATA,
                &emu_body(2, 0, b"a\0b\0c\0"),
            )]),
            K::XenstoreOddStrings(3),
            16,
            Some((0, 2)),
        ),
        (
            "xenstore empty key",
            stream(&[rec(
                rec_type::EMULATOR_XENSTORE_DATA,
                &emu_body(2, 0, b"\0v\0"),
            )]),
            K::XenstoreEmptyKey(0),
            16,
            Some((0, 2)),
        ),
        (
            "xenstore absolute key",
            stream(&[rec(
                rec_type::EMULATOR_XENSTORE_DATA,
                &emu_body(2, 0, b"/local\0v\0"),
            )]),
            K::XenstoreAbsoluteKey("/local".into()),
            16,
            Some((0, 2)),
        ),
        (
            "xenstore bad key char",
            stream(&[rec(
                rec_type::EMULATOR_XENSTORE_DATA,
                &emu_body(2, 0, b"a b\0v\0"),
            )]),
            K::XenstoreBadKeyChar("a b".into()),
            16,
            Some((0, 2)),
        ),
        (
            "checkpoint state length",
            stream(&[rec(rec_type::CHECKPOINT_STATE, &[0, 0, 0, 0, 1, 0, 0, 0])]),
            K::CheckpointStateLength(8),
            16,
            Some((0, 5)),
        ),
        (
            "checkpoint state control id",
            stream(&[rec(rec_type::CHECKPOINT_STATE, &9u32.to_le_bytes())]),
            K::BadControlId(9),
            16,
            Some((0, 5)),
        ),
        (
            "non-zero padding",
            bad_pad,
            K::NonZeroPadding,
            16,
            Some((0, 3)),
        ),
        (
            "truncated header",
            HDR_LE[..10].to_vec(),
            K::Truncated {
                what: "the stream header",
                needed: 6,
            },
            10,
            None,
        ),
        (
            "no END",
            stream(&[rec(rec_type::LIBXC_CONTEXT, &[])]),
            K::MissingEnd,
            24,
            None,
        ),
        (
            "truncated record header",
            stream(&[rec(rec_type::LIBXC_CONTEXT, &[])[..5].to_vec()]),
            K::Truncated {
                what: "a record header",
                needed: 3,
            },
            21,
            Some((0, 1)),
        ),
        (
            "truncated body",
            stream(&[rec(rec_type::EMULATOR_CONTEXT, &emu_body(2, 0, b"abcdef"))[..20].to_vec()]),
            K::Truncated {
                what: "a record body",
                needed: 2,
            },
            36,
            Some((0, 3)),
        ),
        (
            "truncated padding",
            stream(&[rec(rec_type::EMULATOR_CONTEXT, &emu_body(2, 0, b"abc"))[..20].to_vec()]),
            K::Truncated {
                what: "record padding",
                needed: 4,
            },
            36,
            Some((0, 3)),
        ),
    ];
    for (name, bytes, kind, offset, record) in cases {
        let e = first_error(&bytes);
        assert_eq!(e.kind, kind, "{name}: {e}");
        assert_eq!(e.offset, offset, "{name}: {e}");
        assert_eq!(e.record.map(|p| (p.index, p.rtype)), record, "{name}: {e}");
        let line = e.to_string();
        assert!(!line.contains('\n'), "{name}: one line");
        assert!(
            line.starts_with(&format!("offset {offset}, ")),
            "{name}: {line}"
        );
        if let Some((i, t)) = record {
            assert!(
                line.contains(&format!("libxl record #{i} {}", record_type_name(t))),
                "{name}: {line}"
            );
        }
    }
}

#[test]
fn a_huge_declared_length_fails_as_truncation_without_allocating_it() {
    let mut bytes = HDR_LE.to_vec();
    bytes.extend_from_slice(&rec_type::EMULATOR_CONTEXT.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    let e = first_error(&bytes);
    assert!(matches!(
        e.kind,
        LibxlErrorKind::Truncated {
            what: "a record body",
            ..
        }
    ));
    assert_eq!(e.offset, 32);
}

#[test]
fn xenstore_warnings_for_unprintable_values_and_unknown_emulator() {
    let bytes = stream(&[
        rec(
            rec_type::EMULATOR_XENSTORE_DATA,
            &emu_body(0, 0, b"k\0v\x01\0"),
        ),
        rec(rec_type::END, &[]),
    ]);
    let mut r = LibxlReader::new(&bytes[..]).unwrap();
    r.next_record().unwrap();
    let w = r.take_warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w.iter().any(|w| w.message.contains("emulator_id 0")));
    assert!(w.iter().any(|w| w.message.contains("printable")));
}

fn pos(index: u64, rtype: u32) -> RecordPos {
    RecordPos {
        offset: 16 + 8 * index,
        index,
        rtype,
        body_len: 0,
    }
}

fn emu_ctx() -> LibxlRecord {
    LibxlRecord::EmulatorContext {
        emulator: EmulatorHeader { id: 2, index: 0 },
        blob: vec![],
    }
}

#[test]
fn grammar_accepts_plain_and_checkpointed_orders() {
    let mut g = LibxlGrammar::new();
    assert_eq!(
        g.on_record(pos(0, 1), &LibxlRecord::LibxcContext).unwrap(),
        LibxlNext::StartLibxc
    );
    g.set_guest(GuestKind::Hvm).unwrap();
    g.libxc_checkpoint();
    assert_eq!(
        g.on_record(pos(1, 3), &emu_ctx()).unwrap(),
        LibxlNext::LibxlRecord
    );
    assert_eq!(
        g.on_record(pos(2, 4), &LibxlRecord::CheckpointEnd).unwrap(),
        LibxlNext::ResumeLibxc
    );
    assert!(g.in_libxc());
    g.libxc_end();
    assert_eq!(
        g.on_record(pos(3, 3), &emu_ctx()).unwrap(),
        LibxlNext::LibxlRecord
    );
    assert_eq!(
        g.on_record(pos(4, 0), &LibxlRecord::End).unwrap(),
        LibxlNext::Done
    );
    assert!(g.is_done());
    assert_eq!(g.checkpoints(), 1);
}

#[test]
fn grammar_rejects_misplaced_records() {
    let msg = |e: LibxlError| match e.kind {
        LibxlErrorKind::Grammar(s) => s,
        other => panic!("not a grammar error: {other:?}"),
    };
    // END first.
    let mut g = LibxlGrammar::new();
    assert!(msg(g.on_record(pos(0, 0), &LibxlRecord::End).unwrap_err()).contains("END before"));
    // Second LIBXC_CONTEXT.
    let mut g = LibxlGrammar::new();
    g.on_record(pos(0, 1), &LibxlRecord::LibxcContext).unwrap();
    g.libxc_end();
    assert!(msg(g
        .on_record(pos(1, 1), &LibxlRecord::LibxcContext)
        .unwrap_err())
    .contains("second"));
    // CHECKPOINT_END outside a checkpoint.
    let mut g = LibxlGrammar::new();
    g.on_record(pos(0, 1), &LibxlRecord::LibxcContext).unwrap();
    g.libxc_end();
    assert!(msg(g
        .on_record(pos(1, 4), &LibxlRecord::CheckpointEnd)
        .unwrap_err())
    .contains("outside"));
    // END inside a checkpoint.
    let mut g = LibxlGrammar::new();
    g.on_record(pos(0, 1), &LibxlRecord::LibxcContext).unwrap();
    g.libxc_checkpoint();
    assert!(
        msg(g.on_record(pos(1, 0), &LibxlRecord::End).unwrap_err()).contains("inside a checkpoint")
    );
    // CHECKPOINT_STATE on the main stream.
    let mut g = LibxlGrammar::new();
    let cs = LibxlRecord::CheckpointState {
        control: CheckpointControl::New,
    };
    assert!(msg(g.on_record(pos(0, 5), &cs).unwrap_err()).contains("back channel"));
    // Anything after END.
    let mut g = LibxlGrammar::new();
    g.on_record(pos(0, 1), &LibxlRecord::LibxcContext).unwrap();
    g.libxc_end();
    g.on_record(pos(1, 0), &LibxlRecord::End).unwrap();
    assert!(msg(g.on_record(pos(2, 0), &LibxlRecord::End).unwrap_err()).contains("after END"));
}

#[test]
fn grammar_rejects_emulator_records_for_pv_guests_before_or_after_the_libxc_header() {
    // After: the guest type is known when the record arrives.
    let mut g = LibxlGrammar::new();
    g.on_record(pos(0, 1), &LibxlRecord::LibxcContext).unwrap();
    g.set_guest(GuestKind::Pv).unwrap();
    g.libxc_end();
    let e = g.on_record(pos(1, 3), &emu_ctx()).unwrap_err();
    assert_eq!(e.kind, LibxlErrorKind::EmulatorForPv);
    // Before: reported when the libxc header reveals a PV guest, at the record.
    let mut g = LibxlGrammar::new();
    g.on_record(pos(0, 3), &emu_ctx()).unwrap();
    assert_eq!(
        g.take_warnings().len(),
        1,
        "emulator record before LIBXC_CONTEXT warns"
    );
    g.on_record(pos(1, 1), &LibxlRecord::LibxcContext).unwrap();
    let e = g.set_guest(GuestKind::Pv).unwrap_err();
    assert_eq!(e.kind, LibxlErrorKind::EmulatorForPv);
    assert_eq!(e.record.unwrap().index, 0);
}

fn arb_emulator() -> impl Strategy<Value = EmulatorHeader> {
    (0u32..=2, any::<u32>()).prop_map(|(id, index)| EmulatorHeader { id, index })
}

fn arb_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::string::string_regex("[a-zA-Z0-9_@-][a-zA-Z0-9/_@-]{0,20}")
        .unwrap()
        .prop_map(String::into_bytes)
}

fn arb_record() -> impl Strategy<Value = LibxlRecord> {
    prop_oneof![
        Just(LibxlRecord::End),
        Just(LibxlRecord::LibxcContext),
        Just(LibxlRecord::CheckpointEnd),
        (0u32..4).prop_map(|c| LibxlRecord::CheckpointState {
            control: CheckpointControl::from_u32(c).unwrap()
        }),
        (
            arb_emulator(),
            proptest::collection::vec(
                (arb_key(), proptest::collection::vec(0x20u8..0x7f, 0..16)),
                0..6
            )
        )
            .prop_map(|(emulator, pairs)| LibxlRecord::EmulatorXenstoreData {
                emulator,
                data: pack_xenstore_pairs(&pairs),
            }),
        (
            arb_emulator(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(emulator, blob)| LibxlRecord::EmulatorContext { emulator, blob }),
        (
            0x8000_0000u32..,
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(rtype, body)| LibxlRecord::Optional { rtype, body }),
    ]
}

proptest! {
    #[test]
    fn every_record_round_trips_through_writer_and_reader(
        recs in proptest::collection::vec(arb_record(), 0..12),
        big in any::<bool>(),
        legacy in any::<bool>(),
    ) {
        let header = LibxlHeader {
            version: 2,
            options: if big { LIBXL_OPT_BIG_ENDIAN } else { 0 } | if legacy { LIBXL_OPT_LEGACY } else { 0 },
        };
        let mut w = LibxlWriter::new(Vec::new(), header).unwrap();
        for r in &recs {
            w.write_record(r).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        prop_assert_eq!(bytes.len() % 8, 0);
        let mut rd = LibxlReader::new(&bytes[..]).unwrap();
        prop_assert_eq!(*rd.header(), header);
        let mut offset = 16;
        for (i, want) in recs.iter().enumerate() {
            let (pos, got) = rd.next_record().unwrap();
            prop_assert_eq!(&got, want);
            prop_assert_eq!(pos.index, i as u64);
            prop_assert_eq!(pos.offset, offset);
            offset += pos.wire_len();
            prop_assert_eq!(rd.offset(), offset);
        }
        prop_assert_eq!(offset, bytes.len() as u64);
    }

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = HDR_LE.to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(mut r) = LibxlReader::new(&bytes[..]) {
            for _ in 0..64 {
                if r.next_record().is_err() {
                    break;
                }
            }
        }
    }
}

#[test]
fn checkpoint_state_with_a_zero_padding_word_is_accepted_with_a_warning() {
    let bytes = stream(&[
        rec(rec_type::CHECKPOINT_STATE, &[1, 0, 0, 0, 0, 0, 0, 0]),
        rec(rec_type::CHECKPOINT_STATE, &[0; 6]),
    ]);
    let mut r = LibxlReader::new(&bytes[..]).unwrap();
    let (_, rec) = r.next_record().unwrap();
    assert_eq!(
        rec,
        LibxlRecord::CheckpointState {
            control: CheckpointControl::SvmSuspended
        }
    );
    assert_eq!(r.take_warnings().len(), 1);
    let e = r.next_record().unwrap_err();
    assert_eq!(e.kind, LibxlErrorKind::CheckpointStateLength(6));
}
