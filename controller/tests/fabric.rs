//! Flow behaviour across hosts, without Open vSwitch: the compiled flows of
//! every host loaded into simulated switches joined by the tunnel mesh.

mod common;

use common::*;
use iris_controller::compiler::{
    compile, TABLE_ARP, TABLE_CLASSIFY, TABLE_FORWARD, TABLE_INTERCEPT,
};
use iris_controller::flowsim::Fabric;
use iris_controller::model::{DepartedPort, Location, MacKey, ViId};
use iris_controller::packet_in::{handle_packet_in, PacketInKind};
use iris_controller::reconciler::{reconcile, Foreign, PlanSummary};
use iris_controller::registry::{ChangeKind, EntrySpec, Registry, Timestamp};
use ofp::packet::{ArpOp, ArpRepr, EtherType, MacAddr};

use std::collections::BTreeSet;

const IPV4: u16 = 0x0800;

#[test]
fn unicast_reaches_only_the_right_vm() {
    let (f, _) = fabric();
    let pairs = [("A", "B"), ("B", "A"), ("C", "D"), ("D", "C"), ("D", "E")];
    for vi in [1, 2] {
        for (from, to) in pairs {
            let (s, d) = (vm(from), vm(to));
            let vlan = if to == "E" { None } else { s.vlan };
            // E is untagged: D talks to it untagged, where D is unknown.
            let bytes = frame(d.mac(), s.mac(), vlan, IPV4);
            let trip = f.inject(&s.host(), s.port_in(vi), &bytes).unwrap();
            assert_eq!(
                places(&trip),
                [(d.host.to_owned(), d.port_in(vi))],
                "vi{vi} {from}->{to}"
            );
            assert_eq!(trip.delivered[0].frame, bytes, "delivered untouched");
            let learned = usize::from(to == "E");
            assert_eq!(trip.to_controller.len(), learned, "vi{vi} {from}->{to}");
            let hops = usize::from(s.host != d.host);
            assert_eq!(trip.tunnel_hops, hops);
        }
    }
}

#[test]
fn the_same_mac_on_another_vlan_is_another_destination() {
    let (f, _) = fabric();
    // B's MAC on VLAN 20 is not B: nobody there has it, so VI 1 sends it
    // to the gateway and VI 2 floods it.
    let c = vm("C");
    assert_unknown_unicast(&f, c, &frame(vm("B").mac(), c.mac(), Some(20), IPV4));
}

/// Unknown unicast from `s`: to the gateway in VI 1, flooded in VI 2.
fn assert_unknown_unicast(f: &Fabric, s: Vm, bytes: &[u8]) {
    let trip = f.inject(&s.host(), s.port_in(1), bytes).expect("vi1");
    assert_eq!(places(&trip), [("gw".to_owned(), GATEWAY_UPLINK)]);
    let trip = f.inject(&s.host(), s.port_in(2), bytes).expect("vi2");
    assert_eq!(
        places(&trip),
        vi_ports_except(&f.topology, 2, (s.host, s.port_in(2)))
    );
}

#[test]
fn broadcast_reaches_every_vm_of_the_vi_exactly_once() {
    let (f, _) = fabric();
    for vi in [1, 2] {
        for s in VMS {
            for dst in [MacAddr::BROADCAST, mac("01:00:5e:00:00:fb")] {
                let bytes = frame(dst, s.mac(), s.vlan, IPV4);
                let trip = f.inject(&s.host(), s.port_in(vi), &bytes).unwrap();
                assert_eq!(
                    places(&trip),
                    vi_ports_except(&f.topology, vi, (s.host, s.port_in(vi))),
                    "vi{vi} from {}",
                    s.name
                );
                assert!(trip.delivered.iter().all(|d| d.frame == bytes));
                assert!(trip.to_controller.is_empty());
            }
        }
    }
    // From the operator's data center through the gateway, too.
    let bytes = frame(MacAddr::BROADCAST, mac(REMOTE_MAC), Some(10), IPV4);
    let trip = f.inject(&host("gw"), GATEWAY_UPLINK, &bytes).unwrap();
    assert_eq!(
        places(&trip),
        vi_ports_except(&f.topology, 1, ("gw", GATEWAY_UPLINK))
    );
}

