//! Helpers shared by the flow-level integration tests.

// Each test crate that includes this module uses only part of it.
#![allow(dead_code)]

use ofp::codec::Reader;
use ofp::instruction::{emit_instructions, parse_instructions, Instruction};
use ofp::oxm::Match;

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
