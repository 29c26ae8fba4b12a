//! The inter-cloud half of the testbed: an IaaS DC built as CloudStack's
//! KVM agent builds one (a DC LAN carrying 802.1Q, compute nodes with a
//! Linux bridge per guest VLAN), its gateway node, the HaaS DC's gateway
//! node (a PM with a WAN uplink) and the WAN between them. Needs root and
//! Open vSwitch; fails, never skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use iris_testbed::flow_dump::parse_dump_stats;
use iris_testbed::stale::leftovers;
use iris_testbed::wan::{Backend, Impairment, WanSpec};
use iris_testbed::{
    ComputeId, ComputeSpec, GatewayId, Host, IaasGatewaySpec, Ipv4Cidr, MacAddr, PmId, PmSpec,
    Testbed, UnderlaySpec, VmId, VmSpec, WanId, GATEWAY_BRIDGE, INTEGRATION_BRIDGE, WAN_BRIDGE,
};

const VLAN: u16 = 100;
const OTHER_VLAN: u16 = 200;
const VI: u32 = 1;
const GRE_KEY: &str = "1001";
const INTERVAL: Duration = Duration::from_millis(100);
const CONVERGE: Duration = Duration::from_secs(10);

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// An IaaS DC with two compute nodes on one LAN.
struct IaasDc {
    tb: Testbed,
    cn1: ComputeId,
    cn2: ComputeId,
    lan: iris_testbed::UnderlayId,
}

fn iaas_dc(label: &str) -> IaasDc {
    let mut tb = Testbed::new(label).unwrap();
    // The LAN's subnet is for nodes' management addresses; guests' frames
    // cross it tagged, in their own subnets.
    let lan = tb
        .add_underlay(UnderlaySpec::new("lan", cidr("192.168.60.0/24")))
        .unwrap();
    let cn1 = tb.add_compute(ComputeSpec::new("cn1", lan)).unwrap();
    let cn2 = tb.add_compute(ComputeSpec::new("cn2", lan)).unwrap();
    IaasDc { tb, cn1, cn2, lan }
}

fn guest(tb: &mut Testbed, name: &str, node: ComputeId, vid: u16, n: u32, addr: &str) -> VmId {
    tb.add_vm(VmSpec::on_compute(
        name,
        node,
        vid,
        VI,
        MacAddr::local(n),
        cidr(addr),
    ))
    .unwrap()
}

/// The MAC `vm`'s neighbour table holds for `addr`, if any.
fn neighbour_mac(tb: &Testbed, vm: VmId, addr: &str) -> Option<String> {
    let out = tb.vm(vm).exec(&["ip", "neigh", "show", addr]).unwrap();
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_owned)
}

#[test]
fn guests_on_one_vlan_reach_each_other_and_other_vlans_stay_apart() {
    let IaasDc {
        mut tb, cn1, cn2, ..
    } = iaas_dc("ic-vlans");
    let vm1 = guest(&mut tb, "vm1", cn1, VLAN, 1, "10.1.0.1/24");
    let vm2 = guest(&mut tb, "vm2", cn2, VLAN, 2, "10.1.0.2/24");
    // The same address as vm1, on another VLAN.
    let vm3 = guest(&mut tb, "vm3", cn2, OTHER_VLAN, 3, "10.1.0.1/24");

    tb.vm(vm1).wait_reachable(ip("10.1.0.2"), CONVERGE).unwrap();
    let report = tb.vm(vm2).ping(ip("10.1.0.1"), 5, INTERVAL).unwrap();
    assert_eq!(report.received, 5, "{report:?}");
    assert_eq!(
        neighbour_mac(&tb, vm2, "10.1.0.1").as_deref(),
        Some(MacAddr::local(1).to_string().as_str()),
        "vm2 must have reached vm1, not vm3 with the same address on VLAN {OTHER_VLAN}"
    );

    let report = tb.vm(vm3).ping(ip("10.1.0.2"), 5, INTERVAL).unwrap();
    assert_eq!(
        report.received, 0,
        "VLAN {OTHER_VLAN} reached VLAN {VLAN}: {report:?}"
    );

    // The node has one sub-interface and bridge per VLAN, as the agent
    // builds them.
    let links = tb.compute(cn2).exec(&["ip", "-o", "link", "show"]).unwrap();
    for name in ["eth0.100", "breth0-100", "eth0.200", "breth0-200"] {
        assert!(
            links.contains(&format!(" {name}:")),
            "{name} missing:\n{links}"
        );
    }
}

