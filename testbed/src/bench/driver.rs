//! Moving the bytes: one tokio task per emulated switch over a TCP
//! connection to the controller, and the coordinator that takes them all
//! through the phases of a run together.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ofp::framing::Framer;
use ofp::message::ErrorMsg;
use ofp::{ErrorCode, Message, MsgType, OfpMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::load::{new_histogram, Counts, Load};
use super::switch::{AnswerKind, EmulatedSwitch, Inbound};
use super::BenchError;

/// Where the run stands; every switch task follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting and answering the controller's handshake; no PacketIns.
    Setup,
    /// PacketIns flow; `measuring` says whether they count.
    Load {
        measuring: bool,
    },
    /// No new PacketIns; answers still arriving are not counted.
    Drain,
    Stop,
}

impl Phase {
    fn measuring(self) -> bool {
        matches!(self, Self::Load { measuring: true })
    }
}

/// What the switch tasks tell the coordinator while they run.
#[derive(Debug)]
struct Shared {
    start: Instant,
    /// Switches whose FEATURES_REPLY went out.
    ready: AtomicUsize,
    /// When (ns since `start`) any switch last received something other
    /// than a keepalive.
    last_rx_ns: AtomicU64,
    /// When (ns since `start`) any switch last received a FLOW_MOD.
    last_flow_mod_ns: AtomicU64,
}

impl Shared {
    fn stamp(&self, at: &AtomicU64, now: Instant) {
        let ns = now.saturating_duration_since(self.start).as_nanos();
        at.store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn since(&self, at: &AtomicU64, now: Instant) -> Duration {
        let last = Duration::from_nanos(at.load(Ordering::Relaxed));
        now.saturating_duration_since(self.start + last)
    }

    fn touch(&self, now: Instant) {
        self.stamp(&self.last_rx_ns, now);
    }

    fn quiet_for(&self, now: Instant) -> Duration {
        self.since(&self.last_rx_ns, now)
    }
}

/// What a switch saw before the load started: the controller's setup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupCounts {
    pub messages: u64,
    pub flow_mods_and_packet_outs: u64,
    pub errors: u64,
}

impl SetupCounts {
    pub fn add(&mut self, o: &SetupCounts) {
        self.messages += o.messages;
        self.flow_mods_and_packet_outs += o.flow_mods_and_packet_outs;
        self.errors += o.errors;
    }
}

/// One switch's results.
#[derive(Debug)]
pub struct SwitchResult {
    pub counts: Counts,
    pub latency: Histogram<u64>,
    pub setup: SetupCounts,
    /// The first OFPT_ERROR the controller sent, for the report.
    pub first_error: Option<ErrorCode>,
}

/// The timings of a run, each phase after the one before.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Until every switch finished its handshake and the controller fell
    /// quiet.
    pub setup: Duration,
    /// As it really was (longer than asked when it waited for the flows).
    pub warmup: Duration,
    /// The measurement window as it really was.
    pub measured: Duration,
}

/// What the coordinator needs from the world around it while it waits.
pub trait Watch {
    /// An error when the controller died.
    fn alive(&mut self) -> Result<(), BenchError>;
    /// Whether the controller says it is ready for load (every switch
    /// known, say), once the switches finished their handshakes; the text
    /// says what is still missing.
    fn ready(&mut self) -> Result<(), String>;
    /// Called at each measurement boundary (start, then end), e.g. to read
    /// the controller's CPU time.
    fn mark(&mut self);
}

/// The run's shape, as the driver needs it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub warmup: Duration,
    pub duration: Duration,
    /// Longest wait for all switches to finish their handshakes.
    pub setup_timeout: Duration,
    /// How long the controller must say nothing before the load starts.
    pub settle: Duration,
    /// Whether the warm-up also lasts until no FLOW_MOD has come for
    /// `settle` (bounded by `setup_timeout`): for loads whose steady state
    /// installs nothing, once what the first frames taught is installed.
    pub warm_until_no_flow_mods: bool,
}

