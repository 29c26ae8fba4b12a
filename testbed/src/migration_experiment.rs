//! `iris-testbed experiment qemu-migration`: the shape of the Iris paper's
//! migration-time figure (migration time against WAN latency) with real
//! QEMU live migrations, on the world of the `qemu-migrate-intercloud`
//! scenario ([`crate::scenario::qemu_migrate_intercloud`]).
//!
//! For each one-way WAN delay (by default 0, 5, 10, 20, 50 and 100 ms) a
//! fresh guest (booted at the start on a compute node, one per delay, so
//! that no move depends on the one before) live-migrates from the IaaS DC
//! to a HaaS PM, the stream across the WAN, while the guest on a HaaS L1
//! node pings it every 10 ms. Measured: QEMU's total time and downtime,
//! the guest's pause (its `STOP` to its `RESUME`), the controller's
//! RARP-to-last-barrier time, pings lost and the longest gap.
//!
//! It writes `qemu-migration.md` (the table) and `qemu-migration.svg` into
//! the directory given.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::experiment::{run_experiment, write_files};
use crate::guest::Guest;
use crate::plot::{Chart, Series};
use crate::scenario::qemu_migrate_intercloud::{self as qmi, Move};
use crate::scenario::{Harness, Options, ScenarioError};
use crate::Host;

/// What to measure.
#[derive(Debug, Clone)]
pub struct MigrationOptions {
    pub delays_ms: Vec<u64>,
    pub out: PathBuf,
}

/// What `experiment qemu-migration` measured: one move per delay.
#[derive(Debug, Serialize)]
pub struct Report {
    pub accelerator: crate::guest::Accel,
    pub memory_mib: u32,
    pub moves: Vec<Move>,
}

/// How long a guest may take to boot (many at once, under TCG).
const BOOT: Duration = Duration::from_secs(180);

/// Runs the experiment on `h`.
pub fn measure(h: &mut Harness, o: &MigrationOptions) -> Result<Report, ScenarioError> {
    let guests = u8::try_from(o.delays_ms.len())
        .ok()
        .filter(|&n| (1..=40).contains(&n))
        .ok_or_else(|| {
            ScenarioError::Failed(format!(
                "give between 1 and 40 delays, not {}",
                o.delays_ms.len()
            ))
        })?;
    let mw = qmi::build(h)?;
    let computes = mw.world.computes.clone();
    let to = Host::Pm(mw.world.pms[1]);
    let mut booted = Vec::new();
    for n in 0..guests {
        let spec = qmi::guest_spec(n, mw.accel)?;
        let home = Host::Compute(computes[usize::from(n) % computes.len()]);
        booted.push((Guest::boot_on(&h.tb, home, &spec, &mw.image)?, spec));
    }
    let specs: Vec<_> = booted.iter().map(|(_, s)| s.clone()).collect();
    for (g, _) in &mut booted {
        g.wait_booted(BOOT)?;
    }
    let mut moves = Vec::new();
    for (i, (&delay, (guest, spec))) in o.delays_ms.iter().zip(booted).enumerate() {
        // The guests moved before are gone; those to come must answer.
        qmi::set_delay(h, &mw, delay, &specs[i..])?;
        let (moved, report) = qmi::migrate(h, &mw, guest, &spec, to, delay)?;
        moved.remove(&h.tb)?;
        moves.push(report);
    }
    Ok(Report {
        accelerator: mw.accel,
        memory_mib: qmi::MEMORY_MIB,
        moves,
    })
}

/// The report as a markdown table.
pub fn table(report: &Report) -> String {
    let mut t = String::from(
        "| one-way WAN delay (ms) | QEMU total time ms | QEMU downtime ms | guest paused ms | \
         controller RARP → last barrier ms | pings lost | longest gap ms | ping pace \
         median (longest) ms |\n|---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0}"));
    let opt2 = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"));
    for m in &report.moves {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.one_way_wan_delay_ms,
            opt(m.qemu.total_time_ms),
            opt(m.qemu.downtime_ms),
            opt(m.guest_paused_ms),
            opt2(m.rarp_to_last_barrier_ms),
            m.lost.len(),
            opt(m.longest_gap_ms),
            m.ping_pace_ms.map_or_else(
                || "—".to_owned(),
                |(median, longest)| format!("{median:.1} ({longest:.1})")
            ),
        );
    }
    t
}

