//! `qemu-migrate-intercloud`: real guests (QEMU, [`crate::guest`]) live
//! migrate from the IaaS data center into the HaaS one and back, with
//! QEMU's own machinery, at several WAN delays, while a guest on a HaaS L1
//! node pings the moving one every 10 ms.
//!
//! The world is `intercloud`'s (two PMs, the HaaS gateway, two compute
//! nodes, the IaaS gateway, the WAN between the gateways). Each guest's NIC
//! is plugged as libvirt plugs a NIC with `<vlan><tag id='100'/>`: on a
//! compute node a tap in the Linux bridge of VLAN 100; on a PM an access
//! port of VLAN 100 on the PM's bridge of that VLAN, whose trunk is a port
//! of `br-int` in the operator's VI ([`crate::guest::pm_vlan_bridge`]).
//!
//! The hosts' migration network is VLAN 100 itself: each host has an
//! address on its bridge of that VLAN, so the migration stream crosses the
//! IaaS LAN, the IaaS gateway, the emulated WAN, the HaaS gateway and the
//! GRE mesh, as the guests' own traffic does. The destination QEMU is
//! started with `-incoming` on its host's address; the source is told to
//! `migrate` over QMP; once QEMU reports `completed` the source QEMU is
//! stopped and its tap unplugged, as libvirt does. The RARPs that follow
//! are QEMU's own (captured on the destination tap to prove it). Under
//! TCG the guest is paused for the whole copy
//! ([`MigrationWorld::pause_for_copy`]): QEMU 7.2's live migration of a
//! TCG guest loses some of the writes the guest makes during the copy.
//!
//! First, two migrations that fail, each with its own guest: one whose
//! destination QEMU is killed mid-stream, one whose WAN is cut mid-stream
//! (the stream then stalls, and the source cancels it as libvirt aborts a
//! job whose peer stopped answering). Either way the guest must run on
//! its source and the registry must still place it behind the HaaS
//! gateway. Then the moves: guest A in and out at 0 ms and at
//! [`DELAYS`]`[1]` ms one way, guest B at [`DELAYS`]`[2]` ms (two guests,
//! as a MAC moving more than five times in 180 s is flapping).
//!
//! Checked for each move: QEMU completed, the guest runs on the
//! destination and answers pings, the registry places its MAC where it
//! went (the destination PM's trunk port, or behind the HaaS gateway), a
//! RARP from the guest crossed the destination tap, and the longest gap
//! between replies stays within [`GAP_BOUND`] beyond the guest's pause and
//! two WAN round trips (a loose bound, the machine being shared; the
//! target, one round trip and 20 ms, is measured in docs/experiments.md).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::harness::{check, ms, round3, Harness, PingSummary, ScenarioError, CONVERGE};
use super::intercloud::{self, World, VI, VLAN};
use super::migrate_intercloud::{host_name, is_behind_gateway, is_rarp_from, wait_location};
use super::qemu_migrate::{prepare_image, ImageReport};
use crate::frames::Capture;
use crate::guest::{self, Accel, Guest, GuestImage, GuestSpec, MigrationStatus, MIGRATION_PORT};
use crate::process::tail_of;
use crate::wan::Impairment;
use crate::{ComputeId, Host, Ipv4Cidr, MacAddr, PingPlan, PmId, VmId, WallClock};

/// One-way WAN delays, in milliseconds, of the scenario's moves.
pub const DELAYS: [u64; 3] = [0, 10, 50];
const INTERVAL: Duration = Duration::from_millis(10);
/// More than any run needs; the run is interrupted once the migration is
/// over and [`AFTER`] has passed.
const PINGS: u32 = 10_000;
const BEFORE: Duration = Duration::from_secs(1);
const AFTER: Duration = Duration::from_millis(1500);
/// A guest boots in 10–20 s under TCG on a busy 2-core host.
const BOOT: Duration = Duration::from_secs(120);
const MIGRATION: Duration = Duration::from_secs(120);
/// The copy rate of the migrations made to fail, so that they are caught
/// mid-stream.
const SLOW_BYTES_PER_S: u64 = 1_000_000;
/// How long a stream may stall before the source gives up on it, as
/// libvirt's keepalive gives up on a peer that stopped answering.
const STALL: Duration = Duration::from_secs(3);
/// The longest gap between replies allowed beyond the guest's pause and
/// two WAN round trips.
pub const GAP_BOUND: Duration = Duration::from_millis(1500);
/// The guests' RAM: small, so that a copy under TCG is quick.
pub const MEMORY_MIB: u32 = 128;

