//! The OpenFlow listener: one tokio task per switch connection, each driving
//! a sans-IO [`Session`] and moving nothing but bytes and timers.
//!
//! Isolation between switches is the point of the design: every connection
//! has its own bounded command queue and output buffer, so a switch that
//! stops reading fills only its own queue; the control loop sees
//! [`SubmitError::Full`] and resynchronises that switch later instead of
//! waiting on it. Everything one event produces is encoded into the
//! connection's one reusable buffer and leaves in a single write.

use crate::answers::{AnswerSlot, ConnAnswers};
use crate::session::{Batch, CloseReason, Event, Output, Session, SessionConfig, Upcall};
use crate::tls::PeerCertificate;
use ofp::EncodeError;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, info_span, trace, warn, Instrument, Level, Span};

/// Where the controller listens for switches, or where a switch that
/// listens itself is reached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// A unix socket, for switches in other network namespaces on this host.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    /// `IP:PORT`, `tcp:IP:PORT` or `unix:PATH`, as OVS writes controller
    /// targets.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, like unix:/run/iris/openflow.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let addr = s.strip_prefix("tcp:").unwrap_or(s);
        addr.parse().map(Self::Tcp).map_err(|_| {
            format!("{s:?} is not an address; write IP:PORT (0.0.0.0:6653) or unix:PATH")
        })
    }
}

impl ListenAddr {
    /// Where the controller connects to reach a switch given the passive
    /// controller target `target`: `ptcp:PORT:IP` is reached at `IP:PORT`,
    /// `punix:PATH` at `PATH`. `None` for any other target; the error says
    /// what to write instead.
    pub fn of_passive_target(target: &str) -> Result<Option<Self>, String> {
        if let Some(path) = target.strip_prefix("punix:") {
            if path.is_empty() {
                return Err(
                    "punix: needs a socket path, like punix:/var/run/openvswitch/br-int.iris.sock"
                        .into(),
                );
            }
            return Ok(Some(Self::Unix(PathBuf::from(path))));
        }
        // pssl: is reached over TCP too, with TLS when the controller has
        // it (check-config pairs the two).
        let Some(rest) = target
            .strip_prefix("ptcp:")
            .or_else(|| target.strip_prefix("pssl:"))
        else {
            return Ok(None);
        };
        // A switch listening on every address cannot be dialled: the
        // controller needs the one it answers on.
        let addr = rest.split_once(':').and_then(|(port, ip)| {
            let ip = ip
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(ip);
            Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
        });
        match addr {
            Some(a) if a.port() != 0 && !a.ip().is_unspecified() => Ok(Some(Self::Tcp(a))),
            _ => Err(format!(
                "{target:?} is not a passive target Iris can connect to; write ptcp:PORT:IP \
                 with the address the switch listens on, like ptcp:6653:10.0.0.1"
            )),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Server limits and the session settings every connection starts with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub session: SessionConfig,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_switches: usize,
    /// Batches that may wait for one switch before it counts as too slow.
    pub queue_depth: usize,
    /// Encoded bytes waiting for one switch beyond which no more batches
    /// are taken from its queue.
    pub max_unsent_bytes: usize,
    /// Bytes of answers to the switch's own messages (echo replies, error
    /// replies) that may wait unsent; a switch that keeps asking without
    /// reading the answers is closed with [`CloseReason::RepliesUnread`].
    pub max_unread_replies: usize,
    /// First wait before connecting again to a switch that listens; doubled
    /// up to `dial_backoff_max` while attempts fail or sessions end at once.
    pub dial_backoff_min: Duration,
    pub dial_backoff_max: Duration,
    /// How long one connection attempt to a listening switch may take.
    pub dial_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            max_switches: 4096,
            queue_depth: 64,
            max_unsent_bytes: 4 << 20,
            max_unread_replies: 1 << 20,
            dial_backoff_min: Duration::from_millis(50),
            dial_backoff_max: Duration::from_secs(2),
            dial_timeout: Duration::from_secs(3),
        }
    }
}

