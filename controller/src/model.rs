//! The nouns of the controller: hosts, virtual infrastructures, VM ports and
//! where a MAC lives. Plain data shared by the registry, the flow compiler, the
//! switch sessions and the northbound API.

use ofp::packet::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

/// A virtual infrastructure's id. It is also what table 0 writes into
/// `metadata`, so it must be non-zero and unique per controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViId(pub u32);

impl ViId {
    /// The largest id a VI may have. Table 0 writes the id into `metadata` and
    /// the flood groups are numbered `id << 1 | direction`, so 24 bits keep
    /// every group id inside the range Iris owns (below 2^25).
    pub const MAX: u32 = 0x00ff_ffff;

    /// Whether the id can be used: non-zero and at most [`ViId::MAX`].
    pub fn is_valid(self) -> bool {
        (1..=Self::MAX).contains(&self.0)
    }
}

impl fmt::Display for ViId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vi{}", self.0)
    }
}

/// A host's unique name (a PM or a gateway node).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(pub String);

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The 802.1Q VLAN a frame carries, or none. Iris never changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vlan {
    Untagged,
    /// A VLAN id, 1..=4094.
    Tagged(u16),
}

impl Vlan {
    /// The VLAN of a frame whose outermost tag carries `vid` (`None`: no
    /// tag). VID 0 (a priority tag) and 4095 are not VLANs Iris keys on.
    pub fn from_vid(vid: Option<u16>) -> Option<Self> {
        match vid {
            None => Some(Vlan::Untagged),
            Some(v @ 1..=4094) => Some(Vlan::Tagged(v)),
            Some(_) => None,
        }
    }

    /// Whether a tagged VLAN's id is in 1..=4094.
    pub fn is_valid(self) -> bool {
        match self {
            Vlan::Untagged => true,
            Vlan::Tagged(v) => (1..=4094).contains(&v),
        }
    }

    /// The value an OXM `vlan_vid` match takes (OFPVID_PRESENT | vid, or OFPVID_NONE).
    pub fn oxm_vid(self) -> u16 {
        match self {
            Vlan::Untagged => 0,
            Vlan::Tagged(v) => 0x1000 | v,
        }
    }
}

impl fmt::Display for Vlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vlan::Untagged => f.write_str("untagged"),
            Vlan::Tagged(v) => write!(f, "vlan{v}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostRole {
    /// A PM carrying L1 VMs.
    Compute,
    /// A data-center gateway node; MACs of the operator's own data center live
    /// "behind" it.
    Gateway,
}

/// A machine whose Open vSwitch Iris manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: HostName,
    /// Where GRE tunnels from the other hosts terminate.
    pub underlay_ip: Ipv4Addr,
    pub role: HostRole,
    /// OVSDB remote, `unix:PATH` or `tcp:IP:PORT`.
    pub ovsdb_remote: String,
    /// The integration bridge's datapath id, which Iris sets through OVSDB so
    /// that an OpenFlow connection can be matched to its host.
    pub datapath_id: u64,
}

/// One IaaS operator's sealed layer-2 world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vi {
    pub id: ViId,
    pub name: String,
    /// The GRE key its traffic carries between hosts (`tun_id`).
    pub gre_key: u32,
    /// Gateway hosts toward the operator's own data center; unknown unicast
    /// and ARP for unknown targets go there. Empty: the VI lives in the HaaS
    /// data center alone and such traffic is flooded within it.
    pub gateways: Vec<HostName>,
}

/// An L1 VM's NIC on a host's integration bridge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmPort {
    pub host: HostName,
    /// The OVS port (and interface) name.
    pub name: String,
    pub ofport: u32,
    /// From `external_ids:iris-vi` on the Interface row.
    pub vi: ViId,
    /// From `external_ids:attached-mac`: the guest NIC's MAC, as libvirt
    /// and the broker's drivers write it.
    pub attached_mac: Option<MacAddr>,
}

/// Where a MAC lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// On a local port of a host's bridge inside the HaaS data center.
    Port { host: HostName, ofport: u32 },
    /// In an operator's data center, reached through this gateway host.
    BehindGateway { gateway: HostName },
}

impl Location {
    /// The host whose bridge reaches it: the port's, or the gateway it is
    /// behind.
    pub fn host(&self) -> &HostName {
        match self {
            Location::Port { host, .. } => host,
            Location::BehindGateway { gateway } => gateway,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Port { host, ofport } => write!(f, "{host}:{ofport}"),
            Location::BehindGateway { gateway } => write!(f, "behind {gateway}"),
        }
    }
}

/// The registry's forwarding key: one operator reuses MACs across VLANs and
/// operators reuse each other's, so all three parts are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacKey {
    pub vi: ViId,
    pub vlan: Vlan,
    pub mac: MacAddr,
}

/// The registry's ARP key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey {
    pub vi: ViId,
    pub vlan: Vlan,
    pub ip: Ipv4Addr,
}

/// Everything the flow compiler needs besides the registry: hosts, VIs, VM
/// ports and the tunnel port numbers each bridge reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub hosts: BTreeMap<HostName, Host>,
    pub vis: BTreeMap<ViId, Vi>,
    /// VM ports by (host, ofport).
    pub vm_ports: BTreeMap<(HostName, u32), VmPort>,
    /// Tunnel ofports: (local host, peer host) -> ofport on the local bridge.
    pub tunnels: BTreeMap<(HostName, HostName), u32>,
    /// VM ports that left their bridge a moment ago, by (host, ofport):
    /// their host stays a member of their VI for a while, so that frames
    /// still sent to their MACs are handed to the controller rather than
    /// dropped (`controller/src/control/parked.rs`).
    pub departed: BTreeMap<(HostName, u32), DepartedPort>,
    /// MACs that left a host a moment ago (a VM port of its bridge, or, on
    /// a gateway, the operator's data center behind it), by that host: it
    /// stays a member of their VIs and sends up what switches that have
    /// not taken the move yet still send it for them (same module).
    pub moved_from: BTreeMap<HostName, BTreeSet<MacKey>>,
}

/// A VM port that left its bridge, and the MACs the registry placed on it
/// when it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartedPort {
    pub vi: ViId,
    pub macs: BTreeSet<MacKey>,
}

/// Why `ip` cannot be a host's own address (a VM's, or a host's underlay
/// address), or `None` when it can. Link-local addresses (169.254/16) are
/// allowed: a VM may answer for one (a metadata service, say) and hosts on
/// one segment may tunnel over them.
pub fn host_address_problem(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else {
        None
    }
}

/// Whether `ofport` can number a VM port: 1 up to, not including,
/// `OFPP_MAX` (0xffffff00); 0 is no port at all, and `OFPP_MAX` and above
/// are reserved (`OFPP_IN_PORT`, `OFPP_LOCAL`, `OFPP_ANY` and the like).
pub fn is_port_number(ofport: u32) -> bool {
    (1..ofp::action::port::MAX).contains(&ofport)
}