#[test]
fn a_guest_moved_between_compute_nodes_answers_again() {
    let IaasDc {
        mut tb, cn1, cn2, ..
    } = iaas_dc("ic-move");
    let vm1 = guest(&mut tb, "vm1", cn1, VLAN, 1, "10.1.0.1/24");
    let vm2 = guest(&mut tb, "vm2", cn2, VLAN, 2, "10.1.0.2/24");
    tb.vm(vm2).wait_reachable(ip("10.1.0.1"), CONVERGE).unwrap();

    // Onto vm2's node: every switch on the way still sends vm1's MAC
    // towards cn1 until the RARP teaches them otherwise.
    tb.move_vm(vm1, cn2).unwrap();
    assert_eq!(tb.vm(vm1).host(), Host::Compute(cn2));
    tb.vm(vm1).announce().unwrap();
    let report = tb.vm(vm2).ping(ip("10.1.0.1"), 5, INTERVAL).unwrap();
    assert_eq!(report.received, 5, "{report:?}");

    tb.move_vm(vm1, cn1).unwrap();
    tb.vm(vm1).announce().unwrap();
    let report = tb.vm(vm2).ping(ip("10.1.0.1"), 5, INTERVAL).unwrap();
    assert_eq!(report.received, 5, "{report:?}");
}

/// Both DCs' gateway nodes with a WAN of `delay` between them.
struct Intercloud {
    dc: IaasDc,
    gw_iaas: GatewayId,
    gw_haas: PmId,
    wan: WanId,
}

const HAAS_WAN: &str = "203.0.113.1";
const IAAS_WAN: &str = "203.0.113.2";

fn intercloud(label: &str, delay: Duration) -> Intercloud {
    let mut dc = iaas_dc(label);
    let tb = &mut dc.tb;
    let haas = tb
        .add_underlay(UnderlaySpec::new("dc", cidr("192.168.50.0/24")))
        .unwrap();
    let gw_haas = tb
        .add_pm(PmSpec::new("gwh", haas).wan_uplink(cidr(&format!("{HAAS_WAN}/24"))))
        .unwrap();
    let gw_iaas = tb
        .add_iaas_gateway(IaasGatewaySpec::new(
            "gwa",
            dc.lan,
            cidr(&format!("{IAAS_WAN}/24")),
        ))
        .unwrap();
    let spec = WanSpec {
        backend: Some(Backend::Relay),
        ..WanSpec::new("wan", Impairment::delay(delay))
    };
    let wan = tb.add_wan(spec.between(gw_haas, gw_iaas)).unwrap();
    Intercloud {
        dc,
        gw_iaas,
        gw_haas,
        wan,
    }
}

#[test]
fn the_gateway_nodes_reach_each_other_through_the_wan_delay() {
    let ic = intercloud("ic-wan", Duration::from_millis(10));
    let tb = &ic.dc.tb;
    let iaas = tb.gateway(ic.gw_iaas);
    assert_eq!(iaas.wan_addr().addr(), ip(IAAS_WAN));
    assert_eq!(tb.pm(ic.gw_haas).wan_addr().unwrap().addr(), ip(HAAS_WAN));
    // The WAN cable is a port of br-wan at both ends.
    let site = &tb.wan(ic.wan).site(1).iface.name;
    assert_eq!(
        iaas.ovs().vsctl(&["port-to-br", site]).unwrap().trim(),
        WAN_BRIDGE
    );

    let report = tb
        .wan(ic.wan)
        .site(1)
        .ping(ip(HAAS_WAN), 10, INTERVAL, Duration::from_secs(2))
        .unwrap();
    assert!(report.received >= 8, "{report:?}");
    let rtt = report.rtt.unwrap();
    assert!(
        rtt.min > Duration::from_millis(15),
        "10 ms each way must show in the RTT: {rtt:?}"
    );
    let report = tb
        .pm(ic.gw_haas)
        .ping_underlay(ip(IAAS_WAN), 3, INTERVAL)
        .unwrap();
    assert!(report.received >= 2, "{report:?}");
    let (to_iaas, to_haas) = tb.wan(ic.wan).relay_stats().unwrap();
    assert!(
        to_iaas.forwarded >= 10 && to_haas.forwarded >= 10,
        "{to_iaas:?} {to_haas:?}"
    );
}

