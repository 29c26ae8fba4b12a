//! `irisctl` against a running broker (in-process, on the real controller):
//! its commands reach the API, `--output json` is the API's records, and its
//! exit codes tell a refusal (1), bad usage (2) and an unreachable broker (3)
//! apart. The PM's OVSDB does not answer, so the node request fails, and
//! `irisctl` says so with exit code 1.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use std::process::Output;

async fn irisctl(base: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_irisctl"));
    cmd.env_remove("IRIS_API_TOKEN").env("IRIS_API_URL", base);
    if let Some(t) = token {
        cmd.env("IRIS_API_TOKEN", t);
    }
    cmd.args(args).output().await.unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irisctl_drives_the_api_with_exit_codes_a_script_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start_controller(dir.path(), Vec::new());
    let broker = start_broker(&broker_config(dir.path(), controller.api_addr())).await;
    let b = broker.base.as_str();
    let pm_ns = FakePmNetns::new();
    register_pm(b, "pmctl", 8, &pm_ns.0, dir.path()).await;

    let o = irisctl(
        b,
        Some(ADMIN),
        &["--output", "json", "provider", "create", "acme"],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = p["id"].as_str().unwrap();
    let o = irisctl(
        b,
        Some(ADMIN),
        &["--output", "json", "token", "create", "--provider", id],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let t: Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = t["token"].as_str().unwrap();

    let o = irisctl(
        b,
        Some(token),
        &[
            "flavor",
            "create",
            "c2m4",
            "--vcpus",
            "2",
            "--memory-mib",
            "4096",
            "--disk-gib",
            "20",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let o = irisctl(
        b,
        Some(token),
        &[
            "--output",
            "json",
            "vi",
            "create",
            "net",
            "--gateway",
            "203.0.113.9",
            "--vlans",
            "100-199",
            "--pool",
            "10.5.0.0/24",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let vi: Value = serde_json::from_slice(&o.stdout).unwrap();
    let vi_id = vi["id"].as_str().unwrap();
    let o = irisctl(b, Some(token), &["vi", "list"]).await;
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && listed.contains(vi_id) && listed.starts_with("ID"),
        "{}",
        text(&o)
    );

    // The node request is accepted, followed, and fails on the PM: exit 1,
    // with the driver's reason.
    let o = irisctl(
        b,
        Some(token),
        &[
            "--output", "json", "node", "request", "--vi", vi_id, "--count", "2", "--flavor",
            "c2m4",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["operation"]["status"], "failed");
    assert_eq!(report["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(report["nodes"][0]["state"], "error");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("netns driver"),
        "{}",
        text(&o)
    );
    let o = irisctl(b, Some(token), &["node", "list"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        3,
        "{}",
        text(&o)
    );

    // A refusal prints the problem and where: exit 1.
    let o = irisctl(
        b,
        Some(token),
        &[
            "node", "request", "--vi", vi_id, "--count", "0", "--flavor", "c2m4",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("#/count"),
        "{}",
        text(&o)
    );
    let o = irisctl(b, None, &["vi", "list"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("401"),
        "{}",
        text(&o)
    );
    // Bad usage: exit 2; nobody listening: exit 3.
    let o = irisctl(
        b,
        Some(token),
        &[
            "vi",
            "create",
            "x",
            "--gateway",
            "1.2.3.4",
            "--vlans",
            "a-b",
            "--dhcp",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = irisctl("http://127.0.0.1:9", Some(token), &["vi", "list"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    broker.shut().await;
}
