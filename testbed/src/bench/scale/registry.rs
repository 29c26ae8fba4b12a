//! Memory against registry size.
//!
//! One VI, one IP per MAC, every MAC behind the VI's gateway (as an
//! operator's own data center is: seeded from its configuration, not
//! learned). The registry grows through `POST /v1/vis/1/seed` in chunks to
//! each size asked for, and at each size, once the switches hold their
//! flows, the controller's `VmRSS`/`VmHWM` is read and every bridge's flows
//! are counted by Open vSwitch itself.
//!
//! With switches (the default), two testbed PMs run real OVS: `gw`, the
//! VI's gateway (a source check and a forwarding flow per MAC), and `pm1`,
//! a compute host with one VM of the VI (a tunnel flow per MAC, and a GARP
//! and an ARP-responder flow per IP). The controller then also holds what
//! it compiled for each switch. Without switches the same two hosts are
//! configured but none connects: the memory is the registry's (and the
//! store's) alone.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{
    bring_up, check_chunk, flow_count, gateway_vi, ms, round3, seed, wait_flows_settled, Memory,
    RunInfo, Stamp, GATEWAY, VI,
};
use crate::controller::{HostEntry, HostRole};
use crate::scenario::{Harness, ScenarioError};
use crate::{Pm, PmId};

/// How long the flow counts and the FLOW_MOD counter must stay still.
const QUIET: Duration = Duration::from_secs(1);
/// The longest a size may take to be seeded and installed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);
/// The target of issue 4 at 100 000 MACs.
pub const TARGET_MIB: f64 = 200.0;

/// One run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registry sizes (MACs) to measure at, ascending.
    pub sizes: Vec<u32>,
    /// Whether real OVS switches hold the flows.
    pub switches: bool,
    /// Seed rows per request.
    pub chunk: u32,
}

/// One registry size.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub macs: u32,
    /// What the controller's metrics count: `iris_registry_entries`.
    pub registry_macs: f64,
    pub registry_ips: f64,
    pub memory: Memory,
    /// `VmRSS` minus the empty-registry baseline's.
    pub rss_over_baseline_mib: f64,
    /// From the first seed request of this step to the flows settling.
    pub step_ms: f64,
    /// Flows on each bridge, as Open vSwitch counts them.
    pub flows: BTreeMap<String, u64>,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub switches: bool,
    pub chunk: u32,
    /// Before any MAC is seeded (the registry holds only the VM's own
    /// entry when there are switches).
    pub baseline: Point,
    pub points: Vec<Point>,
    pub target_mib: f64,
}

impl Report {
    /// The point at `macs`, if measured.
    pub fn at(&self, macs: u32) -> Option<&Point> {
        self.points.iter().find(|p| p.macs == macs)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "registry scale, {} (chunks of {} rows), {}",
            if self.switches {
                "with 2 real OVS switches (gw, pm1)"
            } else {
                "without switches"
            },
            self.chunk,
            self.run.started_at
        )?;
        writeln!(
            f,
            "{:>8} {:>10} {:>10} {:>12} {:>10}  flows per switch",
            "MACs", "RSS MiB", "HWM MiB", "over base", "step s"
        )?;
        for p in std::iter::once(&self.baseline).chain(&self.points) {
            let flows: Vec<String> = p.flows.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                f,
                "{:>8} {:>10.1} {:>10.1} {:>12.1} {:>10.2}  {}",
                p.macs,
                p.memory.rss_mib,
                p.memory.hwm_mib,
                p.rss_over_baseline_mib,
                p.step_ms / 1e3,
                if flows.is_empty() {
                    "-".into()
                } else {
                    flows.join(" ")
                }
            )?;
        }
        if let Some(p) = self.points.iter().find(|p| p.macs == 100_000) {
            let met = p.memory.rss_mib <= self.target_mib;
            writeln!(
                f,
                "target: <= {} MiB at 100 000 MACs: {} ({:.1} MiB)",
                self.target_mib,
                if met { "met" } else { "MISSED" },
                p.memory.rss_mib
            )?;
        }
        write!(
            f,
            "load before {:?}, after {:?}",
            self.run.load_before, self.run.load_after
        )
    }
}

