//! With a real ovs-vswitchd (userspace datapath, in its own network
//! namespace): the ofports it assigns reach the controller through the monitor.

// Test helpers may unwrap: a panic there is the test failing, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{OvsdbServer, Vswitchd};
use ovsdb::vswitch::{DatapathType, InterfaceInfo, InterfaceWatch, Ofport, VmPortKind};
use ovsdb::{BridgeSpec, InterfaceEvent, TunnelSpec, VmPortSpec, Vswitch};

/// Follows the watch until every interface in `names` has an OpenFlow port
/// number; returns them in the same order.
async fn ofports(watch: &mut InterfaceWatch, names: &[&str], log: impl Fn() -> String) -> Vec<u32> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while !names.iter().all(|n| seen.contains_key(*n)) {
            let info: InterfaceInfo = match watch.next().await.expect("session alive") {
                InterfaceEvent::Added(i) | InterfaceEvent::Changed { new: i, .. } => i,
                InterfaceEvent::Removed(_) => continue,
            };
            match info.ofport {
                Ofport::Assigned(n) => {
                    seen.insert(info.name, n);
                }
                Ofport::Failed => {
                    panic!("ovs-vswitchd could not add {}: {:?}", info.name, info.error)
                }
                Ofport::Pending => {}
            }
        }
    })
    .await;
    if found.is_err() {
        panic!(
            "ofports so far {seen:?}, wanted {names:?}; ovs-vswitchd log:\n{}",
            log()
        );
    }
    names.iter().map(|n| seen[*n]).collect()
}

#[tokio::test]
async fn ofports_assigned_by_vswitchd_arrive_through_the_monitor() {
    let server = OvsdbServer::start();
    let vswitchd = Vswitchd::start(&server);
    let vs = Vswitch::connect(&server.unix_remote()).await.unwrap();
    let mut watch = vs.watch_interfaces().await.unwrap();

    let bridge = BridgeSpec::new("br-int")
        .datapath_type(DatapathType::Netdev)
        .controller("tcp:127.0.0.1:6653")
        .datapath_id(0x2a);
    vs.ensure_bridge(&bridge).await.unwrap();
    vs.set_tunnels(
        "br-int",
        &[TunnelSpec::gre("gre-a", "192.0.2.1".parse().unwrap())],
    )
    .await
    .unwrap();
    let mut vm = VmPortSpec::new("vm1", "42");
    vm.kind = VmPortKind::Internal;
    vs.ensure_vm_port("br-int", &vm).await.unwrap();

    let found = ofports(&mut watch, &["gre-a", "vm1"], || vswitchd.log()).await;
    let (gre, vm1) = (found[0], found[1]);
    assert_eq!(server.vsctl("get Interface gre-a ofport"), gre.to_string());
    assert_eq!(server.vsctl("get Interface vm1 ofport"), vm1.to_string());
    assert_ne!(gre, vm1);

    // The snapshot agrees with the stream, and knows the VM port's VI.
    let by_name = |name: &str| {
        vs.interfaces()
            .into_iter()
            .find(|i| i.name == name)
            .unwrap()
    };
    assert_eq!(by_name("gre-a").ofport, Ofport::Assigned(gre));
    assert_eq!(by_name("vm1").vi(), Some("42"));
    // The bridge's local port is OFPP_LOCAL.
    assert_eq!(by_name("br-int").ofport, Ofport::Assigned(65534));
    // ovs-vswitchd took the datapath id from other_config.
    assert_eq!(
        server.vsctl("get Bridge br-int datapath_id"),
        "\"000000000000002a\""
    );
}
