//! An IaaS data center as CloudStack's KVM agent builds one with its
//! default Linux-bridge networking: a DC LAN carrying 802.1Q-tagged guest
//! traffic, compute nodes whose trunk NIC (`eth0`) has one VLAN
//! sub-interface `eth0.<vid>` per guest network, each enslaved to a Linux
//! bridge `breth0-<vid>` that the guests' NICs are plugged into untagged.
//!
//! ```text
//!  <p>-<lan>   [sw0] Linux bridge: the DC LAN, forwards tagged frames as they are
//!                │ veth <p><cn>s ↔ eth0 (trunk)
//!  <p>-<cn>    eth0 ─ [cloudbr0] ─ eth0.100 (tag=100) ─ [breth0-100] ─ VM NICs
//!                                └ eth0.200 (tag=200) ─ [breth0-200] ─ VM NICs
//! ```
//!
//! The DC LAN is an [`crate::Underlay`]: a Linux bridge without VLAN
//! filtering forwards 802.1Q frames untouched.
//!
//! The kernel the testbed was developed on has no 802.1Q (docs/testbed.md,
//! finding 5), so `ip link add link eth0 name eth0.100 type vlan` fails.
//! The sub-interfaces are therefore OVS internal ports of a standalone
//! netdev bridge `cloudbr0` in the compute node's own vswitchd: an access
//! port `tag=<vid>` on a bridge whose other port is the trunk is what a
//! VLAN device is to the kernel, an interface of untagged frames of one
//! VLAN. As for VMs' VLAN interfaces, the same path is used on every
//! kernel, so the IaaS DC behaves alike everywhere.

use crate::error::Result;
use crate::link::Iface;
use crate::link::VethPair;
use crate::naming::{NodeName, Prefix};
use crate::netns::Netns;
use crate::ovs::OvsInstance;
use crate::underlay::Underlay;

/// The compute node's trunk NIC, inside its namespace.
pub const COMPUTE_TRUNK: &str = "eth0";
/// The OVS bridge standing in for the kernel's 802.1Q (see the module
/// documentation); `cloudbr0` is CloudStack's name for a KVM host's bridge.
pub const COMPUTE_BRIDGE: &str = "cloudbr0";

/// What to build: a compute node on an IaaS DC's LAN.
#[derive(Debug, Clone)]
pub struct ComputeSpec {
    pub name: String,
    pub lan: crate::UnderlayId,
}

impl ComputeSpec {
    pub fn new(name: &str, lan: crate::UnderlayId) -> Self {
        Self {
            name: name.to_owned(),
            lan,
        }
    }
}

/// A running compute node.
#[derive(Debug)]
pub struct ComputeNode {
    pub(crate) name: NodeName,
    lan: crate::UnderlayId,
    // Field order is drop order: OVS before links before the namespace.
    pub(crate) ovs: OvsInstance,
    pub(crate) links: Vec<VethPair>,
    pub(crate) netns: Netns,
}

impl ComputeNode {
    pub(crate) fn create(
        prefix: &Prefix,
        name: NodeName,
        netns: Netns,
        ovs: OvsInstance,
        lan: &Underlay,
        spec: &ComputeSpec,
    ) -> Result<Self> {
        let cable = lan.cable(prefix, &name, Iface::new(COMPUTE_TRUNK, netns.place()))?;
        ovs.vsctl(&[
            "add-br",
            COMPUTE_BRIDGE,
            "--",
            "set",
            "Bridge",
            COMPUTE_BRIDGE,
            "datapath_type=netdev",
            "fail_mode=standalone",
            "--",
            "add-port",
            COMPUTE_BRIDGE,
            COMPUTE_TRUNK,
        ])?;
        Ok(Self {
            name,
            lan: spec.lan,
            ovs,
            links: vec![cable],
            netns,
        })
    }

    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    pub fn ovs(&self) -> &OvsInstance {
        &self.ovs
    }

    /// The DC LAN the node's trunk is cabled to.
    pub fn lan(&self) -> crate::UnderlayId {
        self.lan
    }

    /// The VLAN sub-interface of `vid`: `eth0.<vid>`.
    pub fn vlan_interface(vid: u16) -> String {
        format!("{COMPUTE_TRUNK}.{vid}")
    }

    /// The Linux bridge of guest VLAN `vid`: `breth0-<vid>`.
    pub fn vlan_bridge(vid: u16) -> String {
        format!("br{COMPUTE_TRUNK}-{vid}")
    }

    /// The Linux bridge of VLAN `vid`, with its sub-interface, created on
    /// first use, as the agent does when a node gets its first guest on a
    /// network.
    pub(crate) fn vlan_bridge_for(&self, vid: u16) -> Result<String> {
        crate::vm::check_vid(vid)?;
        let bridge = Self::vlan_bridge(vid);
        if self.netns.ip(&["link", "show", "dev", &bridge]).is_ok() {
            return Ok(bridge);
        }
        let sub = Self::vlan_interface(vid);
        let tag = format!("tag={vid}");
        self.ovs.vsctl(&[
            "add-port",
            COMPUTE_BRIDGE,
            &sub,
            "--",
            "set",
            "Interface",
            &sub,
            "type=internal",
            "--",
            "set",
            "Port",
            &sub,
            &tag,
        ])?;
        let sub = Iface::new(sub, self.netns.place());
        sub.disable_offloads()?;
        // Forward at once: no STP listening delay on a fresh port.
        self.netns.ip(&[
            "link",
            "add",
            &bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ])?;
        sub.set_master(&bridge)?;
        sub.set_up()?;
        Iface::new(&bridge, self.netns.place()).set_up()?;
        Ok(bridge)
    }

    /// Runs `argv` inside the node's namespace. Returns stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        self.netns.run(argv)
    }
}
