use super::*;
use crate::compiler::{TABLE_ARP, TABLE_INTERCEPT};
use crate::fixtures::{host, port as vm_port, tunnel_ofport, world};
use crate::model::{Location, MacKey, ViId};
use crate::registry::{ChangeKind, SeedEntry};
use ofp::message::{Message, OfpMessage, PacketInView};
use ofp::oxm::Match;
use ofp::packet::{MacAddr, VlanTag};
use std::net::Ipv4Addr;

const M1: &str = "52:54:00:00:00:01";
const M2: &str = "52:54:00:00:00:02";

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn meta(table_id: u8, in_port: u32) -> PacketInMeta {
    PacketInMeta {
        reason: PacketInReason::Action,
        table_id,
        cookie: 0,
        in_port,
        tun_id: None,
    }
}

fn bytes(a: &ArpRepr) -> Vec<u8> {
    let mut b = Vec::new();
    a.emit(&mut b);
    b
}

fn vlan10(mut a: ArpRepr) -> ArpRepr {
    a.tags.push(VlanTag {
        tpid: 0x8100,
        tci: 10,
    });
    a
}

/// VI 1 knows M2 at b:1 answering for 10.0.0.2 on VLAN 10.
fn registry() -> Registry {
    let mut r = Registry::new();
    let seed = [SeedEntry {
        mac: mac(M2),
        ip: Some(ip("10.0.0.2")),
        vlan: Vlan::Tagged(10),
        location: Some(Location::Port {
            host: host("b"),
            ofport: 1,
        }),
    }];
    r.seed(Timestamp(0), &world(), ViId(1), &seed).unwrap();
    r
}

fn decide(r: &mut Registry, on: &str, m: PacketInMeta, frame: &[u8]) -> Decision {
    handle_packet_in(Timestamp(9), r, &world(), &host(on), &m, frame)
}

#[test]
fn a_rarp_is_learned_and_flooded_in_its_vi() {
    let mut r = registry();
    let rarp = bytes(&vlan10(ArpRepr::rarp_announce(mac(M2))));
    let d = decide(&mut r, "c", meta(TABLE_INTERCEPT, 3), &rarp);
    assert_eq!(d.kind, PacketInKind::Rarp);
    assert_eq!(d.changes.len(), 1);
    assert_eq!(d.changes[0].kind(), ChangeKind::Moved);
    assert_eq!(
        d.packet_outs,
        [PacketOut {
            buffer_id: NO_BUFFER,
            in_port: 3,
            actions: vec![Action::Group(flood_group(ViId(1), false))],
            data: rarp,
        }]
    );
}

#[test]
fn what_a_gateway_port_sees_lives_behind_the_gateway_and_stays_there() {
    // gw:7 is VI 1's port on its gateway: the WAN tunnel to the operator.
    let mut r = registry();
    let behind = Some(Some(Location::BehindGateway {
        gateway: host("gw"),
    }));
    let key = MacKey {
        vi: ViId(1),
        vlan: Vlan::Tagged(10),
        mac: mac(M2),
    };
    let rarp = bytes(&vlan10(ArpRepr::rarp_announce(mac(M2))));
    let d = decide(&mut r, "gw", meta(TABLE_INTERCEPT, 7), &rarp);
    assert_eq!(d.kind, PacketInKind::Rarp);
    assert_eq!(d.changes[0].kind(), ChangeKind::Moved);
    assert_eq!(r.mac(&key).map(|e| e.location.clone()), behind.clone());
    // The gateway's own report (the API) and its announcements agree.
    let d = decide(&mut r, "gw", meta(TABLE_INTERCEPT, 7), &rarp);
    assert!(d.changes.is_empty(), "{:?}", d.changes);
    // Any other frame from that side places a new MAC behind it too.
    let req = bytes(&vlan10(ArpRepr::request(
        mac(M1),
        ip("10.0.0.1"),
        ip("10.0.0.2"),
    )));
    decide(&mut r, "gw", meta(TABLE_ARP, 7), &req);
    let k1 = MacKey {
        mac: mac(M1),
        ..key
    };
    assert_eq!(r.mac(&k1).map(|e| e.location.clone()), behind);
    // On an ordinary host the same port number is a port.
    let d = decide(&mut r, "a", meta(TABLE_INTERCEPT, 1), &rarp);
    assert_eq!(
        r.mac(&key).map(|e| e.location.clone()),
        Some(Some(Location::Port {
            host: host("a"),
            ofport: 1
        })),
        "{d:?}"
    );
}

