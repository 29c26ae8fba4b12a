//! Reconciliation after a controller restart, at scale.
//!
//! `pms` testbed PMs run real Open vSwitch: `gw`, the gateway of one VI,
//! and `pm1..` compute hosts with one VM of the VI each. `macs` MACs (one
//! IP each) are seeded behind the gateway through the API, and every
//! bridge is given its flows (about 3 per MAC on a compute host, 2 on the
//! gateway). Then the controller is killed with SIGKILL and started again
//! at once on the same configuration and store.
//!
//! The clock runs from the restart (the process spawned) until `/healthz`
//! counts every switch ready. The control loop answers the API between
//! events, and a switch counts as ready in the same step that reconciles
//! its handshake dump against the compiled tables; so when every switch is
//! ready, every switch has been reconciled. Nothing was resent when
//! `iris_flow_mods_sent_total` and `iris_group_mods_sent_total` are still 0
//! then (and after a settling time), and nothing was deleted or replaced
//! when every bridge's dump after the restart holds exactly the flows of
//! the dump before, each one's duration grown by the time between them.
//!
//! The controller's log tells how the time splits: the first switch
//! connection, and the last switch it declared ready. In active mode Open
//! vSwitch reconnects on its own schedule (its first retry comes about a
//! second after it saw the connection drop), which the controller cannot
//! shorten; in passive mode (`--openflow passive`) the bridges listen and
//! the restarted controller connects to them as soon as it runs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{
    bring_up, check_chunk, ms, round3, seed, wait_flows_settled, Memory, RunInfo, Stamp, GATEWAY,
    VI,
};
use crate::controller::OpenFlowMode;
use crate::scenario::{FlowsByPm, Harness, ScenarioError};
use crate::Pm;

const QUIET: Duration = Duration::from_secs(1);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);
/// After every switch is ready, time for a reconciliation that should not
/// happen to happen (and show in the counters and the dumps).
const AFTER_READY: Duration = Duration::from_secs(2);
/// How long the restarted controller may take to have every switch back.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Dump durations have millisecond resolution and each bridge's dump is
/// taken at its own moment.
const DURATION_SLACK: f64 = 0.25;
/// The target of issue 10 (issue 4's was 2 s).
pub const TARGET_MS: f64 = 1000.0;

/// One run.
#[derive(Debug, Clone)]
pub struct Options {
    /// PMs, the gateway included (at least 2).
    pub pms: usize,
    pub macs: u32,
    /// Seed rows per request.
    pub chunk: u32,
    pub openflow: OpenFlowMode,
}

/// How the flows of the dumps before and after the restart compare.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlowDiff {
    /// Iris flows compared (before the restart), all bridges.
    pub compared: usize,
    /// In the dump before, not after.
    pub gone: usize,
    /// In the dump after, not before.
    pub new: usize,
    /// In both, but its duration restarted: deleted and added again.
    pub replaced: usize,
}

impl FlowDiff {
    /// Compares two dumps taken `between` seconds apart.
    pub fn of(before: &FlowsByPm, after: &FlowsByPm, between: f64) -> Self {
        let mut d = Self::default();
        let empty = BTreeMap::new();
        for (pm, old) in before {
            let new = after.get(pm).unwrap_or(&empty);
            d.compared += old.len();
            for (flow, age) in old {
                match new.get(flow) {
                    None => d.gone += 1,
                    Some(now) if now - age + DURATION_SLACK < between => d.replaced += 1,
                    Some(_) => {}
                }
            }
            d.new += new.keys().filter(|f| !old.contains_key(*f)).count();
        }
        for (pm, new) in after {
            if !before.contains_key(pm) {
                d.new += new.len();
            }
        }
        d
    }

