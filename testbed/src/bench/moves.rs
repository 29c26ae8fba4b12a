//! `iris-testbed bench moves`: K VMs live-migrate at once in a mesh of N
//! PMs run by the real `iris-controller`, while a VM that stays put pings
//! each of them every 100 ms.
//!
//! Each move is what the `migrate` scenario does to one VM: its port is
//! unplugged from the old PM's `br-int` and plugged into the new PM's, and
//! the VM announces itself as QEMU does after a live migration (a RARP, in
//! QEMU's five announce rounds). The K re-pluggings run on K threads; once
//! all are done, the K guests "resume" together: from sockets opened
//! beforehand, each round's K RARPs leave back to back from one thread
//! (`frames::send_in_rounds`), so the K first RARPs leave within about a
//! millisecond.
//!
//! Measured per move: the controller's RARP-to-last-barrier time (the
//! `move` events of `/v1/events`, cross-checked against the
//! `iris_move_latency_seconds` histogram), and over all moves the time from
//! the first RARP sent to the last move event read. Per moving VM: the
//! pings lost and the longest gap between replies, and of those lost the
//! ones sent after the VM's first RARP (the share the controller can act
//! on; what was sent while the port was unplugged is lost by construction).
//!
//! One pinger VM with one `ping` process per moving VM, rather than a
//! pinger per moving VM: each process measures its own target, the pinger
//! never moves, and the bridges carry only the ports of the VMs under test
//! (K more VMs would add K ports and K MACs to every switch's tables and
//! double the setup).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bench::report::cpu_seconds;
use crate::controller::{ServerEvent, ViEntry};
use crate::frames::{send_in_rounds, Capture, FrameSender};
use crate::ping::{request_times, SentTimes};
use crate::scenario::migrate::qemu_announcement;
use crate::scenario::{self, check, ms, round3, Harness, ScenarioError};
use crate::{PingPlan, PingRun, PingTrace, PmId, VmId, WallClock};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
/// The harness numbers VMs with one byte, the pinger among them.
pub const MAX_MOVES: usize = 253;
/// Pings before the moves start, so each run has its baseline.
const BEFORE_MOVES: Duration = Duration::from_secs(1);
/// How long the moves may take to be confirmed once every VM has sent its
/// last announcement.
const CONFIRM: Duration = Duration::from_secs(10);
/// Pings after the last move is confirmed: the runs must end answered.
const AFTER_MOVES: Duration = Duration::from_secs(1);
/// Requests a run may send; it is interrupted long before.
const MAX_PINGS: u32 = 100_000;

/// One run of the benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    pub pms: usize,
    pub moves: usize,
    /// Between two pings to one moving VM.
    pub interval: Duration,
    pub scenario: scenario::Options,
    /// Where to copy the controller's log (debug level) after the run.
    pub keep_log: Option<std::path::PathBuf>,
}

/// p50 and max of a set of measurements.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub p50: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values; the p50 is the nearest-rank median.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let max = *v.last()?;
        let p50 = v[(v.len() - 1) / 2];
        Some(Self { p50, max })
    }
}

/// How long bringing the testbed up took, and what it costs in memory.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// PMs (each its ovsdb-server and ovs-vswitchd) and VMs created.
    pub testbed_s: f64,
    /// Then the controller up with every switch, the full mesh and every
    /// VM port classified.
    pub controller_s: f64,
    /// Then every moving VM answering the pinger, its MAC placed.
    pub reachable_s: f64,
    /// Resident memory of every PM's ovsdb-server and ovs-vswitchd, and of
    /// the controller, after the moves.
    pub ovs_rss_mib: f64,
    pub controller_rss_mib: f64,
}

/// Controller CPU seconds (user + system) in the two phases of the moves.
#[derive(Debug, Clone, Serialize)]
pub struct ControllerCpu {
    /// From the start of the moves to the last port plugged into its new PM.
    pub replug: Option<f64>,
    /// From then to one second after the last move settled.
    pub announcements: Option<f64>,
}

