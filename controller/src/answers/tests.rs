use super::*;
use crate::compiler::TABLE_ARP;
use crate::fixtures::{host, port as vm_port, world, PORTS};
use crate::model::Vlan;
use crate::packet_in::{handle_packet_in, PacketInMeta};
use crate::registry::{EntrySpec, SeedEntry, Timestamp};
use ofp::message::{Message, OfpMessage, PacketIn, PacketOut};
use ofp::oxm::Match;
use ofp::packet::VlanTag;
use proptest::prelude::*;
use std::net::Ipv4Addr;

const HOST_OF_CONN: [(u64, &str); 4] = [(1, "a"), (2, "b"), (3, "c"), (4, "gw")];

fn mac(i: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, i])
}

fn ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i)
}

fn snapshot(r: &Registry, t: &Topology) -> ArpSnapshot {
    let names: Vec<(ConnId, HostName)> = HOST_OF_CONN
        .iter()
        .map(|(c, h)| (ConnId(*c), host(h)))
        .collect();
    ArpSnapshot::build(r, t, names.iter().map(|(c, h)| (*c, h)))
}

fn packet_in(table_id: u8, reason: PacketInReason, match_: Match, frame: Vec<u8>) -> Vec<u8> {
    let pi = PacketIn {
        buffer_id: NO_BUFFER,
        total_len: u16::try_from(frame.len()).unwrap(),
        reason,
        table_id,
        cookie: 0,
        match_,
        data: frame,
    };
    OfpMessage::new(5, Message::PacketIn(pi)).to_bytes()
}

fn frame(a: &ArpRepr) -> Vec<u8> {
    let mut b = Vec::new();
    a.emit(&mut b);
    b
}

/// What the control loop decides for the same PacketIn from `conn`, as
/// `Control::on_packet_in` would reach `handle_packet_in`: `None` when it
/// would not get that far (an unknown switch or an invalid match).
fn reference(
    r: &Registry,
    t: &Topology,
    conn: ConnId,
    wire: &[u8],
) -> Option<crate::packet_in::Decision> {
    let (_, name) = HOST_OF_CONN.iter().find(|(c, _)| ConnId(*c) == conn)?;
    let msg = OfpMessage::parse(wire).ok()?;
    let Message::PacketIn(pi) = msg.message else {
        return None;
    };
    let meta = PacketInMeta::from_packet_in(&pi)?;
    let mut r = r.clone();
    Some(handle_packet_in(
        Timestamp(7),
        &mut r,
        t,
        &host(name),
        &meta,
        &pi.data,
    ))
}

/// The fast answer, encoded as the session would send it.
fn fast(s: &ArpSnapshot, conn: ConnId, wire: &[u8]) -> Option<Vec<u8>> {
    let view = PacketInView::new_checked(wire).ok()?;
    let mut reply = Vec::new();
    let out_port = s.answer(conn, &view, &mut reply)?;
    let mut bytes = Vec::new();
    PacketOutRef {
        buffer_id: NO_BUFFER,
        in_port: port::CONTROLLER,
        actions: &reply_actions(out_port),
        data: &reply,
    }
    .encode(9, &mut bytes);
    Some(bytes)
}

fn encoded(p: &PacketOut) -> Vec<u8> {
    let mut b = Vec::new();
    p.encode(9, &mut b);
    b
}

/// VI 1 knows mac(2) at b:1 (seeded) answering for 10.0.0.2, and has
/// learned the requester mac(1) at a:1 with 10.0.0.1; all on VLAN 10.
fn known() -> Registry {
    let seed = [SeedEntry {
        mac: mac(2),
        ip: Some(ip(2)),
        vlan: Vlan::Tagged(10),
        location: Some(Location::Port {
            host: host("b"),
            ofport: 1,
        }),
    }];
    let mut r = Registry::new();
    r.seed(Timestamp(0), &world(), ViId(1), &seed).unwrap();
    let hello = tagged(ArpRepr::request(mac(1), ip(1), ip(3)), 10);
    assert_eq!(
        r.learn_arp(Timestamp(1), &vm_port(&world(), "a", 1), &hello)
            .len(),
        2
    );
    r
}