#[test]
fn a_second_iaas_dc_joins_the_haas_gateway_over_a_wan_of_its_own() {
    let Intercloud {
        dc: IaasDc { mut tb, .. },
        gw_haas,
        ..
    } = intercloud("ic-two", Duration::ZERO);
    let lan2 = tb
        .add_underlay(UnderlaySpec::new("lan2", cidr("192.168.61.0/24")))
        .unwrap();
    let gw2 = tb
        .add_iaas_gateway(IaasGatewaySpec::new("gwb", lan2, cidr("203.0.113.3/24")))
        .unwrap();
    let wan2 = WanSpec {
        backend: Some(Backend::Relay),
        ..WanSpec::new("wan2", Impairment::delay(Duration::from_millis(5)))
    };
    let wan2 = tb.add_wan(wan2.between(gw_haas, gw2)).unwrap();
    let ports = tb.pm(gw_haas).vsctl(&["list-ports", WAN_BRIDGE]).unwrap();
    assert_eq!(ports.lines().count(), 2, "one cable per WAN:\n{ports}");
    let haas = tb.pm(gw_haas);
    for peer in [IAAS_WAN, "203.0.113.3"] {
        let report = haas.ping_underlay(ip(peer), 3, INTERVAL).unwrap();
        assert!(report.received >= 2, "{peer}: {report:?}");
    }
    assert!(tb.wan(wan2).relay_stats().unwrap().0.forwarded >= 3);

    // A WAN ends at gateway nodes only.
    let cn = tb.add_compute(ComputeSpec::new("cn9", lan2)).unwrap();
    let wrong = WanSpec::new("wan3", Impairment::default()).between(gw_haas, cn);
    let err = tb.add_wan(wrong).unwrap_err();
    assert!(err.to_string().contains("gateway node"), "{err}");
}

/// The packets counted by the one flow of `dump` whose match contains
/// `needle`.
fn packets(dump: &str, needle: &str) -> u64 {
    let flows = parse_dump_stats(dump);
    let flow = flows
        .iter()
        .find(|f| f.flow.match_text.contains(needle))
        .unwrap_or_else(|| panic!("no flow matching {needle:?} in\n{dump}"));
    flow.n_packets
}

