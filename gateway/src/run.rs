//! Starting and stopping the gateway: the API, the senders of the outbox,
//! the haas side's follower of the controller, and the datapath.
//!
//! The datapath (the bridge keeper through OVSDB and, for iaas, the
//! OpenFlow session to the gateway's own bridge that yields the trunk's
//! ARP/RARP frames) plugs in at [`start_datapath`]; until it is built in,
//! that function says so and `run` stops with its message.

use crate::api::{router, Shared};
use crate::config::{Config, Kind};
use crate::control::Control;
use crate::metrics::Metrics;
use crate::report::{http_client, DeliveryError, PeerClient, RegistryClient};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Trunk frames waiting for the control plane, at most: beyond, the
/// datapath drops (and counts) rather than buffer without bound.
pub const FRAME_QUEUE: usize = 4096;

/// What the datapath hands the control plane once it runs.
#[derive(Debug, Default)]
pub struct DatapathLink {
    /// The trunk's ARP and RARP frames, VLAN tag intact, as packet-ins
    /// deliver them (iaas); `None` on a haas gateway.
    pub frames: Option<mpsc::Receiver<Vec<u8>>>,
    /// The datapath's part of `/v1/status` as it last published it: per
    /// peer the BFD state from OVSDB, per VI the WAN port, its ofport and
    /// its counters. Shown under `datapath`.
    pub status: Option<watch::Receiver<serde_json::Value>>,
}

/// The datapath, running.
#[derive(Debug)]
pub struct Datapath {
    pub link: DatapathLink,
    /// Its tasks; they end when the shutdown token is cancelled.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the datapath (bridge keeper{}) is not built into this iris-gateway; \
         the control plane alone cannot carry a VI across the WAN",
        if *.0 == Kind::Iaas { " and OpenFlow session" } else { "" }
    )]
    DatapathNotBuiltIn(Kind),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// The seam where the datapath plugs in: build and keep the gateway's
/// bridge (OVSDB), and for an iaas gateway open the OpenFlow session to
/// it, install the forwarding and send its trunk frames here.
pub fn start_datapath(
    config: &Arc<Config>,
    shutdown: &CancellationToken,
) -> Result<Datapath, RunError> {
    let _ = shutdown;
    Err(RunError::DatapathNotBuiltIn(config.kind))
}

/// The control plane, running.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens (the configured address, its port chosen
    /// when it was 0).
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the control plane: the API on `listen`, the outbox's senders,
/// the follower (haas), and the consumer of the datapath's frames (iaas).
pub async fn start(
    config: Arc<Config>,
    datapath: DatapathLink,
    shutdown: CancellationToken,
) -> Result<Running, RunError> {
    let metrics = Arc::new(Metrics::default());
    let shared = Shared::new(
        Control::new(config.clone(), metrics.clone()),
        metrics,
        datapath.status,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| RunError::Listen(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RunError::Listen(config.listen, e))?;
    let mut tasks = Vec::new();
    let app = router(shared.clone());
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("the API stopped: {e}");
        }
    }));
    let http = http_client();
    match config.kind {
        Kind::Iaas => {
            for p in &config.peers {
                let client = PeerClient::new(http.clone(), &p.api, &config.name);
                tasks.push(tokio::spawn(send_to_peer(
                    shared.clone(),
                    p.name.clone(),
                    client,
                    shutdown.clone(),
                )));
            }
        }
        Kind::Haas => {
            let base = config.controller.clone().unwrap_or_default();
            let client = RegistryClient::new(http.clone(), &base, &config.name);
            tasks.push(tokio::spawn(write_registry(
                shared.clone(),
                client,
                shutdown.clone(),
            )));
            tasks.push(tokio::spawn(crate::follower::follow(
                shared.clone(),
                http,
                base,
                shutdown.clone(),
            )));
        }
    }
    if let Some(frames) = datapath.frames {
        tasks.push(tokio::spawn(consume_frames(
            shared.clone(),
            frames,
            shutdown.clone(),
        )));
    }
    tracing::info!(
        "iris-gateway {} ({}) listening on {addr}",
        config.name,
        config.kind
    );
    Ok(Running {
        addr,
        shared,
        shutdown,
        tasks,
    })
}

/// Sleeps until the control core's next deadline (at most `idle`), a
/// wake-up, or shutdown; false at shutdown.
async fn wait(shared: &Shared, idle: Duration, shutdown: &CancellationToken) -> bool {
    let now = Instant::now();
    let until = shared
        .control()
        .next_deadline()
        .map_or(idle, |t| t.saturating_duration_since(now).min(idle));
    tokio::select! {
        () = tokio::time::sleep(until) => true,
        () = shared.woken() => true,
        () = shutdown.cancelled() => false,
    }
}

