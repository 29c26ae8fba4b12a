//! A local replica of the Open_vSwitch rows Iris manages, fed by monitor
//! updates, and the views the controller reads from it. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::datum::{Datum, Row, Uuid};
use crate::error::ProtocolError;
use crate::update::{MonitorRequest, TableUpdates};

/// The database of `vswitch.ovsschema`.
pub const DATABASE: &str = "Open_vSwitch";

/// `external_ids` key on an Interface naming the virtual infrastructure a VM
/// port belongs to.
pub const VI_KEY: &str = "iris-vi";

/// `external_ids` key on a Port Iris manages; its value says what for.
pub const ROLE_KEY: &str = "iris-role";

/// [`ROLE_KEY`] value of tunnel ports.
pub const ROLE_TUNNEL: &str = "tunnel";

/// [`ROLE_KEY`] value of VM ports.
pub const ROLE_VM: &str = "vm";

/// [`ROLE_KEY`] value of a gateway's WAN tunnels: GRE ports to a peer
/// gateway with a fixed key. Not [`ROLE_TUNNEL`], so that the controller,
/// which removes the tunnel ports it did not plan, leaves them alone on the
/// bridge it manages.
pub const ROLE_WAN: &str = "wan";

/// [`ROLE_KEY`] value of a gateway's trunk to its data center's LAN.
pub const ROLE_TRUNK: &str = "trunk";

/// How much of each interface the replica follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// What Iris configures and the ofport: changes only when someone
    /// changes the switch.
    #[default]
    Config,
    /// Also `bfd_status` and `statistics`, which ovs-vswitchd rewrites every
    /// few seconds (`other_config:stats-update-interval`, 5 s by default):
    /// for a gateway's few ports, not for a controller watching every VM
    /// port of every host.
    Status,
}

/// The Interface columns only [`Detail::Status`] monitors.
const STATUS_COLUMNS: &[&str] = &["bfd_status", "statistics"];

/// A table the replica keeps, with the columns it reads.
pub(crate) trait Table: Sized + Clone + PartialEq {
    const NAME: &'static str;
    const COLUMNS: &'static [&'static str];
    fn from_row(row: &Row) -> Result<Self, ProtocolError>;
}

fn column<'a>(row: &'a Row, name: &str) -> Option<&'a Datum> {
    row.get(name)
}

