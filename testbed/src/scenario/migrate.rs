//! `migrate`: a VM moves to another PM while another VM pings it every
//! 10 ms. The testbed re-creates its port on the new PM (same namespace,
//! MAC and IP; its processes live on), and the VM then announces itself
//! exactly as QEMU does after a live migration: a broadcast RARP
//! (ethertype 0x8035, op 3 "request reverse", sender and target MAC its
//! own, both IPs 0.0.0.0), sent in QEMU's default announce rounds.
//!
//! The destination PM hosts no VM of the VI before the move, and the source
//! PM none after it: the VI's pipeline appears on one and leaves the other.
//! The RARP is the only thing that may move the MAC (the registry entry is
//! seeded, so no ordinary frame moves it): the controller moves it,
//! reprograms every switch concerned, confirms by barrier and floods the
//! announcement in the VI, where the pinging VM receives it. Pings resume.
//! Measured: the controller's RARP-to-last-barrier time (its move-latency
//! histogram gains exactly one sample), the longest gap between ping
//! replies, and the time from the first RARP to the first reply after it
//! and to the flooded announcement's arrival.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ofp::packet::ArpRepr;
use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, round3, to_json, Harness, PingSummary, CONVERGE};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::frames::{send_frames, Capture};
use crate::{PingPlan, VmId};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
/// Ping interval and length of the run: the move comes after [`BEFORE_MOVE`].
const INTERVAL: Duration = Duration::from_millis(10);
const PINGS: u32 = 400;
const BEFORE_MOVE: Duration = Duration::from_secs(1);

/// The pause before each of QEMU's self-announcements after a migration:
/// its defaults are 5 rounds, 50 ms after the first, each pause 100 ms
/// longer than the one before (`announce-initial=50`, `announce-step=100`,
/// `announce-max=550`, `announce-rounds=5`).
pub const QEMU_ANNOUNCE: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(50),
    Duration::from_millis(150),
    Duration::from_millis(250),
    Duration::from_millis(350),
];

/// What a guest with `mac` sends once QEMU resumes it after a live
/// migration: its RARP announcement in QEMU's default rounds, each with
/// the pause before it.
pub fn qemu_announcement(mac: crate::MacAddr) -> Vec<(Duration, Vec<u8>)> {
    let mut rarp = Vec::new();
    ArpRepr::rarp_announce(ofp::packet::MacAddr(mac.0)).emit(&mut rarp);
    QEMU_ANNOUNCE.iter().map(|&p| (p, rarp.clone())).collect()
}

