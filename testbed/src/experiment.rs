//! `iris-testbed experiment wan`: the shape of the Iris paper's WAN study
//! on the inter-cloud world of [`crate::scenario::intercloud`]. As the
//! one-way WAN delay goes through a list (by default 0, 5, 10, 20, 50 and
//! 100 ms), it measures
//!
//! - ping RTT from an IaaS guest to a guest on a HaaS L1 node (across both
//!   gateways and the WAN), and from that IaaS guest to another IaaS guest
//!   of the same DC (the paper's in-DC baseline, untouched by the WAN);
//! - a move IaaS DC -> HaaS DC, emulated: a fresh IaaS guest's port is
//!   re-plugged onto a HaaS PM and it announces itself in QEMU's RARP
//!   rounds while the other IaaS guest pings it every 10 ms across the
//!   WAN. Measured: first RARP to the controller's `move` event (as read
//!   from `/v1/events`, and the event's own `latency_ms`), and re-plug to
//!   the first ping reply.
//!
//! It writes `wan.md` (the table) and `wan-rtt.svg`, `wan-migration.svg`
//! (the plots) into the directory given.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::plot::{Chart, Series};
use crate::readiness::{poll_until, Probe};
use crate::scenario::intercloud::{self as ic, HAAS_GATEWAY, VI, VLAN};
use crate::scenario::migrate::qemu_announcement;
use crate::scenario::{check, ms, round3, Harness, Options, ScenarioError, CONVERGE};
use crate::{ComputeSpec, MacAddr, PingPlan, VmId, VmSpec};

/// What to measure.
#[derive(Debug, Clone)]
pub struct WanOptions {
    pub delays_ms: Vec<u64>,
    /// Echo requests per RTT measurement.
    pub pings: u32,
    pub interval: Duration,
    pub out: PathBuf,
}

/// Every figure at one delay.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub one_way_delay_ms: u64,
    pub iaas_haas: ic::RttAt,
    pub iaas_iaas: ic::RttAt,
    /// The first RARP sent to the controller's `move` event read.
    pub rarp_to_move_event_ms: f64,
    /// The controller's own figure in that event: RARP in to the last
    /// switch's barrier.
    pub move_latency_ms: Option<f64>,
    /// The port re-plugged on the HaaS PM to the first ping reply.
    pub replug_to_first_reply_ms: Option<f64>,
    pub pings_lost_in_move: usize,
}

/// What `experiment wan` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

/// Pings every 10 ms during a move, for 3 s plus the WAN's round trips.
const MOVE_PING_INTERVAL: Duration = Duration::from_millis(10);

/// Runs the experiment on `h`.
pub fn measure(h: &mut Harness, o: &WanOptions) -> Result<Report, ScenarioError> {
    let mut world = ic::build(h, 1, 2, Duration::ZERO)?;
    // One fresh guest per delay, on a compute node of their own, each moved
    // once: no move depends on the one before.
    let lan = h.tb.compute(world.computes[0]).lan();
    let movers_cn = h.tb.add_compute(ComputeSpec::new("cnm", lan))?;
    let mut movers = Vec::new();
    for (i, _) in (0u32..).zip(&o.delays_ms) {
        let mac = MacAddr::local(0x300 + i);
        let ip = format!("10.1.0.{}/24", 100 + i).parse()?;
        let spec = VmSpec::on_compute(&format!("mvm{i}"), movers_cn, VLAN, VI, mac, ip);
        movers.push(h.add_vm(spec)?);
    }
    ic::start_controller(h, &world)?;
    ic::start_gateways(h, &mut world)?;
    h.wait_classified(&world.haas_vms)?;
    let (hvm, ivm, ivm2) = (world.haas_vms[0], world.iaas_vms[0], world.iaas_vms[1]);
    let hvm_ip = h.tb.vm(hvm).vlans()[0].ip.addr();
    let ivm2_ip = h.tb.vm(ivm2).ip().addr();
    h.tb.vm(hvm)
        .wait_reachable(h.tb.vm(ivm).ip().addr(), CONVERGE)?;
    h.wait_reachable(ivm, hvm_ip)?;
    h.wait_reachable(ivm, ivm2_ip)?;
    let target = world.pms[0];

    let mut rows = Vec::new();
    for (&d, &mover) in o.delays_ms.iter().zip(&movers) {
        let delay = Duration::from_millis(d);
        let iaas_haas = ic::rtt_at(h, &world, delay, ivm, hvm_ip, o.pings, o.interval)?;
        let iaas_iaas = ic::ping_rtt(h, delay, ivm, ivm2_ip, o.pings, o.interval)?;
        let row = move_at(h, d, ivm, mover, (target, hvm_ip), iaas_haas, iaas_iaas)?;
        h.note(format!(
            "{d} ms: RTT IaaS-HaaS {} ms, IaaS-IaaS {} ms; RARP to move event {} ms, \
             re-plug to first reply {:?} ms",
            row.iaas_haas.rtt_avg_ms,
            row.iaas_iaas.rtt_avg_ms,
            row.rarp_to_move_event_ms,
            row.replug_to_first_reply_ms
        ));
        rows.push(row);
    }
    Ok(Report { rows })
}

