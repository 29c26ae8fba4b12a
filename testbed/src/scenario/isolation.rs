//! `isolation`: two VIs (two operators) with the very same addresses: the
//! same MACs, the same IPs, the same VLAN (10) and subnets, and a VM of
//! each on both PMs, so the same MAC sits twice on one bridge and both VIs
//! share the tunnels. Both VIs work, and no frame of one ever reaches an
//! interface of the other.
//!
//! Every interface of every VM is captured for the whole run. Each VI's
//! traffic carries its own marker, so a captured frame says which VI sent
//! it: echo requests and replies carry the VI's payload pattern, and each VI
//! also floods (ARP for an address nobody has, and unicast to a MAC nobody
//! has, both of which Iris floods inside the VI) with a target address of
//! its own. The promise: on every interface, frames of its own VI and none
//! of the other; and every flood reaches the VI's other member: each ARP
//! request and each unknown-unicast echo request the flooding VM sent is
//! captured on the other VM's interface of that subnet (a controller that
//! dropped floods would otherwise pass).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ofp::packet::{ArpOp, ArpRepr, EtherType, EthernetFrame};
use serde::Serialize;
use serde_json::Value;

use super::harness::{check, subnet_ip, to_json, vm_ip, Harness, PingSummary};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::frames::{contains, Capture};
use crate::{MacAddr, PingPlan, PingRun, VmId, VmSpec};

const VIS: [u32; 2] = [1, 2];
const VLAN: u16 = 10;
/// Requests per ping run, 20 ms apart.
const PINGS: u32 = 25;
/// The MAC no VM has, the same in both VIs; unicast to it is flooded.
const NOBODY: MacAddr = MacAddr([0x02, 0, 0, 0, 0xff, 0x01]);

/// The payload pattern of `vi`'s echo requests (16 bytes, ping's limit).
fn pattern(vi: u32) -> Vec<u8> {
    format!("iris-vi{vi}-marker").into_bytes()
}

/// The address `vi` asks for and nobody has: its ARP requests are flooded.
fn unknown_ip(vi: u32, subnet: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, subnet, 0, 200 + vi as u8)
}

/// The address `vi` maps to [`NOBODY`] by hand: its echo requests are
/// flooded as unknown unicast.
fn unknown_unicast_ip(vi: u32, subnet: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, subnet, 0, 210 + vi as u8)
}

/// Which VI's marker `frame` carries, if any.
fn marker(frame: &[u8]) -> Option<u32> {
    if let Some(&vi) = VIS.iter().find(|&&vi| contains(frame, &pattern(vi))) {
        return Some(vi);
    }
    let arp = ArpRepr::parse_frame(frame).ok()?;
    VIS.iter().copied().find(|&vi| {
        [0, VLAN as u8]
            .iter()
            .any(|&s| arp.tpa == unknown_ip(vi, s) || arp.tpa == unknown_unicast_ip(vi, s))
    })
}

/// What kind of flood a frame is, and toward which address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloodKind {
    /// A broadcast ARP request for an address nobody has.
    Arp,
    /// An echo request to a MAC nobody has.
    UnknownUnicast,
}

/// The flood of `vi` on `subnet` that `frame` is, if it is one: an ARP
/// request for [`unknown_ip`], or an echo request to [`NOBODY`] at
/// [`unknown_unicast_ip`] with the VI's pattern.
fn flood_of(frame: &[u8], vi: u32, subnet: u8) -> Option<FloodKind> {
    if let Ok(arp) = ArpRepr::parse_frame(frame) {
        return (arp.op == ArpOp::Request && arp.tpa == unknown_ip(vi, subnet))
            .then_some(FloodKind::Arp);
    }
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = eth.payload();
    let to_nobody = eth.dst().0 == NOBODY.0
        && eth.ethertype() == EtherType::Ipv4
        && ip.get(16..20) == Some(&unknown_unicast_ip(vi, subnet).octets()[..])
        && contains(frame, &pattern(vi));
    to_nobody.then_some(FloodKind::UnknownUnicast)
}

/// By (VI, subnet, kind of flood): the frames of that flood each VM
/// captured.
type Flooded = BTreeMap<(u32, u8, FloodKind), Vec<(VmId, usize)>>;

