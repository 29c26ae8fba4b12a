use super::*;
use crate::fixtures::{host, port, world};
use ofp::packet::VlanTag;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn tagged(mut a: ArpRepr, vid: u16) -> ArpRepr {
    a.tags.push(VlanTag {
        tpid: 0x8100,
        tci: vid,
    });
    a
}

fn req(m: &str, spa: &str, tpa: &str) -> ArpRepr {
    ArpRepr::request(mac(m), ip(spa), ip(tpa))
}

/// A request on VLAN 10, the VLAN most tests use.
fn req10(m: &str, spa: &str, tpa: &str) -> ArpRepr {
    tagged(req(m, spa, tpa), 10)
}

/// M1 at 10.0.0.1 on VLAN 10, placed at `location`.
fn seed_m1(location: Option<Location>) -> SeedEntry {
    SeedEntry {
        mac: mac(M1),
        ip: Some(ip("10.0.0.1")),
        vlan: Vlan::Tagged(10),
        location,
    }
}

const M1: &str = "52:54:00:00:00:01";
const M2: &str = "52:54:00:00:00:02";

fn key(vi: u32, vid: u16, m: &str) -> MacKey {
    MacKey {
        vi: ViId(vi),
        vlan: Vlan::Tagged(vid),
        mac: mac(m),
    }
}

fn ip_key(vi: u32, vid: u16, i: &str) -> IpKey {
    IpKey {
        vi: ViId(vi),
        vlan: Vlan::Tagged(vid),
        ip: ip(i),
    }
}

fn at(h: &str, ofport: u32) -> Option<Location> {
    Some(Location::Port {
        host: host(h),
        ofport,
    })
}

fn kinds(c: &[RegistryChange]) -> Vec<ChangeKind> {
    c.iter().map(RegistryChange::kind).collect()
}

#[test]
fn arp_from_a_vm_port_teaches_location_and_ip() {
    let t = world();
    let mut r = Registry::new();
    let req = req10(M1, "10.0.0.1", "10.0.0.2");
    let c = r.learn_arp(Timestamp(5), &port(&t, "a", 1), &req);
    assert_eq!(kinds(&c), [ChangeKind::Added, ChangeKind::Added]);
    let e = r.mac(&key(1, 10, M1)).unwrap();
    assert_eq!(
        (e.location.clone(), e.origin, e.since),
        (at("a", 1), Origin::Learned, Timestamp(5))
    );
    assert_eq!(r.ip(&ip_key(1, 10, "10.0.0.1")).unwrap().mac, mac(M1));
    // The same frame again changes nothing.
    assert!(r
        .learn_arp(Timestamp(6), &port(&t, "a", 1), &req)
        .is_empty());
    // Untagged is its own VLAN; VI 2 is its own world.
    assert_eq!(r.get(&key(1, 10, M1)).unwrap().ips, [ip("10.0.0.1")]);
    assert!(r
        .mac(&MacKey {
            vlan: Vlan::Untagged,
            ..key(1, 10, M1)
        })
        .is_none());
    assert!(r.mac(&key(2, 10, M1)).is_none());
}

#[test]
fn a_sighting_moves_a_learned_entry_but_never_a_pinned_one() {
    let t = world();
    let mut r = Registry::new();
    let req = req10(M1, "10.0.0.1", "10.0.0.2");
    r.learn_arp(Timestamp(1), &port(&t, "a", 1), &req);
    let c = r.learn_arp(Timestamp(2), &port(&t, "b", 1), &req);
    assert_eq!(kinds(&c), [ChangeKind::Moved]);
    let (k, from, to) = c[0].as_move().unwrap();
    assert_eq!(
        (k, from.cloned(), to.cloned()),
        (&key(1, 10, M1), at("a", 1), at("b", 1))
    );

    // Seeded: a plain ARP from elsewhere is a guess and is ignored.
    let mut r = Registry::new();
    r.seed(Timestamp(0), &t, ViId(1), &[seed_m1(at("a", 1))])
        .unwrap();
    assert!(r
        .learn_arp(Timestamp(2), &port(&t, "b", 1), &req)
        .is_empty());
    assert!(r
        .learn_source(Timestamp(2), &port(&t, "b", 1), Vlan::Tagged(10), mac(M1))
        .is_empty());
    // Nor does a plain ARP rebind its IP to another MAC.
    let thief = req10(M2, "10.0.0.1", "10.0.0.2");
    let c = r.learn_arp(Timestamp(3), &port(&t, "b", 1), &thief);
    assert_eq!(kinds(&c), [ChangeKind::Added], "only M2's own location");
    assert_eq!(r.ip(&ip_key(1, 10, "10.0.0.1")).unwrap().mac, mac(M1));
}

