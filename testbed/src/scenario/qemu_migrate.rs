//! `qemu-migrate`: a real guest (QEMU, [`crate::guest`]) live-migrates
//! from pm1 to pm2 with QEMU's own machinery while a VM on pm3 pings it
//! every 10 ms, and Iris follows it on QEMU's own RARP.
//!
//! Both QEMUs are plugged as libvirt plugs them: a tap on their PM's
//! `br-int` in the guest's VI, the destination's plugged (and classified by
//! Iris) before the migration starts. The migration stream crosses the
//! underlay (the destination listens on pm2's underlay address). Once QEMU
//! reports `completed`, the source QEMU is stopped and its tap unplugged,
//! as libvirt does. The testbed writes no announcement: the RARPs are
//! QEMU's, captured on the destination tap to prove it.
//!
//! First, a migration that fails: the destination QEMU is killed while
//! the memory is being copied (the copy slowed to 1 MB/s so that it is
//! caught mid-stream). The guest must stay running on the source and the
//! registry must still place it on pm1.
//!
//! Checked (functional, not timing): the failed migration as above; the
//! real one completes, the guest answers pings after it, the registry
//! places its MAC on the destination tap's port, the controller published
//! a `move` event for it (published only for a RARP) and counted RARP
//! PacketIns, and RARPs from the guest's MAC crossed the destination tap.
//! Measured: QEMU's total time and downtime (`query-migrate`), the
//! controller's RARP-to-last-barrier time (`latency_ms` of the move
//! event), pings lost, the longest gap between replies against QEMU's
//! downtime, and how fast `ping` really sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::harness::{check, ms, round3, seed_guest, to_json, Harness, PingSummary, CONVERGE};
use super::ScenarioError;
use crate::controller::ViEntry;
use crate::frames::Capture;
use crate::guest::{Accel, Guest, GuestImage, GuestSpec, MigrationStatus, MIGRATION_PORT};
use crate::{MacAddr, PingPlan, PmId, VmId, WallClock};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
const INTERVAL: Duration = Duration::from_millis(10);
/// More than any run needs; the run is interrupted once the migration is
/// over and [`AFTER`] has passed.
const PINGS: u32 = 5000;
const BEFORE: Duration = Duration::from_secs(1);
const AFTER: Duration = Duration::from_millis(1500);
/// A guest boots in 1–2 s under KVM and in 10–20 s under TCG on a busy
/// 2-core host.
const BOOT: Duration = Duration::from_secs(90);
const MIGRATION: Duration = Duration::from_secs(120);
/// The copy rate of the migration that is made to fail: slow enough to
/// kill its destination mid-stream.
const SLOW_BYTES_PER_S: u64 = 1_000_000;

/// What `qemu-migrate` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub accelerator: Accel,
    /// Why this accelerator (e.g. what kind of `/dev/kvm` the host has).
    pub accelerator_why: String,
    pub image: ImageReport,
    /// From QEMU's start to `/init` reporting `eth0` up.
    pub boot_ms: f64,
    pub failed_migration: FailedMigration,
    pub migration: Migration,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub key: String,
    /// Built by this run (else taken from the cache).
    pub built: bool,
    pub ms: f64,
    pub modules: Vec<String>,
}

/// The migration whose destination was killed.
#[derive(Debug, Serialize)]
pub struct FailedMigration {
    /// Bytes of memory sent when the destination was killed.
    pub killed_after_bytes: u64,
    pub status: MigrationStatus,
    /// `query-status` of the source afterwards.
    pub source_state: String,
    /// Where the registry placed the guest's MAC afterwards.
    pub registry: String,
}

