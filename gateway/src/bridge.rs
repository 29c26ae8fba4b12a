//! Keeping the gateway node's bridge right through OVSDB, and saying how
//! its ports are.
//!
//! - IaaS kind: the gateway's own bridge (`br-gw`: OpenFlow 1.3 only,
//!   `fail_mode=secure`, no controller but the gateway on the management
//!   socket) with the trunk to the data center's LAN and the WAN ports.
//! - HaaS kind: the controller's integration bridge, to which only the WAN
//!   ports are added (each tagged with its VI, so the controller forwards
//!   for it like for a VM port); its other settings and ports are the
//!   controller's and are never touched. Until the controller has created
//!   the bridge, the keeper waits for it.
//! - The encrypted WAN's bridge (`br-wg`, [`BridgePlan::tunnel`]): the tap
//!   to the WireGuard task as its one port, a learning switch, its local
//!   port's MAC pinned; a second keeper keeps it beside the first.
//!
//! A WAN port is a GRE port to one peer gateway for one VI: the VI's fixed
//! key, the peer's and this node's WAN addresses, BFD on, Port
//! `external_ids:iris-role=wan` (see [`ovsdb::vswitch::plan_wan_ports`]).
//!
//! An IaaS bridge also has a flow-based GRE port (`key=flow`,
//! `remote_ip=flow`, [`FOREIGN_PORT`]): Open vSwitch gives a GRE packet to
//! the most specific port that matches it, so packets whose key is no VI's
//! (a peer misconfigured, or someone else's traffic) arrive there instead of
//! vanishing uncounted, and the flow table drops and counts them.
//!
//! The keeper watches the database: a port someone deletes or changes is
//! put back at once. A lost ovsdb-server is reconnected with exponential
//! backoff. What the ports look like (ofports, BFD state, counters) is
//! published on a watch channel: [`BridgeStatus`], from which
//! [`BridgeStatus::pipeline_plan`] gives the flow table's input.
//!
//! What the bridge should be ([`BridgePlan`]) and what its ports say
//! ([`status_of`]) are pure; the task only moves data.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ovsdb::vswitch::{
    Bfd, BridgeSpec, DatapathType, Detail, FailMode, Replica, TunnelSpec, WanPortSpec, ROLE_KEY,
    ROLE_TRUNK,
};
use ovsdb::{Remote, Vswitch};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::pipeline::{PipelinePlan, ViPath, VlanSet};

/// Which data center the gateway serves, as far as its bridge goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BridgeKind {
    /// WAN ports on the controller's integration bridge.
    Haas,
    /// A bridge of the gateway's own, with the trunk.
    Iaas,
}

/// One GRE port to a peer gateway, for one VI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WanPort {
    /// The port's name (a network device name: at most 15 bytes).
    pub name: String,
    pub vi: u32,
    /// The VI's GRE key.
    pub key: u32,
    /// The peer gateway's WAN address.
    pub remote_ip: IpAddr,
    /// This node's WAN address; `None` lets the routing table choose.
    pub local_ip: Option<IpAddr>,
}

/// What the gateway's bridge should be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BridgePlan {
    pub bridge: String,
    pub kind: BridgeKind,
    /// The datapath of a bridge the keeper creates (IaaS kind).
    pub datapath_type: DatapathType,
    /// The network device of the trunk to the DC's LAN (IaaS kind).
    pub trunk: Option<String>,
    pub wan_ports: Vec<WanPort>,
    /// BFD on every WAN port; `None` turns it off.
    pub bfd: Option<Bfd>,
    /// Whether the bridge gets the [`FOREIGN_PORT`] (IaaS kind only: the
    /// HaaS bridge's tunnels are the controller's).
    pub catch_foreign_keys: bool,
    /// What a bridge the keeper creates does without flows (IaaS kind).
    pub fail_mode: FailMode,
    /// Its local port's Ethernet address, pinned (`other_config:hwaddr`)
    /// rather than left to ovs-vswitchd, which picks it from the ports.
    pub hwaddr: Option<[u8; 6]>,
}

/// The flow-based GRE port where packets with a key of no VI arrive.
pub const FOREIGN_PORT: &str = "gw-foreign";

/// BFD every 300 ms: a cut WAN shows as `down` within a second (three
/// missed packets), without loading a slow link.
pub const DEFAULT_BFD: Bfd = Bfd {
    min_rx_ms: 300,
    min_tx_ms: 300,
};

