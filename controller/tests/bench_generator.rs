//! `iris-controller` under the load generator of `iris-testbed bench
//! controller` for a couple of seconds: every emulated switch (with its own
//! ovsdb-server holding its VM ports) is programmed, ARP requests for
//! seeded addresses are answered with a PacketOut each, and announcements
//! from hosts that move are answered with flows. Needs Open vSwitch's
//! ovsdb-server and ovsdb-tool; fails (never skips) without them.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use iris_testbed::bench::{self, Mode, Options, Target, Workload};

fn options(workload: Workload) -> Options {
    Options {
        target: Target::Iris,
        switches: 2,
        macs: 20,
        ports: 4,
        mode: Mode::Throughput,
        workload,
        window: Some(8),
        buffered: false,
        warmup: Duration::from_millis(500),
        duration: Duration::from_millis(1500),
        timeout: Duration::from_secs(2),
        cache: bench::default_cache(),
        iris_controller: Some(PathBuf::from(env!("CARGO_BIN_EXE_iris-controller"))),
        keep: false,
    }
}

#[test]
fn arp_for_seeded_addresses_is_answered_from_the_registry() {
    let r = bench::run(&options(Workload::Arp)).unwrap();
    let c = &r.counts;
    assert!(c.answered > 100, "{r}");
    assert_eq!(c.expired + c.errors + c.malformed, 0, "{r}");
    // One reply per request, and nothing to learn: the requesters were
    // learned in the warm-up.
    assert_eq!(c.packet_outs, c.answered, "{r}");
    assert_eq!(c.flow_mods, 0, "{r}");
    // The controller programmed both switches before the load: tables and
    // an ARP responder flow per seeded address.
    assert!(r.setup.flow_mods_and_packet_outs > 2 * 20, "{r}");
}

#[test]
fn moving_hosts_announced_by_garp_are_answered_with_flows() {
    let r = bench::run(&options(Workload::Learning)).unwrap();
    let c = &r.counts;
    assert!(c.answered > 20, "{r}");
    assert_eq!(c.expired + c.errors + c.malformed, 0, "{r}");
    // The datapath floods a GARP it intercepts; the controller only
    // reprograms.
    assert_eq!(c.packet_outs, 0, "{r}");
    assert!(c.flow_mods >= c.answered, "{r}");
}
