//! `iris-api check-config`: a good file is described, a bad one has every
//! problem listed with its key and exits 1; `iris-api openapi` prints the
//! checked-in document.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn iris_api(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_iris-api"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin"), "0123456789abcdef0123\n").unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        "admin_token_file = \"admin\"\n[controller]\nurl = \"http://127.0.0.1:8080\"\n",
    )
    .unwrap();
    let o = iris_api(&["check-config", "good.toml"], dir.path());
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("valid"));

    std::fs::write(
        dir.path().join("bad.toml"),
        "listen = \"x\"\nnode_mtu = 1\nadmin_token_file = \"nope\"\n[controller]\nurl = \"x\"\n",
    )
    .unwrap();
    let o = iris_api(&["check-config", "bad.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    for key in [
        "listen:",
        "node_mtu:",
        "admin_token_file:",
        "controller.url:",
    ] {
        assert!(err.contains(key), "{key} missing in: {err}");
    }
    assert!(err.contains("4 problem(s)"), "{err}");

    std::fs::write(dir.path().join("typo.toml"), "lisen = \"x\"\n").unwrap();
    let o = iris_api(&["check-config", "typo.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lisen"));
}

#[test]
fn openapi_prints_the_checked_in_document() {
    let dir = tempfile::tempdir().unwrap();
    let o = iris_api(&["openapi"], dir.path());
    assert!(o.status.success());
    let checked_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi/broker.json"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), checked_in);
}