impl BridgePlan {
    /// The IaaS gateway's own bridge, `br-gw` by default, on the userspace
    /// datapath.
    pub fn iaas(bridge: impl Into<String>, trunk: impl Into<String>) -> Self {
        Self {
            bridge: bridge.into(),
            kind: BridgeKind::Iaas,
            datapath_type: DatapathType::Netdev,
            trunk: Some(trunk.into()),
            wan_ports: Vec::new(),
            bfd: Some(DEFAULT_BFD),
            catch_foreign_keys: true,
            fail_mode: FailMode::Secure,
            hwaddr: None,
        }
    }

    /// The encrypted WAN's bridge (docs/gateway.md, "The encrypted WAN"):
    /// a learning switch (`fail_mode=standalone`) between its local port,
    /// which holds the inner address and has the MAC `hwaddr`, and the tap
    /// `tap` to the WireGuard task, kept like the gateway's own bridge.
    pub fn tunnel(bridge: impl Into<String>, tap: impl Into<String>, hwaddr: [u8; 6]) -> Self {
        Self {
            bfd: None,
            catch_foreign_keys: false,
            fail_mode: FailMode::Standalone,
            hwaddr: Some(hwaddr),
            ..Self::iaas(bridge, tap)
        }
    }

    /// WAN ports on the HaaS controller's bridge.
    pub fn haas(bridge: impl Into<String>) -> Self {
        Self {
            bridge: bridge.into(),
            kind: BridgeKind::Haas,
            datapath_type: DatapathType::Netdev,
            trunk: None,
            wan_ports: Vec::new(),
            bfd: Some(DEFAULT_BFD),
            catch_foreign_keys: false,
            fail_mode: FailMode::Secure,
            hwaddr: None,
        }
    }

    /// The bridge to create and keep, in IaaS kind: OpenFlow 1.3 only,
    /// the plan's fail mode (`secure` for the gateway's own: no flows, no
    /// forwarding, so a gateway that never programmed its bridge leaks
    /// nothing) and no controller, since the gateway speaks to it on its
    /// management socket.
    pub fn bridge_spec(&self) -> Option<BridgeSpec> {
        match self.kind {
            BridgeKind::Iaas => {
                let mut spec =
                    BridgeSpec::new(self.bridge.clone()).datapath_type(self.datapath_type);
                spec.fail_mode = self.fail_mode;
                if let Some(mac) = self.hwaddr {
                    spec.other_config
                        .insert("hwaddr".into(), ofp::packet::MacAddr(mac).to_string());
                }
                Some(spec)
            }
            BridgeKind::Haas => None,
        }
    }

    /// The WAN ports as OVSDB rows should have them.
    pub fn wan_specs(&self) -> Vec<WanPortSpec> {
        self.wan_ports
            .iter()
            .map(|w| {
                let mut spec = WanPortSpec::new(w.name.clone(), w.remote_ip, w.key);
                spec.tunnel.local_ip = w.local_ip;
                spec.bfd = self.bfd;
                // The controller learns the port's VI from the tag; an IaaS
                // bridge has no controller to tell.
                if self.kind == BridgeKind::Haas {
                    spec.vi = Some(w.vi.to_string());
                }
                spec
            })
            .collect()
    }
}

/// One WAN port as ovs-vswitchd runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WanPortStatus {
    pub name: String,
    pub vi: u32,
    pub remote_ip: Option<IpAddr>,
    /// `None` until ovs-vswitchd has added the port.
    pub ofport: Option<u32>,
    /// Why ovs-vswitchd could not add the port, if it could not.
    pub error: Option<String>,
    /// BFD's state: `admin_down`, `down`, `init` or `up`; `None` without BFD.
    pub bfd_state: Option<String>,
    /// Whether BFD says the tunnel forwards.
    pub bfd_forwarding: Option<bool>,
    pub rx_packets: Option<u64>,
    pub rx_bytes: Option<u64>,
    pub tx_packets: Option<u64>,
    pub tx_bytes: Option<u64>,
}

/// What the keeper knows of the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BridgeStatus {
    pub ovsdb_connected: bool,
    pub bridge_present: bool,
    pub trunk_ofport: Option<u32>,
    /// Why ovs-vswitchd could not add the trunk (say, no such device).
    pub trunk_error: Option<String>,
    /// The [`FOREIGN_PORT`]'s ofport.
    pub foreign_ofport: Option<u32>,
    pub wan_ports: Vec<WanPortStatus>,
    /// Why the bridge is not as planned, while it is not.
    pub problem: Option<String>,
}

