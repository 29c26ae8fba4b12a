//! `etcd-member-loss`: the controller runs on the etcd store of a
//! three-member cluster on loopback while a VM pings another on another
//! PM every 10 ms, and the API is written to all along.
//!
//! - One member killed: nothing changes, every write is acknowledged.
//! - A second member killed (the quorum lost): the data plane keeps
//!   forwarding, every write is refused with a 503 problem+json that says
//!   the store is unavailable, and reads still answer (from memory).
//! - Both members restored: writes are acknowledged again, and a
//!   controller killed and started afresh on the cluster finds every write
//!   acknowledged before, during and after the loss, and none refused.
//! - No ping is lost over the whole run.
//!
//! etcd, OpenFlow and OVSDB all run over TLS with certificates of the
//! run's CA.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::harness::{check, ms, to_json, Harness, PingSummary, CONVERGE};
use super::ScenarioError;
use crate::controller::{ControllerProcess, EtcdStore, ViEntry};
use crate::etcd::EtcdCluster;
use crate::PingPlan;

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const INTERVAL: Duration = Duration::from_millis(10);
/// More than the run needs: it is interrupted once the checks are done.
const PINGS: u32 = 20_000;
/// Writes made in each phase.
const WRITES: usize = 5;
/// How long the controller waits for etcd before a write counts as
/// refused.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What `etcd-member-loss` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Writes acknowledged with all members, one member down, and after
    /// the restore.
    pub acknowledged: usize,
    /// Writes refused while two members were down: all of them.
    pub refused: usize,
    /// How long the API took to refuse a write without a quorum.
    pub refusal_ms: Vec<f64>,
    /// The problem document of the first refusal.
    pub refusal: Value,
    /// From the members' restore to the first acknowledged write.
    pub restore_to_write_ms: f64,
    /// Registry entries the controller restarted on the cluster found.
    pub entries_after_restart: usize,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// The API path of the `n`th written registry entry, a MAC not placed
/// anywhere: enough for a write that the store must take.
fn entry_path(n: usize) -> String {
    format!(
        "/v1/registry/{VI}/untagged/52:54:00:ee:{:02x}:{:02x}",
        n / 256,
        n % 256
    )
}

/// PUTs entry `n`; the status, content type and body.
fn write(c: &ControllerProcess, n: usize) -> Result<(u16, String, String), ScenarioError> {
    let body = json!({ "location": null, "ips": [] });
    Ok(c.request_typed("PUT", &entry_path(n), Some(&body))?)
}

/// PUTs `count` more entries, numbered on from those `written`, each of
/// which must be acknowledged.
fn acknowledged(
    c: &ControllerProcess,
    written: &mut Vec<usize>,
    count: usize,
    when: &str,
) -> Result<(), ScenarioError> {
    for _ in 0..count {
        let n = written.len();
        let (status, _, body) = write(c, n)?;
        check(status == 201 || status == 200, || {
            format!(
                "{when}: PUT {} was answered {status}: {body}",
                entry_path(n)
            )
        })?;
        written.push(n);
    }
    Ok(())
}

/// The MACs the API lists for the VI.
fn macs_listed(c: &ControllerProcess) -> Result<BTreeSet<String>, ScenarioError> {
    let entries = c.get_json(&format!("/v1/registry?vi={VI}"))?;
    Ok(entries
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["mac"].as_str().map(str::to_owned))
        .collect())
}

