use super::*;
use iris_controller::model::{ViId, Vlan};
use ofp::packet::MacAddr;
use proptest::prelude::*;

fn key(n: u8) -> MacKey {
    MacKey {
        vi: ViId(1),
        vlan: Vlan::Tagged(100),
        mac: MacAddr([0x52, 0x54, 0, 0, 0, n]),
    }
}

const IP: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 5);

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn a_mac_first_seen_here_is_present_at_seq_zero_and_repeats_change_nothing() {
    let t0 = Instant::now();
    let mut t = Table::default();
    assert_eq!(
        t.local(t0, key(1), &[]),
        Decision::Present {
            place: Place::Local,
            seq: 0
        }
    );
    // QEMU announces several times: only the first is news.
    assert_eq!(t.local(t0, key(1), &[]), Decision::Unchanged { seq: 0 });
    // An ARP that binds an IP is news, once.
    assert_eq!(
        t.local(t0, key(1), &[IP]),
        Decision::Present {
            place: Place::Local,
            seq: 0
        }
    );
    assert_eq!(t.local(t0, key(1), &[IP]), Decision::Unchanged { seq: 0 });
    assert_eq!(t.get(&key(1)).unwrap().ips, [IP]);
}

#[test]
fn a_remote_mac_seen_here_moved_with_the_next_seq() {
    let t0 = Instant::now();
    let mut t = Table::default();
    t.remote(t0, key(1), 4, &[IP]);
    assert_eq!(
        t.local(secs(t0, 1), key(1), &[]),
        Decision::Moved {
            from: Place::Remote,
            to: Place::Local,
            seq: 5
        }
    );
    // The peer's report of the move it made before ours is stale now, and
    // so is one at our seq: the side that holds it keeps it.
    assert_eq!(
        t.remote(secs(t0, 2), key(1), 4, &[]),
        Decision::Stale { seq: 5 }
    );
    assert_eq!(
        t.remote(secs(t0, 2), key(1), 5, &[]),
        Decision::Stale { seq: 5 }
    );
    assert_eq!(
        t.remote(secs(t0, 3), key(1), 6, &[]),
        Decision::Moved {
            from: Place::Local,
            to: Place::Remote,
            seq: 6
        }
    );
    let v = t.get(&key(1)).unwrap();
    assert_eq!((v.place, v.seq, v.ips), (Place::Remote, 6, vec![IP]));
}

#[test]
fn the_same_report_again_is_not_stale_and_changes_nothing() {
    let t0 = Instant::now();
    let mut t = Table::default();
    t.local(t0, key(1), &[]);
    assert!(matches!(
        t.remote(t0, key(1), 1, &[IP]),
        Decision::Moved { seq: 1, .. }
    ));
    let before = t.clone();
    assert_eq!(
        t.remote(t0, key(1), 1, &[IP]),
        Decision::Unchanged { seq: 1 }
    );
    assert_eq!(t, before);
}

#[test]
fn a_peer_withdrawal_is_taken_only_while_the_mac_is_there() {
    let t0 = Instant::now();
    let mut t = Table::default();
    t.remote(t0, key(1), 2, &[]);
    assert_eq!(t.gone(key(1), 1), Decision::Stale { seq: 2 });
    assert_eq!(t.gone(key(1), 2), Decision::Withdrawn { seq: 2 });
    // Back here later: a move past the withdrawal's seq.
    assert!(matches!(
        t.local(t0, key(1), &[]),
        Decision::Moved {
            from: Place::Gone,
            seq: 3,
            ..
        }
    ));
    assert_eq!(t.gone(key(1), 9), Decision::Stale { seq: 3 });
}

#[test]
fn the_sixth_move_in_180_seconds_flaps_and_is_not_followed_until_still() {
    let t0 = Instant::now();
    let mut t = Table::default();
    t.local(t0, key(1), &[]);
    let mut seq = 0;
    for i in 1..=5 {
        seq += 1;
        let d = if i % 2 == 1 {
            t.remote(secs(t0, i * 10), key(1), seq, &[])
        } else {
            t.local(secs(t0, i * 10), key(1), &[])
        };
        assert!(matches!(d, Decision::Moved { .. }), "move {i}: {d:?}");
    }
    assert_eq!(t.get(&key(1)).unwrap().place, Place::Remote);
    // The sixth within the window flags it; it stays where it was.
    assert_eq!(
        t.local(secs(t0, 60), key(1), &[]),
        Decision::Flapping {
            seq: 6,
            newly: true
        }
    );
    assert_eq!(t.get(&key(1)).unwrap().place, Place::Remote);
    assert_eq!(t.flapping().collect::<Vec<_>>(), [&key(1)]);
    // Further moves are remembered, not followed, and keep it flapping.
    assert_eq!(
        t.remote(secs(t0, 100), key(1), 7, &[]),
        Decision::Flapping {
            seq: 7,
            newly: false
        }
    );
    assert_eq!(
        t.local(secs(t0, 120), key(1), &[]),
        Decision::Flapping {
            seq: 8,
            newly: false
        }
    );
    assert_eq!(t.next_deadline(), Some(secs(t0, 300)));
    assert!(t.poll(secs(t0, 299)).is_empty());
    // Still for 180 s: the last claim (here, local) is taken.
    assert_eq!(
        t.poll(secs(t0, 300)),
        [(
            key(1),
            Decision::Moved {
                from: Place::Remote,
                to: Place::Local,
                seq: 8
            }
        )]
    );
    let v = t.get(&key(1)).unwrap();
    assert_eq!((v.place, v.seq, v.flapping), (Place::Local, 8, false));
    assert_eq!(t.next_deadline(), None);
    // Followed again, and counted afresh.
    assert!(matches!(
        t.remote(secs(t0, 301), key(1), 9, &[]),
        Decision::Moved { seq: 9, .. }
    ));
}

