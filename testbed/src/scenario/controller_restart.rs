//! `controller-restart`: the controller is killed with SIGKILL in the
//! middle of a ping run and started again on the same configuration and
//! store, twice: once as it comes, and once with every OVSDB session held
//! back (through a relay between the controller and each PM's ovsdb-server)
//! until both switches are back, and the second PM's a moment longer. The
//! second restart is the order in which a controller that planned a switch
//! from the ports it had would delete every VM port's flows: the switch is
//! ready before OVSDB has said which ports it has.
//!
//! - No ping is lost: with `fail_mode=secure` the switches keep their flows
//!   and forward on their own while no controller is there. The run spans
//!   both kills and restarts: enough replies came before the first kill
//!   and after the last restart.
//! - The restarted controller deletes and re-adds nothing: it reconciles
//!   against the switches' flow dumps, finds them right and sends no
//!   FLOW_MOD or GROUP_MOD (its counters stay 0), and every flow's
//!   duration kept counting across both restarts (a re-added flow would
//!   start again from 0). After the held-back restart the controller's
//!   `iris_switches_held_for_inventory_total` shows that it did meet a
//!   ready switch before the port reports.
//! - The registry is intact: the API lists the same entries, origins and
//!   timestamps before and after.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::harness::{
    check, flows_kept, ms, round3, to_json, wall_clock, Harness, PingSummary, CONVERGE,
};
use super::ScenarioError;
use crate::controller::{ControllerConfig, ViEntry};
use crate::relay::Relay;
use crate::{PingPlan, PingTrace, VmId};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const INTERVAL: Duration = Duration::from_millis(10);
/// More than the run needs: it is interrupted once the checks are done.
const PINGS: u32 = 6000;
const BEFORE_KILL: Duration = Duration::from_secs(1);
/// How long the controller stays dead.
const DEAD: Duration = Duration::from_secs(1);
/// After a restart, time for a reconciliation that should not happen to
/// happen (and show in the counters).
const SETTLE: Duration = Duration::from_secs(2);
/// How much longer than the first PM's the second PM's OVSDB session is
/// held back: meanwhile the first PM's ports are known, the second's not.
const SECOND_PM_LATER: Duration = Duration::from_millis(300);
/// Replies the run must have before the first kill and after the last
/// restart, for it to span them; the scenario waits for them when a loaded
/// host starts `ping` late or runs it slower than asked.
const MIN_REPLIES_AROUND: usize = 30;

/// One kill and restart.
#[derive(Debug, Serialize)]
pub struct Restart {
    /// `as_is`, or `ovsdb_held`: every OVSDB session held back until both
    /// switches were ready.
    pub how: &'static str,
    pub dead_ms: f64,
    /// From the restart to every switch and OVSDB session being back.
    pub restart_to_ready_ms: f64,
    pub flow_mods: f64,
    pub group_mods: f64,
    /// Times the controller left a ready switch as it was until the port
    /// inventory was complete.
    pub switches_held_for_inventory: f64,
    /// When every switch and OVSDB session was back (wall clock, seconds).
    #[serde(skip)]
    pub ready_at: f64,
}