/// A connection's number, unique for the life of the process. A switch's
/// identity (its datapath id) is known only after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn{}", self.0)
    }
}

/// What the control loop asks of a connection.
pub(crate) enum Command {
    Submit(Batch),
    Dump,
}

/// The control loop's way to one connection. Dropping every clone closes
/// the connection.
#[derive(Debug, Clone)]
pub struct SwitchHandle {
    pub conn: ConnId,
    tx: mpsc::Sender<Command>,
    /// How many of the connection's PacketIns the control loop has taken
    /// and committed the effects of (see [`crate::answers`]).
    acked: Arc<AtomicU64>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Submit(b) => write!(f, "Submit({} messages)", b.messages.len()),
            Self::Dump => f.write_str("Dump"),
        }
    }
}

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The switch is not keeping up; resynchronise it once it does.
    Full,
    /// The connection is gone.
    Closed,
}

impl SwitchHandle {
    /// Queues a batch without waiting.
    pub fn try_submit(&self, batch: Batch) -> Result<(), SubmitError> {
        self.try_send(Command::Submit(batch))
    }

    /// Asks for a fresh flow and group dump ([`Upcall::Tables`]).
    pub fn try_dump(&self) -> Result<(), SubmitError> {
        self.try_send(Command::Dump)
    }

    fn try_send(&self, c: Command) -> Result<(), SubmitError> {
        self.tx.try_send(c).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Full,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Tells the connection that the control loop has taken `taken` of its
    /// PacketIns in all and committed what they changed: the connection
    /// may answer from the published snapshot again once it has handed
    /// over no more than that.
    pub fn ack(&self, taken: u64) {
        self.acked.store(taken, Ordering::Release);
    }

    /// What the control loop last acknowledged.
    #[cfg(test)]
    pub(crate) fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Commands waiting in the connection's queue.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// A handle whose connection end is the returned receiver, for driving
    /// the control loop without a socket.
    #[cfg(test)]
    pub(crate) fn detached(conn: ConnId, depth: usize) -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(depth);
        let acked = Arc::default();
        (Self { conn, tx, acked }, rx)
    }
}

/// What the server tells the control loop.
#[derive(Debug)]
pub enum SwitchEvent {
    /// A transport connection was accepted; the handshake starts.
    Connected {
        conn: ConnId,
        peer: String,
        handle: SwitchHandle,
        /// The client certificate of a TLS connection, verified against
        /// the CA; which host it may be is decided at the handshake.
        certificate: Option<Arc<PeerCertificate>>,
    },
    Upcall {
        conn: ConnId,
        upcall: Upcall,
    },
    /// A PacketIn was dropped because the control loop was behind.
    PacketInDropped {
        conn: ConnId,
    },
    Disconnected {
        conn: ConnId,
        reason: CloseReason,
    },
}

/// A bound listener, ready to serve, and the switches that listen
/// themselves, to connect to.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    conns: Conns,
    dial: Option<watch::Receiver<BTreeSet<ListenAddr>>>,
}

/// What every connection shares, whichever side opened it.
#[derive(Debug, Clone)]
struct Conns {
    config: ServerConfig,
    next_conn: Arc<AtomicU64>,
    answers: Option<Arc<AnswerSlot>>,
    /// Every accepted TCP connection starts with this TLS handshake.
    tls: Option<Tls>,
}

/// The TLS of accepted and of dialled connections, and where their
/// refusals are counted.
#[derive(Clone)]
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    metrics: Arc<crate::metrics::Metrics>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls")
    }
}

