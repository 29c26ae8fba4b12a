//! The members of an etcd cluster as the stores see them: one client
//! per endpoint on a runtime of the stores' own, so that a store can be
//! called from any thread (the control loop's, a tokio worker) as sled
//! is, and a request that fails on one member is tried on the next.
//! The controller's store and the broker's both speak to etcd through it.

use super::{EtcdConfig, BACKEND, KEEPALIVE};
use crate::store::StoreError;
use etcd_client::{Client, GetOptions, KvClient, Txn, TxnResponse};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A key and its value, as read.
pub type KeyValue = (String, Vec<u8>);

/// The cluster's members and a client for each.
pub struct Members {
    rt: Option<tokio::runtime::Runtime>,
    /// A client per endpoint, connected when first needed: a request that
    /// fails on one member is tried on the next (tonic's balanced channel
    /// kept sending to a killed member until its timeout).
    clients: Mutex<Vec<Option<Client>>>,
    /// The member that answered last, tried first.
    current: AtomicUsize,
    config: EtcdConfig,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("endpoints", &self.config.endpoints)
            .finish_non_exhaustive()
    }
}

impl Members {
    /// The members `config` names; nothing is connected yet.
    pub fn new(config: EtcdConfig) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("iris-etcd")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        Ok(Self {
            rt: Some(rt),
            clients: Mutex::new(vec![None; config.endpoints.len()]),
            current: AtomicUsize::new(0),
            config,
        })
    }

    /// The client of endpoint `i`, connected now if it was not.
    fn client(&self, i: usize) -> Result<Client, StoreError> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| unavailable("the store's clients were poisoned"))?;
        if let Some(c) = &clients[i] {
            return Ok(c.clone());
        }
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| unavailable("the store is closed"))?;
        let options = self
            .config
            .connect_options()?
            .with_timeout(self.config.request_timeout)
            .with_keep_alive(KEEPALIVE, self.config.request_timeout);
        let endpoint = self.config.endpoints[i].clone();
        let c = block(rt, self.config.dial_timeout, async move {
            Client::connect([endpoint], Some(options)).await
        })?
        .map_err(etcd_error)?;
        clients[i] = Some(c.clone());
        Ok(c)
    }

    /// Runs `request` against the member that answered last, and on any
    /// failure against the others in turn. A read is safe to repeat; a
    /// write is as safe as its guard: the etcd store's marker fails a late
    /// apply of a first attempt, the broker's leadership only keeps other
    /// brokers out.
    pub fn run<T: Send + 'static, F>(
        &self,
        request: impl Fn(KvClient) -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| unavailable("the store is closed"))?;
        let n = self.config.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in (0..n).map(|i| (first + i) % n) {
            let answer = self.client(i).and_then(|c| {
                block(rt, self.config.request_timeout, request(c.kv_client()))?.map_err(etcd_error)
            });
            match answer {
                Ok(v) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e @ StoreError::Unavailable { .. }) => {
                    failures.push(format!("{}: {}", self.config.endpoints[i], unwrapped(&e)));
                }
                Err(e) => return Err(e),
            }
        }
        Err(unavailable(format!(
            "no etcd member took the request (the cluster has lost its quorum or is out of \
             reach): {}",
            failures.join("; ")
        )))
    }

    /// The members this client asks, in the config's order.
    pub fn endpoints(&self) -> &[String] {
        &self.config.endpoints
    }

    pub fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.run(move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
    }

    /// Every key and value from `from` (inclusive) up to `to` (exclusive)
    /// at one revision, `page` keys at a time, and that revision: `at`, or
    /// with 0 the first page's. `options(at)` says whom each page asks.
    pub fn scan(
        &self,
        from: &str,
        to: Vec<u8>,
        page: i64,
        options: impl Fn(i64) -> GetOptions,
        mut at: i64,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let mut out = Vec::new();
        let mut start = from.as_bytes().to_vec();
        loop {
            let options = options(at).with_range(to.clone()).with_limit(page);
            let key = start.clone();
            let resp = self.run(move |mut kv| {
                let (key, options) = (key.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                out.push((
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                ));
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((out, at)),
            }
        }
    }
}

/// The end of the range of every key starting with `prefix`.
pub fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The message of an unavailable error, without the error's own words.
pub(crate) fn unwrapped(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

pub fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message: e.to_string(),
    }
}

