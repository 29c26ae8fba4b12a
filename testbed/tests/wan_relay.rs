//! The emulated WAN's userspace relay between two site namespaces: the
//! configured one-way delay shows in the ping RTT, loss takes frames,
//! full-size jumbo frames cross, and frames keep their order. Needs root.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use iris_testbed::frames::{send_frames, Capture};
use iris_testbed::stale::leftovers;
use iris_testbed::wan::bench::rtt_row;
use iris_testbed::wan::{Backend, Impairment, WanSpec};
use iris_testbed::{Ipv4Cidr, Testbed, WanId};

const INTERVAL: Duration = Duration::from_millis(50);

fn relay_wan(label: &str) -> (Testbed, WanId, Ipv4Addr) {
    let mut tb = Testbed::new(label).unwrap();
    let spec = WanSpec {
        backend: Some(Backend::Relay),
        ..WanSpec::new("wan", Impairment::default())
    };
    let id = tb.add_wan(spec).unwrap();
    let a: Ipv4Cidr = "10.250.0.1/24".parse().unwrap();
    let b: Ipv4Cidr = "10.250.0.2/24".parse().unwrap();
    tb.wan(id).site(0).iface.add_addr(a).unwrap();
    tb.wan(id).site(1).iface.add_addr(b).unwrap();
    (tb, id, b.addr())
}

#[test]
fn the_rtt_through_the_relay_is_twice_the_configured_delay() {
    let (mut tb, id, dst) = relay_wan("wan-relay-rtt");
    assert_eq!(tb.wan(id).backend(), Backend::Relay);
    let base = rtt_row(&tb, id, dst, 0, None, 10, INTERVAL).unwrap();
    for delay_ms in [20, 60] {
        tb.wan_mut(id)
            .set_impairment(Impairment::delay(Duration::from_millis(delay_ms)))
            .unwrap();
        let row = rtt_row(&tb, id, dst, delay_ms, Some(base.median_ms), 10, INTERVAL).unwrap();
        assert_eq!(row.lost, 0, "{row:?}");
        assert!(row.within_tolerance, "baseline {base:?}, then {row:?}");
    }
    let (a_to_b, b_to_a) = tb.wan(id).relay_stats().unwrap();
    assert!(
        a_to_b.forwarded >= 10 && b_to_a.forwarded >= 10,
        "{a_to_b:?} {b_to_a:?}"
    );

    // Teardown takes the relay, both cables and all three namespaces.
    let inventory = tb.inventory();
    let before = leftovers(&inventory).unwrap();
    // Three namespaces and the state directory.
    assert_eq!(before.len(), 3 + 1, "{before:?}");
    tb.teardown().unwrap();
    let left = leftovers(&inventory).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn loss_takes_frames_and_jumbo_frames_cross() {
    let (mut tb, id, dst) = relay_wan("wan-relay-loss");
    // 8972 bytes of ICMP payload, DF set: a 9000-byte IP packet, the
    // cable's MTU, crosses whole.
    let site = &tb.wan(id).site(0).netns;
    let dst_text = dst.to_string();
    site.run(&[
        "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "8972", &dst_text,
    ])
    .unwrap();

    tb.wan_mut(id)
        .set_impairment(Impairment {
            loss: 0.3,
            seed: 9,
            ..Impairment::default()
        })
        .unwrap();
    let report = tb
        .wan(id)
        .site(0)
        .ping(
            dst,
            100,
            Duration::from_millis(10),
            Duration::from_millis(500),
        )
        .unwrap();
    // A round trip survives with 0.7² = 0.49; 100 trials put the loss
    // well inside 0.3..0.7.
    let loss = report.loss();
    assert!(
        (0.3..=0.7).contains(&loss),
        "round-trip loss {loss}: {report:?}"
    );
    let (a_to_b, b_to_a) = tb.wan(id).relay_stats().unwrap();
    assert!(a_to_b.lost > 10 && b_to_a.lost > 5, "{a_to_b:?} {b_to_a:?}");
}

/// An experimental EtherType (IEEE 802 local use) and a marker, so that
/// nothing else the sites send is taken for a test frame.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const MARKER: &[u8] = b"iris-wan-order";

fn numbered(seq: u32) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend([0x02, 0, 0, 0, 0, 0x01]);
    frame.extend(ETHERTYPE);
    frame.extend(MARKER);
    frame.extend(seq.to_be_bytes());
    frame.resize(60, 0);
    frame
}

fn number_of(frame: &[u8]) -> Option<u32> {
    let body = frame.strip_prefix(&[0xff; 6][..])?.get(6..)?;
    let body = body.strip_prefix(&ETHERTYPE[..])?.strip_prefix(MARKER)?;
    Some(u32::from_be_bytes(body.get(..4)?.try_into().ok()?))
}

#[test]
fn frames_cross_once_each_and_in_order_in_bursts_and_under_jitter() {
    let (mut tb, id, _) = relay_wan("wan-relay-order");
    // Bursts of 20 back to back, so the relay reads and writes several
    // frames per system call, then a pause that lets it go idle.
    let frames: Vec<(Duration, Vec<u8>)> = (0..200)
        .map(|seq| {
            let pause = if seq % 20 == 0 {
                Duration::from_millis(2)
            } else {
                Duration::ZERO
            };
            (pause, numbered(seq))
        })
        .collect();
    // At 0 ms every frame leaves from the reader at once. With jitter
    // around 0 ms some are due at once and others wait for the writer, and
    // the two ways out must not overtake each other: a jitter of
    // microseconds makes the writer send while the reader still holds
    // frames that came before, which a few rounds are sure to catch.
    let jittery = |jitter, seed| Impairment {
        jitter,
        seed,
        ..Impairment::default()
    };
    let mut impairments = vec![Impairment::default(), jittery(Duration::from_millis(2), 1)];
    impairments.extend((2..8).map(|seed| jittery(Duration::from_micros(20), seed)));
    for impairment in impairments {
        tb.wan_mut(id).set_impairment(impairment.clone()).unwrap();
        let (a, b) = (tb.wan(id).site(0), tb.wan(id).site(1));
        let capture = Capture::start(&b.netns, &b.iface.name).unwrap();
        send_frames(&a.netns, &a.iface.name, &frames).unwrap();
        // The last frame leaves the relay within the jitter; give the
        // capture thread time to read it.
        std::thread::sleep(Duration::from_millis(200));
        let seen: Vec<u32> = capture
            .finish()
            .unwrap()
            .iter()
            .filter_map(|c| number_of(&c.data))
            .collect();
        assert_eq!(seen, (0..200).collect::<Vec<_>>(), "{impairment:?}");
        let (a_to_b, _) = tb.wan(id).relay_stats().unwrap();
        assert!(a_to_b.forwarded >= 200, "{a_to_b:?}");
        assert_eq!(a_to_b.read, a_to_b.forwarded, "{a_to_b:?}");
    }
}
