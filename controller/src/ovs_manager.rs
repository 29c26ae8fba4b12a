//! Keeping every host's Open vSwitch right through OVSDB, and telling the
//! control loop what its ports are.
//!
//! One task per host connects to the host's ovsdb-server and makes the
//! integration bridge match the configuration (datapath type, OpenFlow 1.3
//! only, `fail_mode=secure`, the controller target, `other_config:datapath-id`
//! so the OpenFlow connection maps to the host) and its GRE tunnels
//! (`key=flow`, one port per peer) match the current host list: the mesh
//! grows and shrinks as hosts come and go, without restarting anything. It
//! then watches the Interface table and reports the ofports of tunnels and
//! of VM ports (`external_ids:iris-vi`). A lost ovsdb-server is reconnected
//! with exponential backoff.
//!
//! A bridge either connects to the controller (active mode) or listens on a
//! passive target for the controller to connect to it (passive mode,
//! [`OpenFlowMode`]). A listening switch is offered to the server's
//! connector (`switches`) only once its host's OVSDB has reported the
//! bridge's ports in the current session, at the start only once every
//! host has (or [`START_GATE`] has passed), and only once the control loop
//! has taken those reports: a switch's tables depend on its own VM ports
//! and on the other hosts' (a VI's flood group has a bucket for each host
//! with a member), and a switch planned before they are known would lose
//! flows until they came.
//!
//! What a host's bridge should be ([`plans`]) and what its interfaces mean
//! ([`ports_report`]) are pure functions; the tasks only move data.

use crate::control::{ManagedHost, TopologyEvent, VmPortSeen};
use crate::model::{HostName, ViId};
use crate::server::ListenAddr;
use ovsdb::vswitch::{BridgeSpec, DatapathType, InterfaceInfo, TunnelSpec};
use ovsdb::{Remote, Vswitch};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// Who opens a switch's OpenFlow connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenFlowMode {
    /// The switch connects to the controller, and after losing it retries
    /// on Open vSwitch's schedule (its first retry a second later).
    #[default]
    Active,
    /// The switch listens beside its OVSDB and the controller connects to
    /// it, so a restarted controller has it back at once.
    Passive,
}

/// How every host's bridge is set up, and how hard to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    pub bridge: String,
    pub datapath_type: DatapathType,
    /// The controller target for hosts that name none of their own, in
    /// active mode.
    pub default_controller: String,
    /// With `[cluster]`: every replica's target, which each bridge that
    /// names no target of its own gets in active mode instead of the
    /// default, so that it keeps a connection with every replica.
    pub replicas: Vec<String>,
    /// The mode of hosts that name no target of their own.
    pub openflow: OpenFlowMode,
    /// First wait after a failed connection; doubled up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// For hosts with an `ssl:` OVSDB remote: the controller's `[tls]`
    /// files, and the certificates bound to hosts by fingerprint.
    pub tls: Option<OvsdbTls>,
}

/// See [`ManagerConfig::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsdbTls {
    pub files: crate::tls::TlsFiles,
    pub host_sha256: BTreeMap<HostName, [u8; 32]>,
}

impl OvsdbTls {
    /// The client options for `host`'s `ssl:` remote.
    fn options(&self, host: &HostName) -> Result<ovsdb::Options, String> {
        let config = self
            .files
            .ovsdb_client_config(self.host_sha256.get(host).copied())?;
        let tls = ovsdb::Tls::new(config, &host.0).map_err(|e| {
            format!(
                "host name {:?} cannot be checked against a certificate: {e}",
                host.0
            )
        })?;
        Ok(ovsdb::Options {
            tls: Some(tls),
            ..ovsdb::Options::default()
        })
    }
}

/// What one host's OVSDB must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub remote: String,
    pub bridge: BridgeSpec,
    pub tunnels: Vec<TunnelSpec>,
}

/// The tunnel port toward the host at `peer`: named after the address so
/// the name is stable, unique per peer, and short enough for a device name.
pub fn tunnel_name(peer: Ipv4Addr) -> String {
    format!("gre-{:08x}", u32::from(peer))
}

