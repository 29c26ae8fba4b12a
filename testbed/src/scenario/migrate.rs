//! `migrate`: a VM moves to another PM while another VM pings it every
//! 10 ms, and then moves back. Each time the testbed re-creates its port on
//! the new PM (same namespace, MAC and IP; its processes live on), and the
//! VM then announces itself as a migrated guest does, in QEMU's default
//! announce rounds: the first time as QEMU does for any guest, with a
//! broadcast RARP (ethertype 0x8035, op 3 "request reverse", sender and
//! target MAC its own, both IPs 0.0.0.0); the second time as a guest whose
//! virtio-net device offers the announce feature does, with a GARP (an ARP
//! request for its own IP).
//!
//! The destination PM hosts no VM of the VI before each move, and the
//! source PM none after it: the VI's pipeline appears on one and leaves the
//! other. The announcement is the only thing that may move the MAC (the
//! registry entry is seeded, so no ordinary frame moves it), and its first
//! copy leaves right after the port is plugged, typically before the
//! controller has heard of the port from OVSDB: the controller holds it,
//! moves the MAC, reprograms every switch concerned, confirms by barrier
//! and floods the announcement in the VI, where the pinging VM receives
//! it. Pings resume.
//!
//! Checked for each move: the pings lost that were sent after the first
//! announcement (none may be; when each left is what `ping` wrote into
//! the request, read by a capture on the pinger's interface) and the time from
//! the first announcement to the first ping reply (at most
//! [`MAX_TO_FIRST_REPLY`]); pings sent while the port is unplugged are
//! lost by construction (a paused guest). Measured besides: the
//! controller's RARP-to-last-barrier time (its move-latency histogram gains
//! exactly one sample for the RARP), the longest gap between ping replies,
//! the time to the flooded announcement's arrival, and how fast `ping`
//! really sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ofp::packet::ArpRepr;
use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, round3, to_json, Harness, PingSummary, CONVERGE};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::frames::{send_frames, Capture};
use crate::ping::request_times;
use crate::{PingPlan, PmId, VmId, WallClock};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
/// Ping interval and length of each move's run: the move comes after
/// [`BEFORE_MOVE`].
const INTERVAL: Duration = Duration::from_millis(10);
const PINGS: u32 = 200;
const BEFORE_MOVE: Duration = Duration::from_secs(1);

/// From the first announcement to the first ping reply: the move (a few
/// milliseconds) and the wait for `ping`'s next request (up to 16 ms here,
/// more when the machine is loaded). A move that waited for the second
/// announcement takes 50 ms or more.
pub const MAX_TO_FIRST_REPLY: Duration = Duration::from_millis(40);

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

/// How a migrated guest announces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Announcer {
    /// QEMU, for any guest: RARPs.
    Rarp,
    /// The guest itself, when its virtio-net device offers the announce
    /// feature: GARPs (requests for its own IP), in the same rounds.
    Garp,
}

/// What a guest with `mac` sends once QEMU resumes it after a live
/// migration: its RARP announcement in QEMU's default rounds, each with
/// the pause before it.
pub fn qemu_announcement(mac: crate::MacAddr) -> Vec<(Duration, Vec<u8>)> {
    rounds(&ArpRepr::rarp_announce(ofp::packet::MacAddr(mac.0)))
}

/// What a guest with `mac` and `ip` sends itself after a live migration
/// when its virtio-net device offers the announce feature: a GARP in
/// QEMU's default rounds.
pub fn guest_announcement(mac: crate::MacAddr, ip: std::net::Ipv4Addr) -> Vec<(Duration, Vec<u8>)> {
    rounds(&ArpRepr::gratuitous(ofp::packet::MacAddr(mac.0), ip))
}

fn rounds(frame: &ArpRepr) -> Vec<(Duration, Vec<u8>)> {
    let mut bytes = Vec::new();
    frame.emit(&mut bytes);
    QEMU_ANNOUNCE.iter().map(|&p| (p, bytes.clone())).collect()
}

/// What `migrate` measured: the move announced by RARP, then the move back
/// announced by GARP.
#[derive(Debug, Serialize)]
pub struct Report {
    pub rarp: Move,
    pub garp: Move,
}

