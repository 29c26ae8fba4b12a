//! `bench wan`: does the emulated WAN do what it is configured to? Ping RTT
//! through the relay at several one-way delays against twice the delay plus
//! the 0-ms baseline, and TCP goodput through the relay at 0 ms against the
//! same cables joined by a kernel bridge, the two measured alternately in
//! one run.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use super::{Backend, DirectionStats, Impairment, WanSpec};
use crate::dataplane::goodput::{run_iperf, wait_listening, IPERF_PORT};
use crate::dataplane::iperf::Goodput;
use crate::scenario::ScenarioError;
use crate::{Ipv4Cidr, PingPlan, PingRun, Process, Testbed};

/// A configured RTT may be off by this fraction of twice the delay.
pub const RTT_TOLERANCE: f64 = 0.10;
/// Goodput through the relay at 0 ms, as a fraction of the bridge's, that
/// the issue asks for.
pub const GOODPUT_TARGET: f64 = 0.9;

const SITE_A: &str = "10.250.0.1/24";
const SITE_B: &str = "10.250.0.2/24";

#[derive(Debug, Clone)]
pub struct Options {
    /// One-way delays to measure, in ms; 0 is always measured first.
    pub delays_ms: Vec<u64>,
    pub pings: u32,
    pub ping_interval: Duration,
    /// Seconds per iperf3 test; 0 skips goodput.
    pub seconds: u32,
    /// Relay and bridge tests each, alternating.
    pub rounds: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RttRow {
    pub delay_ms: u64,
    /// Baseline plus twice the delay.
    pub expected_ms: f64,
    pub median_ms: f64,
    pub avg_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub lost: u32,
    /// |median - expected| within [`RTT_TOLERANCE`] of twice the delay.
    pub within_tolerance: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoodputRound {
    pub backend: Backend,
    pub gbps: f64,
    pub retransmits: Option<u64>,
}

/// A relay's counters: A→B, B→A.
pub type RelayFrames = (DirectionStats, DirectionStats);

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: Backend,
    pub rtt: Vec<RttRow>,
    pub goodput: Vec<GoodputRound>,
    /// Mean relay goodput over mean bridge goodput.
    pub goodput_ratio: Option<f64>,
    /// The relay's counters over its last goodput round.
    pub relay_frames: Option<RelayFrames>,
    /// /proc/loadavg before and after: the machine may be shared.
    pub load_before: String,
    pub load_after: String,
}

impl Report {
    /// Every delay within tolerance and, if measured, the goodput target met.
    pub fn passed(&self) -> bool {
        self.rtt.iter().all(|r| r.within_tolerance)
            && self.goodput_ratio.is_none_or(|r| r >= GOODPUT_TARGET)
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Builds a testbed with one WAN on the relay backend and measures.
pub fn measure(o: &Options, config: crate::Config) -> Result<Report, ScenarioError> {
    let load_before = loadavg();
    let mut tb = Testbed::with_config("bench-wan", config)?;
    let spec = WanSpec {
        backend: Some(Backend::Relay),
        ..WanSpec::new("wan", Impairment::default())
    };
    let id = tb.add_wan(spec)?;
    let (a, b): (Ipv4Cidr, Ipv4Cidr) = (SITE_A.parse()?, SITE_B.parse()?);
    tb.wan(id).site(0).iface.add_addr(a)?;
    tb.wan(id).site(1).iface.add_addr(b)?;
    let dst = b.addr();

    let mut rtt = Vec::new();
    let mut baseline = None;
    let delays = std::iter::once(0).chain(o.delays_ms.iter().copied().filter(|d| *d != 0));
    for delay_ms in delays {
        let delay = Duration::from_millis(delay_ms);
        tb.wan_mut(id).set_impairment(Impairment::delay(delay))?;
        let row = rtt_row(&tb, id, dst, delay_ms, baseline, o.pings, o.ping_interval)?;
        baseline.get_or_insert(row.median_ms);
        eprintln!(
            "bench wan: {delay_ms} ms one way: median RTT {:.3} ms (expected {:.3})",
            row.median_ms, row.expected_ms
        );
        rtt.push(row);
    }

    let (goodput, relay_frames) = if o.seconds > 0 {
        tb.wan_mut(id).set_impairment(Impairment::default())?;
        // The relay's threads run at a raised priority; iperf3 runs at the
        // same one, inherited from the thread that starts it, so that on a
        // shared machine the bridge's forwarding (a softirq on the iperf3
        // sender's core) competes for the CPU as the relay's does.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    super::relay::raise_priority(&[nix::unistd::gettid()])?;
                    goodput_rounds(&mut tb, id, dst, o)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(ScenarioError::Failed(
                        "the goodput rounds' thread panicked".into(),
                    ))
                })
        })?
    } else {
        (Vec::new(), None)
    };
    let mean = |want: Backend| {
        let v: Vec<f64> = goodput
            .iter()
            .filter(|g| g.backend == want)
            .map(|g| g.gbps)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let goodput_ratio = match (mean(Backend::Relay), mean(Backend::Bridge)) {
        (Some(relay), Some(bridge)) if bridge > 0.0 => Some((relay / bridge * 1e3).round() / 1e3),
        _ => None,
    };
    tb.teardown()?;
    Ok(Report {
        backend: Backend::Relay,
        rtt,
        goodput,
        goodput_ratio,
        relay_frames,
        load_before,
        load_after: loadavg(),
    })
}