#[test]
fn known_arp_is_answered_in_the_datapath() {
    let (f, _) = fabric();
    // (asker, target): VLAN 10 and VLAN 20 both have 10.0.0.2, each its own.
    for (asker, target) in [("A", "B"), ("C", "D"), ("D", "C"), ("B", "A")] {
        for vi in [1, 2] {
            let (a, t) = (vm(asker), vm(target));
            let req = with_vlan(ArpRepr::request(a.mac(), a.ip(), t.ip()), a.vlan);
            let trip = f
                .inject(&a.host(), a.port_in(vi), &arp_bytes(&req))
                .unwrap();
            assert!(trip.to_controller.is_empty(), "no PacketIn for known ARP");
            assert_eq!(places(&trip), [(a.host.to_owned(), a.port_in(vi))]);
            assert_eq!(trip.tunnel_hops, 0);
            let reply = ArpRepr::parse_frame(&trip.delivered[0].frame).unwrap();
            assert_eq!(reply.eth_dst, a.mac(), "to the asker");
            assert_eq!(reply.eth_src, t.mac(), "from the target");
            assert_eq!(reply.tags, req.tags, "on the asker's VLAN");
            assert_eq!(reply.ethertype, EtherType::Arp);
            assert_eq!(reply.op, ArpOp::Reply);
            assert_eq!((reply.sha, reply.spa), (t.mac(), t.ip()));
            assert_eq!((reply.tha, reply.tpa), (a.mac(), a.ip()));
            assert_eq!(reply, req.reply_from(t.mac()));
            assert_eq!(trip.delivered[0].frame.len(), arp_bytes(&req).len());
        }
    }
    // The remote MAC's IP is answered too, in VI 1 only.
    let a = vm("A");
    let req = with_vlan(
        ArpRepr::request(a.mac(), a.ip(), REMOTE_IP.parse().unwrap()),
        a.vlan,
    );
    let trip = f.inject(&a.host(), a.port_in(1), &arp_bytes(&req)).unwrap();
    let reply = ArpRepr::parse_frame(&trip.delivered[0].frame).unwrap();
    assert_eq!(reply.sha, mac(REMOTE_MAC));
    let trip = f.inject(&a.host(), a.port_in(2), &arp_bytes(&req)).unwrap();
    assert!(trip.delivered.is_empty());
    assert_eq!(trip.to_controller.len(), 1);
}

#[test]
fn unknown_arp_goes_to_the_controller_which_sends_it_on() {
    let (f, mut r) = fabric();
    let a = vm("A");
    // E's address exists only untagged, so on VLAN 10 it is unknown.
    let req = with_vlan(ArpRepr::request(a.mac(), a.ip(), vm("E").ip()), a.vlan);
    let bytes = arp_bytes(&req);
    for vi in [1, 2] {
        let trip = f.inject(&a.host(), a.port_in(vi), &bytes).unwrap();
        assert!(trip.delivered.is_empty());
        let [(h, pi)] = trip.to_controller.as_slice() else {
            panic!("{:?}", trip.to_controller)
        };
        assert_eq!(
            (h, pi.table_id, pi.in_port),
            (&a.host(), TABLE_ARP, a.port_in(vi))
        );
        assert_eq!(pi.frame, bytes);

        let d = handle_packet_in(Timestamp(1), &mut r, &f.topology, h, &pi.meta(), &pi.frame);
        // Counted apart when it crosses the WAN.
        let kind = if vi == 1 {
            PacketInKind::ArpToGateway
        } else {
            PacketInKind::ArpUnknownTarget
        };
        assert_eq!(d.kind, kind);
        let out = f.packet_out(h, &d.packet_outs[0]).unwrap();
        let want = if vi == 1 {
            // Toward the operator's data center, and only there.
            vec![("gw".to_owned(), GATEWAY_UPLINK)]
        } else {
            vi_ports_except(&f.topology, 2, (a.host, a.port_in(2)))
        };
        assert_eq!(places(&out), want, "vi{vi}");
        assert!(out.delivered.iter().all(|d| d.frame == bytes));
    }
}

