//! Many switches connecting at once.
//!
//! `switches` emulated OpenFlow 1.3 switches (the load generator's
//! [`EmulatedSwitch`]: real TCP, real handshake answers, empty tables) all
//! open their connections to `iris-controller` at the same moment. Each
//! records, from that moment, when its TCP connection was up, when it
//! answered FEATURES_REQUEST, when it answered the controller's flow and
//! group dumps (the initial table dump), and when it answered the first
//! BARRIER (the controller confirming what it sent). The controller's own
//! view is `/healthz`: it counts a switch ready once it has its dump, in
//! the step that reconciles it.
//!
//! The datapath ids may be unknown to the controller (no `[[host]]` has
//! them): it completes the handshake and the dump and then leaves the
//! tables alone, so the run measures the sessions alone. Or they may be
//! known: every switch is a configured host (whose OVSDB never answers, so
//! no port or tunnel is known) and gets the pipeline's skeleton flows and a
//! barrier; the hosts' OVSDB reconnect loops run before the switches
//! connect and are part of the baseline memory.
//!
//! Memory per switch is (`VmRSS` with every switch connected and the
//! controller quiet − `VmRSS` before the first connection) / switches.

use std::fmt;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ofp::framing::Framer;
use ofp::message::ErrorMsg;
use ofp::multipart::MultipartType;
use ofp::{Message, MsgType, OfpMessage};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{ms, round3, Memory, RunInfo, Stamp};
use crate::bench::switch::{EmulatedSwitch, Inbound, PacketInProfile, SwitchSpec};
use crate::bench::{free_port, iris, BenchError};
use crate::controller::ControllerProcess;

/// Whether the controller knows the switches' datapath ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dpids {
    /// No host has them: handshake and dump only.
    Unknown,
    /// Each is a configured host's: the controller also programs it.
    Known,
}

/// One run.
#[derive(Debug, Clone)]
pub struct Options {
    pub switches: u32,
    pub dpids: Dpids,
    pub ports: u16,
    /// The `iris-controller` binary; `None`: `$IRIS_CONTROLLER`, next to
    /// this program, or on PATH.
    pub iris_controller: Option<PathBuf>,
    /// Keep the run directory (configuration and log).
    pub keep: bool,
}

/// What one switch saw, each time since the common start (the first
/// connection attempt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchTimes {
    pub connected: Option<Duration>,
    pub features: Option<Duration>,
    /// Both the flow and the group dump answered.
    pub dumped: Option<Duration>,
    pub barrier: Option<Duration>,
    pub flow_mods: u64,
    pub errors: u64,
}

/// The distribution of one moment over all switches, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Switches that got there.
    pub switches: usize,
    pub first_ms: f64,
    pub median_ms: f64,
    pub last_ms: f64,
}

impl Spread {
    /// `None` when no switch got there.
    pub fn of(mut times: Vec<Duration>) -> Option<Self> {
        times.sort();
        Some(Self {
            switches: times.len(),
            first_ms: ms(*times.first()?),
            median_ms: ms(times[times.len() / 2]),
            last_ms: ms(*times.last()?),
        })
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>5} switches, first {:8.1} ms, median {:8.1} ms, last {:8.1} ms",
            self.switches, self.first_ms, self.median_ms, self.last_ms
        )
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub switches: u32,
    pub dpids: Dpids,
    pub connected: Option<Spread>,
    pub features_answered: Option<Spread>,
    pub dump_answered: Option<Spread>,
    pub barrier_answered: Option<Spread>,
    /// From the first connection attempt to `/healthz` counting every
    /// switch ready.
    pub all_ready_ms: f64,
    pub flow_mods: u64,
    pub errors: u64,
    pub memory_before: Memory,
    pub memory_connected: Memory,
    pub rss_per_switch_kib: f64,
    /// The soft open-file limit the run had.
    pub nofile_limit: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} emulated switches connecting at once ({:?} dpids), {}",
            self.switches, self.dpids, self.run.started_at
        )?;
        let mut line = |what: &str, s: &Option<Spread>| match s {
            Some(s) => writeln!(f, "  {what:<18} {s}"),
            None => writeln!(f, "  {what:<18} none"),
        };
        line("TCP connected", &self.connected)?;
        line("features answered", &self.features_answered)?;
        line("dump answered", &self.dump_answered)?;
        line("barrier answered", &self.barrier_answered)?;
        writeln!(
            f,
            "  all ready (/healthz) {:.1} ms; {} FLOW_MODs, {} errors",
            self.all_ready_ms, self.flow_mods, self.errors
        )?;
        writeln!(
            f,
            "  controller RSS {:.1} MiB before, {:.1} MiB connected: {:.1} KiB per switch",
            self.memory_before.rss_mib, self.memory_connected.rss_mib, self.rss_per_switch_kib
        )?;
        write!(
            f,
            "load before {:?}, after {:?}",
            self.run.load_before, self.run.load_after
        )
    }
}