/// What `qemu-migrate-intercloud` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub accelerator: Accel,
    pub accelerator_why: String,
    pub image: ImageReport,
    pub boot_ms: Vec<f64>,
    pub destination_killed: FailedMigration,
    pub wan_cut: FailedMigration,
    pub moves: Vec<Move>,
}

/// A migration made to fail.
#[derive(Debug, Serialize)]
pub struct FailedMigration {
    pub from: String,
    pub to: String,
    /// Bytes of memory sent when the fault struck.
    pub fault_after_bytes: u64,
    pub status: MigrationStatus,
    /// `query-status` of the source afterwards.
    pub source_state: String,
    /// Where the registry placed the guest's MAC afterwards.
    pub registry: Value,
}

/// One live migration across the WAN.
#[derive(Debug, Serialize)]
pub struct Move {
    pub guest: String,
    pub from: String,
    pub to: String,
    pub one_way_wan_delay_ms: f64,
    pub qemu: MigrationStatus,
    /// From the source's `STOP` to the destination's `RESUME`, by QEMU's
    /// own event timestamps.
    pub guest_paused_ms: Option<f64>,
    /// The controller's `move` event's `latency_ms` (the RARP's PacketIn
    /// to the last barrier reply); none when the HaaS gateway's registry
    /// write placed the MAC before the RARP reached the controller.
    pub rarp_to_last_barrier_ms: Option<f64>,
    pub rarps_on_destination_tap: usize,
    pub registry: Value,
    pub lost: Vec<u32>,
    pub lost_after_first_rarp: Vec<u32>,
    pub longest_gap_ms: Option<f64>,
    /// The longest gap minus QEMU's downtime, and minus the guest's pause.
    pub gap_beyond_downtime_ms: Option<f64>,
    pub gap_beyond_pause_ms: Option<f64>,
    /// The paper's target: gap ≤ QEMU's downtime + one WAN round trip +
    /// 20 ms (reported, not asserted).
    pub target_met: Option<bool>,
    /// How far apart `ping` really sent: median and longest step.
    pub ping_pace_ms: Option<(f64, f64)>,
    pub ping: PingSummary,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    super::harness::to_json(&measure(h)?)
}

/// The intercloud world with a migration address on VLAN 100 on both
/// compute nodes and both PMs, the controller and the gateways running.
#[derive(Debug)]
pub struct MigrationWorld {
    pub world: World,
    pub pinger: VmId,
    pub image: GuestImage,
    pub accel: Accel,
    pub accel_why: String,
    pub image_report: ImageReport,
    /// Whether [`migrate`] pauses the guest for the whole copy: under TCG
    /// QEMU 7.2's live migration loses guest writes (some pages written
    /// during the copy never reach the destination, whose kernel then
    /// hangs or reboots; docs/scenarios.md, section 16). Off unless the
    /// caller asks.
    pub pause_for_copy: bool,
}

/// A host's migration address on VLAN 100: `10.1.0.20<n>` for compute
/// node n, `10.1.0.21<n>` for PM n.
fn migration_ip(host: Host) -> Ipv4Addr {
    match host {
        Host::Compute(ComputeId(n)) => Ipv4Addr::new(10, 1, 0, 201 + n as u8),
        Host::Pm(PmId(n)) => Ipv4Addr::new(10, 1, 0, 211 + n as u8),
    }
}

/// Builds the world of [`MigrationWorld`].
pub fn build(h: &mut Harness) -> Result<MigrationWorld, ScenarioError> {
    let (accel, accel_why, image, image_report) = prepare_image(h)?;
    let mut world = intercloud::build(h, 2, 2, Duration::ZERO)?;
    intercloud::start_controller(h, &world)?;
    intercloud::start_gateways(h, &mut world)?;
    h.wait_classified(&world.haas_vms)?;
    for &cn in &world.computes {
        let addr = Ipv4Cidr::new(migration_ip(Host::Compute(cn)), 24)?;
        guest::compute_vlan_address(&h.tb, cn, VLAN, addr)?;
    }
    for &pm in &world.pms[..2] {
        let addr = Ipv4Cidr::new(migration_ip(Host::Pm(pm)), 24)?;
        guest::pm_vlan_bridge(&h.tb, pm, VI, VLAN, Some(addr))?;
    }
    let pinger = world.haas_vms[0];
    Ok(MigrationWorld {
        world,
        pinger,
        image,
        accel,
        accel_why,
        image_report,
        pause_for_copy: false,
    })
}

