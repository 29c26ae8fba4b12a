//! `wan-cut`: the WAN between the data centers of the inter-cloud world
//! (`intercloud.rs`) is cut while an IaaS guest and a guest on a HaaS L1
//! node ping each other every 20 ms, then repaired, and nobody helps it
//! recover.
//!
//! Checked: BFD on the WAN tunnel goes down in both gateways' `/v1/status`
//! after the cut and comes up again after the repair; no ping is answered
//! while the WAN is cut; a broadcast an IaaS guest sends on the operator's
//! VLAN during the cut reaches no HaaS guest, while the same broadcast
//! sent after the repair does (so the capture could see one); pings both
//! ways come back within [`RECOVERY`] of the repair; and the registry
//! still places the IaaS guest behind the HaaS gateway. Measured: cut to
//! BFD down and repair to BFD up at each gateway, repair to the first ping
//! reply each way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, Harness, PingSummary, ScenarioError, CONVERGE};
use super::intercloud::{self, gateway_status, World, HAAS_GATEWAY, VI, VLAN};
use crate::frames::{contains, send_frames, Capture};
use crate::{PingPlan, VmId, WallClock};

/// How long the WAN stays cut.
const CUT_FOR: Duration = Duration::from_secs(3);
/// The bound on recovery after the repair, generous for a loaded
/// two-core machine: BFD comes up in about a second.
pub const RECOVERY: Duration = Duration::from_secs(30);
/// Ping pace and the most a run may take.
const INTERVAL: Duration = Duration::from_millis(20);
const PINGS: u32 = 3000;
/// Replies to requests in flight when the WAN was cut may still arrive
/// this long after it (none cross it then; this covers the capture's and
/// ping's own clocks).
const IN_FLIGHT: Duration = Duration::from_millis(100);
/// Marks the broadcast frame that must not leak.
const MARKER: &[u8] = b"iris-wan-cut-broadcast";

/// BFD on one gateway's WAN port.
#[derive(Debug, Serialize)]
pub struct Bfd {
    pub gateway: String,
    pub cut_to_down_ms: f64,
    pub repair_to_up_ms: f64,
}

/// One direction's pings.
#[derive(Debug, Serialize)]
pub struct Pings {
    pub from: String,
    pub to: String,
    pub replies_while_cut: usize,
    pub repair_to_first_reply_ms: Option<f64>,
    pub ping: PingSummary,
}

/// What `wan-cut` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub cut_for_ms: f64,
    pub bfd: Vec<Bfd>,
    pub pings: Vec<Pings>,
    /// Copies of the marked broadcast a HaaS guest received: sent during
    /// the cut (must be 0) and after the repair.
    pub broadcast_during_cut_received: usize,
    pub broadcast_after_repair_received: usize,
    pub iaas_guest_location: Value,
    pub haas_gateway: Value,
    pub iaas_gateway: Value,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    super::harness::to_json(&measure(h)?)
}

/// The BFD states of a gateway's WAN ports.
fn bfd_states(api: SocketAddr) -> Result<Vec<String>, ScenarioError> {
    let status = gateway_status(api)?;
    let ports = status["datapath"]["wan_ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    check(!ports.is_empty(), || {
        format!("{api}/v1/status shows no WAN port: {status}")
    })?;
    Ok(ports
        .iter()
        .map(|p| p["bfd_state"].as_str().unwrap_or("none").to_owned())
        .collect())
}

/// Waits until every WAN port of both gateways is in BFD state `want`;
/// how long each gateway took from `since`.
fn wait_bfd(
    h: &Harness,
    gateways: &[(String, SocketAddr)],
    want: &str,
    since: Instant,
    within: Duration,
) -> Result<Vec<Duration>, ScenarioError> {
    let mut took: Vec<Option<Duration>> = vec![None; gateways.len()];
    h.wait_for(&format!("BFD {want} at both gateways"), within, || {
        let mut seen = Vec::new();
        for ((name, api), t) in gateways.iter().zip(&mut took) {
            let states = bfd_states(*api)?;
            if t.is_none() && states.iter().all(|s| s == want) {
                *t = Some(since.elapsed());
            }
            seen.push(format!("{name}: {states:?}"));
        }
        Ok(if took.iter().all(Option::is_some) {
            Ok(took.iter().flatten().copied().collect())
        } else {
            Err(seen.join(", "))
        })
    })
}

/// A broadcast frame from `vm`'s MAC carrying [`MARKER`] (an ethertype for
/// local experiments, so no stack answers it).
fn marked_broadcast(h: &Harness, vm: VmId) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&h.tb.vm(vm).mac().0);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(MARKER);
    frame.resize(60, 0);
    frame
}