impl BridgeStatus {
    /// The flow table's input: the trunk and, for each VI with `vlans`
    /// whose WAN port has an ofport, that port. `None` until the trunk has
    /// one. A VI whose port is missing is left out, so its frames are
    /// dropped until the port is back.
    pub fn pipeline_plan(&self, vlans: &BTreeMap<u32, VlanSet>) -> Option<PipelinePlan> {
        let trunk_ofport = self.trunk_ofport?;
        let vis = self
            .wan_ports
            .iter()
            .filter_map(|w| {
                Some(ViPath {
                    vi: w.vi,
                    wan_ofport: w.ofport?,
                    vlans: vlans.get(&w.vi)?.clone(),
                })
            })
            .collect();
        Some(PipelinePlan {
            trunk_ofport,
            vis,
            foreign_ofport: self.foreign_ofport,
        })
    }
}

/// Keeps `plan` at the flow table's input for the latest `status` (see
/// [`BridgeStatus::pipeline_plan`]) until the keeper or every reader of
/// `plan` is gone: a WAN port that comes back with another ofport
/// re-programs the table.
pub async fn feed_pipeline(
    mut status: watch::Receiver<BridgeStatus>,
    vlans: BTreeMap<u32, VlanSet>,
    plan: watch::Sender<Option<PipelinePlan>>,
) {
    loop {
        let now = status.borrow_and_update().pipeline_plan(&vlans);
        plan.send_if_modified(|p| {
            let changed = *p != now;
            *p = now;
            changed
        });
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            () = plan.closed() => return,
        }
    }
}

/// The status of `plan`'s bridge as `replica` has it.
pub fn status_of(plan: &BridgePlan, replica: &Replica) -> BridgeStatus {
    let on_bridge = |name: &str| {
        replica
            .interface_status(name)
            .filter(|s| s.bridge.as_deref() == Some(plan.bridge.as_str()))
    };
    let wan_ports = plan
        .wan_ports
        .iter()
        .map(|w| {
            let s = on_bridge(&w.name);
            let s = s.as_ref();
            let counter = |key: &str| s.and_then(|s| s.counter(key));
            WanPortStatus {
                name: w.name.clone(),
                vi: w.vi,
                remote_ip: Some(w.remote_ip),
                ofport: s.and_then(|s| s.ofport.number()),
                error: s.and_then(|s| s.error.clone()),
                bfd_state: s.and_then(|s| s.bfd_state().map(str::to_owned)),
                bfd_forwarding: s
                    .and_then(|s| s.bfd_status.get("forwarding"))
                    .map(|f| f == "true"),
                rx_packets: counter("rx_packets"),
                rx_bytes: counter("rx_bytes"),
                tx_packets: counter("tx_packets"),
                tx_bytes: counter("tx_bytes"),
            }
        })
        .collect();
    let trunk = plan.trunk.as_deref().and_then(on_bridge);
    BridgeStatus {
        ovsdb_connected: true,
        bridge_present: replica.bridge(&plan.bridge).is_some(),
        trunk_ofport: trunk.as_ref().and_then(|s| s.ofport.number()),
        trunk_error: trunk.and_then(|s| s.error),
        foreign_ofport: plan
            .catch_foreign_keys
            .then(|| on_bridge(FOREIGN_PORT))
            .flatten()
            .and_then(|s| s.ofport.number()),
        wan_ports,
        problem: None,
    }
}

