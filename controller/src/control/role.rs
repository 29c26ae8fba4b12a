//! The control loop's part in a cluster of replicas (`[cluster]`): every
//! replica keeps a session with every switch, the leader as OpenFlow
//! MASTER and the others as SLAVE (OpenFlow 1.3.5 §6.3.7). Only a replica
//! that may write ([`Role::writes`]) sends FLOW_MODs, GROUP_MODs and
//! PACKET_OUTs, acts on PacketIns or commits to the store; a standby keeps
//! its view of the store current ([`Control::reload`]) and its sessions
//! open, so that on winning the election it claims MASTER with the new
//! generation id, reads every switch's tables and reconciles them (which,
//! when the switches hold what the store says, sends nothing).

use super::{Control, ManagedHost};
use crate::model::{Topology, Vi};
use crate::registry::Registry;
use crate::server::ConnId;
use crate::session::Batch;
use ofp::message::{ControllerRole, ErrorMsg, Message, RoleMsg};
use ofp::ErrorCode;
use std::collections::BTreeSet;
use tracing::{info, warn};

/// What this controller is to its switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// No `[cluster]`: the only controller; it sends no role requests
    /// (the switches leave it EQUAL) and writes.
    #[default]
    Alone,
    /// Holds the election's leadership of this generation: MASTER.
    Leader { generation: u64 },
    /// Another replica leads (or none yet): SLAVE, with the newest
    /// generation id this replica knows.
    Standby { generation: u64 },
}

impl Role {
    /// Whether this controller may write to switches and to the store.
    pub fn writes(self) -> bool {
        !matches!(self, Self::Standby { .. })
    }

    /// The role request a switch must get, if any.
    fn request(self) -> Option<RoleMsg> {
        match self {
            Self::Alone => None,
            Self::Leader { generation } => Some(RoleMsg {
                role: ControllerRole::Master,
                generation_id: generation,
            }),
            Self::Standby { generation } => Some(RoleMsg {
                role: ControllerRole::Slave,
                generation_id: generation,
            }),
        }
    }
}

/// OFPRRFC_STALE: a role request whose generation id is older than one the
/// switch has seen.
const ROLE_STALE: ErrorCode = ErrorCode::new(ofp::error::error_type::ROLE_REQUEST_FAILED, 0);

impl Control {
    pub fn role(&self) -> Role {
        self.role
    }

    /// Won the election as `generation`: claims MASTER on every switch,
    /// then reads their tables and reconciles them against the state
    /// [`Self::reload`] just read from the store.
    pub fn lead(&mut self, generation: u64) {
        self.role = Role::Leader { generation };
        // A leader's view runs ahead of what a standby read; standing by
        // again, it is read whole before it counts as current.
        self.view_at = None;
        self.metrics.store_followed_revision.set(0);
        self.metrics.leader.set(1);
        self.metrics.leader_generation.set(clamp(generation));
        self.metrics.leaderships.inc();
        self.metrics.switches_slave.set(0);
        info!(generation, "leading: claiming MASTER on every switch");
        let conns: Vec<ConnId> = self.switches.keys().copied().collect();
        for conn in conns {
            self.send_role(conn);
            if let Some(sw) = self.switches.get_mut(&conn) {
                if sw.dpid.is_some() {
                    // The role request goes first on the connection: the
                    // switch holds it before the dump and the FLOW_MODs
                    // the reconciliation may send.
                    sw.reset_sync();
                }
            }
        }
        self.answers_changed();
        self.resync_stale(std::time::Instant::now());
    }

    /// Lost the leadership (or never had it): SLAVE on every switch with
    /// `generation`, the newest this replica knows; from now on nothing
    /// is written.
    pub fn stand_by(&mut self, generation: u64) {
        let was = self.role;
        self.role = Role::Standby { generation };
        self.metrics.leader.set(0);
        self.metrics.leader_generation.set(clamp(generation));
        self.metrics.switches_master.set(0);
        // What the data plane taught while the store was away is the
        // leader's to learn again, not this replica's to commit.
        self.owed = crate::store::Batch::new();
        // No connection answers ARP from a snapshot of a standby.
        self.answers.publish(None);
        self.answers_stale = Some(std::time::Instant::now());
        if matches!(was, Role::Leader { .. }) {
            warn!(
                generation,
                "no longer leading: SLAVE on every switch, writing nothing"
            );
        }
        let conns: Vec<ConnId> = self.switches.keys().copied().collect();
        for conn in conns {
            self.send_role(conn);
        }
    }

