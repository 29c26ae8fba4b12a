//! `tenants-intercloud`: two operators, each with its own IaaS data center
//! (its own LAN, compute node and gateway node, its own WAN to the one HaaS
//! gateway node), and each with its own VI across the WAN, with the very
//! same VLAN, IP range and guest MACs. One `iris-gateway` per gateway node:
//! the HaaS one carries both VIs, each to its own peer.
//!
//! ```text
//!                                  ┌═ WAN a ═ gwa ── LAN a ── acn1 (ivm1, operator acme)
//!  pm1 (hvm1, hvmb1) ── GRE ── gwh ┤
//!                                  └═ WAN b ═ gwb ── LAN b ── bcn1 (ivmb1, operator globex)
//! ```
//!
//! Each operator's guests carry a marker (their echo payload pattern, and
//! the addresses nobody has that they ARP for), so a captured frame says
//! whose it is. Captured for the whole run: every guest's interface, each
//! IaaS gateway's trunk into its DC LAN and each IaaS gateway's WAN cable.
//! The promise: each operator's IaaS guest and HaaS guest reach each other,
//! losing nothing; every interface sees frames of its own operator and none
//! of the other; an ARP flood of either side reaches the same operator's
//! guest on the other side of the WAN; every GRE packet on an operator's
//! WAN carries that operator's key; and the controller's registry holds
//! both operators' identical MACs, apart by VI, each where it is.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ofp::packet::{ArpOp, ArpRepr};
use serde::Serialize;
use serde_json::Value;

use super::harness::{check, to_json, Harness, PingSummary, ScenarioError};
use super::intercloud::{self as ic, PeerVi, HAAS_GATEWAY, HAAS_WAN, VLAN};
use crate::controller::ViEntry;
use crate::frames::{contains, gre_payload, Capture};
use crate::ports::free_loopback;
use crate::wan::{Backend, Impairment, WanSpec};
use crate::{ComputeSpec, GatewayId, IaasGatewaySpec, PingPlan, UnderlaySpec, VmId, VmSpec, WanId};

/// The second operator: its VI, GRE key, data center and gateway node.
const VI_B: u32 = 2;
const GRE_KEY_B: u32 = 1002;
const DC_A: &str = "acme";
const DC_B: &str = "globex";
const IAAS_GATEWAY_B: &str = "gwb";
const IAAS_WAN_A: &str = "203.0.113.2/24";
const IAAS_WAN_B: &str = "203.0.113.3/24";
const LAN_B: &str = "192.168.71.0/24";
/// Requests per ping run, 20 ms apart.
const PINGS: u32 = 25;

/// One operator's part of the world.
#[derive(Debug, Clone, Copy)]
struct Operator {
    vi: u32,
    gre_key: u32,
    dc: &'static str,
    gateway: &'static str,
    wan_addr: &'static str,
    gw: GatewayId,
    wan: WanId,
    haas_vm: VmId,
    iaas_vm: VmId,
}

/// The payload pattern of `vi`'s echo requests (16 bytes, ping's limit).
fn pattern(vi: u32) -> Vec<u8> {
    format!("iris-vi{vi}-marker").into_bytes()
}

/// The address `vi`'s guest on one side ARPs for and nobody has: its
/// requests are flooded inside the VI, across the WAN.
fn unknown_ip(vi: u32, haas_side: bool) -> Ipv4Addr {
    let base = if haas_side { 210 } else { 200 };
    Ipv4Addr::new(10, 1, 0, base + vi as u8)
}

/// Which operator's marker `frame` (an Ethernet frame, tagged or not)
/// carries, if any.
fn marker(frame: &[u8]) -> Option<u32> {
    [ic::VI, VI_B].into_iter().find(|&vi| {
        contains(frame, &pattern(vi)) || [true, false].iter().any(|&side| flood_of(frame, vi, side))
    })
}

/// Whether `frame` is an ARP request for `vi`'s unknown address of that
/// side. The ARP payload is looked for after either header length, since
/// a trunk capture may see the 802.1Q tag in the frame or not.
fn flood_of(frame: &[u8], vi: u32, haas_side: bool) -> bool {
    let untagged = ArpRepr::parse_frame(frame).ok();
    let tagged = (frame.get(12..14) == Some(&[0x81, 0x00][..]))
        .then(|| {
            let mut f = frame[..12].to_vec();
            f.extend_from_slice(frame.get(16..)?);
            ArpRepr::parse_frame(&f).ok()
        })
        .flatten();
    untagged
        .or(tagged)
        .is_some_and(|arp| arp.op == ArpOp::Request && arp.tpa == unknown_ip(vi, haas_side))
}

