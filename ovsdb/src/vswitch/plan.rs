//! Desired state and the transaction that reaches it from the replica. No I/O.
//!
//! Every planner compares desired against actual and returns only the
//! difference: an empty transaction when the switch is already right, so
//! applying the same spec twice sends nothing the second time. Rows not
//! named by the spec (ports Iris does not manage, `other_config` keys it does
//! not set) are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::datum::{Atom, Datum, Row, Uuid};
use crate::ops::{Condition, Mutation, Mutator, Transaction};
use crate::vswitch::model::{
    BridgeRow, InterfaceRow, PortRow, Replica, ROLE_KEY, ROLE_TRUNK, ROLE_TUNNEL, ROLE_VM,
    ROLE_WAN, VI_KEY,
};

/// The `datapath_type` of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatapathType {
    /// The kernel datapath (real hosts with the openvswitch module).
    System,
    /// The userspace datapath (hosts without the module, such as the testbed).
    Netdev,
}

impl DatapathType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Netdev => "netdev",
        }
    }

    /// OVS treats an empty `datapath_type` as `system`.
    fn matches(self, column: &str) -> bool {
        column == self.as_str() || (self == Self::System && column.is_empty())
    }
}

impl FromStr for DatapathType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Self::System),
            "netdev" => Ok(Self::Netdev),
            other => Err(format!(
                "unknown datapath type {other:?}: use \"system\" (kernel module) or \"netdev\" \
                 (userspace)"
            )),
        }
    }
}

/// What a bridge does while it has no controller connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailMode {
    /// Keep the flows it has, add none: tenants stay isolated.
    Secure,
    /// Fall back to a learning switch.
    Standalone,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Standalone => "standalone",
        }
    }
}

/// An entry of `Bridge.protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpenFlowVersion {
    OpenFlow10,
    OpenFlow11,
    OpenFlow12,
    OpenFlow13,
    OpenFlow14,
    OpenFlow15,
}

impl OpenFlowVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenFlow10 => "OpenFlow10",
            Self::OpenFlow11 => "OpenFlow11",
            Self::OpenFlow12 => "OpenFlow12",
            Self::OpenFlow13 => "OpenFlow13",
            Self::OpenFlow14 => "OpenFlow14",
            Self::OpenFlow15 => "OpenFlow15",
        }
    }
}

/// Whether `target` is one the switch listens on (`ptcp:`, `punix:`,
/// `pssl:`) for the controller to connect to, rather than one it connects
/// to itself.
pub fn is_passive_target(target: &str) -> bool {
    ["ptcp:", "punix:", "pssl:"]
        .iter()
        .any(|p| target.starts_with(p))
}

/// The `type` a controller row for `target` must have, when OVS's default
/// is not right: OVS takes a passive target for a service controller, to
/// which `fail_mode` does not apply and which is meant for occasional
/// maintenance, so a passive target of Iris's is made primary.
fn controller_type(target: &str) -> Option<&'static str> {
    is_passive_target(target).then_some("primary")
}

fn insert_controller(txn: &mut Transaction, target: &str) -> Atom {
    let mut row = Row::from([("target".to_owned(), Datum::string(target))]);
    if let Some(kind) = controller_type(target) {
        row.insert("type".to_owned(), Datum::set([kind]));
    }
    txn.insert("Controller", row)
}

/// How a bridge must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    pub name: String,
    pub datapath_type: DatapathType,
    /// Controller targets, e.g. `tcp:127.0.0.1:6653`, or passive ones the
    /// switch listens on, e.g. `ptcp:6653:10.0.0.1`. Exactly these, each a
    /// primary controller.
    pub controller: Vec<String>,
    pub fail_mode: FailMode,
    /// Exactly these versions.
    pub protocols: Vec<OpenFlowVersion>,
    /// Written as `other_config:datapath-id` (16 hex digits).
    pub datapath_id: Option<u64>,
    /// Further `other_config` keys to set; keys not named here are left alone.
    pub other_config: BTreeMap<String, String>,
}

impl BridgeSpec {
    /// A secure OpenFlow 1.3 bridge on the kernel datapath, no controller yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            datapath_type: DatapathType::System,
            controller: Vec::new(),
            fail_mode: FailMode::Secure,
            protocols: vec![OpenFlowVersion::OpenFlow13],
            datapath_id: None,
            other_config: BTreeMap::new(),
        }
    }

    pub fn datapath_type(mut self, datapath_type: DatapathType) -> Self {
        self.datapath_type = datapath_type;
        self
    }

    pub fn controller(mut self, target: impl Into<String>) -> Self {
        self.controller.push(target.into());
        self
    }

    pub fn datapath_id(mut self, dpid: u64) -> Self {
        self.datapath_id = Some(dpid);
        self
    }

    fn desired_other_config(&self) -> Result<BTreeMap<String, String>, PlanError> {
        let mut config = self.other_config.clone();
        if let Some(dpid) = self.datapath_id {
            if config.contains_key("datapath-id") {
                return Err(PlanError::InvalidSpec {
                    what: "bridge",
                    name: self.name.clone(),
                    reason: "datapath-id is given both as datapath_id and in other_config; \
                             keep one"
                        .into(),
                });
            }
            config.insert("datapath-id".into(), format!("{dpid:016x}"));
        }
        Ok(config)
    }
}

/// Where a tunnel's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunnelRemote {
    Ip(IpAddr),
    /// `remote_ip=flow`: one port for every peer, the flow sets `tun_dst`.
    Flow,
}

/// The GRE key of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunnelKey {
    /// `key=flow`: the flow sets and matches `tun_id` (the VI).
    Flow,
    Fixed(u32),
}

/// A GRE tunnel port Iris manages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelSpec {
    pub name: String,
    pub remote: TunnelRemote,
    pub key: TunnelKey,
    pub local_ip: Option<IpAddr>,
}

impl TunnelSpec {
    /// A GRE tunnel to one peer, keyed by flow.
    pub fn gre(name: impl Into<String>, remote_ip: IpAddr) -> Self {
        Self {
            name: name.into(),
            remote: TunnelRemote::Ip(remote_ip),
            key: TunnelKey::Flow,
            local_ip: None,
        }
    }

