//! Starting and stopping the gateway: the API, the senders of the outbox,
//! the haas side's follower of the controller, and the datapath.
//!
//! The datapath ([`start_datapath`]) is the bridge keeper through OVSDB
//! and, for iaas, the OpenFlow session to the gateway's own bridge that
//! installs its table and yields the trunk's ARP/RARP frames.

use crate::api::{router, Shared};
use crate::bridge::{self, BridgePlan, BridgeStatus, KeeperConfig, WanPort};
use crate::config::encryption::Keys;
use crate::config::{Config, Kind};
use crate::control::Control;
use crate::metrics::Metrics;
use crate::openflow::{self, OpenFlowConfig, OpenFlowStatus};
use crate::pipeline::VlanSet;
use crate::report::{http_client, DeliveryError, PeerClient, RegistryClient};
use crate::wireguard::{self, WireguardPlan, WireguardStatus};
use std::collections::BTreeMap;
use std::net::IpAddr;
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
    /// What the bridge keeper follows: a VI added or removed at run time
    /// sends the new plan here.
    pub plan: Option<watch::Sender<BridgePlan>>,
}

/// The datapath, running.
#[derive(Debug)]
pub struct Datapath {
    pub link: DatapathLink,
    /// Where new keys for the encrypted WAN go ([`crate::reload`]).
    pub keys: Option<watch::Sender<Keys>>,
    /// Its tasks; they end when the shutdown token is cancelled.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("an iaas gateway needs `openflow`, its bridge's management socket (unix:PATH)")]
    NoOpenFlowSocket,
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error(transparent)]
    State(#[from] crate::runtime_vis::StateError),
    #[error("the HTTP client of the controller or a peer: {0}")]
    Client(String),
}

/// The seam where the datapath plugs in: build and keep the gateway's
/// bridge (OVSDB), and for an iaas gateway open the OpenFlow session to
/// it, install the forwarding and send its trunk frames here.
pub fn start_datapath(
    config: &Arc<Config>,
    shutdown: &CancellationToken,
) -> Result<Datapath, RunError> {
    let plan = bridge_plan(config);
    let (plan_tx, plan_rx) = watch::channel(plan);
    let (bridge_tx, bridge_rx) = watch::channel(BridgeStatus::default());
    let mut tasks = vec![tokio::spawn(bridge::keep(
        KeeperConfig::new(config.ovsdb.clone()),
        plan_rx,
        bridge_tx,
        shutdown.clone(),
    ))];
    let (status_tx, status_rx) = watch::channel(serde_json::Value::Null);
    let (frames, openflow) = match config.kind {
        Kind::Haas => (None, None),
        Kind::Iaas => {
            let socket = config
                .openflow
                .as_deref()
                .and_then(|t| t.strip_prefix("unix:"))
                .ok_or(RunError::NoOpenFlowSocket)?;
            let vlans: BTreeMap<u32, VlanSet> = config
                .vis
                .iter()
                .map(|v| (v.id.0, v.vlans.clone()))
                .collect();
            let (pipe_tx, pipe_rx) = watch::channel(None);
            tasks.push(tokio::spawn(bridge::feed_pipeline(
                bridge_rx.clone(),
                vlans,
                pipe_tx,
            )));
            let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
            let (of_tx, of_rx) = watch::channel(OpenFlowStatus::default());
            let of = OpenFlowConfig {
                queue: FRAME_QUEUE,
                ..OpenFlowConfig::new(socket)
            };
            tasks.push(tokio::spawn(openflow::run(
                of,
                pipe_rx,
                frames_tx,
                of_tx,
                shutdown.clone(),
            )));
            (Some(frames_rx), Some(of_rx))
        }
    };
    let mut keys = None;
    let encryption = wireguard_plan(config).map(|plan| {
        // The tunnel's bridge is kept like the gateway's own: deleted or
        // changed by hand, it is put back.
        let (kept_tx, kept_rx) = watch::channel(BridgeStatus::default());
        let (tunnel_tx, tunnel_rx) = watch::channel(wireguard::bridge_plan(&plan.encryption));
        let keeper = bridge::keep(
            KeeperConfig::new(config.ovsdb.clone()),
            tunnel_rx,
            kept_tx,
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // The plan never changes; the keeper stops when it is dropped.
            let _plan = tunnel_tx;
            keeper.await;
        }));
        let (tx, rx) = watch::channel(WireguardStatus::default());
        let (keys_tx, keys_rx) = watch::channel(plan.encryption.keys());
        keys = Some(keys_tx);
        tasks.push(match plan.encryption.netns.clone() {
            None => tokio::spawn(wireguard::run(plan, keys_rx, kept_rx, tx, shutdown.clone())),
            Some(netns) => wireguard::run_in(netns, plan, keys_rx, kept_rx, tx, shutdown.clone()),
        });
        rx
    });
    tasks.push(tokio::spawn(publish_status(
        plan_tx.clone(),
        bridge_rx,
        openflow,
        encryption,
        status_tx,
        shutdown.clone(),
    )));
    Ok(Datapath {
        keys,
        link: DatapathLink {
            frames,
            status: Some(status_rx),
            plan: Some(plan_tx),
        },
        tasks,
    })
}

