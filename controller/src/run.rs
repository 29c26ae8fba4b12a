//! Starting and stopping the controller's parts: the OpenFlow listener, the
//! control loop, the OVSDB manager and the API, all sharing one shutdown
//! token.

use crate::api;
use crate::config::Config;
use crate::control::Control;
use crate::metrics::Metrics;
use crate::ovs_manager::{self, ManagerConfig};
use crate::registry::Registry;
use crate::server::{ListenAddr, Server, ServerConfig};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Why the controller could not start or had to stop.
#[derive(Debug)]
pub enum RunError {
    /// A listening socket could not be opened.
    Bind {
        what: &'static str,
        addr: String,
        error: io::Error,
    },
    /// A VI's seed entries do not fit the configured topology.
    Seed { vi: u32, problem: String },
    /// The API server stopped with an error.
    Api(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { what, addr, error } => write!(
                f,
                "cannot listen for the {what} on {addr}: {error}; choose a free address in the \
                 configuration"
            ),
            Self::Seed { vi, problem } => write!(f, "seed entries of vi{vi}: {problem}"),
            Self::Api(e) => write!(f, "API server failed: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// The addresses actually bound (they differ from the configuration's when
/// it asks for port 0).
#[derive(Debug, Clone)]
pub struct Bound {
    pub openflow: ListenAddr,
    pub api: SocketAddr,
}

/// Runs the controller until `shutdown` is cancelled. `on_bound` is told
/// the listening addresses once every socket is open.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(&Bound),
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::default());
    let mut parts = Control::start(
        config.hosts.clone(),
        config.vis.clone(),
        Registry::new(),
        metrics,
    );
    for (vi, entries) in &config.seeds {
        parts
            .control
            .seed(*vi, entries)
            .map_err(|e| RunError::Seed {
                vi: vi.0,
                problem: e.to_string(),
            })?;
    }

    let server_config = ServerConfig {
        session: config.session(),
        ..ServerConfig::default()
    };
    let openflow_error = |error| RunError::Bind {
        what: "OpenFlow switches",
        addr: config.listen.to_string(),
        error,
    };
    let api_error = |error| RunError::Bind {
        what: "northbound API",
        addr: config.api.to_string(),
        error,
    };
    let server = Server::bind(&config.listen, server_config)
        .await
        .map_err(openflow_error)?;
    let api_listener = TcpListener::bind(config.api).await.map_err(api_error)?;
    let bound = Bound {
        openflow: server.local_addr().map_err(openflow_error)?,
        api: api_listener.local_addr().map_err(api_error)?,
    };
    info!(
        openflow = %bound.openflow,
        api = %bound.api,
        hosts = config.hosts.len(),
        vis = config.vis.len(),
        "iris-controller listening"
    );
    on_bound(&bound);

    let manager = ManagerConfig {
        bridge: config.bridge.name.clone(),
        // check-config allows only the two names the parser knows.
        datapath_type: config
            .bridge
            .datapath_type
            .parse()
            .unwrap_or(ovsdb::vswitch::DatapathType::System),
        default_controller: config.bridge.controller.clone(),
        backoff_min: Duration::from_millis(250),
        backoff_max: Duration::from_secs(30),
    };
    let ovs = tokio::spawn(ovs_manager::run(
        manager,
        parts.hosts,
        parts.senders.topology,
        shutdown.clone(),
    ));
    let control = tokio::spawn(parts.control.run(parts.inputs, shutdown.clone()));
    let openflow = tokio::spawn(server.serve(parts.senders.switches, shutdown.clone()));
    let api_shutdown = shutdown.clone();
    let api = axum::serve(api_listener, api::router(parts.handle))
        .with_graceful_shutdown(async move { api_shutdown.cancelled().await });
    let api_result = api.await;
    // The API ends only on shutdown or failure; either way everything stops.
    shutdown.cancel();
    let _ = openflow.await;
    let _ = ovs.await;
    let _ = control.await;
    match api_result {
        Ok(()) => {
            info!("iris-controller stopped");
            Ok(())
        }
        Err(e) => {
            error!("API server failed: {e}");
            Err(RunError::Api(e))
        }
    }
}
