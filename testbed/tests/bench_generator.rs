//! The load generator of `iris-testbed bench controller` against a real
//! `ovs-testcontroller` (Debian package openvswitch-testcontroller, which
//! scripts/install-deps.sh installs) for a couple of seconds: the switches
//! finish the handshake, PacketIns are answered, and the answers are what a
//! learning switch sends. Fails (never skips) when the program is missing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use iris_testbed::bench::{self, Mode, Options, Target, Workload};

fn options(mode: Mode, buffered: bool) -> Options {
    Options {
        target: Target::OvsTestcontroller,
        switches: 3,
        macs: 50,
        ports: 4,
        mode,
        workload: Workload::Learning,
        window: Some(8),
        buffered,
        warmup: Duration::from_millis(500),
        duration: Duration::from_millis(1500),
        timeout: Duration::from_secs(2),
        cache: bench::default_cache(),
        iris_controller: None,
        keep: false,
    }
}

#[test]
fn a_learning_switch_answers_each_frame_with_a_flow_and_the_packet() {
    let r = bench::run(&options(Mode::Throughput, false)).unwrap();
    let c = &r.counts;
    assert!(c.answered > 100, "{r}");
    assert_eq!(c.expired + c.errors + c.malformed, 0, "{r}");
    assert!(c.packet_ins >= c.answered);
    // Unbuffered: the destination is known (it sent the frame before), so
    // a flow answers, then the packet itself follows; ovs-testcontroller
    // drops what exceeds a short send queue of its own, so some packets
    // may be missing. A pair may straddle the window's edges, once per
    // switch at each end. With 50 hosts on 4 ports, host 0's destination
    // (host 49, seen a pass earlier) sits on host 0's own port: those
    // frames get a drop flow and are not waited for (unanswerable).
    assert!(
        c.flow_mods.abs_diff(c.answered + c.unanswerable) <= 2 * 3,
        "{r}"
    );
    assert_eq!(c.not_answers, 0, "{r}");
    assert!(c.packet_outs > c.answered / 2, "{r}");
    assert!(c.packet_outs <= c.flow_mods + 2 * 3, "{r}");
    assert_eq!(r.latency.samples, c.answered);
    assert!(r.latency.p50_us > 0.0 && r.latency.p50_us <= r.latency.p99_us);
    assert!(r.responses_per_s > 0.0 && r.setup.messages >= 3 * 2, "{r}");
}

#[test]
fn buffered_frames_are_released_by_the_flow_alone() {
    let r = bench::run(&options(Mode::Throughput, true)).unwrap();
    let c = &r.counts;
    assert!(c.answered > 100, "{r}");
    assert_eq!(c.packet_outs, 0, "the flow carries the buffer: {r}");
    // The unanswerable frames' drop flows name nothing waiting; one per
    // switch may straddle the end of the measurement.
    assert_eq!(c.flow_mods, c.answered + c.unattributed, "{r}");
    assert!(c.unattributed.abs_diff(c.unanswerable) <= 3, "{r}");
    assert_eq!(c.expired + c.not_answers, 0, "{r}");
}

#[test]
fn latency_mode_keeps_one_packet_in_per_switch_in_flight() {
    let r = bench::run(&options(Mode::Latency, false)).unwrap();
    assert_eq!(r.window, 1);
    assert!(r.counts.answered > 100, "{r}");
    // One at a time: a switch sends its next PacketIn only once the last
    // one is answered, so at most one per switch is left unanswered.
    let c = &r.counts;
    assert!(c.packet_ins - c.answered - c.unanswerable <= 3, "{r}");
}