/// What one captured interface saw.
#[derive(Debug, Serialize)]
pub struct Interface {
    pub operator: &'static str,
    pub what: String,
    pub frames: usize,
    pub own: usize,
    pub foreign: usize,
}

/// One operator's WAN cable at its IaaS gateway.
#[derive(Debug, Serialize)]
pub struct WanCable {
    pub operator: &'static str,
    pub gre_packets: usize,
    /// GRE keys seen, with their packet counts.
    pub keys: BTreeMap<u32, usize>,
    /// Inner frames carrying the other operator's marker.
    pub foreign: usize,
}

/// One operator's measurements.
#[derive(Debug, Serialize)]
pub struct OperatorReport {
    pub operator: &'static str,
    pub vi: u32,
    pub gre_key: u32,
    pub pings: BTreeMap<String, PingSummary>,
    /// ARP floods for addresses nobody has: `(sent by, seen on)` counts.
    pub floods: BTreeMap<String, (usize, usize)>,
    /// The registry's entries of the operator's two guests (same MACs in
    /// both VIs).
    pub registry: Vec<Value>,
}

/// What `tenants-intercloud` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub setup_s: f64,
    pub operators: Vec<OperatorReport>,
    pub interfaces: Vec<Interface>,
    pub wan_cables: Vec<WanCable>,
    pub haas_gateway: Value,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// Builds operator `globex`'s IaaS DC (a LAN, a compute node, a gateway
/// node and a WAN to the HaaS gateway) and its two guests, with the very
/// addresses `world`'s first operator uses.
fn add_second_operator(h: &mut Harness, world: &ic::World) -> Result<Operator, ScenarioError> {
    let lan =
        h.tb.add_underlay(UnderlaySpec::new("lanb", LAN_B.parse()?))?;
    let cn = h.tb.add_compute(ComputeSpec::new("bcn1", lan))?;
    let gw = h.tb.add_iaas_gateway(IaasGatewaySpec::new(
        IAAS_GATEWAY_B,
        lan,
        IAAS_WAN_B.parse()?,
    ))?;
    let wan = WanSpec {
        backend: Some(Backend::Relay),
        ..WanSpec::new("wanb", Impairment::default())
    };
    let wan = h.tb.add_wan(wan.between(world.gw_haas, gw))?;
    let (hvm_a, ivm_a) = (h.tb.vm(world.haas_vms[0]), h.tb.vm(world.iaas_vms[0]));
    let (h_mac, h_untagged, h_vlan_ip) = (hvm_a.mac(), hvm_a.ip(), hvm_a.vlans()[0].ip);
    let (i_mac, i_ip) = (ivm_a.mac(), ivm_a.ip());
    let pm = hvm_a.pm();
    // On the same PM as the first operator's HaaS guest: the same MAC twice
    // on one bridge.
    let haas_vm =
        h.add_vm(VmSpec::new("hvmb1", pm, VI_B, h_mac, h_untagged).vlan(VLAN, h_vlan_ip))?;
    let iaas_vm = h.add_vm(VmSpec::on_compute("ivmb1", cn, VLAN, VI_B, i_mac, i_ip))?;
    Ok(Operator {
        vi: VI_B,
        gre_key: GRE_KEY_B,
        dc: DC_B,
        gateway: IAAS_GATEWAY_B,
        wan_addr: IAAS_WAN_B,
        gw,
        wan,
        haas_vm,
        iaas_vm,
    })
}

