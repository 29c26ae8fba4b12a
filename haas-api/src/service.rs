//! The broker at work: the records behind one lock, the compute drivers,
//! the controller, and the operations that make and unmake nodes.
//!
//! An operation's records are written before any driver is called, so a
//! broker killed in the middle finds at start ([`Broker::recover`]) the
//! nodes it was building (made again: drivers are idempotent) or deleting
//! (deleted again), and removes what a driver holds that no node owns.

use crate::compute::{ComputeDriver, DriverError, NodeSpec, PmTarget};
use crate::gateways::Gateways;
use crate::northbound::{Controller, NorthboundError};
use crate::records::{transition, NodeEvent, NodeRecord, Records};
use crate::store::StoreError;
use iris_schemas::broker::{NodeState, OperationKind, OperationStatus};
use iris_schemas::northbound::LocationBody;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Semaphore};
use tracing::{info, warn};

/// How many nodes one broker makes or unmakes at once.
const PARALLEL_NODES: usize = 16;
/// How often a draining delete reads the controller's registry.
const DRAIN_POLL: Duration = Duration::from_millis(500);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A random id of `bytes` bytes in hex.
pub fn random_hex(bytes: usize) -> String {
    use password_hash::rand_core::{OsRng, RngCore};
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// How often the HaaS gateways' VIs are checked against the broker's.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Broker {
    pub records: Mutex<Records>,
    pub drivers: HashMap<&'static str, Arc<dyn ComputeDriver>>,
    pub controller: Controller,
    /// The HaaS gateways every VI is pushed to.
    pub gateways: Gateways,
    pub first_tunnel_key: u32,
    pub node_mtu: u16,
    work: Semaphore,
}

/// What a node's making needs, copied out of the records.
#[derive(Debug, Clone)]
struct Job {
    pm: PmTarget,
    driver: Arc<dyn ComputeDriver>,
    spec: NodeSpec,
    mac: String,
    ips: Vec<String>,
}

impl Broker {
    pub fn new(
        records: Records,
        drivers: HashMap<&'static str, Arc<dyn ComputeDriver>>,
        controller: Controller,
        gateways: Gateways,
        first_tunnel_key: u32,
        node_mtu: u16,
    ) -> Self {
        Self {
            records: Mutex::new(records),
            drivers,
            controller,
            gateways,
            first_tunnel_key,
            node_mtu,
            work: Semaphore::new(PARALLEL_NODES),
        }
    }

    /// The PM and driver of a node, and its spec, as the records say.
    fn job(&self, r: &Records, n: &NodeRecord) -> Result<Job, String> {
        let pm = r
            .pms
            .get(&n.node.pm)
            .ok_or_else(|| format!("PM {} is not registered", n.node.pm))?;
        let driver = self
            .drivers
            .get(pm.spec.driver.as_str())
            .ok_or_else(|| format!("no compute driver {:?}", pm.spec.driver))?
            .clone();
        let vi = r
            .vis
            .get(&n.node.vi)
            .ok_or_else(|| format!("VI {} is gone", n.node.vi))?;
        let ip = n.node.ip.as_deref().and_then(|c| {
            let (a, p) = c.split_once('/')?;
            Some((a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?))
        });
        let mac = parse_mac(&n.node.mac).ok_or_else(|| format!("bad MAC {}", n.node.mac))?;
        Ok(Job {
            pm: pm_target(&pm.spec),
            driver,
            spec: NodeSpec {
                id: n.node.id.clone(),
                vi: vi.tunnel_key,
                mac,
                ip,
                vcpus: n.size.vcpus,
                memory_mib: n.size.memory_mib,
                disk_gib: n.size.disk_gib,
                mtu: n.node.mtu,
                ssh_authorized_key: vi.spec.ssh_public_key.clone(),
            },
            mac: n.node.mac.clone(),
            ips: ip.map(|(a, _)| vec![a.to_string()]).unwrap_or_default(),
        })
    }

