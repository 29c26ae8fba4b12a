//! Starting and stopping the controller's parts: the OpenFlow listener, the
//! control loop, the OVSDB manager and the API, all sharing one shutdown
//! token.

use crate::api;
use crate::api_auth;
use crate::api_server;
use crate::config::Config;
use crate::control::{Configured, Control, ManagedHost};
use crate::forward;
use crate::metrics::Metrics;
use crate::ovs_manager::{self, ManagerConfig, OvsdbTls};
use crate::replica::{self, LeaderView};
use crate::server::{self, ListenAddr, Server, ServerConfig};
use crate::store::etcd::EtcdStore;
use crate::store::{SledStore, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
    /// The store could not be opened or read.
    Store {
        path: std::path::PathBuf,
        error: StoreError,
    },
    /// The API server stopped with an error.
    Api(io::Error),
    /// The OpenFlow listener's key, certificate or CA could not be loaded.
    Tls(String),
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
            Self::Store { path, error } => write!(f, "store {}: {error}", path.display()),
            Self::Api(e) => write!(f, "API server failed: {e}"),
            Self::Tls(e) => write!(f, "OpenFlow over TLS: {e}"),
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
    // Listening comes first: a switch that lost its controller retries on
    // Open vSwitch's schedule (once a second), and one refused while the
    // store loads waits a whole second more; once the socket listens, the
    // kernel completes its connection and it waits in the backlog.
    let open_files = api_server::raise_open_file_limit();
    let api_connections = api_server::max_connections(&config.api_limits, open_files);
    let server_config = ServerConfig {
        session: config.session(),
        max_switches: server::max_switches(open_files, api_connections, config.hosts.len()),
        ..ServerConfig::default()
    };
    let openflow_connections = server_config.max_switches;
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
    let api_tls = match &config.api_tls {
        Some(t) => Some(
            crate::tls::api_server_config(&t.private_key, &t.certificate)
                .map_err(|e| RunError::Tls(format!("the API's TLS: {e}")))?,
        ),
        None => None,
    };
    let mut server = Server::bind(&config.listen, server_config)
        .await
        .map_err(openflow_error)?;
    if let Some(files) = &config.openflow_tls {
        // check-config loaded the files; they may have changed since.
        server = server
            .with_tls(files, metrics.clone())
            .map_err(RunError::Tls)?;
    }
    let api_listener = TcpListener::bind(config.api).await.map_err(api_error)?;
    let bound = Bound {
        openflow: server.local_addr().map_err(openflow_error)?,
        api: api_listener.local_addr().map_err(api_error)?,
    };
    info!(
        openflow = %bound.openflow,
        openflow_tls = config.openflow_tls.is_some(),
        api_tls = config.api_tls.is_some(),
        api = %bound.api,
        hosts = config.hosts.len(),
        vis = config.vis.len(),
        api_connections,
        openflow_connections,
        open_files,
        "iris-controller listening"
    );
    on_bound(&bound);
    for w in config.warnings() {
        warn!("{w}");
    }
    let store_error = |error| RunError::Store {
        path: config.store_name().into(),
        error,
    };
    // A replica starts without etcd's quorum, as a standby (`replica.rs`
    // leads once the quorum is back); a lone controller would have to
    // write what it cannot commit, so it does not.
    let mut generation = 0;
    // Why no replica can lead, known from the start when the store opened
    // without a quorum: writes are refused as the store's 503 from the
    // first request, not as "no replica leads" until the election says so.
    let mut no_quorum = None;
    let store: Box<dyn Store + Send> = match (&config.etcd, &config.cluster) {
        (Some(etcd), Some(_)) => {
            let store = EtcdStore::open_replica(etcd.clone()).map_err(store_error)?;
            generation = store.generation();
            no_quorum = store.without_quorum().map(str::to_owned);
            Box::new(store)
        }
        (Some(etcd), None) => Box::new(EtcdStore::open(etcd.clone()).map_err(store_error)?),
        (None, _) if config.accept_store => {
            Box::new(SledStore::open_accepting(&config.store).map_err(store_error)?)
        }
        (None, _) => Box::new(SledStore::open(&config.store).map_err(store_error)?),
    };
    let stored = match store.load() {
        Err(StoreError::Unavailable { message, .. }) if config.cluster.is_some() => {
            // Not one member answers: the configuration alone until one
            // does (the standby reloads as soon as it can watch).
            warn!(
                "etcd store: no member answers ({message}); standing by on the configuration \
                 alone until one does"
            );
            crate::store::Snapshot::default()
        }
        loaded => loaded.map_err(store_error)?,
    };
    let (hosts, vis, dropped) = with_stored(&config, &stored);
    for d in &dropped {
        warn!("{d}; its record stays in the store, unused");
    }
    info!(
        "store {}: {} registry entries, {} hosts and {} VIs added through the API",
        config.store_name(),
        stored.macs.len(),
        hosts.len() - config.hosts.len(),
        vis.len() - config.vis.len()
    );
    let mut parts = Control::start(hosts, vis, stored.registry(), metrics);
    parts.control.keep_configured(configured(&config));
    parts.control.bind_certificates(config.host_sha256.clone());
    let stranded = parts.control.stranded_entries();
    if let Some((key, why)) = stranded.first() {
        warn!(
            "{} stored registry entries no longer fit the configuration (the first, {}/{}/{}: \
             {why}); frames to them still go where they say, so put their host, gateway or VI \
             back in the configuration, or delete them (DELETE /v1/registry/VI/VLAN/MAC)",
            stranded.len(),
            key.vi,
            key.vlan,
            key.mac
        );
    }
    // The control loop commits each change (a sled batch and a flush, a
    // fraction of a millisecond) before it acts on it.
    parts.control.persist_to(store);
    // A replica starts as a standby: it writes nothing until it has won
    // the election, and then seeds (`replica.rs`).
    let seeds = match config.cluster {
        Some(_) => {
            parts.control.stand_by(generation);
            BTreeMap::new()
        }
        None => config.seeds.clone(),
    };
    for (vi, entries) in &seeds {
        parts
            .control
            .seed(*vi, entries)
            .map_err(|problems| RunError::Seed {
                vi: vi.0,
                problem: problems
                    .iter()
                    .map(|(_, e)| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
    }
    if let Some(error) = parts.control.take_store_failure() {
        return Err(store_error(error));
    }
    if let Some(message) = parts.control.take_refusal() {
        return Err(store_error(StoreError::Unavailable {
            backend: "etcd",
            message,
        }));
    }

    // Answering ARP in the connections needs the control loop's snapshot
    // slot, which exists only now; switches the kernel accepted meanwhile
    // wait in the backlog until the server runs.
    let server = server.answering(parts.answers.clone());

    let manager = ManagerConfig {
        bridge: config.bridge.name.clone(),
        // check-config allows only the two names the parser knows.
        datapath_type: config
            .bridge
            .datapath_type
            .parse()
            .unwrap_or(ovsdb::vswitch::DatapathType::System),
        default_controller: config.bridge.controller.clone(),
        replicas: config
            .cluster
            .iter()
            .flat_map(|c| c.replicas.iter().map(|r| r.openflow.clone()))
            .collect(),
        openflow: config.bridge.openflow,
        backoff_min: Duration::from_millis(250),
        backoff_max: Duration::from_secs(30),
        tls: config.openflow_tls.clone().map(|files| OvsdbTls {
            files,
            host_sha256: config.host_sha256.clone(),
        }),
    };
    // Switches that listen are connected to as soon as their OVSDB has
    // reported their ports, not after Open vSwitch's reconnect backoff.
    let (passive_tx, passive) = watch::channel(BTreeSet::new());
    let server = server.dialing(passive);
    let (writes_tx, writes) = watch::channel(config.cluster.is_none());
    let (view_tx, view) = watch::channel(LeaderView {
        me: config.cluster.is_none(),
        leader: None,
        unavailable: no_quorum,
    });
    let replica = match (&config.cluster, &config.etcd) {
        (Some(cluster), Some(etcd)) => Some(tokio::spawn(replica::run(
            Arc::new(config.clone()),
            cluster.clone(),
            etcd.clone(),
            parts.handle.clone(),
            view_tx,
            writes_tx,
            shutdown.clone(),
        ))),
        _ => None,
    };
    let ovs = tokio::spawn(ovs_manager::run_gated(
        manager,
        writes,
        parts.hosts,
        parts.senders.topology,
        passive_tx,
        shutdown.clone(),
    ));
    let control = tokio::spawn(parts.control.run(parts.inputs, shutdown.clone()));
    let openflow = tokio::spawn(server.serve(parts.senders.switches, shutdown.clone()));
    let mut router = api::router(parts.handle.with_ovsdb_transport(config.ovsdb_transport));
    if let Some(cluster) = &config.cluster {
        router = forward::writes_to_leader(router, forward::Forwarder::new(cluster, view));
    }
    let router = match config.api_auth.token_hashes.is_empty() {
        true => router,
        false => api_auth::guarded(
            router,
            api_auth::ApiAuth::new(
                config.api_auth.token_hashes.clone(),
                config.api_auth.open_routes.clone(),
            ),
        ),
    };
    let api_result = api_server::serve_with_tls(
        api_listener,
        router,
        config.api_limits,
        api_connections,
        api_tls,
        shutdown.clone(),
    )
    .await;
    // The API ends only on shutdown or failure; either way everything stops.
    shutdown.cancel();
    let _ = openflow.await;
    let _ = ovs.await;
    if let Some(r) = replica {
        let _ = r.await;
    }
    if let Ok(Err(error)) = control.await {
        return Err(store_error(error));
    }
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

/// What the configuration file defines, which the API may not change.
fn configured(config: &Config) -> Configured {
    Configured {
        hosts: config.hosts.iter().map(|m| m.host.name.clone()).collect(),
        vis: config.vis.iter().map(|v| v.id).collect(),
    }
}

/// The configuration's hosts and VIs, plus those added through the API in
/// an earlier run (the configuration wins where both name the same one),
/// and why each stored one left out is.
pub(crate) fn with_stored(
    config: &Config,
    stored: &crate::store::Snapshot,
) -> (Vec<ManagedHost>, Vec<crate::model::Vi>, Vec<String>) {
    let mut dropped = Vec::new();
    let mut hosts = config.hosts.clone();
    for h in &stored.hosts {
        let clash = hosts.iter().map(|m| &m.host).find_map(|c| {
            if c.name == h.name {
                Some(format!("its name is host {}'s", c.name))
            } else if c.underlay_ip == h.underlay_ip {
                Some(format!(
                    "its underlay_ip {} is host {}'s",
                    h.underlay_ip, c.name
                ))
            } else if c.datapath_id == h.datapath_id {
                Some(format!(
                    "its datapath_id {:016x} is host {}'s",
                    h.datapath_id, c.name
                ))
            } else {
                None
            }
        });
        match clash {
            Some(why) => dropped.push(format!(
                "host {} added through the API is left out: {why} in the configuration",
                h.name
            )),
            None => hosts.push(ManagedHost {
                host: h.clone(),
                controller: None,
            }),
        }
    }
    let mut vis = config.vis.clone();
    for v in &stored.vis {
        let clash = vis.iter().find_map(|c| {
            if c.id == v.id {
                Some(format!("its id is {} ({})'s", c.id, c.name))
            } else if c.gre_key == v.gre_key {
                Some(format!("its gre_key {} is {}'s", v.gre_key, c.id))
            } else if c.name == v.name {
                Some(format!("its name {:?} is {}'s", v.name, c.id))
            } else {
                None
            }
        });
        match clash {
            Some(why) => dropped.push(format!(
                "{} ({}) added through the API is left out: {why} in the configuration",
                v.id, v.name
            )),
            None => vis.push(v.clone()),
        }
    }
    (hosts, vis, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Host, HostName, HostRole, Vi, ViId};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request over a fresh connection: the status and the body.
    async fn http(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut conn = tokio::net::TcpStream::connect(api).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: iris\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.unwrap();
        let status = reply[9..12].parse().unwrap();
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }

    /// Runs the controller on `config` until `work` is done with its API.
    async fn with_controller<F: std::future::Future<Output = ()>>(
        config: &Config,
        work: impl FnOnce(SocketAddr) -> F,
    ) {
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let running = tokio::spawn(run(config.clone(), shutdown.clone(), move |b| {
            let _ = tx.send(b.api);
        }));
        work(rx.await.unwrap()).await;
        shutdown.cancel();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_configuration_stays_read_only_and_api_entries_of_its_vis_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.csv"), "52:54:00:00:00:01,10.1.1.1\n").unwrap();
        let text = format!(
            "listen = \"127.0.0.1:0\"\nplain_openflow = true\napi = \"127.0.0.1:0\"\nstore = \"store\"\n\
             [[host]]\nname = \"gw1\"\nunderlay_ip = \"10.0.0.9\"\nrole = \"gateway\"\n\
             ovsdb = \"unix:{0}/gw1.sock\"\n\
             [[vi]]\nid = 1\nname = \"acme\"\ngre_key = 1001\ngateways = [\"gw1\"]\n\
             seed = \"acme.csv\"\n",
            dir.path().display()
        );
        let config = Config::parse(&text, dir.path()).unwrap();
        assert_eq!(config.store, dir.path().join("store"));
        let entry = "/v1/registry/1/untagged/52:54:00:00:00:02";
        with_controller(&config, |api| async move {
            let body = r#"{"location":{"kind":"gateway","gateway":"gw1"},"ips":["10.1.1.2"]}"#;
            assert_eq!(http(api, "PUT", entry, body).await.0, 201);
            let vi = r#"{"id":1,"name":"acme","gre_key":1001,"gateways":[]}"#;
            let (status, body) = http(api, "PUT", "/v1/vis/1", vi).await;
            assert_eq!(status, 409, "{body}");
            assert!(body.contains("[[vi]]"), "{body}");
            let (status, body) = http(api, "DELETE", "/v1/hosts/gw1", "").await;
            assert_eq!(status, 409, "{body}");
            assert!(body.contains("configuration file"), "{body}");
        })
        .await;
        with_controller(&config, |api| async move {
            let (status, body) = http(api, "GET", entry, "").await;
            assert_eq!(status, 200, "the entry survives the restart: {body}");
            assert!(body.contains("10.1.1.2") && body.contains("gw1"), "{body}");
            let (_, body) = http(api, "GET", "/v1/registry/1/untagged/52:54:00:00:00:01", "").await;
            assert!(
                body.contains("10.1.1.1"),
                "the seeded entry is there too: {body}"
            );
            let (_, body) = http(api, "GET", "/v1/vis/1", "").await;
            assert!(body.contains("gw1"), "the VI is as configured: {body}");
        })
        .await;
    }

    /// One request over HTTPS, trusting `ca` for the name `controller`.
    async fn https(api: SocketAddr, ca: &std::path::Path, request: &str) -> io::Result<String> {
        let mut tls = crate::tls::connect_for_tests(api, ca, None).await?;
        tls.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        tls.read_to_string(&mut reply).await?;
        Ok(reply)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_over_tls_answers_https_and_still_asks_for_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let pki = iris_testbed::pki::Pki::new(dir.path(), "iris").unwrap();
        let ours = pki.issue("controller").unwrap();
        let token = "api-over-tls-token-1234";
        let hash = api_auth::hash_token(token).unwrap();
        let text = format!(
            "listen = \"127.0.0.1:0\"\nplain_openflow = true\napi = \"127.0.0.1:0\"\n\
             store = \"store\"\n[api_tls]\nprivate_key = {:?}\ncertificate = {:?}\n\
             [api_auth]\ntoken_hashes = [\"{hash}\"]\n",
            ours.private_key, ours.certificate
        );
        let config = Config::parse(&text, dir.path()).unwrap();
        assert!(config.summary().contains("api:       https://"));
        let ca = pki.ca_certificate.clone();
        with_controller(&config, |api| async move {
            let get = "GET /healthz HTTP/1.1\r\nhost: iris\r\nconnection: close\r\n\r\n";
            let reply = https(api, &ca, get).await.unwrap();
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
            let vi = r#"{"id":2,"name":"globex","gre_key":1002,"gateways":[]}"#;
            let put = |auth: &str| {
                format!(
                    "PUT /v1/vis/2 HTTP/1.1\r\nhost: iris\r\n{auth}content-type: \
                     application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{vi}",
                    vi.len()
                )
            };
            let reply = https(api, &ca, &put("")).await.unwrap();
            assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
            let auth = format!("authorization: Bearer {token}\r\n");
            let reply = https(api, &ca, &put(&auth)).await.unwrap();
            assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
            // Plain HTTP gets no HTTP answer from a TLS port.
            let mut conn = tokio::net::TcpStream::connect(api).await.unwrap();
            conn.write_all(get.as_bytes()).await.unwrap();
            let mut reply = Vec::new();
            let _ = conn.read_to_end(&mut reply).await;
            assert!(!reply.starts_with(b"HTTP/1.1"), "{reply:?}");
        })
        .await;
    }

    #[test]
    fn stored_hosts_and_vis_that_clash_with_the_configuration_are_named() {
        let config = Config::parse(
            "plain_openflow = true\n[[host]]\nname = \"pm1\"\nunderlay_ip = \"10.0.0.1\"\nrole = \"compute\"\n\
             ovsdb = \"unix:/run/pm1.sock\"\n\n[[vi]]\nid = 1\nname = \"acme\"\ngre_key = 1001\n",
            std::path::Path::new("."),
        )
        .unwrap();
        let host = |name: &str, ip: [u8; 4], dpid| Host {
            name: HostName(name.into()),
            underlay_ip: ip.into(),
            role: HostRole::Compute,
            ovsdb_remote: "unix:/x".into(),
            datapath_id: dpid,
        };
        let vi = |id, name: &str, gre_key| Vi {
            id: ViId(id),
            name: name.into(),
            gre_key,
            gateways: vec![],
        };
        let stored = crate::store::Snapshot {
            hosts: vec![host("pm2", [10, 0, 0, 2], 2), host("pm3", [10, 0, 0, 1], 3)],
            vis: vec![vi(2, "globex", 1002), vi(3, "initech", 1001)],
            ..Default::default()
        };
        let (hosts, vis, dropped) = with_stored(&config, &stored);
        assert_eq!(hosts.len(), 2);
        assert_eq!(vis.len(), 2);
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(
            dropped[0].contains("pm3") && dropped[0].contains("underlay_ip 10.0.0.1"),
            "{dropped:?}"
        );
        assert!(
            dropped[1].contains("vi3") && dropped[1].contains("gre_key 1001"),
            "{dropped:?}"
        );
    }
}
