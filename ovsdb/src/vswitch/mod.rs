//! Managing one host's Open vSwitch: the integration bridge, its GRE tunnel
//! mesh and its VM ports, and watching interfaces come and go.
//!
//! [`Vswitch`] keeps a [`Replica`] of the rows it manages through a monitor.
//! Each `ensure`/`set` call plans the difference between the desired state
//! and the replica ([`plan_bridge`], [`plan_tunnels`], ...) and sends it as one atomic transaction, or
//! nothing when the switch is already right. Calls are applied one at a time
//! in the order made, and each sees the effects of the one before: the
//! server flushes monitor updates before any reply, and the replica applies
//! them before the next plan.

mod model;
mod plan;
#[cfg(test)]
mod sim;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

pub use model::{
    BridgeInfo, ControllerInfo, Detail, InterfaceEvent, InterfaceInfo, InterfaceStatus, Ofport,
    PortInfo, Replica, DATABASE, ROLE_KEY, ROLE_TRUNK, ROLE_TUNNEL, ROLE_VM, ROLE_WAN, VI_KEY,
};
pub use plan::{
    is_passive_target, plan_bridge, plan_remove_port, plan_trunk_port, plan_tunnels, plan_vm_port,
    plan_wan_ports, Bfd, BridgeSpec, DatapathType, FailMode, OpenFlowVersion, PlanError, TunnelKey,
    TunnelRemote, TunnelSpec, VmPortKind, VmPortSpec, WanPortSpec, TUNNEL_TYPE,
};

use crate::client::{Client, Monitor, Options};
use crate::error::{Disconnect, Error, ProtocolError};
use crate::ops::Transaction;
use crate::remote::Remote;

/// What applying a desired state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The switch was already right; nothing was sent.
    Unchanged,
    /// One transaction of this many operations was committed.
    Applied { operations: usize },
}

type Planner = Box<dyn FnOnce(&Replica) -> Result<Transaction, PlanError> + Send>;

enum Command {
    Apply {
        plan: Planner,
        reply: oneshot::Sender<Result<Outcome, Error>>,
    },
    Watch {
        reply: oneshot::Sender<mpsc::UnboundedReceiver<InterfaceEvent>>,
    },
}

/// One host's Open vSwitch, managed through its OVSDB server.
#[derive(Debug, Clone)]
pub struct Vswitch {
    client: Client,
    commands: mpsc::UnboundedSender<Command>,
    replica: watch::Receiver<Arc<Replica>>,
}

impl Vswitch {
    /// Connects to `remote` (e.g. `unix:/var/run/openvswitch/db.sock` or
    /// `tcp:192.0.2.10:6640`) and loads the current state.
    pub async fn connect(remote: &Remote) -> Result<Self, Error> {
        Self::connect_with(remote, Options::default()).await
    }

    pub async fn connect_with(remote: &Remote, options: Options) -> Result<Self, Error> {
        let client = Client::connect_with(remote, options).await?;
        Self::over(client).await
    }

    /// [`Vswitch::connect`], following interfaces in `detail`.
    pub async fn connect_detailed(remote: &Remote, detail: Detail) -> Result<Self, Error> {
        let client = Client::connect_with(remote, Options::default()).await?;
        Self::over_detailed(client, detail).await
    }

    /// Manages the switch through an existing session.
    pub async fn over(client: Client) -> Result<Self, Error> {
        Self::over_detailed(client, Detail::Config).await
    }

    /// [`Vswitch::over`], following interfaces in `detail`.
    pub async fn over_detailed(client: Client, detail: Detail) -> Result<Self, Error> {
        let mut monitor = client
            .monitor(DATABASE, &Replica::monitor_requests_for(detail))
            .await?;
        let mut replica = Replica::default();
        if let Some(initial) = monitor.take_initial() {
            replica.apply(&initial)?;
        }
        let (replica_tx, replica_rx) = watch::channel(Arc::new(replica.clone()));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let actor = Actor {
            client: client.clone(),
            monitor,
            replica,
            published: replica_tx,
            watchers: Vec::new(),
        };
        tokio::spawn(actor.run(command_rx));
        Ok(Self {
            client,
            commands,
            replica: replica_rx,
        })
    }

    /// The underlying session, for raw transactions.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves when the session ends, with the reason. Every later call
    /// fails with [`Error::Disconnected`]; connect again to recover.
    pub async fn closed(&self) -> Disconnect {
        self.client.closed().await
    }