#[test]
fn rarp_and_garp_go_to_the_controller() {
    let (f, _) = fabric();
    let b = vm("B");
    let rarp = arp_bytes(&with_vlan(ArpRepr::rarp_announce(b.mac()), b.vlan));
    let trip = f.inject(&b.host(), b.port_in(1), &rarp).unwrap();
    assert!(
        trip.delivered.is_empty(),
        "the controller floods RARP itself"
    );
    assert_eq!(trip.to_controller.len(), 1);
    assert_eq!(trip.to_controller[0].1.table_id, TABLE_INTERCEPT);

    let garp = arp_bytes(&with_vlan(ArpRepr::gratuitous(b.mac(), b.ip()), b.vlan));
    let trip = f.inject(&b.host(), b.port_in(1), &garp).unwrap();
    assert_eq!(trip.to_controller.len(), 1);
    assert_eq!(trip.to_controller[0].1.table_id, TABLE_INTERCEPT);
    assert_eq!(
        places(&trip),
        vi_ports_except(&f.topology, 1, (b.host, b.port_in(1))),
        "the datapath floods a GARP"
    );
}

#[test]
fn only_rarp_and_arp_leave_a_port_not_classified_yet() {
    // A migrated guest's new port, plugged in before the controller heard
    // of it from OVSDB: its announcement (a RARP from QEMU, or a GARP from
    // the guest) goes up from table 0 to be held, anything else it sends
    // is dropped there. A match cannot single out a GARP, so every ARP
    // goes up and the controller keeps only announcements.
    let (f, _) = fabric();
    let b = vm("B");
    let new_port = 99;
    let rarp = arp_bytes(&with_vlan(ArpRepr::rarp_announce(b.mac()), b.vlan));
    let garp = arp_bytes(&with_vlan(ArpRepr::gratuitous(b.mac(), b.ip()), b.vlan));
    for bytes in [rarp, garp] {
        let trip = f.inject(&b.host(), new_port, &bytes).unwrap();
        assert!(trip.delivered.is_empty(), "{trip:?}");
        assert_eq!(trip.to_controller.len(), 1);
        assert_eq!(trip.to_controller[0].1.table_id, TABLE_CLASSIFY);
    }

    let broadcast = frame(MacAddr::BROADCAST, b.mac(), b.vlan, IPV4);
    let trip = f.inject(&b.host(), new_port, &broadcast).unwrap();
    assert!(
        trip.delivered.is_empty() && trip.to_controller.is_empty(),
        "{trip:?}"
    );
}

#[test]
fn unknown_unicast_goes_to_the_gateway_or_is_flooded() {
    let (f, _) = fabric();
    let a = vm("A");
    assert_unknown_unicast(
        &f,
        a,
        &frame(mac("52:54:00:00:00:77"), a.mac(), a.vlan, IPV4),
    );
    // Traffic to and from the operator's data center.
    let to_remote = frame(mac(REMOTE_MAC), a.mac(), a.vlan, IPV4);
    let trip = f.inject(&a.host(), a.port_in(1), &to_remote).unwrap();
    assert_eq!(places(&trip), [("gw".to_owned(), GATEWAY_UPLINK)]);
    let from_remote = frame(a.mac(), mac(REMOTE_MAC), a.vlan, IPV4);
    let trip = f.inject(&host("gw"), GATEWAY_UPLINK, &from_remote).unwrap();
    assert_eq!(places(&trip), [("h1".to_owned(), a.port_in(1))]);
    assert!(
        trip.to_controller.is_empty(),
        "the gateway knows its remote MACs"
    );
}

#[test]
fn from_the_operators_data_center_a_guest_not_placed_yet_is_reached() {
    // A guest that has not sent a frame yet (the registry does not place
    // its MAC): what the operator's data center sends it is flooded by the
    // gateway and delivered by every host of the VI to its local ports.
    let (f, _) = fabric();
    let a = vm("A");
    let unplaced = frame(mac("52:54:00:00:00:77"), mac(REMOTE_MAC), a.vlan, IPV4);
    let trip = f.inject(&host("gw"), GATEWAY_UPLINK, &unplaced).unwrap();
    assert_eq!(
        places(&trip),
        vi_ports_except(&f.topology, 1, ("gw", GATEWAY_UPLINK))
    );
    assert!(trip.to_controller.is_empty(), "{trip:?}");
}

