//! Benchmarks of the Iris data plane on the emulated testbed: real
//! namespaces, real OVS userspace datapaths, the real `iris-controller`.
//!
//! - [`goodput`] (`iris-testbed bench goodput`): TCP goodput between two
//!   VMs on different PMs through Iris's GRE mesh, against the same two VMs
//!   on one PM's bridge under Iris and on a plain `actions=NORMAL` bridge,
//!   with OVS's userspace TSO off or on.
//! - [`arp`] (`iris-testbed bench arp`): the time to answer an ARP request
//!   in Iris's datapath responder, against a plain bridge where the target
//!   VM answers itself, with the controller's PacketIn counter proving the
//!   controller took no part.
//! - [`iperf`]: reading `iperf3 -J` reports.
//!
//! Each runs on a [`Harness`](crate::scenario::Harness), so the testbed
//! and the controller are torn down whatever happens.

pub mod arp;
pub mod goodput;
pub mod intercloud;
pub mod iperf;

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::bench::report::{cpu_ticks, load_average, rfc3339};
use crate::scenario::{Harness, ScenarioError};
use crate::{Iface, PmId, VmId};

/// When a benchmark ran and how busy the machine was around it.
#[derive(Debug, Clone, Serialize)]
pub struct Conditions {
    pub started_at: String,
    /// The 1, 5 and 15 minute load averages before and after.
    pub load_average_before: Option<[f64; 3]>,
    pub load_average_after: Option<[f64; 3]>,
}

impl Conditions {
    /// The conditions now, before a run.
    pub fn before() -> Self {
        Self {
            started_at: rfc3339(SystemTime::now()),
            load_average_before: load_average(),
            load_average_after: None,
        }
    }

    /// Completes them once the run ended.
    pub fn after(mut self) -> Self {
        self.load_average_after = load_average();
        self
    }
}

/// OVS coverage counters (`ovs-appctl coverage/show` totals) by event name.
pub type Coverage = BTreeMap<String, u64>;

/// The totals of `ovs-appctl coverage/show`, by event name.
pub fn coverage_totals(text: &str) -> Coverage {
    text.lines()
        .filter_map(|line| {
            let (head, total) = line.rsplit_once("total:")?;
            let name = head.split_whitespace().next()?;
            Some((name.to_owned(), total.trim().parse().ok()?))
        })
        .collect()
}

/// The coverage counters of `pms` added up, by event name.
pub fn coverage(h: &Harness, pms: &[PmId]) -> Result<Coverage, ScenarioError> {
    let mut sum = BTreeMap::new();
    for &pm in pms {
        for (name, n) in coverage_totals(&h.tb.pm(pm).appctl(&["coverage/show"])?) {
            *sum.entry(name).or_insert(0) += n;
        }
    }
    Ok(sum)
}

/// The events of `after` that grew since `before` and whose names say they
/// count drops or segmentation, with how much each grew.
pub fn drops_gained(before: &Coverage, after: &Coverage) -> Coverage {
    after
        .iter()
        .filter(|(name, _)| {
            ["drop", "tso", "gso", "seg"]
                .iter()
                .any(|w| name.contains(w))
        })
        .filter_map(|(name, &n)| {
            let gained = n.saturating_sub(before.get(name).copied().unwrap_or(0));
            (gained > 0).then(|| (name.clone(), gained))
        })
        .collect()
}

/// Linux's clock tick of `/proc` CPU times (USER_HZ).
const USER_HZ: f64 = 100.0;

/// CPU time of the PMs' vswitchds and of the whole machine over a window.
#[derive(Debug)]
pub struct CpuWatch {
    started: Instant,
    vswitchd: Vec<(String, u32, Option<u64>)>,
    machine: Option<(u64, u64)>,
}

/// Where the CPU went during a window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Each PM's ovs-vswitchd, in percent of one core.
    pub vswitchd_percent: BTreeMap<String, f64>,
    /// Every core of the machine busy, in percent of all of them.
    pub machine_busy_percent: Option<f64>,
}

