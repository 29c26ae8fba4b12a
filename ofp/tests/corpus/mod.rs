//! Reading the conformance corpus in `tests/conformance/` (see its README).

// Test code: a corpus file that cannot be read or parsed should fail loudly.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// Every `ryu/of13/*.packet` as (file name, bytes).
pub fn ryu_packets() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join("ryu/of13");
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