    /// The single flow-based GRE port (`remote_ip=flow`, `key=flow`).
    pub fn gre_flow(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            remote: TunnelRemote::Flow,
            key: TunnelKey::Flow,
            local_ip: None,
        }
    }

    /// The Interface `options` that express this tunnel.
    pub fn options(&self) -> BTreeMap<String, String> {
        let mut options = BTreeMap::new();
        options.insert(
            "remote_ip".to_owned(),
            match self.remote {
                TunnelRemote::Ip(ip) => ip.to_string(),
                TunnelRemote::Flow => "flow".to_owned(),
            },
        );
        options.insert(
            "key".to_owned(),
            match self.key {
                TunnelKey::Flow => "flow".to_owned(),
                TunnelKey::Fixed(k) => k.to_string(),
            },
        );
        if let Some(local) = self.local_ip {
            options.insert("local_ip".to_owned(), local.to_string());
        }
        options
    }
}

/// The Interface `type` of tunnel ports.
pub const TUNNEL_TYPE: &str = "gre";

/// BFD on a tunnel (RFC 5880, as Open vSwitch runs it on the Interface's
/// `bfd` column): both ends must enable it for the session to come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bfd {
    /// The fastest rate, in milliseconds between packets, at which this
    /// end accepts the peer's control packets (`bfd:min_rx`).
    pub min_rx_ms: u32,
    /// The fastest rate at which this end sends them (`bfd:min_tx`).
    pub min_tx_ms: u32,
}

impl Bfd {
    /// The Interface `bfd` column that expresses this.
    pub fn column(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("enable".to_owned(), "true".to_owned()),
            ("min_rx".to_owned(), self.min_rx_ms.to_string()),
            ("min_tx".to_owned(), self.min_tx_ms.to_string()),
        ])
    }
}

/// A gateway's GRE port to a peer gateway, carrying one VI with a fixed key
/// (Port `external_ids:iris-role=wan`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WanPortSpec {
    /// Its name, remote and local address, and key, which must be fixed.
    pub tunnel: TunnelSpec,
    /// Written as Interface `external_ids:iris-vi`, so that the controller
    /// of the bridge takes the port for one of the VI's (on a HaaS
    /// gateway's `br-int`); `None` leaves the key alone.
    pub vi: Option<String>,
    /// `None` turns BFD off.
    pub bfd: Option<Bfd>,
}

impl WanPortSpec {
    pub fn new(name: impl Into<String>, remote_ip: IpAddr, key: u32) -> Self {
        Self {
            tunnel: TunnelSpec {
                name: name.into(),
                remote: TunnelRemote::Ip(remote_ip),
                key: TunnelKey::Fixed(key),
                local_ip: None,
            },
            vi: None,
            bfd: None,
        }
    }
}

/// The Interface `type` of a VM port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmPortKind {
    /// An existing network device (a veth end, a tap) — `type` empty.
    System,
    /// A device OVS creates itself.
    Internal,
}

impl VmPortKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::System => "",
            Self::Internal => "internal",
        }
    }
}

/// A port that connects a VM (an L1 node) to a bridge, tagged with its VI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPortSpec {
    pub name: String,
    pub kind: VmPortKind,
    /// Written as Interface `external_ids:iris-vi`.
    pub vi: String,
    /// Further Interface `external_ids` (e.g. `attached-mac`); keys not named
    /// here are left alone.
    pub external_ids: BTreeMap<String, String>,
}

impl VmPortSpec {
    pub fn new(name: impl Into<String>, vi: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: VmPortKind::System,
            vi: vi.into(),
            external_ids: BTreeMap::new(),
        }
    }
}

/// Why a desired state cannot be planned. The caller (or whoever configured
/// the switch by hand) is at fault; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    InvalidSpec {
        what: &'static str,
        name: String,
        reason: String,
    },
    NoSuchBridge {
        name: String,
    },
    /// A port of that name exists and Iris does not manage it in that role.
    PortNameTaken {
        name: String,
        bridge: Option<String>,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName { what, name, reason } => {
                write!(f, "invalid {what} name {name:?}: {reason}")
            }
            Self::InvalidSpec { what, name, reason } => {
                write!(f, "invalid {what} {name:?}: {reason}")
            }
            Self::NoSuchBridge { name } => {
                write!(
                    f,
                    "bridge {name:?} does not exist; ensure the bridge before its ports"
                )
            }
            Self::PortNameTaken { name, bridge } => {
                write!(f, "a port named {name:?} already exists")?;
                if let Some(bridge) = bridge {
                    write!(f, " on bridge {bridge:?}")?;
                }
                write!(
                    f,
                    " and is not one Iris manages there; remove it (ovs-vsctl del-port {name}) \
                     or choose another name"
                )
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// Names become network device names: at most 15 bytes (IFNAMSIZ - 1), no
/// `/` or whitespace.
fn check_name(what: &'static str, name: &str) -> Result<(), PlanError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 15 {
        "longer than 15 bytes, the limit of a network device name"
    } else if name.contains(|c: char| c == '/' || c.is_whitespace() || c.is_control()) {
        "contains '/', whitespace or a control character"
    } else if name == "." || name == ".." {
        "'.' and '..' are not device names"
    } else {
        return Ok(());
    };
    Err(PlanError::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    })
}

struct NewPort<'a> {
    name: &'a str,
    iface_type: &'a str,
    options: BTreeMap<String, String>,
    iface_external_ids: BTreeMap<String, String>,
    port_external_ids: BTreeMap<String, String>,
    /// The Interface `bfd` column; empty leaves it out.
    bfd: BTreeMap<String, String>,
}

/// Inserts an Interface and the Port that holds it; returns the Port's
/// reference for `Bridge.ports`.
fn insert_port(txn: &mut Transaction, port: &NewPort<'_>) -> Atom {
    let mut row = Row::from([
        ("name".to_owned(), Datum::string(port.name)),
        ("type".to_owned(), Datum::string(port.iface_type)),
        ("options".to_owned(), Datum::string_map(&port.options)),
        (
            "external_ids".to_owned(),
            Datum::string_map(&port.iface_external_ids),
        ),
    ]);
    if !port.bfd.is_empty() {
        row.insert("bfd".to_owned(), Datum::string_map(&port.bfd));
    }
    let iface = txn.insert("Interface", row);
    txn.insert(
        "Port",
        Row::from([
            ("name".to_owned(), Datum::string(port.name)),
            ("interfaces".to_owned(), Datum::Set(vec![iface])),
            (
                "external_ids".to_owned(),
                Datum::string_map(&port.port_external_ids),
            ),
        ]),
    )
}

