//! Structural comparison of Ryu's JSON with ours: every key and value Ryu
//! wrote must be present and equal in ours, and ours may hold nothing Ryu
//! did not write (so the rendering cannot invent fields). Each difference is
//! reported with its JSON path.

use super::{base64, packet};
use serde_json::Value;

/// How arrays are compared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Arrays {
    /// Same length, element by element.
    Whole,
    /// Ryu's array must be a prefix of ours: Ryu's partial decoding of a
    /// truncated message lists what fitted, ours the whole message.
    Prefix,
}

/// The differences between Ryu's `expected` and `ours`, one line each.
pub fn compare(expected: &Value, ours: &Value, arrays: Arrays) -> Vec<String> {
    let mut out = Vec::new();
    walk(&mut String::new(), expected, ours, arrays, &mut out);
    out
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The single class name of a `{"ClassName": {...}}` wrapper.
fn class_name(v: &Value) -> Option<&str> {
    let o = v.as_object()?;
    let (k, inner) = o.iter().next()?;
    (o.len() == 1 && inner.is_object() && k.starts_with(|c: char| c.is_ascii_uppercase()))
        .then_some(k.as_str())
}

fn walk(path: &mut String, expected: &Value, ours: &Value, arrays: Arrays, out: &mut Vec<String>) {
    // Ryu decoded this frame with its packet library; decode ours the same
    // way (see `packet`).
    if let (Some("Packet"), Value::String(b64)) = (class_name(expected), ours) {
        match base64::decode(b64) {
            Some(bytes) => walk(path, expected, &packet::render(&bytes), arrays, out),
            None => out.push(format!("{path}: ours is not base64: {}", brief(ours))),
        }
        return;
    }
    match (expected, ours) {
        (Value::Object(e), Value::Object(o)) => {
            if let (Some(ce), Some(co)) = (class_name(expected), class_name(ours)) {
                if ce != co {
                    out.push(format!("{path}: Ryu has {ce}, ours is {co}"));
                    return;
                }
            }
            for (k, ev) in e {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match o.get(k) {
                    Some(ov) => walk(path, ev, ov, arrays, out),
                    None => out.push(format!("{path}: missing in ours (Ryu: {})", brief(ev))),
                }
                path.truncate(len);
            }
            for (k, ov) in o {
                if !e.contains_key(k) {
                    out.push(format!("{path}.{k}: not in Ryu's (ours: {})", brief(ov)));
                }
            }
        }
        (Value::Array(e), Value::Array(o)) => {
            let lengths_agree = match arrays {
                Arrays::Whole => e.len() == o.len(),
                Arrays::Prefix => e.len() <= o.len(),
            };
            if !lengths_agree {
                out.push(format!(
                    "{path}: Ryu has {} items, ours {}",
                    e.len(),
                    o.len()
                ));
            }
            for (i, (ev, ov)) in e.iter().zip(o).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(path, ev, ov, arrays, out);
                path.truncate(len);
            }
        }
        _ if expected == ours => {}
        _ => out.push(format!(
            "{path}: Ryu {}, ours {}",
            brief(expected),
            brief(ours)
        )),
    }
}
