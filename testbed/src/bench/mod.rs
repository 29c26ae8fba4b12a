//! `iris-testbed bench controller`: a cbench-style OpenFlow 1.3 load
//! generator. N emulated switches connect to a controller the benchmark
//! starts itself, finish the handshake, then send PacketIns; the run counts
//! what comes back and how fast.
//!
//! - [`traffic`]: the frames (cbench's unicast learning load, GARPs, ARP
//!   requests) and the host addresses in them.
//! - [`switch`]: one emulated switch without I/O: handshake answers,
//!   PacketIn encoding, and the keys that tie an answer to a PacketIn.
//! - [`load`]: the window of unanswered PacketIns, attribution, counters
//!   and the latency histogram of one switch.
//! - [`driver`]: tokio tasks and the phases of a run (setup, warm-up,
//!   measurement, drain).
//! - [`target`]: the controllers, how each is installed, configured and
//!   started.
//! - [`report`]: the figures, as text or one JSON object.
//!
//! [`scale`] (`iris-testbed bench scale`) measures how the controller
//! grows: registry size, restarts with many flows, many switches.
//!
//! [`migration`] (`iris-testbed bench migration --peer ovn`) runs real
//! QEMU live migrations under Iris and under OVN, alternating.
//!
//! [`moves`] is another benchmark: live migrations at once on the testbed,
//! with the real controller (`iris-testbed bench moves`).

pub mod driver;
pub mod iris;
pub mod load;
pub mod migration;
pub mod moves;
pub mod report;
pub mod scale;
pub mod switch;
pub mod target;
pub mod traffic;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use report::Report;
pub use target::Target;

use driver::{drive, Plan, Watch};
use load::Load;
use switch::{EmulatedSwitch, SwitchSpec};
use traffic::{Traffic, MAX_MACS, MAX_SWITCHES};

/// What the switches offer the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Frames from hosts the controller has to learn (cbench's load).
    Learning,
    /// ARP requests for addresses the controller knows.
    Arp,
}

/// How PacketIns are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Up to `window` unanswered PacketIns per switch: the pipe stays full.
    Throughput,
    /// One PacketIn at a time per switch: response times without queueing.
    Latency,
}

/// One benchmark run.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    pub switches: u32,
    /// Hosts per switch.
    pub macs: u32,
    /// Ports per switch the hosts are spread over.
    pub ports: u16,
    pub mode: Mode,
    pub workload: Workload,
    /// Unanswered PacketIns per switch in throughput mode; `None`: 1024
    /// across all switches, at least 1 each.
    pub window: Option<u32>,
    /// cbench-style buffered PacketIns (the switch claims buffers and the
    /// controller may answer with a buffer id instead of the frame).
    pub buffered: bool,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long a PacketIn may wait for its answer before it is given up.
    pub timeout: Duration,
    /// Where the Python peers' venv is kept.
    pub cache: PathBuf,
    /// The `iris-controller` binary; `None`: `$IRIS_CONTROLLER`, next to
    /// this program, or on PATH.
    pub iris_controller: Option<PathBuf>,
    /// Keep the run directory (configuration and logs) after the run.
    pub keep: bool,
}

/// Everything that can stop a benchmark, by who has to act.
#[derive(Debug)]
pub enum BenchError {
    /// The caller asked for a run that cannot be made.
    Usage(String),
    /// The host lacks something (a peer that could not be installed).
    Host(String),
    /// Starting or stopping a process, or the run directory.
    Testbed(crate::Error),
    /// The controller misbehaved: died, closed a connection, never finished
    /// the handshake, sent a stream that does not frame.
    Controller(String),
    /// The same, on one switch's connection.
    AtSwitch { switch: u16, error: Box<BenchError> },
    /// A bug in the benchmark itself.
    Internal(String),
    /// SIGINT or SIGTERM: the run was stopped.
    Interrupted,
}

impl BenchError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Testbed(crate::Error::io_at("writing", path, e))
    }

    fn at_switch(self, switch: u16) -> Self {
        Self::AtSwitch {
            switch,
            error: Box::new(self),
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) => write!(f, "invalid benchmark: {m}"),
            Self::Host(m) => write!(f, "{m}"),
            Self::Testbed(e) => write!(f, "{e}"),
            Self::Controller(m) => write!(f, "the controller misbehaved: {m}"),
            Self::AtSwitch { switch, error } => write!(f, "switch {switch}: {error}"),
            Self::Internal(m) => write!(f, "benchmark bug: {m}"),
            Self::Interrupted => write!(f, "interrupted; the controller was stopped"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<crate::Error> for BenchError {
    fn from(e: crate::Error) -> Self {
        Self::Testbed(e)
    }
}

/// The default cache of the Python peers: `$IRIS_BENCH_CACHE`, else
/// `$XDG_CACHE_HOME/iris-bench`, else `~/.cache/iris-bench`.
pub fn default_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("IRIS_BENCH_CACHE") {
        return d.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("iris-bench")
}

/// A loopback TCP port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16, BenchError> {
    crate::ports::free_port(Ipv4Addr::LOCALHOST.into()).map_err(BenchError::Testbed)
}

impl Options {
    fn check(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Usage(m));
        if self.switches == 0 || self.switches > MAX_SWITCHES {
            return bad(format!("--switches must be 1 to {MAX_SWITCHES}"));
        }
        if self.macs == 0 || self.macs > MAX_MACS {
            return bad(format!("--macs must be 1 to {MAX_MACS}"));
        }
        if self.ports < 2 {
            return bad("--ports must be at least 2, so hosts can move".into());
        }
        if self.duration.is_zero() {
            return bad("--duration must be more than 0".into());
        }
        if let Some(max) = self.target.max_switches() {
            if self.switches > max {
                return bad(format!(
                    "{} serves at most {max} switches (a limit built into it); \
                     ask for {max} or fewer",
                    self.target
                ));
            }
        }
        Ok(())
    }

    /// Unanswered PacketIns allowed per switch.
    pub fn window(&self) -> u32 {
        match self.mode {
            Mode::Latency => 1,
            Mode::Throughput => self
                .window
                .unwrap_or((1024 / self.switches).max(1))
                .clamp(1, self.macs),
        }
    }
}