/// Sockets the run needs besides the switches' own: the controller's
/// API, logs, the runtime.
const SPARE_FDS: u64 = 64;
/// How long the controller must stay quiet before memory is read.
const QUIET: Duration = Duration::from_secs(1);

fn nofile_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0, |(soft, _)| soft)
}

pub fn check(o: &Options) -> Result<(), BenchError> {
    if o.switches == 0 || o.switches > u32::from(u16::MAX) {
        return Err(BenchError::Usage("--switches must be 1 to 65535".into()));
    }
    if o.ports == 0 {
        return Err(BenchError::Usage("--ports must be at least 1".into()));
    }
    let limit = nofile_limit();
    let need = u64::from(o.switches) + SPARE_FDS;
    if limit < need {
        return Err(BenchError::Usage(format!(
            "{} switches need about {need} open files and the limit is {limit}; raise it \
             (ulimit -n {}) and run again",
            o.switches,
            need.next_power_of_two()
        )));
    }
    Ok(())
}

/// The controller's configuration: a loopback listener, and with known
/// dpids one host per switch whose OVSDB socket nobody serves.
fn config_text(dir: &std::path::Path, openflow: SocketAddr, o: &Options) -> String {
    let mut toml = format!(
        "listen = \"{openflow}\"\nplain_openflow = true\napi = \"127.0.0.1:0\"\nstore = \"{}\"\n\n\
         [bridge]\nname = \"br-int\"\ndatapath_type = \"netdev\"\n",
        dir.join("store").display()
    );
    if o.dpids == Dpids::Known {
        for i in 0..o.switches {
            let [_, _, hi, lo] = (i + 1).to_be_bytes();
            let _ = write!(
                toml,
                "\n[[host]]\nname = \"h{i}\"\nunderlay_ip = \"{}\"\nrole = \"compute\"\n\
                 ovsdb = \"unix:{}\"\ndatapath_id = \"{:016x}\"\n",
                Ipv4Addr::new(10, 255, hi, lo),
                dir.join(format!("h{i}-absent.sock")).display(),
                datapath_id(i)
            );
        }
    }
    toml
}

fn datapath_id(i: u32) -> u64 {
    u64::from(i) + 1
}

/// Switches `0..n`, each with `ports` ports (`n` is checked to fit a u16).
fn specs(n: u32, ports: u16) -> Vec<SwitchSpec> {
    (0..n)
        .map(|i| SwitchSpec {
            index: i as u16,
            datapath_id: datapath_id(i),
            ports,
            n_buffers: 0,
        })
        .collect()
}

/// Runs the measurement: starts the controller, connects the switches,
/// stops the controller.
pub fn run(o: &Options) -> Result<Report, BenchError> {
    check(o)?;
    let stamp = Stamp::now();
    let binary = o
        .iris_controller
        .clone()
        .or_else(iris::binary)
        .ok_or_else(|| {
            BenchError::Host(
                "no iris-controller binary: build it (cargo build --release -p iris-controller) \
             or name it with --iris-controller"
                    .into(),
            )
        })?;
    let dir = tempfile::Builder::new()
        .prefix("iris-scale-")
        .tempdir()
        .map_err(|e| BenchError::Testbed(crate::Error::io("creating the run directory", e)))?;
    let openflow = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let config = dir.path().join("iris.toml");
    std::fs::write(&config, config_text(dir.path(), openflow, o))
        .map_err(|e| BenchError::io(&config, e))?;
    let log = dir.path().join("controller.log");
    let mut controller = ControllerProcess::start(&binary, &config, &log)?;
    let outcome = drive(o, openflow, &mut controller);
    let stopped = controller.stop(crate::STOP_GRACE);
    if outcome.is_err() || o.keep {
        let kept = dir.keep();
        eprintln!(
            "bench scale switches: run directory kept at {}",
            kept.display()
        );
    }
    let (times, all_ready, memory_before, memory_connected) = outcome?;
    stopped?;
    let spread =
        |f: fn(&SwitchTimes) -> Option<Duration>| Spread::of(times.iter().filter_map(f).collect());
    let rss_per_switch_kib =
        round3((memory_connected.rss_mib - memory_before.rss_mib) * 1024.0 / f64::from(o.switches));
    Ok(Report {
        run: stamp.finish(),
        switches: o.switches,
        dpids: o.dpids,
        connected: spread(|t| t.connected),
        features_answered: spread(|t| t.features),
        dump_answered: spread(|t| t.dumped),
        barrier_answered: spread(|t| t.barrier),
        all_ready_ms: ms(all_ready),
        flow_mods: times.iter().map(|t| t.flow_mods).sum(),
        errors: times.iter().map(|t| t.errors).sum(),
        memory_before,
        memory_connected,
        rss_per_switch_kib,
        nofile_limit: nofile_limit(),
    })
}