fn tagged(mut a: ArpRepr, vid: u16) -> ArpRepr {
    a.tags.push(VlanTag {
        tpid: 0x8100,
        tci: vid,
    });
    a
}

/// An ARP request on VLAN 10 from mac(src) with ip(spa) for ip(tpa), sent
/// up by `table` from `in_port`.
fn request(table: u8, in_port: u32, (src, spa, tpa): (u8, u8, u8)) -> Vec<u8> {
    let req = tagged(ArpRepr::request(mac(src), ip(spa), ip(tpa)), 10);
    let m = Match::new().in_port(in_port);
    packet_in(table, PacketInReason::Action, m, frame(&req))
}

#[test]
fn a_request_for_a_known_ip_is_answered_as_the_control_loop_answers_it() {
    let (r, t) = (known(), world());
    let wire = request(TABLE_ARP, 1, (1, 1, 2));
    let got = fast(&snapshot(&r, &t), ConnId(1), &wire).expect("answered");
    let d = reference(&r, &t, ConnId(1), &wire).unwrap();
    assert_eq!(d.kind, PacketInKind::ArpAnswered);
    assert!(d.changes.is_empty());
    assert_eq!(got, encoded(&d.packet_outs[0]));
}

#[test]
fn what_the_control_loop_must_see_is_not_answered() {
    let (r, t) = (known(), world());
    let s = snapshot(&r, &t);
    // (connection, table, in_port, (sender MAC, sender IP, target IP))
    let cases = [
        // Another switch: the learned requester would move to c:3.
        (3, TABLE_ARP, 3, (1, 1, 2)),
        // A sender the registry does not know yet.
        (1, TABLE_ARP, 1, (9, 9, 2)),
        // An unknown target goes toward the gateway.
        (1, TABLE_ARP, 1, (1, 1, 7)),
        // The copy from the interception table went on in the datapath.
        (1, TABLE_INTERCEPT, 1, (1, 1, 2)),
        // A switch with no host.
        (9, TABLE_ARP, 1, (1, 1, 2)),
        // A tunnel port.
        (1, TABLE_ARP, 101, (1, 1, 2)),
    ];
    let cases =
        cases.map(|(conn, table, in_port, arp)| (ConnId(conn), request(table, in_port, arp)));
    for (conn, wire) in cases {
        assert_eq!(fast(&s, conn, &wire), None);
        if let Some(d) = reference(&r, &t, conn, &wire) {
            assert!(d.kind != PacketInKind::ArpAnswered || !d.changes.is_empty());
        }
    }
}

#[test]
fn a_packet_in_whose_match_does_not_decode_is_left_to_the_session() {
    let (r, t) = (known(), world());
    let req = tagged(ArpRepr::request(mac(1), ip(1), ip(2)), 10);
    let m = Match::new().in_port(1).in_phy_port(1);
    let mut wire = packet_in(TABLE_ARP, PacketInReason::Action, m, frame(&req));
    // Turn the in_phy_port TLV into a second in_port.
    let at = wire
        .windows(4)
        .position(|w| w == [0x80, 0x00, 0x02, 0x04])
        .unwrap();
    wire[at + 2] = 0;
    assert!(OfpMessage::parse(&wire).is_err());
    assert_eq!(fast(&snapshot(&r, &t), ConnId(1), &wire), None);
}