/// Watches the controller process and reads CPU time at the boundaries.
struct ProcessWatch<'a> {
    process: &'a mut crate::Process,
    /// Iris's API, asked whether it knows every switch and VM port.
    api: Option<SocketAddr>,
    switches: usize,
    ports: usize,
    marks: Vec<report::Mark>,
}

impl Watch for ProcessWatch<'_> {
    fn alive(&mut self) -> Result<(), BenchError> {
        self.process.ensure_running().map_err(|e| {
            BenchError::Controller(format!("the controller exited during the run: {e}"))
        })
    }

    fn ready(&mut self) -> Result<(), String> {
        match self.api {
            Some(api) => iris::ready(api, self.switches, self.ports),
            None => Ok(()),
        }
    }

    fn mark(&mut self) {
        self.marks.push(report::Mark {
            at: Instant::now(),
            controller: report::cpu_ticks(&format!("/proc/{}/stat", self.process.pid())),
            generator: report::cpu_ticks("/proc/self/stat"),
        });
    }
}

/// Runs one benchmark: starts the controller, drives the switches through
/// setup, warm-up and measurement, stops the controller, reports.
pub fn run(options: &Options) -> Result<Report, BenchError> {
    options.check()?;
    let started_at = std::time::SystemTime::now();
    let load_before = report::load_average();
    let dir = tempfile::Builder::new()
        .prefix("iris-bench-")
        .tempdir()
        .map_err(|e| BenchError::Testbed(crate::Error::io("creating the run directory", e)))?;
    let specs: Vec<SwitchSpec> = (0..options.switches)
        .map(|i| SwitchSpec {
            // Checked against MAX_SWITCHES above.
            index: i as u16,
            datapath_id: u64::from(i) + 1,
            ports: options.ports,
            n_buffers: if options.buffered { options.macs } else { 0 },
        })
        .collect();
    let openflow = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let env = target::RunEnv {
        dir: dir.path(),
        openflow,
        switches: &specs,
        macs: options.macs,
        workload: options.workload,
        cache: &options.cache,
        iris_controller: options.iris_controller.as_deref(),
    };
    options.target.ensure_installed(&env)?;
    let mut running = options.target.start(&env)?;

    let (frames, vlan, profile) = options.target.packet_ins(options.workload);
    let window = options.window();
    let switches = specs
        .iter()
        .map(|spec| {
            let traffic = Traffic {
                kind: frames,
                switch: spec.index,
                macs: options.macs,
                ports: options.ports,
                vlan,
            };
            (
                EmulatedSwitch::new(spec.clone(), profile),
                Load::new(
                    traffic,
                    window,
                    options.buffered,
                    profile.forwarded,
                    options.timeout,
                ),
            )
        })
        .collect();
    let plan = Plan {
        addr: openflow,
        warmup: options.warmup,
        duration: options.duration,
        // A minute, and more for many switches: each is handshaken and
        // programmed, and Faucet parses a datapath per switch first.
        setup_timeout: Duration::from_secs(60) + Duration::from_secs(1) * options.switches,
        settle: Duration::from_millis(500),
        // ARP's steady state is answering: the requesters' first frames
        // are learned (and their flows installed) before it is measured.
        warm_until_no_flow_mods: options.workload == Workload::Arp,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Internal(format!("cannot start the runtime: {e}")))?;
    let mut watch = ProcessWatch {
        process: &mut running.process,
        api: running.api,
        switches: specs.len(),
        ports: usize::from(options.ports),
        marks: Vec::new(),
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = drive(&plan, switches, &mut watch) => r,
            e = driver::interrupted() => Err(e),
        }
    });
    let marks = std::mem::take(&mut watch.marks);
    let log = running.process.output_path().map(Path::to_path_buf);
    let stopped = running.process.stop(crate::STOP_GRACE);
    let (results, timing) = match outcome {
        Ok(r) => r,
        Err(e) => {
            let kept = dir.keep();
            eprintln!(
                "iris-testbed bench: the run directory with the controller's log is kept at {}{}",
                kept.display(),
                log.map(|l| format!(" (log: {})", l.display()))
                    .unwrap_or_default()
            );
            return Err(e);
        }
    };
    stopped?;
    if options.keep {
        let kept = dir.keep();
        eprintln!(
            "iris-testbed bench: run directory kept at {}",
            kept.display()
        );
    }
    Ok(Report::new(report::Inputs {
        options,
        window,
        frames,
        controller_version: running.version,
        results: &results,
        timing: &timing,
        marks: &marks,
        started_at,
        load_before,
        load_after: report::load_average(),
    }))
}