impl CpuWatch {
    /// Starts watching the vswitchds of `pms`.
    pub fn start(h: &Harness, pms: &[PmId]) -> Self {
        let vswitchd = pms
            .iter()
            .filter_map(|&pm| {
                let pm = h.tb.pm(pm);
                let pid = pm.ovs().vswitchd_pid()?;
                Some((pm.name().to_owned(), pid, cpu_ticks(&stat_of(pid))))
            })
            .collect();
        Self {
            started: Instant::now(),
            vswitchd,
            machine: machine_ticks(),
        }
    }

    pub fn finish(self) -> CpuUse {
        let wall = self.started.elapsed().as_secs_f64();
        let vswitchd_percent = self
            .vswitchd
            .into_iter()
            .filter_map(|(name, pid, before)| {
                let ticks = cpu_ticks(&stat_of(pid))?.checked_sub(before?)?;
                Some((name, round1(100.0 * ticks as f64 / USER_HZ / wall)))
            })
            .collect();
        let machine_busy_percent =
            self.machine
                .zip(machine_ticks())
                .and_then(|((busy0, all0), (busy1, all1))| {
                    let all = all1.checked_sub(all0).filter(|&d| d > 0)?;
                    Some(round1(
                        100.0 * busy1.saturating_sub(busy0) as f64 / all as f64,
                    ))
                });
        CpuUse {
            vswitchd_percent,
            machine_busy_percent,
        }
    }
}

fn stat_of(pid: u32) -> String {
    format!("/proc/{pid}/stat")
}

/// (busy, all) ticks of every core from `/proc/stat`'s `cpu` line; idle
/// and iowait are the ticks not busy.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    machine_ticks_of(&text)
}

fn machine_ticks_of(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice,
    // already counted in user and nice].
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle, all))
}

/// A figure rounded to one decimal (percentages).
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A figure rounded to three decimals (Gb/s to Mb/s, ratios).
fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// Both ends of `vm`'s link to its PM's bridge: the guest's interface and
/// the port OVS reads with AF_PACKET.
pub fn vm_link_ends(h: &Harness, vm: VmId) -> [Iface; 2] {
    let v = h.tb.vm(vm);
    let pm = h.tb.pm(v.pm());
    [
        Iface::new(v.interface(), v.netns().place()),
        Iface::new(v.port(), pm.netns().place()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of `ovs-appctl coverage/show` from an OVS 3.1 vswitchd.
    const COVERAGE: &str = "\
Event coverage, avg rate over last: 5 seconds, last minute, last hour,  hash=5a2f29b5:
bridge_reconfigure         0.0/sec     0.000/sec        0.0011/sec   total: 4
netdev_push_header_drops  12.4/sec     1.033/sec        0.0172/sec   total: 62
datapath_drop_tunnel_pop_error   0.0/sec     0.000/sec        0.0000/sec   total: 3
netdev_sent              188.0/sec    15.667/sec        0.2611/sec   total: 941
44 events never hit
";

    #[test]
    fn machine_ticks_leave_out_idle_iowait_and_guest_time() {
        let stat = "cpu  100 5 50 800 20 3 2 0 40 0\ncpu0 50 2 25 400 10 1 1 0 20 0\n";
        assert_eq!(machine_ticks_of(stat), Some((160, 980)));
        assert_eq!(machine_ticks_of("intr 1 2 3\n"), None);
    }

    #[test]
    fn coverage_totals_are_read_by_name() {
        let t = coverage_totals(COVERAGE);
        assert_eq!(t.len(), 4);
        assert_eq!(t["netdev_push_header_drops"], 62);
        assert_eq!(t["netdev_sent"], 941);
    }

    #[test]
    fn only_drop_and_segmentation_events_that_grew_are_kept() {
        let before = coverage_totals(COVERAGE);
        let mut after = before.clone();
        *after.get_mut("netdev_push_header_drops").unwrap() += 10;
        *after.get_mut("netdev_sent").unwrap() += 500;
        after.insert("netdev_soft_seg_good".into(), 7);
        let gained = drops_gained(&before, &after);
        assert_eq!(
            gained.into_iter().collect::<Vec<_>>(),
            [
                ("netdev_push_header_drops".to_owned(), 10),
                ("netdev_soft_seg_good".to_owned(), 7)
            ]
        );
    }
}