#[test]
fn switches_that_are_right_get_nothing() {
    let (f, r) = fabric();
    for (h, sw) in &f.switches {
        let desired = compile(&r, &f.topology, h);
        assert_eq!(sw.state(), &desired);
        let plan = reconcile(&desired, sw.state(), Foreign::Delete);
        assert!(plan.messages.is_empty(), "{h}: {:?}", plan.summary);
    }
    // A controller that restarts and restores its registry sends nothing.
    let restored = Registry::restore(
        r.macs().map(|(k, e)| (*k, e.clone())),
        r.ips().map(|(k, e)| (*k, e.clone())),
    );
    let mut again = f.clone();
    let plans = again.converge(&restored).unwrap();
    assert!(plans.values().all(|p| p.messages.is_empty()));
}

/// B (VI 1) is live-migrated from h2 to a new port on h3, and announces
/// itself there with a RARP, as QEMU does.
#[test]
fn a_move_follows_the_rarp_and_changes_only_what_it_must() {
    let (mut f, mut r) = fabric();
    let b = vm("B");
    const NEW_PORT: u32 = 6;
    f.topology.add_vm_port("h3", NEW_PORT, ViId(1));
    let plans = f.converge(&r).unwrap();
    let h3 = &plans[&host("h3")].summary;
    assert_eq!(h3.flows_added, 1, "the new port's classification");
    assert_eq!(
        h3.groups_modified, 2,
        "both of VI 1's flood groups gain the port"
    );
    for h in ["h1", "h2", "gw"] {
        assert!(plans[&host(h)].messages.is_empty(), "{h}");
    }

    let rarp = arp_bytes(&with_vlan(ArpRepr::rarp_announce(b.mac()), b.vlan));
    let trip = f.inject(&host("h3"), NEW_PORT, &rarp).unwrap();
    let (h, pi) = &trip.to_controller[0];
    let d = handle_packet_in(Timestamp(5), &mut r, &f.topology, h, &pi.meta(), &pi.frame);
    assert_eq!(d.kind, PacketInKind::Rarp);
    assert_eq!(d.changes.len(), 1);
    assert_eq!(d.changes[0].kind(), ChangeKind::Moved);

    // Only the flows about B's MAC change, and only where they must.
    let plans = f.converge(&r).unwrap();
    let summary = |h: &str| plans[&host(h)].summary;
    let replaced = |n| PlanSummary {
        flows_replaced: n,
        ..PlanSummary::default()
    };
    // h1 and gw: B's forwarding flow now points at the tunnel to h3.
    assert_eq!(summary("h1"), replaced(1));
    assert_eq!(summary("gw"), replaced(1));
    // h2: B's source check goes; local delivery becomes a tunnel flow.
    assert_eq!(
        summary("h2"),
        PlanSummary {
            flows_added: 1,
            flows_deleted: 2,
            ..PlanSummary::default()
        }
    );
    // h3: B's source check at the new port; the tunnel flow becomes local.
    assert_eq!(
        summary("h3"),
        PlanSummary {
            flows_added: 2,
            flows_deleted: 1,
            ..PlanSummary::default()
        }
    );

    // The controller floods the RARP in VI 1, after the flows.
    let flood = f.packet_out(h, &d.packet_outs[0]).unwrap();
    assert_eq!(
        places(&flood),
        vi_ports_except(&f.topology, 1, ("h3", NEW_PORT))
    );

    // Traffic to B now reaches the new place only, in VI 1; VI 2's B stays.
    let a = vm("A");
    for (vi, want) in [(1, ("h3", NEW_PORT)), (2, ("h2", b.port_in(2)))] {
        let bytes = frame(b.mac(), a.mac(), a.vlan, IPV4);
        let trip = f.inject(&a.host(), a.port_in(vi), &bytes).unwrap();
        assert_eq!(places(&trip), [(want.0.to_owned(), want.1)], "vi{vi}");
    }
    // B's frames from its new port are no longer unknown there.
    let bytes = frame(a.mac(), b.mac(), b.vlan, IPV4);
    let trip = f.inject(&host("h3"), NEW_PORT, &bytes).unwrap();
    assert!(trip.to_controller.is_empty());
    assert_eq!(places(&trip), [("h1".to_owned(), a.port_in(1))]);
}

