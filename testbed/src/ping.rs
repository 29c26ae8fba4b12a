//! Running `ping` (iputils) inside a namespace and reading its summary into
//! numbers; and [`PingRun`], a ping left running in the background while a
//! scenario disturbs the network, whose every reply is timestamped so that
//! gaps can be measured.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::command::{failure, output};
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::Process;

/// How long [`crate::Vm::ping`] and [`crate::Pm::ping_underlay`] wait for each reply.
pub const PING_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `count` echo requests from inside `netns` to `dst`, `interval` apart,
/// waiting up to `reply_timeout` for each reply. Lost replies are not an
/// error; a ping that cannot run at all (no route, bad arguments) is.
pub(crate) fn ping_from(
    netns: &Netns,
    dst: Ipv4Addr,
    count: u32,
    interval: Duration,
    reply_timeout: Duration,
) -> Result<PingReport> {
    let mut command = netns.command("ping");
    command.args([
        "-n".to_owned(),
        "-q".to_owned(),
        "-c".to_owned(),
        count.to_string(),
        "-i".to_owned(),
        format!("{:.3}", interval.as_secs_f64()),
        "-W".to_owned(),
        format!("{:.3}", reply_timeout.as_secs_f64()),
        dst.to_string(),
    ]);
    let out = output(&mut command)?;
    // iputils: 0 = all replied, 1 = some lost, 2 = other error.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(failure(&command, &out));
    }
    PingReport::parse(&String::from_utf8_lossy(&out.stdout))
}

/// The largest ICMP payload a 1500-byte IPv4 packet carries.
const FULL_SIZED_PAYLOAD: &str = "1472";

/// Whether 1500-byte IPv4 packets with DF set (never fragmented) go from
/// `netns` to `dst` and back: three of them 200 ms apart, each reply
/// awaited up to `reply_timeout`, all answered.
pub(crate) fn full_sized_crosses(
    netns: &Netns,
    dst: Ipv4Addr,
    reply_timeout: Duration,
) -> Result<bool> {
    let mut command = netns.command("ping");
    command
        .args(["-M", "do", "-s", FULL_SIZED_PAYLOAD, "-c", "3", "-i", "0.2"])
        .arg("-W")
        .arg(format!("{:.3}", reply_timeout.as_secs_f64()))
        .arg(dst.to_string());
    Ok(output(&mut command)?.status.success())
}

/// Round-trip times over the replies received.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rtt {
    pub min: Duration,
    pub avg: Duration,
    pub max: Duration,
    pub mdev: Duration,
}

/// What one `ping` run saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingReport {
    pub transmitted: u32,
    pub received: u32,
    /// ICMP errors reported instead of replies (e.g. host unreachable).
    pub errors: u32,
    /// `None` when no reply came back.
    pub rtt: Option<Rtt>,
}

impl PingReport {
    /// Lost requests as a fraction of those sent, 0.0 to 1.0.
    pub fn loss(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        f64::from(self.transmitted.saturating_sub(self.received)) / f64::from(self.transmitted)
    }

    /// Every request got its reply.
    pub fn all_replied(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }

    /// Reads the statistics block at the end of ping's output:
    ///
    /// ```text
    /// 3 packets transmitted, 2 received, +1 errors, 33.3333% packet loss, time 2003ms
    /// rtt min/avg/max/mdev = 0.400/1.601/3.814/1.566 ms
    /// ```
    pub fn parse(output: &str) -> Result<Self> {
        let unexpected = |reason: &str| Error::UnexpectedOutput {
            command: "ping".into(),
            reason: reason.into(),
            output: output.to_owned(),
        };
        let counts = output
            .lines()
            .find(|line| line.contains("packets transmitted"))
            .ok_or_else(|| unexpected("no \"packets transmitted\" line"))?;
        let mut report = Self {
            transmitted: 0,
            received: 0,
            errors: 0,
            rtt: None,
        };
        for part in counts.split(',') {
            let mut words = part.split_whitespace();
            let (Some(number), Some(label)) = (words.next(), words.next()) else {
                continue;
            };
            let field = match label {
                "packets" => &mut report.transmitted,
                "received" => &mut report.received,
                "errors" => &mut report.errors,
                _ => continue,
            };
            *field = number
                .trim_start_matches('+')
                .parse()
                .map_err(|_| unexpected("a count is not a number"))?;
        }
        if let Some(line) = output
            .lines()
            .find(|l| l.starts_with("rtt ") || l.starts_with("round-trip "))
        {
            // `= 0.5/1.6/3.8/1.5 ms`, and `, pipe 3` after it when several
            // requests were outstanding at once.
            let values = line
                .split('=')
                .nth(1)
                .ok_or_else(|| unexpected("rtt line without '='"))?
                .split_whitespace()
                .next()
                .unwrap_or_default();
            let ms: Vec<f64> = values
                .split('/')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| unexpected("an rtt value is not a number"))?;
            let [min, avg, max, mdev] = ms[..] else {
                return Err(unexpected("rtt line needs min/avg/max/mdev"));
            };
            let d = |ms: f64| Duration::from_secs_f64(ms / 1000.0);
            report.rtt = Some(Rtt {
                min: d(min),
                avg: d(avg),
                max: d(max),
                mdev: d(mdev),
            });
        }
        if report.received > report.transmitted {
            return Err(unexpected("more replies than requests"));
        }
        Ok(report)
    }
}

