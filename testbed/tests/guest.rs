//! Real guests under QEMU on testbed PMs: the image boots and answers
//! ping through a tap on `br-int`, a migration whose destination dies
//! mid-stream leaves it running on the source, and a live migration moves
//! it to the other PM, where it answers again. The PMs are standalone
//! learning switches joined by GRE; `scenario qemu-migrate` does the same
//! under Iris. Needs root, Open vSwitch and QEMU.

#![allow(clippy::unwrap_used)]

mod topology;

use std::time::Duration;

use iris_testbed::guest::{Accel, Guest, GuestImage, GuestSpec, MIGRATION_PORT};
use iris_testbed::{FailMode, MacAddr};
use serde_json::json;
use topology::{two_pms, vm_ip, VI};

const BOOT: Duration = Duration::from_secs(90);
const MIGRATION: Duration = Duration::from_secs(120);

#[test]
fn a_guest_boots_survives_a_failed_migration_and_migrates() {
    let image = GuestImage::ensure().unwrap();
    let (accel, why) = Accel::detect();
    eprintln!(
        "guest image {} ({:?}); accelerator {accel:?}: {why}",
        image.key, image.modules
    );
    let mut t = two_pms("guest-migration", FailMode::Standalone);
    t.connect_with_gre();
    let pinger = t.vm("vm1", 1, t.pm2);
    let spec = GuestSpec::new("g5", VI, MacAddr::local(5), vm_ip(5), accel);
    let tb = &t.tb;
    let ip = spec.ip.addr();

    let mut source = Guest::boot(tb, t.pm1, &spec, &image).unwrap();
    let booted = source.wait_booted(BOOT).unwrap();
    eprintln!("booted in {booted:?}");
    tb.vm(pinger)
        .wait_reachable(ip, Duration::from_secs(30))
        .unwrap();

    // The destination dies while the memory is being copied: the source
    // goes on running the guest.
    let (at, mut doomed) = Guest::incoming(tb, t.pm2, &spec, &image, MIGRATION_PORT).unwrap();
    assert_eq!(doomed.run_state().unwrap(), "inmigrate");
    let defaults = source.migration_parameters().unwrap();
    source
        .set_migration_parameters(json!({"max-bandwidth": 1_000_000}))
        .unwrap();
    source.migrate(at).unwrap();
    let mut seen = source.migration().unwrap();
    for _ in 0..500 {
        if seen.transferred_bytes.unwrap_or(0) > 0 || seen.finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        seen = source.migration().unwrap();
    }
    assert_eq!(seen.status, "active", "{seen:?}");
    doomed.kill().unwrap();
    let failed = source.wait_migration(MIGRATION).unwrap();
    assert_eq!(failed.status, "failed", "{failed:?}");
    assert_eq!(source.run_state().unwrap(), "running");
    doomed.remove(tb).unwrap();
    let report = tb
        .vm(pinger)
        .ping(ip, 5, Duration::from_millis(50))
        .unwrap();
    assert!(
        report.received > 0,
        "after the failed migration: {report:?}"
    );

    // Now for real, at the bandwidth QEMU had before.
    source
        .set_migration_parameters(json!({"max-bandwidth": defaults["max-bandwidth"]}))
        .unwrap();
    let (at, mut dest) = Guest::incoming(tb, t.pm2, &spec, &image, MIGRATION_PORT).unwrap();
    source.migrate(at).unwrap();
    let done = source.wait_migration(MIGRATION).unwrap();
    assert_eq!(done.status, "completed", "{done:?}");
    eprintln!("migrated: {done:?}");
    dest.wait_running(Duration::from_secs(10)).unwrap();
    assert_eq!(source.run_state().unwrap(), "postmigrate");
    source.remove(tb).unwrap();
    tb.vm(pinger)
        .wait_reachable(ip, Duration::from_secs(10))
        .unwrap();
    let report = tb
        .vm(pinger)
        .ping(ip, 5, Duration::from_millis(50))
        .unwrap();
    assert!(report.all_replied(), "after the migration: {report:?}");
}

#[test]
fn a_guest_whose_qemu_cannot_start_says_why_and_leaves_no_tap() {
    let mut image = GuestImage::ensure().unwrap();
    image.kernel = "/nonexistent/vmlinux".into();
    let t = two_pms("guest-bad-start", FailMode::Standalone);
    let spec = GuestSpec::new("g6", VI, MacAddr::local(6), vm_ip(6), Accel::Tcg);
    let err = Guest::boot(&t.tb, t.pm1, &spec, &image)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/vmlinux"), "{err}");
    let pm = t.tb.pm(t.pm1);
    let ports = pm.vsctl(&["list-ports", "br-int"]).unwrap();
    assert!(!ports.contains("g6"), "left on br-int: {ports}");
    let links = pm.exec(&["ip", "-o", "link"]).unwrap();
    assert!(!links.contains("g6t"), "left in the PM: {links}");
}