#[test]
fn a_connection_answers_only_once_the_control_loop_has_caught_up() {
    let (r, t) = (known(), world());
    let metrics = Metrics::default();
    let slot = Arc::new(AnswerSlot::new(&metrics));
    let acked = Arc::new(AtomicU64::new(0));
    let mut conn = ConnAnswers::new(ConnId(1), slot.clone(), acked.clone());
    let wire = request(TABLE_ARP, 1, (1, 1, 2));
    let view = PacketInView::new_checked(&wire).unwrap();

    conn.begin_read();
    assert!(conn.answer(&view).is_none(), "nothing published yet");
    slot.publish(Some(Arc::new(snapshot(&r, &t))));
    conn.begin_read();
    assert!(conn.answer(&view).is_some());

    // A PacketIn went to the control loop: no answers until it is acked.
    conn.forwarded();
    conn.begin_read();
    assert!(conn.answer(&view).is_none());
    acked.store(1, Ordering::Release);
    conn.begin_read();
    assert!(conn.answer(&view).is_some());

    // Withdrawn: the control loop decides again.
    slot.publish(None);
    conn.begin_read();
    assert!(conn.answer(&view).is_none());

    let text = metrics.render();
    assert!(
        text.lines()
            .any(|l| l == "iris_packet_ins_total{reason=\"arp_answered\"} 2"),
        "{text}"
    );
}

#[test]
fn after_one_packet_in_goes_to_the_control_loop_the_rest_of_the_read_follows() {
    let (r, t) = (known(), world());
    let slot = Arc::new(AnswerSlot::new(&Metrics::default()));
    slot.publish(Some(Arc::new(snapshot(&r, &t))));
    let mut conn = ConnAnswers::new(ConnId(1), slot, Arc::default());
    let good = tagged(ArpRepr::request(mac(1), ip(1), ip(2)), 10);
    let garp = tagged(ArpRepr::gratuitous(mac(1), ip(2)), 10);
    let arp = |a: &ArpRepr| {
        packet_in(
            TABLE_ARP,
            PacketInReason::Action,
            Match::new().in_port(1),
            frame(a),
        )
    };
    let (good, garp) = (arp(&good), arp(&garp));
    let (good, garp) = (
        PacketInView::new_checked(&good).unwrap(),
        PacketInView::new_checked(&garp).unwrap(),
    );
    conn.begin_read();
    assert!(conn.answer(&good).is_some());
    assert!(conn.answer(&garp).is_none());
    assert!(conn.answer(&good).is_none(), "must not overtake the GARP");
}

/// A registry built by random learning, seeding and API writes over the
/// fixture world, from small pools so that entries collide.
fn registry() -> impl Strategy<Value = Registry> {
    let op = (
        0u8..4,
        0usize..PORTS.len(),
        1u8..5,
        1u8..5,
        any::<bool>(),
        any::<bool>(),
    );
    prop::collection::vec(op, 0..24).prop_map(|ops| {
        let t = world();
        let mut r = Registry::new();
        for (i, (kind, p, m, a, tag, flag)) in ops.into_iter().enumerate() {
            let (h, ofport, vi) = PORTS[p];
            let port = vm_port(&t, h, ofport);
            let vlan = if tag {
                Vlan::Tagged(10)
            } else {
                Vlan::Untagged
            };
            let now = Timestamp(i as u64);
            let with_tag = |x: ArpRepr| if tag { tagged(x, 10) } else { x };
            match kind {
                0 => {
                    let arp = with_tag(ArpRepr::request(mac(m), ip(a), ip(a % 4 + 1)));
                    r.learn_arp(now, t.sighting(&port), &arp);
                }
                1 => {
                    let arp = with_tag(ArpRepr::gratuitous(mac(m), ip(a)));
                    r.learn_arp(now, t.sighting(&port), &arp);
                }
                2 => {
                    let spec = EntrySpec {
                        key: MacKey {
                            vi: ViId(vi),
                            vlan,
                            mac: mac(m),
                        },
                        location: flag.then(|| Location::Port {
                            host: host(h),
                            ofport,
                        }),
                        ips: vec![ip(a)],
                    };
                    let _ = r.put(now, &t, &spec);
                }
                _ => {
                    let seed = [SeedEntry {
                        mac: mac(m),
                        ip: flag.then(|| ip(a)),
                        vlan,
                        location: None,
                    }];
                    let _ = r.seed(now, &t, ViId(vi), &seed);
                }
            }
        }
        r
    })
}

