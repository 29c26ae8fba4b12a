//! `vlan`: one VI carrying two VLANs (10 and 20) that reuse one subnet,
//! 10.10.0.0/24, with the very same addresses and MACs on both: the VM
//! interfaces on VLAN 10 and on VLAN 20 are `10.10.0.1` with MAC S1 on pm1
//! and `10.10.0.2` with MAC S2 on pm2. Iris keys its registry and its
//! forwarding by (VI, VLAN, MAC), so both VLANs work at once, each frame
//! reaches only its own VLAN's interface, and the 802.1Q tags cross the
//! wire untouched.
//!
//! Each VLAN's echo traffic carries its own payload marker, untagged
//! traffic between the VMs' main interfaces a third. Captured: every VLAN
//! interface (its own marker only), and each PM's underlay link, where
//! every GRE packet is opened: the key must be the VI's, and the inner
//! frame's 802.1Q tag must be the VLAN its marker names (none for the
//! untagged traffic).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ofp::packet::EthernetFrame;
use serde::Serialize;
use serde_json::Value;

use super::harness::{check, subnet_ip, to_json, vm_ip, Harness, PingSummary};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::frames::{contains, gre_payload, Capture, GRE_ETHERNET};
use crate::{MacAddr, PingPlan, VlanSpec, VmId, VmSpec};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const VLANS: [u16; 2] = [10, 20];
/// Both VLANs' subnet: 10.10.0.0/24.
const SUBNET: u8 = 10;
/// Requests per ping run, 20 ms apart.
const PINGS: u32 = 25;

/// The payload marker of traffic on `vlan` (`None`: untagged).
fn marker(vlan: Option<u16>) -> Vec<u8> {
    match vlan {
        Some(v) => format!("iris-vlan{v}-mark").into_bytes(),
        None => b"iris-untagged-mk".to_vec(),
    }
}

/// Which traffic `frame` belongs to: `Some(vlan)` for a marked frame.
fn marked(frame: &[u8]) -> Option<Option<u16>> {
    [None, Some(VLANS[0]), Some(VLANS[1])]
        .into_iter()
        .find(|&v| contains(frame, &marker(v)))
}

/// The MAC of the VLAN interfaces with host number `n`, the same on both
/// VLANs.
fn shared_mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0x10, n])
}

fn label(vlan: Option<u16>) -> String {
    vlan.map_or_else(|| "untagged".to_owned(), |v| format!("vlan{v}"))
}

#[derive(Debug, Serialize)]
struct VlanInterface {
    vm: String,
    vlan: u16,
    interface: String,
    own: usize,
    /// Marked frames of the other VLAN or of untagged traffic.
    foreign: usize,
}

#[derive(Debug, Default, Serialize)]
struct Underlay {
    /// GRE packets seen on the PMs' underlay links.
    gre_packets: usize,
    gre_keys: Vec<u32>,
    /// Marked inner frames by (marker, tag found): `vlan10 -> vid 10`.
    inner_frames: BTreeMap<String, usize>,
    /// Inner frames whose tag is not the one their marker names.
    mismatched: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    pings: BTreeMap<String, PingSummary>,
    vlan_interfaces: Vec<VlanInterface>,
    underlay: Underlay,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    // As in production: OpenFlow over TLS and OVSDB over SSL, each PM
    // certified by the run's CA and reached over a management link.
    h.use_tls()?;
    let pms = [h.add_pm("pm1")?, h.add_pm("pm2")?];
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    // (VM, its VLAN, host number on 10.10.0.0/24)
    let mut vms: Vec<(VmId, u16, u8)> = Vec::new();
    let mut n = 0u8;
    for vlan in VLANS {
        for (host, &pm) in (1u8..).zip(&pms) {
            n += 1;
            let main = vm_ip(n)?;
            let ip = subnet_ip(SUBNET, host)?;
            let mac = MacAddr::local(n.into());
            let mut spec = VmSpec::new(&format!("v{n}"), pm, VI, mac, main);
            spec.vlans.push(VlanSpec {
                vid: vlan,
                ip,
                mac: Some(shared_mac(host)),
            });
            vms.push((h.add_vm(spec)?, vlan, host));
            vi = vi
                .seed(mac, main.addr(), None)
                .seed(shared_mac(host), ip.addr(), Some(vlan));
        }
    }
    let config = h.config(&pms, vec![vi])?;
    h.start_controller(&config)?;
    h.wait_ready(2, 2)?;
    h.wait_full_mesh(&pms)?;
    h.check_tls(&pms)?;
    let ids: Vec<VmId> = vms.iter().map(|v| v.0).collect();
    h.wait_classified(&ids)?;

    let mut underlay_captures = Vec::new();
    for &pm in &pms {
        let pm = h.tb.pm(pm);
        underlay_captures.push(Capture::start(pm.netns(), pm.underlay_interface())?);
    }
    let mut vlan_captures = Vec::new();
    for &(vm, vlan, _) in &vms {
        let v = h.tb.vm(vm);
        let interface = v
            .vlan_interface(vlan)
            .ok_or_else(|| ScenarioError::Failed(format!("{} has no VLAN {vlan}", v.name())))?;
        vlan_captures.push((vm, vlan, Capture::start(v.netns(), interface)?));
    }
    h.note("capturing on both underlay links and every VLAN interface");

