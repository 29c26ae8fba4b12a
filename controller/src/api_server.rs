//! Serving the northbound API over TCP within limits: no client holds a
//! connection, a descriptor or the shutdown for long.
//!
//! - A connection whose request head has not arrived `header_timeout` after
//!   it was accepted, or after its previous response (keep-alive), is closed:
//!   a client that connects and says nothing, or sends half a request, does
//!   not keep its socket.
//! - A request body must arrive whole within `body_timeout` of its head.
//! - At most `max_connections` are open at once. At the cap, a new
//!   connection replaces the one that has waited longest with no request in
//!   progress: nothing read since its last response was written whole to
//!   the socket, or no request head complete [`HEAD_GRACE`] after it was
//!   accepted or its head began. A connection whose request is being
//!   handled or answered is never closed for another, so no client loses
//!   the answer to a request that was carried out. If no connection can be
//!   closed, the new one waits (and the rest in the kernel's backlog) until
//!   one can or one ends. Either way the API never holds more descriptors
//!   than the cap (plus the one being accepted), and the OpenFlow listener,
//!   OVSDB and the store keep theirs.
//! - On shutdown no connection is accepted, idle ones (a head still
//!   arriving included) close at once, event
//!   streams end, and whatever is still open after `shutdown_grace` is cut.
//!
//! HTTP/1.1 only: hyper's header timeout does not start before the protocol
//! is known, so a server that also waited for an HTTP/2 preface would give
//! a silent client its socket for as long as it liked.

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::Request;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, info};

/// How long and how many: the `[api_limits]` table of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// `None`: a quarter of the open-file limit, at most
    /// [`DEFAULT_MAX_CONNECTIONS`] ([`max_connections`]).
    pub max_connections: Option<usize>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The most API connections when the configuration does not say: far more
/// than an orchestrator and a few operators need.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Raises the soft open-file limit to the hard one (a service manager
/// typically starts a process at 1024 while allowing far more) and returns
/// the limit in force.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        debug!(from = soft, to = hard, "raised the open-file limit");
        return hard;
    }
    soft
}

/// The connection cap: the configured one, else a quarter of the open-file
/// limit (so that three quarters stay for switches, OVSDB and the store),
/// at most [`DEFAULT_MAX_CONNECTIONS`] and at least 4.
pub fn max_connections(limits: &ApiLimits, open_files: u64) -> usize {
    limits.max_connections.unwrap_or_else(|| {
        usize::try_from(open_files / 4)
            .unwrap_or(usize::MAX)
            .clamp(4, DEFAULT_MAX_CONNECTIONS)
    })
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then closes
/// every connection within `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ApiLimits,
    max_connections: usize,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with_tls(listener, router, limits, max_connections, None, shutdown).await
}