/// The bridge's own internal port, which carries its name.
fn insert_local_port(txn: &mut Transaction, bridge: &str) -> Atom {
    insert_port(
        txn,
        &NewPort {
            name: bridge,
            iface_type: "internal",
            options: BTreeMap::new(),
            iface_external_ids: BTreeMap::new(),
            port_external_ids: BTreeMap::new(),
            bfd: BTreeMap::new(),
        },
    )
}

/// Detaches `removed` and attaches `added` in one mutation. Detached Ports
/// (and their Interfaces) are not root rows, so the server deletes them.
fn change_ports(txn: &mut Transaction, bridge: Uuid, removed: Vec<Uuid>, added: Vec<Atom>) {
    let mut mutations = Vec::new();
    if !removed.is_empty() {
        mutations.push(Mutation::new("ports", Mutator::Delete, Datum::set(removed)));
    }
    if !added.is_empty() {
        mutations.push(Mutation::new("ports", Mutator::Insert, Datum::Set(added)));
    }
    if !mutations.is_empty() {
        txn.mutate("Bridge", vec![Condition::uuid(bridge)], mutations);
    }
}

/// Sets the `desired` keys of a string map column, leaving other keys alone.
fn set_keys(
    txn: &mut Transaction,
    table: &str,
    uuid: Uuid,
    column: &str,
    actual: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) {
    let changed: BTreeMap<&String, &String> = desired
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .collect();
    if changed.is_empty() {
        return;
    }
    // Map "insert" keeps an existing key's old value, so delete those keys first.
    let stale: Vec<Atom> = changed.keys().map(|k| Atom::string(k.as_str())).collect();
    let fresh = Datum::Map(
        changed
            .iter()
            .map(|(k, v)| (Atom::string(k.as_str()), Atom::string(v.as_str())))
            .collect(),
    );
    txn.mutate(
        table,
        vec![Condition::uuid(uuid)],
        vec![
            Mutation::new(column, Mutator::Delete, Datum::Set(stale)),
            Mutation::new(column, Mutator::Insert, fresh),
        ],
    );
}

impl Replica {
    /// The bridge a port planner adds to, which must exist.
    fn existing_bridge(&self, name: &str) -> Result<(Uuid, &BridgeRow), PlanError> {
        self.bridge_by_name(name)
            .ok_or_else(|| PlanError::NoSuchBridge {
                name: name.to_owned(),
            })
    }

    fn port_on_bridge<'a>(&'a self, bridge: &BridgeRow, name: &str) -> Option<(Uuid, &'a PortRow)> {
        bridge
            .ports
            .iter()
            .filter_map(|u| self.ports.get(u).map(|p| (*u, p)))
            .find(|(_, p)| p.name == name)
    }

    /// Fails if a port called `name` exists anywhere (port names are unique
    /// in the database).
    fn check_port_name_free(&self, name: &str) -> Result<(), PlanError> {
        if self.ports.iter().all(|(_, p)| p.name != name) {
            return Ok(());
        }
        let bridge = self
            .ports()
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.bridge);
        Err(PlanError::PortNameTaken {
            name: name.to_owned(),
            bridge,
        })
    }

    /// The single interface of a port, if it has exactly one we know.
    fn sole_interface(&self, port: &PortRow) -> Option<(Uuid, &InterfaceRow)> {
        match port.interfaces.iter().collect::<Vec<_>>().as_slice() {
            [u] => self.interfaces.get(u).map(|i| (**u, i)),
            _ => None,
        }
    }
}

/// The transaction that makes the bridge match `spec`.
pub fn plan_bridge(replica: &Replica, spec: &BridgeSpec) -> Result<Transaction, PlanError> {
    check_name("bridge", &spec.name)?;
    let other_config = spec.desired_other_config()?;
    let protocols: BTreeSet<String> = spec
        .protocols
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    let mut txn = Transaction::new();

    let Some((uuid, bridge)) = replica.bridge_by_name(&spec.name) else {
        replica.check_port_name_free(&spec.name)?;
        let local = insert_local_port(&mut txn, &spec.name);
        let controllers: Vec<Atom> = spec
            .controller
            .iter()
            .map(|t| insert_controller(&mut txn, t))
            .collect();
        let bridge = txn.insert(
            "Bridge",
            Row::from([
                ("name".to_owned(), Datum::string(&spec.name)),
                ("ports".to_owned(), Datum::Set(vec![local])),
                ("controller".to_owned(), Datum::Set(controllers)),
                (
                    "datapath_type".to_owned(),
                    Datum::string(spec.datapath_type.as_str()),
                ),
                (
                    "fail_mode".to_owned(),
                    Datum::set([spec.fail_mode.as_str()]),
                ),
                (
                    "protocols".to_owned(),
                    Datum::set(protocols.iter().map(String::as_str)),
                ),
                ("other_config".to_owned(), Datum::string_map(&other_config)),
            ]),
        );
        let roots: Vec<Uuid> = replica.root_uuids().collect();
        if roots.is_empty() {
            // A database nobody initialised (`ovs-vsctl init` not run).
            txn.insert(
                "Open_vSwitch",
                Row::from([("bridges".to_owned(), Datum::Set(vec![bridge]))]),
            );
        } else {
            txn.mutate(
                "Open_vSwitch",
                vec![],
                vec![Mutation::new(
                    "bridges",
                    Mutator::Insert,
                    Datum::Set(vec![bridge]),
                )],
            );
        }
        return Ok(txn);
    };

    let mut row = Row::new();
    if !spec.datapath_type.matches(&bridge.datapath_type) {
        row.insert(
            "datapath_type".into(),
            Datum::string(spec.datapath_type.as_str()),
        );
    }
    if bridge.fail_mode.as_deref() != Some(spec.fail_mode.as_str()) {
        row.insert("fail_mode".into(), Datum::set([spec.fail_mode.as_str()]));
    }
    if bridge.protocols != protocols {
        row.insert(
            "protocols".into(),
            Datum::set(protocols.iter().map(String::as_str)),
        );
    }
    // A row of the right target but the wrong type is replaced like a
    // wrong target.
    let actual_targets: BTreeMap<&str, Uuid> = bridge
        .controller
        .iter()
        .filter_map(|u| replica.controllers.get(u).map(|c| (c, *u)))
        .filter(|(c, _)| controller_type(&c.target).is_none_or(|k| c.kind.as_deref() == Some(k)))
        .map(|(c, u)| (c.target.as_str(), u))
        .collect();
    let desired_targets: BTreeSet<&str> = spec.controller.iter().map(String::as_str).collect();
    let same_controllers = actual_targets.len() == bridge.controller.len()
        && actual_targets.keys().copied().collect::<BTreeSet<_>>() == desired_targets;
    if !same_controllers {
        let set: Vec<Atom> = desired_targets
            .iter()
            .map(|t| match actual_targets.get(t) {
                Some(u) => Atom::Uuid(*u),
                None => insert_controller(&mut txn, t),
            })
            .collect();
        row.insert("controller".into(), Datum::Set(set));
    }
    if !row.is_empty() {
        txn.update("Bridge", uuid, row);
    }
    set_keys(
        &mut txn,
        "Bridge",
        uuid,
        "other_config",
        &bridge.other_config,
        &other_config,
    );
    if replica.port_on_bridge(bridge, &spec.name).is_none() {
        replica.check_port_name_free(&spec.name)?;
        let local = insert_local_port(&mut txn, &spec.name);
        change_ports(&mut txn, uuid, Vec::new(), vec![local]);
    }
    Ok(txn)
}

