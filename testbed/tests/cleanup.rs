//! Everything a testbed creates is gone once it is dropped: after a normal
//! end, after a panic in the middle of a scenario, and live testbeds survive a
//! stale cleanup. Needs root and Open vSwitch.

#![allow(clippy::unwrap_used)]

mod topology;

use std::os::unix::process::ExitStatusExt;
use std::panic;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use iris_testbed::stale::leftovers;
use iris_testbed::{cleanup_stale, FailMode, Inventory, MacAddr, Node, VmSpec, DEFAULT_STATE_ROOT};
use topology::two_pms;

/// Builds a testbed that uses every kind of resource: an underlay, two PMs
/// (one with a management link into the root namespace), VMs with and without
/// VLAN interfaces, managed processes in a VM and in the root namespace, and a
/// process started behind the testbed's back inside a VM. Returns its
/// inventory, the testbed, and that stray process.
fn busy_testbed(label: &str) -> (Inventory, topology::TwoPms, Child) {
    let mut t = two_pms(label, FailMode::Standalone);
    t.add_managed_pm("pm3", "198.18.200.0/30");
    let vm1 = t.vm("vm1", 1, t.pm1);
    let vlan_vm = VmSpec::new(
        "vm2",
        t.pm2,
        topology::VI,
        MacAddr::local(2),
        topology::vm_ip(2),
    )
    .vlan(10, "10.10.0.2/24".parse().unwrap());
    t.tb.add_vm(vlan_vm).unwrap();
    t.tb.spawn(vm1, "sleeper", &["sleep", "600"]).unwrap();
    t.tb.spawn(Node::Root, "root-side-sleeper", &["sleep", "600"])
        .unwrap();
    let stray =
        t.tb.vm(vm1)
            .netns()
            .command("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    // `ip netns exec` enters the namespace before it becomes `sleep`.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !t.tb.vm(vm1).netns().pids().unwrap().contains(&stray.id()) {
        assert!(
            Instant::now() < deadline,
            "the stray process never entered the VM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut inventory = t.tb.inventory();
    inventory.pids.push(stray.id());
    // Meaningful only if there was something to remove.
    assert_eq!(inventory.namespaces.len(), 6, "{inventory:?}");
    assert_eq!(inventory.pids.len(), 3 * 2 + 3, "{inventory:?}");
    assert_eq!(inventory.root_links.len(), 1, "{inventory:?}");
    assert_eq!(leftovers(&inventory).unwrap().len(), 6 + 9 + 1 + 1);
    (inventory, t, stray)
}

/// Nothing of the testbed is left, and the stray process was killed.
fn assert_all_gone(inventory: &Inventory, mut stray: Child) {
    assert_eq!(leftovers(inventory).unwrap(), Vec::<String>::new());
    let status = stray.wait().unwrap();
    assert!(status.signal().is_some(), "{status}");
}

#[test]
fn dropping_the_testbed_removes_everything() {
    let (inventory, t, stray) = busy_testbed("cleanup-drop");
    drop(t);
    assert_all_gone(&inventory, stray);
}

#[test]
fn a_panic_in_the_scenario_still_removes_everything() {
    let mut seen = None;
    let outcome = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        let (inventory, _t, stray) = busy_testbed("cleanup-panic");
        seen = Some((inventory, stray));
        panic!("the scenario failed on purpose");
    }));
    assert!(outcome.is_err());
    let (inventory, stray) = seen.unwrap();
    assert_all_gone(&inventory, stray);
    // The daemons' logs were kept for the post-mortem.
    let logs = std::env::temp_dir().join(format!("iris-testbed-{}-logs", inventory.prefix));
    assert!(
        logs.join("pm1").join("ovs-vswitchd.log").is_file(),
        "{}",
        logs.display()
    );
    std::fs::remove_dir_all(logs).unwrap();
}

#[test]
fn explicit_teardown_reports_success_and_leaves_nothing() {
    let (inventory, t, stray) = busy_testbed("cleanup-teardown");
    t.tb.teardown().unwrap();
    assert_all_gone(&inventory, stray);
}

#[test]
fn stale_cleanup_leaves_live_testbeds_alone() {
    let t = two_pms("cleanup-live", FailMode::Standalone);
    let inventory = t.tb.inventory();
    let report = cleanup_stale(std::path::Path::new(DEFAULT_STATE_ROOT)).unwrap();
    assert!(
        report
            .live
            .iter()
            .any(|(prefix, _)| *prefix == inventory.prefix),
        "{report}"
    );
    assert!(!report.removed.contains(&inventory.prefix), "{report}");
    let namespaces = iris_testbed::list_netns().unwrap();
    for ns in &inventory.namespaces {
        assert!(namespaces.contains(ns), "{ns} was removed");
    }
    let pm = t.tb.pm(t.pm1);
    assert!(pm.vsctl(&["br-exists", "br-int"]).is_ok());
}

#[test]
fn removed_nodes_take_their_resources_with_them() {
    let mut t = two_pms("cleanup-churn", FailMode::Standalone);
    let vm = t.vm("vm1", 1, t.pm2);
    let (vm_ns, port) = {
        let vm = t.tb.vm(vm);
        (vm.netns().name().to_owned(), vm.port().to_owned())
    };
    let pm2 = t.tb.pm(t.pm2);
    let (pm_ns, pm_pids, pm_addr) = (
        pm2.netns().name().to_owned(),
        pm2.ovs().pids(),
        pm2.underlay_addr(),
    );

    let busy = t.tb.remove_pm(t.pm2).unwrap_err();
    assert!(matches!(busy, iris_testbed::Error::Usage(_)), "{busy}");

    t.tb.remove_vm(vm).unwrap();
    assert!(!iris_testbed::list_netns().unwrap().contains(&vm_ns));
    let ports = t.tb.pm(t.pm2).vsctl(&["list-ports", "br-int"]).unwrap();
    assert!(!ports.lines().any(|p| p == port), "{ports}");

    t.tb.remove_pm(t.pm2).unwrap();
    assert!(!iris_testbed::list_netns().unwrap().contains(&pm_ns));
    for pid in pm_pids {
        // The daemons were the testbed's children and have been reaped.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid}"
        );
    }
    // The name and the underlay address are free again.
    let dc = t.tb.pm(t.pm1).underlay();
    let again = t.tb.add_pm(iris_testbed::PmSpec::new("pm2", dc)).unwrap();
    assert_eq!(t.tb.pm(again).underlay_addr(), pm_addr);
    assert_eq!(t.tb.pms().count(), 2);
}

#[test]
fn a_node_that_fails_to_build_leaves_nothing_and_frees_its_name() {
    let mut t = two_pms("cleanup-failed-node", FailMode::Standalone);
    // The kernel refuses a multicast MAC on an interface, halfway through
    // building the VM.
    let multicast = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    let spec = VmSpec::new("vm1", t.pm1, topology::VI, multicast, topology::vm_ip(1));
    let err = t.tb.add_vm(spec).unwrap_err();
    assert!(matches!(err, iris_testbed::Error::Command { .. }), "{err}");
    let prefix = t.tb.prefix().to_string();
    let namespaces = iris_testbed::list_netns().unwrap();
    assert!(!namespaces
        .iter()
        .any(|ns| ns.starts_with(&format!("{prefix}-vm1"))));
    let ports = t.tb.pm(t.pm1).vsctl(&["list-ports", "br-int"]).unwrap();
    assert_eq!(ports.trim(), "", "{ports}");
    assert_eq!(t.tb.vms().count(), 0);
    t.vm("vm1", 1, t.pm1);
    assert_eq!(t.tb.vms().count(), 1);
}
