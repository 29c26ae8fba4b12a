//! The `netns` driver: an L1 node is a network namespace on an emulated PM.
//!
//! ```text
//!   PM namespace (PmTarget.endpoint)          node namespace irisn-<PM namespace>-<id>
//!   [br-int] ── port vn<id> ══ veth ══ eth0 ── [cloudbr0] (MAC, address)
//!      external_ids:iris-vi=<VI>, iris-node=<id>
//! ```
//!
//! The node holds a Linux bridge, `cloudbr0` as CloudStack's agent expects,
//! with the node's address on it: the operator's L2 guests plug into it and
//! their VLAN tags cross it untouched (a bridge without VLAN filtering).
//! Everything is named after the node id, so `create` and `delete` are
//! idempotent and `list` finds a node after a crash from its namespace, its
//! OVS port or its sshd's files, whichever was made.
//!
//! A node with a static address on a VI that has an SSH key runs its own
//! sshd in its namespace ([`sshd`]), so that the operator logs in as
//! [`sshd::USER`] at the node's address with that key.

pub mod sshd;

use super::{ComputeDriver, Created, DriverError, NodeSpec, PmTarget};
use async_trait::async_trait;
use ovsdb::{Remote, VmPortSpec, Vswitch};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::process::Command;
use tokio::sync::Mutex;

/// The Linux bridge in each node (CloudStack's convention).
pub const NODE_BRIDGE: &str = "cloudbr0";
/// The node's NIC, inside its namespace.
const NODE_NIC: &str = "eth0";
/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Interface `external_ids` key naming the node a port belongs to.
pub const NODE_KEY: &str = "iris-node";

/// The driver, with one OVSDB session per PM.
#[derive(Debug, Default)]
pub struct NetnsDriver {
    sessions: Mutex<HashMap<String, Arc<Vswitch>>>,
}

/// The node's namespace on the PM whose own namespace (or, for a PM in
/// the root namespace, whose name) is `pm`: named after the PM's namespace,
/// which is unique on the host, so that two brokers sharing a host (test
/// runs) never take each other's nodes for strays.
pub fn namespace(pm: &str, node: &str) -> String {
    format!("irisn-{pm}-{node}")
}

/// [`namespace`] of a node on `pm`.
fn node_namespace(pm: &PmTarget, node: &str) -> String {
    namespace(pm.endpoint.as_deref().unwrap_or(&pm.name), node)
}

/// The PM end of the node's veth, and its OVS port.
pub fn port(node: &str) -> String {
    format!("vn{node}")
}

fn err(action: String, reason: impl Into<String>) -> DriverError {
    DriverError {
        driver: "netns",
        action,
        reason: reason.into(),
    }
}

