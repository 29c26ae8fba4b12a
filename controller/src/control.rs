//! The control loop: one task that owns the topology (and, through it, what
//! every switch should hold) and reacts to switches, to the OVSDB side and
//! to the northbound API.
//!
//! Everything here is synchronous and runs inside the actor; the API reaches
//! it through [`ControlHandle::call`], which runs a closure on the actor's
//! state and returns its result. Nothing waits on a switch: batches are
//! queued with `try_submit`, and a switch too slow to take one is marked
//! stale and resynchronised from a fresh dump later.

use crate::answers::{AnswerSlot, ArpSnapshot};
use crate::compiler::affected_by_ports;
use crate::metrics::Metrics;
use crate::model::{Host, HostName, HostRole, Location, MacKey, Topology, Vi, ViId, VmPort};
use crate::registry::{
    EntrySpec, Registry, RegistryChange, RegistryEntry, RegistryError, SeedEntry, Timestamp,
};
use crate::server::{ConnId, SwitchEvent, SwitchHandle};
use crate::session::Upcall;
use crate::store;
pub use iris_schemas::northbound::{Health, NorthEvent, RegistryEvent, SwitchPort};
use ofp::message::{Port, PortReason};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// A host with how its bridge reaches this controller, when that differs
/// from the configured default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedHost {
    pub host: Host,
    /// The controller target for this host's bridge (`None`: the default).
    pub controller: Option<String>,
}

/// What the OVSDB side reports about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologyEvent {
    /// Everything the host's database says now about the ports Iris cares
    /// for: VM ports with their VI, and tunnels by remote underlay address.
    Ports {
        host: HostName,
        vm_ports: Vec<VmPortSeen>,
        tunnels: Vec<(Ipv4Addr, u32)>,
    },
    /// The host's OVSDB session came up (and its bridge was made right) or
    /// went away.
    Ovsdb { host: HostName, connected: bool },
}

/// A VM port as the OVSDB side sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPortSeen {
    pub name: String,
    pub ofport: u32,
    pub vi: ViId,
    /// `external_ids:attached-mac`, when it names a MAC.
    pub attached_mac: Option<ofp::packet::MacAddr>,
}

/// One registry change as the API shows it.
fn registry_event(change: &RegistryChange) -> RegistryEvent {
    let vlan = |v: crate::model::Vlan| match v {
        crate::model::Vlan::Untagged => None,
        crate::model::Vlan::Tagged(t) => Some(t),
    };
    let place = |l: Option<&Location>| l.map(ToString::to_string);
    match change {
        RegistryChange::Mac(c) => RegistryEvent {
            change: change.kind().as_str().into(),
            vi: c.key.vi.0,
            vlan: vlan(c.key.vlan),
            mac: c.key.mac.to_string(),
            ip: None,
            location: place(c.after.as_ref().and_then(|e| e.location.as_ref())),
            from: place(c.before.as_ref().and_then(|e| e.location.as_ref())),
        },
        RegistryChange::Ip(c) => RegistryEvent {
            change: change.kind().as_str().into(),
            vi: c.key.vi.0,
            vlan: vlan(c.key.vlan),
            mac: c
                .after
                .as_ref()
                .or(c.before.as_ref())
                .map(|e| e.mac.to_string())
                .unwrap_or_default(),
            ip: Some(c.key.ip.to_string()),
            location: None,
            from: None,
        },
    }
}

/// Why the control loop refused a request. The API maps each to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such thing.
    NotFound(String),
    /// It clashes with something that exists; `detail` says what to change
    /// and `field`, when the clash is in the request's body, where (a path
    /// into the body such as `underlay_ip` or `gateways/1`).
    Conflict {
        field: Option<String>,
        detail: String,
    },
}

impl Refusal {
    fn conflict(field: impl Into<String>, detail: String) -> Self {
        Self::Conflict {
            field: Some(field.into()),
            detail,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(s) | Self::Conflict { detail: s, .. } => f.write_str(s),
        }
    }
}

/// The hosts and VIs the configuration file defines. The file is read
/// again at every start and wins over the store, so the API may not change
/// or remove them: such a change would be undone silently at the next
/// start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configured {
    pub hosts: BTreeSet<HostName>,
    pub vis: BTreeSet<ViId>,
}

/// How many of the keys a refusal names before it counts the rest.
const NAMED_AT_MOST: usize = 5;

/// Switches whose datapath id matches no host that are kept connected (held
/// apart, shown in `/healthz`); one more is disconnected. Enough for an
/// operator to see every bridge pointed here by mistake, few enough that
/// rogue peers cannot hold the descriptors configured switches need.
pub const MAX_UNKNOWN_SWITCHES: usize = 16;

/// `keys` as a refusal names them: how many, the first few, and how many
/// more.
fn name_entries(keys: &[MacKey]) -> String {
    let count = match keys.len() {
        1 => "1 registry entry".to_owned(),
        n => format!("{n} registry entries"),
    };
    let mut names: Vec<String> = keys
        .iter()
        .take(NAMED_AT_MOST)
        .map(|k| format!("{}/{}/{}", k.vi, k.vlan, k.mac))
        .collect();
    if keys.len() > NAMED_AT_MOST {
        names.push(format!("and {} more", keys.len() - NAMED_AT_MOST));
    }
    format!("{count} ({})", names.join(", "))
}

/// The refusal of a change to `what`, when the configuration file defines
/// it in a `table`.
fn read_only(configured: bool, what: String, table: &str) -> Result<(), Refusal> {
    if !configured {
        return Ok(());
    }
    Err(Refusal::Conflict {
        field: None,
        detail: format!(
            "{what} is defined in the configuration file, which wins at every start; edit its \
             {table} table there and restart the controller"
        ),
    })
}

/// A switch connection as the control loop tracks it.
#[derive(Debug)]
struct Switch {
    handle: SwitchHandle,
    peer: String,
    /// A TLS connection's client certificate: the switch may be only the
    /// host it names.
    certificate: Option<Arc<crate::tls::PeerCertificate>>,
    dpid: Option<u64>,
    /// The host whose datapath id the switch reported.
    host: Option<HostName>,
    ports: BTreeMap<u32, Port>,
    sync: program::Sync,
    /// Left as it is until its host's port inventory is complete
    /// (`control/inventory.rs`).
    held_for_inventory: bool,
    /// PacketIns taken from this connection, for its acknowledgements.
    taken: u64,
    /// The role the switch last confirmed (ROLE_REPLY).
    role: Option<ofp::message::ControllerRole>,
}