#[test]
fn a_request_from_the_operators_side_is_flooded_never_answered() {
    // gw:7 leads into the operator's data center: 10.0.0.2 may be a
    // neighbour there, which answers itself.
    let mut r = registry();
    let req = bytes(&vlan10(ArpRepr::request(
        mac(M1),
        ip("10.0.0.1"),
        ip("10.0.0.2"),
    )));
    let d = decide(&mut r, "gw", meta(TABLE_ARP, 7), &req);
    assert_eq!(d.kind, PacketInKind::ArpUnknownTarget);
    assert_eq!(
        d.packet_outs[0].actions,
        [Action::Group(flood_group(ViId(1), false))]
    );
    // The same request from a PM's VM port is answered.
    let d = decide(&mut r, "a", meta(TABLE_ARP, 1), &req);
    assert_eq!(d.kind, PacketInKind::ArpAnswered);
}

#[test]
fn a_garp_is_flooded_only_when_the_datapath_did_not() {
    let garp = bytes(&vlan10(ArpRepr::gratuitous(mac(M1), ip("10.0.0.1"))));
    let mut r = registry();
    let d = decide(&mut r, "a", meta(TABLE_INTERCEPT, 1), &garp);
    assert_eq!(
        (d.kind.clone(), d.packet_outs.len()),
        (PacketInKind::Garp, 0)
    );
    assert_eq!(d.changes.len(), 2, "M1's place and its IP");
    let d = decide(&mut r, "a", meta(TABLE_ARP, 1), &garp);
    assert_eq!((d.kind, d.packet_outs.len()), (PacketInKind::Garp, 1));
    assert!(d.changes.is_empty());
}

#[test]
fn requests_seen_in_passing_only_teach() {
    let mut r = registry();
    let req = bytes(&vlan10(ArpRepr::request(
        mac(M1),
        ip("10.0.0.1"),
        ip("10.0.0.2"),
    )));
    let d = decide(&mut r, "a", meta(TABLE_INTERCEPT, 1), &req);
    assert_eq!(d.kind, PacketInKind::UnknownSource);
    assert!(d.packet_outs.is_empty(), "the datapath answers it");
    let k = MacKey {
        vi: ViId(1),
        vlan: Vlan::Tagged(10),
        mac: mac(M1),
    };
    assert!(r.mac(&k).is_some());
}

#[test]
fn a_known_target_is_answered_from_the_registry() {
    let mut r = registry();
    let req = vlan10(ArpRepr::request(mac(M1), ip("10.0.0.1"), ip("10.0.0.2")));
    let d = decide(&mut r, "a", meta(TABLE_ARP, 1), &bytes(&req));
    assert_eq!(d.kind, PacketInKind::ArpAnswered);
    let [out] = d.packet_outs.as_slice() else {
        panic!("{:?}", d.packet_outs)
    };
    assert_eq!(
        (out.in_port, out.actions.clone()),
        (port::CONTROLLER, vec![Action::output(1)])
    );
    let reply = ArpRepr::parse_frame(&out.data).unwrap();
    assert_eq!(reply, req.reply_from(mac(M2)));
    assert_eq!(
        (reply.op, reply.sha, reply.spa),
        (ArpOp::Reply, mac(M2), ip("10.0.0.2"))
    );
    assert_eq!(
        (reply.tha, reply.tpa, reply.eth_dst),
        (mac(M1), ip("10.0.0.1"), mac(M1))
    );
    // The same question from VI 2, or on another VLAN, is about another
    // world, where nobody has 10.0.0.2.
    let d = decide(&mut r, "a", meta(TABLE_ARP, 2), &bytes(&req));
    assert_eq!(d.kind, PacketInKind::ArpUnknownTarget);
    let untagged = ArpRepr::request(mac(M1), ip("10.0.0.1"), ip("10.0.0.2"));
    let d = decide(&mut r, "a", meta(TABLE_ARP, 1), &bytes(&untagged));
    assert_eq!(d.kind, PacketInKind::ArpToGateway);
    // A probe is left to the owner.
    let probe = vlan10(ArpRepr::request(
        mac(M1),
        Ipv4Addr::UNSPECIFIED,
        ip("10.0.0.2"),
    ));
    let d = decide(&mut r, "a", meta(TABLE_ARP, 1), &bytes(&probe));
    assert_eq!(d.kind, PacketInKind::ArpToGateway);
}