/// How long a switch may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Conns {
    /// Drives one connection, accepted or dialled, until it ends.
    async fn run(
        &self,
        stream: Stream,
        peer: String,
        events: mpsc::Sender<SwitchEvent>,
        shutdown: CancellationToken,
    ) {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let span = info_span!("switch", %conn, %peer, dpid = tracing::field::Empty);
        let config = self.config.clone();
        let answers = self.answers.clone();
        let tls = self.tls.clone();
        let session = Connection {
            conn,
            config,
            events,
            answers,
            shutdown,
        };
        async move {
            match (stream, tls) {
                (Stream::Tcp(s), Some(tls)) => {
                    let _ = s.set_nodelay(true);
                    session.over_tls(tls.acceptor.accept(s), &tls, peer).await;
                }
                (Stream::Dialled(s), Some(tls)) => {
                    let _ = s.set_nodelay(true);
                    // The name is not what is checked (see
                    // `TlsFiles::switch_client_config`), only sent.
                    let Ok(addr) = s.peer_addr() else {
                        return;
                    };
                    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                    session
                        .over_tls(tls.connector.connect(name, s), &tls, peer)
                        .await;
                }
                (Stream::Tcp(s) | Stream::Dialled(s), None) => {
                    // Small control messages must not wait for Nagle.
                    let _ = s.set_nodelay(true);
                    session.run(s, peer.into()).await;
                }
                (Stream::Unix(s), _) => session.run(s, peer.into()).await,
            }
        }
        .instrument(span)
        .await
    }
}

/// What one connection's session needs besides its stream and peer.
struct Connection {
    conn: ConnId,
    config: ServerConfig,
    events: mpsc::Sender<SwitchEvent>,
    answers: Option<Arc<AnswerSlot>>,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run<S>(self, stream: S, peer: Peer)
    where
        S: AsyncRead + AsyncWrite + Send,
    {
        run_connection(
            stream,
            self.conn,
            peer,
            self.config,
            self.events,
            self.answers,
            self.shutdown,
        )
        .await;
    }

    /// Runs the session once `handshake` has verified the switch's
    /// certificate, with that certificate.
    async fn over_tls<S>(
        self,
        handshake: impl std::future::Future<Output = io::Result<S>>,
        tls: &Tls,
        addr: String,
    ) where
        S: PeerCertificates + AsyncRead + AsyncWrite + Send,
    {
        let Some((stream, certificate)) = tls_handshake(handshake, tls, &self.shutdown).await
        else {
            return;
        };
        let peer = Peer {
            addr,
            certificate: Some(certificate),
        };
        self.run(stream, peer).await;
    }
}

/// The TLS handshake with a switch, accepted or dialled, and the
/// certificate it presented; `None` (logged and counted) when it fails.
async fn tls_handshake<S>(
    handshake: impl std::future::Future<Output = io::Result<S>>,
    tls: &Tls,
    shutdown: &CancellationToken,
) -> Option<(S, Arc<PeerCertificate>)>
where
    S: PeerCertificates,
{
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake);
    let refused = |why: &'static str, detail: String| {
        tls.metrics.switch_refused(why);
        warn!("refused: TLS handshake failed: {detail}");
    };
    let stream = tokio::select! {
        _ = shutdown.cancelled() => return None,
        r = handshake => match r {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                refused("tls_handshake", e.to_string());
                return None;
            }
            Err(_) => {
                refused(
                    "tls_handshake",
                    format!("not done within {TLS_HANDSHAKE_TIMEOUT:?}"),
                );
                return None;
            }
        },
    };
    // The verifiers demand a certificate, so a completed handshake has
    // one.
    let Some(leaf) = stream.leaf() else {
        refused(
            "tls_handshake",
            "the switch presented no certificate".into(),
        );
        return None;
    };
    let certificate = Arc::new(PeerCertificate::new(leaf));
    debug!(sha256 = %certificate, "TLS handshake done");
    Some((stream, certificate))
}

/// A TLS stream's peer certificate, whichever side opened it.
trait PeerCertificates {
    fn leaf(&self) -> Option<rustls::pki_types::CertificateDer<'static>>;
}

impl<S> PeerCertificates for tokio_rustls::server::TlsStream<S> {
    fn leaf(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        self.get_ref().1.peer_certificates()?.first().cloned()
    }
}