/// Starts the three gateways: the HaaS one with both operators as peers,
/// each IaaS one with the HaaS one.
fn start_gateways(
    h: &mut Harness,
    world: &ic::World,
    ops: &[Operator; 2],
) -> Result<SocketAddr, ScenarioError> {
    let haas_api = free_loopback()?;
    let apis = [free_loopback()?, free_loopback()?];
    let peers: Vec<PeerVi> = ops
        .iter()
        .zip(apis)
        .map(|(op, api)| PeerVi {
            peer: op.gateway,
            wan: op.wan_addr,
            api,
            vi: op.vi,
            gre_key: op.gre_key,
        })
        .collect();
    let mut gateways = vec![(
        "gateway-haas",
        ic::haas_config(h, world, haas_api, &peers)?,
        haas_api,
    )];
    for ((op, api), peer) in ops.iter().zip(apis).zip(&peers) {
        let to_haas = PeerVi {
            peer: HAAS_GATEWAY,
            wan: HAAS_WAN,
            api: haas_api,
            ..*peer
        };
        let name = if op.vi == ic::VI {
            "gateway-acme"
        } else {
            "gateway-globex"
        };
        let text = ic::iaas_config(h, op.gw, (op.gateway, op.dc, op.wan_addr), api, &to_haas)?;
        gateways.push((name, text, api));
    }
    ic::launch_gateways(h, &gateways, &[ic::VI, VI_B])?;
    Ok(haas_api)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let start = Instant::now();
    let world = ic::build(h, 1, 1, Duration::ZERO)?;
    let a = Operator {
        vi: ic::VI,
        gre_key: ic::GRE_KEY,
        dc: DC_A,
        gateway: ic::IAAS_GATEWAY,
        wan_addr: IAAS_WAN_A,
        gw: world.gw_iaas,
        wan: world.wan,
        haas_vm: world.haas_vms[0],
        iaas_vm: world.iaas_vms[0],
    };
    let b = add_second_operator(h, &world)?;
    let ops = [a, b];

    let mut vis = vec![ic::operator_vi(h, &world)];
    let hvm_b = h.tb.vm(b.haas_vm);
    let mut vi_b = ViEntry::new(VI_B, DC_B, GRE_KEY_B).seed(
        hvm_b.mac(),
        hvm_b.vlans()[0].ip.addr(),
        Some(VLAN),
    );
    vi_b.gateways = vec![HAAS_GATEWAY.to_owned()];
    vis.push(vi_b);
    ic::start_controller_with(h, &world, vis)?;
    let haas_api = start_gateways(h, &world, &ops)?;
    h.wait_classified(&[a.haas_vm, b.haas_vm])?;
    let setup_s = start.elapsed().as_secs_f64();
    h.note(format!("two operators' worlds up in {setup_s:.1} s"));

    // Both operators' guests have the same addresses on both sides.
    let haas_ip = h.tb.vm(a.haas_vm).vlans()[0].ip.addr();
    let iaas_ip = h.tb.vm(a.iaas_vm).ip().addr();
    // A seeded HaaS guest is placed by its first frame (as in
    // `intercloud`): it speaks first.
    for op in &ops {
        h.wait_reachable(op.haas_vm, iaas_ip)?;
        h.wait_reachable(op.iaas_vm, haas_ip)?;
    }

    // Capture everywhere an operator's frame could show up.
    // (operator, what, for a guest whether it is the HaaS one, capture)
    let mut captures: Vec<(u32, String, Option<bool>, Capture)> = Vec::new();
    for op in &ops {
        let hvm = h.tb.vm(op.haas_vm);
        let iface = hvm
            .vlan_interface(VLAN)
            .ok_or_else(|| ScenarioError::Failed(format!("{} has no VLAN {VLAN}", hvm.name())))?;
        captures.push((
            op.vi,
            format!("{} {iface}", hvm.name()),
            Some(true),
            Capture::start(hvm.netns(), iface)?,
        ));
        let ivm = h.tb.vm(op.iaas_vm);
        captures.push((
            op.vi,
            format!("{} {}", ivm.name(), ivm.interface()),
            Some(false),
            Capture::start(ivm.netns(), ivm.interface())?,
        ));
        let gw = h.tb.gateway(op.gw);
        captures.push((
            op.vi,
            format!("{} trunk {}", gw.name(), gw.trunk()),
            None,
            Capture::start(gw.netns(), gw.trunk())?,
        ));
    }
    let mut cables = Vec::new();
    for op in &ops {
        let site = h.tb.wan(op.wan).site(1);
        cables.push((*op, Capture::start(&site.netns, &site.iface.name)?));
    }
    h.note(format!(
        "capturing on {} interfaces and both WAN cables",
        captures.len()
    ));

    // Marked pings both ways, and ARP floods from both sides, of both
    // operators at once.
    let mut runs = Vec::new();
    for op in &ops {
        for (from, dst, side) in [
            (op.iaas_vm, haas_ip, "iaas->haas"),
            (op.haas_vm, iaas_ip, "haas->iaas"),
        ] {
            let label = format!("{}-{side}", op.dc);
            let plan =
                PingPlan::new(dst, PINGS, Duration::from_millis(20)).pattern(&pattern(op.vi));
            runs.push((op.vi, label.clone(), h.ping_run(from, plan, &label)?, true));
        }
        for (from, haas_side) in [(op.iaas_vm, false), (op.haas_vm, true)] {
            let dst = unknown_ip(op.vi, haas_side);
            let label = format!("{}-flood-{dst}", op.dc);
            let plan = PingPlan::new(dst, 3, Duration::from_millis(200)).pattern(&pattern(op.vi));
            runs.push((op.vi, label.clone(), h.ping_run(from, plan, &label)?, false));
        }
    }
    let mut pings: BTreeMap<u32, BTreeMap<String, PingSummary>> = BTreeMap::new();
    for (vi, label, run, answered) in runs {
        let trace = run.wait(Duration::from_secs(15))?;
        if answered {
            check(trace.lost().is_empty(), || {
                format!("{label} lost {:?}", trace.lost())
            })?;
            pings
                .entry(vi)
                .or_default()
                .insert(label, PingSummary::from(&trace));
        } else {
            check(trace.summary.received == 0, || {
                format!("{label} was answered, but nobody has that address")
            })?;
        }
    }
    // The neighbour each guest learned is the MAC its own peer guest has
    // (the same for both operators: which guest answered is told by the
    // captures below).
    for op in &ops {
        let want = h.tb.vm(op.haas_vm).mac();
        let got = h.neighbour(op.iaas_vm, haas_ip)?;
        check(got == Some(want), || {
            format!("{}: {haas_ip} resolved to {got:?}, not {want}", op.dc)
        })?;
    }

    let mut interfaces = Vec::new();
    // (vi, haas_side of the flood) -> frames of it on each guest.
    let mut floods: BTreeMap<(u32, bool), (usize, usize)> = BTreeMap::new();
    for (vi, what, guest, capture) in captures {
        let frames = capture.finish()?;
        let operator = dc_of(vi);
        if let Some(haas_guest) = guest {
            for side in [true, false] {
                let n = frames
                    .iter()
                    .filter(|f| flood_of(&f.data, vi, side))
                    .count();
                let e = floods.entry((vi, side)).or_default();
                if side == haas_guest {
                    e.0 = n;
                } else {
                    e.1 = n;
                }
            }
        }
        let (mut own, mut foreign) = (0, 0);
        for f in &frames {
            match marker(&f.data) {
                Some(m) if m == vi => own += 1,
                Some(_) => foreign += 1,
                None => {}
            }
        }
        interfaces.push(Interface {
            operator,
            what,
            frames: frames.len(),
            own,
            foreign,
        });
    }
    for i in &interfaces {
        check(i.foreign == 0, || {
            format!(
                "{} of {} captured {} frame(s) of the other operator",
                i.what, i.operator, i.foreign
            )
        })?;
        check(i.own > 0, || {
            format!(
                "{} of {} captured no frame of its own operator: the capture saw nothing",
                i.what, i.operator
            )
        })?;
    }
    for (&(vi, haas_side), &(sent, seen)) in &floods {
        let (from, to) = if haas_side {
            ("HaaS", "IaaS")
        } else {
            ("IaaS", "HaaS")
        };
        check(sent > 0 && seen >= sent, || {
            format!(
                "{}: the {from} guest flooded {sent} ARP request(s) for {}, the {to} guest \
                 across the WAN received {seen}",
                dc_of(vi),
                unknown_ip(vi, haas_side)
            )
        })?;
    }

    let mut wan_cables = Vec::new();
    for (op, capture) in cables {
        let frames = capture.finish()?;
        let mut keys: BTreeMap<u32, usize> = BTreeMap::new();
        let (mut gre_packets, mut foreign) = (0, 0);
        for f in &frames {
            let Some(gre) = gre_payload(&f.data) else {
                continue;
            };
            gre_packets += 1;
            *keys.entry(gre.key.unwrap_or(0)).or_default() += 1;
            if marker(gre.payload).is_some_and(|m| m != op.vi) {
                foreign += 1;
            }
        }
        check(
            gre_packets > 0 && keys.keys().all(|&k| k == op.gre_key) && foreign == 0,
            || {
                format!(
                    "{}'s WAN cable: {gre_packets} GRE packets by key {keys:?} (only {} \
                     expected), {foreign} of the other operator",
                    op.dc, op.gre_key
                )
            },
        )?;
        wan_cables.push(WanCable {
            operator: op.dc,
            gre_packets,
            keys,
            foreign,
        });
    }

    // The registry: the same two MACs in both VIs, each operator's where
    // its own guest is.
    let c = h.controller()?;
    let mut registry: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    let mut haas_ports = Vec::new();
    for op in &ops {
        let (hmac, imac) = (h.tb.vm(op.haas_vm).mac(), h.tb.vm(op.iaas_vm).mac());
        let behind = c.get_json(&format!("/v1/registry/{}/{VLAN}/{imac}", op.vi))?;
        check(
            behind["location"]["kind"] == "gateway"
                && behind["location"]["gateway"] == HAAS_GATEWAY,
            || {
                format!(
                    "{}: the IaaS guest {imac} is not behind {HAAS_GATEWAY}: {behind}",
                    op.dc
                )
            },
        )?;
        let on_port = c.get_json(&format!("/v1/registry/{}/{VLAN}/{hmac}", op.vi))?;
        check(on_port["location"]["kind"] == "port", || {
            format!(
                "{}: the HaaS guest {hmac} is not on a port: {on_port}",
                op.dc
            )
        })?;
        haas_ports.push(on_port["location"].clone());
        registry.insert(op.vi, vec![behind, on_port]);
    }
    check(haas_ports[0] != haas_ports[1], || {
        format!(
            "both operators' HaaS guests (one MAC) are placed at the same port: {}",
            haas_ports[0]
        )
    })?;

    // The HaaS gateway's own account: both VIs, a WAN port each.
    let haas_gateway = ic::gateway_status(haas_api)?;
    let carried = haas_gateway["vis"].as_array().map_or(0, Vec::len);
    let wan_ports = haas_gateway["datapath"]["wan_ports"]
        .as_array()
        .map_or(0, Vec::len);
    check(carried == 2 && wan_ports == 2, || {
        format!(
            "the HaaS gateway carries {carried} VI(s) on {wan_ports} WAN port(s), not 2 and 2: \
             {haas_gateway}"
        )
    })?;

    let operators = ops
        .iter()
        .map(|op| OperatorReport {
            operator: op.dc,
            vi: op.vi,
            gre_key: op.gre_key,
            pings: pings.remove(&op.vi).unwrap_or_default(),
            floods: floods
                .iter()
                .filter(|((vi, _), _)| *vi == op.vi)
                .map(|(&(_, haas_side), &n)| {
                    let from = if haas_side {
                        "haas->iaas"
                    } else {
                        "iaas->haas"
                    };
                    (from.to_owned(), n)
                })
                .collect(),
            registry: registry.remove(&op.vi).unwrap_or_default(),
        })
        .collect();
    Ok(Report {
        setup_s: (setup_s * 10.0).round() / 10.0,
        operators,
        interfaces,
        wan_cables,
        haas_gateway,
    })
}