#[test]
fn announcements_move_seeded_entries_within_their_vi() {
    let t = world();
    let mut r = Registry::new();
    let seed = [seed_m1(at("a", 1))];
    r.seed(Timestamp(0), &t, ViId(1), &seed).unwrap();

    // RARP from b:1 (VI 1): moves it.
    let rarp = tagged(ArpRepr::rarp_announce(mac(M1)), 10);
    let c = r.learn_arp(Timestamp(7), &port(&t, "b", 1), &rarp);
    assert_eq!(kinds(&c), [ChangeKind::Moved]);
    let e = r.mac(&key(1, 10, M1)).unwrap();
    assert_eq!(
        (e.location.clone(), e.origin, e.since),
        (at("b", 1), Origin::Announced, Timestamp(7))
    );

    // The same RARP again: nothing. A plain ARP from elsewhere: still pinned.
    assert!(r
        .learn_arp(Timestamp(8), &port(&t, "b", 1), &rarp)
        .is_empty());
    let req = req10(M1, "10.0.0.1", "10.0.0.9");
    assert!(r
        .learn_arp(Timestamp(8), &port(&t, "c", 3), &req)
        .is_empty());

    // A GARP from c:3 moves it again and keeps the IP.
    let garp = tagged(ArpRepr::gratuitous(mac(M1), ip("10.0.0.1")), 10);
    let c = r.learn_arp(Timestamp(9), &port(&t, "c", 3), &garp);
    assert_eq!(kinds(&c), [ChangeKind::Moved]);
    assert_eq!(r.mac(&key(1, 10, M1)).unwrap().location, at("c", 3));

    // The same MAC announced on a VI 2 port is another entry altogether.
    let c = r.learn_arp(Timestamp(10), &port(&t, "a", 2), &rarp);
    assert_eq!(kinds(&c), [ChangeKind::Added]);
    assert_eq!(r.mac(&key(1, 10, M1)).unwrap().location, at("c", 3));
    assert_eq!(r.mac(&key(2, 10, M1)).unwrap().location, at("a", 2));
}

#[test]
fn a_garp_rebinds_a_pinned_ip() {
    let t = world();
    let mut r = Registry::new();
    let seed = [seed_m1(None)];
    r.seed(Timestamp(0), &t, ViId(1), &seed).unwrap();
    let garp = tagged(ArpRepr::gratuitous(mac(M2), ip("10.0.0.1")), 10);
    let c = r.learn_arp(Timestamp(1), &port(&t, "a", 1), &garp);
    assert_eq!(kinds(&c), [ChangeKind::Added, ChangeKind::Moved]);
    let e = r.ip(&ip_key(1, 10, "10.0.0.1")).unwrap();
    assert_eq!((e.mac, e.origin), (mac(M2), Origin::Announced));
    assert!(r.get(&key(1, 10, M1)).unwrap().ips.is_empty());
    assert_eq!(r.get(&key(1, 10, M2)).unwrap().ips, [ip("10.0.0.1")]);
}

#[test]
fn an_unplaced_seed_is_placed_by_its_first_frame_and_then_pinned() {
    let t = world();
    let mut r = Registry::new();
    let seed = [SeedEntry {
        mac: mac(M1),
        ip: Some(ip("10.0.0.1")),
        vlan: Vlan::Untagged,
        location: None,
    }];
    let c = r.seed(Timestamp(0), &t, ViId(1), &seed).unwrap();
    assert_eq!(kinds(&c), [ChangeKind::Added, ChangeKind::Added]);
    let k = MacKey {
        vi: ViId(1),
        vlan: Vlan::Untagged,
        mac: mac(M1),
    };
    let c = r.learn_source(Timestamp(3), &port(&t, "b", 1), Vlan::Untagged, mac(M1));
    assert_eq!(c[0].as_move().map(|(_, f, _)| f.cloned()), Some(None));
    let e = r.mac(&k).unwrap();
    assert_eq!((e.location.clone(), e.origin), (at("b", 1), Origin::Seeded));
    assert!(r
        .learn_source(Timestamp(4), &port(&t, "a", 1), Vlan::Untagged, mac(M1))
        .is_empty());
}

