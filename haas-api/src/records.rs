//! Everything the broker knows, in memory and written through to the
//! [`Store`]: providers, tokens, PMs, flavors, VIs, nodes and operations.
//!
//! Plain data and functions: the API holds one lock around [`Records`]
//! while it decides and writes, so two requests never see the same free
//! capacity, tunnel key, MAC or address.

use crate::placement::{add, PmView};
use crate::store::{Store, StoreError};
use iris_schemas::broker::{
    Addressing, BrokerEvent, Capacity, Change, Flavor, GroupPolicy, Node, NodeState, Operation,
    OperationStatus, Page, PmCreate, Provider, Scope, TokenInfo, Vi,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

const PROVIDERS: &str = "providers";
const TOKENS: &str = "tokens";
const PMS: &str = "pms";
const FLAVORS: &str = "flavors";
const VIS: &str = "vis";
const NODES: &str = "nodes";
const OPERATIONS: &str = "operations";

/// A token: who it speaks for and the argon2 hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub info: TokenInfo,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmRecord {
    pub spec: PmCreate,
    pub draining: bool,
}

/// A node and what the broker needs to make, account and unmake it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: Node,
    pub size: Capacity,
    /// The operation now making, moving or unmaking it.
    pub operation: String,
    /// The group policy it was asked with, which a migration keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<GroupPolicy>,
    /// The PM a migration is moving it to: its size counts there as well
    /// as on `node.pm` until the move ends, so that no other request takes
    /// the room it is moving into nor the room it may roll back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrating_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub op: Operation,
    /// The `Idempotency-Key` it was asked with.
    pub idempotency_key: Option<String>,
    /// The request it answers (method, path, body), so that a key sent
    /// again with another request is refused rather than answered wrongly.
    #[serde(default)]
    pub request: Option<String>,
}

/// The broker's records.
#[derive(Debug)]
pub struct Records {
    store: Arc<dyn Store>,
    pub providers: BTreeMap<String, Provider>,
    pub tokens: BTreeMap<String, TokenRecord>,
    pub pms: BTreeMap<String, PmRecord>,
    /// By `provider/name`.
    pub flavors: BTreeMap<String, Flavor>,
    pub vis: BTreeMap<String, Vi>,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub operations: BTreeMap<String, OperationRecord>,
    /// Every write of a node, VI or operation, for the change stream.
    events: tokio::sync::broadcast::Sender<BrokerEvent>,
}

/// Events a change-stream reader may fall behind by before it is told it
/// missed some (`lagged`).
const EVENT_BACKLOG: usize = 4096;

fn load<T: DeserializeOwned>(
    store: &dyn Store,
    tree: &str,
) -> Result<BTreeMap<String, T>, StoreError> {
    store
        .scan(tree)?
        .into_iter()
        .map(|(id, bytes)| {
            serde_json::from_slice(&bytes)
                .map(|v| (id.clone(), v))
                .map_err(|e| StoreError::new(format!("{tree}/{id} does not decode: {e}")))
        })
        .collect()
}

fn put<T: Serialize>(store: &dyn Store, tree: &str, id: &str, v: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(v).map_err(|e| StoreError::new(format!("{tree}/{id}: {e}")))?;
    store.put(tree, id, &bytes)
}

/// The key of a provider's flavor.
pub fn flavor_key(provider: &str, name: &str) -> String {
    format!("{provider}/{name}")
}