/// iperf3 from site A to site B of WAN `id` at 0 ms, alternately through
/// the relay and through a bridge on the same cables; with the relay's
/// counters over its last round.
fn goodput_rounds(
    tb: &mut Testbed,
    id: crate::WanId,
    dst: Ipv4Addr,
    o: &Options,
) -> Result<(Vec<GoodputRound>, Option<RelayFrames>), ScenarioError> {
    let mut goodput = Vec::new();
    let mut relay_frames = None;
    let mut server_cmd = tb.wan(id).site(1).netns.command("iperf3");
    server_cmd.args(["-s", "-p", IPERF_PORT, "-B", &dst.to_string()]);
    let _server = Process::spawn("iperf3 -s", server_cmd, None)?;
    wait_listening(&tb.wan(id).site(1).netns)?;
    for _ in 0..o.rounds {
        for backend in [Backend::Relay, Backend::Bridge] {
            tb.wan_mut(id).set_backend(backend)?;
            let report = run_iperf(&tb.wan(id).site(0).netns, o.seconds, 1, dst)?;
            if let Some(stats) = tb.wan(id).relay_stats() {
                relay_frames = Some(stats);
            }
            let (gbps, retransmits) = match &report {
                Goodput::Measured(t) => (t.received_gbps, t.retransmits),
                Goodput::Failed { error } => {
                    return Err(ScenarioError::Failed(format!(
                        "iperf3 through the {backend:?} backend failed: {error}"
                    )))
                }
            };
            eprintln!("bench wan: goodput through {backend:?}: {gbps:.3} Gb/s");
            goodput.push(GoodputRound {
                backend,
                gbps,
                retransmits,
            });
        }
    }
    Ok((goodput, relay_frames))
}

/// Pings site B from site A through WAN `id` and judges the median RTT
/// against `baseline` (the 0-ms median, in ms) plus twice `delay_ms`. The
/// median, not the mean: on a shared machine a descheduled relay thread
/// now and then holds one frame for milliseconds, which says nothing about
/// the delay the relay applies.
pub fn rtt_row(
    tb: &Testbed,
    id: crate::WanId,
    dst: Ipv4Addr,
    delay_ms: u64,
    baseline: Option<f64>,
    pings: u32,
    interval: Duration,
) -> Result<RttRow, ScenarioError> {
    let site = tb.wan(id).site(0);
    // The first exchange resolves ARP through the WAN; leave it out.
    site.ping(dst, 1, interval, Duration::from_secs(2))?;
    let log = tb.state_dir().join(format!("wan-ping-{delay_ms}ms.log"));
    let trace = PingRun::start(&site.netns, PingPlan::new(dst, pings, interval), &log)?
        .wait(Duration::from_secs(5))?;
    let mut rtts: Vec<f64> = trace.replies.iter().map(|r| ms(r.rtt)).collect();
    rtts.sort_by(f64::total_cmp);
    let (Some(min), Some(max)) = (rtts.first().copied(), rtts.last().copied()) else {
        return Err(ScenarioError::Failed(format!(
            "no echo reply crossed the WAN at {delay_ms} ms one way"
        )));
    };
    let median = rtts[rtts.len() / 2];
    let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
    let expected = baseline.unwrap_or(median) + 2.0 * delay_ms as f64;
    let round = |x: f64| (x * 1e3).round() / 1e3;
    Ok(RttRow {
        delay_ms,
        expected_ms: round(expected),
        median_ms: median,
        avg_ms: round(avg),
        min_ms: min,
        max_ms: max,
        lost: trace.summary.transmitted - trace.summary.received,
        within_tolerance: (median - expected).abs() <= RTT_TOLERANCE * 2.0 * delay_ms as f64,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "WAN relay ({:?} backend)", self.backend)?;
        writeln!(
            f,
            "| one-way delay | expected RTT | median RTT | mean (min–max) | lost | median within ±{:.0} % of 2×delay |",
            RTT_TOLERANCE * 100.0
        )?;
        writeln!(f, "|---|---|---|---|---|---|")?;
        for r in &self.rtt {
            writeln!(
                f,
                "| {} ms | {:.3} ms | {:.3} ms | {:.3} ms ({:.3}–{:.3}) | {} | {} |",
                r.delay_ms,
                r.expected_ms,
                r.median_ms,
                r.avg_ms,
                r.min_ms,
                r.max_ms,
                r.lost,
                if r.delay_ms == 0 {
                    "baseline"
                } else if r.within_tolerance {
                    "yes"
                } else {
                    "NO"
                }
            )?;
        }
        for g in &self.goodput {
            writeln!(
                f,
                "goodput through {:?}: {:.3} Gb/s (retransmits {})",
                g.backend,
                g.gbps,
                g.retransmits.map_or("?".into(), |r| r.to_string())
            )?;
        }
        if let Some(ratio) = self.goodput_ratio {
            writeln!(
                f,
                "goodput ratio relay/bridge at 0 ms: {ratio:.3} (target ≥ {GOODPUT_TARGET})"
            )?;
        }
        if let Some((ab, ba)) = &self.relay_frames {
            writeln!(f, "relay frames A→B {ab:?}; B→A {ba:?}")?;
        }
        write!(
            f,
            "load average before {}, after {}",
            self.load_before, self.load_after
        )
    }
}
