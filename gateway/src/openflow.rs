//! The OpenFlow 1.3 session to the IaaS gateway's own bridge: install its
//! flow table ([`crate::pipeline`]) and carry the frames it sends up
//! (ARP and RARP from the trunk) to the snooper.
//!
//! The gateway connects to the bridge's management socket
//! (`<ovs rundir>/<bridge>.mgmt`, which ovs-vswitchd always opens), so the
//! bridge needs no controller target. The connection is the controller's
//! own ([`iris_controller::server::run_connection`] driving its sans-IO
//! [`iris_controller::session::Session`]): HELLO, FEATURES, SET_CONFIG
//! with `miss_send_len` set (without it vswitchd sends a management
//! connection no PACKET_IN at all), PORT_DESC and the flow and group dumps,
//! echo keepalive, refusals matched to their requests. This module adds
//! what is the gateway's:
//!
//! - Programming by difference, with the controller's reconciler: a flow
//!   whose identity (table, priority, match) and cookie (a hash of its
//!   instructions) are already there is left alone, so a reconnect or a
//!   restart of the gateway changes nothing and the counters keep running;
//!   flows the table does not want are deleted, whoever wrote them (the
//!   bridge is the gateway's alone). Deleting by cookie and adding again
//!   would be fewer lines but would reset every counter, and would open a
//!   window in which the bridge drops a VI's frames. Every change ends with
//!   a barrier; its reply says whether the switch took all of it.
//! - The table is dumped again and put right every `resync` (someone's
//!   `ovs-ofctl del-flows` is repaired).
//! - Every PACKET_IN's frame, whole and with its VLAN tag, goes into an
//!   mpsc channel; when the channel is full the frame is dropped and
//!   counted rather than stalling the switch.
//! - Every `stats` period the flow counters are asked for, and what the
//!   drop flows counted is published per port ([`Drops`]): frames of VLANs
//!   no VI carries from the trunk, frames a peer sent outside its VI's
//!   VLANs from each WAN port.
//! - Messages the codec cannot decode are counted (and answered with an
//!   OFPT_ERROR by the session); a stream that cannot be framed any more
//!   ends the connection, which is opened again with backoff like one the
//!   switch closed.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use iris_controller::compiler::FlowSink;
use iris_controller::reconciler::{Diff, Foreign};
use iris_controller::server::{run_connection, ConnId, ServerConfig, SwitchEvent, SwitchHandle};
use iris_controller::session::{Batch, Upcall};
use iris_controller::switch_state::{is_iris_cookie, Installed};
use ofp::framing::Framer;
use ofp::message::Message;
use ofp::multipart::{
    FlowStats, FlowStatsRequest, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
};
use ofp::oxm::OxmField;
use ofp::OfpMessage;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::pipeline::{table, PipelinePlan, PRIORITY_DROP, PRIORITY_PORT_DROP, TABLE};

/// The socket ovs-vswitchd opens for `bridge` in its run directory.
pub fn mgmt_socket(rundir: impl Into<PathBuf>, bridge: &str) -> PathBuf {
    rundir.into().join(format!("{bridge}.mgmt"))
}

/// Where to connect and how hard to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFlowConfig {
    /// The bridge's management socket (see [`mgmt_socket`]).
    pub socket: PathBuf,
    /// First wait after a failed connection; doubled up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How often the table is dumped and put right again.
    pub resync: Duration,
    /// How often the drop flows' counters are read.
    pub stats: Duration,
    /// PACKET_INs the snooper may be behind by before frames are dropped.
    pub queue: usize,
}

impl OpenFlowConfig {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            resync: Duration::from_secs(60),
            stats: Duration::from_secs(5),
            queue: 256,
        }
    }
}

/// What the session has done, since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpenFlowStatus {
    /// The handshake with the bridge is complete.
    pub connected: bool,
    /// The current plan's table is installed and the switch confirmed it.
    pub programmed: bool,
    /// Flows the table has.
    pub flows: usize,
    pub connections: u64,
    /// FLOW_MODs sent: 0 after a restart onto a bridge already right.
    pub flow_mods_sent: u64,
    /// Requests the switch refused.
    pub switch_errors: u64,
    /// Messages from the switch that could not be decoded.
    pub malformed_messages: u64,
    pub packet_ins: u64,
    /// Frames dropped because the snooper was behind.
    pub packet_ins_dropped: u64,
    /// What the drop flows counted, as last read.
    pub drops: Drops,
    /// Why the table is not what the plan asks, while it is not.
    pub problem: Option<String>,
}