/// Runs `cmd`, which does `what`; its stdout, or the error is its stderr.
async fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip ARGS` (in `netns` when given); the error is its stderr.
async fn ip(netns: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    run(cmd.args(args), &format!("ip {}", args.join(" "))).await
}

/// The pauses before each of QEMU's RARP rounds after a live migration
/// (`qemu_announce_self`: 50 ms, then 100 ms more each round).
const ANNOUNCE_ROUNDS: [u64; 5] = [0, 50, 150, 250, 350];

/// How long ovs-vswitchd may take to attach a moving node's port to its
/// switch before the move gives up and goes back.
const ATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends QEMU's RARP rounds for `mac` from the node's NIC inside `ns`.
async fn announce(ns: &str, mac: [u8; 6]) -> Result<(), String> {
    let path = std::path::Path::new(NETNS_DIR).join(ns);
    let what = format!("announcing the node from {ns}");
    tokio::task::spawn_blocking(move || send_rarps(&path, mac))
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .map_err(|e| format!("{what}: {e}"))
}

/// On a thread of its own (a packet socket belongs to the namespace of the
/// thread that opens it): enters the node's namespace, opens the NIC and
/// sends the rounds. Nothing else of the broker changes namespace.
fn send_rarps(netns: &std::path::Path, mac: [u8; 6]) -> Result<(), String> {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering {}: {e}", netns.display()))?;
        let nic = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == NODE_NIC)
            .ok_or_else(|| format!("no {NODE_NIC} in the node"))?;
        let mut tx = match pnet_datalink::channel(&nic, pnet_datalink::Config::default()) {
            Ok(pnet_datalink::Channel::Ethernet(tx, _rx)) => tx,
            Ok(_) => return Err(format!("{NODE_NIC} gave a channel that is not Ethernet")),
            Err(e) => return Err(format!("a packet socket on {NODE_NIC}: {e}")),
        };
        let mut frame = Vec::new();
        ofp::packet::ArpRepr::rarp_announce(ofp::packet::MacAddr(mac)).emit(&mut frame);
        for pause in ANNOUNCE_ROUNDS {
            std::thread::sleep(std::time::Duration::from_millis(pause));
            match tx.send_to(&frame, None) {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(format!("sending the RARP: {e}")),
                None => return Err("sending the RARP: no room in the socket".into()),
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| "the announcing thread panicked".to_owned())?
}

/// Runs `argv` inside namespace `ns`; the error is its stderr.
async fn netns_exec(ns: &str, argv: &[&str]) -> Result<(), String> {
    run(
        Command::new("ip").args(["netns", "exec", ns]).args(argv),
        &format!("{} in {ns}", argv.join(" ")),
    )
    .await
    .map(drop)
}

/// Whether an `ip` failure says the thing is not there.
fn gone(e: &str) -> bool {
    e.contains("Cannot find device") || e.contains("No such file") || e.contains("does not exist")
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl NetnsDriver {
    pub fn new() -> Self {
        Self::default()
    }

    async fn vswitch(&self, pm: &PmTarget) -> Result<Arc<Vswitch>, String> {
        let mut sessions = self.sessions.lock().await;
        if let Some(v) = sessions.get(&pm.ovsdb) {
            if v.client().disconnect_reason().is_none() {
                return Ok(v.clone());
            }
        }
        let remote: Remote = pm
            .ovsdb
            .parse()
            .map_err(|e| format!("OVSDB remote {:?}: {e}", pm.ovsdb))?;
        let v = Arc::new(
            Vswitch::connect(&remote)
                .await
                .map_err(|e| format!("OVSDB {}: {e}", pm.ovsdb))?,
        );
        sessions.insert(pm.ovsdb.clone(), v.clone());
        Ok(v)
    }

    async fn build(&self, pm: &PmTarget, node: &NodeSpec) -> Result<(), String> {
        let ns = node_namespace(pm, &node.id);
        let port = port(&node.id);
        let pm_ns = pm.endpoint.as_deref();
        let mtu = node.mtu.to_string();
        let mac = mac_text(node.mac);
        if !std::path::Path::new(NETNS_DIR).join(&ns).exists() {
            ip(None, &["netns", "add", &ns]).await?;
        }
        // No IPv6 autoconfiguration chatter from the node's interfaces.
        netns_exec(
            &ns,
            &[
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )
        .await?;
        ip(Some(&ns), &["link", "set", "lo", "up"]).await?;
        if ip(pm_ns, &["link", "show", "dev", &port]).await.is_err() {
            // A NIC left from an interrupted attempt would clash.
            let _ = ip(Some(&ns), &["link", "del", NODE_NIC]).await;
            let mut args = vec!["link", "add", port.as_str()];
            if let Some(p) = pm_ns {
                args.extend(["netns", p]);
            }
            args.extend(["mtu", &mtu, "type", "veth", "peer", "name", NODE_NIC]);
            args.extend(["netns", &ns, "mtu", &mtu]);
            ip(None, &args).await?;
        }
        if ip(Some(&ns), &["link", "show", "dev", NODE_BRIDGE])
            .await
            .is_err()
        {
            ip(Some(&ns), &["link", "add", NODE_BRIDGE, "type", "bridge"]).await?;
        }
        ip(
            Some(&ns),
            &["link", "set", NODE_BRIDGE, "address", &mac, "mtu", &mtu],
        )
        .await?;
        ip(
            Some(&ns),
            &[
                "link",
                "set",
                NODE_NIC,
                "address",
                &mac,
                "master",
                NODE_BRIDGE,
            ],
        )
        .await?;
        if let Some((addr, prefix)) = node.ip {
            let cidr = format!("{addr}/{prefix}");
            ip(Some(&ns), &["addr", "replace", &cidr, "dev", NODE_BRIDGE]).await?;
        }
        // The node's stack, and the bridge forwarding its guests' frames,
        // leave checksums and segmentation to a NIC that has none: the OVS
        // userspace datapath (the testbed's netdev bridges) reads the veth
        // with a packet socket and drops such frames, so TCP never got
        // through while ping did. Off, the kernel finishes every frame
        // before it leaves the node.
        netns_exec(
            &ns,
            &[
                "ethtool", "-K", NODE_NIC, "tx", "off", "tso", "off", "gso", "off",
            ],
        )
        .await?;
        ip(Some(&ns), &["link", "set", NODE_NIC, "up"]).await?;
        ip(Some(&ns), &["link", "set", NODE_BRIDGE, "up"]).await?;
        ip(pm_ns, &["link", "set", &port, "up"]).await?;
        let mut spec = VmPortSpec::new(port.clone(), node.vi.to_string());
        spec.external_ids.insert(NODE_KEY.into(), node.id.clone());
        spec.external_ids.insert("attached-mac".into(), mac);
        let vswitch = self.vswitch(pm).await?;
        vswitch
            .ensure_vm_port(&pm.bridge, &spec)
            .await
            .map_err(|e| format!("adding port {port} to {}: {e}", pm.bridge))?;
        if let (Some(key), Some((addr, _))) = (&node.ssh_authorized_key, node.ip) {
            sshd::start(&ns, addr, key).await?;
        }
        Ok(())
    }

    /// Waits until ovs-vswitchd has attached the node's port on `pm` to the
    /// switch (given it an OpenFlow port). OVSDB takes the port at once, but
    /// until ovs-vswitchd reads the veth the kernel drops what the node
    /// sends: the controller holds a RARP from a port it does not know yet
    /// only when the switch passed it up, so an announcement sent earlier
    /// is lost and the MAC stays on the old PM.
    async fn wait_attached(&self, pm: &PmTarget, node: &str) -> Result<(), String> {
        let port = port(node);
        let vswitch = self.vswitch(pm).await?;
        let mut replica = vswitch.replica();
        let deadline = tokio::time::Instant::now() + ATTACH_WAIT;
        loop {
            let iface = replica
                .borrow_and_update()
                .interfaces()
                .into_iter()
                .find(|i| i.name == port && i.bridge.as_deref() == Some(pm.bridge.as_str()));
            let why = match iface {
                Some(i) if i.ofport.number().is_some() => return Ok(()),
                Some(i) => i.error,
                None => Some(format!("no port {port} on {}", pm.bridge)),
            };
            let gave_up = || {
                let why = why.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
                format!(
                    "ovs-vswitchd of {} did not attach port {port} within {} s{why}",
                    pm.name,
                    ATTACH_WAIT.as_secs()
                )
            };
            match tokio::time::timeout_at(deadline, replica.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(format!("OVSDB {}: the session ended", pm.ovsdb)),
                Err(_) => return Err(gave_up()),
            }
        }
    }

    /// Has the node announce itself on `pm` once its port there is in the
    /// switch, as QEMU does only once the guest runs on the new host.
    async fn announce_on(&self, pm: &PmTarget, node: &NodeSpec) -> Result<(), String> {
        self.wait_attached(pm, &node.id).await?;
        announce(&node_namespace(pm, &node.id), node.mac).await
    }
}

#[async_trait]
impl ComputeDriver for NetnsDriver {
    fn kind(&self) -> &'static str {
        "netns"
    }

    fn port(&self, node_id: &str) -> String {
        port(node_id)
    }

    /// The node is made (namespace, veth, OVS port) and is `active` only
    /// once ovs-vswitchd has attached its port: until then nothing it sends
    /// or is sent reaches it, so a node reported ready earlier did not
    /// answer yet.
    async fn create(&self, pm: &PmTarget, node: &NodeSpec) -> Result<Created, DriverError> {
        let made = async {
            self.build(pm, node).await?;
            self.wait_attached(pm, &node.id).await
        };
        if let Err(reason) = made.await {
            let _ = self.delete(pm, &node.id).await;
            return Err(err(format!("create node {}", node.id), reason));
        }
        Ok(Created {
            port: port(&node.id),
            handle: node_namespace(pm, &node.id),
            nested_virtualization: false,
        })
    }

    async fn delete(&self, pm: &PmTarget, node_id: &str) -> Result<(), DriverError> {
        // Every part is removed even when another cannot be (an OVSDB that
        // does not answer keeps no namespace alive); the first failure is
        // the answer, and the next delete tries again.
        let mut failures = Vec::new();
        let port = port(node_id);
        match self.vswitch(pm).await {
            Ok(v) => {
                if let Err(e) = v.remove_port(&pm.bridge, &port).await {
                    failures.push(format!("removing port {port}: {e}"));
                }
            }
            Err(e) => failures.push(e),
        }
        if let Err(e) = ip(pm.endpoint.as_deref(), &["link", "del", &port]).await {
            if !gone(&e) {
                failures.push(e);
            }
        }
        let ns = node_namespace(pm, node_id);
        let ns_exists = std::path::Path::new(NETNS_DIR).join(&ns).exists();
        // Before the namespace goes: its processes are found through it.
        if let Err(e) = sshd::stop(&ns, ns_exists).await {
            failures.push(e);
        }
        if ns_exists {
            if let Err(e) = ip(None, &["netns", "del", &ns]).await {
                failures.push(e);
            }
        }
        match failures.into_iter().next() {
            None => Ok(()),
            Some(reason) => Err(err(format!("delete node {node_id}"), reason)),
        }
    }

    fn can_migrate(&self) -> Result<(), String> {
        Ok(())
    }

    /// As a live migration does: the node is made on `to` first (its
    /// namespace, veth and OVS port) and waits there until the switch has
    /// its port, then is unmade on `from`, then it sends QEMU's RARP rounds
    /// from its own NIC, which the controller takes as the MAC's move.
    /// Whatever fails leaves it whole on `from`: untouched when it had not
    /// been unmade there yet, else made there again and announced.
    async fn migrate(
        &self,
        from: &PmTarget,
        to: &PmTarget,
        node: &NodeSpec,
    ) -> Result<Created, DriverError> {
        let action = || format!("migrate node {} from {} to {}", node.id, from.name, to.name);
        if from.endpoint == to.endpoint {
            // One namespace would hold both PMs' end of the node's veth,
            // under one name.
            return Err(err(
                action(),
                "both PMs are in the same namespace, where a node cannot be twice at once",
            ));
        }
        // `create` returns once the switch has the port: a port
        // ovs-vswitchd never attaches fails here, before the node leaves
        // `from`.
        let created = self.create(to, node).await?;
        if let Err(e) = self.delete(from, &node.id).await {
            // Still whole on `from` as far as the data plane goes (its port
            // there may be gone): the copy on `to` goes, and `from` is made
            // whole again rather than the node being left nowhere.
            let _ = self.delete(to, &node.id).await;
            let back = self.build(from, node).await;
            let reason = match back {
                Ok(()) => format!("{e}; the node stays on {}", from.name),
                Err(b) => format!("{e}; and it could not be made whole there again: {b}"),
            };
            return Err(err(action(), reason));
        }
        if let Err(reason) = announce(&node_namespace(to, &node.id), node.mac).await {
            // The node is whole on `to` but unannounced: the controller
            // follows it there only if it saw `to`'s port before `from`'s
            // went (docs/pipeline.md), so it goes back to `from` and is
            // announced there.
            let back = async {
                // A copy on `to` that does not go would answer for its MAC
                // beside the one put back.
                self.delete(to, &node.id).await?;
                self.create(from, node).await?;
                Ok::<_, DriverError>(())
            }
            .await;
            if back.is_ok() {
                let _ = self.announce_on(from, node).await;
            }
            let reason = match back {
                Ok(()) => format!("{reason}; the node is back on {}", from.name),
                Err(e) => format!("{reason}; and it could not be put back: {e}"),
            };
            return Err(err(action(), reason));
        }
        Ok(created)
    }

    async fn list(&self, pm: &PmTarget) -> Result<Vec<String>, DriverError> {
        let prefix = node_namespace(pm, "");
        let mut ids = BTreeSet::new();
        for dir in [NETNS_DIR, sshd::FILES_DIR] {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if let Some(id) = e.file_name().to_str().and_then(|n| n.strip_prefix(&prefix)) {
                    ids.insert(id.to_owned());
                }
            }
        }
        let vswitch = self
            .vswitch(pm)
            .await
            .map_err(|e| err("list nodes".into(), e))?;
        for i in vswitch.interfaces() {
            if i.bridge.as_deref() == Some(pm.bridge.as_str()) {
                if let Some(id) = i.external_ids.get(NODE_KEY) {
                    ids.insert(id.clone());
                }
            }
        }
        Ok(ids.into_iter().collect())
    }
}
