//! The scenarios' instruments on a real namespace: a frame sent from inside
//! a VM is captured, byte for byte, on the VM's port in its PM; a capture on
//! a namespace's interface sees nothing of another's; a background ping run
//! timestamps every reply. Needs root and Open vSwitch.

#![allow(clippy::unwrap_used)]

mod topology;

use std::time::Duration;

use iris_testbed::frames::{send_frames, Capture};
use iris_testbed::{FailMode, PingPlan, PingRun};
use ofp::packet::{ArpRepr, MacAddr};
use topology::{two_pms, vm_ip};

#[test]
fn a_rarp_sent_inside_a_vm_is_captured_on_its_port_and_nowhere_else() {
    let mut t = two_pms("frames-rarp", FailMode::Secure);
    let vm1 = t.vm("vm1", 1, t.pm1);
    let vm2 = t.vm("vm2", 2, t.pm2);
    let (tb, pm1) = (&t.tb, t.tb.pm(t.pm1));
    let on_port = Capture::start(pm1.netns(), tb.vm(vm1).port()).unwrap();
    let elsewhere = Capture::start(tb.vm(vm2).netns(), tb.vm(vm2).interface()).unwrap();

    let mac = MacAddr(tb.vm(vm1).mac().0);
    let mut rarp = Vec::new();
    ArpRepr::rarp_announce(mac).emit(&mut rarp);
    let rounds = [
        (Duration::ZERO, rarp.clone()),
        (Duration::from_millis(50), rarp.clone()),
    ];
    let sent = send_frames(tb.vm(vm1).netns(), tb.vm(vm1).interface(), &rounds).unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].duration_since(sent[0]) >= Duration::from_millis(50));
    // The veth hands the frames over at once; give the capture thread a
    // poll interval to read them.
    std::thread::sleep(Duration::from_millis(100));

    let seen = on_port.finish().unwrap();
    let rarps: Vec<_> = seen.iter().filter(|f| f.data == rarp).collect();
    assert_eq!(rarps.len(), 2, "{seen:?}");
    let parsed = ArpRepr::parse_frame(&rarps[0].data).unwrap();
    assert_eq!(parsed, ArpRepr::rarp_announce(mac));
    // pm1's bridge drops it (fail_mode=secure, no flows): vm2 sees nothing.
    let other = elsewhere.finish().unwrap();
    assert!(!other.iter().any(|f| f.data == rarp), "{other:?}");
}

#[test]
fn a_ping_run_timestamps_every_reply() {
    let mut t = two_pms("frames-ping", FailMode::Standalone);
    let vm1 = t.vm("vm1", 1, t.pm1);
    let tb = &t.tb;
    let out = tb.state_dir().join("self.ping");
    // To its own address: the reply comes over the VM's loopback.
    let plan =
        PingPlan::new(vm_ip(1).addr(), 20, Duration::from_millis(10)).pattern(b"iris-marker");
    let trace = PingRun::start(tb.vm(vm1).netns(), plan, &out)
        .unwrap()
        .wait(Duration::from_secs(5))
        .unwrap();
    assert_eq!(trace.summary.transmitted, 20);
    assert_eq!(trace.replies.len(), 20);
    assert!(trace.lost().is_empty());
    let gap = trace.longest_gap().unwrap();
    assert!(
        gap >= Duration::from_millis(5) && gap < Duration::from_secs(1),
        "{gap:?}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("PATTERN: 0x697269732d6d61726b6572"), "{text}");

    // Interrupted long before its count, the run still reports what it saw.
    let plan = PingPlan::new(vm_ip(1).addr(), 1000, Duration::from_millis(10));
    let run = PingRun::start(tb.vm(vm1).netns(), plan, &tb.state_dir().join("cut.ping")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let trace = run.interrupt().unwrap();
    assert!(trace.interrupted);
    assert!(trace.summary.transmitted > 5 && trace.summary.transmitted < 1000);
    assert!(trace.lost().is_empty(), "{:?}", trace.lost());
}