impl Records {
    pub fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let s = store.as_ref();
        Ok(Self {
            providers: load(s, PROVIDERS)?,
            tokens: load(s, TOKENS)?,
            pms: load(s, PMS)?,
            flavors: load(s, FLAVORS)?,
            vis: load(s, VIS)?,
            nodes: load(s, NODES)?,
            operations: load(s, OPERATIONS)?,
            store,
            events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
        })
    }

    /// The change stream from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<BrokerEvent> {
        self.events.subscribe()
    }

    fn emit(&self, e: BrokerEvent) {
        // No reader is no error.
        let _ = self.events.send(e);
    }

    /// A VI as the API shows it: with its node count.
    pub fn vi_out(&self, v: &Vi) -> Vi {
        let mut v = v.clone();
        v.nodes = u32::try_from(self.nodes_of_vi(&v.id).len()).unwrap_or(u32::MAX);
        v
    }

    pub fn put_provider(&mut self, p: Provider) -> Result<(), StoreError> {
        put(self.store.as_ref(), PROVIDERS, &p.id, &p)?;
        self.providers.insert(p.id.clone(), p);
        Ok(())
    }

    pub fn delete_provider(&mut self, id: &str) -> Result<(), StoreError> {
        self.store.delete(PROVIDERS, id)?;
        self.providers.remove(id);
        Ok(())
    }

    pub fn put_token(&mut self, t: TokenRecord) -> Result<(), StoreError> {
        put(self.store.as_ref(), TOKENS, &t.info.id, &t)?;
        self.tokens.insert(t.info.id.clone(), t);
        Ok(())
    }

    pub fn delete_token(&mut self, id: &str) -> Result<(), StoreError> {
        self.store.delete(TOKENS, id)?;
        self.tokens.remove(id);
        Ok(())
    }

    pub fn put_pm(&mut self, p: PmRecord) -> Result<(), StoreError> {
        put(self.store.as_ref(), PMS, &p.spec.name, &p)?;
        self.pms.insert(p.spec.name.clone(), p);
        Ok(())
    }

    pub fn delete_pm(&mut self, name: &str) -> Result<(), StoreError> {
        self.store.delete(PMS, name)?;
        self.pms.remove(name);
        Ok(())
    }

    pub fn put_flavor(&mut self, f: Flavor) -> Result<(), StoreError> {
        let key = flavor_key(&f.provider, &f.spec.name);
        put(self.store.as_ref(), FLAVORS, &key, &f)?;
        self.flavors.insert(key, f);
        Ok(())
    }

    pub fn delete_flavor(&mut self, key: &str) -> Result<(), StoreError> {
        self.store.delete(FLAVORS, key)?;
        self.flavors.remove(key);
        Ok(())
    }

    pub fn put_vi(&mut self, v: Vi) -> Result<(), StoreError> {
        put(self.store.as_ref(), VIS, &v.id, &v)?;
        self.emit(BrokerEvent::Vi {
            change: Change::Updated,
            vi: self.vi_out(&v),
        });
        self.vis.insert(v.id.clone(), v);
        Ok(())
    }

    pub fn delete_vi(&mut self, id: &str) -> Result<(), StoreError> {
        self.store.delete(VIS, id)?;
        if let Some(v) = self.vis.remove(id) {
            self.emit(BrokerEvent::Vi {
                change: Change::Removed,
                vi: self.vi_out(&v),
            });
        }
        Ok(())
    }

    pub fn put_node(&mut self, n: NodeRecord) -> Result<(), StoreError> {
        put(self.store.as_ref(), NODES, &n.node.id, &n)?;
        self.emit(BrokerEvent::Node {
            change: Change::Updated,
            node: n.node.clone(),
        });
        self.nodes.insert(n.node.id.clone(), n);
        Ok(())
    }

    pub fn delete_node(&mut self, id: &str) -> Result<(), StoreError> {
        self.store.delete(NODES, id)?;
        if let Some(n) = self.nodes.remove(id) {
            self.emit(BrokerEvent::Node {
                change: Change::Removed,
                node: n.node,
            });
        }
        Ok(())
    }

    pub fn put_operation(&mut self, o: OperationRecord) -> Result<(), StoreError> {
        put(self.store.as_ref(), OPERATIONS, &o.op.id, &o)?;
        self.emit(BrokerEvent::Operation {
            operation: o.op.clone(),
        });
        self.operations.insert(o.op.id.clone(), o);
        Ok(())
    }

    /// Sets a node's state (and error) and writes it.
    pub fn set_node_state(
        &mut self,
        id: &str,
        state: NodeState,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let Some(mut n) = self.nodes.get(id).cloned() else {
            return Ok(());
        };
        n.node.state = state;
        n.node.last_error = error;
        self.put_node(n)
    }

    /// Updates an operation with `f` and writes it.
    pub fn update_operation(
        &mut self,
        id: &str,
        now_ms: u64,
        f: impl FnOnce(&mut Operation),
    ) -> Result<(), StoreError> {
        let Some(mut o) = self.operations.get(id).cloned() else {
            return Ok(());
        };
        f(&mut o.op);
        o.op.updated_ms = now_ms;
        self.put_operation(o)
    }

    /// The operation `provider` started with `key`, if any.
    pub fn operation_by_key(&self, provider: &str, key: &str) -> Option<&OperationRecord> {
        self.operations
            .values()
            .find(|o| o.op.provider == provider && o.idempotency_key.as_deref() == Some(key))
    }

    pub fn operations_running(&self) -> Vec<OperationRecord> {
        self.operations
            .values()
            .filter(|o| o.op.status == OperationStatus::Running)
            .cloned()
            .collect()
    }

    /// Every PM with what its nodes take.
    pub fn pm_views(&self) -> Vec<PmView> {
        self.pms
            .values()
            .map(|p| PmView {
                name: p.spec.name.clone(),
                capacity: p.spec.capacity,
                used: self.used_on(&p.spec.name),
                draining: p.draining,
            })
            .collect()
    }

    pub fn used_on(&self, pm: &str) -> Capacity {
        self.nodes
            .values()
            .filter(|n| n.node.pm == pm || n.migrating_to.as_deref() == Some(pm))
            .fold(Capacity::default(), |a, n| add(a, n.size))
    }

    pub fn nodes_on_pm(&self, pm: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.node.pm == pm || n.migrating_to.as_deref() == Some(pm))
            .map(|n| n.node.id.clone())
            .collect()
    }

    pub fn nodes_of_vi(&self, vi: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.node.vi == vi)
            .map(|n| n.node.id.clone())
            .collect()
    }

    /// The PMs a provider's group has nodes on (or is moving nodes to),
    /// node `except` left out.
    pub fn group_pms(&self, provider: &str, group: &str, except: Option<&str>) -> BTreeSet<String> {
        self.nodes
            .values()
            .filter(|n| n.node.provider == provider && n.node.group.as_deref() == Some(group))
            .filter(|n| except != Some(n.node.id.as_str()))
            .flat_map(|n| std::iter::once(n.node.pm.clone()).chain(n.migrating_to.clone()))
            .collect()
    }

    /// Whether node `id` is, or is moving, on `pm`: what a driver holds
    /// there for it is owned.
    pub fn owns(&self, pm: &str, id: &str) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|n| n.node.pm == pm || n.migrating_to.as_deref() == Some(pm))
    }

    /// The lowest tunnel key from `first` on that no VI of the broker holds
    /// and that is not in `elsewhere` (the VIs the controller has).
    pub fn free_tunnel_key(&self, first: u32, elsewhere: &BTreeSet<u32>) -> Option<u32> {
        let used: BTreeSet<u32> = self.vis.values().map(|v| v.tunnel_key).collect();
        (first..=iris_controller::model::ViId::MAX)
            .find(|k| !used.contains(k) && !elsewhere.contains(k))
    }

    /// The MACs and addresses the VI's nodes hold.
    pub fn vi_addresses(&self, vi: &str) -> (BTreeSet<String>, BTreeSet<Ipv4Addr>) {
        let mut macs = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for n in self.nodes.values().filter(|n| n.node.vi == vi) {
            macs.insert(n.node.mac.clone());
            if let Some(ip) = n.node.ip.as_deref().and_then(|c| c.split('/').next()) {
                if let Ok(ip) = ip.parse() {
                    ips.insert(ip);
                }
            }
        }
        (macs, ips)
    }
}

