//! The async OVSDB client: one tokio task per connection moves bytes and
//! timers through the sans-IO [`Session`]; [`Client`] handles are cheap to
//! clone and may be used from many tasks at once.
//!
//! Nothing waits forever: when the session ends (server gone, socket error,
//! unanswered probe, malformed input, every handle dropped) every request in
//! flight fails with [`Error::Disconnected`], every monitor stream ends, and
//! [`Client::closed`] resolves with the reason. Reconnecting is the caller's
//! choice: connect again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::{InvalidDnsNameError, ServerName};
use tokio_rustls::rustls::ClientConfig;

use crate::error::{Disconnect, Error, OvsdbError};
use crate::jsonrpc::{FrameDecoder, Message};
use crate::ops::{parse_transact_result, Operation, OperationResult, Transaction};
use crate::remote::Remote;
use crate::session::{Inbound, Session};
use crate::update::{monitor_params, parse_table_updates, MonitorRequest, TableUpdates};

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Send an echo after this long without hearing from the server, and give
    /// up after as long again. `None` disables the probe (a hung server then
    /// hangs requests until the OS notices). ovsdb-server's own default is 5 s.
    pub probe_interval: Option<Duration>,
    /// How long opening the socket may take.
    pub connect_timeout: Duration,
    /// The largest message accepted from the server.
    pub max_message_len: usize,
    /// How to speak TLS to an `ssl:` remote; `None` refuses such remotes.
    pub tls: Option<Tls>,
}

/// TLS for `ssl:` remotes: the client's rustls configuration (its roots,
/// and its own certificate when the server asks for one, as ovsdb-server
/// with a CA certificate does) and the name the server's certificate must
/// carry.
#[derive(Clone)]
pub struct Tls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl Tls {
    /// `server_name` is checked against the server certificate's
    /// subjectAltName (a DNS name, such as the host's name in Iris).
    pub fn new(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, InvalidDnsNameError> {
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(config),
            server_name: ServerName::try_from(server_name.to_owned())?,
        })
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({:?})", self.server_name)
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            probe_interval: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(10),
            max_message_len: 64 << 20,
            tls: None,
        }
    }
}

type Reply = oneshot::Sender<Result<Json, Json>>;

enum Command {
    Call {
        method: String,
        params: Json,
        reply: Reply,
    },
    Monitor {
        id: String,
        params: Json,
        updates: mpsc::UnboundedSender<TableUpdates>,
        reply: Reply,
    },
    /// Stop routing a monitor's updates and tell the server, answer or not.
    CancelMonitor {
        id: String,
        reply: Option<Reply>,
    },
    Close(Disconnect),
}

/// A handle to one OVSDB session. Clones share the session; it ends when the
/// last handle (including those held by [`Monitor`]s) is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    closed: watch::Receiver<Option<Disconnect>>,
    next_monitor: AtomicU64,
}

async fn tcp(addr: &std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are small and latency-bound.
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call { method, .. } => write!(f, "Call({method})"),
            Self::Monitor { id, .. } => write!(f, "Monitor({id})"),
            Self::CancelMonitor { id, .. } => write!(f, "CancelMonitor({id})"),
            Self::Close(reason) => write!(f, "Close({reason})"),
        }
    }
}

impl Client {
    /// Connects with default [`Options`].
    pub async fn connect(remote: &Remote) -> Result<Self, Error> {
        Self::connect_with(remote, Options::default()).await
    }