fn cpu_between(from: Option<f64>, to: Option<f64>) -> Option<f64> {
    Some(round3(to? - from?))
}

/// One moving VM.
#[derive(Debug, Clone, Serialize)]
pub struct VmMove {
    pub vm: String,
    pub from: String,
    pub to: String,
    /// From the start of the moves to this VM's port plugged into the new
    /// PM (unplugged from the old one first): the VM is unreachable
    /// meanwhile, as a migrating guest is paused.
    pub replug_ms: f64,
    /// The controller's RARP-to-last-barrier time for this VM's move.
    pub latency_ms: Option<f64>,
    /// From this VM's first RARP to its move event being read.
    pub rarp_to_event_ms: Option<f64>,
    pub pings_lost: usize,
    /// Lost, and sent after the VM's first RARP.
    pub pings_lost_after_rarp: usize,
    /// When each of those was sent, from the first RARP: the time `ping`
    /// wrote into the request, read by a capture on the pinger's
    /// interface, or where the capture missed it, estimated from the
    /// answered requests around it (`PingTrace::sent_at`).
    pub lost_after_rarp_sent_ms: Vec<f64>,
    /// Of those, how many the capture saw (the rest are estimated).
    pub lost_after_rarp_seen: usize,
    /// From the VM's first RARP to the first ping reply after it.
    pub rarp_to_first_reply_ms: Option<f64>,
    pub longest_gap_ms: Option<f64>,
    /// How far apart ping really sent its requests (median and longest
    /// step between two answered ones), which may differ from the planned
    /// interval.
    pub ping_pace_ms: Option<Spread>,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pms: usize,
    pub moves: usize,
    pub ping_interval_ms: f64,
    pub setup: Setup,
    pub replug_ms: Option<Spread>,
    /// RARPs sent, and those that reached the controller as PacketIns.
    pub rarps_sent: usize,
    pub rarp_packet_ins: f64,
    /// Every PacketIn during the moves, by what the controller made of it.
    pub packet_ins: BTreeMap<String, f64>,
    /// What became of the frames the guests' old hosts sent up while they
    /// were away or had just moved (`iris_parked_frames_total` by outcome):
    /// any not `forwarded` is a lost frame the controller dropped.
    pub parked_frames: BTreeMap<String, f64>,
    /// FLOW_MODs the controller sent while the moves were confirmed.
    pub flow_mods: f64,
    /// CPU the controller used while the ports were re-plugged and then
    /// while the guests announced themselves: what the moves cost it,
    /// whatever else shared the cores.
    pub controller_cpu_s: ControllerCpu,
    /// The controller's RARP-to-last-barrier time per move (`move` events).
    pub move_latency_ms: Option<Spread>,
    /// From each VM's first RARP to its move event being read: under QEMU's
    /// 50 ms to the second round, the first RARP is the one that moved it.
    pub rarp_to_event_ms: Option<Spread>,
    /// Samples the `iris_move_latency_seconds` histogram gained, and their
    /// mean.
    pub histogram_moves: f64,
    pub histogram_mean_ms: Option<f64>,
    pub moves_incomplete: usize,
    /// From the first RARP sent to the last move event read.
    pub first_rarp_to_last_move_ms: Option<f64>,
    /// From the first VM's first RARP to the last VM's: how close to "at
    /// once" the guests resumed.
    pub announce_spread_ms: Option<f64>,
    pub pings_lost_max: usize,
    pub pings_lost_total: usize,
    pub pings_lost_after_rarp_max: usize,
    pub pings_lost_after_rarp_total: usize,
    /// From each VM's first RARP to the first ping reply after it.
    pub rarp_to_first_reply_ms: Option<Spread>,
    pub longest_gap_ms: Option<f64>,
    /// How far apart ping really sent its requests: the median of the
    /// VMs' medians, and the longest step of any.
    pub ping_pace_ms: Option<Spread>,
    pub vms: Vec<VmMove>,
}

