//! `bench intercloud`: TCP goodput (iperf3) from a guest of the operator's
//! IaaS DC to a guest on a HaaS L1 node, through both gateways and the WAN
//! relay at 0 ms, against the very same path with Iris's flows replaced by
//! plain L2 switching, in one run on one testbed:
//!
//! - **iris**: the IaaS guest's compute node, the DC LAN, the operator's
//!   gateway bridge on the flows `iris-gateway` installs, GRE over the WAN
//!   relay, the HaaS gateway's `br-int` and the PM's on the controller's
//!   pipeline, GRE over the HaaS underlay, the L1 node;
//! - **plain**: the same nodes, cables, GRE ports and relay, the controller
//!   and both gateways stopped and every one of those three bridges holding
//!   the single flow `actions=NORMAL` (what the issue calls a plain OVS L2
//!   path through the same relay).
//!
//! The rounds alternate iris, plain, iris, ...: after a plain round the
//! controller and the gateways start again and put their flows back (the
//! reconcilers replace the NORMAL flow), so a machine that gets busier
//! during the run weighs on both sides alike.
//!
//! Each path is measured twice in a row: over the WAN relay (what the
//! ratio is taken on, and what every inter-cloud experiment runs over),
//! then with a Linux bridge joining the WAN's two cables in its place
//! (`iris-bridge`, `plain-bridge`): whether the relay is what limits the
//! path. Each relay test reports the relay's counters over it, so frames
//! the relay lost (its socket full, a send refused) show apart from those
//! lost elsewhere.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::goodput::{run_iperf, wait_listening, IPERF_PORT};
use super::iperf::Goodput;
use super::{round3, Conditions};
use crate::scenario::intercloud::{self, World};
use crate::scenario::{Harness, ScenarioError, CONVERGE};
use crate::wan::{Backend, DirectionStats};
use crate::{GATEWAY_BRIDGE, INTEGRATION_BRIDGE};

/// The target: Iris's path at least this share of the plain one.
pub const TARGET_RATIO: f64 = 0.9;

/// One run's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seconds each iperf3 test measures.
    pub seconds: u32,
    /// Seconds at the start of each test left out (slow start).
    pub omit: u32,
    /// Iris rounds; a plain round runs between each two, and one at the
    /// end; each test over the relay is followed by one over a bridge.
    pub rounds: u32,
}

/// One iperf3 test.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub path: &'static str,
    pub iperf: Goodput,
    /// What the relay did over the test (HaaS→IaaS, IaaS→HaaS: the WAN
    /// runs from the HaaS gateway to the IaaS one); none
    /// when a bridge joined the WAN.
    pub relay: Option<(DirectionStats, DirectionStats)>,
}