/// Runs the switches against the controller through every phase.
pub async fn drive(
    plan: &Plan,
    switches: Vec<(EmulatedSwitch, Load)>,
    watch: &mut dyn Watch,
) -> Result<(Vec<SwitchResult>, Timing), BenchError> {
    let n = switches.len();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ready: AtomicUsize::new(0),
        last_rx_ns: AtomicU64::new(0),
        last_flow_mod_ns: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let mut tasks = JoinSet::new();
    for (sw, load) in switches {
        let index = sw.spec().index;
        let (shared, phase, addr) = (shared.clone(), phase_rx.clone(), plan.addr);
        let deadline = Instant::now() + plan.setup_timeout;
        tasks.spawn(async move {
            run_switch(addr, deadline, sw, load, phase, shared)
                .await
                .map_err(|e| e.at_switch(index))
        });
    }

    let t0 = Instant::now();
    let poll = Duration::from_millis(20);
    let mut asked: Option<Instant> = None;
    let mut missing = String::from("the controller never stopped sending for long enough");
    // Setup: every handshake done, the controller ready by its own account,
    // then quiet for `settle`.
    loop {
        watch.alive()?;
        check_tasks(&mut tasks)?;
        let now = Instant::now();
        let ready = shared.ready.load(Ordering::Relaxed);
        if ready == n
            && shared.quiet_for(now) >= plan.settle
            && asked.is_none_or(|a| now - a >= Duration::from_millis(250))
        {
            asked = Some(now);
            match watch.ready() {
                Ok(()) if shared.quiet_for(Instant::now()) >= plan.settle => break,
                Ok(()) => {}
                Err(m) => missing = m,
            }
        }
        if now - t0 > plan.setup_timeout {
            return Err(BenchError::Controller(if ready == n {
                format!(
                    "after {:?} every switch finished the handshake but {missing}",
                    plan.setup_timeout
                )
            } else {
                format!(
                    "after {:?}, {ready} of {n} switches finished the handshake",
                    plan.setup_timeout
                )
            }));
        }
        tokio::time::sleep(poll).await;
    }
    let setup = t0.elapsed();

    let _ = phase_tx.send(Phase::Load { measuring: false });
    let w0 = Instant::now();
    sleep_watching(plan.warmup, watch, &mut tasks).await?;
    if plan.warm_until_no_flow_mods {
        while shared.since(&shared.last_flow_mod_ns, Instant::now()) < plan.settle
            && w0.elapsed() < plan.setup_timeout
        {
            sleep_watching(Duration::from_millis(50), watch, &mut tasks).await?;
        }
    }
    let warmup = w0.elapsed();
    watch.mark();
    let m0 = Instant::now();
    let _ = phase_tx.send(Phase::Load { measuring: true });
    sleep_watching(plan.duration, watch, &mut tasks).await?;
    let _ = phase_tx.send(Phase::Drain);
    let measured = m0.elapsed();
    watch.mark();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = phase_tx.send(Phase::Stop);

    let mut results = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        results.push(
            joined.map_err(|e| BenchError::Internal(format!("a switch task failed: {e}")))??,
        );
    }
    Ok((
        results,
        Timing {
            setup,
            warmup,
            measured,
        },
    ))
}

/// An error once SIGINT or SIGTERM arrives, so the run stops and its
/// controller and helpers are stopped with it.
pub async fn interrupted() -> BenchError {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    BenchError::Interrupted
}

/// Sleeps `d`, failing early if the controller or a switch task fails.
async fn sleep_watching(
    d: Duration,
    watch: &mut dyn Watch,
    tasks: &mut JoinSet<Result<SwitchResult, BenchError>>,
) -> Result<(), BenchError> {
    let end = Instant::now() + d;
    loop {
        watch.alive()?;
        check_tasks(tasks)?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        tokio::time::sleep((end - now).min(Duration::from_millis(50))).await;
    }
}

/// A switch task that ended before `Stop` ended with an error (a closed
/// connection, a stream out of sync): the run cannot go on.
fn check_tasks(tasks: &mut JoinSet<Result<SwitchResult, BenchError>>) -> Result<(), BenchError> {
    match tasks.try_join_next() {
        None => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Ok(Ok(_))) => Err(BenchError::Internal(
            "a switch stopped before the run ended".into(),
        )),
        Some(Err(e)) => Err(BenchError::Internal(format!("a switch task failed: {e}"))),
    }
}

async fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, BenchError> {
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            // Not listening yet: the controller is still starting.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(BenchError::Controller(format!(
                    "cannot connect to {addr}: {e}"
                )))
            }
        }
    }
}

