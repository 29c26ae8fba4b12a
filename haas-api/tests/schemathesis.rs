//! Schemathesis (installed by scripts/install-deps.sh under
//! /opt/iris-schemathesis) against the OpenAPI document the broker serves:
//! every operation it describes, with generated and mutated inputs, once
//! with the admin token and once with a provider's. It must find no server
//! error and no answer that breaks the document (status, content type,
//! body schema). The broker runs in-process on the real controller, with a
//! PM whose OVSDB does not answer (nodes fail and roll back). Fails, never
//! skips, when schemathesis is missing.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::Path;
use std::time::Instant;

const SCHEMATHESIS: &str = "/opt/iris-schemathesis/bin/schemathesis";

/// Runs schemathesis on the broker at `base` as `token`; its output when
/// it found something.
async fn schemathesis(base: &str, token: &str, seconds: u32, report: &Path) -> Result<(), String> {
    assert!(
        Path::new(SCHEMATHESIS).is_file(),
        "no {SCHEMATHESIS}: run scripts/install-deps.sh"
    );
    let out = tokio::process::Command::new(SCHEMATHESIS)
        .arg("run")
        .arg(format!("{base}/v1/openapi.json"))
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"])
        // The change stream never ends; tests/api.rs reads it.
        .args(["--exclude-path", "/v1/events"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // One worker: Python 3.11's AST constructor keeps its recursion
        // depth in state shared by threads, and two workers describing
        // Hypothesis's filter lambdas at once make `ast.parse` raise
        // "AST constructor recursion depth mismatch", which Schemathesis
        // reports as a runtime error of the run.
        .args(["--max-time", &seconds.to_string(), "--workers", "1", "--seed", "13"])
        .arg("--report-junit-path")
        .arg(report)
        .env("NO_COLOR", "1")
        // Its cache of crashes (`.schemathesis/`) goes beside the report,
        // not into the checkout.
        .current_dir(report.parent().unwrap_or(Path::new(".")))
        .output()
        .await
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start_controller(dir.path(), Vec::new());
    let broker = start_broker(&broker_config(dir.path(), controller.api_addr())).await;
    let b = broker.base.as_str();
    let pm_ns = FakePmNetns::new();
    register_pm(b, "pmx", 8, &pm_ns.0, dir.path()).await;
    let start = Instant::now();
    let admin = schemathesis(b, ADMIN, 40, &dir.path().join("admin.xml")).await;
    // The provider is made after the admin's run, which deletes providers
    // and tokens: made before, its token was gone and every request of the
    // provider's run met 401.
    let (_, t) = provider(b, "acme").await;
    small_flavor(b, &t).await;
    let provider = schemathesis(b, &t, 40, &dir.path().join("provider.xml")).await;
    eprintln!("schemathesis ran {:.1} s", start.elapsed().as_secs_f64());
    // A run whose token stopped working tested only the refusal.
    let (s, _, p) = call(b, Some(&t), "GET", "/v1/flavors", None).await;
    assert_eq!(
        s, 200,
        "the provider's token no longer works after its run: {p}"
    );
    if let Err(e) = &admin {
        panic!("as admin:\n{e}");
    }
    if let Err(e) = &provider {
        panic!("as a provider:\n{e}");
    }
    broker.shut().await;
}