    // Both VLANs' pairs, both ways, plus untagged traffic between the
    // first VMs' main interfaces: (from, to, VLAN).
    let mut flows: Vec<(VmId, Ipv4Addr, Option<u16>)> = Vec::new();
    for vlan in VLANS {
        let of_vlan: Vec<&(VmId, u16, u8)> = vms.iter().filter(|v| v.1 == vlan).collect();
        for (from, to) in [(of_vlan[0], of_vlan[1]), (of_vlan[1], of_vlan[0])] {
            flows.push((from.0, subnet_ip(SUBNET, to.2)?.addr(), Some(vlan)));
        }
    }
    flows.push((vms[0].0, h.tb.vm(vms[1].0).ip().addr(), None));
    for &(from, dst, _) in &flows {
        h.wait_reachable(from, dst)?;
    }
    h.note("both VLANs reachable on the same addresses; marked traffic on both at once");
    let mut runs = Vec::new();
    for &(from, dst, vlan) in &flows {
        let name = format!("{}-{}-{dst}", h.tb.vm(from).name(), label(vlan));
        let plan = PingPlan::new(dst, PINGS, Duration::from_millis(20)).pattern(&marker(vlan));
        runs.push((name.clone(), h.ping_run(from, plan, &name)?));
    }
    let mut pings = BTreeMap::new();
    for (name, run) in runs {
        let trace = run.wait(Duration::from_secs(10))?;
        check(trace.lost().is_empty(), || {
            format!("{name} lost {:?}", trace.lost())
        })?;
        pings.insert(name, PingSummary::from(&trace));
    }

    let mut vlan_interfaces = Vec::new();
    for (vm, vlan, capture) in vlan_captures {
        let interface = capture.interface().to_owned();
        let (mut own, mut foreign) = (0, 0);
        for f in capture.finish()? {
            match marked(&f.data) {
                Some(Some(v)) if v == vlan => own += 1,
                Some(_) => foreign += 1,
                None => {}
            }
        }
        let vm = h.tb.vm(vm).name().to_owned();
        check(foreign == 0, || {
            format!("{interface} ({vm}, VLAN {vlan}) captured {foreign} frame(s) of other traffic")
        })?;
        check(own > 0, || {
            format!("{interface} ({vm}, VLAN {vlan}) captured none of its VLAN's frames")
        })?;
        vlan_interfaces.push(VlanInterface {
            vm,
            vlan,
            interface,
            own,
            foreign,
        });
    }

    let mut underlay = Underlay::default();
    for capture in underlay_captures {
        for f in capture.finish()? {
            let Some(gre) = gre_payload(&f.data) else {
                continue;
            };
            underlay.gre_packets += 1;
            if let Some(key) = gre.key {
                if !underlay.gre_keys.contains(&key) {
                    underlay.gre_keys.push(key);
                }
            }
            if gre.protocol != GRE_ETHERNET {
                continue;
            }
            let Some(vlan) = marked(gre.payload) else {
                continue;
            };
            let tag = EthernetFrame::new_checked(gre.payload)
                .ok()
                .and_then(|e| e.vlan());
            let found = tag.map_or_else(|| "untagged".to_owned(), |t| format!("vid {t}"));
            *underlay
                .inner_frames
                .entry(format!("{} -> {found}", label(vlan)))
                .or_default() += 1;
            if tag != vlan {
                underlay.mismatched += 1;
            }
        }
    }
    underlay.gre_keys.sort_unstable();
    check(underlay.gre_keys == [GRE_KEY], || {
        format!(
            "GRE keys on the underlay were {:?}, not only the VI's {GRE_KEY}",
            underlay.gre_keys
        )
    })?;
    check(underlay.mismatched == 0, || {
        format!(
            "{} frame(s) crossed the underlay with the wrong tag: {:?}",
            underlay.mismatched, underlay.inner_frames
        )
    })?;
    for vlan in [None, Some(VLANS[0]), Some(VLANS[1])] {
        let found = vlan.map_or_else(|| "untagged".to_owned(), |t| format!("vid {t}"));
        let key = format!("{} -> {found}", label(vlan));
        check(
            underlay.inner_frames.get(&key).is_some_and(|&n| n > 0),
            || {
                format!(
                    "no {} frame crossed the underlay: {:?}",
                    label(vlan),
                    underlay.inner_frames
                )
            },
        )?;
    }
    to_json(&Report {
        pings,
        vlan_interfaces,
        underlay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_traffic_has_its_own_marker() {
        for vlan in [None, Some(10), Some(20)] {
            let mut frame = vec![0u8; 50];
            frame.extend(marker(vlan));
            assert_eq!(marked(&frame), Some(vlan), "{}", label(vlan));
            assert_eq!(
                marker(vlan).len(),
                16,
                "ping takes at most 16 pattern bytes"
            );
        }
        assert_eq!(marked(b"no marker here"), None);
    }
}
