//! `controller-failover`: three controller replicas share a three-member
//! etcd cluster; the leader is killed with SIGKILL while a VM pings another
//! every 10 ms, a third VM then migrates to another PM, and the new leader
//! is killed in turn.
//!
//! Everything runs as in production: OpenFlow over TLS, OVSDB over SSL,
//! etcd over TLS with client certificates, the API over HTTPS with a
//! token, each replica certified by the run's CA. The bridges run in passive mode: each listens (`pssl:`)
//! beside its OVSDB and every replica dials it, so each switch holds one OpenFlow connection
//! per replica, each with its own role (a bridge in a namespace reaches
//! one active target only, through the socket linked into its run
//! directory).
//!
//! - Before the kill one replica leads and is MASTER on every switch, the
//!   other SLAVE on every switch.
//! - After the kill the standby is MASTER on every switch within
//!   [`MAX_TAKEOVER`] of it, and its reconciliation of switches that were
//!   already right sends no FLOW_MOD and no GROUP_MOD.
//! - No ping is lost: the switches keep their flows and forward on their
//!   own while no one is MASTER.
//! - The migration, made right after the takeover (the announcement of a
//!   guest moved while no replica is MASTER would reach no controller, as
//!   a switch sends PacketIns to its MASTER only), is followed: the moved
//!   VM answers, and the new leader's registry places it on its new PM;
//!   so do the standby's reads within [`STANDBY_LAG`] (it follows the
//!   store by an etcd watch, over the same TLS as its store).
//! - A registry write sent to a standby reaches the leader over HTTPS
//!   (`[cluster] api_ca`) and is there.
//! - The new leader killed in turn, the last replica is MASTER on every
//!   switch within [`MAX_TAKEOVER`] and sends nothing either: its view
//!   followed the migration the killed leader committed.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, to_json, wall_clock, Harness, PingSummary, CONVERGE};
use super::migrate::qemu_announcement;
use super::ScenarioError;
use crate::controller::{
    Cluster, ControllerConfig, ControllerProcess, EtcdStore, OpenFlowMode, Replica, ViEntry,
};
use crate::error::Error;
use crate::etcd::EtcdCluster;
use crate::frames::send_frames;
use crate::PingPlan;

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const INTERVAL: Duration = Duration::from_millis(10);
/// More than the run needs: it is interrupted once the checks are done.
const PINGS: u32 = 20_000;
const REPLICAS: usize = 3;
/// The election's lease: a standby takes over this long after the
/// leader's death at most.
const LEASE_TTL_SECS: u64 = 2;
/// From the kill to the standby being MASTER on every switch.
pub const MAX_TAKEOVER: Duration = Duration::from_secs(3);
/// Before the kill: the ping run is under way.
const BEFORE_KILL: Duration = Duration::from_secs(1);
/// After the takeover, time for a reconciliation that should send nothing
/// to show in the counters.
const SETTLE: Duration = Duration::from_secs(1);
/// Replies the run must have before the kill and after the takeover, for
/// it to span the failover.
const MIN_REPLIES_AROUND: usize = 30;
/// After the migration: the run goes on this long past it.
const AFTER_MOVE: Duration = Duration::from_secs(1);
/// How far a standby's reads may lag the leader's: it reloads 20 ms after
/// the leader's last commit of a burst, which it hears of by etcd watch.
const STANDBY_LAG: Duration = Duration::from_secs(2);