/// One flood of a VI: what its first VM sent and what each other member
/// received.
#[derive(Debug, Serialize)]
pub struct Flood {
    pub vi: u32,
    /// `None`: untagged.
    pub vlan: Option<u16>,
    pub kind: FloodKind,
    pub from: String,
    pub sent: usize,
    /// Frames of this flood captured on each other member's interface.
    pub delivered: BTreeMap<String, usize>,
}

/// What one VM interface captured over the whole run.
#[derive(Debug, Serialize)]
pub struct Interface {
    pub vm: String,
    pub vi: u32,
    pub interface: String,
    pub frames: usize,
    pub own: usize,
    pub foreign: usize,
    /// Frames without a marker (plain ARP between the VMs, the first
    /// reachability probes).
    pub unmarked: usize,
}

/// One operator's pings and floods.
#[derive(Debug, Serialize)]
pub struct Vi {
    pub vi: u32,
    pub pings: BTreeMap<String, PingSummary>,
    /// Echo requests to addresses nobody has: flooded, never answered.
    pub flooded_requests: u32,
}

/// What `isolation` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub vis: Vec<Vi>,
    pub interfaces: Vec<Interface>,
    pub foreign_frames: usize,
    pub floods: Vec<Flood>,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    // As in production: OpenFlow over TLS and OVSDB over SSL, each PM
    // certified by the run's CA and reached over a management link.
    h.use_tls()?;
    let pms = [h.add_pm("pm1")?, h.add_pm("pm2")?];
    let mut vis = Vec::new();
    let mut vms: Vec<(VmId, u32)> = Vec::new();
    for vi in VIS {
        let mut entry = ViEntry::new(vi, &format!("operator{vi}"), 1000 + vi);
        for (n, pm) in [(1u8, pms[0]), (2, pms[1])] {
            let mac = MacAddr::local(n.into());
            let ip = vm_ip(n)?;
            let vlan_ip = subnet_ip(VLAN as u8, n)?;
            let name = format!("{}{n}", if vi == 1 { 'a' } else { 'b' });
            let spec = VmSpec::new(&name, pm, vi, mac, ip).vlan(VLAN, vlan_ip);
            vms.push((h.add_vm(spec)?, vi));
            entry = entry
                .seed(mac, ip.addr(), None)
                .seed(mac, vlan_ip.addr(), Some(VLAN));
        }
        vis.push(entry);
    }
    let config = h.config(&pms, vis)?;
    h.start_controller(&config)?;
    h.wait_ready(2, 2)?;
    h.wait_full_mesh(&pms)?;
    h.check_tls(&pms)?;
    let ids: Vec<VmId> = vms.iter().map(|(v, _)| *v).collect();
    h.wait_classified(&ids)?;

    let mut captures = Vec::new();
    for &(vm, vi) in &vms {
        let v = h.tb.vm(vm);
        let vlan_if = v
            .vlan_interface(VLAN)
            .ok_or_else(|| ScenarioError::Failed(format!("{} has no VLAN {VLAN}", v.name())))?;
        for (subnet, interface) in [(0, v.interface()), (VLAN as u8, vlan_if)] {
            captures.push((vm, vi, subnet, Capture::start(v.netns(), interface)?));
        }
    }
    h.note(format!("capturing on {} interfaces", captures.len()));

    // Each VI's pairs, both ways, untagged and on the VLAN: (from, to).
    let mut pairs = Vec::new();
    for vi in VIS {
        let of_vi: Vec<VmId> = vms
            .iter()
            .filter(|(_, v)| *v == vi)
            .map(|(v, _)| *v)
            .collect();
        for (from, to) in [(of_vi[0], of_vi[1]), (of_vi[1], of_vi[0])] {
            let n = host_number(h, to);
            for subnet in [0, VLAN as u8] {
                let dst = Ipv4Addr::new(10, subnet, 0, n);
                h.wait_reachable(from, dst)?;
                pairs.push((vi, from, dst));
            }
        }
        // What the first VM of the VI floods: ARP for an unknown address,
        // and unicast to an unknown MAC, on both subnets.
        for subnet in [0, VLAN as u8] {
            let vm = h.tb.vm(of_vi[0]);
            let iface = if subnet == 0 {
                Some(vm.interface())
            } else {
                vm.vlan_interface(VLAN)
            }
            .ok_or_else(|| ScenarioError::Failed(format!("{} has no VLAN {VLAN}", vm.name())))?
            .to_owned();
            h.tb.vm(of_vi[0]).exec(&[
                "ip",
                "neigh",
                "replace",
                &unknown_unicast_ip(vi, subnet).to_string(),
                "lladdr",
                &NOBODY.to_string(),
                "dev",
                &iface,
            ])?;
        }
    }
    h.note("both VIs reachable; marked traffic in both at once");

    let mut runs: Vec<(u32, String, PingRun, bool)> = Vec::new();
    for &(vi, from, dst) in &pairs {
        let label = format!("{}-{dst}", h.tb.vm(from).name());
        let plan = PingPlan::new(dst, PINGS, Duration::from_millis(20)).pattern(&pattern(vi));
        runs.push((vi, label.clone(), h.ping_run(from, plan, &label)?, true));
    }
    for vi in VIS {
        let first = vms.iter().find(|(_, v)| *v == vi).map(|(v, _)| *v);
        let Some(first) = first else { continue };
        for subnet in [0, VLAN as u8] {
            for dst in [unknown_ip(vi, subnet), unknown_unicast_ip(vi, subnet)] {
                let label = format!("{}-{dst}", h.tb.vm(first).name());
                let plan = PingPlan::new(dst, 3, Duration::from_millis(200)).pattern(&pattern(vi));
                runs.push((vi, label.clone(), h.ping_run(first, plan, &label)?, false));
            }
        }
    }
    let mut reports: BTreeMap<u32, Vi> = VIS
        .iter()
        .map(|&vi| {
            (
                vi,
                Vi {
                    vi,
                    pings: BTreeMap::new(),
                    flooded_requests: 0,
                },
            )
        })
        .collect();
    for (vi, label, run, answered) in runs {
        let trace = run.wait(Duration::from_secs(10))?;
        let Some(report) = reports.get_mut(&vi) else {
            continue;
        };
        if answered {
            check(trace.lost().is_empty(), || {
                format!("vi{vi}: {label} lost {:?}", trace.lost())
            })?;
            report.pings.insert(label, PingSummary::from(&trace));
        } else {
            check(trace.summary.received == 0, || {
                format!("vi{vi}: {label} was answered, but nobody has that address")
            })?;
            report.flooded_requests += trace.summary.transmitted;
        }
    }

    let mut interfaces = Vec::new();
    let mut flooded = Flooded::new();
    for (vm, vi, subnet, capture) in captures {
        let interface = capture.interface().to_owned();
        let frames = capture.finish()?;
        for kind in [FloodKind::Arp, FloodKind::UnknownUnicast] {
            let n = frames
                .iter()
                .filter(|f| flood_of(&f.data, vi, subnet) == Some(kind))
                .count();
            flooded.entry((vi, subnet, kind)).or_default().push((vm, n));
        }
        let (mut own, mut foreign, mut unmarked) = (0, 0, 0);
        for f in &frames {
            match marker(&f.data) {
                Some(m) if m == vi => own += 1,
                Some(_) => foreign += 1,
                None => unmarked += 1,
            }
        }
        interfaces.push(Interface {
            vm: h.tb.vm(vm).name().to_owned(),
            vi,
            interface,
            frames: frames.len(),
            own,
            foreign,
            unmarked,
        });
    }
    let foreign_frames = interfaces.iter().map(|i| i.foreign).sum();
    for i in &interfaces {
        check(i.foreign == 0, || {
            format!(
                "{} ({} of vi{}) captured {} frame(s) of the other VI",
                i.interface, i.vm, i.vi, i.foreign
            )
        })?;
        check(i.own > 0, || {
            format!(
                "{} ({} of vi{}) captured no frame of its own VI: the capture saw nothing",
                i.interface, i.vm, i.vi
            )
        })?;
    }
    let floods = floods_delivered(h, &vms, &flooded)?;
    Ok(Report {
        vis: reports.into_values().collect(),
        interfaces,
        foreign_frames,
        floods,
    })
}