/// The live migration.
#[derive(Debug, Serialize)]
pub struct Migration {
    pub from_pm: String,
    pub to_pm: String,
    pub qemu: MigrationStatus,
    /// How long the guest really stood still: from the source's `STOP`
    /// event to the destination's `RESUME`, by QEMU's own timestamps.
    /// QEMU's `downtime` ends when the source has sent the last byte; the
    /// destination still loads the device state and resumes after it.
    pub guest_paused_ms: Option<f64>,
    /// From the destination's `RESUME` to QEMU's first RARP on its tap.
    pub resume_to_first_rarp_ms: Option<f64>,
    /// The `move` event's `latency_ms`: the RARP's PacketIn to the last
    /// barrier reply of the reprogramming.
    pub rarp_to_last_barrier_ms: f64,
    /// RARPs from the guest's MAC seen on the destination tap.
    pub rarps_on_destination_tap: usize,
    /// Where the gap went: from the last reply before it to QEMU's first
    /// RARP on the destination tap (the guest paused, its state loaded on
    /// pm2, the guest resumed), then from that RARP to the first reply
    /// after it (Iris's move and the wait for `ping`'s next request).
    pub last_reply_to_first_rarp_ms: Option<f64>,
    pub first_rarp_to_first_reply_ms: Option<f64>,
    /// Pings sent after the first RARP and lost.
    pub lost_after_first_rarp: Vec<u32>,
    /// PacketIns by reason during the migration.
    pub packet_ins: BTreeMap<String, f64>,
    /// The longest gap between replies minus QEMU's downtime.
    pub gap_beyond_downtime_ms: Option<f64>,
    /// The longest gap between replies minus the guest's real pause.
    pub gap_beyond_pause_ms: Option<f64>,
    /// The replies (by sequence number) around the longest gap.
    pub gap_between: Option<(u32, u32)>,
    /// How far apart `ping` really sent: median and longest step.
    pub ping_pace_ms: Option<(f64, f64)>,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    to_json(&measure(h)?)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let (accel, why, image, image_report) = prepare_image(h)?;

    // As in production: OpenFlow over TLS and OVSDB over SSL, each PM
    // certified by the run's CA and reached over a management link.
    h.use_tls()?;
    let pms = h.add_pms(&["pm1", "pm2", "pm3"])?;
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    let pinger = h.add_vms(&mut vi, &[pms[2]])?[0];
    let (mac, ip) = seed_guest(&mut vi, 5)?;
    h.bring_up(&pms, vec![vi], &[pinger])?;
    h.check_tls(&pms)?;
    let spec = GuestSpec::new("g5", VI, mac, ip, accel);

    let mut source = Guest::boot(&h.tb, pms[0], &spec, &image)?;
    let booted = source.wait_booted(BOOT)?;
    h.note(format!(
        "guest booted on pm1 in {:.1} s",
        booted.as_secs_f64()
    ));
    h.wait_reachable(pinger, ip.addr())?;
    let source_port = placed(h, mac, pms[0], source.tap())?;

    let failed_migration = fail_once(h, &mut source, &spec, &image, &pms, source_port)?;
    let migration = migrate(h, source, &spec, &image, &pms, pinger)?;
    Ok(Report {
        accelerator: accel,
        accelerator_why: why,
        image: image_report,
        boot_ms: ms(booted),
        failed_migration,
        migration,
    })
}

/// The accelerator QEMU will use (and why), and the guest image, built
/// or taken from the cache.
pub(super) fn prepare_image(
    h: &Harness,
) -> Result<(Accel, String, GuestImage, ImageReport), ScenarioError> {
    let (accel, why) = Accel::detect();
    h.note(format!("accelerator {accel:?}: {why}"));
    let t = Instant::now();
    let image = GuestImage::ensure()?;
    let image_report = ImageReport {
        key: image.key.clone(),
        built: image.built,
        ms: ms(t.elapsed()),
        modules: image.modules.clone(),
    };
    h.note(format!(
        "guest image {} ({})",
        image.key,
        if image.built { "built" } else { "cached" }
    ));
    Ok((accel, why, image, image_report))
}

/// Whether `frame` is a RARP (ethertype 0x8035) sent by `mac`.
pub(crate) fn is_rarp_from(frame: &[u8], mac: MacAddr) -> bool {
    frame.len() >= 14 && frame[12..14] == [0x80, 0x35] && frame[6..12] == mac.0
}

/// Waits until the registry places `mac` on `tap` of `pm`; that port.
fn placed(h: &Harness, mac: MacAddr, pm: PmId, tap: &str) -> Result<u32, ScenarioError> {
    let port = h.tb.pm(pm).ofport(tap)?;
    let host = h.tb.pm(pm).name().to_owned();
    let want = format!("{host}:{port}");
    h.wait_for(
        &format!("the registry placing {mac} at {want}"),
        CONVERGE,
        || {
            let at = location(h, mac)?;
            Ok(if at == want { Ok(port) } else { Err(at) })
        },
    )
}

