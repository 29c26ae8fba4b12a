//! Desired-state management against a real ovsdb-server, checked with ovs-vsctl.

// Test helpers may unwrap: a panic there is the test failing, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{eventually, OvsdbServer};
use ovsdb::vswitch::{
    Bfd, DatapathType, FailMode, InterfaceInfo, InterfaceWatch, PlanError, VmPortKind, WanPortSpec,
};
use ovsdb::{BridgeSpec, Error, InterfaceEvent, Outcome, TunnelSpec, VmPortSpec, Vswitch};

const WAIT: Duration = Duration::from_secs(10);

fn spec() -> BridgeSpec {
    BridgeSpec::new("br-int")
        .datapath_type(DatapathType::Netdev)
        .controller("tcp:127.0.0.1:6653")
        .datapath_id(0x2a)
}

fn gre(name: &str, ip: &str) -> TunnelSpec {
    TunnelSpec::gre(name, ip.parse().unwrap())
}

async fn with_bridge(server: &OvsdbServer) -> Vswitch {
    let vs = Vswitch::connect(&server.unix_remote()).await.unwrap();
    assert!(matches!(
        vs.ensure_bridge(&spec()).await.unwrap(),
        Outcome::Applied { .. }
    ));
    vs
}

/// The first event `pick` accepts, skipping others.
async fn next_event(
    watch: &mut InterfaceWatch,
    pick: impl Fn(InterfaceEvent) -> Option<InterfaceInfo>,
) -> InterfaceInfo {
    let next = async {
        loop {
            if let Some(info) = pick(watch.next().await.expect("session alive")) {
                return info;
            }
        }
    };
    tokio::time::timeout(WAIT, next)
        .await
        .expect("the event in time")
}

#[tokio::test]
async fn ensure_bridge_sets_everything_once() {
    let server = OvsdbServer::start();
    let vs = Vswitch::connect(&server.tcp_remote()).await.unwrap();
    let Outcome::Applied { .. } = vs.ensure_bridge(&spec()).await.unwrap() else {
        panic!("the first ensure creates the bridge");
    };
    let get = |column: &str| server.vsctl(&format!("get Bridge br-int {column}"));
    assert_eq!(server.vsctl("list-br"), "br-int");
    assert_eq!(get("datapath_type"), "netdev");
    assert_eq!(get("fail_mode"), "secure");
    assert_eq!(get("protocols"), "[OpenFlow13]");
    assert_eq!(get("other_config:datapath-id"), "\"000000000000002a\"");
    assert_eq!(server.vsctl("get-controller br-int"), "tcp:127.0.0.1:6653");
    assert_eq!(server.vsctl("get Interface br-int type"), "internal");

    // The second ensure sends nothing: no transaction reaches the database file.
    let len = server.db_len();
    assert_eq!(vs.ensure_bridge(&spec()).await.unwrap(), Outcome::Unchanged);
    assert_eq!(server.db_len(), len);

    // The system datapath is the other choice.
    let system = BridgeSpec {
        datapath_type: DatapathType::System,
        ..spec()
    };
    assert_eq!(
        vs.ensure_bridge(&system).await.unwrap(),
        Outcome::Applied { operations: 1 }
    );
    assert_eq!(get("datapath_type"), "system");
}

#[tokio::test]
async fn ensure_bridge_repairs_what_an_operator_changed() {
    let server = OvsdbServer::start();
    let vs = with_bridge(&server).await;
    server.vsctl("set Bridge br-int fail_mode=standalone protocols=OpenFlow10,OpenFlow13 other_config:hwaddr=02:00:00:00:00:01 other_config:datapath-id=00000000000000ff");
    server.vsctl("set-controller br-int tcp:192.0.2.9:6653");
    eventually("the replica to see the edit", WAIT, || async {
        (vs.bridge("br-int")?.fail_mode.as_deref() == Some("standalone")
            && vs.bridge("br-int")?.controllers.first()?.target == "tcp:192.0.2.9:6653")
            .then_some(())
    })
    .await;

    let Outcome::Applied { .. } = vs.ensure_bridge(&spec()).await.unwrap() else {
        panic!("drift is repaired");
    };
    let get = |column: &str| server.vsctl(&format!("get Bridge br-int {column}"));
    assert_eq!(get("fail_mode"), "secure");
    assert_eq!(get("protocols"), "[OpenFlow13]");
    assert_eq!(get("other_config:datapath-id"), "\"000000000000002a\"");
    assert_eq!(
        get("other_config:hwaddr"),
        "\"02:00:00:00:00:01\"",
        "foreign keys stay"
    );
    assert_eq!(server.vsctl("get-controller br-int"), "tcp:127.0.0.1:6653");
    assert_eq!(vs.ensure_bridge(&spec()).await.unwrap(), Outcome::Unchanged);

    let standalone = BridgeSpec {
        fail_mode: FailMode::Standalone,
        ..spec()
    };
    vs.ensure_bridge(&standalone).await.unwrap();
    assert_eq!(get("fail_mode"), "standalone");
}