/// What one move measured.
#[derive(Debug, Serialize)]
pub struct Move {
    pub announced_by: Announcer,
    pub from_pm: String,
    pub to_pm: String,
    /// The testbed re-plugging the VM (port removed, link and port re-created).
    pub replug_ms: f64,
    pub announcements_sent: usize,
    /// PacketIns by reason during the move: the announcements that reached
    /// the controller (one sent before the new port is classified goes up
    /// from table 0 and is held until OVSDB reports the port).
    pub packet_ins: BTreeMap<String, f64>,
    /// For a RARP: from its PacketIn to the last barrier reply of the
    /// reprogramming it caused (`iris_move_latency_seconds`; GARP moves are
    /// not timed).
    pub rarp_to_last_barrier_ms: Option<f64>,
    /// Pings sent after the first announcement and never answered.
    pub lost_after_announcement: Vec<u32>,
    /// Every ping lost, with when it left relative to the first
    /// announcement (ms, negative before it) as the request itself says,
    /// where the capture on the pinger's interface saw it.
    pub lost_sent_ms: Vec<(u32, Option<f64>)>,
    /// From the first announcement to the first ping reply after it.
    pub announcement_to_first_reply_ms: Option<f64>,
    /// Copies of the announcement the pinging VM received.
    pub flooded_to_pinger: usize,
    /// From the first announcement sent to the first flooded copy's arrival.
    pub announcement_to_flood_ms: Option<f64>,
    /// Flows of the VI the source PM still holds once it has no VM of it.
    pub source_pm_vi_flows: usize,
    /// The replies (by sequence number) around the longest gap.
    pub gap_between: Option<(u32, u32)>,
    /// How far apart `ping` really sent its requests: the median and the
    /// longest step between two answered ones.
    pub ping_pace_ms: Option<(f64, f64)>,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    // As in production: OpenFlow over TLS and OVSDB over SSL, each PM
    // certified by the run's CA and reached over a management link.
    h.use_tls()?;
    let pms = h.add_pms(&["pm1", "pm2", "pm3"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    // vm1 pings vm2, which moves from pm2 to pm3 and back; vm3 shares pm1
    // with vm1, so pm3 has no VM of the VI until the move.
    let vms = h.add_vms(&mut vi, &[pms[0], pms[1], pms[0]])?;
    let (pinger, mover) = (vms[0], vms[1]);
    h.bring_up(&pms, vec![vi], &vms)?;
    h.check_tls(&pms)?;
    for (a, b) in [(pinger, mover), (mover, pinger), (vms[2], mover)] {
        let to = h.tb.vm(b).ip().addr();
        h.wait_reachable(a, to)?;
    }
    let placed: Vec<(VmId, Option<u16>)> = vms.iter().map(|&v| (v, None)).collect();
    h.wait_placed(VI, &placed)?;
    let rarp = move_once(h, pinger, mover, pms[2], Announcer::Rarp)?;
    let garp = move_once(h, pinger, mover, pms[1], Announcer::Garp)?;
    Ok(Report { rarp, garp })
}

/// Moves `mover` to `target` while `pinger` pings it, announced `by`.
fn move_once(
    h: &mut Harness,
    pinger: VmId,
    mover: VmId,
    target: PmId,
    by: Announcer,
) -> Result<Move, ScenarioError> {
    let before = h.controller()?.metrics()?;
    let source = h.tb.vm(mover).pm();
    let dst = h.tb.vm(mover).ip().addr();
    let from_pm = h.tb.pm(source).name().to_owned();
    let to_pm = h.tb.pm(target).name().to_owned();
    h.note(format!(
        "pinging {dst} every 10 ms; moving it from {from_pm} to {to_pm}, announced by {by:?}"
    ));
    let announcement = {
        let v = h.tb.vm(pinger);
        Capture::start(v.netns(), v.interface())?
    };
    let name = format!("during-{by:?}-move").to_lowercase();
    let run = h.ping_run(pinger, PingPlan::new(dst, PINGS, INTERVAL), &name)?;
    std::thread::sleep(BEFORE_MOVE);
    let clock = WallClock::now();
    let moved_at = Instant::now();
    h.tb.move_vm(mover, target)?;
    let replug = moved_at.elapsed();
    let vm = h.tb.vm(mover);
    let rounds = match by {
        Announcer::Rarp => qemu_announcement(vm.mac()),
        Announcer::Garp => guest_announcement(vm.mac(), dst),
    };
    let frame = rounds[0].1.clone();
    let sent = send_frames(vm.netns(), vm.interface(), &rounds)?;
    let trace = run.wait(Duration::from_secs(10))?;
    let after = h.controller()?.metrics()?;
    let captured = announcement.finish()?;
    let flooded: Vec<Instant> = captured
        .iter()
        .filter(|f| f.data == frame)
        .map(|f| f.at)
        .collect();
    // When each request really left: ping's own timestamp in it.
    let requests = request_times(captured.iter().map(|f| f.data.as_slice()))
        .remove(&dst)
        .unwrap_or_default();

    let packet_ins = after.gained(&before, "iris_packet_ins_total", "reason");
    let moves = after.value("iris_move_latency_seconds_count")
        - before.value("iris_move_latency_seconds_count");
    let latency = after.value("iris_move_latency_seconds_sum")
        - before.value("iris_move_latency_seconds_sum");
    if by == Announcer::Rarp {
        check(moves == 1.0, || {
            format!("the controller recorded {moves} moves for one migration, not 1")
        })?;
    }

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
        || format!("after the {by:?} the registry has {entry}, not {to_pm} port {new_port}"),
    )?;

    // The source PM has no VM of the VI left: its flows for the VI go.
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

    // Pings resumed at once after the first announcement: what was lost
    // was lost while the port was unplugged.
    let lost = trace.lost();
    let last = trace.summary.transmitted;
    check(trace.resumed(), || {
        format!("pings did not resume after the move: lost {lost:?} of {last}")
    })?;
    let first = clock.epoch(sent.first().copied().unwrap_or(moved_at));
    let lost_after = trace.lost_since_seen(first, &requests);
    let lost_sent_ms: Vec<(u32, Option<f64>)> = lost
        .iter()
        .map(|s| (*s, requests.get(s).map(|at| round3((at - first) * 1e3))))
        .collect();
    let to_first_reply = trace.first_reply_after(first);
    check(!flooded.is_empty(), || {
        format!(
            "the pinging VM never received the announcement; PacketIns during the move: \
             {packet_ins:?}"
        )
    })?;
    // None may be lost. A request that leaves in the few milliseconds
    // between the announcement and the pinger's switch taking its new flow
    // still goes to the old PM, where the guest's port is gone; that PM
    // sends it to the controller, which sends it on to the guest's new
    // port (`docs/pipeline.md`, "A guest that has just left a host"). One
    // lost means that path failed, or the move waited, for example for the
    // next announcement (50 ms later in QEMU's rounds) because the first
    // was dropped.
    check(lost_after.is_empty(), || {
        format!(
            "pings {lost_after:?} were sent after the first {by:?} and lost (none may be); \
             lost, with ms from the {by:?} as each request says: {lost_sent_ms:?}; PacketIns \
             during the move: {packet_ins:?}"
        )
    })?;
    check(
        to_first_reply.is_some_and(|d| d <= MAX_TO_FIRST_REPLY),
        || {
            format!(
                "the first ping reply came {:?} after the first {by:?} (at most {:?}); \
                 PacketIns during the move: {packet_ins:?}",
                to_first_reply, MAX_TO_FIRST_REPLY
            )
        },
    )?;
    let first_sent = sent.first().copied().unwrap_or(moved_at);
    Ok(Move {
        announced_by: by,
        from_pm,
        to_pm,
        replug_ms: ms(replug),
        announcements_sent: sent.len(),
        packet_ins,
        rarp_to_last_barrier_ms: (by == Announcer::Rarp).then(|| round3(latency * 1e3)),
        lost_after_announcement: lost_after,
        lost_sent_ms,
        announcement_to_first_reply_ms: to_first_reply.map(ms),
        flooded_to_pinger: flooded.len(),
        announcement_to_flood_ms: flooded
            .first()
            .map(|&t| ms(t.saturating_duration_since(first_sent))),
        source_pm_vi_flows: left_behind,
        gap_between: trace.longest_gap_between(),
        ping_pace_ms: trace
            .pace()
            .map(|(median, longest)| (ms(median), ms(longest))),
        ping: PingSummary::from(&trace),
    })
}