/// What the bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub seconds: u32,
    pub omit: u32,
    pub rounds: Vec<Round>,
    /// Median of the iris rounds over the median of the plain rounds.
    pub iris_to_plain: Option<f64>,
    /// Median of the iris rounds over the median of the iris rounds with a
    /// bridge in the relay's place.
    pub iris_relay_to_bridge: Option<f64>,
    /// The same for the plain path.
    pub plain_relay_to_bridge: Option<f64>,
    pub target_ratio: f64,
    pub target_met: bool,
    pub conditions: Conditions,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Replaces the flows of the bridges on the path (the operator's
/// gateway's, the HaaS gateway's and the L1 node's PM's `br-int`) with
/// plain L2 switching.
fn flip_to_normal(h: &Harness, world: &World) -> Result<(), ScenarioError> {
    let gw = h.tb.gateway(world.gw_iaas);
    gw.ovs().ofctl(&["del-flows", GATEWAY_BRIDGE])?;
    gw.ovs()
        .ofctl(&["add-flow", GATEWAY_BRIDGE, "actions=NORMAL"])?;
    for &pm in &[world.gw_haas, world.pms[0]] {
        let pm = h.tb.pm(pm);
        pm.ofctl(&["del-flows", INTEGRATION_BRIDGE])?;
        pm.ofctl(&["add-flow", INTEGRATION_BRIDGE, "actions=NORMAL"])?;
    }
    Ok(())
}

/// Stops the controller and both gateways (their flows stay).
fn stop_iris(h: &mut Harness, world: &mut World) -> Result<(), ScenarioError> {
    if let Some(g) = world.gateways.take() {
        for p in [g.haas, g.iaas] {
            h.tb.stop_process(p)?;
        }
    }
    h.stop_controller()
}

/// Starts them again and waits until the flows are Iris's once more.
fn start_iris(h: &mut Harness, world: &mut World) -> Result<(), ScenarioError> {
    h.restart_controller()?;
    let n = world.pms.len() as u64;
    h.wait_ready(n, n)?;
    intercloud::start_gateways(h, world)?;
    h.wait_classified(&world.haas_vms)?;
    Ok(())
}

/// One iperf3 test from the IaaS guest `ivm` to `server_ip` with the WAN
/// joined by `backend`, and the relay's counters over it.
fn wan_round(
    h: &mut Harness,
    world: &World,
    path: &'static str,
    backend: Backend,
    ivm: crate::VmId,
    server_ip: std::net::Ipv4Addr,
    o: Options,
) -> Result<Round, ScenarioError> {
    if h.tb.wan(world.wan).backend() != backend {
        h.tb.wan_mut(world.wan).set_backend(backend)?;
    }
    // The guests' neighbours are known; the first frames find their way.
    h.tb.vm(ivm).wait_reachable(server_ip, CONVERGE)?;
    let before = h.tb.wan(world.wan).relay_stats();
    let iperf = run_iperf(h.tb.vm(ivm).netns(), o.seconds, o.omit, server_ip)?;
    let relay = match (before, h.tb.wan(world.wan).relay_stats()) {
        (Some(b), Some(a)) => Some((a.0.since(&b.0), a.1.since(&b.1))),
        _ => None,
    };
    match &relay {
        Some((back, there)) => h.note(format!(
            "{path}: {iperf}; relay IaaS→HaaS {there:?}, HaaS→IaaS {back:?}"
        )),
        None => h.note(format!("{path}: {iperf}")),
    }
    Ok(Round { path, iperf, relay })
}

pub fn measure(h: &mut Harness, o: Options) -> Result<Report, ScenarioError> {
    let conditions = Conditions::before();
    let mut world = intercloud::build(h, 1, 1, Duration::ZERO)?;
    intercloud::start_controller(h, &world)?;
    intercloud::start_gateways(h, &mut world)?;
    h.wait_classified(&world.haas_vms)?;
    let (hvm, ivm) = (world.haas_vms[0], world.iaas_vms[0]);
    let server_ip = h.tb.vm(hvm).vlans()[0].ip.addr();
    h.tb.vm(hvm)
        .wait_reachable(h.tb.vm(ivm).ip().addr(), CONVERGE)?;
    h.tb.vm(ivm).wait_reachable(server_ip, CONVERGE)?;

    // A run where a full guest frame cannot cross fails here.
    intercloud::full_sized_frames_cross(h, ivm, server_ip)?;

    let ip = server_ip.to_string();
    h.tb.spawn(
        hvm,
        "iperf3",
        &["iperf3", "-s", "-p", IPERF_PORT, "-B", &ip],
    )?;
    wait_listening(h.tb.vm(hvm).netns())?;

    let mut rounds = Vec::new();
    for i in 0..o.rounds.max(1) {
        if i > 0 {
            start_iris(h, &mut world)?;
            h.tb.vm(ivm).wait_reachable(server_ip, CONVERGE)?;
        }
        for (path, backend) in [("iris", Backend::Relay), ("iris-bridge", Backend::Bridge)] {
            rounds.push(wan_round(h, &world, path, backend, ivm, server_ip, o)?);
        }
        stop_iris(h, &mut world)?;
        flip_to_normal(h, &world)?;
        for (path, backend) in [("plain", Backend::Relay), ("plain-bridge", Backend::Bridge)] {
            rounds.push(wan_round(h, &world, path, backend, ivm, server_ip, o)?);
        }
        h.tb.wan_mut(world.wan).set_backend(Backend::Relay)?;
    }
    let of = |path: &str| {
        median(
            rounds
                .iter()
                .filter(|r| r.path == path)
                .map(|r| r.iperf.gbps())
                .collect(),
        )
    };
    let ratio = |a: &str, b: &str| match (of(a), of(b)) {
        (Some(a), Some(b)) if b > 0.0 => Some(round3(a / b)),
        _ => None,
    };
    let iris_to_plain = ratio("iris", "plain");
    Ok(Report {
        benchmark: "intercloud",
        seconds: o.seconds,
        omit: o.omit,
        target_met: iris_to_plain.is_some_and(|r| r >= TARGET_RATIO),
        iris_to_plain,
        iris_relay_to_bridge: ratio("iris", "iris-bridge"),
        plain_relay_to_bridge: ratio("plain", "plain-bridge"),
        target_ratio: TARGET_RATIO,
        rounds,
        conditions: conditions.after(),
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "IaaS guest -> HaaS guest through both gateways and the WAN relay at 0 ms, {} s per test:",
            self.seconds
        )?;
        for r in &self.rounds {
            write!(f, "  {:<12} {}", r.path, r.iperf)?;
            if let Some((back, there)) = &r.relay {
                write!(
                    f,
                    " (relay: {} of {} read not forwarded there, {} back; socket full {}/{}, send failed {}/{})",
                    there.read - there.forwarded,
                    there.read,
                    back.read - back.forwarded,
                    there.socket_full,
                    back.socket_full,
                    there.send_failed,
                    back.send_failed,
                )?;
            }
            writeln!(f)?;
        }
        match self.iris_to_plain {
            Some(r) => writeln!(
                f,
                "iris / plain (medians): {r:.3} (target >= {}: {})",
                self.target_ratio,
                if self.target_met { "met" } else { "missed" }
            )?,
            None => writeln!(f, "iris / plain: no ratio (a side measured nothing)")?,
        }
        for (path, ratio) in [
            ("iris", self.iris_relay_to_bridge),
            ("plain", self.plain_relay_to_bridge),
        ] {
            if let Some(r) = ratio {
                writeln!(f, "{path}: relay / bridge on the WAN (medians): {r:.3}")?;
            }
        }
        Ok(())
    }
}