/// The name of the WAN port toward `peer` (its index in the configuration)
/// for VI `vi`: an interface name, so at most 15 bytes (`w16777215-p999`).
/// A runtime VI's port is `w{vi}-r`: its peer's index changes as other
/// runtime VIs come and go, and a renamed port would cut its traffic.
fn wan_port_name(config: &Config, vi: u32, peer: usize) -> String {
    if config.runtime.iter().any(|r| r.id == vi) {
        format!("w{vi}-r")
    } else {
        format!("w{vi}-p{peer}")
    }
}

/// The encrypted WAN's task, when `[wan.encryption]` asks for it: WireGuard
/// on `wan_ip`, the tunnel as large as the WAN's MTU leaves room for.
pub fn wireguard_plan(config: &Config) -> Option<WireguardPlan> {
    let e = config.encryption.clone()?;
    Some(WireguardPlan {
        listen: std::net::SocketAddrV4::new(config.wan_ip, e.listen_port),
        encryption: e,
        mtu: crate::config::encryption::tunnel_mtu(config.wan_mtu()),
    })
}

/// What the configuration asks of the gateway's bridge: one WAN port per VI
/// toward that VI's peer, with the VI's key; on an iaas gateway its own
/// bridge with the trunk. On an encrypted WAN the GRE runs between the
/// inner addresses, inside WireGuard.
pub fn bridge_plan(config: &Config) -> BridgePlan {
    let mut plan = match (config.kind, &config.trunk) {
        (Kind::Iaas, Some(trunk)) => BridgePlan::iaas(config.bridge.clone(), trunk.clone()),
        _ => BridgePlan::haas(config.bridge.clone()),
    };
    for v in &config.vis {
        let Some((index, peer)) = config
            .peers
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == v.peer)
        else {
            // check-config refuses a VI whose peer is not a [[peer]].
            continue;
        };
        let (local, remote) = match config.encryption.as_ref() {
            Some(e) => match e.peer(&peer.name) {
                Some(inner) => (e.address, inner.inner_ip),
                // check-config gives every peer its inner address.
                None => continue,
            },
            None => (config.wan_ip, peer.wan_ip),
        };
        plan.wan_ports.push(WanPort {
            name: wan_port_name(config, v.id.0, index),
            vi: v.id.0,
            key: v.gre_key,
            remote_ip: IpAddr::V4(remote),
            local_ip: Some(IpAddr::V4(local)),
        });
    }
    plan
}

/// Keeps the datapath's part of `/v1/status` current: the bridge as OVSDB
/// shows it (WAN ports, BFD, counters) and, on an iaas gateway, the
/// OpenFlow session. Holds the bridge plan's sender, which the keeper
/// follows, for as long as the gateway runs.
async fn publish_status(
    plan: watch::Sender<BridgePlan>,
    mut bridge: watch::Receiver<BridgeStatus>,
    mut openflow: Option<watch::Receiver<OpenFlowStatus>>,
    mut encryption: Option<watch::Receiver<WireguardStatus>>,
    status: watch::Sender<serde_json::Value>,
    shutdown: CancellationToken,
) {
    loop {
        let value = {
            let b = bridge.borrow_and_update();
            let of = openflow.as_mut().map(|o| o.borrow_and_update().clone());
            let mut value = datapath_status(&plan.borrow(), &b, of.as_ref());
            if let Some(e) = encryption.as_mut() {
                value["encryption"] =
                    serde_json::to_value(&*e.borrow_and_update()).unwrap_or_default();
            }
            value
        };
        status.send_replace(value);
        let changed = async {
            tokio::select! {
                r = bridge.changed() => r.is_ok(),
                alive = changed_or_never(openflow.as_mut()) => alive,
                alive = changed_or_never(encryption.as_mut()) => alive,
            }
        };
        tokio::select! {
            alive = changed => if !alive { return },
            () = shutdown.cancelled() => return,
        }
    }
}