#[test]
fn frames_that_prove_nothing_teach_nothing() {
    let t = world();
    let mut r = Registry::new();
    let p = port(&t, "a", 1);
    // A priority tag (VID 0) is not a VLAN Iris keys on.
    assert!(r
        .learn_arp(
            Timestamp(0),
            &p,
            &tagged(req(M1, "10.0.0.1", "10.0.0.2"), 0)
        )
        .is_empty());
    // Multicast and zero sources.
    for bad in ["01:00:5e:00:00:01", "00:00:00:00:00:00"] {
        assert!(r
            .learn_source(Timestamp(0), &p, Vlan::Untagged, mac(bad))
            .is_empty());
    }
    // A probe (sender IP 0.0.0.0) places the MAC but binds no IP.
    let probe = req(M1, "0.0.0.0", "10.0.0.1");
    assert_eq!(
        kinds(&r.learn_arp(Timestamp(0), &p, &probe)),
        [ChangeKind::Added]
    );
    assert_eq!(r.len(), (1, 0));
    // A sender hardware address that is not the frame's source binds nothing.
    let mut proxy = req(M2, "10.0.0.7", "10.0.0.1");
    proxy.eth_src = mac("52:54:00:00:00:03");
    r.learn_arp(Timestamp(0), &p, &proxy);
    assert_eq!(r.len(), (2, 0));
}

#[test]
fn seeding_is_validated_whole_and_idempotent() {
    let t = world();
    let mut r = Registry::new();
    let good = SeedEntry {
        mac: mac(M1),
        ip: Some(ip("10.0.0.1")),
        vlan: Vlan::Tagged(10),
        location: Some(Location::BehindGateway {
            gateway: host("gw"),
        }),
    };
    let bad_cases: Vec<(Vec<SeedEntry>, ViId, &str)> = vec![
        (
            vec![SeedEntry {
                mac: mac("01:00:00:00:00:01"),
                ..good.clone()
            }],
            ViId(1),
            "multicast",
        ),
        (
            vec![SeedEntry {
                vlan: Vlan::Tagged(4095),
                ..good.clone()
            }],
            ViId(1),
            "VLAN 4095",
        ),
        (vec![good.clone()], ViId(9), "vi9"),
        (vec![good.clone()], ViId(2), "not a gateway of vi2"),
        (
            vec![SeedEntry {
                location: at("a", 2),
                ..good.clone()
            }],
            ViId(1),
            "belongs to vi2",
        ),
        (
            vec![SeedEntry {
                location: at("zz", 1),
                ..good.clone()
            }],
            ViId(1),
            "host zz",
        ),
        (
            vec![
                good.clone(),
                SeedEntry {
                    mac: mac(M2),
                    ..good.clone()
                },
            ],
            ViId(1),
            "entry 1 contradicts entry 0 for 10.0.0.1",
        ),
        (
            vec![
                good.clone(),
                SeedEntry {
                    location: at("a", 1),
                    ip: None,
                    ..good.clone()
                },
            ],
            ViId(1),
            "entry 1",
        ),
    ];
    for (entries, vi, says) in bad_cases {
        let e = r.seed(Timestamp(0), &t, vi, &entries).unwrap_err();
        assert!(e.to_string().contains(says), "{e} should say {says}");
        assert!(r.is_empty(), "a refused seed changes nothing");
    }
    // The same MAC twice with one location is one entry.
    let twice = [
        good.clone(),
        SeedEntry {
            ip: Some(ip("10.0.0.2")),
            location: None,
            ..good.clone()
        },
    ];
    let c = r.seed(Timestamp(0), &t, ViId(1), &twice).unwrap();
    assert_eq!(kinds(&c), [ChangeKind::Added; 3]);
    assert!(r
        .seed(Timestamp(1), &t, ViId(1), &twice)
        .unwrap()
        .is_empty());
}