/// Where the registry places `mac`: `host:ofport`, or what it has.
fn location(h: &Harness, mac: MacAddr) -> Result<String, ScenarioError> {
    let mac = mac.to_string();
    let entries = h.registry(VI)?;
    Ok(entries
        .iter()
        .find(|e| e["mac"] == mac.as_str() && e["vlan"].is_null())
        .map(
            |e| match (e["location"]["host"].as_str(), &e["location"]["ofport"]) {
                (Some(host), port) if port.is_u64() => format!("{host}:{port}"),
                _ => e["location"].to_string(),
            },
        )
        .unwrap_or_else(|| format!("{mac} is not in the registry")))
}

/// Waits until `tap` on `pm` has its table-0 classification flow.
pub(crate) fn classified(h: &Harness, pm: PmId, tap: &str) -> Result<(), ScenarioError> {
    let port = h.tb.pm(pm).ofport(tap)?;
    let needle = format!("in_port={port}");
    h.wait_for(
        &format!("a classification flow for {tap}"),
        CONVERGE,
        || {
            let found = h
                .flows(pm)?
                .iter()
                .any(|f| f.flow.table == 0 && f.flow.match_text.split(',').any(|m| m == needle));
            Ok(if found {
                Ok(())
            } else {
                Err(format!("no table 0 flow with {needle}"))
            })
        },
    )
}

/// A migration to pm2 whose destination QEMU is killed mid-stream.
fn fail_once(
    h: &mut Harness,
    source: &mut Guest,
    spec: &GuestSpec,
    image: &GuestImage,
    pms: &[PmId],
    source_port: u32,
) -> Result<FailedMigration, ScenarioError> {
    h.note("migrating to pm2, and killing the destination mid-stream");
    let (at, mut doomed) = Guest::incoming(&h.tb, pms[1], spec, image, MIGRATION_PORT)?;
    let defaults = source.migration_parameters()?;
    source.set_migration_parameters(json!({ "max-bandwidth": SLOW_BYTES_PER_S }))?;
    source.migrate(at)?;
    let sending = h.wait_for("the migration to start copying", CONVERGE, || {
        let s = source.migration()?;
        Ok(match s.transferred_bytes {
            Some(n) if n > 0 && s.status == "active" => Ok(n),
            _ if s.finished() => Ok(0),
            _ => Err(format!("{s:?}")),
        })
    })?;
    check(sending > 0, || {
        "the slowed migration ended before its destination could be killed".into()
    })?;
    doomed.kill()?;
    let status = source.wait_migration(MIGRATION)?;
    let source_state = source.run_state()?;
    doomed.remove(&h.tb)?;
    source.set_migration_parameters(json!({ "max-bandwidth": defaults["max-bandwidth"] }))?;
    check(status.status == "failed", || {
        format!("with its destination killed the migration ended {status:?}, not failed")
    })?;
    check(source_state == "running", || {
        format!("after the failed migration the source guest is {source_state}, not running")
    })?;
    let want = format!("{}:{source_port}", h.tb.pm(pms[0]).name());
    let registry = location(h, spec.mac)?;
    check(registry == want, || {
        format!("after the failed migration the registry has {registry}, not the source {want}")
    })?;
    Ok(FailedMigration {
        killed_after_bytes: sending,
        status,
        source_state,
        registry,
    })
}

