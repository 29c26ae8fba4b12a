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
    assert!(
        out.contains(
            "\n  gw-haas wan_ip=203.0.113.1 api=http://127.0.0.1:9180 token=from token_file \
             vis=[1]\n"
        ),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
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

/// A peer's token file that is missing, empty or unreadable is named by
/// its key; `run` refuses what `check-config` refuses, and a gateway that
/// allows unauthenticated peers is told so loudly.
#[test]
fn check_config_and_run_name_a_bad_peer_token_file_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty"), "").unwrap();
    for (f, says) in [
        (dir.path().join("missing"), "cannot read"),
        (dir.path().join("empty"), "holds no token"),
        (dir.path().to_path_buf(), "cannot read"),
    ] {
        let text = good().replace(common::ACME_TOKEN_FILE, f.to_str().unwrap());
        let cfg = file(&text);
        let (code, out, err) = gateway(&["check-config", cfg.path().to_str().unwrap()]);
        assert_eq!(code, 1, "{out}");
        assert!(err.contains("\n  peer[0].token_file: "), "{err}");
        assert!(err.contains(says), "{err}");
        let (code, _, err) = gateway(&["run", "--config", cfg.path().to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(err.contains("peer[0].token_file"), "{err}");
    }
    let token_line = format!("token_file = \"{}\"\n", common::ACME_TOKEN_FILE);
    let none = good().replace(&token_line, "");
    let (code, _, err) = gateway(&["check-config", file(&none).path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("peer[0].token_file: no token"), "{err}");
    let allowed = none.replace("ovsdb =", "allow_unauthenticated_peers = true\novsdb =");
    let (code, out, err) = gateway(&["check-config", file(&allowed).path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: UNAUTHENTICATED PEERS ALLOWED"),
        "{err}"
    );
    assert!(
        out.contains("peer auth:  UNAUTHENTICATED PEERS ALLOWED"),
        "{out}"
    );
}

/// `hash-token` prints the hash a haas gateway's `token_hash` takes, of
/// the token on standard input, and refuses a short one.
#[test]
fn hash_token_prints_a_hash_the_peer_check_accepts() {
    use std::io::Write;
    let hash = |token: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iris-gateway"))
            .arg("hash-token")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let token = common::token(common::ACME_TOKEN_FILE);
    let (code, printed, err) = hash(&token);
    assert_eq!(code, Some(0), "{err}");
    assert!(printed.starts_with("$argon2id$"), "{printed}");
    assert!(!printed.contains(&token));
    let parsed = iris_controller::api_auth::parse_hash(&printed).unwrap();
    let hashes = [parsed];
    let check = iris_controller::api_auth::TokenCheck::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt.block_on(check.any(&token, &hashes)));
    assert!(!rt.block_on(check.any("another-token-0123456789", &hashes)));
    let (code, _, err) = hash("short");
    assert_eq!(code, Some(1));
    assert!(err.contains("at least 16"), "{err}");
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

#[test]
fn genkey_makes_the_keys_check_config_reads_for_an_encrypted_wan() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("gw.key");
    let key_arg = key.to_str().unwrap();
    let (code, public, err) = gateway(&["genkey", key_arg]);
    assert_eq!(code, 0, "{err}");
    let public = public.trim().to_owned();
    assert_eq!(public.len(), 44, "{public}");
    let secret = std::fs::read_to_string(&key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A key file is never overwritten.
    let (code, _, err) = gateway(&["genkey", key_arg]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot create"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), secret);

    let (_, peer_public, _) = gateway(&["genkey", dir.path().join("peer.key").to_str().unwrap()]);
    let encrypted = |peer_key: &str| {
        format!(
            "{}\n[wan.encryption]\nprivate_key_file = \"{key_arg}\"\naddress = \"10.254.0.2/24\"\n",
            good().replace(
                "api = \"http://127.0.0.1:9180\"\n",
                &format!(
                    "api = \"http://127.0.0.1:9180\"\n[peer.encryption]\npublic_key = \
                     \"{peer_key}\"\ninner_ip = \"10.254.0.1\"\n"
                ),
            )
        )
    };
    let f = file(&encrypted(peer_public.trim()));
    let (code, out, err) = gateway(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("public_key={public}")), "{out}");
    assert!(
        out.contains(
            "encrypted (a 1500-byte guest frame needs 1546 inside WireGuard, 1612 on the wire"
        ),
        "{out}"
    );
    assert!(!out.contains(secret.trim()) && !err.contains(secret.trim()));
    let f = file(&encrypted(&public));
    let (code, _, err) = gateway(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("peer[0].encryption.public_key: is this gateway's own public key"),
        "{err}"
    );
}