    /// Sends `conn` the role request of this controller's role.
    pub(super) fn send_role(&mut self, conn: ConnId) {
        let Some(request) = self.role.request() else {
            return;
        };
        if let Some(sw) = self.switches.get(&conn) {
            let batch = Batch {
                messages: vec![Message::RoleRequest(request)],
                barrier: None,
            };
            if sw.handle.try_submit(batch).is_err() {
                warn!(%conn, "the role request could not be queued; the switch is not keeping up");
            }
        }
    }

    /// The switch's ROLE_REPLY.
    pub(super) fn on_role_reply(&mut self, conn: ConnId, reply: RoleMsg) {
        if let Some(sw) = self.switches.get_mut(&conn) {
            sw.role = Some(reply.role);
        }
        self.count_roles();
    }

    fn count_roles(&self) {
        let count = |r| self.switches.values().filter(|s| s.role == Some(r)).count();
        self.metrics
            .switches_master
            .set(i64::try_from(count(ControllerRole::Master)).unwrap_or(i64::MAX));
        self.metrics
            .switches_slave
            .set(i64::try_from(count(ControllerRole::Slave)).unwrap_or(i64::MAX));
    }

    /// An OFPT_ERROR for a role request: says what it means for this
    /// replica. `true` if it was one.
    pub(super) fn on_role_error(&mut self, conn: ConnId, error: &ErrorMsg) -> bool {
        let ErrorMsg::Standard { code, .. } = error else {
            return false;
        };
        if code.kind != ofp::error::error_type::ROLE_REQUEST_FAILED {
            return false;
        }
        let peer = self.switches.get(&conn).map(|s| s.peer.clone());
        if let Some(sw) = self.switches.get_mut(&conn) {
            sw.role = None;
        }
        self.count_roles();
        match (self.role, *code == ROLE_STALE) {
            (Role::Leader { generation }, true) => warn!(
                %conn,
                ?peer,
                generation,
                "the switch refused MASTER as stale (OFPRRFC_STALE): it has seen a newer \
                 generation id, so another replica leads since; this replica writes nothing \
                 there and stands by once the election says so"
            ),
            (Role::Standby { generation }, true) => info!(
                %conn,
                ?peer,
                generation,
                "the switch refused SLAVE as stale (OFPRRFC_STALE): a newer leader claimed it, \
                 which made this replica SLAVE there already"
            ),
            _ => warn!(%conn, ?peer, "the switch refused the role request: {error}"),
        }
        true
    }

    /// Replaces the registry, hosts and VIs with what the store holds now
    /// (`hosts` and `vis` are the configuration's merged with the
    /// store's). The ports the OVSDB side reported stay. Done by a standby
    /// each time the leader commits, and by a replica as it wins.
    pub fn reload(&mut self, hosts: Vec<ManagedHost>, vis: Vec<Vi>, registry: Registry) {
        self.registry = registry;
        self.reload_topology(hosts, vis);
    }

    /// Replaces the hosts and VIs alone, as a standby does after a commit
    /// that changed them (its registry entries applied with
    /// [`Self::apply_stored`]); what was compiled from them goes stale.
    pub fn reload_topology(&mut self, hosts: Vec<ManagedHost>, vis: Vec<Vi>) {
        let names: BTreeSet<_> = hosts.iter().map(|m| m.host.name.clone()).collect();
        let mut topology = Topology {
            vm_ports: std::mem::take(&mut self.topology.vm_ports),
            tunnels: std::mem::take(&mut self.topology.tunnels),
            ..Topology::default()
        };
        topology.vm_ports.retain(|(h, _), _| names.contains(h));
        topology
            .tunnels
            .retain(|(h, peer), _| names.contains(h) && names.contains(peer));
        self.controllers.clear();
        for m in hosts {
            if let Some(c) = m.controller {
                self.controllers.insert(m.host.name.clone(), c);
            }
            topology.hosts.insert(m.host.name.clone(), m.host);
        }
        for v in vis {
            topology.vis.insert(v.id, v);
        }
        for gone in self.topology.hosts.keys() {
            if !names.contains(gone) {
                self.inventory.forget(gone);
            }
        }
        self.topology = topology;
        self.registry_restored();
        for sw in self.switches.values_mut() {
            sw.host = sw.dpid.and_then(|d| {
                self.topology
                    .hosts
                    .values()
                    .find(|h| h.datapath_id == d)
                    .map(|h| h.name.clone())
            });
        }
        self.count_switches();
        self.announce_hosts();
    }
}

