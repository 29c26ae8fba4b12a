//! The codec against hostile and malformed input built from the third-party
//! corpus in `shared/conformance/`: OVS's `ofp-print` messages decode and
//! re-encode (the three invalid meter mods are rejected with the code OVS
//! names), and no truncation or corruption of any corpus message panics.
//! The field-by-field comparison with Ryu's decodings is `tests/conformance.rs`.

// Test code: a corpus file that cannot be read or parsed should fail loudly.
#![allow(clippy::unwrap_used)]

use ofp::error::ErrorCode;
use ofp::message::{Message, OfpMessage};

mod common;
use common::{ovs_cases, ryu_packets};

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
                    let _ = format!("{msg:?} {msg}");
                }
            }
        }
    }
}

/// xorshift64*: a seeded generator, so a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_multi_byte_corruption_never_panics() {
    let mut rng = Rng(0x1e15_0f13);
    for (name, wire) in all_valid_messages() {
        for round in 0..300 {
            let mut m = wire.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            // Now and then cut the message and make the header agree, so the
            // body parsers meet lengths that point past the end.
            if round % 3 == 0 && m.len() > 8 {
                let n = 8 + rng.below(m.len() - 8);
                m.truncate(n);
                m[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            }
            let result =
                std::panic::catch_unwind(|| OfpMessage::parse(&m).map(|msg| msg.to_string()));
            assert!(result.is_ok(), "{name}: panicked on {m:02x?}");
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
        assert!(m.to_string().starts_with("OFP"), "{name}");
    }
}
