//! `bench arp`: how long an ARP request for a known IP takes to be answered
//! by Iris's datapath ARP responder, against a plain bridge where the
//! target VM answers itself.
//!
//! One testbed, two PMs of the same kind (each its own userspace vswitchd):
//!
//! - **responder**: PM `pm1` under the controller, the requesting VM and the
//!   target VM on it, both seeded in the VI's registry; the controller
//!   compiles a responder flow (table 2) for the target's IP, which answers
//!   the request at the requester's own port;
//! - **plain**: PM `pm2`, no controller, its `br-int` with the single flow
//!   `actions=NORMAL`, the requesting VM and the target VM on it; the
//!   request crosses the bridge to the target, whose kernel answers.
//!
//! The requester sends hand-built who-has requests from its own MAC and IP
//! on a raw socket, one at a time, and times each from just before the
//! send to just after the answer is read (user space both). The two setups
//! alternate in blocks so that a change in the machine's load falls on
//! both. The controller's PacketIn counter is read before the first and
//! after the last block: known ARP must never reach it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use ofp::packet::{ArpOp, ArpRepr, MacAddr as WireMac};
use serde::Serialize;

use super::{coverage, round3, Conditions, Coverage};
use crate::bench::load::new_histogram;
use crate::bench::report::Latency;
use crate::controller::ViEntry;
use crate::frames::{round_trips, Exchange};
use crate::scenario::{check, Harness, ScenarioError};
use crate::{FailMode, MacAddr, PmId, VmId, VmSpec, INTEGRATION_BRIDGE};

const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
/// The target of the responder's p50 over the plain bridge's p50.
pub const TARGET_RATIO: f64 = 1.2;
/// The PacketIn counter of the controller's `/metrics`, by reason.
const PACKET_INS: &str = "iris_packet_ins_total";

/// One run's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Measured requests per setup.
    pub requests: u32,
    /// Unmeasured requests per setup first (datapath flow caches, MAC
    /// learning on the plain bridge).
    pub warmup: u32,
    /// Blocks the measured requests of each setup are split into; the
    /// setups alternate block by block.
    pub blocks: u32,
    /// Pause after each answer.
    pub pause: Duration,
    /// How long a request waits for its answer.
    pub timeout: Duration,
}

/// One setup's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub setup: &'static str,
    pub pm: String,
    pub answered: u64,
    pub unanswered: u64,
    pub latency: Latency,
}

/// What `bench arp` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub requests: u32,
    pub warmup: u32,
    pub blocks: u32,
    pub pause_us: u64,
    pub responder: Setup,
    pub plain: Setup,
    /// The responder's p50 over the plain bridge's p50.
    pub p50_ratio: f64,
    pub target_ratio: f64,
    pub target_met: bool,
    /// The controller's PacketIn counter (all reasons) before the first
    /// and after the last measured block, and what each reason gained.
    pub packet_ins_before: f64,
    pub packet_ins_after: f64,
    pub packet_ins_gained: BTreeMap<String, f64>,
    /// Packets the responder flows on `pm1` counted over the run (warm-up
    /// and measured requests): the answers came from them.
    pub responder_flow_packets: u64,
    /// What each PM's userspace datapath did with the requests: its cached
    /// flows for ARP requests (`ovs-appctl dpctl/dump-flows`), actions
    /// included. `userspace(…slow_path(action))` means every such packet
    /// is handed to vswitchd's upcall handler and translated again.
    pub datapath_flows: BTreeMap<String, Vec<String>>,
    /// Upcall and translation events each PM's vswitchd counted over the
    /// measured blocks (`ovs-appctl coverage/show`).
    pub vswitchd_events: BTreeMap<String, BTreeMap<String, u64>>,
    pub conditions: Conditions,
}

/// The requester and target of one setup.
struct Pair {
    setup: &'static str,
    pm: PmId,
    requester: VmId,
    target: VmId,
}