/// Whether the channel changed (false: its sender is gone); never
/// resolves for a channel that is not there.
async fn changed_or_never<T>(rx: Option<&mut watch::Receiver<T>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The datapath's status as JSON: the bridge's and, on an iaas gateway,
/// the OpenFlow session's, as they publish them.
fn datapath_status(
    plan: &BridgePlan,
    b: &BridgeStatus,
    of: Option<&OpenFlowStatus>,
) -> serde_json::Value {
    let mut out = serde_json::to_value(b).unwrap_or_default();
    out["bridge"] = plan.bridge.clone().into();
    if let Some(of) = of {
        out["openflow"] = serde_json::to_value(of).unwrap_or_default();
    }
    out
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
    shared.follow_plan(datapath.plan);
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
    // Each client carries the token of the one it talks to alone: the
    // controller's token goes to the controller, a peer's to that peer.
    match config.kind {
        Kind::Iaas => {
            for p in &config.peers {
                let http = http_client(p.token.as_ref(), None).map_err(RunError::Client)?;
                let client = PeerClient::new(http, &p.api, &config.name);
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
            let ca = config.controller_ca.as_deref();
            let token = config.controller_token.as_ref();
            let http = http_client(token, ca).map_err(RunError::Client)?;
            let client = RegistryClient::new(http, &base, &config.name);
            tasks.push(tokio::spawn(write_registry(
                shared.clone(),
                client,
                shutdown.clone(),
            )));
            tasks.push(tokio::spawn(crate::follower::follow(
                shared.clone(),
                crate::report::stream_client(token, ca).map_err(RunError::Client)?,
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
                    let hint = if matches!(e, DeliveryError::Refused { status: 401, .. }) {
                        "check that this [[peer]]'s token_file holds the token whose hash is the \
                         token_hash of this gateway's [[peer]] there"
                    } else {
                        "check that both gateways' configurations name each other and carry \
                         the same VIs"
                    };
                    tracing::error!("{peer} refused {} reports: {e}; {hint}", batch.len());
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
            // Not only news: an announcement of a MAC believed here leaves
            // the table unchanged but queues a presence report, whose
            // answer may say the MAC was away. Left to the sender's idle
            // second, that answer came after QEMU's last RARP, and the
            // move back was never reported.
            Ok(_) => shared.wake(),
            Err(e) => tracing::debug!("trunk frame dropped: {e}"),
        }
    }
}

/// `iris-gateway run` with the configuration read from `path`: the
/// datapath, then the control plane, until SIGTERM or ctrl-c; SIGHUP reads
/// the file again ([`crate::reload`]).
pub async fn run(config: Config, path: std::path::PathBuf) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before anything starts: SIGHUP's default would end the process.
    let (mut term, mut hangup) = (
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::hangup()).ok(),
    );
    let mut file = config.clone();
    let config = Arc::new(crate::runtime_vis::restore(config)?);
    let shutdown = CancellationToken::new();
    let mut datapath = start_datapath(&config, &shutdown)?;
    let keys = datapath.keys.take();
    let link = std::mem::take(&mut datapath.link);
    let running = start(config, link, shutdown.clone()).await?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            Some(()) = async { term.as_mut()?.recv().await } => break,
            Some(()) = async { hangup.as_mut()?.recv().await } => {
                crate::reload::on_hangup(&path, &mut file, keys.as_ref());
            }
        }
    }
    tracing::info!("stopping");
    running.stop().await;
    for t in datapath.tasks {
        let _ = t.await;
    }
    Ok(())
}
