//! Helpers shared by the codec's integration tests: where the third-party
//! conformance corpus lives, reading it, and flow-level decode helpers.

// Test code: a corpus file that cannot be read or parsed should fail loudly,
// and each test crate that includes this module uses only part of it.
#![allow(clippy::unwrap_used, dead_code)]

use ofp::codec::Reader;
use ofp::instruction::{emit_instructions, parse_instructions, Instruction};
use ofp::oxm::Match;
use std::path::PathBuf;

/// `shared/conformance/`, which sits beside the repository's checkout.
pub fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    assert!(
        dir.join("ryu/of13").is_dir(),
        "conformance corpus not found at {}: check out shared/ beside the repository",
        dir.display()
    );
    dir
}

/// The folder of `NAME.packet` / `NAME.packet.json` pairs: `$OFP_CORPUS` when
/// set, so other corpora can be run through the same tests, else Ryu's OF1.3 set.
pub fn ryu_dir() -> PathBuf {
    match std::env::var_os("OFP_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => corpus_dir().join("ryu/of13"),
    }
}

/// Every `ryu/of13/*.packet` as (file name, bytes).
pub fn ryu_packets() -> Vec<(String, Vec<u8>)> {
    let dir = ryu_dir();
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "packet"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// One `hex:` record of `ovs/ofp-print-of13.txt`.
pub struct OvsCase {
    pub title: String,
    pub wire: Vec<u8>,
    pub stdout: String,
}

pub fn ovs_cases() -> Vec<OvsCase> {
    let text = std::fs::read_to_string(corpus_dir().join("ovs/ofp-print-of13.txt")).unwrap();
    text.split("\n%%\n")
        .filter(|r| !r.trim().is_empty())
        .map(|rec| {
            let title = rec
                .lines()
                .next()
                .unwrap()
                .trim_start_matches("=== ")
                .to_owned();
            let hex = rec.lines().find_map(|l| l.strip_prefix("hex: ")).unwrap();
            let wire = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let stdout = rec.split("--- stdout\n").nth(1).unwrap_or("").to_owned();
            OvsCase {
                title,
                wire,
                stdout,
            }
        })
        .collect()
}

/// The OVS case titled `title`, exactly.
pub fn ovs_case(title: &str) -> OvsCase {
    ovs_cases()
        .into_iter()
        .find(|c| c.title == title)
        .unwrap_or_else(|| panic!("no OVS case titled {title:?}"))
}

/// The fixed part of an OFPT_FLOW_MOD: header 8, cookie 8, cookie_mask 8,
/// table_id 1, command 1, idle 2, hard 2, priority 2, buffer_id 4,
/// out_port 4, out_group 4, flags 2, pad 2.
pub const FLOW_MOD_FIXED: usize = 48;

/// Decodes a FLOW_MOD body (the match, then instructions to the end).
pub fn decode(body: &[u8]) -> Result<(Match, Vec<Instruction>), ofp::DecodeError> {
    let mut r = Reader::new(body, "flow_mod");
    let m = Match::parse(&mut r)?;
    let ins = parse_instructions(Reader::new(r.take_rest(), "ofp_instruction"))?;
    Ok((m, ins))
}

/// The inverse of [`decode`].
pub fn encode(m: &Match, ins: &[Instruction]) -> Vec<u8> {
    let mut buf = Vec::new();
    m.emit(&mut buf);
    emit_instructions(ins, &mut buf);
    buf
}

/// The match of an `ovs-ofctl ofp-print` FLOW_MOD line, without the
/// `priority=N` OVS puts in front of it.
pub fn ovs_match_token(line: &str) -> String {
    let mut words = line.split(' ').skip_while(|w| !w.ends_with("):"));
    words.next();
    let _command = words.next();
    let mut token = words.next().unwrap_or("");
    if token.starts_with("table:") {
        token = words.next().unwrap_or("");
    }
    if token.starts_with("cookie:") || token.starts_with("buf:") || token.starts_with("actions=") {
        return String::new();
    }
    match token.strip_prefix("priority=") {
        Some(rest) => rest.split_once(',').map_or("", |(_, m)| m).to_owned(),
        None => token.to_owned(),
    }
}

/// The `actions=...` word of an `ovs-ofctl ofp-print` FLOW_MOD line.
pub fn ovs_actions_token(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or("")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}