pub fn check(o: &Options) -> Result<(), String> {
    if o.sizes.is_empty() || o.sizes.windows(2).any(|w| w[0] >= w[1]) {
        return Err("--sizes must be ascending and distinct, e.g. 1000,10000,100000".into());
    }
    check_chunk(o.chunk)
}

/// Runs the measurement on `h`.
pub fn measure(h: &mut Harness, o: &Options) -> Result<Report, ScenarioError> {
    check(o).map_err(ScenarioError::Failed)?;
    let stamp = Stamp::now();
    let pms: Vec<PmId> = if o.switches {
        bring_up(h, 1)?
    } else {
        let mut config = h.config(&[], vec![gateway_vi()])?;
        config.hosts = absent_hosts(h);
        h.start_controller(&config)?;
        Vec::new()
    };
    h.note("controller up; measuring the empty registry");
    let baseline = point(h, &pms, 0, None, Duration::ZERO)?;
    let mut points = Vec::new();
    let mut seeded = 0;
    for &size in &o.sizes {
        let started = Instant::now();
        seed(h.controller()?, VI, seeded, size, o.chunk, GATEWAY)?;
        seeded = size;
        let p = point(h, &pms, size, Some(&baseline.memory), started.elapsed())?;
        h.note(format!(
            "{size} MACs: RSS {:.1} MiB, flows {:?}, {:.1} s",
            p.memory.rss_mib,
            p.flows,
            p.step_ms / 1e3
        ));
        points.push(p);
    }
    Ok(Report {
        run: stamp.finish(),
        switches: o.switches,
        chunk: o.chunk,
        baseline,
        points,
        target_mib: TARGET_MIB,
    })
}

/// The two hosts, configured with OVSDB sockets nobody serves: the
/// controller knows them (the gateway must exist for `behind`) but no
/// switch ever connects.
fn absent_hosts(h: &Harness) -> Vec<HostEntry> {
    [
        (GATEWAY, HostRole::Gateway, 254),
        ("pm1", HostRole::Compute, 1),
    ]
    .into_iter()
    .map(|(name, role, last)| HostEntry {
        name: name.into(),
        underlay_ip: std::net::Ipv4Addr::new(192, 168, 60, last),
        ovsdb: format!("unix:{}", h.file(&format!("{name}-absent.sock")).display()),
        controller: format!("unix:{}", h.file("absent-of.sock").display()),
        role,
    })
    .collect()
}

/// Waits for the switches (if any) to settle, then reads memory, registry
/// size and flow counts. `since_seed` is how long the seed requests took;
/// the step ends when the flows last changed.
fn point(
    h: &mut Harness,
    pms: &[PmId],
    macs: u32,
    baseline: Option<&Memory>,
    since_seed: Duration,
) -> Result<Point, ScenarioError> {
    let bridges: Vec<&Pm> = pms.iter().map(|&p| h.tb.pm(p)).collect();
    let names: Vec<String> = bridges.iter().map(|p| p.name().to_owned()).collect();
    let step = if bridges.is_empty() {
        // Nothing to install: a moment for the allocator to settle.
        std::thread::sleep(Duration::from_millis(500));
        since_seed
    } else {
        let (_, took) = wait_flows_settled(h.controller()?, &bridges, QUIET, SETTLE_TIMEOUT)?;
        since_seed + took
    };
    let bridges: Vec<&Pm> = pms.iter().map(|&p| h.tb.pm(p)).collect();
    let flows = names
        .into_iter()
        .zip(&bridges)
        .map(|(n, pm)| Ok((n, flow_count(pm)?)))
        .collect::<Result<BTreeMap<_, _>, ScenarioError>>()?;
    let c = h.controller()?;
    let memory = Memory::of(c.pid())?;
    let metrics = c.metrics()?;
    let rss_over_baseline_mib = baseline.map_or(0.0, |b| round3(memory.rss_mib - b.rss_mib));
    Ok(Point {
        macs,
        registry_macs: metrics.value("iris_registry_entries{kind=\"mac\"}"),
        registry_ips: metrics.value("iris_registry_entries{kind=\"ip\"}"),
        memory,
        rss_over_baseline_mib,
        step_ms: ms(step),
        flows,
    })
}