/// The controller target host `m`'s bridge gets: its own, else in active
/// mode the default, else in passive mode one beside its OVSDB (a socket in
/// the directory of a unix remote, where vswitchd accepts one, or the
/// OpenFlow port on a TCP or SSL remote's address, `pssl:` with TLS).
pub fn target_of(config: &ManagerConfig, m: &ManagedHost) -> String {
    if let Some(own) = &m.controller {
        return own.clone();
    }
    match config.openflow {
        OpenFlowMode::Active => config.default_controller.clone(),
        OpenFlowMode::Passive => {
            let remote = &m.host.ovsdb_remote;
            match remote.strip_prefix("unix:") {
                Some(path) => {
                    let dir = std::path::Path::new(path)
                        .parent()
                        .unwrap_or(std::path::Path::new("/"));
                    format!(
                        "punix:{}",
                        dir.join(passive_socket_name(&config.bridge)).display()
                    )
                }
                None => {
                    // check-config admits only unix:, tcp:IP:PORT and
                    // ssl:IP:PORT remotes.
                    let ip = match remote.parse::<Remote>() {
                        Ok(Remote::Tcp(a) | Remote::Ssl(a)) => Some(a),
                        _ => None,
                    };
                    let ip = ip.map_or_else(
                        || "127.0.0.1".to_owned(),
                        |a| match a.ip() {
                            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                            v4 => v4.to_string(),
                        },
                    );
                    // Over TLS when the controller speaks it (its dialled
                    // TCP connections are TLS then).
                    let scheme = if config.tls.is_some() { "pssl" } else { "ptcp" };
                    format!("{scheme}:{OPENFLOW_PORT}:{ip}")
                }
            }
        }
    }
}

/// The IANA OpenFlow port, where a switch on a TCP OVSDB remote listens in
/// passive mode.
pub const OPENFLOW_PORT: u16 = 6653;

/// The socket a bridge listens on in passive mode, beside `db.sock`.
pub fn passive_socket_name(bridge: &str) -> String {
    format!("{bridge}.iris.sock")
}

/// What every host's OVSDB must say, given all hosts.
pub fn plans(config: &ManagerConfig, hosts: &[ManagedHost]) -> BTreeMap<HostName, HostPlan> {
    hosts
        .iter()
        .map(|m| {
            let h = &m.host;
            let mut bridge = BridgeSpec::new(config.bridge.clone())
                .datapath_type(config.datapath_type)
                .datapath_id(h.datapath_id);
            let replicas = m.controller.is_none()
                && config.openflow == OpenFlowMode::Active
                && !config.replicas.is_empty();
            if replicas {
                bridge.controller = config.replicas.clone();
            } else {
                bridge.controller = vec![target_of(config, m)];
            }
            let tunnels = hosts
                .iter()
                .filter(|o| o.host.name != h.name)
                .map(|o| {
                    let ip = o.host.underlay_ip;
                    TunnelSpec::gre(tunnel_name(ip), ip.into())
                })
                .collect();
            (
                h.name.clone(),
                HostPlan {
                    remote: h.ovsdb_remote.clone(),
                    bridge,
                    tunnels,
                },
            )
        })
        .collect()
}

/// The ports of a bridge the control loop cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgePorts {
    pub vm_ports: Vec<VmPortSeen>,
    /// (remote underlay address, ofport).
    pub tunnels: Vec<(Ipv4Addr, u32)>,
}

/// VM ports and tunnels on `bridge`, from its interfaces: VM ports are those
/// tagged `external_ids:iris-vi=<id>`, tunnels the GRE interfaces by remote
/// address. Only interfaces with an ofport count. The names of interfaces
/// tagged with a VI id that is not a number come second.
pub fn ports_report(bridge: &str, interfaces: &[InterfaceInfo]) -> (BridgePorts, Vec<String>) {
    let mut vm_ports = Vec::new();
    let mut tunnels = Vec::new();
    let mut bad_vi = Vec::new();
    for i in interfaces {
        if i.bridge.as_deref() != Some(bridge) {
            continue;
        }
        let Some(ofport) = i.ofport.number() else {
            continue;
        };
        if let Some(vi) = i.vi() {
            match vi.parse::<u32>() {
                Ok(v) if ViId(v).is_valid() => vm_ports.push(VmPortSeen {
                    name: i.name.clone(),
                    ofport,
                    vi: ViId(v),
                    attached_mac: i
                        .external_ids
                        .get("attached-mac")
                        .and_then(|m| m.parse().ok()),
                }),
                _ => bad_vi.push(i.name.clone()),
            }
        } else if i.kind == ovsdb::vswitch::TUNNEL_TYPE {
            if let Some(ip) = i
                .options
                .get("remote_ip")
                .and_then(|r| r.parse::<Ipv4Addr>().ok())
            {
                tunnels.push((ip, ofport));
            }
        }
    }
    vm_ports.sort_by_key(|p| p.ofport);
    tunnels.sort();
    (BridgePorts { vm_ports, tunnels }, bad_vi)
}