/// What happens to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEvent {
    /// The driver made it and the controller has its registry entry.
    Made,
    /// The driver or the controller failed; the node keeps `last_error`.
    Failed,
    /// Its deletion was asked for, or its drain found no guest left.
    DeleteAsked,
    /// Its deletion once its guests have left was asked for.
    DrainAsked,
    /// Its guests did not all leave in time: it stays.
    DrainGaveUp,
    /// Its migration to another PM was asked for.
    MigrateAsked,
    /// Its migration ended, on the new PM or rolled back to the old one.
    Settled,
}

/// The node state machine (building → active → migrating → active →
/// deleting; active → draining → deleting or, timed out, active; error
/// with `last_error`): what `state` becomes on `event`, or why the event
/// is refused. Asking for a state the node is in (or is past) is a
/// success.
pub fn transition(state: NodeState, event: NodeEvent) -> Result<NodeState, &'static str> {
    use NodeEvent::{DeleteAsked, DrainAsked, DrainGaveUp, Failed, Made, MigrateAsked, Settled};
    use NodeState::{Active, Building, Deleting, Draining, Error, Migrating};
    match (state, event) {
        (Building | Active, Made) => Ok(Active),
        (Error, Made) => Err("a node in error is not made again; delete it and ask for another"),
        (Deleting, Made) => Err("the node is being deleted"),
        (Draining, Made) => Err("the node is draining"),
        (Migrating, Made) => Err("the node is migrating"),
        (_, Failed) => Ok(Error),
        (Active | Error | Deleting | Draining, DeleteAsked) => Ok(Deleting),
        (Building, DeleteAsked | DrainAsked) => {
            Err("the node is still being built; delete it once its operation ends")
        }
        (Migrating, DeleteAsked | DrainAsked) => {
            Err("the node is migrating; delete it once its operation ends")
        }
        (Active | Draining, DrainAsked) => Ok(Draining),
        (Deleting, DrainAsked) => Ok(Deleting),
        (Error, DrainAsked) => {
            Err("a node in error has no guests to drain; delete it without drain")
        }
        (Draining, DrainGaveUp) => Ok(Active),
        (Building | Active | Migrating | Deleting | Error, DrainGaveUp) => {
            Err("the node is not draining")
        }
        (Active | Migrating, MigrateAsked) => Ok(Migrating),
        (Building, MigrateAsked) => {
            Err("the node is still being built; migrate it once it is active")
        }
        (Deleting, MigrateAsked) => Err("the node is being deleted"),
        (Draining, MigrateAsked) => Err("the node is draining to be deleted"),
        (Error, MigrateAsked) => {
            Err("a node in error is not migrated; delete it and ask for another")
        }
        (Migrating | Active, Settled) => Ok(Active),
        (Building | Deleting | Draining | Error, Settled) => Err("the node is not migrating"),
    }
}