type Driven = (Vec<SwitchTimes>, Duration, Memory, Memory);

/// Counts of switches past each step, for the coordinator.
#[derive(Debug, Default)]
struct Progress {
    dumped: AtomicUsize,
    barriers: AtomicUsize,
    /// Messages received by all switches: the controller is quiet when
    /// this stops moving.
    messages: AtomicUsize,
}

fn drive(
    o: &Options,
    openflow: SocketAddr,
    controller: &mut ControllerProcess,
) -> Result<Driven, BenchError> {
    // Let the controller finish starting (with known dpids, every host's
    // OVSDB task makes its first attempt) before the baseline is read.
    std::thread::sleep(QUIET);
    controller.ensure_running()?;
    let memory_before = Memory::of(controller.pid())?;
    let n = o.switches as usize;
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let t0 = Instant::now();
    let specs = specs(o.switches, o.ports);
    let switches = {
        let progress = progress.clone();
        std::thread::Builder::new()
            .name("switches".into())
            .spawn(move || connect_all(openflow, t0, specs, stop_rx, progress))
            .map_err(|e| BenchError::Internal(format!("cannot start the switch thread: {e}")))?
    };
    let result = coordinate(o, controller, t0, &progress, n);
    let _ = stop_tx.send(true);
    let times = switches
        .join()
        .map_err(|_| BenchError::Internal("the switch thread panicked".into()))??;
    let (all_ready, memory_connected) = result?;
    Ok((times, all_ready, memory_before, memory_connected))
}

/// Waits until the controller counts every switch ready, every switch
/// answered its dumps (and its barrier, with known dpids), and the
/// controller fell quiet; then reads its memory.
fn coordinate(
    o: &Options,
    controller: &mut ControllerProcess,
    t0: Instant,
    progress: &Progress,
    n: usize,
) -> Result<(Duration, Memory), BenchError> {
    let timeout = Duration::from_secs(60) + Duration::from_millis(100) * o.switches;
    let mut all_ready = None;
    let mut last_messages = usize::MAX;
    let mut quiet_since = Instant::now();
    loop {
        controller.ensure_running()?;
        let now = Instant::now();
        if all_ready.is_none() {
            let h = controller
                .get_json("/healthz")
                .map_err(|e| BenchError::Controller(e.to_string()))?;
            if h["switches_ready"] == n as u64 {
                all_ready = Some(now - t0);
            }
        }
        let messages = progress.messages.load(Ordering::Relaxed);
        if messages != last_messages {
            last_messages = messages;
            quiet_since = now;
        }
        let dumped = progress.dumped.load(Ordering::Relaxed) == n;
        let programmed =
            o.dpids == Dpids::Unknown || progress.barriers.load(Ordering::Relaxed) == n;
        if let Some(ready) = all_ready {
            if dumped && programmed && now - quiet_since >= QUIET {
                return Ok((ready, Memory::of(controller.pid())?));
            }
        }
        if now - t0 > timeout {
            return Err(BenchError::Controller(format!(
                "after {:?}: ready {all_ready:?}, {} of {n} dumps and {} barriers answered",
                timeout,
                progress.dumped.load(Ordering::Relaxed),
                progress.barriers.load(Ordering::Relaxed)
            )));
        }
        std::thread::sleep(Duration::from_millis(if all_ready.is_none() {
            5
        } else {
            50
        }));
    }
}