/// A PacketIn as a switch might send it up, mostly ARP requests.
fn wire() -> impl Strategy<Value = Vec<u8>> {
    (
        (
            prop::sample::select(vec![TABLE_ARP, TABLE_ARP, 0, 1, 3]),
            any::<bool>(),
            prop::sample::select(vec![1u32, 1, 2, 3, 7, 101, 9]),
        ),
        (0u8..6, 1u8..5, 1u8..5, 0u8..5, 0u8..5),
        (0u8..3, any::<bool>()),
    )
        .prop_map(
            |((table, action, in_port), (op, src, sha, spa, tpa), (tag, tunnel))| {
                let reason = if action {
                    PacketInReason::Action
                } else {
                    PacketInReason::NoMatch
                };
                let spa = if spa == 0 {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    ip(spa)
                };
                let mut arp = match op {
                    0 => ArpRepr::gratuitous(mac(src), ip(tpa.max(1))),
                    1 => ArpRepr::rarp_announce(mac(src)),
                    _ => ArpRepr::request(mac(src), spa, ip(tpa.max(1))),
                };
                if op == 2 {
                    arp.sha = mac(sha);
                }
                if op == 3 {
                    arp.op = ArpOp::Reply;
                }
                match tag {
                    1 => arp = tagged(arp, 10),
                    2 => arp = tagged(arp, 0),
                    _ => {}
                }
                let mut m = Match::new().in_port(in_port);
                if tunnel {
                    m = m.tunnel_id(1001);
                }
                packet_in(table, reason, m, frame(&arp))
            },
        )
}

/// Requests the registry can answer without learning: from every MAC
/// placed on a port, with each IP bound to it, for every IP of its VI.
fn likely_answered(r: &Registry) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (k, e) in r.macs() {
        let Some(Location::Port { ofport, .. }) = e.location else {
            continue;
        };
        let own = r
            .ips()
            .filter(|(i, b)| i.vi == k.vi && i.vlan == k.vlan && b.mac == k.mac);
        for (own, _) in own {
            for (target, _) in r.ips_in(k.vi).filter(|(i, _)| i.vlan == k.vlan) {
                let mut arp = ArpRepr::request(k.mac, own.ip, target.ip);
                if let Vlan::Tagged(v) = k.vlan {
                    arp = tagged(arp, v);
                }
                let m = Match::new().in_port(ofport);
                out.push(packet_in(TABLE_ARP, PacketInReason::Action, m, frame(&arp)));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What a connection answers is exactly what the control loop would
    /// send, and the control loop learns nothing from it; and whatever the
    /// control loop would answer without learning, the connection answers.
    #[test]
    fn answers_are_the_control_loops(
        r in registry(),
        wires in prop::collection::vec(wire(), 1..8),
    ) {
        let t = world();
        let s = snapshot(&r, &t);
        let likely = likely_answered(&r);
        let all = wires
            .iter()
            .chain(&likely)
            .flat_map(|w| (1..6).map(move |c| (w, ConnId(c))));
        for (wire, conn) in all {
            let got = fast(&s, conn, wire);
            let want = reference(&r, &t, conn, wire);
            let table = PacketInView::new_checked(wire).unwrap().table_id();
            match (&got, &want) {
                (Some(bytes), Some(d)) => {
                    prop_assert_eq!(&d.kind, &PacketInKind::ArpAnswered);
                    prop_assert!(d.changes.is_empty(), "{:?}", d.changes);
                    prop_assert_eq!(d.packet_outs.len(), 1);
                    prop_assert_eq!(bytes, &encoded(&d.packet_outs[0]));
                }
                (Some(_), None) => prop_assert!(false, "answered what the control loop drops"),
                (None, Some(d)) => prop_assert!(
                    d.kind != PacketInKind::ArpAnswered
                        || !d.changes.is_empty()
                        || table == TABLE_CLASSIFY,
                    "not answered: {:?}", d
                ),
                (None, None) => {}
            }
        }
    }
}
