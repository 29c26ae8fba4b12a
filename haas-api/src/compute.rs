//! Compute drivers: how an L1 node comes to exist on a PM.
//!
//! The broker decides *where* a node goes and *what* it is (placement,
//! flavor, MAC, VI); a driver only makes it so on one PM, or undoes it. Every
//! driver plugs the node's NIC into the PM's integration bridge with the VI in
//! the OVS port's `external_ids:iris-vi`, which is all the controller needs
//! to classify it.
//!
//! Drivers are idempotent by node id: creating a node that exists with the
//! same spec succeeds, deleting one that does not exist succeeds. That is what
//! lets the broker resume or roll back an operation after a crash without
//! knowing how far the driver got.

/// The longest SSH key line a node takes: the libvirt driver passes it
/// base64-encoded on the kernel command line (2048 bytes on x86), beside
/// the image's own arguments.
pub const MAX_SSH_KEY: usize = 1100;

#[cfg(feature = "libvirt")]
pub mod libvirt;

use std::fmt;
use std::net::Ipv4Addr;

use async_trait::async_trait;

pub mod netns;

/// A PM as a driver needs it: where its OVS is and how to reach its hypervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmTarget {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    /// OVSDB remote of the PM's Open vSwitch: `unix:PATH` or `tcp:IP:PORT`.
    pub ovsdb: String,
    /// The integration bridge the node's NIC is plugged into.
    pub bridge: String,
    /// Driver-specific location of the PM's hypervisor: for `netns`, the
    /// network namespace the emulated PM lives in (none: the root
    /// namespace); for `libvirt`, the connection URI (`qemu:///system`,
    /// `test:///default`).
    pub endpoint: Option<String>,
}

/// One L1 node as the broker decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The broker's id for the node; drivers name what they create after it,
    /// so that `list` finds it again after a crash.
    pub id: String,
    /// The controller's VI id (the tunnel key).
    pub vi: u32,
    pub mac: [u8; 6],
    /// Address and prefix on the VI, when the VI hands out static addresses.
    pub ip: Option<(Ipv4Addr, u8)>,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub mtu: u16,
    /// The operator's SSH public key, installed for the node's SSH user.
    pub ssh_authorized_key: Option<String>,
}

/// What a driver made: the names the broker records to find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The OVS port on the PM's bridge that carries the node's NIC.
    pub port: String,
    /// The driver's own handle (namespace name, libvirt domain name).
    pub handle: String,
    /// Whether the node's CPU exposes virtualisation, so the operator's
    /// cloud can run its own guests on it.
    pub nested_virtualization: bool,
}

/// Why a driver could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverError {
    /// `netns`, `libvirt`, ...
    pub driver: &'static str,
    /// What was being done: "create node 3f2…", "delete node …".
    pub action: String,
    pub reason: String,
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} driver: {}: {}",
            self.driver, self.action, self.reason
        )
    }
}

impl std::error::Error for DriverError {}

#[async_trait]
pub trait ComputeDriver: Send + Sync + fmt::Debug {
    /// The name operators use for the driver in a PM's record.
    fn kind(&self) -> &'static str;

    /// The OVS port on the PM's bridge that carries node `node_id`'s NIC
    /// (what `create` returns as [`Created::port`]): where a drain looks
    /// for the guests the controller still places on the node.
    fn port(&self, node_id: &str) -> String;

    /// Creates the node on `pm` and plugs it into the VI. On failure nothing
    /// of the node is left on the PM.
    async fn create(&self, pm: &PmTarget, node: &NodeSpec) -> Result<Created, DriverError>;

    /// Removes the node from `pm`, NIC and OVS port included. Succeeds when
    /// the node is already gone.
    async fn delete(&self, pm: &PmTarget, node_id: &str) -> Result<(), DriverError>;

    /// The ids of the nodes this driver has on `pm`, whoever asked for them:
    /// after a crash the broker deletes what no record owns.
    async fn list(&self, pm: &PmTarget) -> Result<Vec<String>, DriverError>;

    /// Whether this driver moves nodes between its PMs, or why not: asked
    /// before a migration is accepted, so that an operator hears the reason
    /// at once rather than from a failed operation.
    fn can_migrate(&self) -> Result<(), String> {
        Err(format!(
            "the {} driver does not migrate nodes; delete the node and request another on the \
             PM you want",
            self.kind()
        ))
    }

    /// Moves the node from `from` to `to`, and has it announce itself there
    /// so that the controller moves its MAC. On failure the node is left
    /// whole on `from`, nothing of it on `to`. Idempotent, as `create`: a
    /// move a crash interrupted is finished by asking again.
    async fn migrate(
        &self,
        from: &PmTarget,
        to: &PmTarget,
        node: &NodeSpec,
    ) -> Result<Created, DriverError> {
        let _ = (from, to);
        Err(DriverError {
            driver: self.kind(),
            action: format!("migrate node {}", node.id),
            reason: self.can_migrate().err().unwrap_or_default(),
        })
    }
}