/// The transaction that makes the bridge's Iris tunnel ports exactly
/// `tunnels`: missing ones added, stale ones removed, changed ones updated in
/// place (so their ofport survives), matching ones untouched.
pub fn plan_tunnels(
    replica: &Replica,
    bridge_name: &str,
    tunnels: &[TunnelSpec],
) -> Result<Transaction, PlanError> {
    let ports: Vec<RoleTunnel<'_>> = tunnels
        .iter()
        .map(|tunnel| RoleTunnel {
            tunnel,
            iface_ids: BTreeMap::new(),
            bfd: None,
        })
        .collect();
    plan_role_tunnels(replica, bridge_name, ROLE_TUNNEL, "tunnel", &ports)
}

/// The transaction that makes the bridge's WAN ports (`iris-role=wan`)
/// exactly `ports`, as [`plan_tunnels`] does for tunnels: a changed key,
/// address, VI or BFD setting is corrected in place, keeping the ofport.
/// Every other port of the bridge, the controller's tunnels included, is
/// left alone.
pub fn plan_wan_ports(
    replica: &Replica,
    bridge_name: &str,
    ports: &[WanPortSpec],
) -> Result<Transaction, PlanError> {
    let mut managed = Vec::with_capacity(ports.len());
    for p in ports {
        let invalid = |reason: &str| PlanError::InvalidSpec {
            what: "WAN port",
            name: p.tunnel.name.clone(),
            reason: reason.to_owned(),
        };
        if !matches!(p.tunnel.key, TunnelKey::Fixed(_)) {
            return Err(invalid(
                "a WAN port carries one VI and needs that VI's fixed GRE key, not key=flow",
            ));
        }
        if p.tunnel.remote == TunnelRemote::Flow {
            return Err(invalid(
                "a WAN port leads to one peer gateway and needs its address, not remote_ip=flow",
            ));
        }
        if p.vi.as_deref() == Some("") {
            return Err(invalid("empty VI"));
        }
        managed.push(RoleTunnel {
            tunnel: &p.tunnel,
            iface_ids: p
                .vi
                .iter()
                .map(|vi| (VI_KEY.to_owned(), vi.clone()))
                .collect(),
            bfd: Some(p.bfd.map(|b| b.column()).unwrap_or_default()),
        });
    }
    plan_role_tunnels(replica, bridge_name, ROLE_WAN, "WAN port", &managed)
}

/// A GRE port of one role, as a planner wants it.
struct RoleTunnel<'a> {
    tunnel: &'a TunnelSpec,
    /// Interface `external_ids` keys to set; others are left alone.
    iface_ids: BTreeMap<String, String>,
    /// The whole Interface `bfd` column; `None` leaves it alone.
    bfd: Option<BTreeMap<String, String>>,
}