/// What `controller-failover` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub replicas: usize,
    pub switches: usize,
    /// From the kill of the leader to a standby leading (`iris_leader`).
    pub kill_to_leader_ms: f64,
    /// From the kill to that standby being MASTER on every switch.
    pub kill_to_master_ms: f64,
    pub leader_generation: f64,
    /// What the new leader sent once MASTER, before the migration.
    pub flow_mods_after_takeover: f64,
    pub group_mods_after_takeover: f64,
    /// The same for the kill of the new leader, after the migration, and
    /// the last replica.
    pub second_kill_to_leader_ms: f64,
    pub second_kill_to_master_ms: f64,
    pub second_leader_generation: f64,
    pub flow_mods_after_second_takeover: f64,
    pub group_mods_after_second_takeover: f64,
    /// What it sent to follow the migration.
    pub flow_mods_after_move: f64,
    /// From the migration's replug to the moved VM answering.
    pub move_to_reply_ms: f64,
    pub moved_to: String,
    /// From the leader's registry placing vm3 to the last standby's doing
    /// so.
    pub standby_read_lag_ms: f64,
    pub replies_before_kill: usize,
    /// After the second takeover.
    pub replies_after_takeover: usize,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// `series` of `c`'s metrics, -1 while it does not answer.
fn metric(c: &ControllerProcess, series: &str) -> f64 {
    c.metrics()
        .ok()
        .and_then(|m| m.get(series).ok())
        .unwrap_or(-1.0)
}

/// Starts replica `name` on `config` with its own directory, socket and
/// log.
fn start_replica(
    h: &Harness,
    config: &ControllerConfig,
    name: &str,
) -> Result<ControllerProcess, ScenarioError> {
    let dir = h.file(name);
    let written = config.write(&dir)?;
    let process = ControllerProcess::start(
        h.controller_binary(),
        &written,
        &h.file(&format!("{name}.log")),
    )
    .map_err(|e| ScenarioError::Failed(format!("replica {name} did not start: {e}")))?;
    h.note(format!(
        "replica {name} started (pid {}, api {})",
        process.pid(),
        process.api_addr()
    ));
    Ok(process)
}

/// What one takeover measured.
struct Takeover {
    /// The new leader, in what is still running.
    leader: usize,
    killed_at: f64,
    master_at: f64,
    to_leader: Duration,
    to_master: Duration,
    generation: f64,
    flow_mods: f64,
    group_mods: f64,
}