/// Guest `n`'s spec: MAC `0x250 + n`, address `10.1.0.5<n>` on VLAN 100.
pub fn guest_spec(n: u8, accel: Accel) -> Result<GuestSpec, ScenarioError> {
    let mac = MacAddr::local(0x250 + u32::from(n));
    let ip: Ipv4Cidr = format!("10.1.0.{}/24", 50 + n).parse()?;
    let mut spec = GuestSpec::new(&format!("q{n}"), VI, mac, ip, accel).on_vlan(VLAN);
    spec.memory_mib = MEMORY_MIB;
    Ok(spec)
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let mut mw = build(h)?;
    mw.pause_for_copy = mw.accel == Accel::Tcg;
    if mw.pause_for_copy {
        h.note("TCG: each guest is paused for the whole copy of its migration");
    }
    let w = &mw.world;
    let (cn1, cn2, pm2) = (
        Host::Compute(w.computes[0]),
        Host::Compute(w.computes[1]),
        Host::Pm(w.pms[1]),
    );
    let specs = [guest_spec(0, mw.accel)?, guest_spec(1, mw.accel)?];
    let mut a = Guest::boot_on(&h.tb, cn1, &specs[0], &mw.image)?;
    let mut b = Guest::boot_on(&h.tb, cn2, &specs[1], &mw.image)?;
    let mut boot_ms = Vec::new();
    for g in [&mut a, &mut b] {
        boot_ms.push(ms(g.wait_booted(BOOT)?));
    }
    for spec in &specs {
        h.wait_reachable(mw.pinger, spec.ip.addr())?;
        wait_location(h, spec.mac, is_behind_gateway)?;
    }

    let destination_killed = fail_once(h, &mw, &mut a, &specs[0], pm2, Fault::KillDestination)?;
    let wan_cut = fail_once(h, &mw, &mut b, &specs[1], pm2, Fault::CutWan)?;

    let mut moves = Vec::new();
    let plan = [(DELAYS[0], pm2, cn1), (DELAYS[1], pm2, cn1)];
    for (delay, there, home) in plan {
        set_delay(h, &mw, delay, &specs)?;
        for to in [there, home] {
            let (guest, report) = migrate(h, &mw, a, &specs[0], to, delay)?;
            a = guest;
            moves.push(report);
        }
    }
    set_delay(h, &mw, DELAYS[2], &specs)?;
    for to in [pm2, cn2] {
        let (guest, report) = migrate(h, &mw, b, &specs[1], to, DELAYS[2])?;
        b = guest;
        moves.push(report);
    }
    a.remove(&h.tb)?;
    b.remove(&h.tb)?;
    Ok(Report {
        accelerator: mw.accel,
        accelerator_why: mw.accel_why,
        image: mw.image_report,
        boot_ms,
        destination_killed,
        wan_cut,
        moves,
    })
}