/// Checks that every flood the first VM of each VI sent reached every
/// other VM of that VI; what each sent and each received.
fn floods_delivered(
    h: &Harness,
    vms: &[(VmId, u32)],
    flooded: &Flooded,
) -> Result<Vec<Flood>, ScenarioError> {
    let mut floods = Vec::new();
    for (&(vi, subnet, kind), seen) in flooded {
        let mut members = vms.iter().filter(|(_, v)| *v == vi).map(|(vm, _)| *vm);
        let Some(from) = members.next() else {
            continue;
        };
        let count = |vm: VmId| seen.iter().find(|(v, _)| *v == vm).map_or(0, |(_, n)| *n);
        let sent = count(from);
        let vlan = (subnet != 0).then_some(VLAN);
        let name = |vm: VmId| h.tb.vm(vm).name().to_owned();
        check(sent > 0, || {
            format!(
                "{} (vi{vi}, vlan {vlan:?}) sent no {kind:?} flood: the capture saw nothing",
                name(from)
            )
        })?;
        let mut delivered = BTreeMap::new();
        for to in members {
            let got = count(to);
            check(got >= sent, || {
                format!(
                    "vi{vi} (vlan {vlan:?}): {} flooded {sent} {kind:?} frame(s), but {} of the \
                     same VI received {got}",
                    name(from),
                    name(to)
                )
            })?;
            delivered.insert(name(to), got);
        }
        floods.push(Flood {
            vi,
            vlan,
            kind,
            from: name(from),
            sent,
            delivered,
        });
    }
    Ok(floods)
}