/// Sends the marked broadcast from `from` and counts the copies `to`
/// receives on its interface of the operator's VLAN within a second.
fn broadcast_reaches(h: &Harness, from: VmId, to: VmId) -> Result<usize, ScenarioError> {
    let iface = super::migrate_intercloud::watch_interface(h, to);
    let capture = Capture::start(h.tb.vm(to).netns(), &iface)?;
    let sender = h.tb.vm(from);
    send_frames(
        sender.netns(),
        sender.interface(),
        &[(Duration::ZERO, marked_broadcast(h, from))],
    )?;
    std::thread::sleep(Duration::from_secs(1));
    Ok(capture
        .finish()?
        .iter()
        .filter(|f| contains(&f.data, MARKER))
        .count())
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let mut world = intercloud::build(h, 1, 2, Duration::ZERO)?;
    intercloud::start_controller(h, &world)?;
    intercloud::start_gateways(h, &mut world)?;
    h.wait_classified(&world.haas_vms)?;
    let (hvm, ivm, other) = (world.haas_vms[0], world.iaas_vms[0], world.iaas_vms[1]);
    let hvm_ip = h.tb.vm(hvm).vlans()[0].ip.addr();
    let ivm_ip = h.tb.vm(ivm).ip().addr();
    h.wait_reachable(hvm, ivm_ip)?;
    h.wait_reachable(ivm, hvm_ip)?;
    let gws = gateway_apis(&world)?;
    wait_bfd(h, &gws, "up", Instant::now(), CONVERGE)?;

    let runs = [
        (
            ivm,
            hvm,
            h.ping_run(ivm, PingPlan::new(hvm_ip, PINGS, INTERVAL), "iaas-to-haas")?,
        ),
        (
            hvm,
            ivm,
            h.ping_run(hvm, PingPlan::new(ivm_ip, PINGS, INTERVAL), "haas-to-iaas")?,
        ),
    ];
    std::thread::sleep(Duration::from_secs(1));
    let clock = WallClock::now();
    h.note("cutting the WAN");
    let cut_at = Instant::now();
    h.tb.wan_mut(world.wan).cut()?;
    let down = wait_bfd(h, &gws, "down", cut_at, CONVERGE)?;
    let leaked = broadcast_reaches(h, other, hvm)?;
    std::thread::sleep(CUT_FOR.saturating_sub(cut_at.elapsed()));
    h.note("repairing the WAN");
    let repaired_at = Instant::now();
    h.tb.wan_mut(world.wan).repair()?;
    let up = wait_bfd(h, &gws, "up", repaired_at, RECOVERY)?;
    for (from, to, _) in &runs {
        let dst = super::migrate_intercloud::watch_ip(h, *to);
        let left = RECOVERY.saturating_sub(repaired_at.elapsed());
        h.tb.vm(*from).wait_reachable(dst, left).map_err(|e| {
            ScenarioError::Failed(format!(
                "{} did not reach {dst} within {} s of the repair: {e}",
                h.tb.vm(*from).name(),
                RECOVERY.as_secs()
            ))
        })?;
    }
    // A few replies past the recovery, so the runs' traces show it.
    std::thread::sleep(Duration::from_millis(500));
    let (cut, repaired) = (clock.epoch(cut_at), clock.epoch(repaired_at));
    let mut pings = Vec::new();
    for (from, to, run) in runs {
        let trace = run.interrupt()?;
        let during = trace
            .replies
            .iter()
            .filter(|r| r.at > cut + IN_FLIGHT.as_secs_f64() && r.at < repaired)
            .count();
        let (from, to) = (h.tb.vm(from).name(), h.tb.vm(to).name());
        check(during == 0, || {
            format!("{during} pings from {from} to {to} were answered while the WAN was cut")
        })?;
        let first = trace.first_reply_after(repaired);
        check(first.is_some_and(|d| d <= RECOVERY), || {
            format!(
                "pings from {from} to {to} got no reply within {} s of the repair",
                RECOVERY.as_secs()
            )
        })?;
        pings.push(Pings {
            from: from.to_owned(),
            to: to.to_owned(),
            replies_while_cut: during,
            repair_to_first_reply_ms: first.map(ms),
            ping: PingSummary::from(&trace),
        });
    }
    check(leaked == 0, || {
        format!("{leaked} copies of a broadcast sent in the IaaS DC during the cut reached the HaaS guest")
    })?;
    let delivered = broadcast_reaches(h, other, hvm)?;
    check(delivered > 0, || {
        "the broadcast sent after the repair never reached the HaaS guest: the leak check \
         could not have seen one"
            .to_owned()
    })?;
    let mac = h.tb.vm(ivm).mac();
    let entry = h
        .controller()?
        .get_json(&format!("/v1/registry/{VI}/{VLAN}/{mac}"))?;
    check(
        entry["location"]["kind"] == "gateway" && entry["location"]["gateway"] == HAAS_GATEWAY,
        || format!("after the repair the registry has {entry} for {mac}"),
    )?;
    let bfd = gws
        .iter()
        .zip(down.iter().zip(&up))
        .map(|((name, _), (d, u))| Bfd {
            gateway: name.clone(),
            cut_to_down_ms: ms(*d),
            repair_to_up_ms: ms(*u),
        })
        .collect();
    h.note(format!(
        "recovered: first replies {:?} ms after the repair, BFD up after {:?}",
        pings
            .iter()
            .map(|p| p.repair_to_first_reply_ms)
            .collect::<Vec<_>>(),
        up
    ));
    Ok(Report {
        cut_for_ms: ms(repaired_at - cut_at),
        bfd,
        pings,
        broadcast_during_cut_received: leaked,
        broadcast_after_repair_received: delivered,
        iaas_guest_location: entry["location"].clone(),
        haas_gateway: gateway_status(gws[0].1)?,
        iaas_gateway: gateway_status(gws[1].1)?,
    })
}

/// The gateways' names and API addresses, HaaS first.
fn gateway_apis(world: &World) -> Result<Vec<(String, SocketAddr)>, ScenarioError> {
    let (haas, iaas) = super::migrate_intercloud::gateways(world)?;
    Ok(vec![
        (HAAS_GATEWAY.to_owned(), haas),
        (intercloud::IAAS_GATEWAY.to_owned(), iaas),
    ])
}