/// Sets the WAN's one-way delay and waits until the pinger reaches every
/// guest again (the relay restarts).
pub fn set_delay(
    h: &mut Harness,
    mw: &MigrationWorld,
    delay_ms: u64,
    specs: &[GuestSpec],
) -> Result<(), ScenarioError> {
    let delay = Duration::from_millis(delay_ms);
    if h.tb.wan(mw.world.wan).impairment().delay != delay {
        h.tb.wan_mut(mw.world.wan)
            .set_impairment(Impairment::delay(delay))?;
    }
    for spec in specs {
        h.wait_reachable(mw.pinger, spec.ip.addr())?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillDestination,
    CutWan,
}

/// A migration of `source` to `to` made to fail by `fault` mid-stream.
fn fail_once(
    h: &mut Harness,
    mw: &MigrationWorld,
    source: &mut Guest,
    spec: &GuestSpec,
    to: Host,
    fault: Fault,
) -> Result<FailedMigration, ScenarioError> {
    let (from_name, to_name) = (host_name(h, source.host()), host_name(h, to));
    h.note(format!(
        "migrating {} from {from_name} to {to_name}, and {fault:?} mid-stream",
        spec.name
    ));
    let at = SocketAddrV4::new(migration_ip(to), MIGRATION_PORT);
    let mut doomed = Guest::incoming_on(&h.tb, to, spec, &mw.image, at)?;
    let struck = strike(h, mw, source, &mut doomed, spec, fault, at);
    let name = format!("{}-{from_name}-{to_name}-{fault:?}", spec.name);
    let (fault_after_bytes, status, source_state, registry) = struck.map_err(|e| {
        let qemus = [("source", source), ("destination", &mut doomed)];
        explain(h, mw, e, &name, spec, qemus)
    })?;
    Ok(FailedMigration {
        from: from_name,
        to: to_name,
        fault_after_bytes,
        status,
        source_state,
        registry,
    })
}

/// [`fail_once`] once the destination listens on `at`: the bytes sent
/// when the fault struck, how the migration ended, the source's state,
/// and the registry's location of the guest.
fn strike(
    h: &mut Harness,
    mw: &MigrationWorld,
    source: &mut Guest,
    doomed: &mut Guest,
    spec: &GuestSpec,
    fault: Fault,
    at: SocketAddrV4,
) -> Result<(u64, MigrationStatus, String, Value), ScenarioError> {
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
        "the slowed migration ended before the fault could strike".into()
    })?;
    let status = match fault {
        Fault::KillDestination => {
            doomed.kill()?;
            source.wait_migration(MIGRATION)?
        }
        Fault::CutWan => {
            h.tb.wan_mut(mw.world.wan).cut()?;
            let stalled = wait_stalled(h, source);
            // The source gives up on the stalled stream, as libvirt does
            // once its keepalive to the destination goes unanswered.
            let cancelled = source
                .qmp()
                .execute("migrate_cancel", None)
                .map_err(ScenarioError::from)
                .and_then(|_| Ok(source.wait_migration(MIGRATION)?));
            doomed.kill()?;
            h.tb.wan_mut(mw.world.wan).repair()?;
            stalled?;
            cancelled?
        }
    };
    let source_state = source.run_state()?;
    doomed.stop(&h.tb)?;
    source.set_migration_parameters(json!({ "max-bandwidth": defaults["max-bandwidth"] }))?;
    let want = match fault {
        Fault::KillDestination => "failed",
        Fault::CutWan => "cancelled",
    };
    check(status.status == want, || {
        format!("after {fault:?} the migration ended {status:?}, not {want}")
    })?;
    check(source_state == "running", || {
        format!("after {fault:?} the source guest is {source_state}, not running")
    })?;
    h.wait_reachable(mw.pinger, spec.ip.addr())?;
    let registry = wait_location(h, spec.mac, is_behind_gateway)?;
    Ok((sending, status, source_state, registry))
}

/// Waits until the migration's transferred bytes stop growing for
/// [`STALL`] (the WAN is cut).
fn wait_stalled(h: &Harness, source: &mut Guest) -> Result<u64, ScenarioError> {
    let mut last = (0, Instant::now());
    h.wait_for("the migration stream to stall", CONVERGE, || {
        let s = source.migration()?;
        let n = s.transferred_bytes.unwrap_or(0);
        if s.finished() {
            return Ok(Err(format!("the migration ended: {s:?}")));
        }
        if n != last.0 {
            last = (n, Instant::now());
        }
        Ok(if last.1.elapsed() >= STALL {
            Ok(n)
        } else {
            Err(format!("{n} bytes sent, still moving"))
        })
    })
}

/// Live-migrates `source` to `to` while the pinger pings it; the guest on
/// its new host and what the move measured.
pub fn migrate(
    h: &mut Harness,
    mw: &MigrationWorld,
    mut source: Guest,
    spec: &GuestSpec,
    to: Host,
    delay_ms: u64,
) -> Result<(Guest, Move), ScenarioError> {
    let at = SocketAddrV4::new(migration_ip(to), MIGRATION_PORT);
    let mut dest = Guest::incoming_on(&h.tb, to, spec, &mw.image, at)?;
    let name = move_name(h, spec, source.host(), to, delay_ms);
    match follow(h, mw, &mut source, &mut dest, spec, delay_ms) {
        Ok(report) => Ok((dest, report)),
        Err(e) => {
            let qemus = [("source", &mut source), ("destination", &mut dest)];
            Err(explain(h, mw, e, &name, spec, qemus))
        }
    }
}

