#![allow(clippy::unwrap_used)]

use super::*;
use iris_controller::flowsim::Switch;
use iris_controller::reconciler::{reconcile, Foreign};
use iris_controller::switch_state::is_iris_cookie;
use ofp::packet::{ArpRepr, EtherType, EthernetRepr, MacAddr, VlanTag};
use proptest::prelude::*;
use std::net::Ipv4Addr;

const TRUNK: u32 = 1;
const WAN1: u32 = 2;
const WAN2: u32 = 3;
const FOREIGN: u32 = 4;

fn plan() -> PipelinePlan {
    PipelinePlan {
        trunk_ofport: TRUNK,
        vis: vec![
            ViPath {
                vi: 1,
                wan_ofport: WAN1,
                vlans: VlanSet::from_entries(&["100-199", "untagged"]).unwrap(),
            },
            ViPath {
                vi: 2,
                wan_ofport: WAN2,
                vlans: VlanSet::from_entries(&["200-299", "4094"]).unwrap(),
            },
        ],
        foreign_ofport: Some(FOREIGN),
    }
}

/// A switch holding the table of `plan`, installed as the gateway would.
fn switch(plan: &PipelinePlan) -> Switch {
    let mut sw = Switch::new();
    let desired = table(plan).unwrap();
    sw.apply_all(&reconcile(&desired, sw.state(), Foreign::Delete).messages)
        .unwrap();
    sw
}

fn tags(vid: Option<u16>) -> Vec<VlanTag> {
    vid.map(|v| VlanTag {
        tpid: 0x8100,
        tci: v,
    })
    .into_iter()
    .collect()
}

/// An IPv4-ish frame (the payload does not matter to the gateway).
fn data_frame(vid: Option<u16>) -> Vec<u8> {
    let mut buf = Vec::new();
    EthernetRepr {
        dst: MacAddr([0x52, 0x54, 0, 0, 0, 2]),
        src: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
        tags: tags(vid),
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut buf);
    buf.extend_from_slice(&[0x45; 40]);
    buf
}

fn arp_frame(vid: Option<u16>, rarp: bool) -> Vec<u8> {
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    let mut a = if rarp {
        ArpRepr::rarp_announce(mac)
    } else {
        ArpRepr::gratuitous(mac, Ipv4Addr::new(10, 1, 1, 5))
    };
    a.tags = tags(vid);
    let mut buf = Vec::new();
    a.emit(&mut buf);
    buf
}

/// Every VLAN a frame may carry: untagged, and ids 1-4094.
fn every_vlan() -> impl Iterator<Item = Option<u16>> {
    std::iter::once(None).chain((1..=MAX_VID).map(Some))
}

/// The ports a frame on `in_port` leaves by.
fn out_ports(sw: &Switch, in_port: u32, frame: &[u8]) -> Vec<u32> {
    let o = sw.process(in_port, 0, frame).unwrap();
    for out in &o.outputs {
        assert_eq!(out.frame, frame, "frames leave exactly as they came");
    }
    o.outputs.iter().map(|o| o.port).collect()
}

#[test]
fn trunk_frames_go_to_their_vis_wan_port_and_nowhere_else() {
    let p = plan();
    let sw = switch(&p);
    for vid in every_vlan() {
        let want: Vec<u32> = p
            .vis
            .iter()
            .filter(|v| v.vlans.contains(vid))
            .map(|v| v.wan_ofport)
            .collect();
        assert_eq!(out_ports(&sw, TRUNK, &data_frame(vid)), want, "{vid:?}");
    }
}

#[test]
fn wan_frames_reach_the_trunk_only_in_their_vis_range_and_never_a_wan_port() {
    let p = plan();
    let sw = switch(&p);
    for v in &p.vis {
        for vid in every_vlan() {
            let o = sw.process(v.wan_ofport, 0, &data_frame(vid)).unwrap();
            let ports: Vec<u32> = o.outputs.iter().map(|o| o.port).collect();
            if v.vlans.contains(vid) {
                assert_eq!(ports, [TRUNK], "VI {} {vid:?}", v.vi);
            } else {
                assert!(ports.is_empty(), "VI {} {vid:?} leaked to {ports:?}", v.vi);
                // Dropped by the port's own flow, so the drop is counted.
                assert_eq!(o.path.last().unwrap().priority, PRIORITY_PORT_DROP);
            }
        }
    }
}

#[test]
fn arp_and_rarp_from_the_trunk_are_also_sent_up_whole_with_their_tag() {
    let sw = switch(&plan());
    for rarp in [false, true] {
        for (vid, wan) in [(Some(150), WAN1), (None, WAN1), (Some(4094), WAN2)] {
            let frame = arp_frame(vid, rarp);
            let o = sw.process(TRUNK, 0, &frame).unwrap();
            assert_eq!(o.outputs.len(), 1);
            assert_eq!(o.outputs[0].port, wan);
            let [up] = o.to_controller.as_slice() else {
                panic!("{o:?}")
            };
            assert_eq!(up.frame, frame, "the whole frame, tag included");
            let parsed = ArpRepr::parse_frame(&up.frame).unwrap();
            assert_eq!(parsed.tags.first().map(VlanTag::vid), vid);
        }
        // Outside every range: neither forwarded nor sent up.
        let o = sw.process(TRUNK, 0, &arp_frame(Some(300), rarp)).unwrap();
        assert!(o.outputs.is_empty() && o.to_controller.is_empty(), "{o:?}");
    }
    // ARP from the WAN is forwarded, not snooped.
    let o = sw.process(WAN1, 0, &arp_frame(Some(150), false)).unwrap();
    assert!(o.to_controller.is_empty());
    assert_eq!(o.outputs.len(), 1);
}