fn dc_of(vi: u32) -> &'static str {
    if vi == ic::VI {
        DC_A
    } else {
        DC_B
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MacAddr;

    fn arp_request(tpa: Ipv4Addr) -> Vec<u8> {
        let mac = ofp::packet::MacAddr(MacAddr::local(0x201).0);
        let mut frame = Vec::new();
        ArpRepr::request(mac, Ipv4Addr::new(10, 1, 0, 1), tpa).emit(&mut frame);
        frame
    }

    #[test]
    fn floods_are_told_apart_by_operator_and_side_tagged_or_not() {
        let arp = arp_request(unknown_ip(VI_B, false));
        assert!(flood_of(&arp, VI_B, false));
        assert!(!flood_of(&arp, VI_B, true));
        assert!(!flood_of(&arp, ic::VI, false));
        assert_eq!(marker(&arp), Some(VI_B));

        let mut tagged = arp[..12].to_vec();
        tagged.extend([0x81, 0x00, 0x00, 100]);
        tagged.extend(&arp[12..]);
        assert!(flood_of(&tagged, VI_B, false));
        assert_eq!(marker(&tagged), Some(VI_B));

        let plain = arp_request(Ipv4Addr::new(10, 1, 0, 11));
        assert_eq!(marker(&plain), None, "ARP between the guests is unmarked");
    }

    #[test]
    fn echo_payloads_say_whose_they_are() {
        let mut echo = vec![0u8; 42];
        echo.extend(pattern(ic::VI));
        assert_eq!(marker(&echo), Some(ic::VI));
    }
}