/// Moves `mover` (an IaaS guest) onto HaaS PM `target` while `pinger`
/// pings it, and times the move.
fn move_at(
    h: &mut Harness,
    delay_ms: u64,
    pinger: VmId,
    mover: VmId,
    (target, haas_ip): (crate::PmId, Ipv4Addr),
    iaas_haas: ic::RttAt,
    iaas_iaas: ic::RttAt,
) -> Result<Row, ScenarioError> {
    let dst = h.tb.vm(mover).ip().addr();
    let mac = h.tb.vm(mover).mac();
    // Known in its DC and, by its ARP across the WAN, behind the HaaS
    // gateway before it moves: the move is then one from the gateway to a
    // port, as a migration out of the IaaS DC is.
    h.wait_reachable(pinger, dst)?;
    h.wait_reachable(mover, haas_ip)?;
    let path = format!("/v1/registry/{VI}/{VLAN}/{mac}");
    let c = h.controller()?;
    poll_until(&format!("{mac} behind {HAAS_GATEWAY}"), CONVERGE, || {
        let entry = c.get_json(&path);
        Ok(match entry {
            Ok(e) if e["location"]["gateway"] == HAAS_GATEWAY => Probe::Ready(()),
            other => Probe::NotYet(format!("{other:?}")),
        })
    })?;
    let window = Duration::from_secs(3) + Duration::from_millis(8 * delay_ms);
    let count = (window.as_millis() / MOVE_PING_INTERVAL.as_millis()) as u32;
    let events = h.controller()?.events()?;
    let name = format!("move-at-{delay_ms}ms");
    let run = h.ping_run(pinger, PingPlan::new(dst, count, MOVE_PING_INTERVAL), &name)?;
    std::thread::sleep(Duration::from_millis(300));
    let clock = crate::WallClock::now();
    h.tb.move_vm(mover, target)?;
    let plugged = Instant::now();
    let vm = h.tb.vm(mover);
    let sent = crate::frames::send_frames(vm.netns(), vm.interface(), &qemu_announcement(mac))?;
    let trace = run.wait(window + Duration::from_secs(10))?;
    let events = events.finish()?;
    let first_rarp = sent.first().copied().unwrap_or(plugged);
    let mac_text = mac.to_string();
    let moved = events
        .iter()
        .find(|e| e.data["type"] == "move" && e.data["mac"] == mac_text.as_str())
        .ok_or_else(|| {
            ScenarioError::Failed(format!(
                "at {delay_ms} ms the controller published no move event for {mac}; ping \
                 lost {:?}; events: {:?}",
                trace.lost(),
                events.iter().map(|e| &e.data).collect::<Vec<_>>()
            ))
        })?;
    check(trace.resumed(), || {
        format!(
            "at {delay_ms} ms pings to the moved guest did not resume: lost {:?}",
            trace.lost()
        )
    })?;
    let replugged = clock.epoch(plugged);
    Ok(Row {
        one_way_delay_ms: delay_ms,
        iaas_haas,
        iaas_iaas,
        rarp_to_move_event_ms: round3(ms(moved.at.saturating_duration_since(first_rarp))),
        move_latency_ms: moved.data["latency_ms"].as_f64(),
        replug_to_first_reply_ms: trace.first_reply_after(replugged).map(|d| round3(ms(d))),
        pings_lost_in_move: trace.lost().len(),
    })
}

/// The report as a markdown table.
pub fn table(report: &Report) -> String {
    let mut t = String::from(
        "| one-way WAN delay (ms) | RTT IaaS↔HaaS avg (min–max) ms | RTT IaaS↔IaaS avg \
         (min–max) ms | RARP → move event ms | controller's move latency ms | re-plug → first \
         reply ms | pings lost in the move |\n|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"));
    for r in &report.rows {
        let _ = writeln!(
            t,
            "| {} | {:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | {:.2} | {} | {} | {} |",
            r.one_way_delay_ms,
            r.iaas_haas.rtt_avg_ms,
            r.iaas_haas.rtt_min_ms,
            r.iaas_haas.rtt_max_ms,
            r.iaas_iaas.rtt_avg_ms,
            r.iaas_iaas.rtt_min_ms,
            r.iaas_iaas.rtt_max_ms,
            r.rarp_to_move_event_ms,
            opt(r.move_latency_ms),
            opt(r.replug_to_first_reply_ms),
            r.pings_lost_in_move,
        );
    }
    t
}