/// What `migrate` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub from_pm: String,
    pub to_pm: String,
    /// The testbed re-plugging the VM (port removed, link and port re-created).
    pub replug_ms: f64,
    pub rarps_sent: usize,
    /// PacketIns by reason during the move: the RARPs that reached the
    /// controller (one sent before the new port is classified goes up from
    /// table 0 and is held until OVSDB reports the port).
    pub packet_ins: BTreeMap<String, f64>,
    /// From the RARP's PacketIn to the last barrier reply of the
    /// reprogramming it caused (`iris_move_latency_seconds`).
    pub rarp_to_last_barrier_ms: f64,
    /// From the first RARP to the first ping reply after it.
    pub rarp_to_first_reply_ms: Option<f64>,
    /// Copies of the announcement the pinging VM received (one per RARP
    /// the controller handled).
    pub rarps_flooded_to_pinger: usize,
    /// From the first RARP sent to the first flooded copy's arrival.
    pub rarp_to_flood_ms: Option<f64>,
    /// Flows of the VI the source PM still holds once it has no VM of it.
    pub source_pm_vi_flows: usize,
    /// The replies (by sequence number) around the longest gap.
    pub gap_between: Option<(u32, u32)>,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let pms = h.add_pms(&["pm1", "pm2", "pm3"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    // vm1 pings vm2, which moves from pm2 to pm3; vm3 shares pm1 with vm1,
    // so pm3 has no VM of the VI until the move.
    let vms = h.add_vms(&mut vi, &[pms[0], pms[1], pms[0]])?;
    let (pinger, mover, target) = (vms[0], vms[1], pms[2]);
    h.bring_up(&pms, vec![vi], &vms)?;
    let dst = h.tb.vm(mover).ip().addr();
    for (a, b) in [(pinger, mover), (mover, pinger), (vms[2], mover)] {
        let to = h.tb.vm(b).ip().addr();
        h.wait_reachable(a, to)?;
    }
    let placed: Vec<(VmId, Option<u16>)> = vms.iter().map(|&v| (v, None)).collect();
    h.wait_placed(VI, &placed)?;
    let before = h.controller()?.metrics()?;

    let from_pm = h.tb.pm(h.tb.vm(mover).pm()).name().to_owned();
    let to_pm = h.tb.pm(target).name().to_owned();
    h.note(format!(
        "pinging {dst} every 10 ms; moving it from {from_pm} to {to_pm}"
    ));
    let announcement = {
        let v = h.tb.vm(pinger);
        Capture::start(v.netns(), v.interface())?
    };
    let run = h.ping_run(pinger, PingPlan::new(dst, PINGS, INTERVAL), "during-move")?;
    std::thread::sleep(BEFORE_MOVE);
    let (wall, clock) = (SystemTime::now(), Instant::now());
    let epoch = |t: Instant| {
        wall.duration_since(UNIX_EPOCH)
            .map(|d| (d + t.saturating_duration_since(clock)).as_secs_f64())
            .unwrap_or(0.0)
    };
    let moved_at = Instant::now();
    h.tb.move_vm(mover, target)?;
    let replug = moved_at.elapsed();
    let vm = h.tb.vm(mover);
    let rounds = qemu_announcement(vm.mac());
    let rarp = rounds[0].1.clone();
    let sent = send_frames(vm.netns(), vm.interface(), &rounds)?;
    let trace = run.wait(Duration::from_secs(10))?;
    let after = h.controller()?.metrics()?;
    let flooded: Vec<Instant> = announcement
        .finish()?
        .into_iter()
        .filter(|f| f.data == rarp)
        .map(|f| f.at)
        .collect();

    let moves = after.value("iris_move_latency_seconds_count")
        - before.value("iris_move_latency_seconds_count");
    check(moves == 1.0, || {
        format!("the controller recorded {moves} moves for one migration, not 1")
    })?;
    let latency = after.value("iris_move_latency_seconds_sum")
        - before.value("iris_move_latency_seconds_sum");
    let packet_ins = after.gained(&before, "iris_packet_ins_total", "reason");

    // The registry now places the MAC on the new PM's port.
    let new_port = h.tb.pm(target).ofport(h.tb.vm(mover).port())?;
    let mac = h.tb.vm(mover).mac().to_string();
    let entries = h.registry(VI)?;
    let entry = entries
        .iter()
        .find(|e| e["mac"] == mac.as_str() && e["vlan"].is_null())
        .ok_or_else(|| ScenarioError::Failed(format!("{mac} left the registry")))?;
    check(
        entry["location"]["host"] == to_pm.as_str() && entry["location"]["ofport"] == new_port,
        || format!("after the RARP the registry has {entry}, not {to_pm} port {new_port}"),
    )?;

    // The source PM has no VM of the VI left: its flows for the VI go.
    let source = pms[1];
    let vi_match = format!("metadata={VI:#x}");
    let left_behind = h.wait_for("the source PM to drop the VI's flows", CONVERGE, || {
        let n = h
            .flows(source)?
            .iter()
            .filter(|f| f.flow.match_text.split(',').any(|m| m == vi_match))
            .count();
        Ok(if n == 0 {
            Ok(n)
        } else {
            Err(format!("{n} flows of vi{VI} left"))
        })
    })?;

    // Pings resumed: the run ends answered, and whatever was lost was lost
    // around the move only.
    let lost = trace.lost();
    let last = trace.summary.transmitted;
    check(trace.replies.iter().any(|r| r.seq == last), || {
        format!("pings did not resume after the move: lost {lost:?} of {last}")
    })?;
    let first_after = |t: f64| {
        trace
            .replies
            .iter()
            .map(|r| r.at)
            .filter(|&at| at > t)
            .min_by(f64::total_cmp)
            .map(|at| round3((at - t) * 1e3))
    };
    let first_rarp = sent.first().copied().unwrap_or(moved_at);
    check(!flooded.is_empty(), || {
        format!(
            "the pinging VM never received the announcement; PacketIns during the move: \
             {packet_ins:?}"
        )
    })?;
    Ok(Report {
        from_pm,
        to_pm,
        replug_ms: ms(replug),
        rarps_sent: sent.len(),
        packet_ins,
        rarp_to_last_barrier_ms: round3(latency * 1e3),
        rarp_to_first_reply_ms: first_after(epoch(first_rarp)),
        gap_between: trace.longest_gap_between(),
        rarps_flooded_to_pinger: flooded.len(),
        source_pm_vi_flows: left_behind,
        rarp_to_flood_ms: flooded
            .first()
            .map(|&t| ms(t.saturating_duration_since(first_rarp))),
        ping: PingSummary::from(&trace),
    })
}