    /// Runs operation `op` to its end: makes or unmakes its nodes.
    pub async fn run_operation(self: Arc<Self>, op: String) {
        let (kind, nodes, drain) = {
            let r = self.records.lock().await;
            let Some(o) = r.operations.get(&op) else {
                return;
            };
            let deadline = o.op.drain.as_ref().map(|d| d.deadline_ms);
            (o.op.kind, o.op.nodes.clone(), deadline)
        };
        let tasks = nodes.into_iter().map(|id| {
            let me = self.clone();
            let op = op.clone();
            async move {
                // The wait for a node's guests takes no turn: drains that
                // last minutes must not hold up other nodes' work.
                if let (OperationKind::DeleteNodes, Some(deadline)) = (kind, drain) {
                    me.wait_drained(&op, &id, deadline).await?;
                }
                let _turn = me.work.acquire().await;
                match kind {
                    OperationKind::CreateNodes => me.make_node(&op, &id).await,
                    OperationKind::DeleteNodes => me.unmake_node(&op, &id).await,
                    OperationKind::MigrateNode => me.move_node(&op, &id).await,
                }
            }
        });
        let results = futures_util::future::join_all(tasks).await;
        let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        let mut r = self.records.lock().await;
        let write = r.update_operation(&op, now_ms(), |o| {
            if failures.is_empty() {
                o.status = OperationStatus::Succeeded;
            } else {
                o.status = OperationStatus::Failed;
                o.error = Some(failures.join("; "));
            }
        });
        if let Err(e) = write {
            warn!(%op, "cannot record the end of the operation: {e}");
        }
        info!(%op, failed = failures.len(), "operation done");
    }

    async fn step_done(&self, op: &str) -> Result<(), StoreError> {
        self.records
            .lock()
            .await
            .update_operation(op, now_ms(), |o| o.done += 1)
    }