/// Runs the benchmark on a fresh testbed and tears it down.
pub fn run(options: &Options) -> Result<Report, ScenarioError> {
    if options.pms < 2 || options.moves == 0 || options.moves > MAX_MOVES {
        return Err(ScenarioError::Testbed(crate::Error::Usage(format!(
            "bench moves needs --pms 2 or more and --moves 1 to {MAX_MOVES} (got {} and {})",
            options.pms, options.moves
        ))));
    }
    let (outcome, report) =
        scenario::run_measured("moves", &options.scenario, |h| measure(h, options));
    match report {
        Some(r) => Ok(r),
        None => {
            let mut why = outcome.reason.unwrap_or_else(|| "no report".into());
            if let Some(logs) = outcome.logs {
                why.push_str(&format!(" (logs kept in {})", logs.display()));
            }
            Err(ScenarioError::Failed(why))
        }
    }
}

fn measure(h: &mut Harness, options: &Options) -> Result<Report, ScenarioError> {
    let (n, k) = (options.pms, options.moves);
    let started = Instant::now();
    let names: Vec<String> = (1..=n).map(|i| format!("pm{i}")).collect();
    let pms = h.add_pms(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
    // Mover j starts on PM j+1 and goes to PM j+2 (mod N); the pinger
    // stays on the first PM.
    let at = |j: usize| pms[(j + 1) % n];
    let to = |j: usize| pms[(j + 2) % n];
    let mut placement = vec![pms[0]];
    placement.extend((0..k).map(at));
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    let vms = h.add_vms(&mut vi, &placement)?;
    let (pinger, movers) = (vms[0], &vms[1..]);
    let testbed_s = started.elapsed().as_secs_f64();
    h.note(format!("{n} PMs and {} VMs in {testbed_s:.1} s", k + 1));

    let up = Instant::now();
    h.bring_up(&pms, vec![vi], &vms)?;
    let controller_s = up.elapsed().as_secs_f64();
    let up = Instant::now();
    for &m in movers {
        h.wait_reachable(pinger, h.tb.vm(m).ip().addr())?;
    }
    let placed: Vec<(VmId, Option<u16>)> = vms.iter().map(|&v| (v, None)).collect();
    h.wait_placed(VI, &placed)?;
    let mut setup = Setup {
        testbed_s: round1(testbed_s),
        controller_s: round1(controller_s),
        reachable_s: round1(up.elapsed().as_secs_f64()),
        ovs_rss_mib: 0.0,
        controller_rss_mib: 0.0,
    };
    h.note(format!(
        "controller ready in {controller_s:.1} s; every VM reachable; moving {k} VMs"
    ));

    // Every request's own send time, for dating the lost ones: ping's pace
    // is irregular when a hundred of them share two busy cores.
    let requests = {
        let v = h.tb.vm(pinger);
        Capture::start(v.netns(), v.interface())?
    };
    let runs: Vec<PingRun> = movers
        .iter()
        .map(|&m| {
            let vm = h.tb.vm(m);
            let plan = PingPlan::new(vm.ip().addr(), MAX_PINGS, options.interval);
            h.ping_run(pinger, plan, &format!("to-{}", vm.name()))
        })
        .collect::<Result<_, _>>()?;
    std::thread::sleep(BEFORE_MOVES);
    let controller = h.controller()?;
    let before = controller.metrics()?;
    let events = controller.events()?;
    let from: Vec<String> = movers
        .iter()
        .map(|&m| h.tb.pm(h.tb.vm(m).pm()).name().to_owned())
        .collect();
    let moves: Vec<(VmId, PmId)> = movers
        .iter()
        .enumerate()
        .map(|(j, &m)| (m, to(j)))
        .collect();
    let controller_pid = controller.pid();
    let cpu_start = cpu_seconds(controller_pid);
    let clock = WallClock::now();
    let plugged = h.tb.move_vms(&moves)?;
    let cpu_plugged = cpu_seconds(controller_pid);
    let moving_started = clock.instant;
    // Every guest resumes at once: the sockets are opened first, then the
    // guests' RARPs leave round by round, each round's from all of them
    // back to back.
    let mut rarps = Vec::with_capacity(k);
    for &m in movers {
        let vm = h.tb.vm(m);
        let rounds = qemu_announcement(vm.mac());
        rarps.push((FrameSender::open(vm.netns(), vm.interface())?, rounds));
    }
    let sent = send_in_rounds(&mut rarps)?;
    let announced: Vec<(Instant, Vec<Instant>)> = plugged.into_iter().zip(sent).collect();

    // Every move confirmed (or given up on), then the pings' tail.
    let controller = h.controller()?;
    let k_f = k as f64;
    let deadline = Instant::now() + CONFIRM;
    let after = loop {
        let m = controller.metrics()?;
        let settled = m.value("iris_move_latency_seconds_count")
            - before.value("iris_move_latency_seconds_count")
            + gained_total(&m, &before, "iris_moves_incomplete_total");
        if settled >= k_f || Instant::now() >= deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(AFTER_MOVES);
    // The PacketIns counted once the last round has had time to arrive:
    // the moves settle on the first round, while later rounds of a hundred
    // guests may still be on their way up through vswitchd.
    let arrived = controller.metrics()?;
    let cpu_end = cpu_seconds(controller_pid);
    let controller_cpu_s = ControllerCpu {
        replug: cpu_between(cpu_start, cpu_plugged),
        announcements: cpu_between(cpu_plugged, cpu_end),
    };
    let events = events.finish()?;
    let traces: Vec<PingTrace> = runs
        .into_iter()
        .map(PingRun::interrupt)
        .collect::<Result<_, _>>()?;
    let requests = request_times(requests.finish()?.iter().map(|f| f.data.as_slice()));

    let histogram_moves = after.value("iris_move_latency_seconds_count")
        - before.value("iris_move_latency_seconds_count");
    let histogram_sum = after.value("iris_move_latency_seconds_sum")
        - before.value("iris_move_latency_seconds_sum");
    let packet_ins = arrived.gained(&before, "iris_packet_ins_total", "reason");
    let parked_frames = arrived.gained(&before, "iris_parked_frames_total", "outcome");
    setup.ovs_rss_mib = round1(
        h.tb.pms()
            .flat_map(|(_, pm)| pm.ovs().pids())
            .map(rss_mib)
            .sum(),
    );
    setup.controller_rss_mib = round1(rss_mib(h.controller()?.pid()));
    if let Some(to) = &options.keep_log {
        let from = h.controller()?.log_path();
        std::fs::copy(from, to).map_err(|e| crate::Error::io_at("copying the log to", to, e))?;
    }
    let moved: BTreeMap<String, &ServerEvent> = events
        .iter()
        .filter(|e| e.data["type"] == "move")
        .filter_map(|e| Some((e.data["mac"].as_str()?.to_owned(), e)))
        .collect();
    let incomplete = events
        .iter()
        .filter(|e| e.data["type"] == "move_incomplete")
        .count();

    let mut per_vm = Vec::new();
    for (j, &m) in movers.iter().enumerate() {
        let vm = h.tb.vm(m);
        let (plugged, sent) = &announced[j];
        let first_rarp = sent.first().copied();
        let event = moved.get(&vm.mac().to_string());
        let trace = &traces[j];
        let lost = trace.lost();
        let rarp_at = first_rarp.map(|t| clock.epoch(t));
        let none = SentTimes::new();
        let seen = requests.get(&vm.ip().addr()).unwrap_or(&none);
        let lost_after: Vec<(f64, bool)> = rarp_at.map_or_else(Vec::new, |t| {
            trace
                .lost_since_seen(t, seen)
                .into_iter()
                .filter_map(|seq| {
                    let at = trace.sent_time(seq, seen)?;
                    Some((round3((at - t) * 1e3), seen.contains_key(&seq)))
                })
                .collect()
        });
        per_vm.push(VmMove {
            vm: vm.name().to_owned(),
            from: from[j].clone(),
            to: h.tb.pm(vm.pm()).name().to_owned(),
            replug_ms: ms(plugged.saturating_duration_since(moving_started)),
            latency_ms: event.and_then(|e| e.data["latency_ms"].as_f64()),
            rarp_to_event_ms: first_rarp
                .zip(event)
                .map(|(r, e)| ms(e.at.saturating_duration_since(r))),
            pings_lost: lost.len(),
            pings_lost_after_rarp: lost_after.len(),
            lost_after_rarp_seen: lost_after.iter().filter(|(_, saw)| *saw).count(),
            lost_after_rarp_sent_ms: lost_after.into_iter().map(|(ms, _)| ms).collect(),
            rarp_to_first_reply_ms: rarp_at.and_then(|t| trace.first_reply_after(t)).map(ms),
            longest_gap_ms: trace.longest_gap().map(ms),
            ping_pace_ms: trace.pace().map(|(median, longest)| Spread {
                p50: ms(median),
                max: ms(longest),
            }),
        });
    }
    let latencies: Vec<f64> = per_vm.iter().filter_map(|v| v.latency_ms).collect();
    let first_rarp = announced.iter().filter_map(|(_, s)| s.first()).min();
    let last_rarp = announced.iter().filter_map(|(_, s)| s.first()).max();
    let last_move = moved.values().map(|e| e.at).max();
    let report = Report {
        pms: n,
        moves: k,
        ping_interval_ms: ms(options.interval),
        setup,
        replug_ms: Spread::of(&per_vm.iter().map(|v| v.replug_ms).collect::<Vec<_>>()),
        rarps_sent: announced.iter().map(|(_, s)| s.len()).sum(),
        rarp_packet_ins: packet_ins.get("rarp").copied().unwrap_or(0.0),
        packet_ins: packet_ins.clone(),
        parked_frames,
        flow_mods: arrived.value("iris_flow_mods_sent_total")
            - before.value("iris_flow_mods_sent_total"),
        controller_cpu_s,
        move_latency_ms: Spread::of(&latencies),
        rarp_to_event_ms: Spread::of(
            &per_vm
                .iter()
                .filter_map(|v| v.rarp_to_event_ms)
                .collect::<Vec<_>>(),
        ),
        histogram_moves,
        histogram_mean_ms: (histogram_moves > 0.0)
            .then(|| round3(histogram_sum / histogram_moves * 1e3)),
        moves_incomplete: incomplete,
        first_rarp_to_last_move_ms: first_rarp
            .zip(last_move)
            .map(|(&r, l)| ms(l.saturating_duration_since(r))),
        announce_spread_ms: first_rarp
            .zip(last_rarp)
            .map(|(f, l)| ms(l.saturating_duration_since(*f))),
        pings_lost_max: per_vm.iter().map(|v| v.pings_lost).max().unwrap_or(0),
        pings_lost_total: per_vm.iter().map(|v| v.pings_lost).sum(),
        pings_lost_after_rarp_max: per_vm
            .iter()
            .map(|v| v.pings_lost_after_rarp)
            .max()
            .unwrap_or(0),
        pings_lost_after_rarp_total: per_vm.iter().map(|v| v.pings_lost_after_rarp).sum(),
        rarp_to_first_reply_ms: Spread::of(
            &per_vm
                .iter()
                .filter_map(|v| v.rarp_to_first_reply_ms)
                .collect::<Vec<_>>(),
        ),
        ping_pace_ms: pace_over(&per_vm),
        longest_gap_ms: per_vm
            .iter()
            .filter_map(|v| v.longest_gap_ms)
            .max_by(f64::total_cmp),
        vms: per_vm,
    };
    // Each VM moved once: exactly one histogram sample and one event each.
    check(histogram_moves == k_f && moved.len() == k, || {
        format!(
            "{k} VMs moved, but the controller recorded {histogram_moves} moves and published \
             {} move events ({incomplete} incomplete); PacketIns during the moves: {packet_ins:?}",
            moved.len()
        )
    })?;
    check(traces.iter().all(PingTrace::resumed), || {
        format!("pings did not resume after every move: {:?}", report.vms)
    })?;
    Ok(report)
}

/// The median of the VMs' median paces, and the longest step of any.
fn pace_over(vms: &[VmMove]) -> Option<Spread> {
    let paces: Vec<Spread> = vms.iter().filter_map(|v| v.ping_pace_ms).collect();
    let p50 = Spread::of(&paces.iter().map(|p| p.p50).collect::<Vec<_>>())?.p50;
    let max = Spread::of(&paces.iter().map(|p| p.max).collect::<Vec<_>>())?.max;
    Some(Spread { p50, max })
}

fn gained_total(
    after: &crate::controller::Metrics,
    before: &crate::controller::Metrics,
    name: &str,
) -> f64 {
    let sum = |m: &crate::controller::Metrics| m.by_label(name, "why").values().sum::<f64>();
    sum(after) - sum(before)
}

/// The resident memory of process `pid` (`VmRSS`), in MiB; 0 when it is
/// gone.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spread = |s: Option<Spread>| {
            s.map_or("-".to_owned(), |s| {
                format!("p50 {:.3} ms, max {:.3} ms", s.p50, s.max)
            })
        };
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3} ms"));
        writeln!(
            f,
            "{} simultaneous moves in a mesh of {} PMs",
            self.moves, self.pms
        )?;
        writeln!(
            f,
            "  setup: testbed {:.1} s, controller {:.1} s, reachable {:.1} s; RSS of OVS {:.0} MiB, \
             of the controller {:.0} MiB",
            self.setup.testbed_s,
            self.setup.controller_s,
            self.setup.reachable_s,
            self.setup.ovs_rss_mib,
            self.setup.controller_rss_mib
        )?;
        writeln!(f, "  re-plugging:            {}", spread(self.replug_ms))?;
        let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3} s"));
        writeln!(
            f,
            "  controller CPU:         {} while re-plugging, {} for the announcements",
            cpu(self.controller_cpu_s.replug),
            cpu(self.controller_cpu_s.announcements)
        )?;
        writeln!(
            f,
            "  RARPs:                  {} sent, {} reached the controller; PacketIns {:?}; \
             {} FLOW_MODs",
            self.rarps_sent, self.rarp_packet_ins, self.packet_ins, self.flow_mods
        )?;
        writeln!(f, "  frames held for guests: {:?}", self.parked_frames)?;
        writeln!(
            f,
            "  RARP to last barrier:   {}",
            spread(self.move_latency_ms)
        )?;
        writeln!(
            f,
            "  first RARP to last move confirmed: {} (announcements spread over {})",
            opt(self.first_rarp_to_last_move_ms),
            opt(self.announce_spread_ms)
        )?;
        writeln!(
            f,
            "  pings every {:.0} ms: lost max {} / total {} per VM; after the RARP max {} / total {}; longest gap {}",
            self.ping_interval_ms,
            self.pings_lost_max,
            self.pings_lost_total,
            self.pings_lost_after_rarp_max,
            self.pings_lost_after_rarp_total,
            opt(self.longest_gap_ms)
        )?;
        writeln!(
            f,
            "  first RARP to first reply: {}; ping really sent every {}",
            spread(self.rarp_to_first_reply_ms),
            spread(self.ping_pace_ms)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_nearest_rank_median_and_the_max() {
        let s = Spread::of(&[5.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.p50, s.max), (2.0, 5.0));
        let s = Spread::of(&[4.0]).unwrap();
        assert_eq!((s.p50, s.max), (4.0, 4.0));
        assert!(Spread::of(&[]).is_none());
    }
}