#[tokio::test]
async fn uninitialised_database_gets_a_root_row() {
    let server = OvsdbServer::start_uninitialised();
    let vs = Vswitch::connect(&server.unix_remote()).await.unwrap();
    vs.ensure_bridge(&spec()).await.unwrap();
    assert_eq!(server.vsctl("list-br"), "br-int");
    assert_eq!(vs.ensure_bridge(&spec()).await.unwrap(), Outcome::Unchanged);
}

#[tokio::test]
async fn wan_ports_beside_the_mesh_and_the_trunk() {
    let server = OvsdbServer::start();
    let vs = with_bridge(&server).await;
    vs.set_tunnels("br-int", &[gre("gre-a", "192.0.2.1")])
        .await
        .unwrap();
    vs.ensure_trunk_port("br-int", "eth1").await.unwrap();
    let mut wan = WanPortSpec::new("wan-1", "203.0.113.2".parse().unwrap(), 1001);
    wan.tunnel.local_ip = Some("203.0.113.1".parse().unwrap());
    wan.vi = Some("7".into());
    wan.bfd = Some(Bfd {
        min_rx_ms: 100,
        min_tx_ms: 200,
    });
    vs.set_wan_ports("br-int", std::slice::from_ref(&wan))
        .await
        .unwrap();
    assert_eq!(server.vsctl("list-ports br-int"), "eth1\ngre-a\nwan-1");
    assert_eq!(
        server.vsctl("get Interface wan-1 options"),
        "{key=\"1001\", local_ip=\"203.0.113.1\", remote_ip=\"203.0.113.2\"}"
    );
    assert_eq!(
        server.vsctl("get Interface wan-1 bfd"),
        "{enable=\"true\", min_rx=\"100\", min_tx=\"200\"}"
    );
    assert_eq!(
        server.vsctl("get Interface wan-1 external_ids:iris-vi"),
        "\"7\""
    );
    assert_eq!(server.vsctl("get Port wan-1 external_ids:iris-role"), "wan");
    assert_eq!(
        server.vsctl("get Port eth1 external_ids:iris-role"),
        "trunk"
    );
    assert_eq!(
        vs.set_wan_ports("br-int", std::slice::from_ref(&wan))
            .await
            .unwrap(),
        Outcome::Unchanged
    );
    // The mesh's planner leaves the WAN port, and the WAN's the mesh.
    vs.set_tunnels("br-int", &[]).await.unwrap();
    assert_eq!(server.vsctl("list-ports br-int"), "eth1\nwan-1");
    vs.set_wan_ports("br-int", &[]).await.unwrap();
    assert_eq!(server.vsctl("list-ports br-int"), "eth1");
}

