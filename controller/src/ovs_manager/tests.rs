use super::*;
use crate::model::{Host, HostRole};
use ovsdb::vswitch::{Ofport, TunnelRemote};
use ovsdb::Uuid;

fn managed(name: &str, ip: [u8; 4], dpid: u64, controller: Option<&str>) -> ManagedHost {
    ManagedHost {
        host: Host {
            name: HostName(name.into()),
            underlay_ip: ip.into(),
            role: HostRole::Compute,
            ovsdb_remote: format!("unix:/run/{name}/db.sock"),
            datapath_id: dpid,
        },
        controller: controller.map(str::to_owned),
    }
}

fn config() -> ManagerConfig {
    ManagerConfig {
        bridge: "br-int".into(),
        datapath_type: DatapathType::Netdev,
        default_controller: "tcp:10.0.0.100:6653".into(),
        replicas: Vec::new(),
        openflow: OpenFlowMode::Active,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(5),
        tls: None,
    }
}

#[test]
fn every_host_gets_a_tunnel_to_every_other() {
    let hosts = [
        managed("pm1", [10, 0, 0, 1], 1, None),
        managed(
            "pm2",
            [10, 0, 0, 2],
            2,
            Some("unix:/run/pm2/iris-controller.sock"),
        ),
        managed("pm3", [10, 0, 0, 3], 3, None),
    ];
    let p = plans(&config(), &hosts);
    assert_eq!(p.len(), 3);
    let pm1 = &p[&HostName("pm1".into())];
    assert_eq!(pm1.remote, "unix:/run/pm1/db.sock");
    let remotes: Vec<TunnelRemote> = pm1.tunnels.iter().map(|t| t.remote).collect();
    assert_eq!(
        remotes,
        vec![
            TunnelRemote::Ip([10, 0, 0, 2].into()),
            TunnelRemote::Ip([10, 0, 0, 3].into())
        ]
    );
    assert!(pm1
        .tunnels
        .iter()
        .all(|t| t.key == ovsdb::vswitch::TunnelKey::Flow));
    assert_eq!(pm1.tunnels[0].name, "gre-0a000002");
    assert_eq!(pm1.bridge.datapath_id, Some(1));
    assert_eq!(pm1.bridge.datapath_type, DatapathType::Netdev);
    assert_eq!(
        pm1.bridge.controller,
        vec!["tcp:10.0.0.100:6653".to_owned()]
    );
    assert_eq!(
        pm1.bridge.fail_mode,
        ovsdb::vswitch::FailMode::Secure,
        "tenants stay isolated while the controller is away"
    );
    assert_eq!(
        pm1.bridge.protocols,
        vec![ovsdb::vswitch::OpenFlowVersion::OpenFlow13]
    );
    let pm2 = &p[&HostName("pm2".into())];
    assert_eq!(
        pm2.bridge.controller,
        vec!["unix:/run/pm2/iris-controller.sock".to_owned()]
    );
}

#[test]
fn the_mesh_follows_the_host_list() {
    let two = [
        managed("pm1", [10, 0, 0, 1], 1, None),
        managed("pm2", [10, 0, 0, 2], 2, None),
    ];
    let three = [
        two[0].clone(),
        two[1].clone(),
        managed("pm3", [10, 0, 0, 3], 3, None),
    ];
    let before = plans(&config(), &two);
    let after = plans(&config(), &three);
    let pm1 = HostName("pm1".into());
    assert_eq!(before[&pm1].tunnels.len(), 1);
    assert_eq!(after[&pm1].tunnels.len(), 2);
    // The tunnel that stays keeps its name, so OVS keeps its ofport.
    assert_eq!(before[&pm1].tunnels[0], after[&pm1].tunnels[0]);
    let one = plans(&config(), &three[..1]);
    assert!(one[&pm1].tunnels.is_empty());
}

#[test]
fn tunnel_names_fit_a_device_name() {
    assert_eq!(tunnel_name([255, 255, 255, 254].into()), "gre-fffffffe");
    assert!(tunnel_name([1, 2, 3, 4].into()).len() <= 15);
}

fn iface(
    name: &str,
    bridge: &str,
    kind: &str,
    ofport: Ofport,
    pairs: &[(&str, &str)],
) -> InterfaceInfo {
    let map = |keys: &[&str]| {
        pairs
            .iter()
            .filter(|(k, _)| keys.contains(k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    InterfaceInfo {
        uuid: Uuid::from_u128(name.len() as u128),
        name: name.into(),
        kind: kind.into(),
        ofport,
        options: map(&["remote_ip", "key"]),
        external_ids: map(&["iris-vi", "attached-mac"]),
        error: None,
        port: Some(name.into()),
        bridge: Some(bridge.into()),
    }
}

#[test]
fn ports_are_read_from_interfaces_of_the_bridge() {
    let ifaces = [
        iface(
            "vm1",
            "br-int",
            "",
            Ofport::Assigned(3),
            &[("iris-vi", "7"), ("attached-mac", "52:54:00:00:00:07")],
        ),
        // A NIC's MAC that does not parse is no MAC.
        iface(
            "vm2",
            "br-int",
            "patch",
            Ofport::Assigned(2),
            &[("iris-vi", "8"), ("attached-mac", "52:54:00:00:07")],
        ),
        // Not yet added by ovs-vswitchd: no ofport, not reported.
        iface("vm3", "br-int", "", Ofport::Pending, &[("iris-vi", "7")]),
        iface(
            "vmx",
            "br-int",
            "",
            Ofport::Assigned(9),
            &[("iris-vi", "acme")],
        ),
        iface(
            "gre-0a000002",
            "br-int",
            "gre",
            Ofport::Assigned(10),
            &[("remote_ip", "10.0.0.2"), ("key", "flow")],
        ),
        iface(
            "gre-flow",
            "br-int",
            "gre",
            Ofport::Assigned(11),
            &[("remote_ip", "flow")],
        ),
        // Another bridge's ports are not ours.
        iface(
            "uplink",
            "br-ul",
            "",
            Ofport::Assigned(1),
            &[("iris-vi", "7")],
        ),
        iface("br-int", "br-int", "internal", Ofport::Assigned(65534), &[]),
    ];
    let (ports, bad) = ports_report("br-int", &ifaces);
    assert_eq!(
        ports.vm_ports,
        vec![
            VmPortSeen {
                name: "vm2".into(),
                ofport: 2,
                vi: ViId(8),
                attached_mac: None,
            },
            VmPortSeen {
                name: "vm1".into(),
                ofport: 3,
                vi: ViId(7),
                attached_mac: Some(ofp::packet::MacAddr([0x52, 0x54, 0, 0, 0, 7])),
            },
        ]
    );
    assert_eq!(ports.tunnels, vec![([10, 0, 0, 2].into(), 10)]);
    assert_eq!(bad, vec!["vmx".to_owned()]);
}
