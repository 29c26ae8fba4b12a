//! `controller-restart`: the controller is killed with SIGKILL in the
//! middle of a ping run and started again on the same configuration and
//! store.
//!
//! - No ping is lost: with `fail_mode=secure` the switches keep their flows
//!   and forward on their own while no controller is there.
//! - The restarted controller deletes and re-adds nothing: it reconciles
//!   against the switches' flow dumps, finds them right and sends no
//!   FLOW_MOD or GROUP_MOD (its counters stay 0), and every flow's
//!   duration kept counting across the restart (a re-added flow would
//!   start again from 0).
//! - The registry is intact: the API lists the same entries, origins and
//!   timestamps before and after.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::harness::{check, flows_kept, ms, round3, to_json, Harness, PingSummary};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::{PingPlan, VmId};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const INTERVAL: Duration = Duration::from_millis(10);
/// More than the run needs: it is interrupted once the checks are done.
const PINGS: u32 = 6000;
const BEFORE_KILL: Duration = Duration::from_secs(1);
/// How long the controller stays dead.
const DEAD: Duration = Duration::from_secs(1);
/// After the restart, time for a reconciliation that should not happen to
/// happen (and show in the counters).
const SETTLE: Duration = Duration::from_secs(2);

/// What `controller-restart` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub killed_after_ms: f64,
    pub dead_ms: f64,
    /// From the restart to every switch and OVSDB session being back.
    pub restart_to_ready_ms: f64,
    pub flow_mods_after_restart: f64,
    pub group_mods_after_restart: f64,
    /// Iris flows whose durations were compared, per PM.
    pub flows_kept: BTreeMap<String, usize>,
    /// Wall time between the two dumps.
    pub between_dumps_s: f64,
    /// The smallest growth of a flow's duration between the two dumps: at
    /// least the wall time, as no flow was re-added.
    pub least_duration_growth_s: f64,
    pub registry_entries: usize,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let pms = h.add_pms(&["pm1", "pm2"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    // Two VMs on pm1 (local forwarding) and one on pm2 (the tunnel).
    let vms = h.add_vms(&mut vi, &[pms[0], pms[1], pms[0]])?;
    h.bring_up(&pms, vec![vi], &vms)?;
    for &a in &vms {
        for &b in &vms {
            if a != b {
                let dst = h.tb.vm(b).ip().addr();
                h.wait_reachable(a, dst)?;
            }
        }
    }
    let placed: Vec<(VmId, Option<u16>)> = vms.iter().map(|&v| (v, None)).collect();
    h.wait_placed(VI, &placed)?;

    let registry_before = h.controller()?.get_json("/v1/registry")?;
    let dumped_before = Instant::now();
    let flows_before = h.iris_flows(&pms)?;

    let dst = h.tb.vm(vms[1]).ip().addr();
    let run = h.ping_run(
        vms[0],
        PingPlan::new(dst, PINGS, INTERVAL),
        "across-restart",
    )?;
    std::thread::sleep(BEFORE_KILL);
    let killed_after = run.elapsed();
    h.note("kill -9 of the controller");
    h.kill_controller()?;
    let killed = Instant::now();
    std::thread::sleep(DEAD);
    let dead = killed.elapsed();
    h.restart_controller()?;
    let restart_to_ready = h.wait_ready(2, 2)?;
    h.note("restarted and reconnected; letting it settle");
    std::thread::sleep(SETTLE);
    let metrics = h.controller()?.metrics()?;
    let flow_mods = metrics.value("iris_flow_mods_sent_total");
    let group_mods = metrics.value("iris_group_mods_sent_total");
    let between_dumps = dumped_before.elapsed().as_secs_f64();
    let flows_after = h.iris_flows(&pms)?;
    let registry_after = h.controller()?.get_json("/v1/registry")?;
    let trace = run.interrupt()?;

    check(flow_mods == 0.0 && group_mods == 0.0, || {
        format!(
            "the restarted controller sent {flow_mods} FLOW_MODs and {group_mods} GROUP_MODs \
             to switches that were already right"
        )
    })?;
    let (kept, least_growth) = flows_kept(&flows_before, &flows_after, between_dumps)?;
    check(registry_after == registry_before, || {
        format!("the registry changed across the restart:\nbefore {registry_before}\nafter  {registry_after}")
    })?;
    let lost = trace.lost();
    check(lost.is_empty(), || {
        format!("pings were lost across the kill and restart: {lost:?}")
    })?;
    Ok(Report {
        killed_after_ms: ms(killed_after),
        dead_ms: ms(dead),
        restart_to_ready_ms: ms(restart_to_ready),
        flow_mods_after_restart: flow_mods,
        group_mods_after_restart: group_mods,
        flows_kept: kept,
        between_dumps_s: round3(between_dumps),
        least_duration_growth_s: round3(least_growth),
        registry_entries: registry_before.as_array().map_or(0, Vec::len),
        ping: PingSummary::from(&trace),
    })
}