#[test]
fn unknown_targets_go_toward_the_gateway_or_are_flooded() {
    let mut r = registry();
    let req = bytes(&ArpRepr::request(mac(M1), ip("10.0.0.1"), ip("10.9.9.9")));
    let actions = |on: &str, p: u32, r: &mut Registry, kind: PacketInKind| {
        let d = decide(r, on, meta(TABLE_ARP, p), &req);
        assert_eq!(d.kind, kind);
        assert_eq!(
            (d.packet_outs[0].in_port, d.packet_outs[0].data.clone()),
            (p, req.clone())
        );
        d.packet_outs[0].actions.clone()
    };
    // Counted apart: it crosses the WAN.
    assert_eq!(
        actions("a", 1, &mut r, PacketInKind::ArpToGateway),
        [
            Action::SetField(OxmField::TunnelId(1001, None)),
            Action::output(tunnel_ofport("gw"))
        ]
    );
    // On the gateway itself, and in VI 2 (no gateway): flooded.
    assert_eq!(
        actions("gw", 7, &mut r, PacketInKind::ArpUnknownTarget),
        [Action::Group(flood_group(ViId(1), false))]
    );
    assert_eq!(
        actions("a", 2, &mut r, PacketInKind::ArpUnknownTarget),
        [Action::Group(flood_group(ViId(2), false))]
    );
}

#[test]
fn only_vm_ports_teach_and_bad_frames_are_counted() {
    let mut r = registry();
    let before = r.clone();
    let rarp = bytes(&ArpRepr::rarp_announce(mac(M2)));
    let mut m = meta(TABLE_INTERCEPT, tunnel_ofport("b"));
    m.tun_id = Some(1001);
    assert_eq!(
        decide(&mut r, "a", m, &rarp).kind,
        PacketInKind::NotFromVmPort
    );
    assert!(matches!(
        decide(&mut r, "a", meta(TABLE_INTERCEPT, 1), &rarp[..20]).kind,
        PacketInKind::Invalid(_)
    ));
    assert!(matches!(
        decide(&mut r, "a", meta(TABLE_INTERCEPT, 1), &rarp[..5]).kind,
        PacketInKind::Invalid(_)
    ));
    let mut prio = ArpRepr::rarp_announce(mac(M2));
    prio.tags.push(VlanTag {
        tpid: 0x8100,
        tci: 0x2000,
    });
    let d = decide(&mut r, "a", meta(TABLE_INTERCEPT, 1), &bytes(&prio));
    assert_eq!(d.kind, PacketInKind::Ignored);
    assert_eq!(r, before);
    // Any other frame from an unknown source teaches its place.
    let mut ipv4 = vec![0xff; 6];
    ipv4.extend(mac(M1).0);
    ipv4.extend([0x08, 0x00]);
    ipv4.extend([0u8; 20]);
    let d = decide(&mut r, "a", meta(TABLE_INTERCEPT, 1), &ipv4);
    assert_eq!((d.kind, d.changes.len()), (PacketInKind::UnknownSource, 1));
    assert_eq!(vm_port(&world(), "a", 1).vi, d.changes[0].vi());
}

#[test]
fn meta_is_read_from_owned_and_viewed_packet_ins() {
    let pi = PacketIn {
        buffer_id: NO_BUFFER,
        total_len: 42,
        reason: PacketInReason::Action,
        table_id: 2,
        cookie: 0x4952_0000_0000_0001,
        match_: Match::new().in_port(104).tunnel_id(1001),
        data: bytes(&ArpRepr::rarp_announce(mac(M2))),
    };
    let want = PacketInMeta {
        reason: PacketInReason::Action,
        table_id: 2,
        cookie: 0x4952_0000_0000_0001,
        in_port: 104,
        tun_id: Some(1001),
    };
    assert_eq!(PacketInMeta::from_packet_in(&pi), Some(want));
    let wire = OfpMessage::new(1, Message::PacketIn(pi.clone())).to_bytes();
    let view = PacketInView::new_checked(&wire).unwrap();
    assert_eq!(PacketInMeta::from_view(&view), Some(want));
    let no_port = PacketIn {
        match_: Match::new(),
        ..pi
    };
    assert_eq!(PacketInMeta::from_packet_in(&no_port), None);
}