    pub async fn connect_with(remote: &Remote, options: Options) -> Result<Self, Error> {
        let connect_err = |source| Error::Connect {
            remote: remote.clone(),
            source,
        };
        let timeout = options.connect_timeout;
        let timed_out = || Error::ConnectTimeout {
            remote: remote.clone(),
            after: timeout,
        };
        match remote {
            Remote::Unix(path) => {
                let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_err)?;
                Ok(Self::from_stream(stream, options))
            }
            Remote::Tcp(addr) => {
                let stream = tokio::time::timeout(timeout, tcp(addr))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_err)?;
                Ok(Self::from_stream(stream, options))
            }
            Remote::Ssl(addr) => {
                let Some(tls) = options.tls.clone() else {
                    return Err(Error::NoTls {
                        remote: remote.clone(),
                    });
                };
                let stream = tokio::time::timeout(timeout, tcp(addr))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_err)?;
                // The handshake shares the connect timeout: a server that
                // accepts and then says nothing must not hold the caller.
                let stream = tokio::time::timeout(
                    timeout,
                    tls.connector.connect(tls.server_name.clone(), stream),
                )
                .await
                .map_err(|_| timed_out())?
                .map_err(|source| Error::Tls {
                    remote: remote.clone(),
                    source,
                })?;
                Ok(Self::from_stream(stream, options))
            }
        }
    }

    /// Runs a session over any byte stream (a socket, or an in-memory pipe in
    /// tests). Must be called inside a tokio runtime.
    pub fn from_stream<S>(stream: S, options: Options) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(None);
        tokio::spawn(run(stream, options, command_rx, closed_tx));
        Self {
            inner: Arc::new(Inner {
                commands,
                closed,
                next_monitor: AtomicU64::new(1),
            }),
        }
    }

    /// Why the session ended, or `None` while it is up.
    pub fn disconnect_reason(&self) -> Option<Disconnect> {
        self.inner.closed.borrow().clone()
    }

    /// Resolves when the session ends, with the reason.
    pub async fn closed(&self) -> Disconnect {
        let mut rx = self.inner.closed.clone();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        reason.unwrap_or(Disconnect::ClosedByClient)
    }

    /// Ends the session for every handle.
    pub fn close(&self) {
        self.close_because(Disconnect::ClosedByClient);
    }

    /// Ends the session, recording why (e.g. a monitor update the caller
    /// found malformed).
    pub fn close_because(&self, reason: Disconnect) {
        let _ = self.inner.commands.send(Command::Close(reason));
    }

    /// The error for a request that cannot be answered because the session ended.
    pub(crate) fn gone(&self) -> Error {
        Error::Disconnected(
            self.disconnect_reason()
                .unwrap_or(Disconnect::ClosedByClient),
        )
    }

    async fn await_reply(
        &self,
        method: &str,
        rx: oneshot::Receiver<Result<Json, Json>>,
    ) -> Result<Json, Error> {
        match rx.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(Error::Rpc {
                method: method.to_owned(),
                error: OvsdbError::from_json(&error),
            }),
            Err(_) => Err(self.gone()),
        }
    }

    /// Sends any JSON-RPC request and returns its `result`.
    pub async fn call(&self, method: &str, params: Json) -> Result<Json, Error> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Call {
            method: method.to_owned(),
            params,
            reply,
        };
        self.inner.commands.send(cmd).map_err(|_| self.gone())?;
        self.await_reply(method, rx).await
    }

    /// Runs `ops` as one atomic transaction on database `db`.
    pub async fn transact(
        &self,
        db: &str,
        ops: &[Operation],
    ) -> Result<Vec<OperationResult>, Error> {
        let result = self.call("transact", Transaction::params(db, ops)).await?;
        Ok(parse_transact_result(ops, &result)??)
    }

    pub async fn list_dbs(&self) -> Result<Vec<String>, Error> {
        let result = self.call("list_dbs", json!([])).await?;
        result
            .as_array()
            .and_then(|dbs| dbs.iter().map(|d| d.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| {
                crate::error::ProtocolError::new("list_dbs result", format!("{result}")).into()
            })
    }

    /// Starts a monitor (RFC 7047 §4.1.5) on `db`. The returned [`Monitor`]
    /// holds the initial contents and then yields every later change, in
    /// the order the server committed them.
    pub async fn monitor(
        &self,
        db: &str,
        tables: &BTreeMap<String, MonitorRequest>,
    ) -> Result<Monitor, Error> {
        let id = format!(
            "iris-{}",
            self.inner.next_monitor.fetch_add(1, Ordering::Relaxed)
        );
        let (updates, update_rx) = mpsc::unbounded_channel();
        let (reply, rx) = oneshot::channel();
        let params = monitor_params(db, &id, tables);
        let cmd = Command::Monitor {
            id: id.clone(),
            params,
            updates,
            reply,
        };
        self.inner.commands.send(cmd).map_err(|_| self.gone())?;
        let result = self.await_reply("monitor", rx).await?;
        let initial = parse_table_updates(&result)?;
        Ok(Monitor {
            client: self.clone(),
            id,
            initial: Some(initial),
            updates: update_rx,
            cancelled: false,
        })
    }
}