/// [`serve`], and with `tls` every connection starts with a TLS handshake,
/// which must be done within `limits.header_timeout` (the time a request
/// head is given) and counts as waiting for a head: a client that stalls
/// in it is closed like one that sends half a head.
pub async fn serve_with_tls(
    listener: TcpListener,
    router: Router,
    limits: ApiLimits,
    max_connections: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(max_connections));
    let open = Arc::new(Connections::default());
    let tracker = TaskTracker::new();
    let cut = CancellationToken::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut failures = crate::server::AcceptFailures::default();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                failures.succeeded("API");
                a
            }
            Err(e) => {
                // Out of descriptors, most likely: the connection stays in
                // the backlog until one is free.
                let wait = failures.failed("API", &e);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match wait_for_slot(&permits, &open, &shutdown, peer).await {
                Some(p) => p,
                None => break,
            },
        };
        let conn = open.add();
        let builder = builder.clone();
        let router = router.clone();
        let (open, shutdown, cut) = (open.clone(), shutdown.clone(), cut.clone());
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let stream = match acceptor {
                None => ApiStream::Plain(stream),
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
                    let done = tokio::select! {
                        r = handshake => r,
                        () = conn.evict.cancelled() => {
                            open.remove(conn.id);
                            return;
                        }
                        () = shutdown.cancelled() => {
                            open.remove(conn.id);
                            return;
                        }
                    };
                    match done {
                        Ok(Ok(s)) => ApiStream::Tls(Box::new(s)),
                        Ok(Err(e)) => {
                            debug!(%peer, "API TLS handshake failed: {e}");
                            open.remove(conn.id);
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "API TLS handshake not done in time");
                            open.remove(conn.id);
                            return;
                        }
                    }
                }
            };
            let service = hyper::service::service_fn({
                let conn = conn.clone();
                let shutdown = shutdown.clone();
                move |req: Request<Incoming>| {
                    let busy = Busy::start(conn.clone());
                    let req = req.map(|b| Body::new(Deadline::new(b, limits.body_timeout)));
                    let router = router.clone();
                    let shutdown = shutdown.clone();
                    async move {
                        // Closed for another connection between reading this
                        // head and here: the connection is going, so the
                        // request must not be carried out unanswered.
                        let Some(busy) = busy else {
                            return Ok(axum::http::Response::builder()
                                .status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                                .header(axum::http::header::CONNECTION, "close")
                                .body(Body::empty())
                                .unwrap_or_default());
                        };
                        let response = router.oneshot(req).await?;
                        Ok::<_, Infallible>(
                            response.map(|b| Body::new(Tracked::new(b, busy, shutdown))),
                        )
                    }
                }
            });
            let io = TokioIo::new(Watched {
                inner: stream,
                conn: conn.clone(),
            });
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            let finished = tokio::select! {
                r = connection.as_mut() => Some(r),
                () = conn.evict.cancelled() => None,
                () = shutdown.cancelled() => {
                    // hyper's graceful shutdown waits for a head it has
                    // begun to read: one held back would keep the grace.
                    if conn.close_if_idle() {
                        None
                    } else {
                        connection.as_mut().graceful_shutdown();
                        tokio::select! {
                            r = connection.as_mut() => Some(r),
                            () = cut.cancelled() => None,
                        }
                    }
                }
            };
            if let Some(Err(e)) = finished {
                debug!(%peer, "API connection ended: {e}");
            }
            open.remove(conn.id);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        info!(
            connections = tracker.len(),
            "API connections still open after {:?}; closing them", limits.shutdown_grace
        );
        cut.cancel();
        tracker.wait().await;
    }
    Ok(())
}

/// How long a new connection's request head may be on its way before the
/// connection can be closed for a newer one: a client sends its head at
/// once, so one still incomplete after this is most likely held back on
/// purpose, while a client in a burst at the cap is not cut before the
/// server has read what it sent.
const HEAD_GRACE: Duration = Duration::from_millis(250);

/// How often a connection waiting at the cap looks again for one to close.
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// Waits at the cap for a free slot, closing a connection for it as soon as
/// one may be closed; `None` at shutdown.
async fn wait_for_slot(
    permits: &Arc<Semaphore>,
    open: &Connections,
    shutdown: &CancellationToken,
    peer: std::net::SocketAddr,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let mut logged = false;
    loop {
        if !open.evict_longest_idle() && !logged {
            debug!(%peer, "every API connection has a request in progress; waiting");
            logged = true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            p = permits.clone().acquire_owned() => return p.ok(),
            () = tokio::time::sleep(EVICT_RETRY) => {}
        }
    }
}

/// One open connection, as eviction sees it.
#[derive(Debug)]
struct Conn {
    id: u64,
    state: Mutex<ConnState>,
    evict: CancellationToken,
}

#[derive(Debug)]
struct ConnState {
    /// Requests handed to the router whose response has not been produced
    /// whole (or dropped).
    handlers: usize,
    /// A response has been produced whole but not yet flushed to the socket.
    unflushed: bool,
    /// Since when a head not yet handed to the router is awaited: from the
    /// accept, or from its first bytes after a response.
    head_since: Option<Instant>,
    /// When its last response was flushed.
    idle_since: Instant,
    /// Chosen to be closed: nothing more is read or carried out.
    evicted: bool,
}