#[test]
fn reseeding_takes_over_guesses_but_not_announcements() {
    let t = world();
    let mut r = Registry::new();
    let p = port(&t, "a", 1);
    r.learn_arp(Timestamp(0), &p, &req10(M1, "10.0.0.1", "10.0.0.2"));
    let seed = [seed_m1(None)];
    let c = r.seed(Timestamp(1), &t, ViId(1), &seed).unwrap();
    assert_eq!(kinds(&c), [ChangeKind::Updated, ChangeKind::Updated]);
    assert!(c.iter().all(|c| !c.affects_flows()));
    let e = r.mac(&key(1, 10, M1)).unwrap();
    assert_eq!((e.location.clone(), e.origin), (at("a", 1), Origin::Seeded));

    r.learn_arp(
        Timestamp(2),
        &port(&t, "b", 1),
        &tagged(ArpRepr::rarp_announce(mac(M1)), 10),
    );
    let moved = [SeedEntry {
        location: at("c", 3),
        ..seed[0].clone()
    }];
    assert!(r
        .seed(Timestamp(3), &t, ViId(1), &moved)
        .unwrap()
        .is_empty());
    assert_eq!(r.mac(&key(1, 10, M1)).unwrap().location, at("b", 1));
}

#[test]
fn the_api_puts_whole_entries_and_deletes_them_with_their_ips() {
    let t = world();
    let mut r = Registry::new();
    let p = port(&t, "a", 1);
    r.learn_arp(Timestamp(0), &p, &req10(M2, "10.0.0.5", "10.0.0.2"));
    let spec = EntrySpec {
        key: key(1, 10, M1),
        location: at("b", 1),
        ips: vec![ip("10.0.0.1"), ip("10.0.0.5")],
    };
    let c = r.put(Timestamp(4), &t, &spec).unwrap();
    assert_eq!(
        kinds(&c),
        [ChangeKind::Added, ChangeKind::Added, ChangeKind::Moved]
    );
    assert!(
        r.get(&key(1, 10, M2)).unwrap().ips.is_empty(),
        "10.0.0.5 was taken"
    );
    let got = r.get(&key(1, 10, M1)).unwrap();
    assert_eq!(
        (got.entry.origin, got.ips.clone()),
        (Origin::Api, vec![ip("10.0.0.1"), ip("10.0.0.5")])
    );
    // Putting the same again changes nothing; fewer IPs unbinds the rest.
    assert!(r.put(Timestamp(5), &t, &spec).unwrap().is_empty());
    let fewer = EntrySpec {
        ips: vec![ip("10.0.0.1")],
        ..spec.clone()
    };
    assert_eq!(
        kinds(&r.put(Timestamp(6), &t, &fewer).unwrap()),
        [ChangeKind::Removed]
    );
    // Pinned: a sighting elsewhere does not move it.
    assert!(r
        .learn_source(Timestamp(7), &port(&t, "c", 3), Vlan::Tagged(10), mac(M1))
        .is_empty());
    // Validation.
    let wrong = EntrySpec {
        location: at("b", 2),
        ..spec.clone()
    };
    assert!(matches!(
        r.put(Timestamp(8), &t, &wrong),
        Err(RegistryError::PortOfOtherVi { .. })
    ));
    // Delete takes the IPs along; deleting again is NotFound.
    let c = r.delete(&key(1, 10, M1)).unwrap();
    assert_eq!(kinds(&c), [ChangeKind::Removed, ChangeKind::Removed]);
    assert!(r.ip(&ip_key(1, 10, "10.0.0.1")).is_none());
    assert!(matches!(
        r.delete(&key(1, 10, M1)),
        Err(RegistryError::NotFound { .. })
    ));
    assert_eq!(r.list(None).len(), 1);
    assert_eq!(r.list(Some(ViId(2))).len(), 0);
}