/// Names a move's ping run and its files: `q0-cn1-pm2-10ms`.
fn move_name(h: &Harness, spec: &GuestSpec, from: Host, to: Host, delay_ms: u64) -> String {
    let (from, to) = (host_name(h, from), host_name(h, to));
    format!("{}-{from}-{to}-{delay_ms}ms", spec.name)
}

/// [`migrate`] once the destination QEMU listens: the move and what it
/// measured. The source QEMU is stopped once the migration is over, as
/// libvirt does, what both QEMUs said then kept in
/// `<move>.after-migration.log` in the state directory.
fn follow(
    h: &mut Harness,
    mw: &MigrationWorld,
    source: &mut Guest,
    dest: &mut Guest,
    spec: &GuestSpec,
    delay_ms: u64,
) -> Result<Move, ScenarioError> {
    let to = dest.host();
    let (from_name, to_name) = (host_name(h, source.host()), host_name(h, to));
    let name = move_name(h, spec, source.host(), to, delay_ms);
    let ip = spec.ip.addr();
    let at = SocketAddrV4::new(migration_ip(to), MIGRATION_PORT);
    let netns = match to {
        Host::Pm(p) => h.tb.pm(p).netns(),
        Host::Compute(c) => h.tb.compute(c).netns(),
    };
    let capture = Capture::start(netns, dest.tap())?;
    h.note(format!(
        "pinging {ip} every 10 ms; migrating {} from {from_name} to {to_name} over {at} at \
         {delay_ms} ms one way",
        spec.name
    ));
    let events = h.controller()?.events()?;
    let clock = WallClock::now();
    let run = h.ping_run(mw.pinger, PingPlan::new(ip, PINGS, INTERVAL), &name)?;
    std::thread::sleep(BEFORE);
    // Paused for the whole copy, the guest writes nothing the copy could
    // miss; the destination is resumed once QEMU reports it completed.
    let cold = mw.pause_for_copy;
    if cold {
        source.pause()?;
    }
    source.migrate(at)?;
    let qemu = source.wait_migration(MIGRATION)?;
    if cold && qemu.status == "completed" {
        // A `cont` while it still loads would be overridden by the
        // paused state the stream carries.
        h.wait_for("the destination to load the guest", CONVERGE, || {
            let state = dest.run_state()?;
            Ok(if state == "inmigrate" {
                Err(state)
            } else {
                Ok(())
            })
        })?;
        dest.resume()?;
    }
    let resumed = dest.wait_running(CONVERGE);
    let paused_at = source.qmp().last_event_time("STOP");
    let resumed_at = dest.qmp().last_event_time("RESUME");
    let after = json!({ "source": source.state(), "destination": dest.state() });
    keep(h, &format!("{name}.after-migration.log"), &after)?;
    source.stop(&h.tb)?;
    std::thread::sleep(AFTER);
    let trace = run.interrupt()?;
    let frames = capture.finish()?;
    let events = events.finish()?;
    check(qemu.status == "completed", || {
        format!("the migration to {to_name} ended {qemu:?}")
    })?;
    resumed?;

    let rarps: Vec<f64> = frames
        .iter()
        .filter(|f| is_rarp_from(&f.data, spec.mac))
        .map(|f| clock.epoch(f.at))
        .collect();
    check(!rarps.is_empty(), || {
        format!(
            "no RARP from {} crossed the destination tap: QEMU did not announce the guest",
            spec.mac
        )
    })?;
    let registry = match to {
        Host::Pm(pm) => {
            let host = h.tb.pm(pm).name().to_owned();
            let port = h.tb.pm(pm).ofport(&format!("brv{VLAN}-vlan"))?;
            wait_location(h, spec.mac, |l| {
                l["kind"] == "port" && l["host"] == host.as_str() && l["ofport"] == port
            })?
        }
        Host::Compute(_) => wait_location(h, spec.mac, is_behind_gateway)?,
    };
    let mac = spec.mac.to_string();
    let moved = events
        .iter()
        .map(|e| &e.data)
        .find(|d| d["type"] == "move" && d["mac"] == mac.as_str());
    // Into the HaaS DC only the controller sees the RARP: it must move
    // the MAC itself.
    if matches!(to, Host::Pm(_)) {
        check(moved.is_some(), || {
            format!(
                "the controller published no move event for {mac}: {:?}",
                events.iter().map(|e| &e.data).collect::<Vec<_>>()
            )
        })?;
    }
    if !trace.resumed() {
        // What crossed the destination tap after the first RARP says which
        // way the pings were lost.
        let after: Vec<_> = frames
            .iter()
            .filter(|f| rarps.first().is_some_and(|&t| clock.epoch(f.at) >= t))
            .collect();
        let to_guest = after
            .iter()
            .filter(|f| f.data.get(0..6) == Some(&spec.mac.0[..]))
            .count();
        let from_guest = after
            .iter()
            .filter(|f| f.data.get(6..12) == Some(&spec.mac.0[..]))
            .count();
        let later = h.wait_reachable(mw.pinger, ip).map(ms);
        return Err(ScenarioError::Failed(format!(
            "pings did not resume after the migration to {to_name}: lost {:?} of {}; after \
             the first RARP {to_guest} frames to the guest and {from_guest} from it crossed \
             its tap; reachable again after {later:?} ms",
            trace.lost(),
            trace.summary.transmitted
        )));
    }
    h.wait_reachable(mw.pinger, ip)?;

    let gap = trace.longest_gap();
    let paused = paused_at.zip(resumed_at).map(|(p, r)| (r - p) * 1e3);
    let rtt = 2.0 * delay_ms as f64;
    if let (Some(g), Some(p)) = (gap, paused.or(qemu.downtime_ms)) {
        let bound = p + 2.0 * rtt + ms(GAP_BOUND);
        check(ms(g) <= bound, || {
            format!(
                "the longest gap between replies, {:.0} ms, exceeds the guest's pause \
                 ({p:.0} ms) plus two WAN round trips and {} ms",
                ms(g),
                GAP_BOUND.as_millis()
            )
        })?;
    }
    let first_rarp = rarps.first().copied();
    let report = Move {
        guest: spec.name.clone(),
        from: from_name,
        to: to_name,
        one_way_wan_delay_ms: delay_ms as f64,
        guest_paused_ms: paused.map(round3),
        rarp_to_last_barrier_ms: moved.and_then(|d| d["latency_ms"].as_f64()).map(round3),
        rarps_on_destination_tap: rarps.len(),
        registry,
        lost: trace.lost(),
        lost_after_first_rarp: first_rarp.map(|t| trace.lost_since(t)).unwrap_or_default(),
        longest_gap_ms: gap.map(ms),
        gap_beyond_downtime_ms: gap.zip(qemu.downtime_ms).map(|(g, d)| round3(ms(g) - d)),
        gap_beyond_pause_ms: gap.zip(paused).map(|(g, p)| round3(ms(g) - p)),
        target_met: gap
            .zip(qemu.downtime_ms)
            .map(|(g, d)| ms(g) <= d + rtt + 20.0),
        ping_pace_ms: trace
            .pace()
            .map(|(median, longest)| (ms(median), ms(longest))),
        ping: PingSummary::from(&trace),
        qemu,
    };
    h.note(format!(
        "{} -> {}: total {:?} ms, downtime {:?} ms, paused {:?} ms, gap {:?} ms, lost {}",
        report.from,
        report.to,
        report.qemu.total_time_ms,
        report.qemu.downtime_ms,
        report.guest_paused_ms,
        report.longest_gap_ms,
        report.lost.len()
    ));
    Ok(report)
}