/// What the table's drop flows have counted since they were installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Drops {
    /// Frames a port sent outside every VLAN it may carry, by the port's
    /// ofport: the trunk's are VLANs no VI carries, a WAN port's are frames
    /// its peer sent outside the VI's VLANs.
    pub by_port: BTreeMap<u32, u64>,
    /// Frames from any other port.
    pub other: u64,
}

impl Drops {
    /// Adds what one part of a flow dump says.
    fn absorb(&mut self, flows: &[FlowStats]) {
        for f in flows {
            if f.table_id != TABLE || !is_iris_cookie(f.cookie) {
                continue;
            }
            match (f.priority, f.match_.fields.as_slice()) {
                (PRIORITY_PORT_DROP, [OxmField::InPort(port)]) => {
                    *self.by_port.entry(*port).or_default() += f.packet_count;
                }
                (PRIORITY_DROP, []) => self.other += f.packet_count,
                _ => {}
            }
        }
    }
}

/// Runs sessions to the bridge until `shutdown`: installs the table of
/// the latest `plan` (`None`: not known yet, the bridge is left as it is)
/// and sends each frame the bridge sends up into `frames`.
pub async fn run(
    config: OpenFlowConfig,
    mut plan: watch::Receiver<Option<PipelinePlan>>,
    frames: mpsc::Sender<Vec<u8>>,
    status: watch::Sender<OpenFlowStatus>,
    shutdown: CancellationToken,
) {
    let malformed = Arc::new(AtomicU64::new(0));
    let drops = Arc::new(Mutex::new(None));
    let mut backoff = config.backoff_min;
    let mut conn = 0u64;
    let mut failures = 0u32;
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(config.connect_timeout, UnixStream::connect(&config.socket)) => {
                match r {
                    Ok(Ok(stream)) => Ok(stream),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {:?}", config.connect_timeout)),
                }
            }
        };
        match connected {
            Ok(stream) => {
                conn += 1;
                failures = 0;
                let mut session = Connection {
                    config: &config,
                    frames: &frames,
                    status: &status,
                    handle: None,
                    actual: None,
                    ticket: 0,
                    confirmed: None,
                };
                let tap = Tap::new(stream, malformed.clone(), drops.clone());
                let served = session
                    .serve(
                        tap,
                        ConnId(conn),
                        &mut plan,
                        (&malformed, &drops),
                        &shutdown,
                    )
                    .await;
                status.send_modify(|s| {
                    s.connected = false;
                    s.programmed = false;
                });
                match served {
                    Served::Shutdown => return,
                    Served::Lost { ready } => {
                        if ready {
                            backoff = config.backoff_min;
                        }
                    }
                }
            }
            Err(e) => {
                // The first failure of a streak is worth a warning (is
                // ovs-vswitchd running, is the bridge there?); the rest
                // would only repeat it.
                let why = format!(
                    "cannot connect to the bridge's management socket {}: {e}",
                    config.socket.display()
                );
                if failures == 0 {
                    warn!("{why}; retrying every {:?} at most", config.backoff_max);
                } else {
                    debug!("{why}");
                }
                failures += 1;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

enum Served {
    Shutdown,
    /// The connection ended; `ready` if its handshake had completed.
    Lost {
        ready: bool,
    },
}

/// One connection's state.
struct Connection<'a> {
    config: &'a OpenFlowConfig,
    frames: &'a mpsc::Sender<Vec<u8>>,
    status: &'a watch::Sender<OpenFlowStatus>,
    handle: Option<SwitchHandle>,
    /// What the switch holds, once the handshake dumped it: updated with
    /// what each change makes it hold.
    actual: Option<Installed>,
    /// The barrier of the latest change.
    ticket: u64,
    /// The plan whose table the switch holds, as far as sent.
    confirmed: Option<Option<PipelinePlan>>,
}

impl Connection<'_> {
    async fn serve(
        &mut self,
        stream: Tap<UnixStream>,
        conn: ConnId,
        plan: &mut watch::Receiver<Option<PipelinePlan>>,
        (malformed, drops): (&Arc<AtomicU64>, &SharedDrops),
        shutdown: &CancellationToken,
    ) -> Served {
        let (events_tx, mut events) = mpsc::channel(self.config.queue.max(1));
        let token = shutdown.child_token();
        // The connection task ends when the token is cancelled or this
        // side drops its handle and receiver.
        let _stop = token.clone().drop_guard();
        tokio::spawn(run_connection(
            stream,
            conn,
            self.config.socket.display().to_string().into(),
            ServerConfig::default(),
            events_tx,
            None,
            token,
        ));
        let mut resync = tokio::time::interval(self.config.resync);
        resync.tick().await;
        let mut stats = tokio::time::interval(self.config.stats);
        let mut ready = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Served::Shutdown,
                event = events.recv() => match event {
                    None | Some(SwitchEvent::Disconnected { .. }) => {
                        if let Some(SwitchEvent::Disconnected { reason, .. }) = event {
                            warn!("OpenFlow connection to the bridge ended: {reason}");
                        }
                        return Served::Lost { ready };
                    }
                    Some(SwitchEvent::Connected { handle, .. }) => self.handle = Some(handle),
                    Some(SwitchEvent::Upcall { upcall, .. }) => {
                        if matches!(upcall, Upcall::Ready { .. }) {
                            ready = true;
                            info!("OpenFlow session with the bridge ready");
                            self.status.send_modify(|s| {
                                s.connected = true;
                                s.connections += 1;
                            });
                        }
                        let wanted = plan.borrow().clone();
                        self.upcall(upcall, &wanted);
                    }
                    Some(SwitchEvent::PacketInDropped { .. }) => {
                        self.status.send_modify(|s| s.packet_ins_dropped += 1);
                    }
                },
                changed = plan.changed() => {
                    if changed.is_err() {
                        return Served::Shutdown;
                    }
                    let wanted = plan.borrow_and_update().clone();
                    self.program(&wanted);
                }
                _ = resync.tick() => {
                    if let Some(h) = &self.handle {
                        let _ = h.try_dump();
                    }
                }
                _ = stats.tick(), if ready => {
                    if let Some(h) = &self.handle {
                        let _ = h.try_submit(Batch {
                            messages: vec![Message::MultipartRequest(MultipartRequest::new(
                                MultipartRequestBody::Flow(FlowStatsRequest {
                                    table_id: TABLE,
                                    ..FlowStatsRequest::default()
                                }),
                            ))],
                            barrier: None,
                        });
                    }
                }
            }
            let counted = drops.lock().ok().and_then(|mut d| d.take());
            if let Some(counted) = counted {
                self.status.send_if_modified(|s| {
                    let changed = s.drops != counted;
                    s.drops = counted;
                    changed
                });
            }
            let bad = malformed.load(Ordering::Relaxed);
            self.status.send_if_modified(|s| {
                let changed = s.malformed_messages != bad;
                s.malformed_messages = bad;
                changed
            });
        }
    }

    fn upcall(&mut self, upcall: Upcall, wanted: &Option<PipelinePlan>) {
        match upcall {
            Upcall::Ready { installed, .. } | Upcall::Tables { installed } => {
                self.actual = Some(installed);
                self.confirmed = None;
                self.program(wanted);
            }
            Upcall::PacketIn { packet_in, .. } => {
                let dropped = self.frames.try_send(packet_in.data).is_err();
                self.status.send_modify(|s| {
                    s.packet_ins += 1;
                    s.packet_ins_dropped += u64::from(dropped);
                });
            }
            Upcall::BarrierConfirmed { ticket, errors } => {
                if ticket == self.ticket {
                    self.status.send_modify(|s| {
                        s.programmed = errors == 0;
                        if errors > 0 {
                            s.problem = Some(format!(
                                "the bridge refused {errors} of the table's flow changes"
                            ));
                        }
                    });
                    if errors > 0 {
                        // What it holds is not known any more: look again.
                        if let Some(h) = &self.handle {
                            let _ = h.try_dump();
                        }
                    }
                }
            }
            Upcall::SwitchError { error, .. } => {
                debug!("switch error: {error}");
                self.status.send_modify(|s| s.switch_errors += 1);
            }
            // The gateway is its bridge's only controller and asks for no
            // role.
            Upcall::PortStatus(_) | Upcall::Role(_) => {}
        }
    }

    /// Sends what turns the switch's table into the plan's, if the
    /// handshake is done and anything differs.
    fn program(&mut self, wanted: &Option<PipelinePlan>) {
        let (Some(handle), Some(actual)) = (&self.handle, &self.actual) else {
            return;
        };
        if self.confirmed.as_ref() == Some(wanted) {
            return;
        }
        let Some(p) = wanted else {
            return;
        };
        let desired = match table(p) {
            Ok(t) => t,
            Err(e) => {
                warn!("not installing the flow table: {e}");
                self.status.send_modify(|s| {
                    s.programmed = false;
                    s.problem = Some(e.to_string());
                });
                return;
            }
        };
        let flows = desired.flows.len();
        let mut diff = Diff::new(actual);
        for f in desired.flows.into_values() {
            diff.flow(f);
        }
        let (changes, holds) = diff.finish(Foreign::Delete);
        let sent = changes.summary.flows_added
            + changes.summary.flows_replaced
            + changes.summary.flows_deleted;
        self.ticket += 1;
        let batch = Batch {
            messages: changes.messages,
            barrier: Some(self.ticket),
        };
        if handle.try_submit(batch).is_err() {
            // The connection is going or full: the next dump starts over.
            self.actual = None;
            let _ = handle.try_dump();
            return;
        }
        debug!(summary = ?changes.summary, "flow table sent");
        self.actual = Some(holds);
        self.confirmed = Some(wanted.clone());
        self.status.send_modify(|s| {
            s.flows = flows;
            s.flow_mods_sent += sent as u64;
            s.problem = None;
        });
    }
}