/// The stream of a monitor's changes.
#[derive(Debug)]
pub struct Monitor {
    client: Client,
    id: String,
    initial: Option<TableUpdates>,
    updates: mpsc::UnboundedReceiver<TableUpdates>,
    cancelled: bool,
}

impl Monitor {
    /// The contents of the monitored tables when the monitor started; `None`
    /// once taken.
    pub fn take_initial(&mut self) -> Option<TableUpdates> {
        self.initial.take()
    }

    /// The next change; `None` when the session has ended (see
    /// [`Client::disconnect_reason`]).
    pub async fn next(&mut self) -> Option<TableUpdates> {
        self.updates.recv().await
    }

    /// A change that has already arrived, without waiting.
    pub fn try_next(&mut self) -> Option<TableUpdates> {
        self.updates.try_recv().ok()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stops the monitor on the server.
    pub async fn cancel(mut self) -> Result<(), Error> {
        self.cancelled = true;
        let (reply, rx) = oneshot::channel();
        let cmd = Command::CancelMonitor {
            id: self.id.clone(),
            reply: Some(reply),
        };
        self.client
            .inner
            .commands
            .send(cmd)
            .map_err(|_| self.client.gone())?;
        self.client
            .await_reply("monitor_cancel", rx)
            .await
            .map(drop)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if !self.cancelled {
            let cmd = Command::CancelMonitor {
                id: self.id.clone(),
                reply: None,
            };
            let _ = self.client.inner.commands.send(cmd);
        }
    }
}

enum Pending {
    Call(Reply),
    Monitor { id: String, reply: Reply },
    Ignored,
}

/// The connection task.
async fn run<S>(
    stream: S,
    options: Options,
    mut commands: mpsc::UnboundedReceiver<Command>,
    closed: watch::Sender<Option<Disconnect>>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut conn = Connection {
        session: Session::new(Instant::now().into_std(), options.probe_interval),
        decoder: FrameDecoder::new(options.max_message_len),
        pending: HashMap::new(),
        monitors: HashMap::new(),
        write_timeout: options
            .probe_interval
            .map_or(Duration::from_secs(30), |p| p * 2),
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; 64 * 1024];
    let reason = loop {
        let deadline = conn.session.deadline().map(Instant::from_std);
        let step = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => Err(Disconnect::ClosedByServer),
                Ok(n) => conn.received(&buf[..n]),
                Err(e) => Err(Disconnect::Io { kind: e.kind(), message: e.to_string() }),
            },
            cmd = commands.recv() => match cmd {
                None => Err(Disconnect::ClosedByClient),
                Some(Command::Close(reason)) => Err(reason),
                Some(cmd) => Ok(conn.command(cmd)),
            },
            () = sleep_until(deadline) => {
                conn.session.on_timer(Instant::now().into_std()).map(|m| m.into_iter().collect())
            }
        };
        let outgoing = match step {
            Ok(outgoing) => outgoing,
            Err(reason) => break reason,
        };
        if let Err(reason) = write_all(&mut writer, &outgoing, conn.write_timeout).await {
            break reason;
        }
    };
    // The reason must be visible before the waiters wake up to read it.
    let _ = closed.send(Some(reason));
    drop(conn);
    drop(commands);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    messages: &[Message],
    timeout: Duration,
) -> Result<(), Disconnect> {
    if messages.is_empty() {
        return Ok(());
    }
    let bytes: Vec<u8> = messages.iter().flat_map(Message::encode).collect();
    let io = async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    };
    match tokio::time::timeout(timeout, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Disconnect::Io {
            kind: e.kind(),
            message: e.to_string(),
        }),
        // The server stopped reading: as dead as one that stopped answering.
        Err(_) => Err(Disconnect::ProbeTimeout {
            interval: timeout / 2,
        }),
    }
}

struct Connection {
    session: Session,
    decoder: FrameDecoder,
    pending: HashMap<u64, Pending>,
    monitors: HashMap<String, mpsc::UnboundedSender<TableUpdates>>,
    write_timeout: Duration,
}