impl<S> PeerCertificates for tokio_rustls::client::TlsStream<S> {
    fn leaf(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        self.get_ref().1.peer_certificates()?.first().cloned()
    }
}

#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Pending connections the kernel may queue: a whole data center's
/// switches reconnect at once after a controller restart, and with tokio's
/// default (1024) the overflow waits for the kernel's one-second SYN retry.
const LISTEN_BACKLOG: u32 = 4096;

fn listen_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restart must not wait out TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    pub async fn bind(addr: &ListenAddr, config: ServerConfig) -> io::Result<Self> {
        let listener = match addr {
            ListenAddr::Tcp(a) => Listener::Tcp(listen_tcp(*a)?),
            ListenAddr::Unix(p) => {
                // A socket file left by a previous run would make bind fail;
                // only a socket is removed, never a regular file.
                if let Ok(meta) = std::fs::symlink_metadata(p) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        std::fs::remove_file(p)?;
                    }
                }
                Listener::Unix(UnixListener::bind(p)?, p.clone())
            }
        };
        Ok(Self {
            listener,
            conns: Conns {
                config,
                next_conn: Arc::new(AtomicU64::new(1)),
                answers: None,
                tls: None,
            },
            dial: None,
        })
    }

    /// Lets every connection answer ARP requests from the snapshots the
    /// control loop publishes in `slot` ([`crate::answers`]).
    pub fn answering(mut self, slot: Arc<AnswerSlot>) -> Self {
        self.conns.answers = Some(slot);
        self
    }

    /// Makes every TCP connection a TLS one with the key, certificate and
    /// CA of `files`: an accepted one's client certificate, and a dialled
    /// one's (`pssl:`) server certificate, must chain to the CA; refusals
    /// are counted in `metrics`
    /// (`iris_switches_refused_total{why="tls_handshake"}`).
    pub fn with_tls(
        mut self,
        files: &crate::tls::TlsFiles,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        self.conns.tls = Some(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(files.server_config()?),
            connector: tokio_rustls::TlsConnector::from(files.switch_client_config()?),
            metrics,
        });
        Ok(self)
    }

    /// Also keeps a connection to every switch in `switches`, switches that
    /// listen (passive controller targets) for the controller to connect
    /// ([`dial`]); the set may change while the server runs.
    pub fn dialing(mut self, switches: watch::Receiver<BTreeSet<ListenAddr>>) -> Self {
        self.dial = Some(switches);
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, p) => Ok(ListenAddr::Unix(p.clone())),
        }
    }

    /// Accepts switches until `shutdown` is cancelled, then closes every
    /// connection and returns once their tasks have ended. Closing a
    /// connection leaves the switch's flows in place (`fail_mode=secure`).
    pub async fn serve(self, events: mpsc::Sender<SwitchEvent>, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        if let Some(switches) = self.dial.clone() {
            tracker.spawn(dial::dial_all(
                switches,
                self.conns.clone(),
                events.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        let permits = Arc::new(Semaphore::new(self.conns.config.max_switches));
        let mut failures = AcceptFailures::default();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(s) => {
                    failures.succeeded("OpenFlow");
                    s
                }
                Err(e) => {
                    let wait = failures.failed("OpenFlow", &e);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            let conns = self.conns.clone();
            let events = events.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                conns.run(stream, peer, events, shutdown).await;
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
        if let Listener::Unix(_, p) = &self.listener {
            let _ = std::fs::remove_file(p);
        }
    }

    async fn accept(&self) -> io::Result<(Stream, String)> {
        match &self.listener {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                Ok((Stream::Tcp(s), a.to_string()))
            }
            Listener::Unix(l, p) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("unix:{}", p.display())))
            }
        }
    }
}

/// Failing `accept`s in a row (out of descriptors, most likely): each waits
/// longer, up to a second, and only the first of a run is logged as a
/// warning, so that a listener out of descriptors neither spins nor floods
/// the log.
#[derive(Debug, Default)]
pub(crate) struct AcceptFailures {
    in_a_row: u32,
}