async fn run_switch(
    addr: SocketAddr,
    deadline: Instant,
    mut sw: EmulatedSwitch,
    mut load: Load,
    mut phase_rx: watch::Receiver<Phase>,
    shared: Arc<Shared>,
) -> Result<SwitchResult, BenchError> {
    let stream = connect(addr, deadline).await?;
    stream
        .set_nodelay(true)
        .map_err(|e| BenchError::Controller(format!("setting TCP_NODELAY: {e}")))?;
    let (mut rd, mut wr) = stream.into_split();
    let mut out = Vec::with_capacity(1 << 16);
    let mut rbuf = vec![0u8; 1 << 16];
    let mut framer = Framer::default();
    let mut setup = SetupCounts::default();
    let mut first_error = None;
    let mut announced = false;
    // Wakes the task when nothing arrives, so unanswered PacketIns expire.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sw.hello(&mut out);
    loop {
        let phase = *phase_rx.borrow_and_update();
        match phase {
            Phase::Stop => break,
            Phase::Load { measuring } => {
                let now = Instant::now();
                load.expire(now, measuring);
                load.fill(&mut sw, now, measuring, &mut out);
            }
            Phase::Setup | Phase::Drain => {}
        }
        if !out.is_empty() {
            wr.write_all(&out).await.map_err(closed)?;
            out.clear();
        }
        tokio::select! {
            r = rd.read(&mut rbuf) => {
                let n = r.map_err(closed)?;
                if n == 0 {
                    return Err(BenchError::Controller("the controller closed the connection".into()));
                }
                let now = Instant::now();
                framer.extend(&rbuf[..n]);
                let mut news = false;
                let phase = *phase_rx.borrow();
                let measuring = phase.measuring();
                while let Some(msg) = framer.next_message().map_err(|e| {
                    BenchError::Controller(format!("the stream from the controller is out of sync: {e}"))
                })? {
                    let inbound = match sw.handle(msg, &mut out) {
                        Ok(i) => i,
                        Err(e) => {
                            OfpMessage::new(xid_of(msg), Message::Error(ErrorMsg::for_decode_error(&e, msg)))
                                .emit(&mut out);
                            if measuring {
                                load.counts.malformed += 1;
                            }
                            continue;
                        }
                    };
                    if phase == Phase::Setup {
                        setup.messages += 1;
                    }
                    // Keepalives never stop; the controller is quiet when
                    // it sends nothing else.
                    news |= !matches!(
                        inbound,
                        Inbound::Other(MsgType::EchoRequest | MsgType::EchoReply)
                    );
                    match inbound {
                        Inbound::Answer(a) if phase == Phase::Setup => {
                            setup.flow_mods_and_packet_outs += 1;
                            let _ = a;
                        }
                        Inbound::Answer(a) => {
                            if a.kind == AnswerKind::FlowMod {
                                shared.stamp(&shared.last_flow_mod_ns, now);
                            }
                            load.on_answer(&a, now, measuring);
                        }
                        Inbound::Error(code) => {
                            first_error.get_or_insert(code);
                            if phase == Phase::Setup {
                                setup.errors += 1;
                            } else if measuring {
                                load.counts.errors += 1;
                            }
                        }
                        Inbound::Other(_) if measuring => load.counts.other += 1,
                        Inbound::Other(_) => {}
                    }
                }
                if news {
                    shared.touch(now);
                }
                if !announced && sw.features_replied() {
                    announced = true;
                    shared.ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = phase_rx.changed() => {}
            _ = tick.tick() => {}
        }
    }
    Ok(SwitchResult {
        counts: load.counts,
        latency: load.latency,
        setup,
        first_error,
    })
}

fn xid_of(msg: &[u8]) -> u32 {
    msg.get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn closed(e: std::io::Error) -> BenchError {
    BenchError::Controller(format!("the connection to the controller failed: {e}"))
}

/// Merges every switch's histogram into one.
pub fn merge_latency(results: &[SwitchResult]) -> Histogram<u64> {
    let mut all = new_histogram();
    for r in results {
        // Same bounds everywhere, so adding cannot fail.
        let _ = all.add(&r.latency);
    }
    all
}

#[cfg(test)]
mod tests;
