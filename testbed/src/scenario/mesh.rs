//! `mesh`: three PMs, one VI with a VM on each. The controller builds the
//! GRE full mesh through OVSDB and programs every bridge; each VM reaches
//! every other across a tunnel. Once the VMs' MACs are placed, ARP for a
//! known IP is answered by the datapath's responder flows: the controller
//! receives no PacketIn at all while every VM resolves every peer again
//! (its PacketIn counters by reason do not move) and the responder flows'
//! packet counters grow by at least the number of requests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, to_json, Harness, PingSummary};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::{PingPlan, VmId};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
/// Requests per pair in the reachability check, 10 ms apart.
const PINGS: u32 = 20;

/// One VM pinging another across the mesh.
#[derive(Debug, Serialize)]
pub struct Pair {
    pub from: String,
    pub to: String,
    /// Time to the first reply after the controller programmed the VMs'
    /// ports (the first frames also teach the registry).
    pub first_reply_ms: f64,
    pub ping: PingSummary,
}

/// ARP for known IPs, once the registry placed every MAC.
#[derive(Debug, Serialize)]
pub struct Arp {
    /// Requests answered by the responder flows, from their counters.
    pub answered_in_datapath: u64,
    /// Neighbour entries the VMs resolved, each checked against the peer's MAC.
    pub neighbours_resolved: usize,
    /// PacketIns by reason while they did: none is the promise.
    pub packet_ins: BTreeMap<String, f64>,
}

/// What `mesh` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub controller_ready_ms: f64,
    pub full_mesh_ms: f64,
    pub ports_classified_ms: f64,
    pub tunnels: BTreeMap<String, Vec<String>>,
    pub flows: BTreeMap<String, usize>,
    pub pairs: Vec<Pair>,
    /// Until the registry placed every MAC and the source flows were in.
    pub macs_placed_ms: f64,
    /// PacketIns by reason up to then: the registry learning the MACs.
    pub packet_ins_while_learning: BTreeMap<String, f64>,
    pub arp: Arp,
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
    let vms = h.add_vms(&mut vi, &pms)?;
    let up = h.bring_up(&pms, vec![vi], &vms)?;
    h.check_tls(&pms)?;
    h.note("mesh up, ports classified; pinging every pair");

    let mut pairs = Vec::new();
    for &a in &vms {
        for &b in &vms {
            if a == b {
                continue;
            }
            let (from, to) = (h.tb.vm(a).name().to_owned(), h.tb.vm(b).name().to_owned());
            let dst = h.tb.vm(b).ip().addr();
            let first = h.wait_reachable(a, dst)?;
            let plan = PingPlan::new(dst, PINGS, Duration::from_millis(10));
            let trace = h
                .ping_run(a, plan, &format!("{from}-{to}"))?
                .wait(Duration::from_secs(10))?;
            check(trace.lost().is_empty(), || {
                format!("{from} -> {to} lost {:?} over the mesh", trace.lost())
            })?;
            pairs.push(Pair {
                from,
                to,
                first_reply_ms: ms(first),
                ping: PingSummary::from(&trace),
            });
        }
    }

    let placed: Vec<(VmId, Option<u16>)> = vms.iter().map(|&v| (v, None)).collect();
    let macs_placed = h.wait_placed(VI, &placed)?;
    let before = h.controller()?.metrics()?;
    let learning = before.labelled("iris_packet_ins_total", "reason")?;
    let responded_before = h.responder_packets(&pms)?;
    h.note("MACs placed; every VM resolves every peer again");
    for &vm in &vms {
        h.tb.vm(vm).exec(&["ip", "neigh", "flush", "all"])?;
    }
    let mut resolved = 0;
    for &a in &vms {
        for &b in &vms {
            if a == b {
                continue;
            }
            let dst = h.tb.vm(b).ip().addr();
            let r = h.tb.vm(a).ping(dst, 1, Duration::from_millis(10))?;
            check(r.all_replied(), || {
                format!("{} -> {dst} after the ARP flush: {r:?}", h.tb.vm(a).name())
            })?;
            let seen = h.neighbour(a, dst)?;
            let want = h.tb.vm(b).mac();
            check(seen == Some(want), || {
                format!(
                    "{} resolved {dst} to {seen:?}, not {want}",
                    h.tb.vm(a).name()
                )
            })?;
            resolved += 1;
        }
    }
    // Every VM asked once for each peer (replies need the asker's MAC too,
    // so the answering side asks as well): as many requests as pairs.
    let wanted = resolved as u64;
    let answered = h.wait_for(
        "the responder flows' counters to show every ARP request",
        Duration::from_secs(15),
        || {
            let n = h.responder_packets(&pms)? - responded_before;
            Ok(if n >= wanted {
                Ok(n)
            } else {
                Err(format!("{n} of {wanted} requests counted"))
            })
        },
    )?;
    let after = h.controller()?.metrics()?;
    let packet_ins = after.gained_in(&before, "iris_packet_ins_total", "reason")?;
    check(packet_ins.is_empty(), || {
        format!("known ARP reached the controller: PacketIns gained {packet_ins:?}")
    })?;

    let mut tunnels = BTreeMap::new();
    let mut flows = BTreeMap::new();
    for &pm in &pms {
        let name = h.tb.pm(pm).name().to_owned();
        tunnels.insert(name.clone(), h.tunnels(pm)?);
        flows.insert(name, h.flows(pm)?.len());
    }
    let report = Report {
        controller_ready_ms: ms(up.controller_ready),
        full_mesh_ms: ms(up.full_mesh),
        ports_classified_ms: ms(up.classified),
        tunnels,
        flows,
        pairs,
        macs_placed_ms: ms(macs_placed),
        packet_ins_while_learning: learning,
        arp: Arp {
            answered_in_datapath: answered,
            neighbours_resolved: resolved,
            packet_ins,
        },
    };
    Ok(report)
}