/// An etcd error: a request etcd refuses as malformed (a transaction over
/// its `--max-txn-ops`, a request over its size limit) is a configuration
/// fault; anything else (no leader, no quorum, no member reachable, a
/// timeout) is the cluster being unavailable.
pub fn etcd_error(e: etcd_client::Error) -> StoreError {
    match &e {
        // gRPC's INVALID_ARGUMENT, a number the gRPC spec fixes.
        etcd_client::Error::GRpcStatus(s) if s.code() as i32 == 3 => StoreError::Backend {
            backend: BACKEND,
            message: format!(
                "etcd refused the request ({}); set [store] max_txn_ops to at most etcd's \
                     --max-txn-ops",
                s.message()
            ),
        },
        // OUT_OF_RANGE: the client refused an answer over gRPC's 4 MiB.
        // Asking another member gets the same answer; the cluster is fine.
        etcd_client::Error::GRpcStatus(s) if s.code() as i32 == 11 => StoreError::Backend {
            backend: BACKEND,
            message: format!("an answer of etcd was too large to read ({})", s.message()),
        },
        etcd_client::Error::GRpcStatus(s) => unavailable(match s.message() {
            // tonic's words for a request that got no answer, or no
            // connection.
            "Timeout expired" => "no answer in time".to_owned(),
            "tcp connect error" => "cannot connect (is the member running?)".to_owned(),
            // A connection cut under the request: its cause is the news. A
            // member refusing our certificate shows as a TLS alert on the
            // first read after the handshake, or, when the close wins
            // that race, as a connection closed with no reason at all.
            "transport error" | "operation was canceled" => transport_cause(s),
            // etcd's own, like "etcdserver: no leader".
            m => m.to_owned(),
        }),
        _ => unavailable(e),
    }
}

/// What cut a request's connection, from the innermost error under
/// `status`, with what to check when it may be our certificate.
fn transport_cause(status: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = None;
    let mut next = status.source();
    while let Some(e) = next {
        cause = Some(e.to_string());
        next = e.source();
    }
    let Some(cause) = cause else {
        return "the connection failed".to_owned();
    };
    const CERTIFICATE: &str = "[store] certificate must be issued by a CA the members trust \
                               (etcd's --trusted-ca-file) and be valid now";
    if cause.contains("received fatal alert") {
        format!("the member refused our TLS certificate ({cause}); {CERTIFICATE}")
    } else if ended_by_the_member(&cause) {
        format!(
            "the member closed the connection with no reason given ({cause}); a member that \
             asks for client certificates does so when it refuses ours ({CERTIFICATE}), and \
             one that speaks TLS closes a plain http:// connection"
        )
    } else {
        format!("the connection failed: {cause}")
    }
}

/// Whether the innermost transport error says the member ended the
/// connection. A member that refuses a client certificate sends its alert
/// and closes after the client took TLS 1.3's handshake for done, so the
/// client sees the alert, the close, or its own next write failing on the
/// closed socket, whichever wins the race.
pub(super) fn ended_by_the_member(cause: &str) -> bool {
    let cause = cause.to_ascii_lowercase();
    cause == "connection closed"
        || cause.contains("broken pipe")
        || cause.contains("connection reset")
}

/// Runs `fut` on `rt` and waits for it from any thread, a runtime's
/// worker included, for at most `timeout` (plus a margin for the client's
/// own timeout to answer first).
fn block<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    timeout: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(tokio::time::timeout(timeout, fut).await);
    });
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) | Err(_) => Err(unavailable(format!(
            "no answer within {:.1} s",
            timeout.as_secs_f64()
        ))),
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a runtime's worker may not.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
