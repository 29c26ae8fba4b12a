//! The figures of one run: as text for a person, as one JSON object for
//! scripts (`--json`).

use std::fmt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::driver::{merge_latency, SetupCounts, SwitchResult, Timing};
use super::load::Counts;
use super::traffic::FrameKind;
use super::{Mode, Options, Target, Workload};

/// The Linux clock tick of /proc's CPU times (USER_HZ, 100 on every
/// architecture Iris runs on).
const USER_HZ: f64 = 100.0;

/// Response-time percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// The percentiles of `h`, a histogram of nanoseconds.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            samples: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
        }
    }
}

/// Busy CPU as a share of one core over the measurement window.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub controller_percent: Option<f64>,
    pub generator_percent: Option<f64>,
}

/// What the controller did before the load started.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub seconds: f64,
    /// Messages from the controller during setup (all switches).
    pub messages: u64,
    pub flow_mods_and_packet_outs: u64,
    pub errors: u64,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: Target,
    pub controller_version: String,
    pub mode: Mode,
    pub workload: Workload,
    /// What the hosts sent: `unicast`, `garp` or `arp-request`.
    pub frames: &'static str,
    pub switches: u32,
    pub macs: u32,
    pub ports: u16,
    /// Unanswered PacketIns allowed per switch.
    pub window: u32,
    pub buffered: bool,
    pub warmup_s: f64,
    /// The measurement window as it really was.
    pub duration_s: f64,
    /// PacketIns answered correctly per second (see [`super::load`]); cbench's
    /// "responses/s" counts every FLOW_MOD and PACKET_OUT instead.
    pub responses_per_s: f64,
    pub packet_ins_per_s: f64,
    pub flow_mods_per_s: f64,
    pub packet_outs_per_s: f64,
    /// FLOW_MODs and PACKET_OUTs per answered PacketIn.
    pub messages_per_response: f64,
    /// Summed over every switch.
    pub counts: Counts,
    pub latency: Latency,
    pub cpu: Cpu,
    pub setup: Setup,
    /// The first OFPT_ERROR the controller sent, as "type/code".
    pub first_error: Option<String>,
    pub load_average_before: Option<[f64; 3]>,
    pub load_average_after: Option<[f64; 3]>,
    pub cpus: usize,
    /// UTC, RFC 3339.
    pub started_at: String,
}

/// CPU time read at a measurement boundary.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: Instant,
    /// utime + stime of the controller process, in clock ticks.
    pub controller: Option<u64>,
    /// The same for this process.
    pub generator: Option<u64>,
}

/// What [`Report::new`] is made from.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub options: &'a Options,
    pub window: u32,
    pub frames: FrameKind,
    pub controller_version: String,
    pub results: &'a [SwitchResult],
    pub timing: &'a Timing,
    /// At the start and end of the measurement window.
    pub marks: &'a [Mark],
    pub started_at: SystemTime,
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
}