/// How long after the start the connector may wait for every host's first
/// ports report before it is given the switches whose hosts have reported:
/// a host whose OVSDB does not answer must not keep the others away (in
/// active mode Open vSwitch takes about as long to come back).
pub const START_GATE: Duration = Duration::from_secs(1);

/// How often to look whether the control loop has taken the reports.
const REPORTS_TAKEN_POLL: Duration = Duration::from_millis(2);

/// Per host, once its OVSDB session has reported the bridge's ports: its
/// switch's passive target, if it has one.
type Reported = BTreeMap<HostName, Option<ListenAddr>>;

/// Keeps every host in `hosts` right until `shutdown` is cancelled, and
/// `switches` at the passive targets of the hosts whose ports have been
/// reported (at the start, once every host's have, or after
/// [`START_GATE`]).
pub async fn run(
    config: ManagerConfig,
    hosts: watch::Receiver<Vec<ManagedHost>>,
    events: mpsc::Sender<TopologyEvent>,
    switches: watch::Sender<BTreeSet<ListenAddr>>,
    shutdown: CancellationToken,
) {
    let (_always, writes) = watch::channel(true);
    run_gated(config, writes, hosts, events, switches, shutdown).await;
}

/// [`run`], writing to the hosts' databases only while `writes` says so
/// (a standby replica of a `[cluster]` only reads them: it reports ports,
/// and puts the bridges right once it leads).
pub async fn run_gated(
    config: ManagerConfig,
    writes: watch::Receiver<bool>,
    mut hosts: watch::Receiver<Vec<ManagedHost>>,
    events: mpsc::Sender<TopologyEvent>,
    switches: watch::Sender<BTreeSet<ListenAddr>>,
    shutdown: CancellationToken,
) {
    let mut tasks: BTreeMap<HostName, (watch::Sender<HostPlan>, CancellationToken)> =
        BTreeMap::new();
    let mut joins = JoinSet::new();
    let (reported_tx, mut reported) = watch::channel(Reported::new());
    let gate = tokio::time::Instant::now() + START_GATE;
    let mut open = false;
    loop {
        let wanted = plans(&config, &hosts.borrow_and_update());
        tasks.retain(|name, (_, token)| {
            let keep = wanted.contains_key(name);
            if !keep {
                info!(host = %name, "host removed; no longer managing its OVSDB");
                token.cancel();
            }
            keep
        });
        for (name, plan) in wanted {
            match tasks.get(&name) {
                Some((tx, _)) => {
                    tx.send_if_modified(|p| {
                        let changed = *p != plan;
                        *p = plan;
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(plan);
                    let token = shutdown.child_token();
                    let span = info_span!("ovsdb", host = %name);
                    let task = HostTask {
                        name: name.clone(),
                        bridge: config.bridge.clone(),
                        plan: rx,
                        events: events.clone(),
                        reported: reported_tx.clone(),
                        writes: writes.clone(),
                        token: token.clone(),
                        backoff_min: config.backoff_min,
                        backoff_max: config.backoff_max,
                        tls: config.tls.clone(),
                    };
                    joins.spawn(task.run().instrument(span));
                    tasks.insert(name, (tx, token));
                }
            }
        }
        // A switch is offered only once the control loop has taken every
        // report sent so far: it takes a burst of reports whole before its
        // next input, so none of them can come after the switch's handshake.
        let mut waiting = false;
        {
            let r = reported.borrow_and_update();
            open = open
                || tasks.keys().all(|h| r.contains_key(h))
                || tokio::time::Instant::now() >= gate;
            let now: BTreeSet<ListenAddr> = r.values().flatten().cloned().collect();
            if open && *switches.borrow() != now {
                if events.capacity() == events.max_capacity() {
                    switches.send_replace(now);
                } else {
                    waiting = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = hosts.changed() => if changed.is_err() { break },
            // Reap tasks of removed hosts as they end.
            Some(_) = joins.join_next(), if !joins.is_empty() => {}
            _ = reported.changed() => {}
            _ = tokio::time::sleep_until(gate), if !open => {}
            _ = tokio::time::sleep(REPORTS_TAKEN_POLL), if waiting => {}
        }
    }
    shutdown.cancel();
    while joins.join_next().await.is_some() {}
}

/// How a connection to one host's OVSDB ended.
enum Ended {
    Shutdown,
    /// Connected, then lost; retry from the shortest wait.
    Lost(String),
    /// Could not connect or could not apply; retry after a longer wait.
    Failed(String),
}

struct HostTask {
    name: HostName,
    bridge: String,
    plan: watch::Receiver<HostPlan>,
    events: mpsc::Sender<TopologyEvent>,
    /// Where this host says it has reported its ports, and its switch's
    /// passive target.
    reported: watch::Sender<Reported>,
    /// Whether this controller may write to the database now.
    writes: watch::Receiver<bool>,
    token: CancellationToken,
    backoff_min: Duration,
    backoff_max: Duration,
    tls: Option<OvsdbTls>,
}

impl HostTask {
    async fn run(mut self) {
        self.keep_right().await;
        // The host is gone: so is its switch, for the connector.
        self.reported
            .send_if_modified(|r| r.remove(&self.name).is_some());
    }

    /// Says this session has reported the bridge's ports, with the plan's
    /// passive target if it has one.
    fn offer_plan(&mut self, plan: &HostPlan) {
        let target = plan
            .bridge
            .controller
            .iter()
            .find_map(|t| ListenAddr::of_passive_target(t).ok().flatten());
        self.reported.send_if_modified(|r| {
            let changed = r.get(&self.name) != Some(&target);
            r.insert(self.name.clone(), target);
            changed
        });
    }

    async fn keep_right(&mut self) {
        let mut backoff = self.backoff_min;
        let mut failures = 0u32;
        loop {
            match self.serve().await {
                Ended::Shutdown => return,
                Ended::Lost(why) => {
                    warn!("OVSDB connection lost: {why}; reconnecting");
                    self.report_connected(false).await;
                    backoff = self.backoff_min;
                    failures = 0;
                }
                Ended::Failed(why) => {
                    // The first failure of a streak is worth a warning; the
                    // rest would only repeat it.
                    if failures == 0 {
                        warn!("{why}; retrying every {:?} at most", self.backoff_max);
                    } else {
                        debug!("{why}");
                    }
                    failures += 1;
                }
            }
            tokio::select! {
                _ = self.token.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
                // A new plan (say, a corrected remote) is worth trying at once.
                _ = self.plan.changed() => {}
            }
            backoff = (backoff * 2).min(self.backoff_max);
        }
    }

    /// A session that was reported up could not apply the plan (often
    /// because the server went away meanwhile): it is reported down, and
    /// retried after a growing wait like a failed connection.
    async fn failed_after_connecting(&self, why: String) -> Ended {
        self.report_connected(false).await;
        Ended::Failed(why)
    }

    async fn report_connected(&self, connected: bool) {
        let _ = self
            .events
            .send(TopologyEvent::Ovsdb {
                host: self.name.clone(),
                connected,
            })
            .await;
    }

    /// One session: connect, make the switch right, report its ports until
    /// the session ends.
    async fn serve(&mut self) -> Ended {
        let plan = self.plan.borrow_and_update().clone();
        let remote: Remote = match plan.remote.parse() {
            Ok(r) => r,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let options = match (&remote, &self.tls) {
            (Remote::Ssl(_), Some(tls)) => match tls.options(&self.name) {
                Ok(o) => o,
                Err(e) => return Ended::Failed(e),
            },
            // Without TLS settings the client refuses an ssl: remote and
            // says why.
            _ => ovsdb::Options::default(),
        };
        let vs = tokio::select! {
            _ = self.token.cancelled() => return Ended::Shutdown,
            r = Vswitch::connect_with(&remote, options) => match r {
                Ok(vs) => vs,
                Err(e) => return Ended::Failed(e.to_string()),
            },
        };
        if let Err(e) = self.apply(&vs, &plan).await {
            return Ended::Failed(e);
        }
        info!(remote = %remote, "OVSDB connected; bridge {} configured", self.bridge);
        self.report_connected(true).await;
        let mut watch = match vs.watch_interfaces().await {
            Ok(w) => w,
            Err(e) => return Ended::Lost(e.to_string()),
        };
        let mut last = None;
        let mut warned: BTreeSet<String> = BTreeSet::new();
        self.report_ports(&vs, &mut last, &mut warned).await;
        self.offer_plan(&plan);
        let mut replica = vs.replica();
        loop {
            tokio::select! {
                // Another client changed the database (a controller target
                // added by hand would give the switch a second connection,
                // and the two would take turns superseding each other): the
                // bridge is put right again. Nothing is sent when nothing
                // differs, so the change this repair makes ends here.
                changed = replica.changed() => {
                    if changed.is_err() {
                        return Ended::Lost(vs.closed().await.to_string());
                    }
                    let plan = self.plan.borrow().clone();
                    if let Err(e) = self.apply(&vs, &plan).await {
                        return self.failed_after_connecting(e).await;
                    }
                }
                _ = self.token.cancelled() => return Ended::Shutdown,
                // Became leader: the bridge is put right now.
                changed = self.writes.changed() => {
                    if changed.is_err() {
                        return Ended::Shutdown;
                    }
                    let plan = self.plan.borrow().clone();
                    if let Err(e) = self.apply(&vs, &plan).await {
                        return self.failed_after_connecting(e).await;
                    }
                }
                reason = vs.closed() => return Ended::Lost(reason.to_string()),
                changed = self.plan.changed() => {
                    if changed.is_err() {
                        return Ended::Shutdown;
                    }
                    let plan = self.plan.borrow_and_update().clone();
                    if plan.remote != remote.to_string() {
                        return Ended::Lost(format!("the remote changed to {}", plan.remote));
                    }
                    if let Err(e) = self.apply(&vs, &plan).await {
                        return self.failed_after_connecting(e).await;
                    }
                    self.offer_plan(&plan);
                }
                event = watch.next() => match event {
                    Some(_) => self.report_ports(&vs, &mut last, &mut warned).await,
                    None => return Ended::Lost(vs.closed().await.to_string()),
                },
            }
        }
    }

    async fn apply(&self, vs: &Vswitch, plan: &HostPlan) -> Result<(), String> {
        if !*self.writes.borrow() {
            debug!("a standby: the bridge is the leader's to put right");
            return Ok(());
        }
        let bridge = vs
            .ensure_bridge(&plan.bridge)
            .await
            .map_err(|e| format!("cannot configure bridge {}: {e}", self.bridge))?;
        let tunnels = vs
            .set_tunnels(&self.bridge, &plan.tunnels)
            .await
            .map_err(|e| format!("cannot set the tunnels of {}: {e}", self.bridge))?;
        debug!(?bridge, ?tunnels, peers = plan.tunnels.len(), "applied");
        Ok(())
    }

    /// Sends the bridge's ports to the control loop if they changed.
    async fn report_ports(
        &self,
        vs: &Vswitch,
        last: &mut Option<BridgePorts>,
        warned: &mut BTreeSet<String>,
    ) {
        let (now, bad) = ports_report(&self.bridge, &vs.interfaces());
        for name in bad {
            if warned.insert(name.clone()) {
                warn!(
                    "interface {name} has external_ids:iris-vi that is not a VI id; write the \
                     VI's number (1-{})",
                    ViId::MAX
                );
            }
        }
        if last.as_ref() == Some(&now) {
            return;
        }
        *last = Some(now.clone());
        let _ = self
            .events
            .send(TopologyEvent::Ports {
                host: self.name.clone(),
                vm_ports: now.vm_ports,
                tunnels: now.tunnels,
            })
            .await;
    }
}

#[cfg(test)]
mod tests;