#[test]
fn five_moves_spread_beyond_the_window_do_not_flap() {
    let t0 = Instant::now();
    let mut t = Table::default();
    t.local(t0, key(1), &[]);
    for i in 1..=20u32 {
        let now = secs(t0, u64::from(i) * 40);
        let d = if i % 2 == 1 {
            t.remote(now, key(1), i, &[])
        } else {
            t.local(now, key(1), &[])
        };
        assert!(matches!(d, Decision::Moved { .. }), "move {i}: {d:?}");
    }
}

#[test]
fn a_full_table_refuses_new_macs_and_keeps_the_old() {
    let t0 = Instant::now();
    let mut t = Table::with_capacity(2);
    t.local(t0, key(1), &[]);
    t.remote(t0, key(2), 1, &[]);
    assert_eq!(t.local(t0, key(3), &[]), Decision::Full);
    assert_eq!(t.remote(t0, key(3), 1, &[]), Decision::Full);
    assert_eq!(t.len(), 2);
    assert!(matches!(t.local(t0, key(2), &[]), Decision::Moved { .. }));
}

#[derive(Debug, Clone)]
enum Op {
    Local(u8, Option<u8>),
    Remote(u8, u32, Option<u8>),
    Gone(u8, u32),
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, proptest::option::of(0..3u8)).prop_map(|(m, ip)| Op::Local(m, ip)),
        (0..3u8, 0..12u32, proptest::option::of(0..3u8))
            .prop_map(|(m, s, ip)| Op::Remote(m, s, ip)),
        (0..3u8, 0..12u32).prop_map(|(m, s)| Op::Gone(m, s)),
        Just(Op::Poll),
    ]
}

fn ips(ip: Option<u8>) -> Vec<Ipv4Addr> {
    ip.map(|n| Ipv4Addr::new(10, 0, 0, n)).into_iter().collect()
}

proptest! {
    /// Whatever arrives, in whatever order and pace, the seq the table
    /// holds for a MAC never goes down.
    #[test]
    fn the_seq_never_decreases(ops in proptest::collection::vec((op(), 0..100u64), 1..80)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut t = Table::default();
        for (op, dt) in ops {
            now += Duration::from_secs(dt);
            let before: Vec<u32> = (0..3).map(|m| t.seq(&key(m))).collect();
            match op {
                Op::Local(m, ip) => { t.local(now, key(m), &ips(ip)); }
                Op::Remote(m, s, ip) => { t.remote(now, key(m), s, &ips(ip)); }
                Op::Gone(m, s) => { t.gone(key(m), s); }
                Op::Poll => { t.poll(now); }
            }
            for m in 0..3 {
                prop_assert!(t.seq(&key(m)) >= before[m as usize]);
            }
        }
    }

    /// A peer's report, applied twice in a row, changes nothing the
    /// second time, whatever came before.
    #[test]
    fn the_same_report_twice_changes_nothing(
        ops in proptest::collection::vec((op(), 0..100u64), 0..60),
        m in 0..3u8, s in 0..12u32, ip in proptest::option::of(0..3u8), dt in 0..400u64,
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut t = Table::default();
        for (op, dt) in ops {
            now += Duration::from_secs(dt);
            match op {
                Op::Local(m, ip) => { t.local(now, key(m), &ips(ip)); }
                Op::Remote(m, s, ip) => { t.remote(now, key(m), s, &ips(ip)); }
                Op::Gone(m, s) => { t.gone(key(m), s); }
                Op::Poll => { t.poll(now); }
            }
        }
        t.remote(now, key(m), s, &ips(ip));
        let once = t.clone();
        let again = t.remote(now + Duration::from_secs(dt), key(m), s, &ips(ip));
        prop_assert_eq!(&t, &once, "second report decided {:?}", again);
        prop_assert!(
            matches!(again, Decision::Unchanged { .. } | Decision::Stale { .. } | Decision::Full),
            "{:?}", again
        );
    }
}