impl Connection {
    fn command(&mut self, cmd: Command) -> Vec<Message> {
        let (method, params, pending) = match cmd {
            Command::Call {
                method,
                params,
                reply,
            } => (method, params, Pending::Call(reply)),
            Command::Monitor {
                id,
                params,
                updates,
                reply,
            } => {
                self.monitors.insert(id.clone(), updates);
                ("monitor".to_owned(), params, Pending::Monitor { id, reply })
            }
            Command::CancelMonitor { id, reply } => {
                self.monitors.remove(&id);
                let pending = reply.map_or(Pending::Ignored, Pending::Call);
                ("monitor_cancel".to_owned(), json!([id]), pending)
            }
            Command::Close(_) => return Vec::new(),
        };
        let (id, msg) = self.session.request(&method, params);
        self.pending.insert(id, pending);
        vec![msg]
    }

    fn received(&mut self, bytes: &[u8]) -> Result<Vec<Message>, Disconnect> {
        let now = Instant::now().into_std();
        self.session.activity(now);
        self.decoder.push(bytes);
        let mut outgoing = Vec::new();
        while let Some(msg) = self.decoder.next_message().map_err(Disconnect::Protocol)? {
            match self.session.received(now, msg) {
                Inbound::Reply { id, result } => match self.pending.remove(&id) {
                    Some(Pending::Call(reply)) => {
                        let _ = reply.send(result);
                    }
                    Some(Pending::Monitor { id, reply }) => {
                        if result.is_err() {
                            self.monitors.remove(&id);
                        }
                        let _ = reply.send(result);
                    }
                    Some(Pending::Ignored) | None => {}
                },
                Inbound::Update { monitor, updates } => {
                    let Some(tx) = self.monitors.get(&monitor) else {
                        continue;
                    };
                    // A replica that missed an update is wrong from then on,
                    // so a malformed update ends the session.
                    let updates = parse_table_updates(&updates).map_err(Disconnect::Protocol)?;
                    if tx.send(updates).is_err() {
                        self.monitors.remove(&monitor);
                    }
                }
                Inbound::Send(msg) => outgoing.push(msg),
                Inbound::Nothing => {}
            }
        }
        Ok(outgoing)
    }
}

#[cfg(test)]
mod tests {
    //! The connection task against a scripted server over an in-memory pipe.

    use super::*;
    use crate::error::{ErrorKind, FailedAt};
    use tokio::io::DuplexStream;

    struct FakeServer {
        io: DuplexStream,
        decoder: FrameDecoder,
    }

    impl FakeServer {
        async fn recv(&mut self) -> Message {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(m) = self.decoder.next_message().unwrap() {
                    return m;
                }
                let n = self.io.read(&mut buf).await.unwrap();
                assert!(n > 0, "client hung up");
                self.decoder.push(&buf[..n]);
            }
        }

        async fn send(&mut self, json: Json) {
            self.io
                .write_all(&serde_json::to_vec(&json).unwrap())
                .await
                .unwrap();
        }

