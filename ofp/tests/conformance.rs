//! Decode and re-encode every third-party OpenFlow 1.3 message in
//! `shared/conformance/` (see its README): Ryu/os-ken's packet corpus and the
//! hex messages of Open vSwitch's `ofp-print` tests.

// Test code: a corpus file that cannot be read or parsed should fail loudly.
#![allow(clippy::unwrap_used)]

use ofp::error::ErrorCode;
use ofp::message::{Message, OfpMessage};
use ofp::DecodeError;

mod common;
use common::{corpus_dir, ovs_cases, ryu_packets};

/// The three METER_MOD cases OVS rejects, with the code it names.
fn ovs_rejection(title: &str) -> Option<ErrorCode> {
    if !title.starts_with("OFPT_METER_MOD request - bad") {
        return None;
    }
    Some(if title.contains("bad band") {
        ErrorCode::METER_MOD_BAD_BAND
    } else if title.contains("bad command") {
        ErrorCode::METER_MOD_BAD_COMMAND
    } else {
        ErrorCode::METER_MOD_BAD_FLAGS
    })
}

fn assert_round_trip(name: &str, wire: &[u8]) -> OfpMessage {
    let msg = OfpMessage::parse(wire).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut out = vec![0xaa]; // emit appends: existing bytes must survive
    msg.emit(&mut out);
    assert_eq!(out[0], 0xaa);
    assert_eq!(&out[1..], wire, "{name}: re-encoding differs");
    msg
}

#[test]
fn every_ryu_message_decodes_and_reencodes_byte_for_byte() {
    let packets = ryu_packets();
    assert_eq!(
        packets.len(),
        84,
        "the corpus README promises 84 OF1.3 messages"
    );
    for (name, wire) in &packets {
        assert_eq!(wire[0], 4, "{name}");
        assert_round_trip(name, wire);
    }
}

#[test]
fn ryu_truncated_flow_mod_is_truncated() {
    let wire =
        std::fs::read(corpus_dir().join("ryu/of13/libofproto-OFP13-flow_mod.packet")).unwrap();
    assert_eq!(wire.len(), 256);
    assert!(matches!(
        OfpMessage::parse(&wire[..64]),
        Err(DecodeError::Truncated {
            needed: 256,
            available: 64,
            ..
        })
    ));
}

#[test]
fn every_ovs_message_decodes_and_reencodes_except_the_bad_meter_mods() {
    let cases = ovs_cases();
    assert_eq!(cases.len(), 43, "the corpus README promises 43 OF1.3 cases");
    let mut rejected = 0;
    for c in &cases {
        match ovs_rejection(&c.title) {
            Some(code) => {
                let err = OfpMessage::parse(&c.wire).unwrap_err();
                assert_eq!(err.ofp_error(), code, "{}: {err}", c.title);
                let name = ofp::message::error_code_name(code).unwrap();
                assert!(
                    c.stdout.contains(&format!("***decode error: {name}***")),
                    "{}",
                    c.title
                );
                rejected += 1;
            }
            None => {
                assert_round_trip(&c.title, &c.wire);
            }
        }
    }
    assert_eq!(rejected, 3);
}

/// All corpus messages, Ryu's and OVS's, that decode.
fn all_valid_messages() -> Vec<(String, Vec<u8>)> {
    let mut all = ryu_packets();
    all.extend(
        ovs_cases()
            .into_iter()
            .filter(|c| ovs_rejection(&c.title).is_none())
            .map(|c| (c.title, c.wire)),
    );
    all
}

#[test]
fn every_truncation_is_an_error_and_never_a_panic() {
    for (name, wire) in all_valid_messages() {
        for n in 0..wire.len() {
            assert!(
                OfpMessage::parse(&wire[..n]).is_err(),
                "{name} cut to {n} bytes decoded"
            );
            // The same prefix with its length field agreeing: the body
            // parsers meet the short structure themselves. Whatever decodes
            // must encode back to the same bytes.
            if n >= 8 {
                let mut cut = wire[..n].to_vec();
                cut[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                if let Ok(m) = OfpMessage::parse(&cut) {
                    assert_eq!(
                        m.to_bytes(),
                        cut,
                        "{name} cut to {n} bytes re-encodes differently"
                    );
                }
            }
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // A deterministic sweep: every byte of the first 256 and a stride through
    // the rest, each replaced by a few values that break lengths and codes.
    for (_, wire) in all_valid_messages() {
        let positions = (0..wire.len()).filter(|&i| i < 256 || i % 61 == 0);
        for i in positions {
            for v in [0x00, 0x01, 0x07, 0x80, 0xff, wire[i].wrapping_add(1)] {
                let mut m = wire.clone();
                m[i] = v;
                if let Ok(msg) = OfpMessage::parse(&m) {
                    let _ = format!("{msg:?}");
                }
            }
        }
    }
}

#[test]
fn message_kinds_match_header_types() {
    for (name, wire) in all_valid_messages() {
        let m = OfpMessage::parse(&wire).unwrap();
        assert_eq!(u8::from(m.message.msg_type()), wire[1], "{name}");
        assert!(!matches!(m.message, Message::Unknown { .. }), "{name}");
        let xid = u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]]);
        assert_eq!(m.xid, xid, "{name}");
    }
}