/// What `controller-restart` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub killed_after_ms: f64,
    /// Of the first restart.
    pub dead_ms: f64,
    pub restart_to_ready_ms: f64,
    /// Over both restarts.
    pub flow_mods_after_restart: f64,
    pub group_mods_after_restart: f64,
    pub restarts: Vec<Restart>,
    /// Iris flows whose durations were compared, per PM.
    pub flows_kept: BTreeMap<String, usize>,
    /// Wall time between the two dumps.
    pub between_dumps_s: f64,
    /// The smallest growth of a flow's duration between the two dumps: at
    /// least the wall time, as no flow was re-added.
    pub least_duration_growth_s: f64,
    pub registry_entries: usize,
    /// Replies before the first kill and after the last restart.
    pub replies_before_kill: usize,
    pub replies_after_restart: usize,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    // As in production: the switches and the controller prove who they
    // are, over management links.
    h.use_tls()?;
    let pms = h.add_pms(&["pm1", "pm2"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    // Two VMs on pm1 (local forwarding) and one on pm2 (the tunnel).
    let vms = h.add_vms(&mut vi, &[pms[0], pms[1], pms[0]])?;
    let config = h.config(&pms, vec![vi])?;
    h.bring_up_with(&pms, &config, &vms)?;
    h.check_tls(&pms)?;
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

    // The same configuration with each PM's OVSDB behind a relay (on its
    // unix socket: the relay holds sessions back, it does not speak TLS).
    let mut relays = Vec::new();
    let mut held = config.clone();
    for (i, (host, &pm)) in held.hosts.iter_mut().zip(&pms).enumerate() {
        let server = h.tb.pm(pm).ovs().db_socket();
        let delay = SECOND_PM_LATER * u32::try_from(i).unwrap_or(u32::MAX);
        let relay = Relay::start(
            &h.file(&format!("ovsdb-{}.sock", host.name)),
            &server,
            delay,
        )?;
        host.ovsdb = relay.target();
        relays.push(relay);
    }

    let registry_before = h.controller()?.get_json("/v1/registry")?;
    let (flows_before, dumped_before) = h.settled_iris_flows(&pms)?;

    let dst = h.tb.vm(vms[1]).ip().addr();
    let run = h.ping_run(
        vms[0],
        PingPlan::new(dst, PINGS, INTERVAL),
        "across-restart",
    )?;
    let output = h.file("across-restart.ping");
    std::thread::sleep(BEFORE_KILL);
    // A loaded host may start `ping` late: the run must be under way.
    wait_for_replies(h, &output, MIN_REPLIES_AROUND)?;
    let killed_after = run.elapsed();
    let first_kill = wall_clock();
    let restarts = [restart(h, &config, &[])?, restart(h, &held, &relays)?];
    let last_ready = restarts[1].ready_at;
    let so_far = replies_so_far(&output);
    wait_for_replies(h, &output, so_far + MIN_REPLIES_AROUND)?;
    let between_dumps = dumped_before.elapsed().as_secs_f64();
    let flows_after = h.iris_flows(&pms)?;
    h.check_openflow_over_tls(&pms)?;
    let registry_after = h.controller()?.get_json("/v1/registry")?;
    let trace = run.interrupt()?;

    let (kept, least_growth) = flows_kept(&flows_before, &flows_after, between_dumps)?;
    check(registry_after == registry_before, || {
        format!("the registry changed across the restarts:\nbefore {registry_before}\nafter  {registry_after}")
    })?;
    let lost = trace.lost();
    check(lost.is_empty(), || {
        format!("pings were lost across the kills and restarts: {lost:?}")
    })?;
    let (before_kill, after_restart) = replies_around(&trace, first_kill, last_ready);
    check(
        before_kill >= MIN_REPLIES_AROUND && after_restart >= MIN_REPLIES_AROUND,
        || {
            format!(
                "the ping run does not span the kills and restarts: {before_kill} replies before \
                 the first kill and {after_restart} after the last restart, {MIN_REPLIES_AROUND} \
                 wanted each"
            )
        },
    )?;
    let [first, _] = &restarts;
    Ok(Report {
        killed_after_ms: ms(killed_after),
        dead_ms: first.dead_ms,
        restart_to_ready_ms: first.restart_to_ready_ms,
        flow_mods_after_restart: restarts.iter().map(|r| r.flow_mods).sum(),
        group_mods_after_restart: restarts.iter().map(|r| r.group_mods).sum(),
        flows_kept: kept,
        between_dumps_s: round3(between_dumps),
        least_duration_growth_s: round3(least_growth),
        registry_entries: registry_before.as_array().map_or(0, Vec::len),
        replies_before_kill: before_kill,
        replies_after_restart: after_restart,
        ping: PingSummary::from(&trace),
        restarts: restarts.into(),
    })
}

/// Replies `ping` has printed so far into `output`.
fn replies_so_far(output: &Path) -> usize {
    std::fs::read_to_string(output).map_or(0, |t| {
        t.lines().filter(|l| l.contains(" bytes from ")).count()
    })
}

/// Waits until `ping` has printed `n` replies into `output`.
fn wait_for_replies(h: &Harness, output: &Path, n: usize) -> Result<(), ScenarioError> {
    h.wait_for(&format!("{n} ping replies"), CONVERGE, || {
        let seen = replies_so_far(output);
        Ok(if seen >= n {
            Ok(())
        } else {
            Err(format!("{seen} replies"))
        })
    })
}

/// Replies stamped before `first_kill` and after `last_ready` (wall-clock
/// seconds).
fn replies_around(trace: &PingTrace, first_kill: f64, last_ready: f64) -> (usize, usize) {
    let before = trace.replies.iter().filter(|r| r.at < first_kill).count();
    let after = trace.replies.iter().filter(|r| r.at > last_ready).count();
    (before, after)
}

/// Kills the controller and starts it on `config`; with `relays` (the
/// OVSDB remotes `config` names), the OVSDB sessions are let through only
/// once both switches are ready. Reads what the restarted controller sent.
fn restart(
    h: &mut Harness,
    config: &ControllerConfig,
    relays: &[Relay],
) -> Result<Restart, ScenarioError> {
    let how = if relays.is_empty() {
        "as_is"
    } else {
        "ovsdb_held"
    };
    h.note(format!(
        "kill -9 of the controller; restarting it {}",
        how.replace('_', " ")
    ));
    h.kill_controller()?;
    let killed = Instant::now();
    std::thread::sleep(DEAD);
    let dead = killed.elapsed();
    h.start_controller(config)?;
    let restarted = Instant::now();
    if !relays.is_empty() {
        h.wait_ready(2, 0)?;
        h.note("both switches ready, no OVSDB session yet; letting them through");
        for r in relays {
            r.open();
        }
    }
    h.wait_ready(2, 2)?;
    let restart_to_ready = restarted.elapsed();
    let ready_at = wall_clock();
    h.note("restarted and reconnected; letting it settle");
    std::thread::sleep(SETTLE);
    let metrics = h.controller()?.metrics()?;
    let flow_mods = metrics.get("iris_flow_mods_sent_total")?;
    let group_mods = metrics.get("iris_group_mods_sent_total")?;
    check(flow_mods == 0.0 && group_mods == 0.0, || {
        format!(
            "the controller restarted {} sent {flow_mods} FLOW_MODs and {group_mods} GROUP_MODs \
             to switches that were already right",
            how.replace('_', " ")
        )
    })?;
    let held = metrics.get("iris_switches_held_for_inventory_total")?;
    if !relays.is_empty() {
        check(held >= 1.0, || {
            "both switches were ready before any OVSDB session, yet the controller never \
             held one for its port inventory: the restart did not meet the order it is for"
                .to_owned()
        })?;
    }
    Ok(Restart {
        how,
        dead_ms: ms(dead),
        restart_to_ready_ms: ms(restart_to_ready),
        flow_mods,
        group_mods,
        switches_held_for_inventory: held,
        ready_at,
    })
}
