//! Flow-level conformance against third-party encodings: every FLOW_MOD in
//! the Ryu/os-ken corpus (LINC of_protocol, OVS libofproto and ovs-ofctl
//! output) and the OVS `ofp-print` corpus must decode with every byte used,
//! re-encode byte for byte, and print as OVS prints it where OVS shows it.

// Helpers outside #[test] functions read the corpus; a missing or broken
// corpus file should stop the test loudly.
#![allow(clippy::unwrap_used)]

use ofp::codec::Reader;
use ofp::instruction::{emit_instructions, parse_instructions, Instruction};
use ofp::oxm::Match;
use std::path::{Path, PathBuf};

const RYU: &str = "/work/shared/conformance/ryu/of13";
const OVS: &str = "/work/shared/conformance/ovs/ofp-print-of13.txt";
/// header 8, cookie 8, cookie_mask 8, table_id 1, command 1, idle 2, hard 2,
/// priority 2, buffer_id 4, out_port 4, out_group 4, flags 2, pad 2.
const FLOW_MOD_FIXED: usize = 48;

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(RYU);
    assert!(dir.is_dir(), "conformance corpus missing at {RYU}");
    dir
}

/// Every OFPT_FLOW_MOD (header type 14) in the Ryu corpus, by file name.
fn ryu_flow_mods() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "packet") {
            let wire = std::fs::read(&path).unwrap();
            if wire.len() >= FLOW_MOD_FIXED && wire[0] == 4 && wire[1] == 14 {
                out.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    wire,
                ));
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 25,
        "expected the corpus's FLOW_MODs, found {}",
        out.len()
    );
    out
}

/// The FLOW_MODs in OVS's ofp-print corpus: (title, wire, expected stdout).
fn ovs_flow_mods() -> Vec<(String, Vec<u8>, String)> {
    let text = std::fs::read_to_string(Path::new(OVS)).unwrap();
    let mut out = Vec::new();
    for rec in text.split("\n%%\n") {
        let title = rec
            .lines()
            .find_map(|l| l.strip_prefix("=== "))
            .unwrap_or("")
            .to_owned();
        let Some(hex) = rec.lines().find_map(|l| l.strip_prefix("hex: ")) else {
            continue;
        };
        let wire: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        if wire.get(1) != Some(&14) {
            continue;
        }
        let stdout = rec.split("--- stdout\n").nth(1).unwrap_or("").to_owned();
        out.push((title, wire, stdout));
    }
    assert_eq!(out.len(), 2, "the OVS corpus has two OF1.3 FLOW_MODs");
    out
}

fn decode(body: &[u8]) -> Result<(Match, Vec<Instruction>), ofp::DecodeError> {
    let mut r = Reader::new(body, "flow_mod");
    let m = Match::parse(&mut r)?;
    let ins = parse_instructions(Reader::new(r.take_rest(), "ofp_instruction"))?;
    Ok((m, ins))
}

fn encode(m: &Match, ins: &[Instruction]) -> Vec<u8> {
    let mut buf = Vec::new();
    m.emit(&mut buf);
    emit_instructions(ins, &mut buf);
    buf
}

#[test]
fn every_ryu_flow_mod_round_trips_byte_for_byte() {
    for (name, wire) in ryu_flow_mods() {
        let body = &wire[FLOW_MOD_FIXED..];
        let (m, ins) = decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(encode(&m, &ins), body, "{name}: re-encoding differs");
    }
}

#[test]
fn every_ovs_flow_mod_round_trips_byte_for_byte() {
    for (title, wire, _) in ovs_flow_mods() {
        let body = &wire[FLOW_MOD_FIXED..];
        let (m, ins) = decode(body).unwrap_or_else(|e| panic!("{title}: {e}"));
        assert_eq!(encode(&m, &ins), body, "{title}: re-encoding differs");
    }
}