/// What a [`PingRun`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingPlan {
    pub dst: Ipv4Addr,
    /// Stop after this many requests (or when interrupted).
    pub count: u32,
    pub interval: Duration,
    /// Fill the payload with this pattern (`ping -p`, at most 16 bytes), so
    /// that a capture can tell this run's frames from any other's.
    pub pattern: Option<Vec<u8>>,
}

impl PingPlan {
    pub fn new(dst: Ipv4Addr, count: u32, interval: Duration) -> Self {
        Self {
            dst,
            count,
            interval,
            pattern: None,
        }
    }

    pub fn pattern(mut self, pattern: &[u8]) -> Self {
        self.pattern = Some(pattern.to_vec());
        self
    }
}

/// A `ping` running in the background inside a namespace, with a timestamp
/// on every reply (`-D`) and a line for every reply that is late (`-O`).
/// Its output goes to a file, read when it ends.
#[derive(Debug)]
pub struct PingRun {
    process: Process,
    output: PathBuf,
    plan: PingPlan,
    started: Instant,
}

/// Requests at most this many, because iputils prints its patterns so.
const MAX_PATTERN: usize = 16;

impl PingRun {
    /// Starts `plan` from inside `netns`, writing ping's output to `output`.
    pub fn start(netns: &Netns, plan: PingPlan, output: &Path) -> Result<Self> {
        if plan.count == 0 || plan.interval < Duration::from_millis(2) {
            return Err(Error::Usage(format!(
                "a ping run needs at least one request and an interval of 2 ms or more \
                 (got {} at {:?})",
                plan.count, plan.interval
            )));
        }
        let mut command = netns.command("ping");
        command.env("LC_ALL", "C").args([
            "-n".to_owned(),
            "-D".to_owned(),
            "-O".to_owned(),
            "-c".to_owned(),
            plan.count.to_string(),
            "-i".to_owned(),
            format!("{:.3}", plan.interval.as_secs_f64()),
            "-W".to_owned(),
            format!("{:.3}", PING_REPLY_TIMEOUT.as_secs_f64()),
        ]);
        if let Some(pattern) = &plan.pattern {
            if pattern.is_empty() || pattern.len() > MAX_PATTERN {
                return Err(Error::Usage(format!(
                    "a ping pattern has 1 to {MAX_PATTERN} bytes, not {}",
                    pattern.len()
                )));
            }
            let hex: String = pattern.iter().map(|b| format!("{b:02x}")).collect();
            command.args(["-p", &hex]);
        }
        command.arg(plan.dst.to_string());
        let process = Process::spawn(format!("ping {}", plan.dst), command, Some(output))?;
        Ok(Self {
            process,
            output: output.to_path_buf(),
            plan,
            started: Instant::now(),
        })
    }

    /// How long the run has been going.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the run to send its last request and give up on its last
    /// reply, at most `timeout` past the time its plan needs.
    pub fn wait(mut self, timeout: Duration) -> Result<PingTrace> {
        let planned = self.plan.interval * self.plan.count + PING_REPLY_TIMEOUT;
        self.await_exit(
            self.started + planned + timeout,
            "it did not finish its planned requests",
        )?;
        self.trace(false)
    }

    /// Stops the run now (SIGINT, after which ping prints its summary). The
    /// last request may still have been on its way: see
    /// [`PingTrace::interrupted`].
    pub fn interrupt(mut self) -> Result<PingTrace> {
        self.process.signal(Signal::SIGINT)?;
        self.await_exit(
            Instant::now() + Duration::from_secs(5),
            "it did not stop on SIGINT",
        )?;
        self.trace(true)
    }

