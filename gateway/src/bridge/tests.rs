#![allow(clippy::unwrap_used)]

use super::*;
use ovsdb::update::parse_table_updates;
use ovsdb::vswitch::{TunnelKey, VI_KEY};
use serde_json::json;

fn plan(kind: BridgeKind) -> BridgePlan {
    let mut p = match kind {
        BridgeKind::Iaas => BridgePlan::iaas("br-gw", "gw-trunk"),
        BridgeKind::Haas => BridgePlan::haas("br-int"),
    };
    p.wan_ports = vec![
        WanPort {
            name: "wan-1".into(),
            vi: 1,
            key: 1001,
            remote_ip: "203.0.113.2".parse().unwrap(),
            local_ip: Some("203.0.113.1".parse().unwrap()),
        },
        WanPort {
            name: "wan-2".into(),
            vi: 2,
            key: 1002,
            remote_ip: "203.0.113.2".parse().unwrap(),
            local_ip: None,
        },
    ];
    p
}

#[test]
fn iaas_owns_its_bridge_and_haas_only_tags_its_ports() {
    let iaas = plan(BridgeKind::Iaas);
    let spec = iaas.bridge_spec().unwrap();
    assert_eq!(spec.name, "br-gw");
    assert!(spec.controller.is_empty());
    assert_eq!(spec.fail_mode, FailMode::Secure);
    assert_eq!(
        spec.protocols,
        [ovsdb::vswitch::OpenFlowVersion::OpenFlow13]
    );
    let wan = iaas.wan_specs();
    assert_eq!(wan[0].tunnel.key, TunnelKey::Fixed(1001));
    assert_eq!(wan[0].tunnel.local_ip, Some("203.0.113.1".parse().unwrap()));
    assert_eq!(wan[0].bfd, Some(DEFAULT_BFD));
    assert_eq!(wan[0].vi, None);
    assert!(iaas.catch_foreign_keys);

    let haas = plan(BridgeKind::Haas);
    assert!(!haas.catch_foreign_keys, "its tunnels are the controller's");
    assert_eq!(
        haas.bridge_spec(),
        None,
        "the controller's bridge is its own"
    );
    let wan = haas.wan_specs();
    assert_eq!(wan[1].vi.as_deref(), Some("2"));
    assert_eq!(wan[1].tunnel.local_ip, None);
}

const BR: &str = "00000000-0000-0000-0000-0000000000b1";
const P1: &str = "00000000-0000-0000-0000-0000000000a1";
const P2: &str = "00000000-0000-0000-0000-0000000000a2";
const I1: &str = "00000000-0000-0000-0000-0000000000c1";
const I2: &str = "00000000-0000-0000-0000-0000000000c2";

/// br-gw with the trunk (ofport 1) and wan-1 (ofport 2, BFD up, counters);
/// wan-2 is not there.
fn replica() -> Replica {
    let mut r = Replica::default();
    r.apply(
        &parse_table_updates(&json!({
            "Bridge": {BR: {"new": {"name": "br-gw", "ports": ["set", [["uuid", P1], ["uuid", P2]]]}}},
            "Port": {
                P1: {"new": {"name": "gw-trunk", "interfaces": ["uuid", I1]}},
                P2: {"new": {"name": "wan-1", "interfaces": ["uuid", I2]}},
            },
            "Interface": {
                I1: {"new": {"name": "gw-trunk", "ofport": 1, "error": ["set", []]}},
                I2: {"new": {"name": "wan-1", "type": "gre", "ofport": 2,
                    "external_ids": ["map", [[VI_KEY, "1"]]],
                    "bfd_status": ["map", [["state", "up"], ["forwarding", "true"]]],
                    "statistics": ["map", [["rx_packets", 3], ["rx_bytes", 300],
                        ["tx_packets", 4], ["tx_bytes", 400]]]}},
            },
        }))
        .unwrap(),
    )
    .unwrap();
    r
}

#[test]
fn status_reads_ofports_bfd_and_counters() {
    let s = status_of(&plan(BridgeKind::Iaas), &replica());
    assert!(s.bridge_present);
    assert_eq!((s.trunk_ofport, s.trunk_error.as_ref()), (Some(1), None));
    let w1 = &s.wan_ports[0];
    assert_eq!(w1.ofport, Some(2));
    assert_eq!(w1.bfd_state.as_deref(), Some("up"));
    assert_eq!(w1.bfd_forwarding, Some(true));
    assert_eq!(
        (w1.rx_packets, w1.rx_bytes, w1.tx_packets, w1.tx_bytes),
        (Some(3), Some(300), Some(4), Some(400))
    );
    let w2 = &s.wan_ports[1];
    assert_eq!((w2.ofport, w2.bfd_state.as_ref()), (None, None));

    // A port of that name on another bridge is not this bridge's.
    let mut missing = replica();
    missing
        .apply(
            &parse_table_updates(&json!({"Interface": {I1: {"new": {"ofport": -1,
                "error": "could not open network device gw-trunk (No such device)"}}}}))
            .unwrap(),
        )
        .unwrap();
    let s = status_of(&plan(BridgeKind::Iaas), &missing);
    assert_eq!(s.trunk_ofport, None);
    assert!(s.trunk_error.unwrap().contains("No such device"));

    let mut elsewhere = plan(BridgeKind::Iaas);
    elsewhere.bridge = "br-other".into();
    let s = status_of(&elsewhere, &replica());
    assert!(!s.bridge_present);
    assert_eq!(s.trunk_ofport, None);
    assert_eq!(s.wan_ports[0].ofport, None);
}

#[test]
fn the_pipeline_takes_the_vis_whose_ports_are_up() {
    let s = status_of(&plan(BridgeKind::Iaas), &replica());
    let vlans = BTreeMap::from([
        (1, VlanSet::from_entries(&["100-199"]).unwrap()),
        (2, VlanSet::from_entries(&["200-299"]).unwrap()),
    ]);
    let p = s.pipeline_plan(&vlans).unwrap();
    assert_eq!(p.trunk_ofport, 1);
    assert_eq!(p.vis.len(), 1, "wan-2 has no ofport yet");
    assert_eq!((p.vis[0].vi, p.vis[0].wan_ofport), (1, 2));
    let no_trunk = BridgeStatus {
        trunk_ofport: None,
        ..s
    };
    assert_eq!(no_trunk.pipeline_plan(&vlans), None);
}

#[test]
fn the_tunnel_bridge_is_a_learning_switch_with_its_mac_pinned() {
    let plan = BridgePlan::tunnel("br-wg", "wg-tap", [6, 0x49, 10, 254, 0, 1]);
    let spec = plan.bridge_spec().unwrap();
    assert_eq!(spec.name, "br-wg");
    assert_eq!(spec.fail_mode, FailMode::Standalone);
    assert_eq!(spec.datapath_type, DatapathType::Netdev);
    assert_eq!(
        spec.other_config.get("hwaddr").map(String::as_str),
        Some("06:49:0a:fe:00:01")
    );
    assert_eq!(plan.trunk.as_deref(), Some("wg-tap"));
    assert!(!plan.catch_foreign_keys);
    assert!(plan.wan_specs().is_empty());
    // The gateway's own bridge stays secure, its MAC vswitchd's.
    let own = BridgePlan::iaas("br-gw", "gw-trunk").bridge_spec().unwrap();
    assert_eq!(own.fail_mode, FailMode::Secure);
    assert!(!own.other_config.contains_key("hwaddr"));
}