/// Writes `value` as JSON to `file` in the state directory, which a
/// failure keeps among the logs (`*.log`).
fn keep(h: &Harness, file: &str, value: &Value) -> Result<(), ScenarioError> {
    let path = h.tb.state_dir().join(file);
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| e.to_string());
    std::fs::write(&path, text).map_err(|e| crate::Error::io_at("writing", &path, e))?;
    Ok(())
}

/// `error`, with the evidence of the migration `name` kept and named: in
/// `<name>.failure.log` what each of `qemus` says now ([`Guest::state`]),
/// the registry's entry of the guest's MAC, and the flows and learned
/// MACs that name it on every switch of the path; beside it each QEMU's
/// console (its last lines quoted) and log, and
/// `<name>.after-migration.log` when the migration got that far. All of
/// it is in the logs directory a failure keeps, under the names given.
fn explain<const N: usize>(
    h: &Harness,
    mw: &MigrationWorld,
    error: ScenarioError,
    name: &str,
    spec: &GuestSpec,
    qemus: [(&str, &mut Guest); N],
) -> ScenarioError {
    let state_dir = h.tb.state_dir();
    let relative = |p: &Path| p.strip_prefix(state_dir).unwrap_or(p).display().to_string();
    let mut states = serde_json::Map::new();
    let mut files = Vec::new();
    for (role, guest) in qemus {
        let host = host_name(h, guest.host());
        let console = guest.serial_log().to_path_buf();
        files.push(format!(
            "the {role}'s ({host}) console {} (ending: {:?}) and QEMU log {}",
            relative(&console),
            tail_of(&console, 2),
            guest
                .qemu_log()
                .map(relative)
                .unwrap_or_else(|| "(none)".into()),
        ));
        states.insert(
            role.to_owned(),
            json!({ "host": host, "qemu": guest.state() }),
        );
    }
    let path = format!("/v1/registry/{VI}/{VLAN}/{}", spec.mac);
    let registry = match h
        .controller()
        .and_then(|c| Ok(c.request("GET", &path, None)?))
    {
        Ok((status, body)) => {
            json!({ "status": status, "body": serde_json::from_str::<Value>(&body).unwrap_or(json!(body)) })
        }
        Err(e) => json!(e.to_string()),
    };
    let failure = json!({
        "error": error.to_string(),
        "qemus": states,
        "registry": registry,
        "switches": switches_naming(h, mw, spec.mac),
    });
    let file = format!("{name}.failure.log");
    let mut kept = vec![file.clone()];
    if let Err(e) = keep(h, &file, &failure) {
        kept = vec![format!("(not kept: {e})")];
    }
    let after = format!("{name}.after-migration.log");
    if state_dir.join(&after).exists() {
        kept.push(after);
    }
    error.noted(&format!(
        "kept in the logs directory: {}; {}",
        kept.join(", "),
        files.join("; ")
    ))
}

