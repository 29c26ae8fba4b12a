//! Two emulated PMs, each with its own OVS, joined by a GRE tunnel over a veth
//! underlay; VMs on different PMs reach each other through it.
//! Needs root and Open vSwitch.

#![allow(clippy::unwrap_used)]

mod topology;

use std::time::{Duration, Instant};

use iris_testbed::{FailMode, Ipv4Cidr, MacAddr, VmSpec, INTEGRATION_BRIDGE};
use topology::{two_pms, vm_ip, VI};

const CONVERGE: Duration = Duration::from_secs(10);

/// Waits until the flows on `br-int` matching `filter` have counted at least
/// `at_least` packets. The userspace datapath hands counters up to OpenFlow
/// flows periodically, hence the wait.
fn await_flow_packets(pm: &iris_testbed::Pm, filter: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let flows = pm
            .ofctl(&["dump-flows", INTEGRATION_BRIDGE, filter])
            .unwrap();
        let packets: u64 = flows
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter_map(|field| field.strip_prefix("n_packets="))
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        if packets >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{filter} counted {packets} packets:\n{flows}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn vms_on_two_pms_ping_through_a_gre_tunnel_programmed_by_explicit_flows() {
    let mut t = two_pms("gre-explicit-flows", FailMode::Secure);
    let (gre1, gre2) = t.connect_with_gre();
    let vm1 = t.vm("vm1", 1, t.pm1);
    let vm2 = t.vm("vm2", 2, t.pm2);
    let tb = &t.tb;

    // Each PM: frames from its VM go into the tunnel keyed with the VI;
    // frames from the tunnel with that key go to the VM. Nothing else passes
    // (fail_mode=secure and no other flows).
    for (pm, vm, gre) in [(t.pm1, vm1, gre1), (t.pm2, vm2, gre2)] {
        let pm = tb.pm(pm);
        let port = pm.ofport(tb.vm(vm).port()).unwrap();
        pm.ofctl(&["del-flows", INTEGRATION_BRIDGE]).unwrap();
        pm.ofctl(&[
            "add-flow",
            INTEGRATION_BRIDGE,
            &format!("in_port={port},actions=set_field:{VI}->tun_id,output:{gre}"),
        ])
        .unwrap();
        pm.ofctl(&[
            "add-flow",
            INTEGRATION_BRIDGE,
            &format!("in_port={gre},tun_id={VI},actions=output:{port}"),
        ])
        .unwrap();
    }

    let dst = vm_ip(2).addr();
    tb.vm(vm1).wait_reachable(dst, CONVERGE).unwrap();
    let report = tb.vm(vm1).ping(dst, 5, Duration::from_millis(50)).unwrap();
    assert!(report.all_replied(), "{report:?}");
    assert!(report.rtt.is_some());
    // The echo requests arrived at pm2 through the tunnel, keyed with the VI.
    let tunnel_in = format!("in_port={gre2},tun_id={VI}");
    await_flow_packets(tb.pm(t.pm2), &tunnel_in, 5);

    // With pm2 expecting another key, nothing gets through: the flows above,
    // not some fallback, carried the traffic.
    let vm2_port = tb.pm(t.pm2).ofport(tb.vm(vm2).port()).unwrap();
    tb.pm(t.pm2)
        .ofctl(&[
            "del-flows",
            INTEGRATION_BRIDGE,
            &format!("in_port={gre2},tun_id={VI}"),
        ])
        .unwrap();
    tb.pm(t.pm2)
        .ofctl(&[
            "add-flow",
            INTEGRATION_BRIDGE,
            &format!("in_port={gre2},tun_id={},actions=output:{vm2_port}", VI + 1),
        ])
        .unwrap();
    let report = tb.vm(vm1).ping(dst, 3, Duration::from_millis(50)).unwrap();
    assert_eq!(report.received, 0, "{report:?}");
}

#[test]
fn vlan_tags_cross_the_tunnel_and_keep_vlans_apart() {
    let mut t = two_pms("gre-vlans", FailMode::Standalone);
    t.connect_with_gre();
    let cidr = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
    let vm = |name: &str, n: u32, pm, vid, ip: &str| {
        VmSpec::new(name, pm, VI, MacAddr::local(n), vm_ip(n as u8)).vlan(vid, cidr(ip))
    };
    let vm1 =
        t.tb.add_vm(vm("vm1", 1, t.pm1, 10, "10.10.0.1/24"))
            .unwrap();
    t.tb.add_vm(vm("vm2", 2, t.pm2, 10, "10.10.0.2/24"))
        .unwrap();
    // Same subnet as VLAN 10, but on VLAN 20.
    t.tb.add_vm(vm("vm3", 3, t.pm2, 20, "10.10.0.3/24"))
        .unwrap();
    let tb = &t.tb;

    let vm1 = tb.vm(vm1);
    let vlan_if = vm1.vlan_interface(10).unwrap();
    let addrs = vm1
        .exec(&["ip", "-o", "-4", "addr", "show", vlan_if])
        .unwrap();
    assert!(addrs.contains("10.10.0.1/24"), "{addrs}");
    assert!(vm1.vlan_interface(20).is_none());
    // Untagged traffic still flows next to the tagged one.
    vm1.wait_reachable(vm_ip(2).addr(), CONVERGE).unwrap();
    vm1.wait_reachable(cidr("10.10.0.2/24").addr(), CONVERGE)
        .unwrap();
    let report = vm1
        .ping(cidr("10.10.0.2/24").addr(), 3, Duration::from_millis(50))
        .unwrap();
    assert!(report.all_replied(), "{report:?}");
    let report = vm1
        .ping(cidr("10.10.0.3/24").addr(), 3, Duration::from_millis(50))
        .unwrap();
    assert_eq!(report.received, 0, "VLAN 10 reached VLAN 20: {report:?}");
    // The VLAN 10 frames crossed br-int tagged: pm2's datapath saw them.
    let datapath = tb
        .pm(t.pm2)
        .appctl(&["dpif/dump-flows", INTEGRATION_BRIDGE])
        .unwrap();
    assert!(datapath.contains("vid=10"), "{datapath}");
}

#[test]
fn a_moved_vm_keeps_its_addresses_and_processes() {
    let mut t = two_pms("gre-move", FailMode::Standalone);
    t.connect_with_gre();
    let vm1 = t.vm("vm1", 1, t.pm1);
    let vm2 = t.vm("vm2", 2, t.pm2);
    let sleeper = t.tb.spawn(vm2, "sleeper", &["sleep", "600"]).unwrap();
    t.tb.vm(vm1)
        .wait_reachable(vm_ip(2).addr(), CONVERGE)
        .unwrap();

    t.tb.move_vm(vm2, t.pm1).unwrap();
    let tb = &t.tb;
    let port = tb.vm(vm2).port().to_owned();
    assert_eq!(tb.vm(vm2).pm(), t.pm1);
    let ports = |pm| {
        tb.pm(pm)
            .vsctl(&["list-ports", INTEGRATION_BRIDGE])
            .unwrap()
    };
    assert!(ports(t.pm1).lines().any(|p| p == port), "{}", ports(t.pm1));
    assert!(!ports(t.pm2).lines().any(|p| p == port), "{}", ports(t.pm2));
    let link = tb
        .vm(vm2)
        .exec(&["ip", "-o", "link", "show", tb.vm(vm2).interface()])
        .unwrap();
    assert!(link.contains(&tb.vm(vm2).mac().to_string()), "{link}");

    // The moved VM speaks first, as a migrated guest announces itself, so the
    // learning bridges relearn where its MAC lives.
    tb.vm(vm2)
        .wait_reachable(vm_ip(1).addr(), CONVERGE)
        .unwrap();
    let report = tb
        .vm(vm1)
        .ping(vm_ip(2).addr(), 3, Duration::from_millis(50))
        .unwrap();
    assert!(report.all_replied(), "{report:?}");
    assert!(
        t.tb.process(sleeper).try_exit_status().unwrap().is_none(),
        "the VM's process died in the move"
    );
}