    async fn apply(&self, plan: Planner) -> Result<Outcome, Error> {
        let (reply, rx) = oneshot::channel();
        let gone = || self.client.gone();
        self.commands
            .send(Command::Apply { plan, reply })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Makes the bridge match `spec`: creates it with its local port, or
    /// corrects the settings that differ.
    pub async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<Outcome, Error> {
        let spec = spec.clone();
        self.apply(Box::new(move |r| plan_bridge(r, &spec))).await
    }

    /// Makes the bridge's Iris tunnel ports exactly `tunnels` (see [`plan_tunnels`]).
    pub async fn set_tunnels(
        &self,
        bridge: &str,
        tunnels: &[TunnelSpec],
    ) -> Result<Outcome, Error> {
        let (bridge, tunnels) = (bridge.to_owned(), tunnels.to_vec());
        self.apply(Box::new(move |r| plan_tunnels(r, &bridge, &tunnels)))
            .await
    }

    /// Makes the bridge's WAN ports exactly `ports` (see [`plan_wan_ports`]).
    pub async fn set_wan_ports(
        &self,
        bridge: &str,
        ports: &[WanPortSpec],
    ) -> Result<Outcome, Error> {
        let (bridge, ports) = (bridge.to_owned(), ports.to_vec());
        self.apply(Box::new(move |r| plan_wan_ports(r, &bridge, &ports)))
            .await
    }

    /// Attaches a gateway's trunk port (see [`plan_trunk_port`]).
    pub async fn ensure_trunk_port(&self, bridge: &str, name: &str) -> Result<Outcome, Error> {
        let (bridge, name) = (bridge.to_owned(), name.to_owned());
        self.apply(Box::new(move |r| plan_trunk_port(r, &bridge, &name)))
            .await
    }

    /// Attaches a VM port tagged with its VI (see [`plan_vm_port`]).
    pub async fn ensure_vm_port(&self, bridge: &str, port: &VmPortSpec) -> Result<Outcome, Error> {
        let (bridge, port) = (bridge.to_owned(), port.clone());
        self.apply(Box::new(move |r| plan_vm_port(r, &bridge, &port)))
            .await
    }

    /// Detaches a port from the bridge, if it is there.
    pub async fn remove_port(&self, bridge: &str, name: &str) -> Result<Outcome, Error> {
        let (bridge, name) = (bridge.to_owned(), name.to_owned());
        self.apply(Box::new(move |r| plan_remove_port(r, &bridge, &name)))
            .await
    }

    /// The replica as of the last update applied.
    pub fn snapshot(&self) -> Arc<Replica> {
        self.replica.borrow().clone()
    }

    pub fn bridge(&self, name: &str) -> Option<BridgeInfo> {
        self.snapshot().bridge(name)
    }

    pub fn ports(&self) -> Vec<PortInfo> {
        self.snapshot().ports()
    }

    pub fn interfaces(&self) -> Vec<InterfaceInfo> {
        self.snapshot().interfaces()
    }

    /// BFD and counters of interface `name` (see [`Detail::Status`]).
    pub fn interface_status(&self, name: &str) -> Option<InterfaceStatus> {
        self.snapshot().interface_status(name)
    }

    /// The replica, marked changed whenever the database changes (by this
    /// session or any other client).
    pub fn replica(&self) -> watch::Receiver<Arc<Replica>> {
        self.replica.clone()
    }

    /// A stream of interface changes. It starts with an
    /// [`InterfaceEvent::Added`] for every interface present now, so nothing
    /// falls between a snapshot and the first change, and ends when the
    /// session does.
    pub async fn watch_interfaces(&self) -> Result<InterfaceWatch, Error> {
        let (reply, rx) = oneshot::channel();
        let gone = || self.client.gone();
        self.commands
            .send(Command::Watch { reply })
            .map_err(|_| gone())?;
        Ok(InterfaceWatch {
            events: rx.await.map_err(|_| gone())?,
        })
    }
}

/// See [`Vswitch::watch_interfaces`]. Events queue until read, without a
/// bound (interfaces change at the pace of VMs starting and stopping), so a
/// holder should keep reading or drop the watch.
#[derive(Debug)]
pub struct InterfaceWatch {
    events: mpsc::UnboundedReceiver<InterfaceEvent>,
}

impl InterfaceWatch {
    /// The next change; `None` once the session has ended.
    pub async fn next(&mut self) -> Option<InterfaceEvent> {
        self.events.recv().await
    }
}

/// Owns the replica: applies monitor updates and runs commands, one at a time.
struct Actor {
    client: Client,
    monitor: Monitor,
    replica: Replica,
    published: watch::Sender<Arc<Replica>>,
    watchers: Vec<mpsc::UnboundedSender<InterfaceEvent>>,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                update = self.monitor.next() => match update {
                    Some(update) => {
                        if self.absorb(&update).is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Apply { plan, reply }) => {
                        let result = self.apply(plan).await;
                        let _ = reply.send(result);
                    }
                    Some(Command::Watch { reply }) => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        for iface in self.replica.interfaces() {
                            let _ = tx.send(InterfaceEvent::Added(iface));
                        }
                        self.watchers.push(tx);
                        let _ = reply.send(rx);
                    }
                    None => return,
                },
            }
        }
    }

    /// Applies one update and tells the watchers. A malformed update leaves
    /// the replica wrong, so it ends the session rather than guess.
    fn absorb(&mut self, update: &crate::update::TableUpdates) -> Result<(), ProtocolError> {
        match self.replica.apply_and_diff(update) {
            Ok(events) => {
                self.published.send_replace(Arc::new(self.replica.clone()));
                for event in events {
                    self.watchers.retain(|w| w.send(event.clone()).is_ok());
                }
                Ok(())
            }
            Err(e) => {
                self.client.close_because(Disconnect::Protocol(e.clone()));
                Err(e)
            }
        }
    }

    /// Takes in every update that has already arrived.
    fn catch_up(&mut self) -> Result<(), ProtocolError> {
        while let Some(update) = self.monitor.try_next() {
            self.absorb(&update)?;
        }
        Ok(())
    }

    async fn apply(&mut self, plan: Planner) -> Result<Outcome, Error> {
        self.catch_up()?;
        let txn = plan(&self.replica)?;
        if txn.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        self.client.transact(DATABASE, txn.ops()).await?;
        // The server sent this transaction's update before its reply, so it
        // is queued by now; take it in so the next plan starts from here.
        self.catch_up()?;
        Ok(Outcome::Applied {
            operations: txn.len(),
        })
    }
}