    /// Makes one node: the driver, then the registry seed; on failure the
    /// driver's part is undone and the node is left in `error`.
    async fn make_node(&self, op: &str, id: &str) -> Result<(), String> {
        let job = {
            let r = self.records.lock().await;
            let Some(n) = r.nodes.get(id) else {
                return Err(format!("node {id} is gone"));
            };
            if n.node.state == NodeState::Active {
                return Ok(());
            }
            self.job(&r, n)
        };
        let job = match job {
            Ok(j) => j,
            Err(e) => return self.fail_node(id, e).await,
        };
        let made = job.driver.create(&job.pm, &job.spec).await;
        let made = match made {
            Ok(c) => {
                let seeded = if job.ips.is_empty() {
                    Ok(())
                } else {
                    self.controller.seed(job.spec.vi, &job.mac, &job.ips).await
                };
                match seeded {
                    Ok(()) => Ok(c),
                    Err(e) => {
                        let _ = job.driver.delete(&job.pm, id).await;
                        Err(e.to_string())
                    }
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match made {
            Ok(created) => {
                {
                    let mut r = self.records.lock().await;
                    if let Some(mut n) = r.nodes.get(id).cloned() {
                        n.node.state =
                            transition(n.node.state, NodeEvent::Made).map_err(str::to_owned)?;
                        n.node.last_error = None;
                        n.node.nested_virtualization = created.nested_virtualization;
                        r.put_node(n).map_err(|e| e.to_string())?;
                    }
                }
                self.step_done(op).await.map_err(|e| e.to_string())
            }
            Err(e) => self.fail_node(id, e).await,
        }
    }

    async fn fail_node(&self, id: &str, e: String) -> Result<(), String> {
        warn!(node = %id, "node failed: {e}");
        let mut r = self.records.lock().await;
        let state = r.nodes.get(id).map(|n| n.node.state);
        if let Some(Ok(next)) = state.map(|s| transition(s, NodeEvent::Failed)) {
            let _ = r.set_node_state(id, next, Some(e.clone()));
        }
        Err(format!("node {id}: {e}"))
    }

    /// Unmakes one node: the driver, the registry entry, then the record.
    async fn unmake_node(&self, op: &str, id: &str) -> Result<(), String> {
        let job = {
            let r = self.records.lock().await;
            let Some(n) = r.nodes.get(id) else {
                return Ok(());
            };
            self.job(&r, n)
        };
        let job = match job {
            Ok(j) => j,
            Err(e) => return self.fail_node(id, e).await,
        };
        // The node goes first: a frame it sent after its entry was
        // removed would have the controller learn it again, for good.
        let undone = async {
            job.driver
                .delete(&job.pm, id)
                .await
                .map_err(|e: DriverError| e.to_string())?;
            self.controller
                .unseed(job.spec.vi, &job.mac)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = undone {
            return self.fail_node(id, e).await;
        }
        self.records
            .lock()
            .await
            .delete_node(id)
            .map_err(|e| e.to_string())?;
        self.step_done(op).await.map_err(|e| e.to_string())
    }

    /// The guest MACs the controller's registry places on node `job`'s
    /// port (on the PM of the same name as the controller's host), its own
    /// MAC left out, sorted. A port the controller has not found holds none.
    async fn guest_macs(&self, job: &Job) -> Result<Vec<String>, NorthboundError> {
        let pm = job.pm.name.as_str();
        let Some(port) = self
            .controller
            .vm_port(pm, &job.driver.port(&job.spec.id))
            .await?
        else {
            return Ok(Vec::new());
        };
        let macs: BTreeSet<String> = self
            .controller
            .registry(job.spec.vi)
            .await?
            .into_iter()
            .filter(|e| {
                matches!(&e.location, Some(LocationBody::Port { host, ofport })
                    if host == pm && *ofport == port.ofport)
            })
            .map(|e| e.mac.to_ascii_lowercase())
            .filter(|m| !m.eq_ignore_ascii_case(&job.mac))
            .collect();
        Ok(macs.into_iter().collect())
    }

    /// A draining delete of one node, before it is unmade: waits until the
    /// controller places no guest MAC on the node's port (the operator's
    /// cloud has moved its guests away) and marks it deleting. At
    /// `deadline_ms` the node is active again, untouched, and the
    /// operation fails naming the MACs left. Resumed after a crash, it
    /// waits on to the same deadline.
    async fn wait_drained(&self, op: &str, id: &str, deadline_ms: u64) -> Result<(), String> {
        let mut shown: Option<Vec<String>> = None;
        loop {
            let job = {
                let r = self.records.lock().await;
                let Some(n) = r.nodes.get(id) else {
                    return Ok(());
                };
                if n.operation != op {
                    return Err(format!(
                        "node {id}: operation {} took it over before it drained",
                        n.operation
                    ));
                }
                if n.node.state == NodeState::Deleting {
                    // Drained before a crash: what is left is the delete.
                    break;
                }
                self.job(&r, n)
            };
            let job = match job {
                Ok(j) => j,
                Err(e) => return self.fail_node(id, e).await,
            };
            let look = self.guest_macs(&job).await;
            if let Ok(macs) = &look {
                if shown.as_ref() != Some(macs) {
                    shown = Some(macs.clone());
                    let write = self
                        .records
                        .lock()
                        .await
                        .update_operation(op, now_ms(), |o| {
                            if let Some(d) = o.drain.as_mut() {
                                d.guest_macs_remaining =
                                    u32::try_from(macs.len()).unwrap_or(u32::MAX);
                                d.guest_macs = macs.clone();
                            }
                        });
                    if let Err(e) = write {
                        warn!(%op, "cannot record the drain's progress: {e}");
                    }
                }
                if macs.is_empty() {
                    let mut r = self.records.lock().await;
                    if let Some(n) = r.nodes.get(id) {
                        let next = transition(n.node.state, NodeEvent::DeleteAsked)
                            .map_err(|why| format!("node {id}: {why}"))?;
                        r.set_node_state(id, next, None)
                            .map_err(|e| e.to_string())?;
                    }
                    break;
                }
            }
            if now_ms() >= deadline_ms {
                let why = match look {
                    Ok(macs) => format!(
                        "the drain timed out with {} guest MAC(s) still on its port: {}",
                        macs.len(),
                        macs.join(", ")
                    ),
                    Err(e) => format!("the drain timed out, the registry unread: {e}"),
                };
                let why = format!("{why}; the node is active again and nothing was deleted");
                let mut r = self.records.lock().await;
                if let Some(n) = r.nodes.get(id) {
                    let next = transition(n.node.state, NodeEvent::DrainGaveUp)
                        .map_err(|w| format!("node {id}: {w}"))?;
                    r.set_node_state(id, next, Some(why.clone()))
                        .map_err(|e| e.to_string())?;
                }
                warn!(node = %id, "{why}");
                return Err(format!("node {id}: {why}"));
            }
            if let Err(e) = &look {
                warn!(node = %id, "drain: {e}");
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        info!(node = %id, "drained");
        Ok(())
    }

    /// Moves one node to the PM its record is migrating to; whatever the
    /// driver says, the node ends active, on the new PM or, rolled back, on
    /// the old one with `last_error`.
    async fn move_node(&self, op: &str, id: &str) -> Result<(), String> {
        let prepared = {
            let r = self.records.lock().await;
            let Some(n) = r.nodes.get(id) else {
                return Err(format!("node {id} is gone"));
            };
            let Some(to) = n.migrating_to.clone() else {
                // A resumed operation whose move was recorded done.
                return Ok(());
            };
            self.job(&r, n).and_then(|job| {
                let target = r
                    .pms
                    .get(&to)
                    .ok_or_else(|| format!("PM {to} is not registered"))?;
                Ok((job, to, pm_target(&target.spec)))
            })
        };
        let moved = match prepared {
            Ok((job, to, target)) => job
                .driver
                .migrate(&job.pm, &target, &job.spec)
                .await
                .map(|_| to)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut r = self.records.lock().await;
        let Some(mut n) = r.nodes.get(id).cloned() else {
            return Err(format!("node {id} is gone"));
        };
        n.node.state = transition(n.node.state, NodeEvent::Settled).map_err(str::to_owned)?;
        n.migrating_to = None;
        let result = match moved {
            Ok(to) => {
                info!(node = %id, from = %n.node.pm, %to, "node migrated");
                n.node.pm = to;
                n.node.last_error = None;
                Ok(())
            }
            Err(e) => {
                warn!(node = %id, "migration failed: {e}");
                n.node.last_error = Some(e.clone());
                Err(format!("node {id}: {e}"))
            }
        };
        r.put_node(n).map_err(|e| e.to_string())?;
        drop(r);
        result?;
        self.step_done(op).await.map_err(|e| e.to_string())
    }

    /// Keeps the HaaS gateways' runtime VIs the broker's until `shutdown`:
    /// at start, then every [`RECONCILE_EVERY`], and after a failure again
    /// with backoff, so that a push or removal that failed (a gateway down,
    /// a crash between the two) is made good.
    pub async fn keep_gateways(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let vis: Vec<_> = self.records.lock().await.vis.values().cloned().collect();
            let wait = match self.gateways.reconcile(&vis).await {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    RECONCILE_EVERY
                }
                Err(e) => {
                    warn!("reconciling the HaaS gateways' VIs: {e}; again in {backoff:?}");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// At start: resumes every operation a crash interrupted, then removes
    /// what each PM's driver holds that no node owns.
    pub async fn recover(self: &Arc<Self>) {
        let running = self.records.lock().await.operations_running();
        for o in running {
            info!(op = %o.op.id, kind = ?o.op.kind, "resuming an interrupted operation");
            if o.op.drain.is_some() {
                // Its wait may be long; its node is owned meanwhile.
                tokio::spawn(self.clone().run_operation(o.op.id.clone()));
            } else {
                self.clone().run_operation(o.op.id.clone()).await;
            }
        }
        let pms: Vec<_> = {
            let r = self.records.lock().await;
            r.pms.values().map(|p| p.spec.clone()).collect()
        };
        for pm in pms {
            let Some(driver) = self.drivers.get(pm.driver.as_str()) else {
                continue;
            };
            let target = pm_target(&pm);
            let held = match driver.list(&target).await {
                Ok(h) => h,
                Err(e) => {
                    warn!(pm = %pm.name, "cannot list the PM's nodes: {e}");
                    continue;
                }
            };
            for id in held {
                let owned = self.records.lock().await.owns(&pm.name, &id);
                if !owned {
                    info!(pm = %pm.name, node = %id, "removing a node no record owns");
                    if let Err(e) = driver.delete(&target, &id).await {
                        warn!(pm = %pm.name, node = %id, "{e}");
                    }
                }
            }
        }
        info!("recovery done");
    }
}

pub fn pm_target(pm: &iris_schemas::broker::PmCreate) -> PmTarget {
    PmTarget {
        name: pm.name.clone(),
        underlay_ip: pm.underlay_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        ovsdb: pm.ovsdb.clone(),
        bridge: pm.bridge.clone(),
        endpoint: pm.endpoint.clone(),
    }
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}