fn mac_of(n: usize) -> String {
    entry_path(n)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    // TLS everywhere, as in production: etcd's members and clients, the
    // switches and OVSDB, all certified by the run's CA.
    h.use_tls()?;
    let pki = h
        .pki()
        .ok_or_else(|| ScenarioError::Failed("the harness made no CA".into()))?;
    let mut cluster = EtcdCluster::start_tls(&h.file("etcd"), 3, pki)?;
    let pms = h.add_pms(&["pm1", "pm2"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    let vms = h.add_vms(&mut vi, &[pms[0], pms[1]])?;
    let mut config = h.config(&pms, vec![vi])?;
    config.etcd = Some(EtcdStore::on(&cluster, "iris/dc1/", REQUEST_TIMEOUT));
    h.bring_up_with(&pms, &config, &vms)?;
    h.check_tls(&pms)?;
    let dst = h.tb.vm(vms[1]).ip().addr();
    h.wait_reachable(vms[0], dst)?;
    let run = h.ping_run(vms[0], PingPlan::new(dst, PINGS, INTERVAL), "across-loss")?;

    let mut written = Vec::new();
    acknowledged(
        h.controller()?,
        &mut written,
        WRITES,
        "with every etcd member",
    )?;
    h.note("killing etcd member 0");
    cluster.kill(0)?;
    acknowledged(
        h.controller()?,
        &mut written,
        WRITES,
        "with one etcd member down",
    )?;

    h.note("killing etcd member 1: the cluster has no quorum");
    cluster.kill(1)?;
    let c = h.controller()?;
    let listed_before = macs_listed(c)?;
    let mut refused = Vec::new();
    let mut refusal_ms = Vec::new();
    let mut refusal = Value::Null;
    for i in 0..WRITES {
        let m = 1000 + i;
        let started = Instant::now();
        let (status, content_type, body) = write(c, m)?;
        refusal_ms.push(ms(started.elapsed()));
        check(status == 503, || {
            format!(
                "without a quorum PUT {} was answered {status}: {body}",
                entry_path(m)
            )
        })?;
        check(content_type == "application/problem+json", || {
            format!("the 503 came as {content_type:?}, not application/problem+json: {body}")
        })?;
        let problem: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        check(
            problem["status"] == 503
                && problem["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("store is unavailable")),
            || format!("the 503 does not say the store is unavailable: {body}"),
        )?;
        if refusal.is_null() {
            refusal = problem;
        }
        refused.push(m);
    }
    // Reads answer from memory, and the refused writes are not there.
    let listed = macs_listed(c)?;
    check(listed == listed_before, || {
        format!("the registry changed while writes were refused: {listed_before:?} → {listed:?}")
    })?;
    check(
        h.tb.vm(vms[0]).ping(dst, 20, INTERVAL)?.all_replied(),
        || "the data plane stopped forwarding without etcd's quorum".to_owned(),
    )?;

    h.note("restoring etcd members 0 and 1");
    let restored = Instant::now();
    cluster.restore(0)?;
    cluster.restore(1)?;
    // The controller's client reconnects on its own: its first writes may
    // still be refused while it does.
    let c = h.controller()?;
    let n = written.len();
    h.wait_for("a write acknowledged after the restore", CONVERGE, || {
        let (status, _, body) = write(c, n)?;
        Ok(match status {
            200 | 201 => Ok(()),
            503 => Err(format!("still refused: {body}")),
            other => return Err(ScenarioError::Failed(format!("answered {other}: {body}"))),
        })
    })?;
    let restore_to_write = restored.elapsed();
    written.push(n);
    acknowledged(c, &mut written, WRITES - 1, "after the restore")?;

    // What etcd holds, as a controller that starts on it finds it.
    h.note("kill -9 of the controller; starting it again on the cluster");
    h.kill_controller()?;
    h.restart_controller()?;
    h.wait_ready(2, 2)?;
    let after = macs_listed(h.controller()?)?;
    let missing: Vec<String> = written
        .iter()
        .map(|&i| mac_of(i))
        .filter(|m| !after.contains(m))
        .collect();
    check(missing.is_empty(), || {
        format!("acknowledged writes missing from etcd after the restore: {missing:?}")
    })?;
    let present: Vec<String> = refused
        .iter()
        .map(|&i| mac_of(i))
        .filter(|m| after.contains(m))
        .collect();
    check(present.is_empty(), || {
        format!("writes refused with 503 are in etcd after all: {present:?}")
    })?;
    h.wait_reachable(vms[0], dst)?;
    let trace = run.interrupt()?;
    let lost = trace.lost();
    check(lost.is_empty(), || {
        format!("pings were lost while etcd lost and regained its quorum: {lost:?}")
    })?;
    drop(cluster);
    Ok(Report {
        acknowledged: written.len(),
        refused: refused.len(),
        refusal_ms,
        refusal,
        restore_to_write_ms: ms(restore_to_write),
        entries_after_restart: after.len(),
        ping: PingSummary::from(&trace),
    })
}