/// Runs every switch on one thread's runtime until `stop`.
fn connect_all(
    addr: SocketAddr,
    t0: Instant,
    specs: Vec<SwitchSpec>,
    stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> Result<Vec<SwitchTimes>, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Internal(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for spec in specs {
            let index = spec.index;
            let sw = EmulatedSwitch::new(spec, quiet_profile());
            let (stop, progress) = (stop.clone(), progress.clone());
            tasks.spawn(async move { (index, run_switch(addr, t0, sw, stop, progress).await) });
        }
        let mut times = Vec::with_capacity(tasks.len());
        while let Some(joined) = tasks.join_next().await {
            let (index, r) =
                joined.map_err(|e| BenchError::Internal(format!("a switch task failed: {e}")))?;
            times.push(r.map_err(|e| e.at_switch(index))?);
        }
        Ok(times)
    })
}

/// The switches send no PacketIn; the profile is never used.
fn quiet_profile() -> PacketInProfile {
    PacketInProfile {
        reason: ofp::message::PacketInReason::NoMatch,
        table_id: 0,
        cookie: 0,
        forwarded: false,
    }
}

/// One switch: connects, answers everything, records when each step of
/// its setup was answered, until `stop`.
async fn run_switch(
    addr: SocketAddr,
    t0: Instant,
    mut sw: EmulatedSwitch,
    mut stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> Result<SwitchTimes, BenchError> {
    let mut t = SwitchTimes::default();
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| BenchError::Controller(format!("cannot connect to {addr}: {e}")))?;
    t.connected = Some(t0.elapsed());
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut out = Vec::with_capacity(4096);
    let mut rbuf = vec![0u8; 1 << 16];
    let mut framer = Framer::default();
    let (mut flows_dumped, mut groups_dumped) = (false, false);
    sw.hello(&mut out);
    loop {
        if !out.is_empty() {
            wr.write_all(&out).await.map_err(closed)?;
            out.clear();
            // Stamped once the answer is on its way.
            let now = t0.elapsed();
            if t.dumped.is_none() && flows_dumped && groups_dumped {
                t.dumped = Some(now);
                progress.dumped.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            r = rd.read(&mut rbuf) => {
                let n = r.map_err(closed)?;
                if n == 0 {
                    return Err(BenchError::Controller("the controller closed the connection".into()));
                }
                framer.extend(&rbuf[..n]);
                while let Some(msg) = framer.next_message().map_err(|e| {
                    BenchError::Controller(format!("the stream from the controller is out of sync: {e}"))
                })? {
                    progress.messages.fetch_add(1, Ordering::Relaxed);
                    let step = Step::of(msg);
                    match sw.handle(msg, &mut out) {
                        Ok(Inbound::Answer(_)) => t.flow_mods += 1,
                        Ok(Inbound::Error(_)) => t.errors += 1,
                        Ok(Inbound::Other(_)) => {}
                        Err(e) => {
                            t.errors += 1;
                            let xid = msg.get(4..8).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                            OfpMessage::new(xid, Message::Error(ErrorMsg::for_decode_error(&e, msg)))
                                .emit(&mut out);
                            continue;
                        }
                    }
                    let now = t0.elapsed();
                    match step {
                        Some(Step::Features) => {
                            t.features.get_or_insert(now);
                        }
                        Some(Step::FlowDump) => flows_dumped = true,
                        Some(Step::GroupDump) => groups_dumped = true,
                        Some(Step::Barrier) if t.barrier.is_none() => {
                            t.barrier = Some(now);
                            progress.barriers.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Step::Barrier) | None => {}
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    Ok(t)
}

/// The requests of the controller whose answers mark a step of the setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Features,
    FlowDump,
    GroupDump,
    Barrier,
}

impl Step {
    fn of(msg: &[u8]) -> Option<Self> {
        let header = ofp::header::HeaderView::new_checked(msg).ok()?;
        match header.msg_type() {
            MsgType::FeaturesRequest => Some(Self::Features),
            MsgType::BarrierRequest => Some(Self::Barrier),
            MsgType::MultipartRequest => {
                let kind = msg.get(8..10).map(|b| u16::from_be_bytes([b[0], b[1]]))?;
                match MultipartType::from(kind) {
                    MultipartType::Flow => Some(Self::FlowDump),
                    MultipartType::GroupDesc => Some(Self::GroupDump),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn closed(e: std::io::Error) -> BenchError {
    BenchError::Controller(format!("the connection to the controller failed: {e}"))
}

#[cfg(test)]
mod tests;