#[tokio::test]
async fn tunnel_mesh_grows_and_shrinks_without_restarts() {
    let server = OvsdbServer::start();
    let vs = with_bridge(&server).await;
    let ports = || server.vsctl("list-ports br-int");
    let (a, b, c) = (
        gre("gre-a", "192.0.2.1"),
        gre("gre-b", "192.0.2.2"),
        gre("gre-c", "192.0.2.3"),
    );

    vs.set_tunnels("br-int", &[a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(ports(), "gre-a\ngre-b");
    assert_eq!(server.vsctl("get Interface gre-a type"), "gre");
    assert_eq!(
        server.vsctl("get Interface gre-a options"),
        "{key=flow, remote_ip=\"192.0.2.1\"}"
    );
    let b_uuid = server.vsctl("get Interface gre-b _uuid");

    vs.set_tunnels("br-int", &[b.clone(), c.clone()])
        .await
        .unwrap();
    assert_eq!(ports(), "gre-b\ngre-c");
    assert_eq!(
        server.vsctl("get Interface gre-b _uuid"),
        b_uuid,
        "gre-b untouched"
    );
    assert_eq!(server.vsctl("--columns=name find Interface name=gre-a"), "");

    let len = server.db_len();
    assert_eq!(
        vs.set_tunnels("br-int", &[c.clone(), b.clone()])
            .await
            .unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(server.db_len(), len);

    // One flow-based port instead of the mesh.
    vs.set_tunnels("br-int", &[TunnelSpec::gre_flow("gre-flow")])
        .await
        .unwrap();
    assert_eq!(ports(), "gre-flow");
    assert_eq!(
        server.vsctl("get Interface gre-flow options"),
        "{key=flow, remote_ip=flow}"
    );

    vs.set_tunnels("br-int", &[]).await.unwrap();
    assert_eq!(ports(), "");
    assert_eq!(
        server.vsctl("list-ifaces br-int"),
        "",
        "only the local port is left"
    );
}

#[tokio::test]
async fn ports_iris_does_not_manage_are_left_alone() {
    let server = OvsdbServer::start();
    let vs = with_bridge(&server).await;
    server.vsctl("add-port br-int gre-a -- set Interface gre-a type=internal");
    eventually("the replica to see gre-a", WAIT, || async {
        vs.ports().into_iter().find(|p| p.name == "gre-a")
    })
    .await;

    let err = vs
        .set_tunnels("br-int", &[gre("gre-a", "192.0.2.1")])
        .await
        .unwrap_err();
    let Error::Plan(PlanError::PortNameTaken { .. }) = &err else {
        panic!("{err}")
    };
    assert!(
        err.to_string().contains("ovs-vsctl del-port gre-a"),
        "{err}"
    );
    assert_eq!(server.vsctl("get Interface gre-a type"), "internal");

    vs.set_tunnels("br-int", &[]).await.unwrap();
    assert_eq!(server.vsctl("list-ports br-int"), "gre-a");

    let err = vs.set_tunnels("br-nope", &[]).await.unwrap_err();
    assert!(
        matches!(err, Error::Plan(PlanError::NoSuchBridge { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn watch_sees_vm_ports_that_ovs_vsctl_adds_and_removes() {
    let server = OvsdbServer::start();
    let vs = with_bridge(&server).await;
    let mut watch = vs.watch_interfaces().await.unwrap();
    let Some(InterfaceEvent::Added(local)) = watch.next().await else {
        panic!("initial state")
    };
    assert_eq!(
        (local.name.as_str(), local.bridge.as_deref()),
        ("br-int", Some("br-int"))
    );

    server.vsctl("add-port br-int vm1 -- set Interface vm1 type=internal external_ids:iris-vi=42");
    let added = next_event(&mut watch, |e| match e {
        InterfaceEvent::Added(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!(added.name, "vm1");
    assert_eq!(added.vi(), Some("42"));
    assert_eq!(added.bridge.as_deref(), Some("br-int"));
    assert_eq!(added.port.as_deref(), Some("vm1"));

    server.vsctl("del-port br-int vm1");
    let removed = next_event(&mut watch, |e| match e {
        InterfaceEvent::Removed(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!(removed.name, "vm1");
    assert!(vs.interfaces().iter().all(|i| i.name != "vm1"));
}

#[tokio::test]
async fn vm_ports_through_the_api() {
    let server = OvsdbServer::start();
    let vs = with_bridge(&server).await;
    let mut vm = VmPortSpec::new("vm2", "7");
    vm.kind = VmPortKind::Internal;
    vm.external_ids
        .insert("attached-mac".into(), "02:00:00:00:00:07".into());
    vs.ensure_vm_port("br-int", &vm).await.unwrap();
    assert_eq!(
        server.vsctl("get Interface vm2 external_ids:iris-vi"),
        "\"7\""
    );
    assert_eq!(server.vsctl("get Interface vm2 type"), "internal");
    assert_eq!(
        vs.ensure_vm_port("br-int", &vm).await.unwrap(),
        Outcome::Unchanged
    );
    let port = vs.ports().into_iter().find(|p| p.name == "vm2").unwrap();
    assert_eq!(port.external_ids["iris-role"], "vm");

    vs.remove_port("br-int", "vm2").await.unwrap();
    assert_eq!(server.vsctl("list-ports br-int"), "");
    assert_eq!(
        vs.remove_port("br-int", "vm2").await.unwrap(),
        Outcome::Unchanged
    );
}

#[tokio::test]
async fn losing_the_server_ends_the_watch_and_fails_calls() {
    let mut server = OvsdbServer::start();
    let vs = with_bridge(&server).await;
    let mut watch = vs.watch_interfaces().await.unwrap();
    assert!(watch.next().await.is_some());
    server.kill();
    tokio::time::timeout(WAIT, async { while watch.next().await.is_some() {} })
        .await
        .expect("the watch ends");
    tokio::time::timeout(WAIT, vs.closed())
        .await
        .expect("closed resolves");
    let err = vs.ensure_bridge(&spec()).await.unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
}