impl ConnState {
    /// Since when the connection may be closed for another; `None` while a
    /// request is handled or answered, or a head is still young.
    fn evictable_since(&self, now: Instant) -> Option<Instant> {
        if self.evicted || self.handlers > 0 || self.unflushed {
            return None;
        }
        match self.head_since {
            None => Some(self.idle_since),
            Some(t) if now.saturating_duration_since(t) >= HEAD_GRACE => Some(t),
            Some(_) => None,
        }
    }
}

impl Conn {
    /// Marks the connection closed if no request on it is handled or
    /// answered (a head still arriving counts as none); whether it was.
    fn close_if_idle(&self) -> bool {
        let mut state = self.state();
        if state.handlers > 0 || state.unflushed {
            return false;
        }
        state.evicted = true;
        true
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Connections {
    fn add(&self) -> Arc<Conn> {
        let now = Instant::now();
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(ConnState {
                handlers: 0,
                unflushed: false,
                head_since: Some(now),
                idle_since: now,
                evicted: false,
            }),
            evict: CancellationToken::new(),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(conn.id, conn.clone());
        }
        conn
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Closes the connection that has waited longest with no request in
    /// progress; false if none may be closed.
    fn evict_longest_idle(&self) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        let now = Instant::now();
        let oldest = open
            .values()
            .filter_map(|c| c.state().evictable_since(now).map(|t| (t, c.id)))
            .min()
            .map(|(_, id)| id);
        let Some(conn) = oldest.and_then(|id| open.get(&id)).cloned() else {
            return false;
        };
        {
            // Decided under the connection's own lock, which its reads and
            // requests also take: none slips in between.
            let mut state = conn.state();
            if state.evictable_since(now).is_none() {
                return false;
            }
            state.evicted = true;
        }
        open.remove(&conn.id);
        debug!("API connection cap reached: closing the connection idle longest");
        conn.evict.cancel();
        true
    }
}

/// A request in progress on a connection, until its response is produced
/// whole (or dropped); the connection stays busy until that is flushed.
#[derive(Debug)]
struct Busy(Arc<Conn>);

impl Busy {
    /// `None` if the connection has been chosen to be closed.
    fn start(conn: Arc<Conn>) -> Option<Self> {
        {
            let mut state = conn.state();
            if state.evicted {
                return None;
            }
            state.handlers += 1;
            state.head_since = None;
        }
        Some(Self(conn))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.handlers = state.handlers.saturating_sub(1);
        state.unflushed = true;
    }
}

/// A connection's socket that tells eviction when a request starts to
/// arrive and when its response has been written whole.
struct Watched {
    inner: ApiStream,
    conn: Arc<Conn>,
}

/// An API connection's transport.
enum ApiStream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for ApiStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for ApiStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut state = self.conn.state();
            if state.evicted {
                // Bytes of a request that will not be carried out: read as
                // the end of the connection.
                buf.set_filled(before);
            } else if state.handlers == 0 && state.head_since.is_none() {
                state.head_since = Some(Instant::now());
            }
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper flushes once a response's last bytes are written to the
    /// socket: from then on the connection is idle.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            let mut state = self.conn.state();
            if state.handlers == 0 && state.unflushed {
                state.unflushed = false;
                state.idle_since = Instant::now();
            }
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must arrive whole before a deadline.
struct Deadline {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

/// The error a [`Deadline`] body ends with; axum answers 400 with it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimeout(Duration);

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimeout(self.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in progress until it
/// is sent or dropped, and that ends a stream (a body of unknown length,
/// like `/v1/events`) at shutdown.
struct Tracked {
    inner: Body,
    _busy: Busy,
    /// Only for streams.
    stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Tracked {
    fn new(inner: Body, busy: Busy, shutdown: CancellationToken) -> Self {
        let stream = http_body::Body::size_hint(&inner).exact().is_none();
        Self {
            inner,
            _busy: busy,
            stop: stream.then(|| Box::pin(shutdown.cancelled_owned())),
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(stop) = self.stop.as_mut() {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