/// Runs the benchmark on `h`.
pub fn measure(h: &mut Harness, o: Options) -> Result<Report, ScenarioError> {
    if o.requests == 0 || o.blocks == 0 || !o.requests.is_multiple_of(o.blocks) {
        return Err(ScenarioError::Testbed(crate::Error::Usage(format!(
            "{} requests do not split into {} equal blocks",
            o.requests, o.blocks
        ))));
    }
    let conditions = Conditions::before();
    let iris = h.add_pm("pm1")?;
    let plain = h.add_pm_spec(h.pm_spec("pm2").fail_mode(FailMode::Standalone))?;
    h.tb.pm(plain).ofctl(&["del-flows", INTEGRATION_BRIDGE])?;
    h.tb.pm(plain)
        .ofctl(&["add-flow", INTEGRATION_BRIDGE, "actions=NORMAL"])?;

    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    let seeded = h.add_vms(&mut vi, &[iris, iris])?;
    let mut unmanaged = Vec::new();
    for n in [3u8, 4] {
        let ip = format!("10.0.0.{n}/24").parse()?;
        let spec = VmSpec::new(&format!("vm{n}"), plain, 0, MacAddr::local(n.into()), ip);
        unmanaged.push(h.add_vm(spec)?);
    }
    h.bring_up(&[iris], vec![vi], &seeded)?;
    let pairs = [
        Pair {
            setup: "responder",
            pm: iris,
            requester: seeded[0],
            target: seeded[1],
        },
        Pair {
            setup: "plain",
            pm: plain,
            requester: unmanaged[0],
            target: unmanaged[1],
        },
    ];
    for p in &pairs {
        h.wait_reachable(p.requester, h.tb.vm(p.target).ip().addr())?;
        h.wait_reachable(p.target, h.tb.vm(p.requester).ip().addr())?;
    }
    h.wait_placed(VI, &[(seeded[0], None), (seeded[1], None)])?;

    let responder_before = h.responder_packets(&[iris])?;
    let before = h.controller()?.metrics()?;
    let warm = Exchange {
        count: o.warmup,
        pause: o.pause,
        timeout: o.timeout,
    };
    let block = Exchange {
        count: o.requests / o.blocks,
        ..warm
    };
    let mut samples: Vec<Vec<Option<Duration>>> = vec![Vec::new(); pairs.len()];
    for p in &pairs {
        h.note(format!("{}: {} warm-up requests", p.setup, o.warmup));
        exchange(h, p, warm)?;
    }
    let events_before = pm_events(h, &pairs)?;
    for b in 0..o.blocks {
        for (p, times) in pairs.iter().zip(&mut samples) {
            h.note(format!("{}: block {} of {}", p.setup, b + 1, o.blocks));
            times.extend(exchange(h, p, block)?);
        }
    }
    let after = h.controller()?.metrics()?;
    let total = |m: &crate::controller::Metrics| m.by_label(PACKET_INS, "reason").values().sum();
    let packet_ins_gained = after.gained(&before, PACKET_INS, "reason");

    let wanted = u64::from(o.warmup + o.requests);
    let responder_flow_packets = h.wait_for(
        "the responder flows' counters to show every request",
        Duration::from_secs(15),
        || {
            let n = h.responder_packets(&[iris])? - responder_before;
            Ok(if n >= wanted {
                Ok(n)
            } else {
                Err(format!("{n} of {wanted} requests counted"))
            })
        },
    )?;

    let events_after = pm_events(h, &pairs)?;
    let vswitchd_events = events_before
        .iter()
        .zip(events_after)
        .map(|((pm, before), (_, after))| {
            let gained = after
                .into_iter()
                .filter(|(name, _)| {
                    ["upcall", "xlate_actions", "dpif_execute"]
                        .iter()
                        .any(|w| name.contains(w))
                })
                .filter_map(|(name, n)| {
                    let d = n.saturating_sub(before.get(&name).copied().unwrap_or(0));
                    (d > 0).then_some((name, d))
                })
                .collect();
            (pm.clone(), gained)
        })
        .collect();
    let mut datapath_flows = BTreeMap::new();
    for p in &pairs {
        let pm = h.tb.pm(p.pm);
        let flows = pm.appctl(&["dpctl/dump-flows"])?;
        let requests = flows
            .lines()
            .filter(|l| l.contains("eth_type(0x0806)") && l.contains("op=1"))
            .map(str::to_owned)
            .collect();
        datapath_flows.insert(pm.name().to_owned(), requests);
    }
    let mut setups = pairs.iter().zip(&samples).map(|(p, times)| {
        let mut hist = new_histogram();
        for t in times.iter().flatten() {
            // Round trips beyond the histogram's hour are impossible here
            // (each waits `timeout` at most); saturate rather than fail.
            hist.saturating_record(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1));
        }
        let answered = hist.len();
        Setup {
            setup: p.setup,
            pm: h.tb.pm(p.pm).name().to_owned(),
            answered,
            unanswered: times.len() as u64 - answered,
            latency: Latency::of(&hist),
        }
    });
    let (Some(responder), Some(plain)) = (setups.next(), setups.next()) else {
        unreachable!("two setups were measured");
    };
    for s in [&responder, &plain] {
        check(s.answered > 0, || {
            format!("no ARP request of the {} setup was answered", s.setup)
        })?;
    }
    let p50_ratio = round3(responder.latency.p50_us / plain.latency.p50_us);
    Ok(Report {
        benchmark: "arp",
        requests: o.requests,
        warmup: o.warmup,
        blocks: o.blocks,
        pause_us: u64::try_from(o.pause.as_micros()).unwrap_or(u64::MAX),
        target_met: p50_ratio <= TARGET_RATIO,
        p50_ratio,
        target_ratio: TARGET_RATIO,
        responder,
        plain,
        packet_ins_before: total(&before),
        packet_ins_after: total(&after),
        packet_ins_gained,
        responder_flow_packets,
        datapath_flows,
        vswitchd_events,
        conditions: conditions.after(),
    })
}