    /// Flows the restart deleted: gone, or deleted and added again.
    pub fn deleted(&self) -> usize {
        self.gone + self.replaced
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub pms: usize,
    pub macs: u32,
    pub openflow: OpenFlowMode,
    /// Flows per bridge before the kill, as Open vSwitch counts them.
    pub flows: BTreeMap<String, u64>,
    pub flows_total: u64,
    /// Seeding and installing every flow, before the kill.
    pub install_ms: f64,
    pub memory_before_kill: Memory,
    /// From the restart to the controller listening.
    pub listening_ms: f64,
    /// From the restart to the first switch connection, accepted or
    /// dialled (its log).
    pub first_connection_ms: Option<f64>,
    /// From the restart to the last switch declared ready (its log).
    pub last_ready_logged_ms: Option<f64>,
    /// From the restart to `/healthz` counting every switch ready, hence
    /// reconciled.
    pub all_reconciled_ms: f64,
    /// FLOW_MODs and GROUP_MODs sent when every switch was ready, and after
    /// the settling time.
    pub flow_mods_at_ready: f64,
    pub flow_mods_sent: f64,
    pub group_mods_sent: f64,
    /// Switches that came back holding exactly the tables the controller
    /// compiled while they were away (`iris_switches_held_tables_ahead_total`).
    pub held_tables_ahead: f64,
    pub flows_compared: FlowDiff,
    pub flows_deleted: usize,
    /// The smallest growth of a flow's duration between the two dumps
    /// (at least the time between them when nothing was replaced).
    pub between_dumps_s: f64,
    pub memory_after_restart: Memory,
    pub target_ms: f64,
}

impl Report {
    /// Whether the target holds: reconciled within 1 s, nothing deleted or resent.
    pub fn met(&self) -> bool {
        self.all_reconciled_ms <= self.target_ms
            && self.flows_deleted == 0
            && self.flow_mods_sent == 0.0
            && self.group_mods_sent == 0.0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "restart with {} MACs on {} real OVS switches ({} flows), openflow {:?}, {}",
            self.macs, self.pms, self.flows_total, self.openflow, self.run.started_at
        )?;
        let opt = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.1} ms"));
        writeln!(
            f,
            "  seeded and installed in   {:.1} s",
            self.install_ms / 1e3
        )?;
        writeln!(f, "  restart -> listening      {:.1} ms", self.listening_ms)?;
        writeln!(
            f,
            "  restart -> first switch   {}",
            opt(self.first_connection_ms)
        )?;
        writeln!(
            f,
            "  restart -> last ready     {}",
            opt(self.last_ready_logged_ms)
        )?;
        writeln!(
            f,
            "  restart -> all reconciled {:.1} ms",
            self.all_reconciled_ms
        )?;
        writeln!(
            f,
            "  resent: {} FLOW_MODs, {} GROUP_MODs; flows deleted {} of {} (gone {}, replaced {}, new {})",
            self.flow_mods_sent,
            self.group_mods_sent,
            self.flows_deleted,
            self.flows_compared.compared,
            self.flows_compared.gone,
            self.flows_compared.replaced,
            self.flows_compared.new
        )?;
        writeln!(
            f,
            "  switches holding the tables compiled ahead of them: {} of {}",
            self.held_tables_ahead, self.pms
        )?;
        writeln!(
            f,
            "  controller RSS {:.1} MiB before the kill, {:.1} MiB after the restart",
            self.memory_before_kill.rss_mib, self.memory_after_restart.rss_mib
        )?;
        writeln!(
            f,
            "target: <= {} ms and 0 flows deleted: {}",
            self.target_ms,
            if self.met() { "met" } else { "MISSED" }
        )?;
        write!(
            f,
            "load before {:?}, after {:?}",
            self.run.load_before, self.run.load_after
        )
    }
}

pub fn check(o: &Options) -> Result<(), String> {
    if o.pms < 2 {
        return Err("--pms must be at least 2 (the gateway and one compute host)".into());
    }
    if o.pms > 250 {
        return Err("--pms must be at most 250 (one /24 underlay)".into());
    }
    check_chunk(o.chunk)
}

/// Runs the measurement on `h`.
pub fn measure(h: &mut Harness, o: &Options) -> Result<Report, ScenarioError> {
    check(o).map_err(ScenarioError::Failed)?;
    h.set_openflow(o.openflow);
    let stamp = Stamp::now();
    let pms = bring_up(h, o.pms - 1)?;
    let n = pms.len() as u64;
    h.note(format!("{} PMs up; seeding {} MACs", pms.len(), o.macs));

    let started = Instant::now();
    seed(h.controller()?, VI, 0, o.macs, o.chunk, GATEWAY)?;
    let seeded = started.elapsed();
    let (counts, took) = {
        let bridges: Vec<&Pm> = pms.iter().map(|&p| h.tb.pm(p)).collect();
        wait_flows_settled(h.controller()?, &bridges, QUIET, SETTLE_TIMEOUT)?
    };
    let install = seeded.max(took);
    let flows: BTreeMap<String, u64> = pms
        .iter()
        .map(|&p| h.tb.pm(p).name().to_owned())
        .zip(counts)
        .collect();
    let flows_total = flows.values().sum();
    h.note(format!(
        "{flows_total} flows installed in {:.1} s; dumping every bridge",
        install.as_secs_f64()
    ));
    let memory_before_kill = Memory::of(h.controller()?.pid())?;
    let before = h.iris_flows(&pms)?;
    let dumped_before = Instant::now();

    h.note("kill -9 of the controller, restarted at once");
    h.kill_controller()?;
    let restart_wall = SystemTime::now();
    let restart = Instant::now();
    h.restart_controller()?;
    let listening = restart.elapsed();
    let (all_reconciled, flow_mods_at_ready) = wait_all_ready(h, n, restart)?;
    std::thread::sleep(AFTER_READY);
    let metrics = h.controller()?.metrics()?;
    let between = dumped_before.elapsed().as_secs_f64();
    let after = h.iris_flows(&pms)?;
    let flows_compared = FlowDiff::of(&before, &after, between);
    let memory_after_restart = Memory::of(h.controller()?.pid())?;
    let log = std::fs::read_to_string(h.controller()?.log_path()).unwrap_or_default();
    let since_restart = |t: f64| round3((t - unix_seconds(restart_wall)) * 1e3);
    let timeline = LogTimeline::of(&log);
    Ok(Report {
        run: stamp.finish(),
        pms: pms.len(),
        macs: o.macs,
        openflow: o.openflow,
        flows,
        flows_total,
        install_ms: ms(install),
        memory_before_kill,
        listening_ms: ms(listening),
        first_connection_ms: timeline.first_connection.map(since_restart),
        last_ready_logged_ms: timeline.last_ready.map(since_restart),
        all_reconciled_ms: ms(all_reconciled),
        flow_mods_at_ready,
        flow_mods_sent: metrics.value("iris_flow_mods_sent_total"),
        group_mods_sent: metrics.value("iris_group_mods_sent_total"),
        held_tables_ahead: metrics.value("iris_switches_held_tables_ahead_total"),
        flows_deleted: flows_compared.deleted(),
        flows_compared,
        between_dumps_s: round3(between),
        memory_after_restart,
        target_ms: TARGET_MS,
    })
}

