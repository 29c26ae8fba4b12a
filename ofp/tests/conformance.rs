//! Third-party conformance: every `NAME.packet` in the corpus folder (Ryu /
//! os-ken's OpenFlow 1.3 set in `shared/conformance/ryu/of13`, or the folder
//! `$OFP_CORPUS` names, same layout) is decoded, compared field by field
//! with Ryu's decoding in `NAME.packet.json`, and re-encoded byte for byte.
//! A `NAME.truncatedN` placeholder stands for the first N bytes of
//! `NAME.packet`, which must fail with a typed truncation error and agree
//! with Ryu's partial decoding in `NAME.packet.truncatedN.json`.
//!
//! Runs as a plain program (`harness = false`): one block per failing
//! message with the JSON path of each difference, then `N passed, M failed`
//! counting messages. See docs/conformance.md.

// Test code: a corpus that cannot be read should stop the run loudly.
#![allow(clippy::unwrap_used)]

mod common;
mod ryu;

use common::{ryu_dir, FLOW_MOD_FIXED};
use ofp::header::HeaderView;
use ofp::message::{Message, OfpMessage};
use ofp::oxm::OxmIter;
use ofp::DecodeError;
use ryu::Arrays;
use serde_json::Value;
use std::path::Path;

/// One corpus vector.
enum Case {
    /// `NAME.packet` with `NAME.packet.json`.
    Whole { name: String },
    /// The first `n` bytes of `base.packet`, with
    /// `base.packet.truncated<n>.json`.
    Truncated { base: String, n: usize },
    /// A file `INDEX.tsv` lists, or a decoding names, that is not in the
    /// folder.
    Missing { name: String, why: &'static str },
}

impl Case {
    fn label(&self) -> String {
        match self {
            Self::Whole { name } | Self::Missing { name, .. } => name.clone(),
            Self::Truncated { base, n } => format!("{base}.truncated{n}"),
        }
    }
}

/// The vectors in `dir`: every `.packet`, every `.truncatedN` placeholder,
/// and, as failures, a decoding without its message and whatever an
/// `INDEX.tsv` there lists but the folder lacks.
fn cases(dir: &Path) -> Result<Vec<Case>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the corpus folder {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in &names {
        if name.ends_with(".packet") {
            out.push(Case::Whole { name: name.clone() });
        } else if let Some(packet) = name.strip_suffix(".json") {
            if packet.ends_with(".packet") && !names.iter().any(|n| n == packet) {
                out.push(Case::Missing {
                    name: packet.to_owned(),
                    why: "its decoding is here but the message is not",
                });
            }
        } else if let Some((base, n)) = name.rsplit_once(".truncated") {
            if let Ok(n) = n.parse() {
                out.push(Case::Truncated {
                    base: base.to_owned(),
                    n,
                });
            }
        }
    }
    if let Ok(index) = std::fs::read_to_string(dir.join("INDEX.tsv")) {
        for line in index.lines().filter(|l| !l.starts_with('#')) {
            let file = line.split('\t').next().unwrap_or("");
            if !file.is_empty() && !names.iter().any(|n| n == file) {
                out.push(Case::Missing {
                    name: file.to_owned(),
                    why: "listed in INDEX.tsv but not in the folder",
                });
            }
        }
    }
    Ok(out)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Header sanity, decode, byte-for-byte re-encode, then the JSON comparison.
fn check_whole(dir: &Path, name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let wire = match std::fs::read(dir.join(name)) {
        Ok(w) => w,
        Err(e) => return vec![format!("cannot read: {e}")],
    };
    if wire.len() < 8 {
        return vec![format!(
            "{} bytes: shorter than an OpenFlow header",
            wire.len()
        )];
    }
    if wire[0] != ofp::OFP_VERSION {
        problems.push(format!("version byte is {:#04x}, not 0x04", wire[0]));
    }
    let length = usize::from(u16::from_be_bytes([wire[2], wire[3]]));
    if length != wire.len() {
        problems.push(format!(
            "header length {length} but the file holds {} bytes",
            wire.len()
        ));
    }
    let msg = match OfpMessage::parse(&wire) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("decode: {e}"));
            return problems;
        }
    };
    if u8::from(msg.message.msg_type()) != wire[1] || matches!(msg.message, Message::Unknown { .. })
    {
        problems.push(format!(
            "decoded as {} from type byte {}",
            msg.message.msg_type(),
            wire[1]
        ));
    }
    // Encoding appends to a caller's buffer: bytes already there stay.
    let mut out = vec![0xa5];
    msg.emit(&mut out);
    if out[0] != 0xa5 || out[1..] != wire[..] {
        let ours = &out[1..];
        let at = ours.iter().zip(&wire).position(|(a, b)| a != b);
        problems.push(match at {
            Some(i) => format!(
                "re-encoding differs at byte {i}: ours {:#04x}, wire {:#04x}",
                ours[i], wire[i]
            ),
            None => format!("re-encoding is {} bytes, wire {}", ours.len(), wire.len()),
        });
    }
    match read_json(&dir.join(format!("{name}.json"))) {
        Ok(expected) => problems.extend(ryu::compare(
            &expected,
            &ryu::message(&msg.message),
            Arrays::Whole,
        )),
        Err(e) => problems.push(format!("no decoding to compare with: {e}")),
    }
    problems
}