/// Sends `how.count` who-has requests from `p`'s requester for its target's
/// IP and times each answer.
fn exchange(h: &Harness, p: &Pair, how: Exchange) -> Result<Vec<Option<Duration>>, ScenarioError> {
    let (req, target) = (h.tb.vm(p.requester), h.tb.vm(p.target));
    let (own_mac, own_ip) = (WireMac(req.mac().0), req.ip().addr());
    let (target_mac, target_ip) = (WireMac(target.mac().0), target.ip().addr());
    let mut frame = Vec::new();
    ArpRepr::request(own_mac, own_ip, target_ip).emit(&mut frame);
    let is_answer = move |data: &[u8]| is_reply(data, own_mac, own_ip, target_mac, target_ip);
    Ok(round_trips(
        req.netns(),
        req.interface(),
        &frame,
        how,
        is_answer,
    )?)
}

/// Whether `frame` is the ARP reply telling `own_mac`/`own_ip` that
/// `target_ip` is at `target_mac`.
fn is_reply(
    frame: &[u8],
    own_mac: WireMac,
    own_ip: Ipv4Addr,
    target_mac: WireMac,
    target_ip: Ipv4Addr,
) -> bool {
    ArpRepr::parse_frame(frame).is_ok_and(|a| {
        a.op == ArpOp::Reply
            && a.eth_dst == own_mac
            && a.sha == target_mac
            && a.spa == target_ip
            && a.tha == own_mac
            && a.tpa == own_ip
    })
}

/// Every coverage counter of each setup's PM, by PM name, in setup order.
fn pm_events(h: &Harness, pairs: &[Pair]) -> Result<Vec<(String, Coverage)>, ScenarioError> {
    pairs
        .iter()
        .map(|p| Ok((h.tb.pm(p.pm).name().to_owned(), coverage(h, &[p.pm])?)))
        .collect()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "arp: {} requests per setup after {} warm-up, in {} alternating blocks, {} us apart",
            self.requests, self.warmup, self.blocks, self.pause_us
        )?;
        writeln!(
            f,
            "  {:<10} {:>4} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "setup", "pm", "p50 us", "p90 us", "p99 us", "max us", "unanswered"
        )?;
        for s in [&self.responder, &self.plain] {
            let l = &s.latency;
            writeln!(
                f,
                "  {:<10} {:>4} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10}",
                s.setup, s.pm, l.p50_us, l.p90_us, l.p99_us, l.max_us, s.unanswered
            )?;
        }
        writeln!(
            f,
            "  responder / plain at p50: {:.3} (target <= {}: {})",
            self.p50_ratio,
            self.target_ratio,
            if self.target_met { "met" } else { "missed" }
        )?;
        write!(
            f,
            "  controller PacketIns: {} before, {} after {:?}; responder flows counted {} packets",
            self.packet_ins_before,
            self.packet_ins_after,
            self.packet_ins_gained,
            self.responder_flow_packets
        )?;
        for (pm, flows) in &self.datapath_flows {
            for flow in flows {
                let actions = flow
                    .rsplit_once("actions:")
                    .map_or(flow.as_str(), |(_, a)| a);
                write!(f, "\n  {pm} datapath, ARP request: actions:{actions}")?;
            }
        }
        for (pm, events) in &self.vswitchd_events {
            write!(
                f,
                "\n  {pm} vswitchd events over the measured blocks: {events:?}"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reply_to_this_requester_about_this_target_counts() {
        let (me, my_ip) = (WireMac([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(10, 0, 0, 1));
        let (it, its_ip) = (WireMac([2, 0, 0, 0, 0, 2]), Ipv4Addr::new(10, 0, 0, 2));
        let request = ArpRepr::request(me, my_ip, its_ip);
        let frame = |r: &ArpRepr| {
            let mut v = Vec::new();
            r.emit(&mut v);
            v
        };
        let reply = request.reply_from(it);
        assert!(is_reply(&frame(&reply), me, my_ip, it, its_ip));
        // The request itself, seen leaving on the same socket.
        assert!(!is_reply(&frame(&request), me, my_ip, it, its_ip));
        // An answer naming another MAC for the target.
        let wrong = request.reply_from(WireMac([2, 0, 0, 0, 0, 9]));
        assert!(!is_reply(&frame(&wrong), me, my_ip, it, its_ip));
        // A reply to somebody else's request.
        let other = ArpRepr::request(WireMac([2, 0, 0, 0, 0, 5]), my_ip, its_ip).reply_from(it);
        assert!(!is_reply(&frame(&other), me, my_ip, it, its_ip));
        assert!(!is_reply(&[0u8; 10], me, my_ip, it, its_ip));
    }
}