/// Polls `/healthz` until `n` switches are ready; how long since
/// `restart` (the process spawned) that took, and the FLOW_MODs sent by
/// then.
fn wait_all_ready(
    h: &mut Harness,
    n: u64,
    restart: Instant,
) -> Result<(Duration, f64), ScenarioError> {
    let start = Instant::now();
    let c = h.controller_mut()?;
    loop {
        c.ensure_running()?;
        let health = c.get_json("/healthz")?;
        if health["switches_ready"] == n {
            let at = restart.elapsed();
            let sent = c.metrics()?.value("iris_flow_mods_sent_total");
            return Ok((at, sent));
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(ScenarioError::Failed(format!(
                "not every switch was back within {} s: {health}",
                READY_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the controller's log says about one start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogTimeline {
    /// Unix time of the first accepted switch connection.
    pub first_connection: Option<f64>,
    /// Unix time of the last "switch … ready".
    pub last_ready: Option<f64>,
}

impl LogTimeline {
    /// Reads the timestamps (`2026-11-21T23:40:01.123456Z`, UTC, at the
    /// start of each line) of the first `connected` line and the last
    /// `ready` line of a switch.
    pub fn of(log: &str) -> Self {
        let mut t = Self::default();
        for line in log.lines() {
            let Some(at) = line.split_whitespace().next().and_then(parse_utc) else {
                continue;
            };
            if line.contains("switch{") && line.ends_with(": connected") {
                t.first_connection.get_or_insert(at);
            }
            // `switch 1415a51956541dd5 ready conn=c3 host=pm1`: the
            // message, then the event's fields.
            let ready = line.split_once(": switch ").is_some_and(|(_, rest)| {
                let mut words = rest.split_whitespace();
                words.next().is_some_and(|d| d.len() == 16) && words.next() == Some("ready")
            });
            if ready {
                t.last_ready = Some(at);
            }
        }
        t
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` as Unix seconds.
pub fn parse_utc(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (hh, mm) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps_are_unix_seconds() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_utc("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(parse_utc("2026-11-21T23:40:01Z"), Some(1_795_304_401.0));
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("INFO"), None);
    }

    #[test]
    fn the_timeline_takes_the_first_connection_and_the_last_ready() {
        let log = "\
2026-11-21T23:40:01.000000Z  INFO iris_controller::run: iris-controller listening api=127.0.0.1:1
2026-11-21T23:40:02.000000Z DEBUG switch{conn=c1 peer=unix}: iris_controller::server: connected
2026-11-21T23:40:02.100000Z DEBUG switch{conn=c2 peer=unix}: iris_controller::server: connected
2026-11-21T23:40:02.200000Z  INFO iris_controller::control: switch 0000000000000001 ready conn=c1 host=pm1
2026-11-21T23:40:02.700000Z  INFO iris_controller::control: switch 0000000000000002 ready conn=c2 host=gw
2026-11-21T23:40:03.000000Z  WARN iris_controller::control: switch is not keeping up; it will be resynchronised
";
        let t = LogTimeline::of(log);
        let base = parse_utc("2026-11-21T23:40:02Z").unwrap();
        assert_eq!(t.first_connection, Some(base));
        assert!((t.last_ready.unwrap() - base - 0.7).abs() < 1e-6);
        assert_eq!(LogTimeline::of(""), LogTimeline::default());
    }

    fn dump(flows: &[(&str, f64)]) -> FlowsByPm {
        let flows = flows.iter().map(|(f, d)| ((*f).to_owned(), *d)).collect();
        BTreeMap::from([("pm1".to_owned(), flows)])
    }

    #[test]
    fn flows_deleted_are_the_gone_and_the_replaced() {
        let before = dump(&[("a", 3.0), ("b", 10.0), ("c", 1.0)]);
        let after = dump(&[("a", 8.0), ("b", 0.5), ("d", 0.5)]);
        let d = FlowDiff::of(&before, &after, 5.0);
        assert_eq!(
            d,
            FlowDiff {
                compared: 3,
                gone: 1,
                new: 1,
                replaced: 1
            }
        );
        assert_eq!(d.deleted(), 2);
        assert_eq!(FlowDiff::of(&before, &before, 0.0).deleted(), 0);
        let kept = dump(&[("a", 8.0), ("b", 15.0), ("c", 6.0)]);
        assert_eq!(FlowDiff::of(&before, &kept, 5.0).deleted(), 0);
    }
}