/// Whether `scope` may see an object of `owner`.
pub fn may_see(scope: &Scope, owner: &str) -> bool {
    match scope {
        Scope::Admin => true,
        Scope::Provider(p) => p == owner,
    }
}

/// A static pool: its network, prefix and the addresses never handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub reserved: BTreeSet<Ipv4Addr>,
}

impl Pool {
    /// Checks a VI's addressing; `None` for DHCP. Errors name the field.
    pub fn of(addressing: &Addressing) -> Result<Option<Self>, (String, String)> {
        let Addressing::StaticPool { cidr, reserved } = addressing else {
            return Ok(None);
        };
        let bad = |why: &str| {
            (
                "addressing/cidr".to_owned(),
                format!("{cidr:?} {why}; write a network as ADDRESS/PREFIX, e.g. \"10.1.1.0/24\""),
            )
        };
        let (ip, prefix) = cidr.split_once('/').ok_or_else(|| bad("has no /PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("is not an IPv4 network"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| bad("needs a prefix of 8 to 30"))?;
        let mask = u32::MAX << (32 - prefix);
        if u32::from(ip) & !mask != 0 {
            return Err(bad("has host bits set"));
        }
        let mut res = BTreeSet::new();
        for (i, r) in reserved.iter().enumerate() {
            let ip: Ipv4Addr = r.parse().map_err(|_| {
                (
                    format!("addressing/reserved/{i}"),
                    format!("{r:?} is not an IPv4 address"),
                )
            })?;
            res.insert(ip);
        }
        Ok(Some(Self {
            network: ip,
            prefix,
            reserved: res,
        }))
    }

    /// The lowest `count` addresses not in `taken`, not reserved, not the
    /// network's or broadcast address.
    pub fn allocate(&self, taken: &BTreeSet<Ipv4Addr>, count: usize) -> Option<Vec<Ipv4Addr>> {
        let first = u32::from(self.network) + 1;
        let last = u32::from(self.network) + (1u32 << (32 - self.prefix)) - 2;
        let out: Vec<Ipv4Addr> = (first..=last)
            .map(Ipv4Addr::from)
            .filter(|ip| !taken.contains(ip) && !self.reserved.contains(ip))
            .take(count)
            .collect();
        (out.len() == count).then_some(out)
    }
}

/// The items of `all` (in id order) after `marker`, at most `limit`.
pub fn paginate<T: Clone>(
    all: impl Iterator<Item = (String, T)>,
    marker: Option<&str>,
    limit: usize,
) -> Page<T> {
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for (id, item) in all.filter(|(id, _)| marker.is_none_or(|m| id.as_str() > m)) {
        if items.len() == limit {
            more = true;
            break;
        }
        last = Some(id);
        items.push(item);
    }
    Page {
        items,
        next_marker: if more { last } else { None },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pages_follow_the_marker_to_the_end() {
        let all: Vec<(String, u32)> = (0..5).map(|i| (format!("id{i}"), i)).collect();
        let p1 = paginate(all.clone().into_iter(), None, 2);
        assert_eq!(p1.items, [0, 1]);
        let p2 = paginate(all.clone().into_iter(), p1.next_marker.as_deref(), 2);
        assert_eq!(p2.items, [2, 3]);
        let p3 = paginate(all.clone().into_iter(), p2.next_marker.as_deref(), 2);
        assert_eq!(p3.items, [4]);
        assert_eq!(p3.next_marker, None);
        // Exactly a page left: no marker to an empty page.
        let p = paginate(all.into_iter(), Some("id2"), 2);
        assert_eq!((p.items, p.next_marker), (vec![3, 4], None));
    }

    #[test]
    fn a_pool_skips_network_broadcast_reserved_and_taken() {
        let pool = Pool::of(&Addressing::StaticPool {
            cidr: "10.1.1.0/29".into(),
            reserved: vec!["10.1.1.1".into()],
        })
        .unwrap()
        .unwrap();
        let taken = ["10.1.1.3".parse().unwrap()].into();
        let got = pool.allocate(&taken, 4).unwrap();
        let want: Vec<Ipv4Addr> = ["10.1.1.2", "10.1.1.4", "10.1.1.5", "10.1.1.6"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(pool.allocate(&taken, 5), None);
    }

    #[test]
    fn a_bad_pool_names_its_field() {
        for (cidr, field) in [
            ("10.1.1.0", "addressing/cidr"),
            ("10.1.1.1/24", "addressing/cidr"),
            ("10.1.1.0/31", "addressing/cidr"),
            ("nonsense/24", "addressing/cidr"),
        ] {
            let e = Pool::of(&Addressing::StaticPool {
                cidr: cidr.into(),
                reserved: vec![],
            })
            .unwrap_err();
            assert_eq!(e.0, field, "{cidr}: {}", e.1);
        }
        let e = Pool::of(&Addressing::StaticPool {
            cidr: "10.0.0.0/24".into(),
            reserved: vec!["x".into()],
        })
        .unwrap_err();
        assert_eq!(e.0, "addressing/reserved/0");
    }

    #[test]
    fn the_node_state_machine() {
        use NodeEvent::*;
        use NodeState::*;
        assert_eq!(transition(Building, Made), Ok(Active));
        assert_eq!(transition(Active, Made), Ok(Active), "a resumed operation");
        assert_eq!(transition(Building, Failed), Ok(Error));
        assert_eq!(transition(Deleting, Failed), Ok(Error));
        assert_eq!(transition(Active, DeleteAsked), Ok(Deleting));
        assert_eq!(transition(Error, DeleteAsked), Ok(Deleting));
        assert_eq!(
            transition(Deleting, DeleteAsked),
            Ok(Deleting),
            "already so: a success"
        );
        assert!(transition(Building, DeleteAsked).is_err());
        assert!(transition(Error, Made).is_err());
        assert_eq!(transition(Active, MigrateAsked), Ok(Migrating));
        assert_eq!(transition(Migrating, MigrateAsked), Ok(Migrating));
        assert_eq!(transition(Migrating, Settled), Ok(Active));
        assert!(transition(Migrating, DeleteAsked).is_err());
        assert!(transition(Building, MigrateAsked).is_err());
        assert!(transition(Error, MigrateAsked).is_err());
        assert!(transition(Deleting, Made).is_err());
        assert_eq!(transition(Active, DrainAsked), Ok(Draining));
        assert_eq!(transition(Draining, DrainAsked), Ok(Draining));
        assert_eq!(transition(Deleting, DrainAsked), Ok(Deleting));
        assert_eq!(transition(Draining, DeleteAsked), Ok(Deleting));
        assert_eq!(transition(Draining, DrainGaveUp), Ok(Active));
        assert!(transition(Active, DrainGaveUp).is_err());
        assert!(transition(Error, DrainAsked).is_err());
        assert!(transition(Building, DrainAsked).is_err());
        assert!(transition(Draining, MigrateAsked).is_err());
        assert!(transition(Draining, Made).is_err());
    }

    fn records() -> (tempfile::TempDir, Records) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        (dir, Records::load(store).unwrap())
    }

    fn node(id: &str, provider: &str, pm: &str, group: Option<&str>, vcpus: u32) -> NodeRecord {
        NodeRecord {
            node: Node {
                id: id.into(),
                provider: provider.into(),
                vi: "vi-1".into(),
                flavor: "f".into(),
                state: NodeState::Active,
                last_error: None,
                pm: pm.into(),
                group: group.map(str::to_owned),
                mac: format!("0a:00:00:00:00:{id}"),
                ip: Some(format!("10.0.0.{id}/24")),
                management_address: None,
                ssh_user: "iris".into(),
                nested_virtualization: false,
                bridge: "cloudbr0".into(),
                vlan_trunk: iris_schemas::broker::VlanRange { first: 1, last: 2 },
                mtu: 1500,
            },
            size: Capacity {
                vcpus,
                memory_mib: 100,
                disk_gib: 1,
            },
            operation: "op-1".into(),
            policy: None,
            migrating_to: None,
        }
    }

    #[test]
    fn use_groups_and_keys_are_counted_per_pm_and_provider() {
        let (_dir, mut r) = records();
        r.put_node(node("1", "p1", "pm1", Some("g"), 2)).unwrap();
        r.put_node(node("2", "p1", "pm2", Some("g"), 3)).unwrap();
        r.put_node(node("3", "p2", "pm1", Some("g"), 4)).unwrap();
        assert_eq!(r.used_on("pm1").vcpus, 6);
        assert_eq!(r.used_on("pm1").memory_mib, 200);
        assert_eq!(
            r.group_pms("p1", "g", None),
            ["pm1".to_string(), "pm2".to_string()].into()
        );
        assert_eq!(
            r.group_pms("p1", "g", Some("2")),
            ["pm1".to_string()].into()
        );
        assert_eq!(r.group_pms("p2", "g", None), ["pm1".to_string()].into());
        // A node moving counts on both PMs until its move ends.
        let mut moving = node("4", "p1", "pm1", Some("g"), 5);
        moving.migrating_to = Some("pm3".into());
        r.put_node(moving).unwrap();
        assert_eq!((r.used_on("pm1").vcpus, r.used_on("pm3").vcpus), (11, 5));
        assert!(r.owns("pm3", "4") && r.owns("pm1", "4") && !r.owns("pm2", "4"));
        assert_eq!(
            r.group_pms("p1", "g", None),
            ["pm1".to_string(), "pm2".to_string(), "pm3".to_string()].into()
        );
        r.delete_node("4").unwrap();
        let (macs, ips) = r.vi_addresses("vi-1");
        assert_eq!((macs.len(), ips.len()), (3, 3));
        // An idempotency key is the provider's own.
        let op = |provider: &str| OperationRecord {
            op: Operation {
                id: format!("op-{provider}"),
                provider: provider.into(),
                kind: iris_schemas::broker::OperationKind::CreateNodes,
                status: OperationStatus::Running,
                done: 0,
                total: 1,
                nodes: vec![],
                error: None,
                drain: None,
                created_ms: 0,
                updated_ms: 0,
            },
            idempotency_key: Some("k".into()),
            request: None,
        };
        r.put_operation(op("p1")).unwrap();
        assert_eq!(r.operation_by_key("p1", "k").unwrap().op.id, "op-p1");
        assert!(r.operation_by_key("p2", "k").is_none());
        assert_eq!(r.operations_running().len(), 1);
    }

    #[test]
    fn scopes_see_only_their_own() {
        assert!(may_see(&Scope::Admin, "p1"));
        assert!(may_see(&Scope::Provider("p1".into()), "p1"));
        assert!(!may_see(&Scope::Provider("p2".into()), "p1"));
    }
}