/// Migration time, the guest's pause and the longest ping gap against the
/// one-way delay.
pub fn chart(report: &Report) -> Chart {
    let series = |name: &str, f: fn(&Move) -> Option<f64>| {
        Series::new(
            name,
            report
                .moves
                .iter()
                .filter_map(|m| Some((m.one_way_wan_delay_ms, f(m)?)))
                .collect(),
        )
    };
    Chart {
        title: "QEMU live migration IaaS DC → HaaS DC against the WAN's one-way delay".into(),
        x_label: "one-way WAN delay (ms)".into(),
        y_label: "time (ms)".into(),
        series: vec![
            series("QEMU total migration time", |m| m.qemu.total_time_ms),
            series("guest paused (STOP → RESUME)", |m| m.guest_paused_ms),
            series("longest gap between ping replies", |m| m.longest_gap_ms),
        ],
    }
}

/// Writes `qemu-migration.md` and `qemu-migration.svg` into `dir`.
pub fn write(report: &Report, dir: &Path) -> crate::Result<Vec<PathBuf>> {
    write_files(
        dir,
        &[
            ("qemu-migration.md", table(report)),
            ("qemu-migration.svg", chart(report).to_svg()?),
        ],
    )
}

/// `iris-testbed experiment qemu-migration`.
pub fn run(options: &Options, o: &MigrationOptions) -> std::process::ExitCode {
    run_experiment(
        "experiment-qemu-migration",
        options,
        |h| measure(h, o),
        |r| write(r, &o.out),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Accel, MigrationStatus};
    use crate::scenario::PingSummary;

    fn moved(delay: f64, total: Option<f64>, paused: Option<f64>) -> Move {
        Move {
            guest: "q0".into(),
            from: "cn1".into(),
            to: "pm2".into(),
            one_way_wan_delay_ms: delay,
            qemu: MigrationStatus {
                status: "completed".into(),
                total_time_ms: total,
                downtime_ms: Some(4.0),
                setup_time_ms: None,
                transferred_bytes: None,
                error: None,
            },
            guest_paused_ms: paused,
            rarp_to_last_barrier_ms: Some(12.345),
            rarps_on_destination_tap: 5,
            registry: serde_json::Value::Null,
            lost: vec![3, 4],
            lost_after_first_rarp: Vec::new(),
            longest_gap_ms: Some(300.0),
            gap_beyond_downtime_ms: None,
            gap_beyond_pause_ms: None,
            target_met: None,
            ping_pace_ms: Some((10.04, 31.0)),
            ping: PingSummary {
                sent: 10,
                received: 8,
                lost: vec![3, 4],
                interval_ms: 10.0,
                longest_gap_ms: Some(300.0),
                rtt_avg_ms: None,
                rtt_max_ms: None,
            },
        }
    }

    #[test]
    fn the_table_and_chart_carry_every_move() {
        let report = Report {
            accelerator: Accel::Tcg,
            memory_mib: 128,
            moves: vec![
                moved(0.0, Some(4500.0), Some(290.0)),
                moved(50.0, None, None),
            ],
        };
        let t = table(&report);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(
            t.contains("| 0 | 4500 | 4 | 290 | 12.35 | 2 | 300 | 10.0 (31.0) |"),
            "{t}"
        );
        assert!(
            t.contains("| 50 | — | 4 | — |"),
            "a missing figure reads as a dash: {t}"
        );
        let c = chart(&report);
        assert_eq!(c.series[0].points, vec![(0.0, 4500.0)]);
        assert_eq!(c.series[2].points, vec![(0.0, 300.0), (50.0, 300.0)]);
        assert!(c.to_svg().is_ok());
    }
}
