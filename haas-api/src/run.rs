//! Starting the broker: records, drivers, recovery, then the API served
//! within the controller's limits.

use crate::api::{config_secret::Admin, router};
use crate::compute::{netns::NetnsDriver, ComputeDriver};
use crate::config::Config;
use crate::gateways::Gateways;
use crate::northbound::Controller;
use crate::records::Records;
use crate::service::Broker;
use crate::store::{SledStore, Store};
use iris_controller::api_server::{max_connections, raise_open_file_limit, serve_with_tls};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How long a stopping broker waits for its resignation to reach etcd.
const RESIGN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A running broker.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// Cancelled when this broker stops being the active one of those
    /// sharing an etcd store (its lease lost, or a write refused); the
    /// task then ends with an error. Never, on sled.
    pub ended: CancellationToken,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The drivers this build has and `config` sets up: `netns` always,
/// `libvirt` when the configuration has a `[libvirt]` table.
pub fn drivers(config: &Config) -> HashMap<&'static str, Arc<dyn ComputeDriver>> {
    let netns: Arc<dyn ComputeDriver> = Arc::new(NetnsDriver::new());
    [Some(netns), libvirt_driver(config)]
        .into_iter()
        .flatten()
        .map(|d| (d.kind(), d))
        .collect()
}

#[cfg(feature = "libvirt")]
fn libvirt_driver(config: &Config) -> Option<Arc<dyn ComputeDriver>> {
    let l = config.libvirt.clone()?;
    Some(Arc::new(crate::compute::libvirt::LibvirtDriver::new(l)))
}

#[cfg(not(feature = "libvirt"))]
fn libvirt_driver(_: &Config) -> Option<Arc<dyn ComputeDriver>> {
    None
}

/// Opens the store, serves the API until `shutdown`, and recovers what a
/// crash interrupted. On an etcd store (`[cluster]`), the broker serves as
/// a standby until it wins the brokers' election (`active.rs`).
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Running, String> {
    // Stops this broker alone: a term that ends does not cancel the
    // caller's token.
    let shutdown = shutdown.child_token();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let admin = Admin(crate::auth::digest(config.admin_token.expose()));
    let tls = match &config.api_tls {
        Some(t) => Some(
            iris_controller::tls::api_server_config(&t.private_key, &t.certificate)
                .map_err(|e| format!("the API's TLS: {e}"))?,
        ),
        None => None,
    };
    let ended = CancellationToken::new();
    let mut campaigning = None;
    let app = match (&config.etcd, &config.cluster) {
        (Some(etcd), Some(cluster)) => {
            let (app, task) = crate::active::replica(
                config.clone(),
                etcd.clone(),
                cluster.clone(),
                admin,
                shutdown.clone(),
                ended.clone(),
            );
            campaigning = Some(task);
            app
        }
        _ => {
            // Off the runtime's threads: the open may wait for a
            // predecessor's lock, and a predecessor in this process needs
            // them to let go of it.
            let path = config.store.clone();
            let store: Arc<dyn Store> = Arc::new(
                tokio::task::spawn_blocking(move || SledStore::open(&path))
                    .await
                    .map_err(|e| format!("store: {e}"))?
                    .map_err(|e| e.to_string())?,
            );
            let records = Records::load(store).map_err(|e| e.to_string())?;
            let broker = activate(config, records, shutdown.clone())?;
            router(broker, admin)
        }
    };
    let limits = config.api_limits;
    let cap = max_connections(&limits, raise_open_file_limit());
    info!(%addr, "iris-api listening");
    let task = tokio::spawn({
        let ended = ended.clone();
        let serving = serve_with_tls(listener, app, limits, cap, tls, shutdown.clone());
        async move {
            let stop = shutdown.clone();
            let served = tokio::select! {
                r = serving => r,
                () = ended.cancelled() => {
                    stop.cancel();
                    Err(std::io::Error::other(
                        "this broker's term as the active one ended (see the log); restart it \
                         to stand by or lead again",
                    ))
                }
            };
            // An active broker asked to stop resigns before the process
            // ends, so that a standby need not wait for the lease.
            if let Some(c) = campaigning {
                let _ = tokio::time::timeout(RESIGN_WAIT, c).await;
            }
            served
        }
    });
    Ok(Running { addr, ended, task })
}

/// The broker on `records`, with its background work started: recovering
/// what a crash (or the previous active broker's end) interrupted, and
/// keeping the gateways' VIs, until `shutdown`.
pub(crate) fn activate(
    config: &Config,
    records: Records,
    shutdown: CancellationToken,
) -> Result<Arc<Broker>, String> {
    let controller = Controller::new(
        &config.controller_url,
        config.controller_token.clone(),
        config.haas_gateways.clone(),
        config.controller_ca.as_deref(),
    )?;
    let broker = Arc::new(Broker::new(
        records,
        drivers(config),
        controller,
        Gateways::new(config.gateway_apis.clone()),
        config.first_tunnel_key,
        config.node_mtu,
    ));
    // In the background: a PM whose OVSDB does not answer must not keep the
    // API down. Requests meanwhile are safe: a node is recorded before any
    // driver is called, so the sweep never takes a new node for a stray,
    // and a node still building refuses deletion.
    tokio::spawn({
        let broker = broker.clone();
        async move { broker.recover().await }
    });
    if !config.gateway_apis.is_empty() {
        tokio::spawn(broker.clone().keep_gateways(shutdown));
    }
    Ok(broker)
}
