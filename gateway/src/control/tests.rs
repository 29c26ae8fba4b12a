use super::*;
use crate::config::tests::{HAAS, IAAS};
use crate::report::MacReport;
use ofp::packet::{ArpRepr, VlanTag};
use std::time::Duration;

fn control(text: &str) -> Control {
    Control::new(
        Arc::new(Config::parse(text).unwrap()),
        Arc::new(Metrics::default()),
    )
}

const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 1, 5]);

fn key(vlan: u16) -> MacKey {
    MacKey {
        vi: ViId(1),
        vlan: Vlan::Tagged(vlan),
        mac: MAC,
    }
}

fn report(vi: u32, vlan: Option<u16>, mac: &str, seq: u32, kind: ReportKind) -> MacReport {
    MacReport {
        vi,
        vlan,
        mac: mac.into(),
        ips: vec!["10.1.1.5".into()],
        seq,
        kind,
    }
}

fn from_acme(macs: Vec<MacReport>) -> PeerReport {
    PeerReport {
        from: "gw-acme".into(),
        macs,
    }
}

fn tagged(arp: ArpRepr, vid: u16) -> Vec<u8> {
    let mut arp = arp;
    arp.tags = vec![VlanTag {
        tpid: 0x8100,
        tci: vid,
    }];
    let mut buf = Vec::new();
    arp.emit(&mut buf);
    buf
}

#[test]
fn a_followed_report_is_queued_for_the_registry_once() {
    let now = Instant::now();
    let mut c = control(HAAS);
    let r = from_acme(vec![report(
        1,
        Some(100),
        "52:54:00:00:01:05",
        0,
        ReportKind::Presence,
    )]);
    let a = c.peer_report(now, &r).unwrap();
    assert_eq!(a.results[0].outcome, Outcome::Followed);
    assert_eq!(a.results[0].seq, 0);
    // The same report again: followed, nothing more to write.
    let a = c.peer_report(now, &r).unwrap();
    assert_eq!(
        (a.results[0].outcome, a.results[0].detail.as_str()),
        (Outcome::Followed, "already followed")
    );
    let batch = c.registry_batch(now);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].0, key(100));
    assert_eq!(batch[0].1.ips, [Ipv4Addr::new(10, 1, 1, 5)]);
    assert!(!batch[0].1.take_ips, "a presence does not take IPs");
    // A move of a MAC not known here (a restart lost the table) does.
    let r = from_acme(vec![report(
        1,
        Some(101),
        "52:54:00:00:01:05",
        7,
        ReportKind::Move,
    )]);
    c.peer_report(now, &r).unwrap();
    c.registry_done(now, 1, 0, Vec::new());
    let batch = c.registry_batch(now);
    assert_eq!(batch[0].0, key(101));
    assert!(batch[0].1.take_ips);
}

#[test]
fn a_mac_that_moved_into_the_haas_dc_makes_the_peers_old_seq_stale() {
    let now = Instant::now();
    let mut c = control(HAAS);
    let r = from_acme(vec![report(
        1,
        Some(100),
        "52:54:00:00:01:05",
        3,
        ReportKind::Presence,
    )]);
    c.peer_report(now, &r).unwrap();
    c.registry_place(now, key(100), RegistryPlace::Port);
    let a = c.peer_report(now, &r).unwrap();
    assert_eq!(
        (a.results[0].outcome, a.results[0].seq),
        (Outcome::Stale, 4)
    );
    // The move back out, past our seq, is followed and takes the IPs.
    let r = from_acme(vec![report(
        1,
        Some(100),
        "52:54:00:00:01:05",
        5,
        ReportKind::Move,
    )]);
    let a = c.peer_report(now, &r).unwrap();
    assert_eq!(
        (a.results[0].outcome, a.results[0].seq),
        (Outcome::Followed, 5)
    );
    let batch = c.registry_batch(now);
    assert_eq!(batch.len(), 1, "coalesced per MAC");
    assert!(batch[0].1.take_ips);
}