/// How a host looks from outside: its definition and whether its switch
/// and its OVSDB are connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    pub host: ManagedHost,
    /// The OpenFlow peer address, when its switch is connected.
    pub openflow_peer: Option<String>,
    /// The switch's ports as PORT_DESC and PORT_STATUS reported them.
    pub openflow_ports: Vec<SwitchPort>,
    pub ovsdb_connected: bool,
}

/// One port of a connected switch as the API shows it.
fn switch_port(p: &Port) -> SwitchPort {
    use ofp::message::{port_config, port_state};
    SwitchPort {
        port_no: p.port_no,
        name: p.name.to_string(),
        up: p.config & port_config::PORT_DOWN == 0 && p.state & port_state::LINK_DOWN == 0,
    }
}

/// The control loop's state.
pub struct Control {
    topology: Topology,
    registry: Registry,
    tickets: program::Tickets,
    switches: BTreeMap<ConnId, Switch>,
    ovsdb_up: BTreeSet<HostName>,
    /// Whose ports are known well enough to program their switches.
    inventory: inventory::Inventory,
    /// Per-host controller targets, for hosts that have one.
    controllers: BTreeMap<HostName, String>,
    /// Certificates bound to hosts by fingerprint (`[tls.host_sha256]`).
    host_sha256: BTreeMap<HostName, [u8; 32]>,
    /// What the configuration file defines: read-only through the API.
    configured: Configured,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<NorthEvent>,
    /// The hosts the OVSDB manager must keep right.
    hosts_out: watch::Sender<Vec<ManagedHost>>,
    /// Where changes are committed before anything acts on them; `None`
    /// keeps nothing.
    store: Option<commit::SharedStore>,
    /// Commits bursts on a thread of its own while the next burst is taken
    /// (only inside [`Control::run`]; `control/commit.rs`).
    overlap_commits: bool,
    committer: Option<commit::Committer>,
    /// The bursts whose commit is under way there, in order, and those
    /// waiting to be committed together once it is done.
    committing: commit::Pipeline,
    /// Woken when the committer is done.
    commit_ready: Arc<tokio::sync::Notify>,
    /// Why the store refused a commit: the loop stops, and so does the
    /// controller, rather than run on with a registry its store lacks.
    failed: Option<store::StoreError>,
    /// Why the store could not take the last change (it is unavailable):
    /// the change was undone, and the API call that made it is told.
    refused: Option<String>,
    /// What the data plane taught while the store was unavailable: in
    /// memory and on the switches, committed before anything else once
    /// the store is back (retried every tick).
    owed: store::Batch,
    /// Cancelled to stop the whole controller (the shutdown token).
    stop: CancellationToken,
    /// While a burst of switch events is being taken: what it asks of the
    /// switches, done once at its end.
    burst: Option<program::Burst>,
    /// RARPs from ports OVSDB has not reported yet.
    held_rarps: held_rarps::HeldRarps,
    /// Frames for guests that have just left a host (`control/parked.rs`).
    parked: parked::Parked,
    /// Until when each departed port (`Topology::departed`) stays so.
    departed_until: BTreeMap<(HostName, u32), Instant>,
    /// Until when each MAC stays on the host it moved from
    /// (`Topology::moved_from`).
    moved_until: BTreeMap<(HostName, MacKey), Instant>,
    /// Where the ARP snapshot for the connections is published.
    answers: Arc<AnswerSlot>,
    /// Since when the published snapshot has been withdrawn because
    /// something it depends on changed (the latest such change).
    answers_stale: Option<Instant>,
    /// The store revision up to which a standby's view holds every commit
    /// (`role.rs`, `view_is_current`); `None` once it led.
    view_at: Option<i64>,
    /// Hosts whose tables to compile ahead of their switch, when nothing
    /// else waits.
    to_prepare: BTreeSet<HostName>,
    /// Tables compiled ahead, by host.
    prepared: BTreeMap<HostName, program::Prepared>,
    /// What the compiler keeps of one host's tables for the next.
    memo: crate::compiler::Memo,
    /// Leader, standby, or alone (`control/role.rs`).
    role: role::Role,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("hosts", &self.topology.hosts.len())
            .field("switches", &self.switches.len())
            .finish_non_exhaustive()
    }
}

type Call = Box<dyn FnOnce(&mut Control) + Send>;

/// Most events taken from one input in one burst, so the other inputs are
/// not starved while one keeps sending.
const EVENTS_PER_BURST: usize = 256;

/// How long nothing the ARP snapshot depends on must have changed before a
/// new one is built: a snapshot copies the whole registry, so a stream of
/// learned MACs must not rebuild it per burst (meanwhile the control loop
/// answers, as without a snapshot).
const ANSWERS_QUIET: Duration = Duration::from_millis(20);

/// The API's way into the control loop.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    calls: mpsc::Sender<Call>,
    events: broadcast::Sender<NorthEvent>,
    metrics: Arc<Metrics>,
    /// The OVSDB remotes hosts added through the API may have.
    ovsdb_transport: crate::config::OvsdbTransport,
}

/// The control loop has stopped (the process is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Why a call to the control loop has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    Stopped,
    /// The store could not take the call's change (etcd without a quorum,
    /// or out of reach): nothing of it was made, and the controller goes
    /// on with what it had. The text is the store's reason.
    StoreUnavailable(String),
}

impl From<Stopped> for CallError {
    fn from(_: Stopped) -> Self {
        Self::Stopped
    }
}

impl ControlHandle {
    /// Hosts added through the API are held to `transport` (by default
    /// every remote is taken, as with no file to say otherwise).
    #[must_use]
    pub fn with_ovsdb_transport(mut self, transport: crate::config::OvsdbTransport) -> Self {
        self.ovsdb_transport = transport;
        self
    }

    pub fn ovsdb_transport(&self) -> crate::config::OvsdbTransport {
        self.ovsdb_transport
    }