/// The live migration to pm2 while `pinger` pings the guest.
fn migrate(
    h: &mut Harness,
    mut source: Guest,
    spec: &GuestSpec,
    image: &GuestImage,
    pms: &[PmId],
    pinger: VmId,
) -> Result<Migration, ScenarioError> {
    let (from_pm, to_pm) = (
        h.tb.pm(pms[0]).name().to_owned(),
        h.tb.pm(pms[1]).name().to_owned(),
    );
    let ip = spec.ip.addr();
    let (at, mut dest) = Guest::incoming(&h.tb, pms[1], spec, image, MIGRATION_PORT)?;
    classified(h, pms[1], dest.tap())?;
    h.note(format!(
        "pinging {ip} every 10 ms; migrating it from {from_pm} to {to_pm} over {at}"
    ));
    let events = h.controller()?.events()?;
    let clock = WallClock::now();
    let before = h.controller()?.metrics()?;
    let capture = Capture::start(h.tb.pm(pms[1]).netns(), dest.tap())?;
    let run = h.ping_run(
        pinger,
        PingPlan::new(ip, PINGS, INTERVAL),
        "during-migration",
    )?;
    std::thread::sleep(BEFORE);
    source.migrate(at)?;
    let qemu = source.wait_migration(MIGRATION)?;
    let resumed = dest.wait_running(CONVERGE);
    let paused_at = source.qmp().last_event_time("STOP");
    let resumed_at = dest.qmp().last_event_time("RESUME");
    let source_state = source.run_state()?;
    source.remove(&h.tb)?;
    std::thread::sleep(AFTER);
    let trace = run.interrupt()?;
    let frames = capture.finish()?;
    let after = h.controller()?.metrics()?;
    let events = events.finish()?;
    check(qemu.status == "completed", || {
        format!("the migration ended {qemu:?}")
    })?;
    resumed?;
    h.note(format!(
        "migrated in {:?} ms, downtime {:?} ms; source now {source_state}",
        qemu.total_time_ms, qemu.downtime_ms
    ));

    let rarps = frames
        .iter()
        .filter(|f| is_rarp_from(&f.data, spec.mac))
        .count();
    let packet_ins = after.gained(&before, "iris_packet_ins_total", "reason");
    let mac = spec.mac.to_string();
    let moved: Vec<&Value> = events
        .iter()
        .map(|e| &e.data)
        .filter(|d| d["type"] == "move" && d["mac"] == mac.as_str())
        .collect();
    check(rarps > 0, || {
        format!("no RARP from {mac} crossed the destination tap: QEMU did not announce the guest")
    })?;
    check(!moved.is_empty(), || {
        format!(
            "the controller published no move event for {mac} (events: {:?}); PacketIns \
             during the migration: {packet_ins:?}",
            events.iter().map(|e| &e.data).collect::<Vec<_>>()
        )
    })?;
    check(
        packet_ins.get("rarp").copied().unwrap_or(0.0) >= 1.0,
        || format!("no RARP reached the controller: PacketIns {packet_ins:?}"),
    )?;
    let latency = moved[0]["latency_ms"].as_f64().ok_or_else(|| {
        ScenarioError::Failed(format!("the move event has no latency_ms: {}", moved[0]))
    })?;
    let dest_port = placed(h, spec.mac, pms[1], dest.tap())?;
    check(trace.resumed(), || {
        format!(
            "pings did not resume after the migration: lost {:?} of {}",
            trace.lost(),
            trace.summary.transmitted
        )
    })?;
    h.wait_reachable(pinger, ip)?;

    let gap = trace.longest_gap();
    let first_rarp = frames
        .iter()
        .find(|f| is_rarp_from(&f.data, spec.mac))
        .map(|f| clock.epoch(f.at));
    let gap_start = trace
        .longest_gap_between()
        .and_then(|(a, _)| trace.replies.iter().find(|r| r.seq == a))
        .map(|r| r.at);
    Ok(Migration {
        from_pm,
        to_pm: format!("{to_pm} (port {dest_port})"),
        guest_paused_ms: paused_at
            .zip(resumed_at)
            .map(|(p, r)| round3((r - p) * 1e3)),
        resume_to_first_rarp_ms: resumed_at
            .zip(first_rarp)
            .map(|(r, f)| round3((f - r) * 1e3)),
        rarp_to_last_barrier_ms: round3(latency),
        rarps_on_destination_tap: rarps,
        last_reply_to_first_rarp_ms: first_rarp
            .zip(gap_start)
            .map(|(rarp, last)| round3((rarp - last) * 1e3)),
        first_rarp_to_first_reply_ms: first_rarp.and_then(|t| trace.first_reply_after(t)).map(ms),
        lost_after_first_rarp: first_rarp.map(|t| trace.lost_since(t)).unwrap_or_default(),
        packet_ins,
        gap_beyond_downtime_ms: gap.zip(qemu.downtime_ms).map(|(g, d)| round3(ms(g) - d)),
        gap_beyond_pause_ms: gap
            .zip(paused_at.zip(resumed_at))
            .map(|(g, (p, r))| round3(ms(g) - (r - p) * 1e3)),
        gap_between: trace.longest_gap_between(),
        ping_pace_ms: trace
            .pace()
            .map(|(median, longest)| (ms(median), ms(longest))),
        ping: PingSummary::from(&trace),
        qemu,
    })
}