#[test]
fn a_stranger_or_a_vi_the_peer_does_not_carry_refuses_the_whole_report() {
    let now = Instant::now();
    let mut c = control(HAAS);
    let mut r = from_acme(vec![report(
        1,
        Some(100),
        "52:54:00:00:01:05",
        0,
        ReportKind::Presence,
    )]);
    r.from = "gw-nobody".into();
    assert_eq!(c.peer_report(now, &r).unwrap_err().status, 403);
    let r = from_acme(vec![
        report(1, Some(100), "52:54:00:00:01:05", 0, ReportKind::Presence),
        report(2, Some(100), "52:54:00:00:01:06", 0, ReportKind::Presence),
        report(9, Some(100), "52:54:00:00:01:07", 0, ReportKind::Presence),
    ]);
    let e = c.peer_report(now, &r).unwrap_err();
    assert_eq!(e.status, 403);
    let at: Vec<&str> = e.errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(at, ["#/macs/1/vi", "#/macs/2/vi"]);
    assert!(
        e.errors[1]
            .1
            .contains("vi 9 is not carried between this gateway and gw-acme"),
        "{:?}",
        e.errors
    );
    assert!(c.table().is_empty(), "nothing of a refused report is taken");
    let refused = |why| {
        c.metrics
            .peer_reports_refused
            .get_or_create(&WhyLabel { why })
            .get()
    };
    assert_eq!((refused("unknown_peer"), refused("foreign_vi")), (1, 1));
}

#[test]
fn bad_entries_are_refused_one_by_one() {
    let now = Instant::now();
    let mut c = control(HAAS);
    let mut bad_ip = report(1, None, "52:54:00:00:01:08", 0, ReportKind::Presence);
    bad_ip.ips = vec!["10.1.1.300".into()];
    let r = from_acme(vec![
        report(1, Some(200), "52:54:00:00:01:05", 0, ReportKind::Presence),
        report(1, Some(100), "52:54:00:00:01", 0, ReportKind::Presence),
        report(1, Some(100), "01:00:5e:00:00:01", 0, ReportKind::Presence),
        bad_ip,
        report(1, None, "52:54:00:00:01:09", 0, ReportKind::Move),
    ]);
    let a = c.peer_report(now, &r).unwrap();
    let outcomes: Vec<Outcome> = a.results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Refused,
            Outcome::Refused,
            Outcome::Refused,
            Outcome::Refused,
            Outcome::Followed
        ]
    );
    assert!(
        a.results[0].detail.contains("outside vi1's VLANs"),
        "{:?}",
        a.results[0]
    );
    assert!(a.results[3].detail.contains("10.1.1.300"));
    assert_eq!(c.table().len(), 1);
}

#[test]
fn an_iaas_trunk_frame_is_reported_to_its_peer_and_a_move_follows_a_stale_answer() {
    let t0 = Instant::now();
    let mut c = control(IAAS);
    let garp = tagged(ArpRepr::gratuitous(MAC, Ipv4Addr::new(10, 1, 1, 5)), 100);
    assert!(matches!(
        c.frame(t0, &garp),
        Ok(Decision::Present { seq: 0, .. })
    ));
    // Repeats change nothing and queue nothing more.
    c.frame(t0, &garp).unwrap();
    let batch = c.peer_batch(t0, "gw-haas");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].1.kind, ReportKind::Presence);
    assert_eq!(batch[0].1.to_wire(&batch[0].0).vlan, Some(100));
    // The haas side holds it at seq 4 (it moved there): learnt.
    let answer = PeerAnswer {
        results: vec![MacResult {
            vi: 1,
            vlan: Some(100),
            mac: MAC.to_string(),
            seq: 4,
            outcome: Outcome::Stale,
            detail: String::new(),
        }],
    };
    c.peer_answered(t0, "gw-haas", &batch, &answer);
    assert_eq!(c.table().get(&key(100)).unwrap().place, Place::Remote);
    // Its RARP here now is a move past the haas side's seq.
    let rarp = tagged(ArpRepr::rarp_announce(MAC), 100);
    assert!(matches!(
        c.frame(t0 + Duration::from_secs(1), &rarp),
        Ok(Decision::Moved { seq: 5, .. })
    ));
    let batch = c.peer_batch(t0, "gw-haas");
    assert_eq!((batch[0].1.kind, batch[0].1.seq), (ReportKind::Move, 5));
}

