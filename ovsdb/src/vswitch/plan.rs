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
    BridgeRow, InterfaceRow, PortRow, Replica, ROLE_KEY, ROLE_TUNNEL, ROLE_VM, VI_KEY,
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
}

/// Inserts an Interface and the Port that holds it; returns the Port's
/// reference for `Bridge.ports`.
fn insert_port(txn: &mut Transaction, port: &NewPort<'_>) -> Atom {
    let iface = txn.insert(
        "Interface",
        Row::from([
            ("name".to_owned(), Datum::string(port.name)),
            ("type".to_owned(), Datum::string(port.iface_type)),
            ("options".to_owned(), Datum::string_map(&port.options)),
            (
                "external_ids".to_owned(),
                Datum::string_map(&port.iface_external_ids),
            ),
        ]),
    );
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
    let mut names = BTreeSet::new();
    let mut remotes = BTreeSet::new();
    for t in tunnels {
        check_name("tunnel", &t.name)?;
        if !names.insert(t.name.as_str()) {
            return Err(PlanError::InvalidSpec {
                what: "tunnel",
                name: t.name.clone(),
                reason: "the name appears twice in the tunnel list".into(),
            });
        }
        if !remotes.insert((t.remote, t.key, t.local_ip)) {
            return Err(PlanError::InvalidSpec {
                what: "tunnel",
                name: t.name.clone(),
                reason: "another tunnel in the list has the same remote, key and local IP; \
                         OVS would refuse the second one"
                    .into(),
            });
        }
    }
    let (bridge_uuid, bridge) =
        replica
            .bridge_by_name(bridge_name)
            .ok_or_else(|| PlanError::NoSuchBridge {
                name: bridge_name.to_owned(),
            })?;
    let existing: BTreeMap<&str, (Uuid, &PortRow)> = bridge
        .ports
        .iter()
        .filter_map(|u| replica.ports.get(u).map(|p| (*u, p)))
        .filter(|(_, p)| p.external_ids.get(ROLE_KEY).map(String::as_str) == Some(ROLE_TUNNEL))
        .map(|(u, p)| (p.name.as_str(), (u, p)))
        .collect();

    let mut txn = Transaction::new();
    let mut added = Vec::new();
    let mut removed: Vec<Uuid> = existing
        .iter()
        .filter(|(name, _)| !names.contains(*name))
        .map(|(_, (u, _))| *u)
        .collect();
    for t in tunnels {
        let options = t.options();
        match existing.get(t.name.as_str()) {
            Some((port_uuid, port)) => match replica.sole_interface(port) {
                Some((_, iface)) if iface.kind == TUNNEL_TYPE && iface.options == options => {}
                Some((iface_uuid, _)) => txn.update(
                    "Interface",
                    iface_uuid,
                    Row::from([
                        ("type".to_owned(), Datum::string(TUNNEL_TYPE)),
                        ("options".to_owned(), Datum::string_map(&options)),
                    ]),
                ),
                // A port that lost its interface: replace the whole port.
                None => {
                    removed.push(*port_uuid);
                    added.push(insert_tunnel(&mut txn, t, options));
                }
            },
            None => {
                replica.check_port_name_free(&t.name)?;
                added.push(insert_tunnel(&mut txn, t, options));
            }
        }
    }
    change_ports(&mut txn, bridge_uuid, removed, added);
    Ok(txn)
}

fn insert_tunnel(txn: &mut Transaction, t: &TunnelSpec, options: BTreeMap<String, String>) -> Atom {
    insert_port(
        txn,
        &NewPort {
            name: &t.name,
            iface_type: TUNNEL_TYPE,
            options,
            iface_external_ids: BTreeMap::new(),
            port_external_ids: BTreeMap::from([(ROLE_KEY.to_owned(), ROLE_TUNNEL.to_owned())]),
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
    let (bridge_uuid, bridge) =
        replica
            .bridge_by_name(bridge_name)
            .ok_or_else(|| PlanError::NoSuchBridge {
                name: bridge_name.to_owned(),
            })?;
    let mut iface_ids = spec.external_ids.clone();
    iface_ids.insert(VI_KEY.to_owned(), spec.vi.clone());
    let port_ids = BTreeMap::from([(ROLE_KEY.to_owned(), ROLE_VM.to_owned())]);
    let mut txn = Transaction::new();
    let existing = replica.port_on_bridge(bridge, &spec.name);
    match existing.and_then(|(u, p)| replica.sole_interface(p).map(|i| (u, p, i))) {
        Some((port_uuid, port, (iface_uuid, iface))) => {
            if iface.kind != spec.kind.as_str() {
                txn.update(
                    "Interface",
                    iface_uuid,
                    Row::from([("type".to_owned(), Datum::string(spec.kind.as_str()))]),
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
                replica.check_port_name_free(&spec.name)?;
            }
            let port = insert_port(
                &mut txn,
                &NewPort {
                    name: &spec.name,
                    iface_type: spec.kind.as_str(),
                    options: BTreeMap::new(),
                    iface_external_ids: iface_ids,
                    port_external_ids: port_ids,
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
    let (bridge_uuid, bridge) =
        replica
            .bridge_by_name(bridge_name)
            .ok_or_else(|| PlanError::NoSuchBridge {
                name: bridge_name.to_owned(),
            })?;
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