/// The host number of `vm`'s addresses (10.x.0.<n>).
fn host_number(h: &Harness, vm: VmId) -> u8 {
    h.tb.vm(vm).ip().addr().octets()[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_are_told_apart_by_kind_vi_and_subnet() {
        let mac = ofp::packet::MacAddr(MacAddr::local(1).0);
        let mut arp = Vec::new();
        ArpRepr::request(mac, Ipv4Addr::new(10, 0, 0, 1), unknown_ip(2, 0)).emit(&mut arp);
        assert_eq!(flood_of(&arp, 2, 0), Some(FloodKind::Arp));
        assert_eq!(flood_of(&arp, 1, 0), None);
        assert_eq!(flood_of(&arp, 2, VLAN as u8), None);

        // An echo request to NOBODY: Ethernet, then IPv4 with the
        // destination at bytes 16..20, then the VI's pattern.
        let mut echo = NOBODY.0.to_vec();
        echo.extend(MacAddr::local(1).0);
        echo.extend([0x08, 0x00]);
        let mut ip = vec![0u8; 28];
        ip[16..20].copy_from_slice(&unknown_unicast_ip(1, 0).octets());
        echo.extend(ip);
        echo.extend(pattern(1));
        assert_eq!(flood_of(&echo, 1, 0), Some(FloodKind::UnknownUnicast));
        assert_eq!(flood_of(&echo, 1, VLAN as u8), None);
        echo[..6].copy_from_slice(&MacAddr::local(2).0);
        assert_eq!(flood_of(&echo, 1, 0), None, "not to the unknown MAC");
    }

    #[test]
    fn frames_are_told_apart_by_payload_pattern_and_arp_target() {
        let mut echo = vec![0u8; 42];
        echo.extend(pattern(2));
        assert_eq!(marker(&echo), Some(2));

        let mac = ofp::packet::MacAddr(MacAddr::local(1).0);
        let mut arp = Vec::new();
        let asking = ArpRepr::request(mac, Ipv4Addr::new(10, 10, 0, 1), unknown_ip(1, VLAN as u8));
        asking.emit(&mut arp);
        assert_eq!(marker(&arp), Some(1));

        let mut plain = Vec::new();
        ArpRepr::request(mac, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
            .emit(&mut plain);
        assert_eq!(
            marker(&plain),
            None,
            "ARP between the VMs carries no marker"
        );
    }
}