impl Report {
    pub fn new(i: Inputs<'_>) -> Self {
        let o = i.options;
        let mut c = Counts::default();
        let mut setup = SetupCounts::default();
        for r in i.results {
            c.add(&r.counts);
            setup.add(&r.setup);
        }
        let secs = i.timing.measured.as_secs_f64();
        let rate = |n: u64| n as f64 / secs;
        let latency = Latency::of(&merge_latency(i.results));
        let cpu_share = |pick: fn(&Mark) -> Option<u64>| {
            let [a, b] = i.marks else { return None };
            let wall = b.at.saturating_duration_since(a.at).as_secs_f64();
            let ticks = pick(b)?.checked_sub(pick(a)?)?;
            Some(round1(100.0 * ticks as f64 / USER_HZ / wall))
        };
        let first_error = i
            .results
            .iter()
            .find_map(|r| r.first_error)
            .map(|e| format!("{}/{}", e.kind, e.code));
        Self {
            target: o.target,
            controller_version: i.controller_version,
            mode: o.mode,
            workload: o.workload,
            frames: match i.frames {
                FrameKind::Unicast => "unicast",
                FrameKind::Garp => "garp",
                FrameKind::ArpRequest => "arp-request",
            },
            switches: o.switches,
            macs: o.macs,
            ports: o.ports,
            window: i.window,
            buffered: o.buffered,
            warmup_s: i.timing.warmup.as_secs_f64(),
            duration_s: round3(secs),
            responses_per_s: round1(rate(c.answered)),
            packet_ins_per_s: round1(rate(c.packet_ins)),
            flow_mods_per_s: round1(rate(c.flow_mods)),
            packet_outs_per_s: round1(rate(c.packet_outs)),
            messages_per_response: if c.answered == 0 {
                0.0
            } else {
                round3((c.flow_mods + c.packet_outs) as f64 / c.answered as f64)
            },
            counts: c,
            latency,
            cpu: Cpu {
                controller_percent: cpu_share(|m| m.controller),
                generator_percent: cpu_share(|m| m.generator),
            },
            setup: Setup {
                seconds: round3(i.timing.setup.as_secs_f64()),
                messages: setup.messages,
                flow_mods_and_packet_outs: setup.flow_mods_and_packet_outs,
                errors: setup.errors,
            },
            first_error,
            load_average_before: i.load_before,
            load_average_after: i.load_after,
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            started_at: rfc3339(i.started_at),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let l = &self.latency;
        writeln!(
            f,
            "{} ({}): {:?} mode, {:?} workload ({} frames), {} switches x {} MACs, window {}{}",
            serde_name(&self.target),
            self.controller_version,
            self.mode,
            self.workload,
            self.frames,
            self.switches,
            self.macs,
            self.window,
            if self.buffered { ", buffered" } else { "" }
        )?;
        writeln!(
            f,
            "  responses/s     {:>12.1}   ({} PacketIns answered correctly in {:.3} s, {} sent, {} given up, {} unanswerable)",
            self.responses_per_s, c.answered, self.duration_s, c.packet_ins, c.expired, c.unanswerable
        )?;
        writeln!(
            f,
            "  flow_mods/s     {:>12.1}   packet_outs/s {:.1}   ({:.3} messages per response, {} no part of an answer, {} about nothing waiting)",
            self.flow_mods_per_s, self.packet_outs_per_s, self.messages_per_response, c.not_answers, c.unattributed
        )?;
        writeln!(
            f,
            "  latency (us)    p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}  ({} samples)",
            l.p50_us, l.p90_us, l.p99_us, l.max_us, l.mean_us, l.samples
        )?;
        let pct = |p: Option<f64>| p.map_or("?".into(), |p| format!("{p:.1}%"));
        writeln!(
            f,
            "  cpu             controller {}  generator {}  (of one core; {} cores)",
            pct(self.cpu.controller_percent),
            pct(self.cpu.generator_percent),
            self.cpus
        )?;
        writeln!(
            f,
            "  setup           {:.3} s, {} messages ({} flow_mods/packet_outs, {} errors)",
            self.setup.seconds,
            self.setup.messages,
            self.setup.flow_mods_and_packet_outs,
            self.setup.errors
        )?;
        if c.errors + c.malformed > 0 || self.first_error.is_some() {
            writeln!(
                f,
                "  controller errors {} (first {}), undecodable messages {}",
                c.errors,
                self.first_error.as_deref().unwrap_or("-"),
                c.malformed
            )?;
        }
        let la =
            |l: Option<[f64; 3]>| l.map_or("?".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"));
        write!(
            f,
            "  load average    before {}  after {}",
            la(self.load_average_before),
            la(self.load_average_after)
        )
    }
}

fn serde_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// utime + stime of a process, from `/proc/<pid>/stat`.
pub fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing
    // parenthesis are plain. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_ticks(&format!("/proc/{pid}/stat")).map(|t| t as f64 / USER_HZ)
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(rfc3339(t), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stat");
        std::fs::write(
            &p,
            "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 0 0\n",
        )
        .unwrap();
        assert_eq!(cpu_ticks(p.to_str().unwrap()), Some(10));
        assert!(cpu_ticks("/proc/self/stat").is_some());
    }
}