    /// Runs `f` on the control loop's state and returns what it returns.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Control) -> R + Send + 'static,
    ) -> Result<R, CallError> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |c| {
            c.refused = None;
            let r = f(c);
            // A change the store could not take was undone: the caller
            // hears why, and not what `f` made of it.
            if let Some(why) = c.refused.take() {
                let _ = tx.send(Err(CallError::StoreUnavailable(why)));
                return;
            }
            // Changes the store refused were not made as far as the caller
            // is concerned: it hears that the controller stopped.
            if !c.halted() {
                let _ = tx.send(Ok(r));
            }
        });
        self.calls.send(call).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)?
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NorthEvent> {
        self.events.subscribe()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The receiving ends the control loop's task reads.
#[derive(Debug)]
pub struct Inputs {
    pub switches: mpsc::Receiver<SwitchEvent>,
    pub topology: mpsc::Receiver<TopologyEvent>,
    calls: mpsc::Receiver<Call>,
}

impl Inputs {
    /// Whether no input is waiting to be handled.
    fn idle(&self) -> bool {
        self.switches.is_empty() && self.topology.is_empty() && self.calls.is_empty()
    }
}

/// Where the control loop's inputs come from, for whoever starts the parts.
#[derive(Debug)]
pub struct Senders {
    pub switches: mpsc::Sender<SwitchEvent>,
    pub topology: mpsc::Sender<TopologyEvent>,
}

/// A new control loop with everything that connects to it.
#[derive(Debug)]
pub struct Parts {
    pub control: Control,
    /// What [`Control::run`] reads.
    pub inputs: Inputs,
    /// For the OpenFlow server and the OVSDB manager.
    pub senders: Senders,
    /// For the API.
    pub handle: ControlHandle,
    /// The hosts the OVSDB manager must keep right, updated as they change.
    pub hosts: watch::Receiver<Vec<ManagedHost>>,
    /// For the OpenFlow server: the ARP snapshots the connections answer
    /// from.
    pub answers: Arc<AnswerSlot>,
}

impl Control {
    /// A control loop knowing `hosts` and `vis`, starting from `registry`
    /// (empty, or restored from the store).
    pub fn start(
        hosts: Vec<ManagedHost>,
        vis: Vec<Vi>,
        registry: Registry,
        metrics: Arc<Metrics>,
    ) -> Parts {
        let mut topology = Topology::default();
        let mut controllers = BTreeMap::new();
        for m in hosts {
            if let Some(c) = m.controller {
                controllers.insert(m.host.name.clone(), c);
            }
            topology.hosts.insert(m.host.name.clone(), m.host);
        }
        for v in vis {
            topology.vis.insert(v.id, v);
        }
        let managed = managed_hosts(&topology, &controllers);
        let inventory = inventory::Inventory::new(topology.hosts.keys().cloned(), Instant::now());
        let (hosts_out, hosts_rx) = watch::channel(managed);
        let (events, _) = broadcast::channel(1024);
        let (sw_tx, sw_rx) = mpsc::channel(4096);
        let (topo_tx, topo_rx) = mpsc::channel(256);
        let (call_tx, call_rx) = mpsc::channel(256);
        let (macs, ips) = registry.len();
        metrics.set_registry_size(macs, ips);
        // Alone, it writes; a replica stands by first (`role.rs`).
        metrics.leader.set(1);
        let answers = Arc::new(AnswerSlot::new(&metrics));
        let control = Self {
            topology,
            registry,
            tickets: program::Tickets::default(),
            switches: BTreeMap::new(),
            ovsdb_up: BTreeSet::new(),
            inventory,
            controllers,
            host_sha256: BTreeMap::new(),
            configured: Configured::default(),
            metrics: metrics.clone(),
            events: events.clone(),
            hosts_out,
            store: None,
            overlap_commits: false,
            committer: None,
            committing: commit::Pipeline::default(),
            commit_ready: Arc::default(),
            failed: None,
            refused: None,
            owed: store::Batch::new(),
            stop: CancellationToken::new(),
            burst: None,
            held_rarps: held_rarps::HeldRarps::default(),
            parked: parked::Parked::default(),
            departed_until: BTreeMap::new(),
            moved_until: BTreeMap::new(),
            answers: answers.clone(),
            answers_stale: Some(Instant::now()),
            view_at: None,
            to_prepare: BTreeSet::new(),
            prepared: BTreeMap::new(),
            memo: crate::compiler::Memo::default(),
            role: role::Role::default(),
        };
        Parts {
            control,
            inputs: Inputs {
                switches: sw_rx,
                topology: topo_rx,
                calls: call_rx,
            },
            senders: Senders {
                switches: sw_tx,
                topology: topo_tx,
            },
            handle: ControlHandle {
                calls: call_tx,
                events,
                metrics,
                ovsdb_transport: crate::config::OvsdbTransport {
                    tls: true,
                    plain_tcp: true,
                },
            },
            hosts: hosts_rx,
            answers,
        }
    }

    /// Handles `first` and what else `queue` already holds (at most
    /// [`EVENTS_PER_BURST`] in all) as one burst.
    fn take_burst<E>(&mut self, first: E, queue: &mut mpsc::Receiver<E>, handle: fn(&mut Self, E)) {
        self.begin_burst();
        handle(self, first);
        for _ in 1..EVENTS_PER_BURST {
            match queue.try_recv() {
                Ok(e) => handle(self, e),
                Err(_) => break,
            }
        }
        self.end_burst();
    }

    /// Runs until `shutdown` is cancelled or every input is gone; fails
    /// (and cancels `shutdown`) when the store refuses a commit.
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        shutdown: CancellationToken,
    ) -> Result<(), store::StoreError> {
        self.stop = shutdown.clone();
        self.overlap_commits = true;
        let committed = Arc::clone(&self.commit_ready);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !self.to_prepare.is_empty() && inputs.idle() && !shutdown.is_cancelled() {
                // Nothing waits: compile ahead for a switch that is away,
                // then let the other tasks of this thread run.
                self.prepare_next(Instant::now());
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(e) = inputs.switches.recv() => {
                    // A burst of PacketIns is learned as one, every switch
                    // it concerns is reprogrammed once, and each connection
                    // gets its answers in one batch.
                    self.take_burst(e, &mut inputs.switches, Self::on_switch_event);
                }
                Some(e) = inputs.topology.recv() => {
                    // Hosts report their ports together (at start, after an
                    // outage): each report would reprogram every switch.
                    self.settle_commit(true);
                    self.take_burst(e, &mut inputs.topology, Self::on_topology_event);
                }
                Some(call) = inputs.calls.recv() => {
                    // A call reads and writes only what is durable.
                    self.settle_commit(true);
                    call(&mut self);
                }
                _ = committed.notified(), if self.committing.under_way() => {
                    self.settle_commit(false);
                }
                _ = tick.tick() => {
                    self.settle_commit(true);
                    self.on_tick(Instant::now());
                }
                else => break,
            }
            if self.halted() {
                break;
            }
            self.refresh_answers(Instant::now());
        }
        self.settle_commit(true);
        debug!("control loop stopped");
        self.take_store_failure().map_or(Ok(()), Err)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Commits every later change of the registry, hosts and VIs to
    /// `store`, each before the OVSDB side, the API or a subscriber hears
    /// of it, and before the switches do unless the data plane taught it:
    /// the FLOW_MODs of a burst's moves and learned MACs are written while
    /// it commits. A controller killed in between restarts without that
    /// change and puts back what the store holds (a move is reverted until
    /// the guest's next frame; `docs/controller.md`, Store).
    pub fn persist_to(&mut self, store: Box<dyn store::Store + Send>) {
        self.store = Some(Arc::new(std::sync::Mutex::new(store)));
    }

    /// Whether the store refused a commit (the controller is stopping).
    pub fn halted(&self) -> bool {
        self.failed.is_some()
    }

    /// Why the store could not take the last change because it is
    /// unavailable, if so (for whoever runs the loop's parts before
    /// [`Self::run`]).
    pub fn take_refusal(&mut self) -> Option<String> {
        self.refused.take()
    }

    /// Why the store refused a commit, if it did (for whoever runs the
    /// loop's parts before [`Self::run`]).
    pub fn take_store_failure(&mut self) -> Option<store::StoreError> {
        self.failed.take()
    }

    /// Commits `batch`, after what is owed; `false` when the store refused
    /// it, in which case the caller must not act on the change: when the
    /// store is only unavailable ([`store::StoreError::Unavailable`]) the
    /// caller undoes it and the API call is refused (`refused`); else the
    /// controller stops.
    fn store(&mut self, batch: store::Batch) -> bool {
        // After the burst whose commit is under way, never beside it.
        self.settle_commit(true);
        if (batch.is_empty() && self.owed.is_empty()) || self.halted() {
            return !self.halted();
        }
        if !self.role.writes() {
            // A standby never commits: the API forwards writes to the
            // leader, and the leader learns what the data plane teaches.
            self.refused =
                Some("this controller is a standby replica; writes go to the leader".to_owned());
            return false;
        }
        let Some(s) = self.store.as_ref() else {
            return true;
        };
        let owed = self.owed.len();
        let batch = if owed == 0 {
            batch
        } else {
            let mut all = self.owed.clone();
            all.append(batch);
            all
        };
        // The flush blocks this thread for a millisecond or more.
        let committed = blocking(|| commit::with_store(s, |s| s.commit(&batch)));
        self.took_commit(&batch, owed, committed)
    }

    /// Takes the outcome of committing `batch` (of which the first `owed`
    /// writes were owed): whether it is durable; see [`Self::store`].
    fn took_commit(
        &mut self,
        batch: &store::Batch,
        owed: usize,
        committed: Result<(), store::StoreError>,
    ) -> bool {
        match committed {
            Ok(()) => {
                if owed > 0 {
                    info!(
                        "the store is back: committed {owed} change(s) learned while it was away"
                    );
                    self.owed = store::Batch::new();
                }
                true
            }
            Err(store::StoreError::Unavailable { backend, message }) => {
                match batch.len() - owed {
                    // The tick's retry of what is owed: said once, when
                    // it was first owed.
                    0 => debug!("the {backend} store is still unavailable: {message}"),
                    n => warn!(
                        "cannot store {n} change(s): the {backend} store is unavailable \
                         ({message}); refusing the change, the rest goes on from memory"
                    ),
                }
                self.metrics.store_refused();
                self.refused = Some(format!(
                    "the {backend} store is unavailable, so the change was not made: {message}"
                ));
                false
            }
            Err(e) => {
                error!(
                    "cannot store {} change(s): {e}; stopping the controller (switches keep \
                     their flows)",
                    batch.len()
                );
                self.failed = Some(e);
                self.stop.cancel();
                false
            }
        }
    }

    /// Commits what the data plane taught; while the store is unavailable
    /// it stays in memory (and on the switches, which already have it) and
    /// is owed to the store. `false` only when the controller stops.
    fn store_or_owe(&mut self, batch: store::Batch) -> bool {
        if self.store(batch.clone()) {
            return true;
        }
        self.owe_refused(batch)
    }

    /// After a commit of what the data plane taught failed: owes `batch`
    /// to the store when it was only unavailable (`true`, the change
    /// stands), else `false` (the controller stops).
    fn owe_refused(&mut self, batch: store::Batch) -> bool {
        if self.refused.take().is_some() {
            self.owed.append(batch);
            return true;
        }
        false
    }

    /// Whether the last change was refused because the store is
    /// unavailable (and undone).
    fn was_refused(&self) -> bool {
        self.refused.is_some()
    }

    /// Something the ARP snapshot depends on is about to change: withdraw
    /// it before the change is committed or acted on, so that no
    /// connection answers from it afterwards.
    fn answers_changed(&mut self) {
        if self.answers_stale.is_none() {
            self.answers.publish(None);
        }
        self.answers_stale = Some(Instant::now());
    }

    /// Publishes a new ARP snapshot once nothing it depends on has changed
    /// for [`ANSWERS_QUIET`]; never inside a burst, whose changes are not
    /// committed yet.
    pub fn refresh_answers(&mut self, now: Instant) {
        let Some(since) = self.answers_stale else {
            return;
        };
        if self.burst.is_some()
            || self.committing.under_way()
            || self.halted()
            || !self.role.writes()
            || now.duration_since(since) < ANSWERS_QUIET
        {
            return;
        }
        let switches = self
            .switches
            .iter()
            .filter_map(|(c, s)| Some((*c, s.host.as_ref()?)));
        let snapshot = ArpSnapshot::build(&self.registry, &self.topology, switches);
        self.answers.publish(Some(Arc::new(snapshot)));
        self.answers_stale = None;
    }

    /// Counts a PacketIn taken from `conn`; acknowledged to the connection
    /// once its effects are committed (at the end of the burst).
    fn took_packet_in(&mut self, conn: ConnId) {
        if let Some(sw) = self.switches.get_mut(&conn) {
            sw.taken += 1;
        }
        match self.burst.as_mut() {
            Some(b) => b.took_from(conn),
            None => self.ack_packet_ins(conn),
        }
    }

    fn ack_packet_ins(&self, conn: ConnId) {
        if let Some(sw) = self.switches.get(&conn) {
            sw.handle.ack(sw.taken);
        }
    }

    fn publish(&self, event: NorthEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    fn on_tick(&mut self, now: Instant) {
        if !self.owed.is_empty() && !self.store(store::Batch::new()) {
            // Still away: owed until a later tick.
            self.refused = None;
        }
        let (given_up, changed) = self.inventory.tick(now);
        for h in given_up {
            warn!(
                host = %h,
                "OVSDB has not reported the host's ports within {} s of the start; the other \
                 switches are programmed without them",
                inventory::FIRST_REPORT_WAIT.as_secs()
            );
        }
        if changed {
            self.resume_held_switches();
            self.want_prepared();
        }
        self.resync_stale(now);
        self.expire_prepared(now);
        for h in self.held_rarps.expire(now) {
            self.give_up_rarp(&h, "its port was not reported in time");
        }
        self.expire_departures(now);
    }

    /// Drops a held announcement, saying why and what it costs.
    fn give_up_rarp(&self, h: &held_rarps::Held, why: &str) {
        self.metrics.packet_in(h.what.given_up());
        warn!(
            host = %h.host,
            "dropped a {} from port {} after {:.0} ms: {why}; OVSDB has not reported the port \
             with a VI (external_ids:iris-vi), so the MAC stays where it was until the guest \
             announces itself again",
            h.what.name(),
            h.in_port,
            h.received.elapsed().as_secs_f64() * 1e3
        );
    }

    /// Handles one event from the OpenFlow server.
    pub fn on_switch_event(&mut self, event: SwitchEvent) {
        match event {
            SwitchEvent::Connected {
                conn,
                peer,
                handle,
                certificate,
            } => {
                self.switches.insert(
                    conn,
                    Switch {
                        handle,
                        peer,
                        certificate,
                        dpid: None,
                        host: None,
                        ports: BTreeMap::new(),
                        sync: program::Sync::default(),
                        held_for_inventory: false,
                        taken: 0,
                        role: None,
                    },
                );
            }
            SwitchEvent::Upcall { conn, upcall } => {
                let packet_in = matches!(upcall, Upcall::PacketIn { .. });
                self.on_upcall(conn, upcall);
                if packet_in {
                    self.took_packet_in(conn);
                }
            }
            SwitchEvent::PacketInDropped { .. } => {
                self.metrics.packet_ins_dropped.inc();
            }
            SwitchEvent::Disconnected { conn, .. } => {
                // Gone first, so nothing waiting on it is sent to it.
                self.answers_changed();
                let gone = self.switches.remove(&conn);
                self.forget_tickets(conn);
                if let Some(sw) = gone {
                    if let Some(dpid) = sw.dpid {
                        self.count_switches();
                        self.publish(NorthEvent::Switch {
                            dpid: format!("{dpid:016x}"),
                            host: sw.host.map(|h| h.0),
                            connected: false,
                        });
                    }
                }
            }
        }
    }

    fn on_upcall(&mut self, conn: ConnId, upcall: Upcall) {
        match upcall {
            Upcall::Ready {
                features,
                ports,
                installed,
            } => {
                let dpid = features.datapath_id;
                let host = self.host_by_dpid(dpid).map(|h| h.name.clone());
                // Over TLS the certificate says which host the switch may
                // be; the dpid it claims must be that host's.
                let unproven = self.switches.get(&conn).and_then(|sw| {
                    let cert = sw.certificate.as_ref()?;
                    match &host {
                        Some(h)
                            if cert.binds(&h.0)
                                || self.host_sha256.get(h) == Some(cert.sha256()) =>
                        {
                            None
                        }
                        Some(h) => Some(format!(
                            "its certificate (sha256 {cert}) does not name host {h}, whose \
                             dpid it claims"
                        )),
                        None => Some(format!(
                            "its certificate (sha256 {cert}) names no host with this dpid"
                        )),
                    }
                });
                if let Some(why) = unproven {
                    if let Some(gone) = self.switches.remove(&conn) {
                        self.metrics.switch_refused("certificate_not_this_host");
                        warn!(%conn, peer = %gone.peer, "refused: switch {dpid:016x}: {why}");
                    }
                    return;
                }
                // A datapath id is only a claim: anyone who reaches the
                // listener can send any. A live connection (its session
                // still answers echoes, or it would have ended) keeps its
                // dpid; the newcomer is refused. A connection whose task
                // already ended only waits for its Disconnected here.
                let holder = self
                    .switches
                    .iter()
                    .find(|(c, s)| **c != conn && s.dpid == Some(dpid) && !s.handle.is_closed());
                if let Some((held, sw)) = holder {
                    let (held, held_peer) = (*held, sw.peer.clone());
                    if let Some(gone) = self.switches.remove(&conn) {
                        self.metrics.switch_refused("dpid_in_use");
                        warn!(
                            %conn,
                            peer = %gone.peer,
                            "refused: switch {dpid:016x} is already connected as {held} from \
                             {held_peer}, which still answers; a connection claiming a dpid \
                             in use never displaces the live one (a switch that restarted \
                             is accepted once its old connection has closed or failed its \
                             echo keepalive)"
                        );
                    }
                    return;
                }
                let stale: Vec<ConnId> = self
                    .switches
                    .iter()
                    .filter(|(c, s)| **c != conn && s.dpid == Some(dpid))
                    .map(|(c, _)| *c)
                    .collect();
                for c in stale {
                    if self.switches.remove(&c).is_some() {
                        info!(%c, "released the closed older connection of dpid {dpid:016x}");
                    }
                }
                self.answers_changed();
                if host.is_none() && self.unknown_switches() >= MAX_UNKNOWN_SWITCHES {
                    // Each held-apart switch keeps a descriptor and a task:
                    // a flood of rogue peers must not take what the
                    // configured switches and the API need.
                    if self.switches.remove(&conn).is_some() {
                        self.metrics.switches_unknown_refused.inc();
                        warn!(
                            %conn,
                            "switch {dpid:016x} matches no host and {MAX_UNKNOWN_SWITCHES} such \
                             switches are already held apart: disconnected"
                        );
                    }
                    return;
                }
                let Some(sw) = self.switches.get_mut(&conn) else {
                    return;
                };
                sw.dpid = Some(dpid);
                sw.host = host.clone();
                sw.ports = ports.into_iter().map(|p| (p.port_no, p)).collect();
                sw.reset_sync();
                self.count_switches();
                match &host {
                    Some(h) => info!(%conn, host = %h, "switch {dpid:016x} ready"),
                    None => warn!(
                        %conn,
                        "switch {dpid:016x} matches no host: held apart (not counted as ready, \
                         its tables and PacketIns left alone); add a host with datapath_id \
                         \"{dpid:016x}\" to manage it, or point its bridge elsewhere"
                    ),
                }
                self.publish(NorthEvent::Switch {
                    dpid: format!("{dpid:016x}"),
                    host: host.map(|h| h.0),
                    connected: true,
                });
                // The role first: what the reconciliation sends after it
                // reaches the switch from a MASTER.
                self.send_role(conn);
                self.on_tables(conn, installed);
            }
            Upcall::Tables { installed } => self.on_tables(conn, installed),
            Upcall::BarrierConfirmed { ticket, errors } => self.on_barrier(conn, ticket, errors),
            Upcall::PacketIn {
                packet_in,
                received,
            } => {
                self.on_packet_in(conn, &packet_in, received);
            }
            Upcall::PortStatus(s) => {
                if let Some(sw) = self.switches.get_mut(&conn) {
                    match s.reason {
                        PortReason::Delete => {
                            sw.ports.remove(&s.desc.port_no);
                        }
                        _ => {
                            sw.ports.insert(s.desc.port_no, s.desc);
                        }
                    }
                    // A port the report lacked may have gone.
                    if sw.held_for_inventory {
                        self.resume_held_switches();
                    }
                }
            }
            Upcall::Role(reply) => self.on_role_reply(conn, reply),
            Upcall::SwitchError { error, .. } => {
                self.on_role_error(conn, &error);
                self.metrics.switch_errors.inc();
            }
        }
    }

    fn host_by_dpid(&self, dpid: u64) -> Option<&Host> {
        self.topology.hosts.values().find(|h| h.datapath_id == dpid)
    }

    /// Ready switches whose datapath id no host has.
    fn unknown_switches(&self) -> usize {
        self.switches
            .values()
            .filter(|s| s.dpid.is_some() && s.host.is_none())
            .count()
    }

    /// Sets the switch gauges: a switch counts as connected only once it is
    /// known to be a host's.
    fn count_switches(&self) {
        let (mut known, mut unknown) = (0, 0);
        for s in self.switches.values().filter(|s| s.dpid.is_some()) {
            match s.host {
                Some(_) => known += 1,
                None => unknown += 1,
            }
        }
        self.metrics.switches_connected.set(known);
        self.metrics.switches_unknown.set(unknown);
    }

    /// Handles one report from the OVSDB side.
    pub fn on_topology_event(&mut self, event: TopologyEvent) {
        match event {
            TopologyEvent::Ports {
                host,
                vm_ports,
                tunnels,
            } => {
                if !self.topology.hosts.contains_key(&host) {
                    return;
                }
                let vis_before: BTreeSet<ViId> =
                    self.topology.vm_ports_on(&host).map(|p| p.vi).collect();
                let (changed, gone) = self.replace_ports(&host, &vm_ports, &tunnels);
                self.ports_returned(&host);
                self.ports_departed(&host, &gone);
                self.follow_nics(&host, &gone);
                let first = self.inventory.reported(&host, Instant::now());
                if changed || first {
                    // Tables compiled ahead wait for a complete inventory.
                    self.want_prepared();
                }
                if changed {
                    debug!(%host, "ports changed: {} VM ports, {} tunnels", vm_ports.len(), tunnels.len());
                    self.publish(NorthEvent::Topology {
                        what: format!("ports of {host}"),
                    });
                    let affected = affected_by_ports(&self.topology, &host, &vis_before)
                        .into_iter()
                        .cloned()
                        .collect();
                    self.program_hosts(&affected);
                    let topology = &self.topology;
                    let ready = self
                        .held_rarps
                        .release(&host, |p| topology.vm_port(&host, p).is_some());
                    for h in ready {
                        debug!(%host, "handling the RARP held for port {}", h.in_port);
                        self.on_packet_in(h.conn, &h.packet_in, h.received);
                    }
                    self.release_parked();
                }
                // The first report programs a switch left waiting for it,
                // even when it changed nothing.
                self.resume_held_switches();
            }
            TopologyEvent::Ovsdb { host, connected } => {
                if !self.topology.hosts.contains_key(&host) {
                    return;
                }
                if connected {
                    self.inventory.session_up(&host);
                    self.ovsdb_up.insert(host);
                } else {
                    self.ovsdb_up.remove(&host);
                }
            }
        }
    }

    /// Replaces what the topology holds for `host`'s ports; whether
    /// anything changed, and the VM ports that left (each with its VI).
    fn replace_ports(
        &mut self,
        host: &HostName,
        vm_ports: &[VmPortSeen],
        tunnels: &[(Ipv4Addr, u32)],
    ) -> (bool, Vec<(u32, ViId)>) {
        let new_vm: BTreeMap<(HostName, u32), VmPort> = vm_ports
            .iter()
            .map(|p| {
                (
                    (host.clone(), p.ofport),
                    VmPort {
                        host: host.clone(),
                        name: p.name.clone(),
                        ofport: p.ofport,
                        vi: p.vi,
                        attached_mac: p.attached_mac,
                    },
                )
            })
            .collect();
        let new_tunnels: BTreeMap<(HostName, HostName), u32> = tunnels
            .iter()
            .filter_map(|(ip, ofport)| {
                let peer = self
                    .topology
                    .hosts
                    .values()
                    .find(|h| h.underlay_ip == *ip)?;
                Some(((host.clone(), peer.name.clone()), *ofport))
            })
            .collect();
        let t = &self.topology;
        let old_vm: BTreeMap<_, _> = t
            .vm_ports
            .iter()
            .filter(|((h, _), _)| h == host)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let old_tunnels: BTreeMap<_, _> = t
            .tunnels
            .iter()
            .filter(|((h, _), _)| h == host)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if old_vm == new_vm && old_tunnels == new_tunnels {
            return (false, Vec::new());
        }
        let gone = old_vm
            .iter()
            .filter(|(k, p)| new_vm.get(k).is_none_or(|n| n.vi != p.vi))
            .map(|((_, ofport), p)| (*ofport, p.vi))
            .collect();
        self.answers_changed();
        let t = &mut self.topology;
        t.vm_ports.retain(|(h, _), _| h != host);
        t.tunnels.retain(|(h, _), _| h != host);
        t.vm_ports.extend(new_vm);
        t.tunnels.extend(new_tunnels);
        (true, gone)
    }

    fn announce_hosts(&self) {
        self.hosts_out
            .send_replace(managed_hosts(&self.topology, &self.controllers));
    }

    /// Every host with its connection state.
    pub fn hosts(&self) -> Vec<HostStatus> {
        self.topology
            .hosts
            .values()
            .map(|h| self.host_status(h))
            .collect()
    }

    pub fn host(&self, name: &HostName) -> Option<HostStatus> {
        self.topology.hosts.get(name).map(|h| self.host_status(h))
    }

    fn host_status(&self, h: &Host) -> HostStatus {
        let sw = self
            .switches
            .values()
            .find(|s| s.host.as_ref() == Some(&h.name));
        HostStatus {
            host: ManagedHost {
                host: h.clone(),
                controller: self.controllers.get(&h.name).cloned(),
            },
            openflow_peer: sw.map(|s| s.peer.clone()),
            openflow_ports: sw
                .map(|s| s.ports.values().map(switch_port).collect())
                .unwrap_or_default(),
            ovsdb_connected: self.ovsdb_up.contains(&h.name),
        }
    }

    /// Marks the hosts and VIs the configuration file defines as read-only
    /// through the API (see [`Configured`]).
    /// Lets a certificate with one of these fingerprints speak for its
    /// host although it does not name it.
    pub fn bind_certificates(&mut self, host_sha256: BTreeMap<HostName, [u8; 32]>) {
        self.host_sha256 = host_sha256;
    }

    pub fn keep_configured(&mut self, configured: Configured) {
        self.configured = configured;
    }

    /// Refuses to change a host the configuration file defines.
    fn host_is_api_defined(&self, name: &HostName) -> Result<(), Refusal> {
        read_only(
            self.configured.hosts.contains(name),
            format!("host {name}"),
            "[[host]]",
        )
    }

    /// Refuses to change a VI the configuration file defines.
    fn vi_is_api_defined(&self, id: ViId) -> Result<(), Refusal> {
        read_only(self.configured.vis.contains(&id), id.to_string(), "[[vi]]")
    }

    /// Adds or replaces a host; `Ok(true)` when it is new. The mesh grows
    /// (or changes) on every other host without restarting anything.
    pub fn put_host(&mut self, managed: ManagedHost) -> Result<bool, Refusal> {
        let host = &managed.host;
        self.host_is_api_defined(&host.name)?;
        for other in self.topology.hosts.values() {
            if other.name == host.name {
                continue;
            }
            let clashes = [
                (
                    "ovsdb",
                    other.ovsdb_remote == host.ovsdb_remote,
                    host.ovsdb_remote.clone(),
                    "every host has its own database",
                ),
                (
                    "underlay_ip",
                    other.underlay_ip == host.underlay_ip,
                    host.underlay_ip.to_string(),
                    "every host needs its own",
                ),
                (
                    "datapath_id",
                    other.datapath_id == host.datapath_id,
                    format!("{:016x}", host.datapath_id),
                    "set a distinct datapath_id",
                ),
            ];
            if let Some((field, _, value, fix)) = clashes.into_iter().find(|c| c.1) {
                return Err(Refusal::conflict(
                    field,
                    format!("{field} {value} is already host {}'s; {fix}", other.name),
                ));
            }
        }
        if host.role != HostRole::Gateway {
            if let Some(vi) = self
                .topology
                .vis
                .values()
                .find(|v| v.gateways.contains(&host.name))
            {
                return Err(Refusal::conflict(
                    "role",
                    format!(
                        "host {} is a gateway of {} ({}); it must keep role \"gateway\"",
                        host.name, vi.id, vi.name
                    ),
                ));
            }
        }
        let mut b = store::Batch::new();
        b.put_host(host);
        self.answers_changed();
        if !self.store(b) {
            // Refused: the call answers why (`ControlHandle::call`).
            return Ok(false);
        }
        let name = host.name.clone();
        match &managed.controller {
            Some(c) => self.controllers.insert(name.clone(), c.clone()),
            None => self.controllers.remove(&name),
        };
        let created = self
            .topology
            .hosts
            .insert(name.clone(), managed.host)
            .is_none();
        // A changed datapath id re-maps connected switches.
        for sw in self.switches.values_mut() {
            let owner = sw.dpid.and_then(|d| {
                self.topology
                    .hosts
                    .values()
                    .find(|h| h.datapath_id == d)
                    .map(|h| h.name.clone())
            });
            sw.host = owner;
        }
        self.count_switches();
        self.announce_hosts();
        self.publish(NorthEvent::Topology {
            what: format!("host {name} {}", if created { "added" } else { "changed" }),
        });
        self.program_all();
        Ok(created)
    }

    /// Removes a host; the other hosts' tunnels to it go too. Registry
    /// entries located on it are removed with it when `cascade` says so;
    /// otherwise they keep it from being removed.
    pub fn delete_host(&mut self, name: &HostName, cascade: bool) -> Result<(), Refusal> {
        if !self.topology.hosts.contains_key(name) {
            return Err(Refusal::NotFound(format!("no host named {name}")));
        }
        self.host_is_api_defined(name)?;
        if let Some(vi) = self
            .topology
            .vis
            .values()
            .find(|v| v.gateways.contains(name))
        {
            return Err(Refusal::Conflict {
                field: None,
                detail: format!(
                    "host {name} is a gateway of {} ({}); remove it from the VI's gateways first",
                    vi.id, vi.name
                ),
            });
        }
        let located = self.registry.located_at(name);
        if !located.is_empty() && !cascade {
            return Err(Refusal::Conflict {
                field: None,
                detail: format!(
                    "host {name} still holds {}; delete those, or repeat with ?cascade=true to \
                     delete them with the host",
                    name_entries(&located)
                ),
            });
        }
        let mut b = store::Batch::new();
        b.delete_host(name);
        self.answers_changed();
        // The host and the entries on it go in one commit.
        let changes = self.registry.remove(&located);
        self.registry_changed_with(b, &changes);
        if self.halted() || self.was_refused() {
            return Ok(());
        }
        self.topology.hosts.remove(name);
        self.controllers.remove(name);
        self.topology.vm_ports.retain(|(h, _), _| h != name);
        self.forget_departures(name);
        self.topology
            .tunnels
            .retain(|(h, peer), _| h != name && peer != name);
        self.ovsdb_up.remove(name);
        self.inventory.forget(name);
        for sw in self.switches.values_mut() {
            if sw.host.as_ref() == Some(name) {
                sw.host = None;
                sw.held_for_inventory = false;
            }
        }
        self.count_switches();
        // The others no longer wait for its first report.
        self.resume_held_switches();
        self.announce_hosts();
        self.publish(NorthEvent::Topology {
            what: format!("host {name} removed"),
        });
        self.program_all();
        Ok(())
    }

    pub fn vis(&self) -> Vec<Vi> {
        self.topology.vis.values().cloned().collect()
    }

    pub fn vi(&self, id: ViId) -> Option<Vi> {
        self.topology.vis.get(&id).cloned()
    }

    /// Adds or replaces a VI; `Ok(true)` when it is new. Registry entries
    /// behind a gateway the VI no longer has are removed when `cascade`
    /// says so; otherwise they keep the gateway from being dropped.
    pub fn put_vi(&mut self, vi: Vi, cascade: bool) -> Result<bool, Refusal> {
        self.vi_is_api_defined(vi.id)?;
        for other in self.topology.vis.values() {
            if other.id == vi.id {
                continue;
            }
            if other.gre_key == vi.gre_key {
                return Err(Refusal::conflict(
                    "gre_key",
                    format!(
                        "gre_key {} is already {}'s ({}); each VI needs its own key",
                        vi.gre_key, other.id, other.name
                    ),
                ));
            }
            if other.name == vi.name {
                return Err(Refusal::conflict(
                    "name",
                    format!(
                        "the name {:?} is already {}'s; each VI needs its own name",
                        vi.name, other.id
                    ),
                ));
            }
        }
        for (i, g) in vi.gateways.iter().enumerate() {
            let field = format!("gateways/{i}");
            match self.topology.hosts.get(g) {
                None => {
                    return Err(Refusal::conflict(
                        field,
                        format!(
                            "gateway {g} is not a known host; add it with role \"gateway\" first"
                        ),
                    ))
                }
                Some(h) if h.role != HostRole::Gateway => {
                    return Err(Refusal::conflict(
                        field,
                        format!(
                        "host {g} has role \"compute\"; a VI's gateway must have role \"gateway\""
                    ),
                    ))
                }
                Some(_) => {}
            }
        }
        let behind = self.registry.behind_other_gateways(vi.id, &vi.gateways);
        if !behind.is_empty() && !cascade {
            return Err(Refusal::conflict(
                "gateways",
                format!(
                    "{} has {} behind a gateway this body drops; move or delete those, or \
                     repeat with ?cascade=true to delete them",
                    vi.id,
                    name_entries(&behind)
                ),
            ));
        }
        let id = vi.id;
        let mut b = store::Batch::new();
        b.put_vi(&vi);
        self.answers_changed();
        // The VI and the entries it no longer allows go in one commit.
        let changes = self.registry.remove(&behind);
        self.registry_changed_with(b, &changes);
        if self.halted() || self.was_refused() {
            return Ok(false);
        }
        let created = self.topology.vis.insert(id, vi).is_none();
        self.publish(NorthEvent::Topology {
            what: format!("{id} {}", if created { "added" } else { "changed" }),
        });
        self.program_all();
        Ok(created)
    }

    pub fn delete_vi(&mut self, id: ViId) -> Result<(), Refusal> {
        if !self.topology.vis.contains_key(&id) {
            return Err(Refusal::NotFound(format!("no VI with id {}", id.0)));
        }
        self.vi_is_api_defined(id)?;
        self.answers_changed();
        let removed = self.topology.vis.remove(&id);
        let changes = self.registry.remove_vi(id);
        let mut b = store::Batch::new();
        b.delete_vi(id);
        // The VI and its entries go in one commit, the VI last, so a
        // restart never finds entries of a VI that is gone.
        self.registry_changed_with(b, &changes);
        if self.was_refused() {
            if let Some(vi) = removed {
                self.topology.vis.insert(id, vi);
            }
            return Ok(());
        }
        if self.halted() {
            return Ok(());
        }
        self.publish(NorthEvent::Topology {
            what: format!("{id} removed"),
        });
        self.program_all();
        Ok(())
    }

    /// VM ports, optionally only those on `host` or in `vi`.
    pub fn vm_ports(&self, host: Option<&HostName>, vi: Option<ViId>) -> Vec<VmPort> {
        self.topology
            .vm_ports
            .values()
            .filter(|p| host.is_none_or(|h| &p.host == h))
            .filter(|p| vi.is_none_or(|v| p.vi == v))
            .cloned()
            .collect()
    }

    /// Seeds a VI's registry entries (at start and when a VI is launched);
    /// the number of changes. Entries that cannot be seeded are all
    /// reported, with their index, and then nothing is seeded. Seeding
    /// again is harmless: it never moves what an announcement or the API
    /// placed.
    pub fn seed(
        &mut self,
        vi: ViId,
        entries: &[SeedEntry],
    ) -> Result<usize, Vec<(usize, RegistryError)>> {
        let problems = Registry::check_seed(&self.topology, vi, entries);
        if !problems.is_empty() {
            return Err(problems);
        }
        let changes = self
            .registry
            .seed(now_ms(), &self.topology, vi, entries)
            .map_err(|e| vec![(0, e)])?;
        let n = changes.len();
        self.registry_changed(&changes);
        Ok(n)
    }

    /// [`Control::seed`] for the API, which also counts the IPs a MAC
    /// answers for already: a seed adds to them. (At start the file's seeds
    /// are taken as ever, so that an edit through the API never stops the
    /// next start.)
    pub fn seed_from_api(
        &mut self,
        vi: ViId,
        entries: &[SeedEntry],
    ) -> Result<usize, Vec<(usize, RegistryError)>> {
        let mut problems = Registry::check_seed(&self.topology, vi, entries);
        if problems.is_empty() {
            problems = self.registry.seed_beyond_limit(vi, entries);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        self.seed(vi, entries)
    }

    /// Every registry entry, or those of one VI.
    pub fn registry_entries(&self, vi: Option<ViId>) -> Vec<RegistryEntry> {
        self.registry.list(vi)
    }

    pub fn registry_entry(&self, key: &MacKey) -> Option<RegistryEntry> {
        self.registry.get(key)
    }

    /// The API's put: `Ok(true)` when the entry is new. An IP another MAC
    /// answers for by configuration, the API or an announcement is taken
    /// from it only when `take_ips` says so.
    pub fn put_registry_entry(
        &mut self,
        spec: &EntrySpec,
        take_ips: bool,
    ) -> Result<bool, RegistryError> {
        if !take_ips {
            self.registry.held_elsewhere(spec)?;
        }
        let created = self.registry.mac(&spec.key).is_none();
        let changes = self.registry.put(now_ms(), &self.topology, spec)?;
        self.registry_changed(&changes);
        Ok(created)
    }

    /// The registry entries the topology no longer allows, each with why.
    pub fn stranded_entries(&self) -> Vec<(MacKey, RegistryError)> {
        self.registry.stranded(&self.topology)
    }

    pub fn delete_registry_entry(&mut self, key: &MacKey) -> Result<(), RegistryError> {
        let changes = self.registry.delete(key)?;
        self.registry_changed(&changes);
        Ok(())
    }

    pub fn health(&self) -> Health {
        let ready = self.switches.values().filter(|s| s.dpid.is_some());
        let (known, unknown): (Vec<&Switch>, Vec<&Switch>) = ready.partition(|s| s.host.is_some());
        Health {
            hosts: self.topology.hosts.len(),
            switches_ready: known.len(),
            ovsdb_connected: self.ovsdb_up.len(),
            vis: self.topology.vis.len(),
            unknown_switches: unknown
                .iter()
                .filter_map(|s| s.dpid)
                .map(|d| format!("{d:016x}"))
                .collect(),
        }
    }
}

fn managed_hosts(
    topology: &Topology,
    controllers: &BTreeMap<HostName, String>,
) -> Vec<ManagedHost> {
    topology
        .hosts
        .values()
        .map(|h| ManagedHost {
            host: h.clone(),
            controller: controllers.get(&h.name).cloned(),
        })
        .collect()
}

/// Runs `f`, which blocks (a store's flush or read), handing the
/// runtime's worker over meanwhile on a multi-threaded runtime: it then
/// writes what the control loop just queued for the switches (a task it
/// woke waits on this worker otherwise).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|r| r.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

fn now_ms() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

mod commit;
mod held_rarps;
mod inventory;
mod parked;
mod program;
pub mod role;
#[cfg(test)]
mod tests;
