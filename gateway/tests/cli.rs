//! The `iris-gateway` binary's commands: what `check-config` prints and
//! exits with, and `run` refusing an address it cannot listen on.

#![allow(clippy::unwrap_used)]

use std::process::Command;

mod common;

/// An iaas gateway's configuration, its peer's API on 127.0.0.1:9180.
fn good() -> String {
    common::iaas_text("127.0.0.1:9180".parse().unwrap())
}

fn gateway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iris-gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

#[test]
fn check_config_prints_a_line_per_peer_and_per_vi() {
    let f = file(&good());
    let (code, out, err) = gateway(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": valid\n"), "{out}");
    assert!(out.contains("\n  gw-haas wan_ip=203.0.113.1 api=http://127.0.0.1:9180 vis=[1]\n"));
    assert!(out.contains("\n  vi1 gre_key=1001 peer=gw-haas vlans=100-199,untagged\n"));
}

#[test]
fn check_config_names_every_problem_and_exits_1() {
    let f = file(
        &good()
            .replace("peer = \"gw-haas\"", "peer = \"gw-hass\"")
            .replace("\"100-199\"", "\"100-5000\""),
    );
    let (code, out, err) = gateway(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("2 problem(s):"), "{err}");
    assert!(err.contains("\n  vi[0].peer: \"gw-hass\" is not a [[peer]] in this file"));
    assert!(err.contains("\n  vi[0].vlans[0]: \"5000\" is not a VLAN id"));
    let f = file(&good().replace("trunk =", "trunc ="));
    let (code, _, err) = gateway(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `trunk`?"), "{err}");
}

#[test]
fn run_on_an_address_in_use_says_which_and_fails() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let text = good().replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    assert!(text.contains(&addr));
    let f = file(&text);
    let (code, _, err) = gateway(&["run", "--config", f.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}
