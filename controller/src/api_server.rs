//! Serving the northbound API over TCP within limits: no client holds a
//! connection, a descriptor or the shutdown for long.
//!
//! - A connection whose request head has not arrived `header_timeout` after
//!   it was accepted, or after its previous response (keep-alive), is closed:
//!   a client that connects and says nothing, or sends half a request, does
//!   not keep its socket.
//! - A request body must arrive whole within `body_timeout` of its head.
//! - At most `max_connections` are open at once. At the cap, a new
//!   connection replaces the one that has waited longest without a request
//!   in progress; if every connection has one in progress, new ones wait in
//!   the kernel's backlog. Either way the API never holds more descriptors
//!   than the cap (plus the one being accepted), and the OpenFlow listener,
//!   OVSDB and the store keep theirs.
//! - On shutdown no connection is accepted, idle ones close at once, event
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, info, warn};

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
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, most likely: the connection stays in
                // the backlog until one is free.
                warn!("the API cannot accept a connection: {e}");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !open.evict_longest_idle() {
                    debug!(%peer, "every API connection has a request in progress; waiting");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let conn = open.add();
        let builder = builder.clone();
        let router = router.clone();
        let (open, shutdown, cut) = (open.clone(), shutdown.clone(), cut.clone());
        tracker.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn({
                let conn = conn.clone();
                let shutdown = shutdown.clone();
                move |req: Request<Incoming>| {
                    let busy = Busy::start(conn.clone());
                    let req = req.map(|b| Body::new(Deadline::new(b, limits.body_timeout)));
                    let response = router.clone().oneshot(req);
                    let shutdown = shutdown.clone();
                    async move {
                        let response = response.await?;
                        Ok::<_, Infallible>(
                            response.map(|b| Body::new(Tracked::new(b, busy, shutdown))),
                        )
                    }
                }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let finished = tokio::select! {
                r = connection.as_mut() => Some(r),
                () = conn.evict.cancelled() => None,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = connection.as_mut() => Some(r),
                        () = cut.cancelled() => None,
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

/// One open connection, as eviction sees it.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// Requests whose response has not been sent whole.
    busy: AtomicUsize,
    /// When it last became idle (accepted, or a response ended), in
    /// milliseconds since [`Connections::epoch`].
    idle_since: AtomicU64,
    epoch: Instant,
    evict: CancellationToken,
}

impl Conn {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug)]
struct Connections {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Connections {
    fn add(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            epoch: self.epoch,
            evict: CancellationToken::new(),
        });
        conn.idle_since.store(conn.now(), Ordering::Relaxed);
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

    /// Closes the connection that has waited longest without a request in
    /// progress; false if every one has a request in progress.
    fn evict_longest_idle(&self) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        let oldest = open
            .values()
            .filter(|c| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed))
            .map(|c| c.id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some(c) => {
                debug!("API connection cap reached: closing the connection idle longest");
                c.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// A request in progress on a connection, until its response is sent whole
/// (or dropped).
#[derive(Debug)]
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
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