#[test]
fn switches_that_disagree_do_not_bounce_frames() {
    // For a moment h1 believes a MAC is on h2, h2 that it is on h3 and h3
    // that it is on h1 (moves half applied). Only frames that entered from
    // a VM port may leave by tunnel, so the frame stops at h2 (which
    // delivers it to its own ports of the VI, as any frame by tunnel for a
    // MAC it does not place here) instead of going round for ever.
    // (Between two hosts alone the rule that drops output to the ingress
    // port would already stop it.)
    let (mut f, _) = fabric();
    let a = vm("A");
    let ghost = mac("52:54:00:00:00:66");
    for (h, believed) in [("h1", ("h2", 2)), ("h2", ("h3", 3)), ("h3", ("h1", 1))] {
        let mut view = Registry::new();
        let spec = EntrySpec {
            key: MacKey {
                vi: ViId(1),
                vlan: a.vlan(),
                mac: ghost,
            },
            location: Some(Location::Port {
                host: host(believed.0),
                ofport: believed.1,
            }),
            ips: vec![],
        };
        view.put(Timestamp(0), &f.topology, &spec).unwrap();
        install(&mut f, &view, h);
    }
    let bytes = frame(ghost, a.mac(), a.vlan, IPV4);
    let trip = f.inject(&a.host(), a.port_in(1), &bytes).unwrap();
    let mut on_h2: Vec<(String, u32)> = f
        .topology
        .vm_ports_on(&host("h2"))
        .filter(|p| p.vi == ViId(1))
        .map(|p| ("h2".to_owned(), p.ofport))
        .collect();
    on_h2.sort();
    assert!(!on_h2.is_empty());
    assert_eq!(places(&trip), on_h2);
    assert_eq!(trip.tunnel_hops, 1);
}

/// Brings `h`'s switch alone to what the compiler wants for `r`: the
/// others keep what they hold.
fn install(f: &mut Fabric, r: &Registry, h: &str) {
    let desired = compile(r, &f.topology, &host(h));
    let sw = f.switch_mut(&host(h)).expect("a test host");
    let plan = reconcile(&desired, sw.state(), Foreign::Delete);
    sw.apply_all(&plan.messages)
        .expect("the compiled flows install");
}

#[test]
fn frames_for_a_guest_whose_port_left_go_to_the_controller_until_every_switch_knows_its_move() {
    let (mut f, mut r) = fabric();
    let (a, b) = (vm("A"), vm("B"));
    let key = MacKey {
        vi: ViId(1),
        vlan: b.vlan(),
        mac: b.mac(),
    };
    // B's port leaves h2, its last port in VI 1; the controller remembers
    // it as departed, with B's MAC.
    f.topology.vm_ports.remove(&(host("h2"), b.port_in(1)));
    f.topology.departed.insert(
        (host("h2"), b.port_in(1)),
        DepartedPort {
            vi: ViId(1),
            macs: BTreeSet::from([key]),
        },
    );
    assert!(f.topology.vi_members()[&ViId(1)].contains(&host("h2")));
    f.converge(&r).unwrap();
    let to_b = frame(b.mac(), a.mac(), a.vlan, IPV4);
    let up = |f: &Fabric| {
        let trip = f.inject(&a.host(), a.port_in(1), &to_b).unwrap();
        assert!(trip.delivered.is_empty(), "{trip:?}");
        let [(h, pi)] = &trip.to_controller[..] else {
            panic!("{trip:?}")
        };
        assert_eq!((h.0.as_str(), pi.table_id), ("h2", TABLE_FORWARD));
        assert_eq!(pi.tun_id, u64::from(gre_key(1)), "from the tunnel");
        assert_eq!(pi.frame, to_b);
    };
    // While B is nowhere, h2 sends its frames up (to be held).
    up(&f);
    // VI 2's B, on another port of h2, is untouched.
    let trip = f
        .inject(
            &a.host(),
            a.port_in(2),
            &frame(b.mac(), a.mac(), a.vlan, IPV4),
        )
        .unwrap();
    assert_eq!(places(&trip), [("h2".to_owned(), b.port_in(2))]);

    // B resumes on h3 and announces itself; h2 and h3 take the move, h1
    // not yet: what h1 still sends to h2 goes up from h2 (and on from the
    // controller), never back into a tunnel.
    let new_port = resume_on_h3(&mut f, &mut r, b.mac(), b.vlan);
    // The controller remembers where it moved from.
    f.topology
        .moved_from
        .insert(host("h2"), BTreeSet::from([key]));
    for h in ["h2", "h3", "gw"] {
        install(&mut f, &r, h);
    }
    up(&f);
    // Every switch has the move: straight to h3.
    f.converge(&r).unwrap();
    let trip = f.inject(&a.host(), a.port_in(1), &to_b).unwrap();
    assert_eq!(places(&trip), [("h3".to_owned(), new_port)]);
    assert!(trip.to_controller.is_empty());

    // The departure and the move are over: h2 leaves VI 1 and holds none
    // of its flows.
    f.topology.departed.clear();
    f.topology.moved_from.clear();
    f.converge(&r).unwrap();
    assert!(!f.topology.vi_members()[&ViId(1)].contains(&host("h2")));
    // Only VI 2's classification is left: its port and its key.
    let h2 = compile(&r, &f.topology, &host("h2"));
    let classify: Vec<_> = h2
        .flows
        .values()
        .filter(|fl| fl.table == TABLE_CLASSIFY && fl.priority >= 90)
        .map(|fl| fl.match_.clone())
        .collect();
    assert_eq!(classify.len(), 2, "{classify:?}");
    assert!(classify.contains(&ofp::oxm::Match::new().tunnel_id(u64::from(gre_key(2)))));
    let trip = f.inject(&a.host(), a.port_in(1), &to_b).unwrap();
    assert_eq!(places(&trip), [("h3".to_owned(), new_port)]);
}