/// iaas: the outbox to one peer, batch by batch.
async fn send_to_peer(
    shared: Arc<Shared>,
    peer: String,
    client: PeerClient,
    shutdown: CancellationToken,
) {
    while wait(&shared, Duration::from_secs(1), &shutdown).await {
        loop {
            let batch = {
                let mut c = shared.control();
                c.poll(Instant::now());
                c.peer_batch(Instant::now(), &peer)
            };
            if batch.is_empty() {
                break;
            }
            let wire = batch.iter().map(|(k, i)| i.to_wire(k)).collect();
            let sent = tokio::select! {
                r = client.send(wire) => r,
                () = shutdown.cancelled() => return,
            };
            let mut c = shared.control();
            match sent {
                Ok(answer) if answer.results.len() == batch.len() => {
                    c.peer_answered(Instant::now(), &peer, &batch, &answer);
                }
                Ok(answer) => {
                    tracing::warn!(
                        "{peer} answered {} results for {} reports; sending them again",
                        answer.results.len(),
                        batch.len()
                    );
                    c.peer_failed(Instant::now(), &peer, batch, false);
                    break;
                }
                Err(e @ DeliveryError::Refused { .. }) => {
                    tracing::error!(
                        "{peer} refused {} reports: {e}; check that both gateways' \
                         configurations name each other and carry the same VIs",
                        batch.len()
                    );
                    c.peer_failed(Instant::now(), &peer, batch, true);
                }
                Err(e) => {
                    tracing::warn!("reports to {peer}: {e}; retrying with backoff");
                    c.peer_failed(Instant::now(), &peer, batch, false);
                    break;
                }
            }
        }
    }
}

/// haas: the outbox to the controller's registry, entry by entry.
async fn write_registry(shared: Arc<Shared>, client: RegistryClient, shutdown: CancellationToken) {
    while wait(&shared, Duration::from_secs(1), &shutdown).await {
        loop {
            let batch = {
                let mut c = shared.control();
                c.poll(Instant::now());
                c.registry_batch(Instant::now())
            };
            if batch.is_empty() {
                break;
            }
            let (mut delivered, mut refused, mut retry) = (0, 0, Vec::new());
            let mut items = batch.into_iter();
            for (key, item) in items.by_ref() {
                let result = tokio::select! {
                    r = client.deliver(&key, &item) => r,
                    () = shutdown.cancelled() => return,
                };
                match result {
                    Ok(()) => delivered += 1,
                    Err(e @ (DeliveryError::Conflict(_) | DeliveryError::Refused { .. })) => {
                        tracing::warn!(
                            "the controller refused {} {} {} behind this gateway: {e}",
                            key.vi,
                            key.vlan,
                            key.mac
                        );
                        refused += 1;
                    }
                    Err(e) => {
                        tracing::warn!("the controller's registry: {e}; retrying with backoff");
                        retry.push((key, item));
                        break;
                    }
                }
            }
            // Unreachable: the rest of the batch waits with the failed one.
            retry.extend(items);
            let failed = !retry.is_empty();
            shared
                .control()
                .registry_done(Instant::now(), delivered, refused, retry);
            if failed {
                break;
            }
        }
    }
}

/// iaas: the trunk's frames into the control core.
async fn consume_frames(
    shared: Arc<Shared>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    shutdown: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            f = frames.recv() => f,
            () = shutdown.cancelled() => return,
        };
        let Some(frame) = frame else {
            tracing::error!("the datapath stopped sending trunk frames");
            return;
        };
        let result = shared.control().frame(Instant::now(), &frame);
        match result {
            Ok(
                crate::mobility::Decision::Present { .. } | crate::mobility::Decision::Moved { .. },
            ) => {
                shared.wake();
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("trunk frame dropped: {e}"),
        }
    }
}

/// `iris-gateway run`: the datapath, then the control plane, until SIGTERM
/// or ctrl-c.
pub async fn run(config: Config) -> Result<(), RunError> {
    let config = Arc::new(config);
    let shutdown = CancellationToken::new();
    let datapath = start_datapath(&config, &shutdown)?;
    let running = start(config, datapath.link, shutdown.clone()).await?;
    wait_for_signal().await;
    tracing::info!("stopping");
    running.stop().await;
    for t in datapath.tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