#[test]
fn removing_a_vi_removes_only_its_entries() {
    let t = world();
    let mut r = Registry::new();
    let req = req10(M1, "10.0.0.1", "10.0.0.2");
    r.learn_arp(Timestamp(0), &port(&t, "a", 1), &req);
    r.learn_arp(Timestamp(0), &port(&t, "a", 2), &req);
    let c = r.remove_vi(ViId(1));
    assert_eq!(kinds(&c), [ChangeKind::Removed, ChangeKind::Removed]);
    assert!(c.iter().all(|c| c.vi() == ViId(1)));
    assert_eq!(r.len(), (1, 1));
    assert_eq!(r.macs_in(ViId(2)).count(), 1);
    assert_eq!(r.ips_in(ViId(2)).count(), 1);
}

#[test]
fn restore_rebuilds_the_ip_index() {
    let t = world();
    let mut r = Registry::new();
    r.learn_arp(
        Timestamp(0),
        &port(&t, "a", 1),
        &req10(M1, "10.0.0.1", "10.0.0.2"),
    );
    let back = Registry::restore(
        r.macs().map(|(k, e)| (*k, e.clone())),
        r.ips().map(|(k, e)| (*k, e.clone())),
    );
    assert_eq!(back, r);
    assert_eq!(back.get(&key(1, 10, M1)).unwrap().ips, [ip("10.0.0.1")]);
}

#[test]
fn a_seed_check_finds_every_entry_at_fault_and_changes_nothing() {
    let t = world();
    let entry = |mac: &str, ip: Option<&str>, location| SeedEntry {
        mac: mac.parse().unwrap(),
        ip: ip.map(|i| i.parse().unwrap()),
        vlan: Vlan::Untagged,
        location,
    };
    let behind = |g: &str| {
        Some(Location::BehindGateway {
            gateway: HostName(g.into()),
        })
    };
    let entries = [
        entry("01:00:5e:00:00:01", Some("10.0.0.1"), None),
        entry("02:00:00:00:00:02", None, behind("gw")),
        entry("02:00:00:00:00:03", Some("10.0.0.3"), None),
        entry("02:00:00:00:00:04", Some("10.0.0.3"), None),
        entry("02:00:00:00:00:05", None, behind("a")),
    ];
    let problems = Registry::check_seed(&t, ViId(1), &entries);
    let at: Vec<usize> = problems.iter().map(|(i, _)| *i).collect();
    assert_eq!(at, [0, 3, 4], "{problems:?}");
    assert!(matches!(problems[0].1, RegistryError::NotUnicast { .. }));
    assert!(matches!(
        problems[1].1,
        RegistryError::SeedConflict {
            index: 3,
            earlier: 2,
            ..
        }
    ));
    assert!(matches!(problems[2].1, RegistryError::NotAGateway { .. }));
    // Seeding refuses the same list with the first of them.
    let mut r = Registry::new();
    let e = r.seed(Timestamp(0), &t, ViId(1), &entries).unwrap_err();
    assert_eq!(e, problems[0].1);
    assert!(r.is_empty());
}

#[test]
fn entries_the_topology_no_longer_allows_are_named_with_why() {
    let mut t = world();
    let mut r = Registry::new();
    let on_c = EntrySpec {
        key: key(1, 10, M1),
        location: at("c", 3),
        ips: vec![],
    };
    let behind_gw = EntrySpec {
        key: key(1, 10, "52:54:00:00:00:02"),
        location: Some(Location::BehindGateway {
            gateway: host("gw"),
        }),
        ips: vec![],
    };
    let unplaced = EntrySpec {
        key: key(2, 10, "52:54:00:00:00:03"),
        location: None,
        ips: vec![],
    };
    for spec in [&on_c, &behind_gw, &unplaced] {
        r.put(Timestamp(1), &t, spec).unwrap();
    }
    assert!(r.stranded(&t).is_empty());
    // The file no longer has host c, VI 1's gateway, or VI 2.
    t.hosts.remove(&host("c"));
    t.vis.get_mut(&ViId(1)).unwrap().gateways.clear();
    t.vis.remove(&ViId(2));
    let stranded = r.stranded(&t);
    assert_eq!(stranded.len(), 3, "{stranded:?}");
    assert!(matches!(&stranded[0], (k, RegistryError::UnknownHost { .. }) if *k == on_c.key));
    assert!(matches!(&stranded[1], (k, RegistryError::NotAGateway { .. }) if *k == behind_gw.key));
    assert!(matches!(&stranded[2], (k, RegistryError::UnknownVi { .. }) if *k == unplaced.key));
}