/// Reads column `name` with `read`, or `default` when the monitor did not send it.
fn read<T>(
    row: &Row,
    name: &str,
    default: T,
    read: impl FnOnce(&Datum) -> Result<T, ProtocolError>,
) -> Result<T, ProtocolError> {
    column(row, name).map_or(Ok(default), |d| {
        read(d).map_err(|e| e.within(format!("column {name}")))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenVswitchRow {
    pub bridges: BTreeSet<Uuid>,
}

impl Table for OpenVswitchRow {
    const NAME: &'static str = "Open_vSwitch";
    const COLUMNS: &'static [&'static str] = &["bridges"];
    fn from_row(row: &Row) -> Result<Self, ProtocolError> {
        Ok(Self {
            bridges: read(row, "bridges", BTreeSet::new(), Datum::to_uuid_set)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BridgeRow {
    pub name: String,
    pub ports: BTreeSet<Uuid>,
    pub controller: BTreeSet<Uuid>,
    pub datapath_type: String,
    pub fail_mode: Option<String>,
    pub protocols: BTreeSet<String>,
    pub other_config: BTreeMap<String, String>,
}

impl Table for BridgeRow {
    const NAME: &'static str = "Bridge";
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "ports",
        "controller",
        "datapath_type",
        "fail_mode",
        "protocols",
        "other_config",
    ];
    fn from_row(row: &Row) -> Result<Self, ProtocolError> {
        Ok(Self {
            name: read(row, "name", String::new(), Datum::to_string_value)?,
            ports: read(row, "ports", BTreeSet::new(), Datum::to_uuid_set)?,
            controller: read(row, "controller", BTreeSet::new(), Datum::to_uuid_set)?,
            datapath_type: read(row, "datapath_type", String::new(), Datum::to_string_value)?,
            fail_mode: read(row, "fail_mode", None, Datum::to_optional_string)?,
            protocols: read(row, "protocols", BTreeSet::new(), Datum::to_string_set)?,
            other_config: read(row, "other_config", BTreeMap::new(), Datum::to_string_map)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortRow {
    pub name: String,
    pub interfaces: BTreeSet<Uuid>,
    pub external_ids: BTreeMap<String, String>,
}

impl Table for PortRow {
    const NAME: &'static str = "Port";
    const COLUMNS: &'static [&'static str] = &["name", "interfaces", "external_ids"];
    fn from_row(row: &Row) -> Result<Self, ProtocolError> {
        Ok(Self {
            name: read(row, "name", String::new(), Datum::to_string_value)?,
            interfaces: read(row, "interfaces", BTreeSet::new(), Datum::to_uuid_set)?,
            external_ids: read(row, "external_ids", BTreeMap::new(), Datum::to_string_map)?,
        })
    }
}

/// The OpenFlow port number OVS gave an interface (the `ofport` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ofport {
    /// Not assigned yet: ovs-vswitchd has not added the interface (or is not running).
    Pending,
    Assigned(u32),
    /// ovs-vswitchd could not add the interface (`ofport` is -1); see [`InterfaceInfo::error`].
    Failed,
}

impl Ofport {
    fn from_column(value: Option<i64>) -> Result<Self, ProtocolError> {
        match value {
            None => Ok(Self::Pending),
            Some(-1) => Ok(Self::Failed),
            Some(n) => u32::try_from(n)
                .map(Self::Assigned)
                .map_err(|_| ProtocolError::new("", format!("ofport {n} out of range"))),
        }
    }

    pub fn number(self) -> Option<u32> {
        match self {
            Self::Assigned(n) => Some(n),
            Self::Pending | Self::Failed => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceRow {
    pub name: String,
    pub kind: String,
    pub options: BTreeMap<String, String>,
    pub ofport: Ofport,
    pub external_ids: BTreeMap<String, String>,
    pub error: Option<String>,
    pub bfd: BTreeMap<String, String>,
    /// Empty unless the replica follows [`Detail::Status`].
    pub bfd_status: BTreeMap<String, String>,
    /// Empty unless the replica follows [`Detail::Status`].
    pub statistics: BTreeMap<String, i64>,
}

impl Table for InterfaceRow {
    const NAME: &'static str = "Interface";
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "type",
        "options",
        "ofport",
        "external_ids",
        "error",
        "bfd",
    ];
    fn from_row(row: &Row) -> Result<Self, ProtocolError> {
        let ofport = read(row, "ofport", None, Datum::to_optional_integer)?;
        Ok(Self {
            name: read(row, "name", String::new(), Datum::to_string_value)?,
            kind: read(row, "type", String::new(), Datum::to_string_value)?,
            options: read(row, "options", BTreeMap::new(), Datum::to_string_map)?,
            ofport: Ofport::from_column(ofport).map_err(|e| e.within("column ofport"))?,
            external_ids: read(row, "external_ids", BTreeMap::new(), Datum::to_string_map)?,
            error: read(row, "error", None, Datum::to_optional_string)?,
            bfd: read(row, "bfd", BTreeMap::new(), Datum::to_string_map)?,
            bfd_status: read(row, "bfd_status", BTreeMap::new(), Datum::to_string_map)?,
            statistics: read(row, "statistics", BTreeMap::new(), Datum::to_integer_map)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerRow {
    pub target: String,
    /// `primary` or `service`; unset, OVS decides by the target's form.
    pub kind: Option<String>,
    pub is_connected: bool,
}

impl Table for ControllerRow {
    const NAME: &'static str = "Controller";
    const COLUMNS: &'static [&'static str] = &["target", "type", "is_connected"];
    fn from_row(row: &Row) -> Result<Self, ProtocolError> {
        Ok(Self {
            target: read(row, "target", String::new(), Datum::to_string_value)?,
            kind: read(row, "type", None, Datum::to_optional_string)?,
            is_connected: read(row, "is_connected", false, Datum::to_bool)?,
        })
    }
}

/// The rows of one table: the raw row, so that a modification carrying only
/// some columns can be merged, and its typed reading.
#[derive(Debug, Clone)]
pub(crate) struct Rows<T> {
    rows: BTreeMap<Uuid, (Row, T)>,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
        }
    }
}

impl<T: Table> Rows<T> {
    fn apply(&mut self, updates: &TableUpdates) -> Result<(), ProtocolError> {
        let Some(table) = updates.get(T::NAME) else {
            return Ok(());
        };
        for (uuid, update) in table {
            let Some(new) = &update.new else {
                self.rows.remove(uuid);
                continue;
            };
            let mut row = self
                .rows
                .remove(uuid)
                .map(|(row, _)| row)
                .unwrap_or_default();
            row.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            let typed =
                T::from_row(&row).map_err(|e| e.within(format!("{} row {uuid}", T::NAME)))?;
            self.rows.insert(*uuid, (row, typed));
        }
        Ok(())
    }

    pub(crate) fn get(&self, uuid: &Uuid) -> Option<&T> {
        self.rows.get(uuid).map(|(_, t)| t)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Uuid, &T)> {
        self.rows.iter().map(|(u, (_, t))| (*u, t))
    }
}

/// The replica of the tables Iris manages.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    pub(crate) root: Rows<OpenVswitchRow>,
    pub(crate) bridges: Rows<BridgeRow>,
    pub(crate) ports: Rows<PortRow>,
    pub(crate) interfaces: Rows<InterfaceRow>,
    pub(crate) controllers: Rows<ControllerRow>,
}

impl Replica {
    /// What to monitor to keep this replica.
    pub fn monitor_requests() -> BTreeMap<String, MonitorRequest> {
        Self::monitor_requests_for(Detail::Config)
    }

    /// What to monitor to keep this replica in `detail`.
    pub fn monitor_requests_for(detail: Detail) -> BTreeMap<String, MonitorRequest> {
        fn entry<T: Table>() -> (String, MonitorRequest) {
            (T::NAME.to_owned(), MonitorRequest::columns(T::COLUMNS))
        }
        let mut interface: Vec<&str> = InterfaceRow::COLUMNS.to_vec();
        if detail == Detail::Status {
            interface.extend_from_slice(STATUS_COLUMNS);
        }
        BTreeMap::from([
            entry::<OpenVswitchRow>(),
            entry::<BridgeRow>(),
            entry::<PortRow>(),
            (
                InterfaceRow::NAME.to_owned(),
                MonitorRequest::columns(&interface),
            ),
            entry::<ControllerRow>(),
        ])
    }

    /// Applies a monitor's initial contents or one update. On error the
    /// replica may be partly updated and must be rebuilt from a new monitor.
    pub fn apply(&mut self, updates: &TableUpdates) -> Result<(), ProtocolError> {
        self.root.apply(updates)?;
        self.bridges.apply(updates)?;
        self.ports.apply(updates)?;
        self.interfaces.apply(updates)?;
        self.controllers.apply(updates)
    }

    /// Applies `updates` and returns what changed among interfaces.
    pub fn apply_and_diff(
        &mut self,
        updates: &TableUpdates,
    ) -> Result<Vec<InterfaceEvent>, ProtocolError> {
        let before = self.interface_map();
        self.apply(updates)?;
        Ok(diff_interfaces(&before, &self.interface_map()))
    }

    pub(crate) fn root_uuids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.root.iter().map(|(u, _)| u)
    }

    pub(crate) fn bridge_by_name(&self, name: &str) -> Option<(Uuid, &BridgeRow)> {
        self.bridges.iter().find(|(_, b)| b.name == name)
    }

    /// Bridge and port name of every port, by port uuid.
    fn port_owners(&self) -> BTreeMap<Uuid, (&str, &PortRow)> {
        self.bridges
            .iter()
            .flat_map(|(_, b)| b.ports.iter().map(move |p| (*p, b.name.as_str())))
            .filter_map(|(p, bridge)| self.ports.get(&p).map(|port| (p, (bridge, port))))
            .collect()
    }

    /// A bridge's settings as the database has them.
    pub fn bridge(&self, name: &str) -> Option<BridgeInfo> {
        let (uuid, b) = self.bridge_by_name(name)?;
        Some(BridgeInfo {
            uuid,
            name: b.name.clone(),
            datapath_type: b.datapath_type.clone(),
            fail_mode: b.fail_mode.clone(),
            protocols: b.protocols.clone(),
            other_config: b.other_config.clone(),
            controllers: b
                .controller
                .iter()
                .filter_map(|c| self.controllers.get(c))
                .map(|c| ControllerInfo {
                    target: c.target.clone(),
                    kind: c.kind.clone(),
                    is_connected: c.is_connected,
                })
                .collect(),
            ports: b
                .ports
                .iter()
                .filter_map(|p| self.ports.get(p))
                .map(|p| p.name.clone())
                .collect(),
        })
    }

    /// Every port attached to a bridge.
    pub fn ports(&self) -> Vec<PortInfo> {
        self.port_owners()
            .into_iter()
            .map(|(uuid, (bridge, port))| PortInfo {
                uuid,
                name: port.name.clone(),
                bridge: bridge.to_owned(),
                interfaces: port
                    .interfaces
                    .iter()
                    .filter_map(|i| self.interfaces.get(i))
                    .map(|i| i.name.clone())
                    .collect(),
                external_ids: port.external_ids.clone(),
            })
            .collect()
    }

    /// What ovs-vswitchd reports about the interface called `name`.
    pub fn interface_status(&self, name: &str) -> Option<InterfaceStatus> {
        let (uuid, row) = self.interfaces.iter().find(|(_, i)| i.name == name)?;
        let bridge = self.interface_map().remove(&uuid).and_then(|i| i.bridge);
        Some(InterfaceStatus {
            name: row.name.clone(),
            bridge,
            ofport: row.ofport,
            error: row.error.clone(),
            bfd: row.bfd.clone(),
            bfd_status: row.bfd_status.clone(),
            statistics: row.statistics.clone(),
        })
    }

    /// Every interface, with the port and bridge it belongs to if any.
    pub fn interfaces(&self) -> Vec<InterfaceInfo> {
        self.interface_map().into_values().collect()
    }

    fn interface_map(&self) -> BTreeMap<Uuid, InterfaceInfo> {
        let mut owner: BTreeMap<Uuid, (&str, &str)> = BTreeMap::new();
        for (bridge, port) in self.port_owners().into_values() {
            for iface in &port.interfaces {
                owner.insert(*iface, (bridge, port.name.as_str()));
            }
        }
        self.interfaces
            .iter()
            .map(|(uuid, i)| {
                let (bridge, port) = owner.get(&uuid).copied().unzip();
                let info = InterfaceInfo {
                    uuid,
                    name: i.name.clone(),
                    kind: i.kind.clone(),
                    ofport: i.ofport,
                    options: i.options.clone(),
                    external_ids: i.external_ids.clone(),
                    error: i.error.clone(),
                    port: port.map(str::to_owned),
                    bridge: bridge.map(str::to_owned),
                };
                (uuid, info)
            })
            .collect()
    }
}

/// A bridge as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeInfo {
    pub uuid: Uuid,
    pub name: String,
    pub datapath_type: String,
    pub fail_mode: Option<String>,
    pub protocols: BTreeSet<String>,
    pub other_config: BTreeMap<String, String>,
    pub controllers: Vec<ControllerInfo>,
    pub ports: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerInfo {
    pub target: String,
    /// The `type` column: `primary`, `service`, or unset.
    pub kind: Option<String>,
    /// Whether ovs-vswitchd reports an OpenFlow connection to this target.
    pub is_connected: bool,
}

/// A port attached to a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub uuid: Uuid,
    pub name: String,
    pub bridge: String,
    pub interfaces: Vec<String>,
    pub external_ids: BTreeMap<String, String>,
}

/// An interface, with what the controller needs to program flows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub uuid: Uuid,
    pub name: String,
    /// The `type` column: `""` (system), `internal`, `gre`, ...
    pub kind: String,
    pub ofport: Ofport,
    pub options: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
    /// Why ovs-vswitchd could not add the interface, if it could not.
    pub error: Option<String>,
    /// The port it belongs to; `None` for a row not (or no longer) attached.
    pub port: Option<String>,
    pub bridge: Option<String>,
}

impl InterfaceInfo {
    /// The VI of a VM port (`external_ids:iris-vi`).
    pub fn vi(&self) -> Option<&str> {
        self.external_ids.get(VI_KEY).map(String::as_str)
    }
}

/// An interface as ovs-vswitchd runs it: BFD and counters. The status
/// columns are empty unless the replica follows [`Detail::Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub name: String,
    pub bridge: Option<String>,
    pub ofport: Ofport,
    pub error: Option<String>,
    /// The `bfd` column: BFD's settings (`enable`, `min_rx`, `min_tx`, ...).
    pub bfd: BTreeMap<String, String>,
    /// `bfd_status`: `state` (`admin_down`, `down`, `init`, `up`),
    /// `forwarding`, `diagnostic`, `remote_state`, `flap_count`, ...
    pub bfd_status: BTreeMap<String, String>,
    /// `statistics`: `rx_packets`, `tx_bytes`, `rx_dropped`, ...
    pub statistics: BTreeMap<String, i64>,
}

impl InterfaceStatus {
    /// BFD's session state, if BFD runs on the interface.
    pub fn bfd_state(&self) -> Option<&str> {
        self.bfd_status.get("state").map(String::as_str)
    }

    /// One counter of `statistics`; `None` when OVS does not report it
    /// (it reports nothing it cannot count, and -1 for the same).
    pub fn counter(&self, key: &str) -> Option<u64> {
        self.statistics
            .get(key)
            .and_then(|v| u64::try_from(*v).ok())
    }
}

/// A change among interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceEvent {
    Added(InterfaceInfo),
    /// Any column changed, e.g. ovs-vswitchd assigned the ofport.
    Changed {
        old: InterfaceInfo,
        new: InterfaceInfo,
    },
    Removed(InterfaceInfo),
}

fn diff_interfaces(
    before: &BTreeMap<Uuid, InterfaceInfo>,
    after: &BTreeMap<Uuid, InterfaceInfo>,
) -> Vec<InterfaceEvent> {
    let removed = before
        .iter()
        .filter(|(u, _)| !after.contains_key(u))
        .map(|(_, old)| InterfaceEvent::Removed(old.clone()));
    let added_or_changed = after.iter().filter_map(|(u, new)| match before.get(u) {
        None => Some(InterfaceEvent::Added(new.clone())),
        Some(old) if old != new => Some(InterfaceEvent::Changed {
            old: old.clone(),
            new: new.clone(),
        }),
        Some(_) => None,
    });
    removed.chain(added_or_changed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::parse_table_updates;
    use serde_json::json;

    const BR: &str = "00000000-0000-0000-0000-0000000000b1";
    const PORT: &str = "00000000-0000-0000-0000-0000000000a1";
    const IFACE: &str = "00000000-0000-0000-0000-0000000000c1";

    fn updates(json: serde_json::Value) -> TableUpdates {
        parse_table_updates(&json).unwrap()
    }

    fn initial() -> TableUpdates {
        updates(json!({
            "Bridge": {BR: {"new": {"name": "br-int", "ports": ["uuid", PORT],
                "controller": ["set", []], "datapath_type": "netdev", "fail_mode": "secure",
                "protocols": "OpenFlow13", "other_config": ["map", [["datapath-id", "0000000000000001"]]]}}},
            "Port": {PORT: {"new": {"name": "vm1", "interfaces": ["uuid", IFACE],
                "external_ids": ["map", []]}}},
            "Interface": {IFACE: {"new": {"name": "vm1", "type": "", "options": ["map", []],
                "ofport": ["set", []], "external_ids": ["map", [["iris-vi", "7"]]],
                "error": ["set", []]}}},
        }))
    }

    #[test]
    fn initial_contents_become_typed_views() {
        let mut r = Replica::default();
        let events = r.apply_and_diff(&initial()).unwrap();
        let [InterfaceEvent::Added(vm1)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(vm1.vi(), Some("7"));
        assert_eq!(vm1.ofport, Ofport::Pending);
        assert_eq!(vm1.bridge.as_deref(), Some("br-int"));
        let br = r.bridge("br-int").unwrap();
        assert_eq!(br.protocols, BTreeSet::from(["OpenFlow13".to_owned()]));
        assert_eq!(br.fail_mode.as_deref(), Some("secure"));
        assert_eq!(r.ports()[0].interfaces, vec!["vm1".to_owned()]);
    }

    #[test]
    fn partial_modification_merges_and_reports_the_change() {
        let mut r = Replica::default();
        r.apply(&initial()).unwrap();
        let events = r
            .apply_and_diff(&updates(json!({"Interface": {IFACE: {
                "old": {"ofport": ["set", []]}, "new": {"ofport": 5}}}})))
            .unwrap();
        let [InterfaceEvent::Changed { old, new }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            (old.ofport, new.ofport),
            (Ofport::Pending, Ofport::Assigned(5))
        );
        assert_eq!(
            new.vi(),
            Some("7"),
            "columns absent from the update are kept"
        );
    }

    #[test]
    fn deletion_and_detachment_are_reported() {
        let mut r = Replica::default();
        r.apply(&initial()).unwrap();
        // The port leaves the bridge first: the interface is still there but unattached.
        let events = r
            .apply_and_diff(&updates(
                json!({"Bridge": {BR: {"old": {"ports": ["uuid", PORT]},
                "new": {"ports": ["set", []]}}}}),
            ))
            .unwrap();
        let [InterfaceEvent::Changed { new, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(new.bridge, None);
        let events = r
            .apply_and_diff(&updates(
                json!({"Interface": {IFACE: {"old": {"name": "vm1"}}}}),
            ))
            .unwrap();
        assert!(matches!(events.as_slice(), [InterfaceEvent::Removed(i)] if i.name == "vm1"));
        assert!(r.interfaces().is_empty());
    }

    #[test]
    fn status_columns_are_read_and_monitored_only_when_asked() {
        let columns = |detail| {
            Replica::monitor_requests_for(detail)["Interface"]
                .columns
                .clone()
                .unwrap()
        };
        assert!(!columns(Detail::Config).contains(&"statistics".to_owned()));
        assert!(columns(Detail::Status).contains(&"statistics".to_owned()));
        assert!(columns(Detail::Status).contains(&"bfd_status".to_owned()));

        let mut r = Replica::default();
        r.apply(&initial()).unwrap();
        let events = r
            .apply_and_diff(&updates(json!({"Interface": {IFACE: {
                "old": {}, "new": {
                    "bfd": ["map", [["enable", "true"]]],
                    "bfd_status": ["map", [["state", "up"], ["forwarding", "true"]]],
                    "statistics": ["map", [["rx_packets", 12], ["tx_bytes", 3400], ["rx_crc_err", -1]]]}}}})))
            .unwrap();
        assert!(events.is_empty(), "counters are no interface change");
        let s = r.interface_status("vm1").unwrap();
        assert_eq!(s.bridge.as_deref(), Some("br-int"));
        assert_eq!(s.bfd_state(), Some("up"));
        assert_eq!(s.counter("rx_packets"), Some(12));
        assert_eq!(s.counter("tx_bytes"), Some(3400));
        assert_eq!(s.counter("rx_crc_err"), None, "-1: not counted");
        assert_eq!(s.counter("collisions"), None);
        assert!(r.interface_status("vm2").is_none());

        let e = r
            .apply(&updates(json!({"Interface": {IFACE: {
                "new": {"statistics": ["map", [["rx_packets", "many"]]]}}}})))
            .unwrap_err();
        assert!(e.context.contains("column statistics"), "{e}");
    }

    #[test]
    fn failed_ofport_and_bad_types() {
        let mut r = Replica::default();
        r.apply(&updates(
            json!({"Interface": {IFACE: {"new": {"name": "gre0", "ofport": -1,
            "error": "could not add network device gre0"}}}}),
        ))
        .unwrap();
        let i = &r.interfaces()[0];
        assert_eq!(i.ofport, Ofport::Failed);
        assert!(i.error.as_deref().unwrap().contains("could not add"));

        let e = r
            .apply(&updates(
                json!({"Interface": {IFACE: {"new": {"ofport": "three"}}}}),
            ))
            .unwrap_err();
        assert!(
            e.context.contains("Interface row") && e.context.contains("column ofport"),
            "{e}"
        );
    }
}