/// Where the keeper finds OVSDB, and how hard it retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeeperConfig {
    /// `unix:/path/db.sock` or `tcp:IP:PORT`.
    pub ovsdb: String,
    /// First wait after a failed connection; doubled up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl KeeperConfig {
    pub fn new(ovsdb: impl Into<String>) -> Self {
        Self {
            ovsdb: ovsdb.into(),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// How one OVSDB session ended.
enum Ended {
    Shutdown,
    /// Connected, then lost: retry from the shortest wait.
    Lost(String),
    /// Could not connect: retry after a longer wait.
    Failed(String),
}

/// Keeps `plan`'s bridge right and `status` current until `shutdown`.
pub async fn keep(
    config: KeeperConfig,
    mut plan: watch::Receiver<BridgePlan>,
    status: watch::Sender<BridgeStatus>,
    shutdown: CancellationToken,
) {
    let mut backoff = config.backoff_min;
    let mut failures = 0u32;
    loop {
        match serve(&config, &mut plan, &status, &shutdown).await {
            Ended::Shutdown => return,
            Ended::Lost(why) => {
                warn!("OVSDB connection lost: {why}; reconnecting");
                backoff = config.backoff_min;
                failures = 0;
            }
            Ended::Failed(why) => {
                if failures == 0 {
                    warn!("{why}; retrying every {:?} at most", config.backoff_max);
                } else {
                    debug!("{why}");
                }
                failures += 1;
            }
        }
        status.send_if_modified(|s| {
            let changed = s.ovsdb_connected;
            s.ovsdb_connected = false;
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
            _ = plan.changed() => {}
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

async fn serve(
    config: &KeeperConfig,
    plan: &mut watch::Receiver<BridgePlan>,
    status: &watch::Sender<BridgeStatus>,
    shutdown: &CancellationToken,
) -> Ended {
    let remote: Remote = match config.ovsdb.parse() {
        Ok(r) => r,
        Err(e) => return Ended::Failed(format!("OVSDB remote {}: {e}", config.ovsdb)),
    };
    let vs = tokio::select! {
        _ = shutdown.cancelled() => return Ended::Shutdown,
        r = Vswitch::connect_detailed(&remote, Detail::Status) => match r {
            Ok(vs) => vs,
            Err(e) => return Ended::Failed(e.to_string()),
        },
    };
    info!(remote = %remote, "OVSDB connected");
    let mut replica = vs.replica();
    let mut current = plan.borrow_and_update().clone();
    let mut last_problem: Option<String> = None;
    loop {
        let problem = match apply(&vs, &current).await {
            Ok(problem) => problem,
            Err(Fatal(why)) => return Ended::Lost(why),
        };
        // Tried again at every change (counters change every few seconds),
        // so said once until it changes.
        if problem != last_problem {
            match &problem {
                Some(p) => warn!("bridge {} not as planned: {p}", current.bridge),
                None => info!("bridge {} as planned", current.bridge),
            }
            last_problem.clone_from(&problem);
        }
        let mut now = status_of(&current, &vs.snapshot());
        now.problem = problem;
        status.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            reason = vs.closed() => return Ended::Lost(reason.to_string()),
            // Someone changed the database, or vswitchd reported: put the
            // bridge right again. Nothing is sent when nothing differs, so
            // the update a repair causes ends here.
            changed = replica.changed() => if changed.is_err() {
                return Ended::Lost(vs.closed().await.to_string());
            },
            changed = plan.changed() => {
                if changed.is_err() {
                    return Ended::Shutdown;
                }
                current = plan.borrow_and_update().clone();
            }
        }
    }
}

/// The session cannot go on.
struct Fatal(String);

/// Makes the bridge match `plan`. `Ok(Some(why))` when it cannot yet, for
/// a reason the session can outlast (the controller has not created its
/// bridge, a port name is taken): the next change of the database or the
/// plan tries again.
async fn apply(vs: &Vswitch, plan: &BridgePlan) -> Result<Option<String>, Fatal> {
    use ovsdb::Error;
    let bridge = &plan.bridge;
    let result = async {
        if let Some(spec) = plan.bridge_spec() {
            vs.ensure_bridge(&spec).await?;
        } else if vs.bridge(bridge).is_none() {
            return Ok(Some(format!(
                "waiting for the controller to create bridge {bridge}"
            )));
        }
        if let Some(trunk) = &plan.trunk {
            vs.ensure_trunk_port(bridge, trunk).await?;
        }
        // A trunk the plan no longer names goes; ports of other roles stay.
        for old in vs.ports() {
            let is_trunk = old.external_ids.get(ROLE_KEY).map(String::as_str) == Some(ROLE_TRUNK);
            if old.bridge == *bridge && is_trunk && plan.trunk.as_ref() != Some(&old.name) {
                vs.remove_port(bridge, &old.name).await?;
            }
        }
        vs.set_wan_ports(bridge, &plan.wan_specs()).await?;
        if plan.kind == BridgeKind::Iaas {
            let foreign: Vec<TunnelSpec> = plan
                .catch_foreign_keys
                .then(|| TunnelSpec::gre_flow(FOREIGN_PORT))
                .into_iter()
                .collect();
            vs.set_tunnels(bridge, &foreign).await?;
        }
        Ok(None)
    }
    .await;
    match result {
        Ok(problem) => Ok(problem),
        Err(Error::Plan(e)) => Ok(Some(e.to_string())),
        Err(Error::Transaction(e)) => Ok(Some(format!("OVSDB refused a change: {e}"))),
        Err(e) => Err(Fatal(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