/// Kills `running[leader]` (named as in `names`, which follows
/// `running`) with SIGKILL, and checks that a standby is MASTER on all `n`
/// switches within [`MAX_TAKEOVER`] with a higher generation id than
/// `generation_before`, sending nothing to switches that were right.
fn kill_leader(
    h: &Harness,
    running: &mut Vec<ControllerProcess>,
    names: &mut Vec<String>,
    leader: usize,
    generation_before: f64,
    n: usize,
) -> Result<Takeover, ScenarioError> {
    let name = names.remove(leader);
    h.note(format!("kill -9 of the leader, {name}"));
    let process = running.remove(leader);
    let killed = Instant::now();
    let killed_at = wall_clock();
    process.kill()?;
    // Whichever standby wins.
    let (new, to_leader) = h.wait_for("a standby leads", Duration::from_secs(10), || {
        Ok(
            match running.iter().position(|c| metric(c, "iris_leader") == 1.0) {
                Some(i) => Ok((i, killed.elapsed())),
                None => Err("no replica leads".to_owned()),
            },
        )
    })?;
    let to_master = h.wait_for(
        "the new leader MASTER on every switch",
        Duration::from_secs(10),
        || {
            let m = metric(&running[new], "iris_switches_master");
            Ok(if m == n as f64 {
                Ok(killed.elapsed())
            } else {
                Err(format!("MASTER on {m} switches"))
            })
        },
    )?;
    let master_at = wall_clock();
    h.note(format!(
        "{} leads {} ms and is MASTER on every switch {} ms after the kill of {name}",
        names[new],
        ms(to_leader),
        ms(to_master)
    ));
    check(to_master <= MAX_TAKEOVER, || {
        format!(
            "the standby was MASTER on every switch {} ms after the kill, more than {} ms",
            ms(to_master),
            ms(MAX_TAKEOVER)
        )
    })?;
    std::thread::sleep(SETTLE);
    let metrics = running[new].metrics()?;
    let flow_mods = metrics.get("iris_flow_mods_sent_total")?;
    let group_mods = metrics.get("iris_group_mods_sent_total")?;
    let generation = metrics.get("iris_leader_generation")?;
    check(flow_mods == 0.0 && group_mods == 0.0, || {
        format!(
            "the new leader sent {flow_mods} FLOW_MODs and {group_mods} GROUP_MODs to switches \
             that were already right"
        )
    })?;
    check(generation > generation_before, || {
        format!("the generation id went from {generation_before} to {generation}, not up")
    })?;
    Ok(Takeover {
        leader: new,
        killed_at,
        master_at,
        to_leader,
        to_master,
        generation,
        flow_mods,
        group_mods,
    })
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    // As in production: OpenFlow over TLS, OVSDB over SSL and etcd with
    // TLS both ways, all certified by the run's CA.
    h.use_tls()?;
    let pki = h
        .pki()
        .ok_or_else(|| ScenarioError::Failed("the harness made no CA".into()))?;
    let etcd = EtcdCluster::start_tls(&h.file("etcd"), 3, pki)?;
    h.set_openflow(OpenFlowMode::Passive);
    let pms = h.add_pms(&["pm1", "pm2", "pm3"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    // vm1 pings vm2 across the tunnel; vm3 moves from pm2 to pm3, which
    // has no VM of the VI until then.
    let vms = h.add_vms(&mut vi, &[pms[0], pms[1], pms[1]])?;
    let (pinger, target, mover) = (vms[0], vms[1], vms[2]);
    let base = h.config(&pms, vec![vi])?;

    let names: Vec<String> = (0..REPLICAS).map(|i| format!("ctl{i}")).collect();
    let mut configs = Vec::new();
    let mut replicas = Vec::new();
    // One API certificate serves every replica: all listen on 127.0.0.1.
    let api_tls = h.api_tls()?;
    for name in &names {
        let dir = h.file(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io_at("creating", &dir, e))?;
        let mut c = base.clone();
        c.listen = dir.join("of.sock");
        c.api = crate::ports::free_loopback()?;
        c.etcd = Some(EtcdStore::on(&etcd, "iris/dc1/", Duration::from_secs(2)));
        // Each replica its own certificate and port; the bridges listen
        // (passive mode) and every replica dials them.
        c.tls = h.another_controller_tls(name)?;
        c.api_tls = api_tls.clone();
        let openflow = match &c.tls {
            Some(t) => format!("ssl:127.0.0.1:{}", t.listen.port()),
            None => format!("unix:{}", c.listen.display()),
        };
        let scheme = if c.api_tls.is_some() { "https" } else { "http" };
        replicas.push(Replica {
            name: name.clone(),
            openflow,
            api: format!("{scheme}://{}", c.api),
        });
        configs.push(c);
    }
    for (c, name) in configs.iter_mut().zip(&names) {
        c.cluster = Some(Cluster {
            name: name.clone(),
            lease_ttl_secs: LEASE_TTL_SECS,
            replicas: replicas.clone(),
        });
    }

    // ctl0 first, so that it leads; the others join as standbys.
    let mut running = vec![start_replica(h, &configs[0], &names[0])?];
    let n = pms.len();
    h.wait_for("ctl0 leads", CONVERGE, || {
        let l = metric(&running[0], "iris_leader");
        Ok(if l == 1.0 {
            Ok(())
        } else {
            Err(format!("iris_leader {l}"))
        })
    })?;
    running[0]
        .wait_ready(n as u64, n as u64, CONVERGE)
        .map_err(|e| ScenarioError::Failed(e.to_string()))?;
    h.wait_full_mesh(&pms)?;
    h.wait_classified(&vms)?;
    for (i, name) in names.iter().enumerate().skip(1) {
        running.push(start_replica(h, &configs[i], name)?);
    }
    h.wait_for(
        "ctl0 MASTER and every standby SLAVE on every switch",
        CONVERGE,
        || {
            let master = metric(&running[0], "iris_switches_master");
            let slaves: Vec<f64> = running[1..]
                .iter()
                .map(|c| metric(c, "iris_switches_slave"))
                .collect();
            let leaders: Vec<f64> = running[1..]
                .iter()
                .map(|c| metric(c, "iris_leader"))
                .collect();
            Ok(
                if master == n as f64
                    && slaves.iter().all(|&s| s == n as f64)
                    && leaders.iter().all(|&l| l == 0.0)
                {
                    Ok(())
                } else {
                    Err(format!(
                        "ctl0 MASTER on {master}, standbys SLAVE on {slaves:?}, leading \
                         {leaders:?}"
                    ))
                },
            )
        },
    )?;
    for c in &running {
        h.check_openflow_over_tls_in(c.log_path(), &pms)?;
        h.check_ovsdb_over_ssl_in(c.log_path(), &pms)?;
    }
    for (a, b) in [(pinger, target), (pinger, mover), (mover, pinger)] {
        let to = h.tb.vm(b).ip().addr();
        h.wait_reachable(a, to)?;
    }
    let generation_before = metric(&running[0], "iris_leader_generation");

    let dst = h.tb.vm(target).ip().addr();
    let run = h.ping_run(
        pinger,
        PingPlan::new(dst, PINGS, INTERVAL),
        "across-failover",
    )?;
    std::thread::sleep(BEFORE_KILL);
    let mut alive = names.clone();
    let first = kill_leader(h, &mut running, &mut alive, 0, generation_before, n)?;
    let killed_at = first.killed_at;

    // The migration, on the new leader.
    let to_pm = h.tb.pm(pms[2]).name().to_owned();
    h.note(format!(
        "moving vm3 from pm2 to {to_pm}, announced by a RARP"
    ));
    let c = &running[first.leader];
    let moved = Instant::now();
    let moved_at = wall_clock();
    h.tb.move_vm(mover, pms[2])?;
    let vm = h.tb.vm(mover);
    send_frames(vm.netns(), vm.interface(), &qemu_announcement(vm.mac()))?;
    let moved_ip = vm.ip().addr();
    h.wait_reachable(pinger, moved_ip)?;
    let move_to_reply = moved.elapsed();
    let new_port = h.tb.pm(pms[2]).ofport(h.tb.vm(mover).port())?;
    let mac = h.tb.vm(mover).mac().to_string();
    // The leader's registry places vm3 on its new PM, and so do the
    // standbys' reads (they follow the store over etcd's TLS) within
    // [`STANDBY_LAG`].
    let placed = |c: &ControllerProcess| -> Result<Result<(), String>, ScenarioError> {
        let entries = c.get_json(&format!("/v1/registry?vi={VI}"))?;
        let entry = entries
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["mac"] == mac.as_str() && e["vlan"].is_null())
            .cloned();
        Ok(match entry {
            Some(e)
                if e["location"]["host"] == to_pm.as_str()
                    && e["location"]["ofport"] == new_port =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}, not {to_pm} port {new_port}")),
        })
    };
    h.wait_for(
        "the new leader's registry places vm3 on its new PM",
        CONVERGE,
        || placed(c),
    )?;
    let leader_placed = Instant::now();
    for (i, standby) in running.iter().enumerate() {
        if i != first.leader {
            h.wait_for(
                &format!(
                    "the standby {}'s reads to place vm3 on its new PM",
                    alive[i]
                ),
                STANDBY_LAG,
                || placed(standby),
            )?;
        }
    }
    let standby_lag = leader_placed.elapsed();
    // A write sent to a standby, with the operator's token, reaches the
    // leader over HTTPS (the standby trusts the run's CA as `api_ca`) and
    // is applied there alone.
    let standby = (0..running.len())
        .find(|&i| i != first.leader)
        .ok_or_else(|| ScenarioError::Failed("no standby is left".into()))?;
    let forwarded = "/v1/registry/1/untagged/02:00:00:00:00:99";
    let (status, body) = running[standby].request(
        "PUT",
        forwarded,
        Some(&serde_json::json!({"location": null, "ips": ["10.0.0.99"]})),
    )?;
    check(status == 201, || {
        format!(
            "a write sent to the standby {} got {status}, not 201: {body}",
            alive[standby]
        )
    })?;
    let (status, body) = c.request("GET", forwarded, None)?;
    check(status == 200 && body.contains("10.0.0.99"), || {
        format!("the write forwarded by a standby is not on the leader: {status} {body}")
    })?;
    // The counters that stayed at 0 through the takeover are live: the
    // migration's reprogramming shows in them.
    let flow_mods_after_move = c.metrics()?.get("iris_flow_mods_sent_total")?;
    check(flow_mods_after_move > 0.0, || {
        "the new leader followed the migration without a FLOW_MOD counted: its counter proves \
         nothing"
            .to_owned()
    })?;
    std::thread::sleep(AFTER_MOVE);
    // The new leader killed in turn: the last replica takes over from it.
    let second = kill_leader(
        h,
        &mut running,
        &mut alive,
        first.leader,
        first.generation,
        n,
    )?;
    let master_at = second.master_at;
    std::thread::sleep(AFTER_MOVE);
    let trace = run.interrupt()?;
    let lost = trace.lost();
    check(lost.is_empty(), || {
        // When each was sent, against what happened, to tell which event
        // cost it.
        let since_kill = |t: f64| format!("{:.1}", (t - killed_at) * 1e3);
        let sent: Vec<String> = lost
            .iter()
            .map(|&s| {
                let at = trace.sent_at(s).map_or("?".into(), since_kill);
                format!("{s} sent about {at} ms")
            })
            .collect();
        format!(
            "pings were lost across the failover: {lost:?} ({}); ms from the first kill: \
             MASTER {}, vm3 unplugged {}, second kill {}, MASTER {}; ping's pace {:?}",
            sent.join(", "),
            since_kill(first.master_at),
            since_kill(moved_at),
            since_kill(second.killed_at),
            since_kill(master_at),
            trace.pace()
        )
    })?;
    let before = trace.replies.iter().filter(|r| r.at < killed_at).count();
    let after = trace.replies.iter().filter(|r| r.at > master_at).count();
    check(
        before >= MIN_REPLIES_AROUND && after >= MIN_REPLIES_AROUND,
        || {
            format!(
                "the ping run does not span the failover: {before} replies before the kill and \
                 {after} after the takeover, {MIN_REPLIES_AROUND} wanted each"
            )
        },
    )?;

    // Everything started is stopped: the standbys with SIGTERM (a clean
    // exit is part of passing), then etcd.
    for (c, name) in running.into_iter().zip(&alive) {
        c.stop(Duration::from_secs(5))
            .map_err(|e| ScenarioError::Failed(format!("replica {name} did not stop: {e}")))?;
    }
    drop(etcd);
    Ok(Report {
        replicas: REPLICAS,
        switches: n,
        kill_to_leader_ms: ms(first.to_leader),
        kill_to_master_ms: ms(first.to_master),
        leader_generation: first.generation,
        flow_mods_after_takeover: first.flow_mods,
        group_mods_after_takeover: first.group_mods,
        second_kill_to_leader_ms: ms(second.to_leader),
        second_kill_to_master_ms: ms(second.to_master),
        second_leader_generation: second.generation,
        flow_mods_after_second_takeover: second.flow_mods,
        group_mods_after_second_takeover: second.group_mods,
        flow_mods_after_move,
        move_to_reply_ms: ms(move_to_reply),
        moved_to: to_pm,
        standby_read_lag_ms: ms(standby_lag),
        replies_before_kill: before,
        replies_after_takeover: after,
        ping: PingSummary::from(&trace),
    })
}