#[test]
fn a_failed_delivery_is_retried_after_backoff_and_bad_frames_are_counted() {
    let t0 = Instant::now();
    let metrics = Arc::new(Metrics::default());
    let mut c = Control::new(Arc::new(Config::parse(IAAS).unwrap()), metrics.clone());
    c.frame(t0, &tagged(ArpRepr::rarp_announce(MAC), 100))
        .unwrap();
    let batch = c.peer_batch(t0, "gw-haas");
    c.peer_failed(t0, "gw-haas", batch, false);
    assert_eq!(c.next_deadline(), Some(t0 + Duration::from_millis(50)));
    assert!(c.peer_batch(t0, "gw-haas").is_empty());
    assert_eq!(
        c.peer_batch(t0 + Duration::from_millis(50), "gw-haas")
            .len(),
        1
    );
    // A VLAN no VI carries, and a truncated frame.
    c.frame(t0, &tagged(ArpRepr::rarp_announce(MAC), 300))
        .unwrap();
    assert!(c.frame(t0, &[0u8; 10]).is_err());
    let text = metrics.render();
    assert!(
        text.contains("iris_gateway_frames_outside_vis_total 1"),
        "{text}"
    );
    assert!(text.contains("iris_gateway_malformed_frames_total{reason=\"truncated\"} 1"));
    assert!(text.contains("iris_gateway_report_failures_total 1"));
}

#[test]
fn the_outbox_bound_drops_and_counts_new_macs() {
    let t0 = Instant::now();
    let metrics = Arc::new(Metrics::default());
    let mut c = Control::with_parts(
        Arc::new(Config::parse(IAAS).unwrap()),
        metrics.clone(),
        Table::default(),
        2,
    );
    for n in 1..=3 {
        let mac = MacAddr([0x52, 0x54, 0, 0, 1, n]);
        c.frame(t0, &tagged(ArpRepr::rarp_announce(mac), 100))
            .unwrap();
    }
    assert_eq!(c.status().outbox.dropped, 1);
    assert!(metrics
        .render()
        .contains("iris_gateway_reports_dropped_total{why=\"outbox_full\"} 1"));
}

#[test]
fn a_mac_that_went_away_and_came_back_unseen_is_reclaimed_at_its_next_announcement() {
    let t0 = Instant::now();
    let mut c = control(IAAS);
    let rarp = tagged(ArpRepr::rarp_announce(MAC), 100);
    c.frame(t0, &rarp).unwrap();
    let batch = c.peer_batch(t0, "gw-haas");
    let followed = |seq, outcome| PeerAnswer {
        results: vec![MacResult {
            vi: 1,
            vlan: Some(100),
            mac: MAC.to_string(),
            seq,
            outcome,
            detail: String::new(),
        }],
    };
    c.peer_answered(t0, "gw-haas", &batch, &followed(0, Outcome::Followed));
    // An ordinary ARP of a MAC believed here is not news...
    let arp = tagged(
        ArpRepr::request(MAC, Ipv4Addr::new(10, 1, 1, 5), Ipv4Addr::new(10, 1, 1, 1)),
        100,
    );
    c.frame(t0, &arp).unwrap();
    let batch = c.peer_batch(t0, "gw-haas");
    assert_eq!(batch.len(), 1, "the ARP's new IP is");
    c.peer_answered(t0, "gw-haas", &batch, &followed(0, Outcome::Followed));
    c.frame(t0, &arp).unwrap();
    assert!(c.peer_batch(t0, "gw-haas").is_empty());
    // ...but its announcement is asked about again: meanwhile it went to
    // the HaaS DC (seq 1 there) and came back.
    assert_eq!(c.frame(t0, &rarp), Ok(Decision::Unchanged { seq: 0 }));
    let batch = c.peer_batch(t0, "gw-haas");
    assert_eq!((batch[0].1.kind, batch[0].1.seq), (ReportKind::Presence, 0));
    c.peer_answered(t0, "gw-haas", &batch, &followed(1, Outcome::Stale));
    // QEMU's next RARP is the move past the HaaS side's seq.
    assert!(matches!(
        c.frame(t0 + Duration::from_millis(100), &rarp),
        Ok(Decision::Moved { seq: 2, .. })
    ));
}