/// Makes the bridge's GRE ports of `role` exactly `ports` (see
/// [`plan_tunnels`]).
fn plan_role_tunnels(
    replica: &Replica,
    bridge_name: &str,
    role: &str,
    what: &'static str,
    ports: &[RoleTunnel<'_>],
) -> Result<Transaction, PlanError> {
    let mut names = BTreeSet::new();
    let mut remotes = BTreeSet::new();
    for t in ports.iter().map(|p| p.tunnel) {
        check_name(what, &t.name)?;
        if !names.insert(t.name.as_str()) {
            return Err(PlanError::InvalidSpec {
                what,
                name: t.name.clone(),
                reason: format!("the name appears twice in the {what} list"),
            });
        }
        if !remotes.insert((t.remote, t.key, t.local_ip)) {
            return Err(PlanError::InvalidSpec {
                what,
                name: t.name.clone(),
                reason: format!(
                    "another {what} in the list has the same remote, key and local IP; \
                     OVS would refuse the second one"
                ),
            });
        }
    }
    let (bridge_uuid, bridge) = replica.existing_bridge(bridge_name)?;
    let existing: BTreeMap<&str, (Uuid, &PortRow)> = bridge
        .ports
        .iter()
        .filter_map(|u| replica.ports.get(u).map(|p| (*u, p)))
        .filter(|(_, p)| p.external_ids.get(ROLE_KEY).map(String::as_str) == Some(role))
        .map(|(u, p)| (p.name.as_str(), (u, p)))
        .collect();

    let mut txn = Transaction::new();
    let mut added = Vec::new();
    let mut removed: Vec<Uuid> = existing
        .iter()
        .filter(|(name, _)| !names.contains(*name))
        .map(|(_, (u, _))| *u)
        .collect();
    for p in ports {
        let t = p.tunnel;
        let options = t.options();
        match existing.get(t.name.as_str()) {
            Some((port_uuid, port)) => match replica.sole_interface(port) {
                Some((iface_uuid, iface)) => {
                    let mut row = Row::new();
                    if iface.kind != TUNNEL_TYPE || iface.options != options {
                        row.insert("type".to_owned(), Datum::string(TUNNEL_TYPE));
                        row.insert("options".to_owned(), Datum::string_map(&options));
                    }
                    if let Some(bfd) = p.bfd.as_ref().filter(|b| **b != iface.bfd) {
                        row.insert("bfd".to_owned(), Datum::string_map(bfd));
                    }
                    if !row.is_empty() {
                        txn.update("Interface", iface_uuid, row);
                    }
                    set_keys(
                        &mut txn,
                        "Interface",
                        iface_uuid,
                        "external_ids",
                        &iface.external_ids,
                        &p.iface_ids,
                    );
                }
                // A port that lost its interface: replace the whole port.
                None => {
                    removed.push(*port_uuid);
                    added.push(insert_tunnel(&mut txn, p, role, options));
                }
            },
            None => {
                replica.check_port_name_free(&t.name)?;
                added.push(insert_tunnel(&mut txn, p, role, options));
            }
        }
    }
    change_ports(&mut txn, bridge_uuid, removed, added);
    Ok(txn)
}

fn insert_tunnel(
    txn: &mut Transaction,
    p: &RoleTunnel<'_>,
    role: &str,
    options: BTreeMap<String, String>,
) -> Atom {
    insert_port(
        txn,
        &NewPort {
            name: &p.tunnel.name,
            iface_type: TUNNEL_TYPE,
            options,
            iface_external_ids: p.iface_ids.clone(),
            port_external_ids: BTreeMap::from([(ROLE_KEY.to_owned(), role.to_owned())]),
            bfd: p.bfd.clone().unwrap_or_default(),
        },
    )
}

/// The transaction that attaches a VM port to the bridge with its VI tag. A
/// port of that name already on the bridge (say, added by `ovs-vsctl`) is
/// adopted: its type and tags are corrected in place.
pub fn plan_vm_port(
    replica: &Replica,
    bridge_name: &str,
    spec: &VmPortSpec,
) -> Result<Transaction, PlanError> {
    check_name("VM port", &spec.name)?;
    if spec.vi.is_empty() {
        return Err(PlanError::InvalidSpec {
            what: "VM port",
            name: spec.name.clone(),
            reason: "empty VI".into(),
        });
    }
    let mut iface_ids = spec.external_ids.clone();
    iface_ids.insert(VI_KEY.to_owned(), spec.vi.clone());
    plan_tagged_port(
        replica,
        bridge_name,
        &spec.name,
        spec.kind,
        iface_ids,
        ROLE_VM,
    )
}

/// The transaction that attaches a gateway's trunk, the existing network
/// device `name` that leads to its data center's LAN, to the bridge
/// (Port `external_ids:iris-role=trunk`). A port of that name already on
/// the bridge is adopted, like [`plan_vm_port`] does.
pub fn plan_trunk_port(
    replica: &Replica,
    bridge_name: &str,
    name: &str,
) -> Result<Transaction, PlanError> {
    check_name("trunk", name)?;
    plan_tagged_port(
        replica,
        bridge_name,
        name,
        VmPortKind::System,
        BTreeMap::new(),
        ROLE_TRUNK,
    )
}

/// Attaches port `name` of `kind` in `role`, with the Interface
/// `external_ids` keys `iface_ids`, adopting a port of that name already on
/// the bridge.
fn plan_tagged_port(
    replica: &Replica,
    bridge_name: &str,
    name: &str,
    kind: VmPortKind,
    iface_ids: BTreeMap<String, String>,
    role: &str,
) -> Result<Transaction, PlanError> {
    let (bridge_uuid, bridge) = replica.existing_bridge(bridge_name)?;
    let port_ids = BTreeMap::from([(ROLE_KEY.to_owned(), role.to_owned())]);
    let mut txn = Transaction::new();
    let existing = replica.port_on_bridge(bridge, name);
    match existing.and_then(|(u, p)| replica.sole_interface(p).map(|i| (u, p, i))) {
        Some((port_uuid, port, (iface_uuid, iface))) => {
            if iface.kind != kind.as_str() {
                txn.update(
                    "Interface",
                    iface_uuid,
                    Row::from([("type".to_owned(), Datum::string(kind.as_str()))]),
                );
            }
            set_keys(
                &mut txn,
                "Interface",
                iface_uuid,
                "external_ids",
                &iface.external_ids,
                &iface_ids,
            );
            set_keys(
                &mut txn,
                "Port",
                port_uuid,
                "external_ids",
                &port.external_ids,
                &port_ids,
            );
        }
        None => {
            let stale: Vec<Uuid> = existing.map(|(u, _)| u).into_iter().collect();
            if stale.is_empty() {
                replica.check_port_name_free(name)?;
            }
            let port = insert_port(
                &mut txn,
                &NewPort {
                    name,
                    iface_type: kind.as_str(),
                    options: BTreeMap::new(),
                    iface_external_ids: iface_ids,
                    port_external_ids: port_ids,
                    bfd: BTreeMap::new(),
                },
            );
            change_ports(&mut txn, bridge_uuid, stale, vec![port]);
        }
    }
    Ok(txn)
}

/// The transaction that detaches port `name` from the bridge; empty if it is
/// not there.
pub fn plan_remove_port(
    replica: &Replica,
    bridge_name: &str,
    name: &str,
) -> Result<Transaction, PlanError> {
    let (bridge_uuid, bridge) = replica.existing_bridge(bridge_name)?;
    let mut txn = Transaction::new();
    if let Some((port, _)) = replica.port_on_bridge(bridge, name) {
        change_ports(&mut txn, bridge_uuid, vec![port], Vec::new());
    }
    Ok(txn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vswitch::sim::{Harness, SimDb};

    fn spec() -> BridgeSpec {
        BridgeSpec::new("br-int")
            .datapath_type(DatapathType::Netdev)
            .controller("tcp:127.0.0.1:6653")
            .datapath_id(0x2a)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn with_bridge() -> Harness {
        let mut h = Harness::new(SimDb::initialised());
        h.run(|r| plan_bridge(r, &spec())).unwrap();
        h
    }

    fn tunnel_ports(h: &Harness) -> BTreeMap<String, BTreeMap<String, String>> {
        h.replica
            .interfaces()
            .into_iter()
            .filter(|i| i.kind == TUNNEL_TYPE && i.bridge.as_deref() == Some("br-int"))
            .map(|i| (i.name, i.options))
            .collect()
    }

    #[test]
    fn creates_the_bridge_then_sends_nothing() {
        let mut h = Harness::new(SimDb::initialised());
        assert!(h.run(|r| plan_bridge(r, &spec())).unwrap() > 0);
        let br = h.replica.bridge("br-int").unwrap();
        assert_eq!(br.datapath_type, "netdev");
        assert_eq!(br.fail_mode.as_deref(), Some("secure"));
        assert_eq!(br.protocols, BTreeSet::from(["OpenFlow13".to_owned()]));
        assert_eq!(br.other_config["datapath-id"], "000000000000002a");
        assert_eq!(br.controllers.len(), 1);
        assert_eq!(br.controllers[0].target, "tcp:127.0.0.1:6653");
        assert_eq!(br.ports, BTreeSet::from(["br-int".to_owned()]));
        assert_eq!(h.run(|r| plan_bridge(r, &spec())).unwrap(), 0);
    }

    #[test]
    fn uninitialised_database_gets_its_root_row() {
        let mut h = Harness::new(SimDb::default());
        h.run(|r| plan_bridge(r, &spec())).unwrap();
        assert_eq!(h.db.rows("Open_vSwitch").count(), 1);
        assert!(h.replica.bridge("br-int").is_some());
        assert_eq!(h.run(|r| plan_bridge(r, &spec())).unwrap(), 0);
    }

    #[test]
    fn repairs_drift_in_one_transaction_and_keeps_foreign_keys() {
        let mut h = with_bridge();
        h.edit("Bridge", "br-int", "fail_mode", Datum::set(["standalone"]));
        h.edit(
            "Bridge",
            "br-int",
            "protocols",
            Datum::set(["OpenFlow10", "OpenFlow13"]),
        );
        h.edit(
            "Bridge",
            "br-int",
            "other_config",
            Datum::string_map(&BTreeMap::from([
                ("datapath-id".to_owned(), "00000000000000ff".to_owned()),
                ("hwaddr".to_owned(), "02:00:00:00:00:01".to_owned()),
            ])),
        );
        let controller = h.db.rows("Controller").map(|(u, _)| *u).next().unwrap();
        let sent = h.run(|r| plan_bridge(r, &spec())).unwrap();
        assert_eq!(
            sent, 2,
            "one update for the columns, one mutate for other_config"
        );
        let br = h.replica.bridge("br-int").unwrap();
        assert_eq!(br.fail_mode.as_deref(), Some("secure"));
        assert_eq!(br.protocols.len(), 1);
        assert_eq!(br.other_config["datapath-id"], "000000000000002a");
        assert_eq!(
            br.other_config["hwaddr"], "02:00:00:00:00:01",
            "keys Iris does not set stay"
        );
        assert_eq!(
            h.db.rows("Controller").map(|(u, _)| *u).next(),
            Some(controller)
        );
        assert_eq!(h.run(|r| plan_bridge(r, &spec())).unwrap(), 0);
    }

    #[test]
    fn a_passive_target_is_a_primary_controller() {
        let mut h = with_bridge();
        let mut passive = spec();
        passive.controller = vec!["punix:/run/pm1/br-int.iris.sock".into()];
        h.run(|r| plan_bridge(r, &passive)).unwrap();
        let br = h.replica.bridge("br-int").unwrap();
        assert_eq!(br.controllers.len(), 1);
        assert_eq!(br.controllers[0].target, "punix:/run/pm1/br-int.iris.sock");
        assert_eq!(br.controllers[0].kind.as_deref(), Some("primary"));
        assert_eq!(h.run(|r| plan_bridge(r, &passive)).unwrap(), 0);
        // Left to OVS's default, the same target would be a service
        // controller: the row is replaced.
        let row = h.db.rows("Controller").map(|(u, _)| *u).next().unwrap();
        h.edit_row("Controller", row, "type", Datum::set(["service"]));
        assert!(h.run(|r| plan_bridge(r, &passive)).unwrap() > 0);
        let br = h.replica.bridge("br-int").unwrap();
        assert_eq!(br.controllers[0].kind.as_deref(), Some("primary"));
        assert_eq!(h.db.rows("Controller").count(), 1);
        // An active target keeps OVS's default type.
        h.run(|r| plan_bridge(r, &spec())).unwrap();
        let br = h.replica.bridge("br-int").unwrap();
        assert_eq!(br.controllers[0].kind, None);
    }

    #[test]
    fn changes_controllers_keeping_the_rows_that_stay() {
        let mut h = with_bridge();
        let kept = h.db.rows("Controller").map(|(u, _)| *u).next().unwrap();
        let two = spec().controller("tcp:10.0.0.1:6653");
        h.run(|r| plan_bridge(r, &two)).unwrap();
        let targets: BTreeSet<Uuid> = h.db.rows("Controller").map(|(u, _)| *u).collect();
        assert_eq!(targets.len(), 2);
        assert!(targets.contains(&kept));
        let mut none = spec();
        none.controller.clear();
        h.run(|r| plan_bridge(r, &none)).unwrap();
        assert_eq!(
            h.db.rows("Controller").count(),
            0,
            "detached controllers are collected"
        );
        assert_eq!(h.run(|r| plan_bridge(r, &none)).unwrap(), 0);
    }

    #[test]
    fn restores_a_missing_local_port() {
        let mut h = with_bridge();
        let br = h.db.uuid_of("Bridge", "br-int").unwrap();
        h.run(|r| {
            let mut t = Transaction::new();
            let local = r
                .ports()
                .into_iter()
                .find(|p| p.name == "br-int")
                .unwrap()
                .uuid;
            change_ports(&mut t, br, vec![local], vec![]);
            Ok(t)
        })
        .unwrap();
        assert!(h.replica.bridge("br-int").unwrap().ports.is_empty());
        h.run(|r| plan_bridge(r, &spec())).unwrap();
        assert_eq!(h.replica.bridge("br-int").unwrap().ports.len(), 1);
    }

    #[test]
    fn tunnel_mesh_grows_and_shrinks() {
        let mut h = with_bridge();
        let (a, b, c) = (
            TunnelSpec::gre("gre-a", ip("192.0.2.1")),
            TunnelSpec::gre("gre-b", ip("192.0.2.2")),
            TunnelSpec::gre("gre-c", ip("192.0.2.3")),
        );
        h.run(|r| plan_tunnels(r, "br-int", &[a.clone(), b.clone()]))
            .unwrap();
        let ports = tunnel_ports(&h);
        assert_eq!(ports.keys().collect::<Vec<_>>(), ["gre-a", "gre-b"]);
        assert_eq!(ports["gre-a"]["remote_ip"], "192.0.2.1");
        assert_eq!(ports["gre-a"]["key"], "flow");
        let b_iface = h.db.uuid_of("Interface", "gre-b").unwrap();

        let sent = h
            .run(|r| plan_tunnels(r, "br-int", &[b.clone(), c.clone()]))
            .unwrap();
        assert_eq!(
            sent, 3,
            "insert Interface, insert Port, one mutate of Bridge.ports"
        );
        assert_eq!(
            tunnel_ports(&h).keys().collect::<Vec<_>>(),
            ["gre-b", "gre-c"]
        );
        assert_eq!(
            h.db.uuid_of("Interface", "gre-b"),
            Some(b_iface),
            "gre-b untouched"
        );
        assert_eq!(
            h.db.uuid_of("Interface", "gre-a"),
            None,
            "stale rows are collected"
        );
        assert_eq!(
            h.run(|r| plan_tunnels(r, "br-int", &[c.clone(), b.clone()]))
                .unwrap(),
            0
        );

        // A peer that moved is updated in place, keeping the port (and its ofport).
        let moved = TunnelSpec::gre("gre-b", ip("192.0.2.22"));
        assert_eq!(
            h.run(|r| plan_tunnels(r, "br-int", &[moved.clone(), c.clone()]))
                .unwrap(),
            1
        );
        assert_eq!(h.db.uuid_of("Interface", "gre-b"), Some(b_iface));
        assert_eq!(tunnel_ports(&h)["gre-b"]["remote_ip"], "192.0.2.22");

        h.run(|r| plan_tunnels(r, "br-int", &[])).unwrap();
        assert!(tunnel_ports(&h).is_empty());
        assert_eq!(
            h.replica.bridge("br-int").unwrap().ports.len(),
            1,
            "the local port stays"
        );
    }

    #[test]
    fn flow_based_single_port() {
        let mut h = with_bridge();
        h.run(|r| plan_tunnels(r, "br-int", &[TunnelSpec::gre_flow("gre-flow")]))
            .unwrap();
        let ports = tunnel_ports(&h);
        assert_eq!(ports["gre-flow"]["remote_ip"], "flow");
        assert_eq!(ports["gre-flow"]["key"], "flow");
    }

    #[test]
    fn tunnel_errors_say_what_is_wrong() {
        let mut h = with_bridge();
        let err =
            |h: &Harness, t: &[TunnelSpec], br: &str| plan_tunnels(&h.replica, br, t).unwrap_err();
        let a = TunnelSpec::gre("gre-a", ip("192.0.2.1"));
        assert!(matches!(
            err(&h, std::slice::from_ref(&a), "br-x"),
            PlanError::NoSuchBridge { .. }
        ));
        assert!(matches!(
            err(&h, &[a.clone(), a.clone()], "br-int"),
            PlanError::InvalidSpec { .. }
        ));
        let same_peer = TunnelSpec::gre("gre-a2", ip("192.0.2.1"));
        assert!(matches!(
            err(&h, &[a.clone(), same_peer], "br-int"),
            PlanError::InvalidSpec { .. }
        ));
        let long = TunnelSpec::gre("gre-0123456789ab", ip("192.0.2.9"));
        assert!(matches!(
            err(&h, &[long], "br-int"),
            PlanError::InvalidName { .. }
        ));

        // A port Iris did not create is never taken over or removed.
        h.run(|r| plan_vm_port(r, "br-int", &VmPortSpec::new("gre-a", "7")))
            .unwrap();
        let e = err(&h, &[a], "br-int");
        assert!(matches!(e, PlanError::PortNameTaken { .. }));
        assert!(e.to_string().contains("ovs-vsctl del-port gre-a"), "{e}");
        h.run(|r| plan_tunnels(r, "br-int", &[])).unwrap();
        assert!(h.replica.ports().iter().any(|p| p.name == "gre-a"));
    }

    #[test]
    fn vm_port_is_tagged_adopted_and_removed() {
        let mut h = with_bridge();
        let mut vm = VmPortSpec::new("vm1", "7");
        vm.external_ids
            .insert("attached-mac".into(), "02:00:00:00:00:07".into());
        h.run(|r| plan_vm_port(r, "br-int", &vm)).unwrap();
        let iface = h.interface("vm1").unwrap();
        assert_eq!(iface.vi(), Some("7"));
        assert_eq!(iface.external_ids["attached-mac"], "02:00:00:00:00:07");
        assert_eq!(h.run(|r| plan_vm_port(r, "br-int", &vm)).unwrap(), 0);

        // Moving the VM to another VI rewrites only the tag.
        vm.vi = "8".into();
        assert_eq!(h.run(|r| plan_vm_port(r, "br-int", &vm)).unwrap(), 1);
        let iface = h.interface("vm1").unwrap();
        assert_eq!(iface.vi(), Some("8"));
        assert_eq!(iface.external_ids["attached-mac"], "02:00:00:00:00:07");

        assert_eq!(h.run(|r| plan_remove_port(r, "br-int", "vm1")).unwrap(), 1);
        assert!(h.replica.interfaces().iter().all(|i| i.name != "vm1"));
        assert_eq!(h.run(|r| plan_remove_port(r, "br-int", "vm1")).unwrap(), 0);
    }

    fn wan(name: &str, remote: &str, key: u32) -> WanPortSpec {
        let mut w = WanPortSpec::new(name, ip(remote), key);
        w.tunnel.local_ip = Some(ip("203.0.113.1"));
        w.vi = Some("7".into());
        w.bfd = Some(Bfd {
            min_rx_ms: 100,
            min_tx_ms: 100,
        });
        w
    }

    #[test]
    fn wan_ports_are_created_corrected_in_place_and_removed_alone() {
        let mut h = with_bridge();
        // The controller's mesh and a VM port share the bridge.
        h.run(|r| plan_tunnels(r, "br-int", &[TunnelSpec::gre("gre-a", ip("192.0.2.1"))]))
            .unwrap();
        h.run(|r| plan_vm_port(r, "br-int", &VmPortSpec::new("vm1", "7")))
            .unwrap();
        let (w1, w2) = (
            wan("wan-1", "203.0.113.2", 1001),
            wan("wan-2", "203.0.113.3", 1002),
        );
        h.run(|r| plan_wan_ports(r, "br-int", &[w1.clone(), w2.clone()]))
            .unwrap();
        let i = h.interface("wan-1").unwrap();
        assert_eq!(i.kind, "gre");
        assert_eq!(i.options["key"], "1001");
        assert_eq!(i.options["remote_ip"], "203.0.113.2");
        assert_eq!(i.options["local_ip"], "203.0.113.1");
        assert_eq!(i.vi(), Some("7"));
        let status = h.replica.interface_status("wan-1").unwrap();
        assert_eq!(status.bfd["enable"], "true");
        assert_eq!(status.bfd["min_tx"], "100");
        let role = |h: &Harness, name: &str| {
            h.replica
                .ports()
                .into_iter()
                .find(|p| p.name == name)
                .map(|p| p.external_ids[ROLE_KEY].clone())
        };
        assert_eq!(role(&h, "wan-1").as_deref(), Some(ROLE_WAN));
        assert_eq!(
            h.run(|r| plan_wan_ports(r, "br-int", &[w2.clone(), w1.clone()]))
                .unwrap(),
            0
        );

        // A new key, VI and BFD rate rewrite the interface, which keeps its row.
        let wan1 = h.db.uuid_of("Interface", "wan-1").unwrap();
        let mut changed = w1.clone();
        changed.tunnel.key = TunnelKey::Fixed(2001);
        changed.vi = Some("8".into());
        changed.bfd = Some(Bfd {
            min_rx_ms: 300,
            min_tx_ms: 300,
        });
        assert_eq!(
            h.run(|r| plan_wan_ports(r, "br-int", &[changed.clone(), w2.clone()]))
                .unwrap(),
            2,
            "one update of type, options and bfd; one mutate of external_ids"
        );
        assert_eq!(h.db.uuid_of("Interface", "wan-1"), Some(wan1));
        let i = h.interface("wan-1").unwrap();
        assert_eq!((i.options["key"].as_str(), i.vi()), ("2001", Some("8")));
        assert_eq!(
            h.replica.interface_status("wan-1").unwrap().bfd["min_rx"],
            "300"
        );
        // BFD off empties the column.
        changed.bfd = None;
        h.run(|r| plan_wan_ports(r, "br-int", &[changed.clone(), w2.clone()]))
            .unwrap();
        assert!(h.replica.interface_status("wan-1").unwrap().bfd.is_empty());

        // The controller's own planning leaves WAN ports alone, and the
        // gateway's leaves tunnels and VM ports alone.
        h.run(|r| plan_tunnels(r, "br-int", &[])).unwrap();
        assert_eq!(role(&h, "wan-1").as_deref(), Some(ROLE_WAN));
        h.run(|r| plan_wan_ports(r, "br-int", &[])).unwrap();
        assert_eq!(role(&h, "wan-1"), None);
        assert_eq!(role(&h, "wan-2"), None);
        assert_eq!(role(&h, "vm1").as_deref(), Some(ROLE_VM));
        assert!(h.db.uuid_of("Interface", "wan-2").is_none(), "collected");
    }

    #[test]
    fn wan_port_errors_say_what_is_wrong() {
        let mut h = with_bridge();
        let mut flow_key = wan("wan-1", "203.0.113.2", 1);
        flow_key.tunnel.key = TunnelKey::Flow;
        let e = plan_wan_ports(&h.replica, "br-int", &[flow_key]).unwrap_err();
        assert!(e.to_string().contains("fixed GRE key"), "{e}");
        let mut flow_remote = wan("wan-1", "203.0.113.2", 1);
        flow_remote.tunnel.remote = TunnelRemote::Flow;
        assert!(matches!(
            plan_wan_ports(&h.replica, "br-int", &[flow_remote]),
            Err(PlanError::InvalidSpec { .. })
        ));
        // Two VIs to the same peer need two keys.
        let e = plan_wan_ports(
            &h.replica,
            "br-int",
            &[
                wan("wan-1", "203.0.113.2", 1),
                wan("wan-2", "203.0.113.2", 1),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("same remote, key"), "{e}");
        assert!(matches!(
            plan_wan_ports(&h.replica, "br-gw", &[wan("wan-1", "203.0.113.2", 1)]),
            Err(PlanError::NoSuchBridge { .. })
        ));
        // A controller tunnel of that name is not taken over.
        h.run(|r| plan_tunnels(r, "br-int", &[TunnelSpec::gre("wan-1", ip("192.0.2.1"))]))
            .unwrap();
        assert!(matches!(
            plan_wan_ports(&h.replica, "br-int", &[wan("wan-1", "203.0.113.2", 1)]),
            Err(PlanError::PortNameTaken { .. })
        ));
    }

    #[test]
    fn trunk_port_is_attached_once_and_adopted() {
        let mut h = with_bridge();
        h.run(|r| plan_trunk_port(r, "br-int", "eth1")).unwrap();
        let i = h.interface("eth1").unwrap();
        assert_eq!((i.kind.as_str(), i.vi()), ("", None));
        let port = h
            .replica
            .ports()
            .into_iter()
            .find(|p| p.name == "eth1")
            .unwrap();
        assert_eq!(port.external_ids[ROLE_KEY], ROLE_TRUNK);
        assert_eq!(h.run(|r| plan_trunk_port(r, "br-int", "eth1")).unwrap(), 0);
        assert!(matches!(
            plan_trunk_port(&h.replica, "br-int", "a/b"),
            Err(PlanError::InvalidName { .. })
        ));
    }

    #[test]
    fn bad_specs_are_refused_before_anything_is_sent() {
        let h = Harness::new(SimDb::initialised());
        let mut s = spec();
        s.other_config.insert("datapath-id".into(), "1".into());
        assert!(matches!(
            plan_bridge(&h.replica, &s),
            Err(PlanError::InvalidSpec { .. })
        ));
        for bad in ["", "a/b", "br int", "br-0123456789abc"] {
            let e = plan_bridge(&h.replica, &BridgeSpec::new(bad)).unwrap_err();
            assert!(matches!(e, PlanError::InvalidName { .. }), "{bad:?}");
        }
        assert!("kernel"
            .parse::<DatapathType>()
            .unwrap_err()
            .contains("\"system\""));
    }
}
