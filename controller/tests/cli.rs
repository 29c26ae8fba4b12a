//! `iris-controller check-config` as an operator runs it: the exit code, and
//! what it prints. What it accepts, `run` accepts (the seed entries are
//! checked by the same code that loads them into the registry).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// A valid configuration with three hosts and a seeded VI.
fn config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/check-config.toml");
    std::fs::read_to_string(path).unwrap()
}

/// Writes the configuration and its seed file into `dir` and checks it.
fn check_config(dir: &Path, config: &str, seed: &str) -> Output {
    let file = dir.join("iris.toml");
    std::fs::write(&file, config).unwrap();
    std::fs::write(dir.join("acme.csv"), seed).unwrap();
    Command::new(env!("CARGO_BIN_EXE_iris-controller"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_valid_file_is_summarised_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let seed =
        "mac,ip,vlan,behind\n52:54:00:00:00:01,10.1.1.1,100\n52:54:00:00:00:02,10.1.1.2,,gw2\n";
    let out = check_config(dir.path(), &config(), seed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("iris.toml: valid"), "{stdout}");
    assert!(stdout.contains("hosts:     3"), "{stdout}");
    assert!(
        stdout.contains("vi1 \"acme\" gre_key=1001 gateways=[gw1, gw2] seeded=2"),
        "{stdout}"
    );
    // Valid, but an API without tokens is said out loud.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: [api_auth] has no token_hashes, so the API on 127.0.0.1:8181"),
        "{stderr}"
    );
}

#[test]
fn a_typo_gets_exit_code_2_and_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let typo = config().replace("underlay_ip = \"10.0.0.1\"", "underlay = \"10.0.0.1\"");
    let out = check_config(dir.path(), &typo, "");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("did you mean `underlay_ip`?"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn seed_entries_run_would_refuse_get_exit_code_2_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    // A multicast MAC cannot be a registry entry, and one MAC cannot live
    // behind two gateways: `run` refuses both when it loads the seed.
    let seed = "01:00:5e:00:00:01,10.1.1.1\n52:54:00:00:00:02,,,gw1\n52:54:00:00:00:02,,,gw2\n";
    let out = check_config(dir.path(), &config(), seed);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("vi[0].seed (line 1): 01:00:5e:00:00:01 is a multicast"),
        "{stderr}"
    );
    assert!(stderr.contains("vi[0].seed (line 3):"), "{stderr}");
    assert!(
        stderr.contains("line 2"),
        "names the line it contradicts: {stderr}"
    );
}

/// `hash-token` reads the token from standard input; what it prints,
/// written into `[api_auth] token_hashes`, is what `check-config` takes.
#[test]
fn hash_token_prints_a_hash_the_configuration_takes() {
    use std::io::Write;
    use std::process::Stdio;
    let hash_of = |token: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iris-controller"))
            .arg("hash-token")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(token.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let token = "3f9c2a7e-the-orchestrator";
    let out = hash_of(&format!("{token}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hash = text(&out.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(token));
    let dir = tempfile::tempdir().unwrap();
    let with_hash = format!("{}\n[api_auth]\ntoken_hashes = [\"{hash}\"]\n", config());
    let out = check_config(dir.path(), &with_hash, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("api auth:  bearer token (1 hashes)"));
    // The token itself where its hash belongs is refused, naming the key.
    let with_token = format!("{}\n[api_auth]\ntoken_hashes = [\"{token}\"]\n", config());
    let out = check_config(dir.path(), &with_token, "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("api_auth.token_hashes[0]"),
        "{}",
        text(&out.stderr)
    );
    // A token too short to be one is refused with exit code 2.
    let out = hash_of("short\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("at least 16"),
        "{}",
        text(&out.stderr)
    );
}