/// The drop counters of the latest whole flow dump, until taken.
type SharedDrops = Arc<Mutex<Option<Drops>>>;

/// A stream whose incoming bytes are also cut into messages and decoded,
/// to count those that cannot be (the session answers them, but says so
/// only in its log) and to read the drop flows' counters from flow dumps
/// (the session keeps only each flow's identity).
struct Tap<S> {
    inner: S,
    framer: Framer,
    /// The stream cannot be framed any more; the session closes it.
    lost: bool,
    malformed: Arc<AtomicU64>,
    drops: SharedDrops,
    /// Dumps whose last part has not arrived, by xid.
    dumps: BTreeMap<u32, Drops>,
}

impl<S> Tap<S> {
    fn new(inner: S, malformed: Arc<AtomicU64>, drops: SharedDrops) -> Self {
        Self {
            inner,
            framer: Framer::default(),
            lost: false,
            malformed,
            drops,
            dumps: BTreeMap::new(),
        }
    }

    fn flow_reply(&mut self, xid: u32, more: bool, flows: &[FlowStats]) {
        let mut dump = self.dumps.remove(&xid).unwrap_or_default();
        dump.absorb(flows);
        if more {
            // A switch that never ends a dump must not grow this for ever.
            if self.dumps.len() < 16 {
                self.dumps.insert(xid, dump);
            }
        } else if let Ok(mut latest) = self.drops.lock() {
            *latest = Some(dump);
        }
    }

    fn inspect(&mut self, bytes: &[u8]) {
        if self.lost {
            return;
        }
        self.framer.extend(bytes);
        loop {
            match self.framer.next_message() {
                Ok(Some(m)) => match OfpMessage::parse(m) {
                    Err(_) => {
                        self.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(OfpMessage {
                        xid,
                        message: Message::MultipartReply(reply),
                    }) => {
                        let more = reply.more();
                        if let MultipartReplyBody::Flow(flows) = reply.body {
                            self.flow_reply(xid, more, &flows);
                        }
                    }
                    Ok(_) => {}
                },
                Ok(None) => return,
                Err(_) => {
                    self.malformed.fetch_add(1, Ordering::Relaxed);
                    self.lost = true;
                    return;
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            self.inspect(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