#[test]
fn a_flapping_mac_is_shown_counted_and_not_written_until_it_settles() {
    let t0 = Instant::now();
    let metrics = Arc::new(Metrics::default());
    let mut c = Control::new(Arc::new(Config::parse(HAAS).unwrap()), metrics.clone());
    let mac = "52:54:00:00:01:05";
    // Back and forth between the peer's DC and a HaaS port, six times in a
    // minute.
    let mut seq = 0;
    for i in 0..6u64 {
        let now = t0 + Duration::from_secs(i * 10);
        if i % 2 == 0 {
            seq += 1;
            let r = from_acme(vec![report(1, Some(100), mac, seq, ReportKind::Move)]);
            c.peer_report(now, &r).unwrap();
        } else {
            c.registry_place(now, key(100), RegistryPlace::Port);
            seq += 1;
        }
        let batch = c.registry_batch(now);
        c.registry_done(now, batch.len(), 0, Vec::new());
    }
    let r = from_acme(vec![report(1, Some(100), mac, seq + 1, ReportKind::Move)]);
    let a = c.peer_report(t0 + Duration::from_secs(60), &r).unwrap();
    assert_eq!(a.results[0].outcome, Outcome::Flapping);
    assert!(c.registry_batch(t0 + Duration::from_secs(60)).is_empty());
    let s = c.status();
    assert_eq!(s.flapping.len(), 1);
    assert_eq!(
        (s.flapping[0].mac.as_str(), s.flapping[0].vlan),
        (mac, Some(100))
    );
    assert!(metrics.render().contains("iris_gateway_flapping_macs 1"));
    // Still for 180 s: the last claim (the peer's) is written, taking IPs.
    c.poll(t0 + Duration::from_secs(240));
    let batch = c.registry_batch(t0 + Duration::from_secs(240));
    assert_eq!(batch.len(), 1);
    assert!(batch[0].1.take_ips);
    assert!(c.status().flapping.is_empty());
    assert!(metrics.render().contains("iris_gateway_flapping_macs 0"));
}

mod arbitrary_reports {
    use super::*;
    use proptest::prelude::*;

    fn mac_report() -> impl Strategy<Value = MacReport> {
        (
            0..4u32,
            proptest::option::of(prop_oneof![
                Just(0u16),
                95..205u16,
                Just(4095),
                Just(u16::MAX)
            ]),
            prop_oneof![
                "52:54:00:00:0[0-1]:0[0-3]",
                "[0-9a-f:]{0,20}",
                Just("ff:ff:ff:ff:ff:ff".to_owned())
            ],
            proptest::collection::vec(
                prop_oneof![
                    "10\\.1\\.1\\.[0-9]{1,3}",
                    ".{0,12}",
                    Just("0.0.0.0".to_owned())
                ],
                0..3,
            ),
            any::<u32>(),
            prop_oneof![
                Just(ReportKind::Presence),
                Just(ReportKind::Move),
                Just(ReportKind::Gone)
            ],
        )
            .prop_map(|(vi, vlan, mac, ips, seq, kind)| MacReport {
                vi,
                vlan,
                mac,
                ips,
                seq,
                kind,
            })
    }

    proptest! {
        /// Whatever a peer reports, the haas side answers one result per
        /// MAC (or refuses the whole report), never holds more registry
        /// writes than MACs it followed, and the seq it answers for a MAC
        /// never goes down.
        #[test]
        fn any_report_is_answered_whole(
            reports in proptest::collection::vec(proptest::collection::vec(mac_report(), 0..6), 1..12)
        ) {
            let t0 = Instant::now();
            let mut c = control(HAAS);
            let mut seen: std::collections::HashMap<(u32, Option<u16>, String), u32> =
                std::collections::HashMap::new();
            for (n, macs) in reports.into_iter().enumerate() {
                let now = t0 + Duration::from_secs(n as u64);
                let r = from_acme(macs);
                match c.peer_report(now, &r) {
                    Ok(a) => {
                        prop_assert_eq!(a.results.len(), r.macs.len());
                        for res in a.results {
                            if res.outcome == Outcome::Refused {
                                continue;
                            }
                            let k = (res.vi, res.vlan, res.mac.to_ascii_lowercase());
                            let before = seen.insert(k, res.seq).unwrap_or(0);
                            prop_assert!(res.seq >= before);
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e.status, 403);
                        prop_assert!(!e.errors.is_empty());
                    }
                }
                prop_assert!(c.status().outbox.queued <= c.table().len());
            }
        }
    }
}