impl AcceptFailures {
    const FIRST_WAIT: Duration = Duration::from_millis(50);
    const MAX_WAIT: Duration = Duration::from_secs(1);

    /// Logs the failure and says how long to wait before accepting again.
    pub(crate) fn failed(&mut self, listener: &str, e: &io::Error) -> Duration {
        if self.in_a_row == 0 {
            warn!("{listener} listener: accept failed: {e}; retrying with backoff");
        } else {
            debug!("{listener} listener: accept failed again: {e}");
        }
        let wait = Self::FIRST_WAIT.saturating_mul(1 << self.in_a_row.min(5));
        self.in_a_row = self.in_a_row.saturating_add(1);
        wait.min(Self::MAX_WAIT)
    }

    pub(crate) fn succeeded(&mut self, listener: &str) {
        if self.in_a_row > 0 {
            info!(
                failures = self.in_a_row,
                "{listener} listener: accepting again"
            );
            self.in_a_row = 0;
        }
    }
}

/// The OpenFlow connections accepted at once when the open-file limit is
/// `open_files`: what the API's cap, the store, the OVSDB session of each
/// of `hosts` (and its reconnection) and the process's own descriptors
/// leave, at most [`ServerConfig::default`]'s and at least 4.
pub fn max_switches(open_files: u64, api_connections: usize, hosts: usize) -> usize {
    let reserved = api_connections
        .saturating_add(RESERVED_DESCRIPTORS)
        .saturating_add(hosts.saturating_mul(2));
    usize::try_from(open_files)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserved)
        .clamp(4, ServerConfig::default().max_switches)
}

/// Descriptors the process holds besides connections: standard streams,
/// the runtime's polling, the store's files, the listeners, with room to
/// spare (a controller with two hosts holds 14 at start).
const RESERVED_DESCRIPTORS: usize = 32;