        /// Receives a request and checks its method; returns its id.
        async fn expect(&mut self, method: &str) -> (Json, Json) {
            match self.recv().await {
                Message::Request {
                    id,
                    method: m,
                    params,
                } if m == method => (id, params),
                other => panic!("expected {method}, got {other:?}"),
            }
        }
    }

    fn pair(options: Options) -> (Client, FakeServer) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (
            Client::from_stream(a, options),
            FakeServer {
                io: b,
                decoder: FrameDecoder::new(1 << 20),
            },
        )
    }

    fn no_probe() -> Options {
        Options {
            probe_interval: None,
            ..Options::default()
        }
    }

    #[tokio::test]
    async fn answers_the_servers_echo() {
        let (_client, mut server) = pair(no_probe());
        server
            .send(json!({"id": "echo", "method": "echo", "params": ["x"]}))
            .await;
        assert_eq!(
            server.recv().await,
            Message::Response {
                id: json!("echo"),
                result: Ok(json!(["x"]))
            }
        );
    }

    #[tokio::test]
    async fn typed_results_and_errors() {
        let (client, mut server) = pair(no_probe());
        let ops = [
            Operation::Comment("a".into()),
            Operation::Comment("b".into()),
        ];
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.transact("Open_vSwitch", &ops).await }
        });
        let (id, params) = server.expect("transact").await;
        assert_eq!(params[0], json!("Open_vSwitch"));
        server
            .send(json!({"id": id, "error": null, "result": [{}, {"error": "not owner"}]}))
            .await;
        let Err(Error::Transaction(e)) = call.await.unwrap() else {
            panic!("expected an error")
        };
        assert_eq!(
            e.failed_at,
            FailedAt::Operation {
                index: 1,
                summary: "comment".into()
            }
        );
        assert_eq!(e.error.kind, ErrorKind::NotOwner);

        let call = tokio::spawn({
            let client = client.clone();
            async move { client.list_dbs().await }
        });
        let (id, _) = server.expect("list_dbs").await;
        server
            .send(json!({"id": id, "result": null,
                         "error": {"error": "unknown database", "details": "nope"}}))
            .await;
        let Err(Error::Rpc { error, .. }) = call.await.unwrap() else {
            panic!("expected an error")
        };
        assert_eq!(error.kind, ErrorKind::UnknownDatabase);
    }

    #[tokio::test]
    async fn monitor_gets_initial_state_then_updates_then_ends() {
        let (client, mut server) = pair(no_probe());
        let tables = BTreeMap::from([("Bridge".to_owned(), MonitorRequest::columns(&["name"]))]);
        let start = tokio::spawn({
            let client = client.clone();
            async move { client.monitor("Open_vSwitch", &tables).await }
        });
        let (id, params) = server.expect("monitor").await;
        let uuid = "36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11";
        server
            .send(json!({"id": id, "error": null,
                         "result": {"Bridge": {uuid: {"new": {"name": "br0"}}}}}))
            .await;
        let mut monitor = start.await.unwrap().unwrap();
        assert_eq!(monitor.take_initial().unwrap()["Bridge"].len(), 1);
        // Updates for other monitors are not ours.
        server
            .send(json!({"id": null, "method": "update", "params": ["other", {}]}))
            .await;
        server
            .send(json!({"id": null, "method": "update",
                         "params": [params[1], {"Bridge": {uuid: {"old": {"name": "br0"}}}}]}))
            .await;
        let update = monitor.next().await.unwrap();
        assert!(update["Bridge"].values().next().unwrap().new.is_none());
        drop(server);
        assert_eq!(monitor.next().await, None);
        assert_eq!(client.closed().await, Disconnect::ClosedByServer);
    }

    #[tokio::test]
    async fn server_gone_mid_request_fails_the_request() {
        let (client, mut server) = pair(no_probe());
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.transact("Open_vSwitch", &[]).await }
        });
        server.expect("transact").await;
        drop(server);
        let Err(Error::Disconnected(reason)) = call.await.unwrap() else {
            panic!("expected Disconnected")
        };
        assert_eq!(reason, Disconnect::ClosedByServer);
        // Later requests fail at once.
        let Err(Error::Disconnected(_)) = client.list_dbs().await else {
            panic!("expected Disconnected")
        };
    }

    #[tokio::test(start_paused = true)]
    async fn silent_server_is_given_up_after_two_probe_intervals() {
        let (client, mut server) = pair(Options {
            probe_interval: Some(Duration::from_secs(5)),
            ..Options::default()
        });
        let started = Instant::now();
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.transact("Open_vSwitch", &[]).await }
        });
        server.expect("transact").await;
        // The probe goes out after 5 s of silence; the server never answers.
        server.expect("echo").await;
        let Err(Error::Disconnected(reason)) = call.await.unwrap() else {
            panic!("expected Disconnected")
        };
        assert_eq!(
            reason,
            Disconnect::ProbeTimeout {
                interval: Duration::from_secs(5)
            }
        );
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn garbage_from_the_server_ends_the_session() {
        let (client, mut server) = pair(no_probe());
        server
            .io
            .write_all(b"HTTP/1.1 400 Bad Request\r\n")
            .await
            .unwrap();
        let Disconnect::Protocol(e) = client.closed().await else {
            panic!("expected Protocol")
        };
        assert!(e.detail.contains("expected '{'"), "{e}");
    }

    #[tokio::test]
    async fn dropping_every_handle_closes_the_connection() {
        let (client, mut server) = pair(no_probe());
        drop(client);
        let mut buf = [0u8; 16];
        assert_eq!(server.io.read(&mut buf).await.unwrap(), 0);
    }
}