impl Control {
    /// Makes the store's commits conditional on `leadership` (see
    /// [`crate::store::Store::lead`]).
    pub fn fence_store(
        &mut self,
        leadership: &crate::election::Leadership,
    ) -> Result<(), crate::store::StoreError> {
        self.settle_commit(true);
        match self.store.as_ref() {
            Some(s) => super::commit::with_store(s, |s| s.lead(leadership)),
            None => Ok(()),
        }
    }

    /// Sets the registry entries another replica's commit changed, as a
    /// standby following the store does between whole reads, and notes
    /// that the view now holds every commit up to `revision` (the commit's
    /// marker write); `false` (and nothing set) once this replica writes,
    /// its view being the store's then.
    pub fn apply_stored(
        &mut self,
        records: Vec<crate::store::RegistryRecord>,
        revision: i64,
    ) -> bool {
        use crate::store::RegistryRecord;
        if self.role().writes() {
            return false;
        }
        self.view_at = Some(revision);
        self.metrics.store_followed_revision.set(revision);
        if records.is_empty() {
            return true;
        }
        for record in records {
            match record {
                RegistryRecord::Mac(k, e) => self.registry.restore_mac(k, e),
                RegistryRecord::Ip(k, e) => self.registry.restore_ip(k, e),
            }
        }
        self.registry_restored();
        true
    }

    /// After the registry was set from the store ([`Self::reload`],
    /// [`Self::apply_stored`]): the ARP answers and what was compiled from
    /// it go stale, and its size is counted again.
    fn registry_restored(&mut self) {
        self.answers_changed();
        let (macs, ips) = self.registry.len();
        self.metrics.set_registry_size(macs, ips);
        self.prepared.clear();
        self.memo = crate::compiler::Memo::default();
    }

    /// Notes that the view is the store as its last whole read found it:
    /// every commit up to the revision it read at. The start's read and a
    /// standby's whole reads.
    pub fn viewed_whole_store(&mut self) -> Option<i64> {
        self.view_at = self.store_loaded_at();
        if let Some(revision) = self.view_at {
            self.metrics.store_whole_reads.inc();
            self.metrics.store_followed_revision.set(revision);
        }
        self.view_at
    }

    /// Whether the view already holds every commit the store has: the
    /// store's marker, as [`Self::fence_store`] just read it, was written
    /// no later than the last commit a standby applied or read. A new
    /// leader then need not read the store whole again.
    pub fn view_is_current(&self) -> bool {
        let Some(store) = self.store.as_ref() else {
            return false;
        };
        let marker = super::commit::with_store(store, |s| Ok(s.marker_revision()))
            .ok()
            .flatten();
        matches!((self.view_at, marker), (Some(v), Some(m)) if m <= v)
    }

    /// The revision the store's last load read at, where a standby's watch
    /// starts ([`crate::store::Store::loaded_at`]).
    fn store_loaded_at(&self) -> Option<i64> {
        let store = self.store.as_ref()?;
        super::commit::with_store(store, |s| Ok(s.loaded_at()))
            .ok()
            .flatten()
    }

    /// The hosts and VIs the store held at `revision`, if there is a
    /// store.
    pub fn load_store_topology(
        &self,
        revision: i64,
    ) -> Result<Option<crate::store::Snapshot>, crate::store::StoreError> {
        let Some(store) = self.store.as_ref() else {
            return Ok(None);
        };
        super::blocking(|| super::commit::with_store(store, |s| s.load_topology(revision)))
            .map(Some)
    }

    /// Everything the store holds now, if there is a store.
    pub fn load_store(&self) -> Result<Option<crate::store::Snapshot>, crate::store::StoreError> {
        let Some(store) = self.store.as_ref() else {
            return Ok(None);
        };
        super::blocking(|| super::commit::with_store(store, |s| s.load())).map(Some)
    }
}

fn clamp(generation: u64) -> i64 {
    i64::try_from(generation).unwrap_or(i64::MAX)
}