/// The two charts: RTT, and migration time, against the one-way delay.
pub fn charts(report: &Report) -> [Chart; 2] {
    let series = |name: &str, f: fn(&Row) -> Option<f64>| {
        Series::new(
            name,
            report
                .rows
                .iter()
                .filter_map(|r| Some((r.one_way_delay_ms as f64, f(r)?)))
                .collect(),
        )
    };
    [
        Chart {
            title: "Ping RTT against the WAN's one-way delay".into(),
            x_label: "one-way WAN delay (ms)".into(),
            y_label: "average RTT (ms)".into(),
            series: vec![
                series("IaaS guest ↔ HaaS guest", |r| {
                    Some(r.iaas_haas.rtt_avg_ms)
                }),
                series("IaaS guest ↔ IaaS guest", |r| {
                    Some(r.iaas_iaas.rtt_avg_ms)
                }),
            ],
        },
        Chart {
            title: "Move IaaS DC → HaaS DC against the WAN's one-way delay".into(),
            x_label: "one-way WAN delay (ms)".into(),
            y_label: "time (ms)".into(),
            series: vec![
                series("first RARP → controller's move event", |r| {
                    Some(r.rarp_to_move_event_ms)
                }),
                series("re-plug → first ping reply", |r| {
                    r.replug_to_first_reply_ms
                }),
            ],
        },
    ]
}

/// Writes `wan.md`, `wan-rtt.svg` and `wan-migration.svg` into `dir`.
pub fn write(report: &Report, dir: &Path) -> crate::Result<Vec<PathBuf>> {
    let [rtt, moves] = charts(report);
    write_files(
        dir,
        &[
            ("wan.md", table(report)),
            ("wan-rtt.svg", rtt.to_svg()?),
            ("wan-migration.svg", moves.to_svg()?),
        ],
    )
}

/// `iris-testbed experiment wan`: runs it on a fresh testbed, writes the
/// files, prints the report as JSON.
pub fn run_wan(options: &Options, o: &WanOptions) -> std::process::ExitCode {
    run_experiment(
        "experiment-wan",
        options,
        |h| measure(h, o),
        |r| write(r, &o.out),
    )
}

/// Runs experiment `name` (`measure`) on a fresh testbed, has `write` write
/// its files, prints the outcome as JSON; fails, writing nothing, when the
/// experiment did.
pub fn run_experiment<R: Serialize>(
    name: &'static str,
    options: &Options,
    measure: impl FnOnce(&mut Harness) -> Result<R, ScenarioError>,
    write: impl FnOnce(&R) -> crate::Result<Vec<PathBuf>>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let (outcome, report) = crate::scenario::run_measured(name, options, measure);
    let Some(report) = report else {
        eprintln!(
            "{name} failed: {}{}",
            outcome.reason.as_deref().unwrap_or("unknown"),
            outcome
                .logs
                .map(|l| format!(" (logs kept in {})", l.display()))
                .unwrap_or_default()
        );
        return ExitCode::FAILURE;
    };
    match write(&report) {
        Ok(files) => {
            for f in files {
                eprintln!("wrote {}", f.display());
            }
            match serde_json::to_string_pretty(&outcome) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("printing the report: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `files` (name, text) into `dir`; the paths written.
pub fn write_files(dir: &Path, files: &[(&str, String)]) -> crate::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io_at("creating", dir, e))?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| crate::Error::io_at("writing", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtt(avg: f64) -> ic::RttAt {
        ic::RttAt {
            one_way_delay_ms: 0.0,
            pings: 10,
            received: 10,
            rtt_min_ms: avg - 0.1,
            rtt_avg_ms: avg,
            rtt_max_ms: avg + 0.1,
        }
    }

    #[test]
    fn the_table_and_charts_carry_every_row() {
        let row = |d: u64, reply: Option<f64>| Row {
            one_way_delay_ms: d,
            iaas_haas: rtt(2.0 * d as f64 + 1.0),
            iaas_iaas: rtt(0.5),
            rarp_to_move_event_ms: 3.0,
            move_latency_ms: Some(1.5),
            replug_to_first_reply_ms: reply,
            pings_lost_in_move: 2,
        };
        let report = Report {
            rows: vec![row(0, Some(12.0)), row(50, None)],
        };
        let t = table(&report);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("| 50 | 101.00 (100.90–101.10) | 0.50"), "{t}");
        assert!(
            t.contains("| — | 2 |"),
            "a missing reply reads as a dash: {t}"
        );
        let [rtt_chart, move_chart] = charts(&report);
        assert_eq!(rtt_chart.series[0].points, vec![(0.0, 1.0), (50.0, 101.0)]);
        assert_eq!(
            move_chart.series[1].points,
            vec![(0.0, 12.0)],
            "a move without a reply has no point"
        );
    }
}