    /// Waits for ping to exit; at `deadline` it is killed and `why` is the
    /// error.
    fn await_exit(&mut self, deadline: Instant, why: &str) -> Result<()> {
        while self.process.try_exit_status()?.is_none() {
            if Instant::now() >= deadline {
                let _ = self.process.stop(Duration::from_millis(100));
                return Err(Error::NotReady {
                    what: format!("ping to {}", self.plan.dst),
                    waited: self.started.elapsed(),
                    detail: why.to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn trace(&mut self, interrupted: bool) -> Result<PingTrace> {
        let status = self.process.try_exit_status()?;
        let text = std::fs::read_to_string(&self.output)
            .map_err(|e| Error::io_at("reading", &self.output, e))?;
        // iputils: 0 = all replied, 1 = some lost; anything else (2) means
        // ping itself failed. An interrupted run exits like a finished one.
        if !matches!(status.and_then(|s| s.code()), Some(0 | 1)) {
            return Err(Error::Command {
                command: format!("ping {}", self.plan.dst),
                status: status.and_then(|s| s.code()),
                stderr: text,
            });
        }
        let mut trace = PingTrace::parse(&text)?;
        trace.interval = self.plan.interval;
        trace.interrupted = interrupted;
        Ok(trace)
    }
}

/// One echo reply of a [`PingRun`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingReply {
    pub seq: u32,
    /// When it was printed, in seconds since the Unix epoch.
    pub at: f64,
    pub rtt: Duration,
}

/// How far back from the end of a ping run a reply shows that it ended
/// answered: at 10 ms a reply delayed on a loaded machine can come after
/// the next two requests have left.
const RESUMED_WITHIN: Duration = Duration::from_millis(200);

/// Everything a [`PingRun`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct PingTrace {
    pub summary: PingReport,
    /// First copies of replies, in the order they came.
    pub replies: Vec<PingReply>,
    pub duplicates: u32,
    pub interval: Duration,
    /// Whether the run was stopped before its count (its last request may
    /// have been in flight then).
    pub interrupted: bool,
}

impl PingTrace {
    /// Reads `ping -n -D -O` output: reply lines such as
    /// `[1700000000.123456] 64 bytes from 10.0.0.2: icmp_seq=5 ttl=64 time=0.512 ms`
    /// and the summary at the end.
    pub fn parse(output: &str) -> Result<Self> {
        let summary = PingReport::parse(output)?;
        let mut replies = Vec::new();
        let mut seen = BTreeSet::new();
        let mut duplicates = 0;
        for line in output.lines() {
            let Some(reply) = parse_reply(line) else {
                continue;
            };
            if !seen.insert(reply.seq) || line.contains("(DUP!)") {
                duplicates += 1;
                continue;
            }
            replies.push(reply);
        }
        Ok(Self {
            summary,
            replies,
            duplicates,
            interval: Duration::ZERO,
            interrupted: false,
        })
    }

    /// Sequence numbers sent but never answered. For an interrupted run,
    /// the last request does not count when it went unanswered: SIGINT may
    /// have come while it was on its way.
    pub fn lost(&self) -> Vec<u32> {
        let answered: BTreeSet<u32> = self.replies.iter().map(|r| r.seq).collect();
        let mut sent = self.summary.transmitted;
        if self.interrupted && !answered.contains(&sent) {
            sent = sent.saturating_sub(1);
        }
        (1..=sent).filter(|s| !answered.contains(s)).collect()
    }

    /// The longest time between two consecutive replies; at the planned
    /// interval when nothing was disturbed.
    pub fn longest_gap(&self) -> Option<Duration> {
        let mut times: Vec<f64> = self.replies.iter().map(|r| r.at).collect();
        times.sort_by(f64::total_cmp);
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max_by(f64::total_cmp)
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
    }

    /// When request `seq` was sent, in seconds since the Unix epoch. An
    /// answered request: its reply's time less its round trip. A lost one:
    /// between the answered requests around it, in proportion to the
    /// sequence numbers, because ping's real pace is not its planned
    /// interval (`ping -i 0.01` sends about every 16 ms on some machines);
    /// with none answered after it, from the one before and the planned
    /// interval. `None` when no request before it was answered.
    pub fn sent_at(&self, seq: u32) -> Option<f64> {
        let sent = |r: &PingReply| r.at - r.rtt.as_secs_f64();
        let before = self
            .replies
            .iter()
            .filter(|r| r.seq <= seq)
            .max_by_key(|r| r.seq)?;
        if before.seq == seq {
            return Some(sent(before));
        }
        let steps = f64::from(seq - before.seq);
        match self
            .replies
            .iter()
            .filter(|r| r.seq > seq)
            .min_by_key(|r| r.seq)
        {
            Some(after) => {
                let pace = (sent(after) - sent(before)) / f64::from(after.seq - before.seq);
                Some(sent(before) + steps * pace)
            }
            None => Some(sent(before) + steps * self.interval.as_secs_f64()),
        }
    }

    /// Whether the run ended answered: one of the requests sent in its last
    /// [`RESUMED_WITHIN`] (at least its last two: the very last may have
    /// been in flight when it was interrupted) was answered.
    pub fn resumed(&self) -> bool {
        let last = self.summary.transmitted;
        let tail =
            (RESUMED_WITHIN.as_secs_f64() / self.interval.as_secs_f64().max(1e-3)).ceil() as u32;
        self.replies.iter().any(|r| r.seq + tail.max(2) > last)
    }

    /// The requests lost that were sent at or after `t` (seconds since the
    /// Unix epoch).
    pub fn lost_since(&self, t: f64) -> Vec<u32> {
        self.lost_since_seen(t, &SentTimes::new())
    }

    /// [`Self::lost_since`], taking each lost request's send time from
    /// `seen` (what `ping` wrote into the request itself) where it was
    /// captured: ping's pace under load is irregular, and a request's time
    /// interpolated between its answered neighbours may fall on the wrong
    /// side of `t`.
    pub fn lost_since_seen(&self, t: f64, seen: &SentTimes) -> Vec<u32> {
        self.lost()
            .into_iter()
            .filter(|&s| self.sent_time(s, seen).is_some_and(|at| at >= t))
            .collect()
    }

    /// When request `seq` was sent: its own time from `seen` where it was
    /// captured, else [`Self::sent_at`]'s estimate.
    pub fn sent_time(&self, seq: u32, seen: &SentTimes) -> Option<f64> {
        seen.get(&seq).copied().or_else(|| self.sent_at(seq))
    }

    /// From `t` (seconds since the Unix epoch) to the first reply after it.
    pub fn first_reply_after(&self, t: f64) -> Option<Duration> {
        self.replies
            .iter()
            .map(|r| r.at)
            .filter(|&at| at > t)
            .min_by(f64::total_cmp)
            .map(|at| Duration::from_secs_f64(at - t))
    }

    /// How far apart ping really sent consecutive requests: the median and
    /// the longest over the pairs that were both answered.
    pub fn pace(&self) -> Option<(Duration, Duration)> {
        let mut replies = self.replies.clone();
        replies.sort_by_key(|r| r.seq);
        let mut steps: Vec<f64> = replies
            .windows(2)
            .filter(|w| w[1].seq == w[0].seq + 1)
            .map(|w| {
                let sent = |r: &PingReply| r.at - r.rtt.as_secs_f64();
                (sent(&w[1]) - sent(&w[0])).max(0.0)
            })
            .collect();
        steps.sort_by(f64::total_cmp);
        let median = *steps.get((steps.len().checked_sub(1)?) / 2)?;
        let longest = *steps.last()?;
        Some((
            Duration::from_secs_f64(median),
            Duration::from_secs_f64(longest),
        ))
    }

    /// The replies before and after the longest gap, by sequence number.
    pub fn longest_gap_between(&self) -> Option<(u32, u32)> {
        let mut replies = self.replies.clone();
        replies.sort_by(|a, b| a.at.total_cmp(&b.at));
        replies
            .windows(2)
            .max_by(|a, b| (a[1].at - a[0].at).total_cmp(&(b[1].at - b[0].at)))
            .map(|w| (w[0].seq, w[1].seq))
    }
}

/// The Unix time of an [`Instant`], through one reading of both clocks:
/// ping stamps its replies with the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub wall: std::time::SystemTime,
    pub instant: Instant,
}

impl WallClock {
    pub fn now() -> Self {
        Self {
            wall: std::time::SystemTime::now(),
            instant: Instant::now(),
        }
    }

    /// `t` in seconds since the Unix epoch.
    pub fn epoch(&self, t: Instant) -> f64 {
        let base = self
            .wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let since = t.saturating_duration_since(self.instant).as_secs_f64()
            - self.instant.saturating_duration_since(t).as_secs_f64();
        base + since
    }
}

/// When `ping` sent each echo request, by sequence number (seconds since
/// the Unix epoch).
pub type SentTimes = std::collections::BTreeMap<u32, f64>;

/// The send times `ping` wrote into the echo requests among `frames`
/// (Ethernet, as a capture on the pinger's interface reads them), by
/// destination: iputils puts the `struct timeval` of the moment it sent a
/// request at the start of the request's payload (whenever the payload has
/// room for it, as the default 56 bytes do). Frames that are not such a
/// request are skipped.
pub fn request_times<'a>(
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> std::collections::BTreeMap<Ipv4Addr, SentTimes> {
    let mut by_dst: std::collections::BTreeMap<Ipv4Addr, SentTimes> = Default::default();
    for (dst, seq, at) in frames.into_iter().filter_map(echo_request_time) {
        by_dst.entry(dst).or_default().insert(seq, at);
    }
    by_dst
}

fn echo_request_time(frame: &[u8]) -> Option<(Ipv4Addr, u32, f64)> {
    const ETH: usize = 14;
    const IPV4: [u8; 2] = [0x08, 0x00];
    const ICMP: u8 = 1;
    const ECHO_REQUEST: u8 = 8;
    if frame.get(12..14)? != IPV4 {
        return None;
    }
    let ip = frame.get(ETH..)?;
    let header = usize::from(ip.first()? & 0x0f) * 4;
    if ip.get(9)? != &ICMP {
        return None;
    }
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
    let icmp = ip.get(header..)?;
    if icmp.first()? != &ECHO_REQUEST {
        return None;
    }
    let seq = u16::from_be_bytes(icmp.get(6..8)?.try_into().ok()?);
    // A 64-bit timeval in the sender's byte order: the pinger is this
    // machine.
    let secs = i64::from_ne_bytes(icmp.get(8..16)?.try_into().ok()?);
    let micros = i64::from_ne_bytes(icmp.get(16..24)?.try_into().ok()?);
    if !(0..1_000_000).contains(&micros) || secs <= 0 {
        return None;
    }
    Some((dst, u32::from(seq), secs as f64 + micros as f64 / 1e6))
}

/// One reply line of `ping -D`; `None` for anything else.
fn parse_reply(line: &str) -> Option<PingReply> {
    let rest = line.strip_prefix('[')?;
    let (at, rest) = rest.split_once(']')?;
    if !rest.contains(" bytes from ") {
        return None;
    }
    let field = |name: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_owned)
    };
    let seq = field("icmp_seq=")?.parse().ok()?;
    let rtt_ms: f64 = field("time=")?.parse().ok()?;
    Some(PingReply {
        seq,
        at: at.parse().ok()?,
        rtt: Duration::from_secs_f64(rtt_ms.max(0.0) / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_replies() {
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n\
                   --- 10.0.0.2 ping statistics ---\n\
                   3 packets transmitted, 3 received, 0% packet loss, time 403ms\n\
                   rtt min/avg/max/mdev = 0.400/1.601/3.814/1.566 ms\n";
        let r = PingReport::parse(out).unwrap();
        assert_eq!((r.transmitted, r.received, r.errors), (3, 3, 0));
        assert!(r.all_replied());
        assert_eq!(r.loss(), 0.0);
        let rtt = r.rtt.unwrap();
        assert_eq!(rtt.min, Duration::from_micros(400));
        assert_eq!(rtt.avg, Duration::from_micros(1601));
        assert_eq!(rtt.max, Duration::from_micros(3814));
        assert_eq!(rtt.mdev, Duration::from_micros(1566));
    }

    #[test]
    fn outstanding_requests_add_a_pipe_after_the_rtt() {
        let out = "25 packets transmitted, 25 received, 0% packet loss, time 557ms\n\
                   rtt min/avg/max/mdev = 0.543/6.554/52.854/12.809 ms, pipe 3\n";
        let r = PingReport::parse(out).unwrap();
        assert_eq!(r.rtt.unwrap().max, Duration::from_micros(52_854));
    }

    #[test]
    fn total_loss_has_no_rtt() {
        let out = "--- 10.0.0.2 ping statistics ---\n\
                   2 packets transmitted, 0 received, 100% packet loss, time 1014ms\n";
        let r = PingReport::parse(out).unwrap();
        assert_eq!((r.transmitted, r.received), (2, 0));
        assert_eq!(r.loss(), 1.0);
        assert!(!r.all_replied());
        assert!(r.rtt.is_none());
    }

    #[test]
    fn errors_and_partial_loss() {
        let out =
            "3 packets transmitted, 1 received, +2 errors, 66.6667% packet loss, time 2040ms\n\
                   rtt min/avg/max/mdev = 0.051/0.051/0.051/0.000 ms\n";
        let r = PingReport::parse(out).unwrap();
        assert_eq!((r.transmitted, r.received, r.errors), (3, 1, 2));
        assert!((r.loss() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(PingReport::parse("ping: unknown host").is_err());
        assert!(PingReport::parse("1 packets transmitted, 2 received").is_err());
        assert!(PingReport::parse("x packets transmitted, 0 received").is_err());
        assert!(PingReport::parse(
            "1 packets transmitted, 1 received\nrtt min/avg/max/mdev = 1/2 ms"
        )
        .is_err());
    }

    const RUN: &str = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\
        [1700000000.000100] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.512 ms\n\
        [1700000000.010100] 64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.400 ms\n\
        [1700000000.020100] no answer yet for icmp_seq=3\n\
        [1700000000.030100] no answer yet for icmp_seq=4\n\
        [1700000000.040200] 64 bytes from 10.0.0.2: icmp_seq=5 ttl=64 time=0.300 ms\n\
        [1700000000.040300] 64 bytes from 10.0.0.2: icmp_seq=5 ttl=64 time=0.310 ms (DUP!)\n\
        [1700000000.050100] 64 bytes from 10.0.0.2: icmp_seq=6 ttl=64 time=0.350 ms\n\
        \n--- 10.0.0.2 ping statistics ---\n\
        7 packets transmitted, 4 received, +1 duplicates, 42.8571% packet loss, time 60ms\n\
        rtt min/avg/max/mdev = 0.300/0.390/0.512/0.080 ms\n";

    #[test]
    fn a_trace_has_its_replies_gaps_and_losses() {
        let t = PingTrace::parse(RUN).unwrap();
        assert_eq!(t.summary.transmitted, 7);
        assert_eq!(t.replies.len(), 4);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.replies[0].rtt, Duration::from_micros(512));
        assert_eq!(t.lost(), vec![3, 4, 7]);
        let gap = t.longest_gap().unwrap();
        assert!((gap.as_secs_f64() - 0.0301).abs() < 1e-6, "{gap:?}");
        assert_eq!(t.longest_gap_between(), Some((2, 5)));
    }

    #[test]
    fn an_interrupted_run_forgives_only_its_last_request() {
        let mut t = PingTrace::parse(RUN).unwrap();
        t.interrupted = true;
        assert_eq!(t.lost(), vec![3, 4]);
    }

    #[test]
    fn a_run_without_replies_has_no_gap() {
        let t = PingTrace::parse(
            "[1.0] no answer yet for icmp_seq=1\n\
             1 packets transmitted, 0 received, 100% packet loss, time 0ms\n",
        )
        .unwrap();
        assert!(t.replies.is_empty());
        assert_eq!(t.longest_gap(), None);
        assert_eq!(t.lost(), vec![1]);
    }

    #[test]
    fn a_lost_request_is_dated_by_the_pace_ping_really_kept() {
        // Planned every 10 ms, sent every 16 ms: requests 3 and 4 are lost.
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\
                   [100.000500] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.500 ms\n\
                   [100.016500] 64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.500 ms\n\
                   [100.065000] 64 bytes from 10.0.0.2: icmp_seq=5 ttl=64 time=1.000 ms\n\
                   \n--- 10.0.0.2 ping statistics ---\n\
                   6 packets transmitted, 3 received, 50% packet loss, time 80ms\n\
                   rtt min/avg/max/mdev = 0.500/0.667/1.000/0.236 ms\n";
        let mut t = PingTrace::parse(out).unwrap();
        t.interval = Duration::from_millis(10);
        assert_eq!(t.lost(), [3, 4, 6]);
        let at = |s| t.sent_at(s).unwrap();
        assert!((at(2) - 100.016).abs() < 1e-9, "{}", at(2));
        assert!((at(3) - 100.032).abs() < 1e-9, "{}", at(3));
        assert!((at(4) - 100.048).abs() < 1e-9, "{}", at(4));
        assert!(
            (at(6) - 100.074).abs() < 1e-9,
            "after the last answer: the plan"
        );
        assert_eq!(t.lost_since(100.040), [4, 6]);
        let first = t.first_reply_after(100.040).unwrap();
        assert!((first.as_secs_f64() - 0.025).abs() < 1e-9, "{first:?}");
        let (median, longest) = t.pace().unwrap();
        assert!((median.as_secs_f64() - 0.016).abs() < 1e-9, "{median:?}");
        assert_eq!(median, longest, "one pair of consecutive answers");
        assert!(PingTrace::parse(out).unwrap().sent_at(0).is_none());
    }

    #[test]
    fn the_wall_clock_dates_instants_before_and_after_its_reading() {
        let c = WallClock::now();
        let base = c.epoch(c.instant);
        let later = c.instant + Duration::from_millis(250);
        assert!((c.epoch(later) - base - 0.25).abs() < 1e-6);
        if let Some(earlier) = c.instant.checked_sub(Duration::from_millis(100)) {
            assert!((base - c.epoch(earlier) - 0.1).abs() < 1e-6);
        }
    }

    #[test]
    fn a_run_resumed_when_one_of_its_last_requests_was_answered() {
        let out = |last| {
            format!(
                "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\
                 [100.000500] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.500 ms\n\
                 [100.100500] 64 bytes from 10.0.0.2: icmp_seq={last} ttl=64 time=0.500 ms\n\
                 \n--- 10.0.0.2 ping statistics ---\n\
                 5 packets transmitted, 2 received, 60% packet loss, time 400ms\n"
            )
        };
        let trace = |last, interval| {
            let mut t = PingTrace::parse(&out(last)).unwrap();
            t.interval = Duration::from_millis(interval);
            t
        };
        assert!(trace(4, 100).resumed());
        assert!(!trace(3, 100).resumed(), "only the last two at 100 ms");
        assert!(trace(3, 10).resumed(), "the last 200 ms at 10 ms");
    }

    /// An echo request as iputils sends it: Ethernet, IPv4, ICMP with the
    /// send time at the start of the payload.
    fn echo_request(dst: [u8; 4], seq: u16, secs: i64, micros: i64) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1];
        ip.extend(dst);
        f.extend(ip);
        f.extend([8, 0, 0, 0, 0x12, 0x34]);
        f.extend(seq.to_be_bytes());
        f.extend(secs.to_ne_bytes());
        f.extend(micros.to_ne_bytes());
        f.extend([0xab; 40]);
        f
    }

    #[test]
    fn request_times_are_read_from_echo_requests_only_by_destination() {
        let to = Ipv4Addr::new(10, 0, 0, 2);
        let a = echo_request([10, 0, 0, 2], 74, 1_700_000_000, 250_000);
        let other = echo_request([10, 0, 0, 3], 75, 1_700_000_001, 0);
        let mut reply = echo_request([10, 0, 0, 2], 76, 1_700_000_002, 0);
        reply[14 + 20] = 0;
        let mut bad_time = echo_request([10, 0, 0, 2], 77, 1_700_000_003, 0);
        bad_time[14 + 20 + 16..14 + 20 + 24].copy_from_slice(&2_000_000i64.to_ne_bytes());
        let truncated = &a[..40];
        let frames = [&a[..], &other, &reply, &bad_time, truncated, &[0u8; 3][..]];
        let times = request_times(frames);
        assert_eq!(
            times,
            std::collections::BTreeMap::from([
                (to, SentTimes::from([(74, 1_700_000_000.25)])),
                (
                    Ipv4Addr::new(10, 0, 0, 3),
                    SentTimes::from([(75, 1_700_000_001.0)])
                ),
            ])
        );
    }

    #[test]
    fn a_lost_request_is_placed_by_its_own_time_where_it_was_seen() {
        let trace = PingTrace::parse(RUN).unwrap();
        assert_eq!(trace.lost(), vec![3, 4, 7]);
        // Interpolated between the answered 2 and 5, request 4 left at
        // about .0298: after .025.
        let t = 1_700_000_000.025;
        assert_eq!(trace.lost_since(t), vec![4, 7]);
        // Its own time says .015 (a stalled ping sent 5 late).
        let seen = SentTimes::from([(4, 1_700_000_000.015)]);
        assert_eq!(trace.lost_since_seen(t, &seen), vec![7]);
    }
}
