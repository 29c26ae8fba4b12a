//! The OVN peer of `iris-testbed bench migration --peer ovn`, one short
//! round so that its harness cannot rot unseen: OVN's central daemons and
//! one `ovn-controller` per PM come up, the PMs' `br-int`s (fail_mode
//! secure: nothing passes without flows) get Geneve tunnels, a VM on one
//! chassis pings a VM on the other through OVN, and a port put in OVN's
//! live-migration mode is claimed by both chassis and activated on the
//! second by a RARP. Needs root, Open vSwitch
//! and OVN (scripts/install-deps.sh).

#![allow(clippy::unwrap_used)]

mod topology;

use std::time::Duration;

use iris_testbed::ovn::Ovn;
use iris_testbed::{FailMode, VmSpec};
use topology::{two_pms, vm_ip, VI};

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn ovn_chassis_forward_a_ping_and_activate_a_port_on_its_rarp() {
    let mut t = two_pms("ovn-peer", FailMode::Secure);
    let vm1 = t.vm("vm1", 1, t.pm1);
    let vm2 = t.vm("vm2", 2, t.pm2);
    let dst = t.tb.vm(vm2).ip().addr();
    // Without OVN, the secure bridges have no flows: nothing passes.
    let before =
        t.tb.vm(vm1)
            .ping(dst, 1, Duration::from_millis(100))
            .unwrap();
    assert!(
        !before.all_replied(),
        "a ping crossed before OVN: {before:?}"
    );

    let dir = tempfile::Builder::new()
        .prefix("iris-ovn-")
        .tempdir()
        .unwrap();
    let mut ovn = Ovn::start(dir.path()).unwrap();
    let chassis: Vec<String> = [t.pm1, t.pm2]
        .iter()
        .map(|&pm| ovn.add_chassis(t.tb.pm(pm)).unwrap())
        .collect();
    for (from, to) in [(t.pm1, t.pm2), (t.pm2, t.pm1)] {
        let to = t.tb.pm(to).underlay_addr().addr();
        let r =
            t.tb.pm(from)
                .ping_underlay(to, 1, Duration::from_millis(100))
                .unwrap();
        assert!(r.all_replied(), "underlay to {to}: {r:?}");
    }
    ovn.nbctl(&["ls-add", "ls0"]).unwrap();
    for vm in [vm1, vm2] {
        let vm = t.tb.vm(vm);
        let addresses = format!("{} {}", vm.mac(), vm.ip().addr());
        ovn.nbctl(&[
            "lsp-add",
            "ls0",
            vm.name(),
            "--",
            "lsp-set-addresses",
            vm.name(),
            &addresses,
        ])
        .unwrap();
        Ovn::bind(t.tb.pm(vm.pm()), vm.port(), vm.name()).unwrap();
    }
    ovn.wait_bound("vm1", &chassis[0], None, CONVERGE).unwrap();
    ovn.wait_bound("vm2", &chassis[1], None, CONVERGE).unwrap();
    ovn.sync().unwrap();

    let tunnels =
        t.tb.pm(t.pm1)
            .vsctl(&["--bare", "--columns=type", "list", "Interface"])
            .unwrap();
    assert!(
        tunnels.split_whitespace().any(|w| w == "geneve"),
        "no Geneve tunnel on pm1: {tunnels}"
    );
    let took = t.tb.vm(vm1).wait_reachable(dst, CONVERGE).unwrap();
    eprintln!("vm1 reached vm2 through OVN in {took:?}");

    // Live-migration mode: vm2's port requested on pm2 and pm1, pm1's
    // copy (another VM with vm2's MAC, bound to the same logical port, as
    // a destination QEMU's tap is) blocked until its RARP; vm2 stays
    // answered on pm2 meanwhile, and the RARP activates pm1's copy.
    let both = format!("requested-chassis={},{}", chassis[1], chassis[0]);
    ovn.nbctl(&["lsp-set-options", "vm2", &both, "activation-strategy=rarp"])
        .unwrap();
    let twin = t.tb.vm(vm2).mac();
    let copy =
        t.tb.add_vm(VmSpec::new("vm2b", t.pm1, VI, twin, vm_ip(3)))
            .unwrap();
    let copy = t.tb.vm(copy);
    Ovn::bind(t.tb.pm(t.pm1), copy.port(), "vm2").unwrap();
    ovn.wait_bound("vm2", &chassis[1], Some(&chassis[0]), CONVERGE)
        .unwrap();
    ovn.sync().unwrap();
    let during =
        t.tb.vm(vm1)
            .ping(dst, 3, Duration::from_millis(100))
            .unwrap();
    assert!(
        during.all_replied(),
        "vm2 lost in live-migration mode: {during:?}"
    );
    copy.announce().unwrap();
    let by = ovn.wait_activated("vm2", CONVERGE).unwrap();
    assert_eq!(by, chassis[0], "vm2's port activated by {by}");

    ovn.stop().unwrap();
    t.tb.teardown().unwrap();
}