/// `mac` resumes on a new port of h3 (in VI 1) and announces itself by
/// RARP, which the controller takes as its move in `r`; the new port.
fn resume_on_h3(f: &mut Fabric, r: &mut Registry, mac: MacAddr, vlan: Option<u16>) -> u32 {
    const NEW_PORT: u32 = 6;
    f.topology.add_vm_port("h3", NEW_PORT, ViId(1));
    let rarp = arp_bytes(&with_vlan(ArpRepr::rarp_announce(mac), vlan));
    let trip = f.inject(&host("h3"), NEW_PORT, &rarp).expect("h3 runs it");
    let (h, pi) = trip.to_controller.first().expect("the RARP goes up");
    let d = handle_packet_in(Timestamp(5), r, &f.topology, h, &pi.meta(), &pi.frame);
    assert_eq!(d.changes.first().map(|c| c.kind()), Some(ChangeKind::Moved));
    NEW_PORT
}

#[test]
fn frames_for_a_mac_that_left_the_operators_data_center_reach_it_from_the_gateway() {
    // The operator's guest behind gw migrates into h3. Until h1 takes the
    // move it still sends the guest's frames to gw, which sends them up
    // (the controller sends them on) instead of back into the WAN.
    let (mut f, mut r) = fabric();
    let a = vm("A");
    let remote = mac(REMOTE_MAC);
    let key = MacKey {
        vi: ViId(1),
        vlan: a.vlan(),
        mac: remote,
    };
    let new_port = resume_on_h3(&mut f, &mut r, remote, a.vlan);
    f.topology
        .moved_from
        .insert(host("gw"), BTreeSet::from([key]));
    for h in ["gw", "h2", "h3"] {
        install(&mut f, &r, h);
    }
    let to_guest = frame(remote, a.mac(), a.vlan, IPV4);
    let trip = f.inject(&a.host(), a.port_in(1), &to_guest).unwrap();
    assert!(places(&trip).is_empty(), "not into the WAN: {trip:?}");
    let [(h, pi)] = &trip.to_controller[..] else {
        panic!("{trip:?}")
    };
    assert_eq!((h.0.as_str(), pi.table_id), ("gw", TABLE_FORWARD));
    // Once h1 has the move, straight to h3.
    install(&mut f, &r, "h1");
    let trip = f.inject(&a.host(), a.port_in(1), &to_guest).unwrap();
    assert_eq!(places(&trip), [("h3".to_owned(), new_port)]);
    // Without the record of the move, gw would have sent them back into
    // the operator's data center, where the guest no longer is.
    f.topology.moved_from.clear();
    install(&mut f, &r, "gw");
    install(&mut f, &r, "h1");
    let stale = compile(&registry(&f.topology), &f.topology, &host("h1"));
    let sw = f.switch_mut(&host("h1")).unwrap();
    let plan = reconcile(&stale, sw.state(), Foreign::Delete);
    sw.apply_all(&plan.messages).unwrap();
    let trip = f.inject(&a.host(), a.port_in(1), &to_guest).unwrap();
    assert!(trip.to_controller.is_empty());
    assert_eq!(places(&trip), [("gw".to_owned(), GATEWAY_UPLINK)]);
}