/// The OpenFlow flows and the learned MAC entries that name `mac`, on
/// every OVS switch of the path (both gateways, the PMs, the compute
/// nodes), bridge by bridge; a switch that cannot be asked says why.
fn switches_naming(h: &Harness, mw: &MigrationWorld, mac: MacAddr) -> Value {
    let mac = mac.to_string();
    let w = &mw.world;
    let mut switches: Vec<(String, &crate::ovs::OvsInstance)> = Vec::new();
    for &pm in w.pms.iter().chain([&w.gw_haas]) {
        switches.push((h.tb.pm(pm).name().to_owned(), h.tb.pm(pm).ovs()));
    }
    for &cn in &w.computes {
        switches.push((h.tb.compute(cn).name().to_owned(), h.tb.compute(cn).ovs()));
    }
    let gw = h.tb.gateway(w.gw_iaas);
    switches.push((gw.name().to_owned(), gw.ovs()));
    let naming = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(&mac))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    let mut out = serde_json::Map::new();
    for (node, ovs) in switches {
        let bridges = match ovs.vsctl(&["list-br"]) {
            Ok(text) => text,
            Err(e) => {
                out.insert(node, json!(e.to_string()));
                continue;
            }
        };
        let mut per_bridge = serde_json::Map::new();
        for br in bridges.lines().map(str::trim).filter(|b| !b.is_empty()) {
            let flows = ovs
                .ofctl(&["dump-flows", br])
                .map(naming)
                .unwrap_or_else(|e| vec![e.to_string()]);
            let fdb = ovs
                .appctl(&["fdb/show", br])
                .map(naming)
                .unwrap_or_else(|e| vec![e.to_string()]);
            per_bridge.insert(br.to_owned(), json!({ "flows": flows, "fdb": fdb }));
        }
        out.insert(node, Value::Object(per_bridge));
    }
    Value::Object(out)
}