#[test]
fn foreign_keys_are_dropped_and_counted_on_their_own_port() {
    let sw = switch(&plan());
    for vid in every_vlan() {
        let o = sw.process(FOREIGN, 0, &data_frame(vid)).unwrap();
        assert!(
            o.outputs.is_empty() && o.to_controller.is_empty(),
            "{vid:?}"
        );
        assert_eq!(o.path.last().unwrap().priority, PRIORITY_PORT_DROP);
    }
    let mut clash = plan();
    clash.foreign_ofport = Some(WAN1);
    assert!(matches!(
        table(&clash),
        Err(PipelineError::SharedPort { ofport: WAN1, .. })
    ));
}

#[test]
fn other_ports_are_dropped_by_the_explicit_default() {
    let sw = switch(&plan());
    let o = sw.process(99, 0, &data_frame(Some(150))).unwrap();
    assert!(o.outputs.is_empty());
    assert_eq!(o.path.last().unwrap().priority, PRIORITY_DROP);
}

#[test]
fn the_table_is_the_same_every_time_so_a_restart_sends_nothing() {
    let (a, b) = (table(&plan()).unwrap(), table(&plan()).unwrap());
    assert_eq!(a, b);
    assert!(a.flows.values().all(|f| is_iris_cookie(f.cookie)));
    let sw = switch(&plan());
    assert!(reconcile(&b, sw.state(), Foreign::Delete).summary.is_noop());
    // Another WAN port number for VI 2 changes only VI 2's flows.
    let mut moved = plan();
    moved.vis[1].wan_ofport = 7;
    let p = reconcile(&table(&moved).unwrap(), sw.state(), Foreign::Delete);
    let vi2_flows = a
        .flows
        .values()
        .filter(|f| {
            f.match_.fields.contains(&OxmField::InPort(WAN2))
                || f.instructions == [Instruction::ApplyActions(vec![Action::output(WAN2)])]
                || f.instructions
                    == [Instruction::ApplyActions(vec![
                        Action::output(WAN2),
                        Action::to_controller(),
                    ])]
        })
        .count();
    assert!(vi2_flows > 0);
    assert_eq!(
        p.summary.flows_deleted + p.summary.flows_replaced,
        vi2_flows,
        "{:?}",
        p.summary
    );
}

#[test]
fn masks_keep_the_table_small() {
    let full = PipelinePlan {
        trunk_ofport: TRUNK,
        vis: vec![ViPath {
            vi: 1,
            wan_ofport: WAN1,
            vlans: VlanSet::from_entries(&["1-4094", "untagged"]).unwrap(),
        }],
        foreign_ofport: None,
    };
    assert_eq!(
        VlanSet::from_entries(&["1-4094"]).unwrap().matches().len(),
        22
    );
    // 23 matches, four flows each, two port drops and the default.
    assert_eq!(table(&full).unwrap().flows.len(), 23 * 4 + 3);
    let sw = switch(&full);
    for vid in every_vlan() {
        assert_eq!(out_ports(&sw, TRUNK, &data_frame(vid)), [WAN1], "{vid:?}");
    }
}

#[test]
fn plans_that_would_mix_vis_are_refused() {
    let mut overlap = plan();
    overlap.vis[1].vlans = VlanSet::from_entries(&["199-205"]).unwrap();
    let e = table(&overlap).unwrap_err();
    assert_eq!(
        e,
        PipelineError::Overlap {
            a: 1,
            b: 2,
            vlan: Some(199)
        }
    );
    assert!(e.to_string().contains("VLAN 199"), "{e}");
    let mut untagged = plan();
    untagged.vis[1].vlans = VlanSet::new().with_untagged();
    assert!(matches!(
        table(&untagged),
        Err(PipelineError::Overlap { vlan: None, .. })
    ));
    let mut shared = plan();
    shared.vis[1].wan_ofport = TRUNK;
    assert!(matches!(
        table(&shared),
        Err(PipelineError::SharedPort { ofport: 1, .. })
    ));
    let mut empty = plan();
    empty.vis[0].vlans = VlanSet::new();
    assert_eq!(table(&empty), Err(PipelineError::NoVlans { vi: 1 }));
    let mut reserved = plan();
    reserved.trunk_ofport = ofp::message::port_no::CONTROLLER;
    assert!(matches!(
        table(&reserved),
        Err(PipelineError::BadPort { .. })
    ));
}

#[test]
fn vlan_entries_parse_merge_and_explain_mistakes() {
    let s: VlanSet = "100-199, 150-250,251,untagged".parse().unwrap();
    assert_eq!(s.ranges(), [(100, 251)]);
    assert!(s.untagged());
    assert_eq!(s.to_string(), "100-251,untagged");
    for bad in ["0", "4095", "200-100", "ten", "1-", ""] {
        let e = VlanSet::from_entries(&[bad]).unwrap_err();
        assert!(e.to_string().contains("VLAN"), "{bad:?}: {e}");
    }
}

proptest! {
    #[test]
    fn blocks_cover_a_range_exactly(a in 1u16..=MAX_VID, b in 1u16..=MAX_VID) {
        let (first, last) = (a.min(b), a.max(b));
        let blocks = aligned_blocks(first, last);
        prop_assert!(blocks.len() <= 22);
        let covered = |v: u16| blocks.iter().filter(|(base, mask)| v & mask == *base).count();
        for v in 0..=0x0fff_u16 {
            let want = usize::from((first..=last).contains(&v));
            prop_assert_eq!(covered(v), want, "vid {}", v);
        }
    }
}