/// The plumbing `iris-gateway` builds on: a GRE port with a fixed key on
/// each gateway bridge and flows between it and the DC side carry an IaaS
/// guest's tagged frames into the HaaS DC and back, without `NORMAL`.
#[test]
fn gre_between_the_gateway_bridges_carries_a_guest_across() {
    let Intercloud {
        dc: IaasDc {
            mut tb, cn1, cn2, ..
        },
        gw_iaas,
        gw_haas,
        ..
    } = intercloud("ic-gre", Duration::ZERO);
    let vm1 = guest(&mut tb, "vm1", cn1, VLAN, 1, "10.1.0.1/24");
    let vm2 = guest(&mut tb, "vm2", cn2, VLAN, 2, "10.1.0.2/24");
    tb.vm(vm1).wait_reachable(ip("10.1.0.2"), CONVERGE).unwrap();

    // vm1 migrates into the HaaS DC: onto the HaaS gateway node's br-int,
    // where its frames are tagged with its VLAN as on the IaaS side.
    tb.move_vm(vm1, gw_haas).unwrap();
    // A HaaS VM of no VLAN has no bridge to join on a compute node: refused
    // before it is unplugged.
    let plain = tb
        .add_vm(VmSpec::new(
            "vm9",
            gw_haas,
            2,
            MacAddr::local(9),
            cidr("10.9.0.1/24"),
        ))
        .unwrap();
    let err = tb.move_vm(plain, cn1).unwrap_err();
    assert!(err.to_string().contains("no VLAN"), "{err}");
    assert_eq!(tb.vm(plain).host(), Host::Pm(gw_haas));
    let port = tb.vm(plain).port().to_owned();
    tb.pm(gw_haas).ofport(&port).unwrap();
    let haas = tb.pm(gw_haas);
    let port = tb.vm(vm1).port().to_owned();
    let vi = haas
        .vsctl(&["get", "Interface", &port, "external_ids:iris-vi"])
        .unwrap();
    assert_eq!(vi.trim().trim_matches('"'), VI.to_string());

    // What the gateways will do through OVSDB and OpenFlow.
    let iaas = tb.gateway(gw_iaas);
    iaas.ovs()
        .vsctl(&[
            "add-br",
            GATEWAY_BRIDGE,
            "--",
            "set",
            "Bridge",
            GATEWAY_BRIDGE,
            "datapath_type=netdev",
            "protocols=OpenFlow13",
            "fail_mode=secure",
            "--",
            "add-port",
            GATEWAY_BRIDGE,
            iaas.trunk(),
        ])
        .unwrap();
    for (bridge, remote, ovs) in [
        (GATEWAY_BRIDGE, HAAS_WAN, iaas.ovs()),
        (INTEGRATION_BRIDGE, IAAS_WAN, haas.ovs()),
    ] {
        let remote = format!("options:remote_ip={remote}");
        let key = format!("options:key={GRE_KEY}");
        ovs.vsctl(&[
            "add-port",
            bridge,
            "gre0",
            "--",
            "set",
            "interface",
            "gre0",
            "type=gre",
            &remote,
            &key,
        ])
        .unwrap();
    }
    assert!(iaas.mgmt_socket(GATEWAY_BRIDGE).exists());
    let trunk = iaas.ovs().ofport(iaas.trunk()).unwrap();
    let gre = iaas.ovs().ofport("gre0").unwrap();
    for flow in [
        format!("in_port={trunk},actions=output:{gre}"),
        format!("in_port={gre},actions=output:{trunk}"),
    ] {
        iaas.ovs()
            .ofctl(&["add-flow", GATEWAY_BRIDGE, &flow])
            .unwrap();
    }
    let vm_port = haas.ofport(&port).unwrap();
    let haas_gre = haas.ofport("gre0").unwrap();
    for flow in [
        format!("in_port={haas_gre},dl_vlan={VLAN},actions=output:{vm_port}"),
        format!("in_port={vm_port},actions=output:{haas_gre}"),
    ] {
        haas.ofctl(&["add-flow", INTEGRATION_BRIDGE, &flow])
            .unwrap();
    }
    // OVS learns a tunnel endpoint's MAC from ARP on br-wan only once it
    // has a tunnel port (docs/testbed.md, finding 6).
    for (gw, peer) in [(iaas.netns(), HAAS_WAN), (haas.netns(), IAAS_WAN)] {
        gw.run(&["ip", "neigh", "flush", "dev", WAN_BRIDGE])
            .unwrap();
        gw.run(&["ping", "-c", "1", "-W", "2", peer]).unwrap();
    }

    // The IaaS LAN learns where vm1 went from its RARP, carried over.
    tb.vm(vm1).announce().unwrap();
    tb.vm(vm2).wait_reachable(ip("10.1.0.1"), CONVERGE).unwrap();
    let report = tb.vm(vm2).ping(ip("10.1.0.1"), 5, INTERVAL).unwrap();
    assert_eq!(report.received, 5, "{report:?}");
    // Flow counters lag the datapath until the revalidators refresh them
    // (docs/testbed.md, finding 2): poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let dump = haas.ofctl(&["dump-flows", INTEGRATION_BRIDGE]).unwrap();
        let arrived = packets(&dump, &format!("in_port={haas_gre}"));
        if arrived >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest's frames must reach the HaaS gateway's WAN port, VLAN {VLAN} intact:\n{dump}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // And home again: the IaaS LAN alone carries it.
    tb.move_vm(vm1, cn1).unwrap();
    tb.vm(vm1).announce().unwrap();
    let report = tb.vm(vm2).ping(ip("10.1.0.1"), 5, INTERVAL).unwrap();
    assert_eq!(report.received, 5, "{report:?}");

    // Teardown takes every node, the cables the WAN put into the gateway
    // nodes, and its relay namespace (which `leftovers` finds by prefix).
    let inventory = tb.inventory();
    assert_eq!(inventory.namespaces.len(), 9, "{inventory:?}");
    tb.teardown().unwrap();
    let left = leftovers(&inventory).unwrap();
    assert!(left.is_empty(), "{left:?}");
}