/// The first `n` bytes of `base.packet`: a typed truncation error, and
/// Ryu's partial decoding agreeing with our decoding of the whole message.
fn check_truncated(dir: &Path, base: &str, n: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let wire = match std::fs::read(dir.join(format!("{base}.packet"))) {
        Ok(w) => w,
        Err(e) => return vec![format!("cannot read {base}.packet: {e}")],
    };
    if n >= wire.len() {
        return vec![format!("{base}.packet has only {} bytes", wire.len())];
    }
    let prefix = &wire[..n];
    match OfpMessage::parse(prefix) {
        Err(DecodeError::Truncated {
            needed, available, ..
        }) if needed == wire.len() && available == n => {}
        other => problems.push(format!(
            "decoding {n} of {} bytes gave {other:?}, not a truncation error",
            wire.len()
        )),
    }
    let full = match OfpMessage::parse(&wire) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("the whole {base}.packet does not decode: {e}"));
            return problems;
        }
    };
    // What the codec reads from the prefix alone: the header.
    let header = HeaderView::new_checked(prefix);
    if header.map(|h| h.msg_type()).ok() != Some(full.message.msg_type()) {
        problems.push(format!(
            "the prefix's header does not decode to {}",
            full.message.msg_type()
        ));
    }
    let expected = match read_json(&dir.join(format!("{base}.packet.truncated{n}.json"))) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("no decoding to compare with: {e}"));
            return problems;
        }
    };
    let Some(partial) = expected.get("OFPTruncatedMessage") else {
        problems.push("the JSON is not an OFPTruncatedMessage".to_owned());
        return problems;
    };
    problems.extend(ryu::compare(
        partial,
        &ryu::message(&full.message),
        Arrays::Prefix,
    ));
    // Ryu lists exactly the match fields that fit in the prefix; the codec's
    // OXM reader must find the same number of whole fields there.
    if let Message::FlowMod(f) = &full.message {
        let match_end = FLOW_MOD_FIXED + ryu::match_len(&f.match_);
        let oxms = prefix
            .get(FLOW_MOD_FIXED + 4..match_end.min(n))
            .unwrap_or(&[]);
        let fitting = OxmIter::new(oxms).take_while(Result::is_ok).count();
        let listed = partial["OFPFlowMod"]["match"]["OFPMatch"]["oxm_fields"]
            .as_array()
            .map_or(0, Vec::len);
        if fitting != listed {
            problems.push(format!(
                "{fitting} match fields fit in {n} bytes, Ryu lists {listed}"
            ));
        }
    }
    problems
}

fn main() {
    let dir = ryu_dir();
    let cases = match cases(&dir) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            eprintln!("no NAME.packet files in {}", dir.display());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let shown = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    println!("conformance corpus: {}", shown.display());
    println!("derived values (computed by the test, not copied from a decoded field):");
    for (what, why) in ryu::DERIVED {
        println!("  {what}: {why}");
    }
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let problems = match case {
            Case::Whole { name } => check_whole(&dir, name),
            Case::Truncated { base, n } => check_truncated(&dir, base, *n),
            Case::Missing { why, .. } => vec![(*why).to_owned()],
        };
        if problems.is_empty() {
            passed += 1;
        } else {
            failed += 1;
            println!("FAIL {}", case.label());
            for p in problems {
                println!("  {p}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