enum Stream {
    /// Accepted.
    Tcp(tokio::net::TcpStream),
    /// Opened by this controller, to a switch that listens.
    Dialled(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// How often a connection's timers are checked: often enough to honour the
/// configured keepalive to within a quarter of its shortest period.
fn tick_period(c: &SessionConfig) -> Duration {
    (c.echo_interval.min(c.echo_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Most batches taken from the queue before the buffer is written, so one
/// write carries them all without starving reads.
const BATCHES_PER_WRITE: usize = 32;

/// Who is at the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its address, for the log and the API.
    pub addr: String,
    /// Over TLS, its client certificate, verified against the CA.
    pub certificate: Option<Arc<PeerCertificate>>,
}

impl From<String> for Peer {
    fn from(addr: String) -> Self {
        Self {
            addr,
            certificate: None,
        }
    }
}

impl From<&str> for Peer {
    fn from(addr: &str) -> Self {
        addr.to_owned().into()
    }
}

/// Drives one connection until the session closes, the control loop drops
/// the handle, or the server shuts down. With `answers`, the connection
/// answers the ARP requests it can itself ([`crate::answers`]).
pub async fn run_connection<S>(
    stream: S,
    conn: ConnId,
    peer: Peer,
    config: ServerConfig,
    events: mpsc::Sender<SwitchEvent>,
    answers: Option<Arc<AnswerSlot>>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut commands) = mpsc::channel(config.queue_depth.max(1));
    let acked = Arc::new(AtomicU64::new(0));
    let shortcut = answers.map(|slot| ConnAnswers::new(conn, slot, acked.clone()));
    let handle = SwitchHandle { conn, tx, acked };
    if events
        .send(SwitchEvent::Connected {
            conn,
            peer: peer.addr,
            handle,
            certificate: peer.certificate,
        })
        .await
        .is_err()
    {
        return;
    }
    debug!("connected");
    let mut io = ConnIo {
        conn,
        events,
        out: Vec::with_capacity(64 << 10),
        written: 0,
        replies: Replies::default(),
        unsendable: Vec::new(),
        close: None,
        shortcut,
    };
    let mut session = Session::new(config.session.clone());
    let mut rbuf = vec![0u8; 64 << 10];
    let mut tick = tokio::time::interval(tick_period(&config.session));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

    io.step(&mut session, Event::Connected).await;
    while io.close.is_none() {
        let accepting = io.out.len() - io.written < config.max_unsent_bytes;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                io.close = Some(CloseReason::PeerClosed);
                debug!("server shutting down");
            }
            // Writing comes before reading: a switch that keeps the socket
            // readable (a PacketIn storm) must still get its echo replies
            // and the FlowMods that would end the storm.
            r = wr.write(&io.out[io.written..]), if io.written < io.out.len() => match r {
                Ok(0) | Err(_) => {
                    io.step(&mut session, Event::Closed).await;
                }
                Ok(n) => io.wrote(n),
            },
            r = rd.read(&mut rbuf) => match r {
                Ok(n) if n > 0 => io.received(&mut session, &rbuf[..n], &config).await,
                Ok(_) => io.step(&mut session, Event::Closed).await,
                Err(e) => {
                    debug!("read failed: {e}");
                    io.step(&mut session, Event::Closed).await;
                }
            },
            c = commands.recv(), if accepting => match c {
                Some(first) => {
                    let mut c = Some(first);
                    let mut taken = 0;
                    while let Some(cmd) = c.take() {
                        let event = match cmd {
                            Command::Submit(b) => Event::Submit(b),
                            Command::Dump => Event::Dump,
                        };
                        io.step(&mut session, event).await;
                        taken += 1;
                        if taken < BATCHES_PER_WRITE {
                            c = commands.try_recv().ok();
                        }
                    }
                }
                None => {
                    debug!("control loop released the connection");
                    io.close = Some(CloseReason::PeerClosed);
                }
            },
            _ = tick.tick() => io.step(&mut session, Event::Tick).await,
        }
    }
    // What the session queued before closing (an OFPT_ERROR, say) still goes
    // out, within reason.
    if io.written < io.out.len() {
        let rest = &io.out[io.written..];
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(rest)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    let reason = io.close.take().unwrap_or(CloseReason::PeerClosed);
    match &reason {
        CloseReason::PeerClosed => info!("disconnected"),
        r @ (CloseReason::IncompatibleVersion { .. } | CloseReason::NoHello { .. }) => {
            error!("disconnected: {r}")
        }
        r => warn!("disconnected: {r}"),
    }
    let _ = io
        .events
        .send(SwitchEvent::Disconnected { conn, reason })
        .await;
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The connection's side of the session's outputs.
struct ConnIo {
    conn: ConnId,
    events: mpsc::Sender<SwitchEvent>,
    /// Encoded messages not yet written; reused for the connection's life.
    out: Vec<u8>,
    written: usize,
    /// Which of the unwritten bytes answer what the switch sent.
    replies: Replies,
    /// Messages too long to encode, for the session to hear of.
    unsendable: Vec<(u32, EncodeError)>,
    close: Option<CloseReason>,
    /// Answers ARP requests without the control loop, when enabled.
    shortcut: Option<ConnAnswers>,
}

/// The spans of the output buffer that answer the switch's own messages.
/// Commands are held back once the buffer is full, but answers to reads
/// are not: a switch that keeps sending without reading would grow the
/// buffer without end, so their unwritten bytes are counted.
#[derive(Debug, Default)]
struct Replies {
    spans: VecDeque<(usize, usize)>,
    unwritten: usize,
}

impl Replies {
    fn add(&mut self, start: usize, end: usize) {
        if end > start {
            self.spans.push_back((start, end));
            self.unwritten += end - start;
        }
    }

    /// The buffer has been written up to `written`.
    fn written_to(&mut self, written: usize) {
        while let Some((start, end)) = self.spans.front_mut() {
            if *start >= written {
                break;
            }
            let gone = (*end).min(written) - *start;
            self.unwritten -= gone;
            *start += gone;
            if *start == *end {
                self.spans.pop_front();
            }
        }
    }
}

impl ConnIo {
    /// `n` more bytes of the buffer went out.
    fn wrote(&mut self, n: usize) {
        self.written += n;
        self.replies.written_to(self.written);
        if self.written == self.out.len() {
            // Every span ended at or before here: none is left to shift.
            self.out.clear();
            self.written = 0;
        }
    }

    /// What a read appended from `start` on answers the switch; closes the
    /// connection when more than `limit` such bytes wait unwritten.
    fn replied(&mut self, start: usize, limit: usize) {
        self.replies.add(start, self.out.len());
        if self.replies.unwritten > limit && self.close.is_none() {
            self.close = Some(CloseReason::RepliesUnread {
                bytes: self.replies.unwritten,
            });
        }
    }

    /// Bytes from the switch. The shortcut's answers are encoded at once
    /// and, like the control loop's PacketOuts, are not counted as replies:
    /// instead the shortcut stands aside while the buffer is full, and the
    /// control loop drops what a switch that does not read cannot take.
    async fn received(&mut self, session: &mut Session, bytes: &[u8], config: &ServerConfig) {
        let room = self.out.len() - self.written < config.max_unsent_bytes;
        let outputs = match self.shortcut.as_mut() {
            Some(s) if room => {
                s.begin_read();
                session.receive(now(), bytes, s, &mut self.out)
            }
            _ => session.handle(now(), Event::Received(bytes)),
        };
        let start = self.out.len();
        self.carry_out(session, outputs).await;
        self.replied(start, config.max_unread_replies);
    }

    /// Hands `event` to the session and carries out what it says.
    async fn step(&mut self, session: &mut Session, event: Event<'_>) {
        let outputs = session.handle(now(), event);
        self.carry_out(session, outputs).await;
    }

    /// Carries out a session's outputs; a message too long to encode is not
    /// sent, and the session is told so (it counts it against its barrier
    /// like a refusal).
    async fn carry_out(&mut self, session: &mut Session, mut outputs: Vec<Output>) {
        loop {
            self.apply(outputs).await;
            let Some((xid, error)) = self.unsendable.pop() else {
                return;
            };
            outputs = session.handle(now(), Event::NotSent { xid, error });
        }
    }

    async fn apply(&mut self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Send(m) => {
                    trace!(xid = m.xid, "send {}", m.message.msg_type());
                    if let Err(e) = m.try_emit(&mut self.out) {
                        self.unsendable.push((m.xid, e));
                    }
                }
                Output::Log(level, line) => log(level, &line),
                Output::Upcall(u) => self.upcall(u).await,
                Output::Close(r) => self.close = Some(r),
            }
        }
    }

    async fn upcall(&mut self, upcall: Upcall) {
        if let Upcall::Ready { features, .. } = &upcall {
            Span::current().record(
                "dpid",
                tracing::field::display(format_args!("{:016x}", features.datapath_id)),
            );
        }
        let conn = self.conn;
        if let Upcall::PacketIn { .. } = upcall {
            // PacketIns may be dropped when the control loop is behind (the
            // switch sends the next one); everything else must arrive.
            match self.events.try_send(SwitchEvent::Upcall { conn, upcall }) {
                Ok(()) => {
                    if let Some(s) = self.shortcut.as_mut() {
                        s.forwarded();
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = self.events.try_send(SwitchEvent::PacketInDropped { conn });
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
            return;
        }
        if self
            .events
            .send(SwitchEvent::Upcall { conn, upcall })
            .await
            .is_err()
        {
            self.close = Some(CloseReason::PeerClosed);
        }
    }
}

fn log(level: Level, line: &str) {
    match level {
        Level::ERROR => error!("{line}"),
        Level::WARN => warn!("{line}"),
        Level::INFO => info!("{line}"),
        Level::DEBUG => debug!("{line}"),
        Level::TRACE => trace!("{line}"),
    }
}

mod dial;
#[cfg(test)]
mod tests;
