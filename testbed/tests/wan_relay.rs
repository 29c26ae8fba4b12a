//! The emulated WAN's userspace relay between two site namespaces: the
//! configured one-way delay shows in the ping RTT, loss takes frames, and
//! full-size jumbo frames cross. Needs root.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

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
