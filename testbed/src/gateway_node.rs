//! Gateway nodes: where a data center meets the WAN, and where
//! `iris-gateway` runs.
//!
//! ```text
//!  HaaS DC: a PM built with PmSpec::wan_uplink          IaaS DC: an IaasGateway
//!   [br-int] (controller's) ·· GRE ··┐                   [br-gw] (the gateway's own) ·· GRE ··┐
//!   [br-ul] ── underlay               │                    trunk ── DC LAN (802.1Q)           │
//!   [br-wan] ── WAN cable(s) <────────┘                    [br-wan] ── WAN cable <────────────┘
//! ```
//!
//! Each gateway node has an address on the WAN. The userspace datapath
//! routes GRE by OVS's own route table and sends the outer packet only out
//! of an OVS port (docs/testbed.md, finding 2), so that address lives on
//! `br-wan`, a netdev bridge whose ports are the node's WAN cables, as a
//! PM's underlay address lives on `br-ul`. A HaaS gateway node with WANs
//! to several IaaS DCs has one cable per WAN in its `br-wan`.
//!
//! The IaaS gateway node runs an OVS instance like a PM's and nothing else:
//! its trunk into the DC LAN stays an unconfigured interface, which
//! `iris-gateway` adds to the bridge it builds (`br-gw`), and speaks
//! OpenFlow to that bridge on `<run dir>/br-gw.mgmt`.

use std::path::{Path, PathBuf};

use crate::addr::Ipv4Cidr;
use crate::error::Result;
use crate::link::{Iface, VethPair};
use crate::naming::{NodeName, Prefix};
use crate::netns::Netns;
use crate::ovs::OvsInstance;
use crate::underlay::Underlay;
use crate::wan::WAN_MTU;

/// The bridge holding a gateway node's WAN cables and its WAN address.
pub const WAN_BRIDGE: &str = "br-wan";
/// The bridge `iris-gateway` builds on an IaaS gateway node (its default).
pub const GATEWAY_BRIDGE: &str = "br-gw";

/// Role suffix of an IaaS gateway's trunk (see [`Prefix::link`]).
const ROLE_TRUNK: &str = "t";

/// Gives a gateway node's OVS instance its `br-wan` with `addr`; cables
/// join it later ([`plug_wan`]).
pub(crate) fn add_wan_bridge(ovs: &OvsInstance, netns: &Netns, addr: Ipv4Cidr) -> Result<()> {
    ovs.add_address_bridge(netns, WAN_BRIDGE, WAN_MTU, addr, &[])
}

/// Makes a WAN cable's end a port of the node's `br-wan`.
pub(crate) fn plug_wan(ovs: &OvsInstance, port: &str) -> Result<()> {
    ovs.vsctl(&["add-port", WAN_BRIDGE, port]).map(drop)
}

/// What to build: an IaaS DC's gateway node.
#[derive(Debug, Clone)]
pub struct IaasGatewaySpec {
    pub name: String,
    /// The DC LAN the trunk is cabled to.
    pub lan: crate::UnderlayId,
    /// The node's address on the WAN.
    pub wan_addr: Ipv4Cidr,
}

impl IaasGatewaySpec {
    pub fn new(name: &str, lan: crate::UnderlayId, wan_addr: Ipv4Cidr) -> Self {
        Self {
            name: name.to_owned(),
            lan,
            wan_addr,
        }
    }
}

/// A running IaaS gateway node.
#[derive(Debug)]
pub struct IaasGateway {
    pub(crate) name: NodeName,
    lan: crate::UnderlayId,
    wan_addr: Ipv4Cidr,
    trunk: String,
    // Field order is drop order: OVS before links before the namespace.
    pub(crate) ovs: OvsInstance,
    pub(crate) links: Vec<VethPair>,
    pub(crate) netns: Netns,
}

impl IaasGateway {
    pub(crate) fn create(
        prefix: &Prefix,
        name: NodeName,
        netns: Netns,
        ovs: OvsInstance,
        lan: &Underlay,
        spec: &IaasGatewaySpec,
    ) -> Result<Self> {
        let trunk = prefix.link(&name, ROLE_TRUNK)?;
        let cable = lan.cable(prefix, &name, Iface::new(&trunk, netns.place()))?;
        add_wan_bridge(&ovs, &netns, spec.wan_addr)?;
        Ok(Self {
            name,
            lan: spec.lan,
            wan_addr: spec.wan_addr,
            trunk,
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

    /// The DC LAN the trunk is cabled to.
    pub fn lan(&self) -> crate::UnderlayId {
        self.lan
    }

    /// The node's address on the WAN (on `br-wan`), the gateway's GRE
    /// `local_ip`.
    pub fn wan_addr(&self) -> Ipv4Cidr {
        self.wan_addr
    }

    /// The DC-side trunk interface (up, offloads off, in no bridge), the
    /// gateway's `trunk` setting.
    pub fn trunk(&self) -> &str {
        &self.trunk
    }

    /// The OVSDB remote (`unix:<run dir>/db.sock`).
    pub fn ovsdb_target(&self) -> String {
        self.ovs.db_target()
    }

    /// The OVS run directory, where vswitchd opens `<bridge>.mgmt`.
    pub fn run_dir(&self) -> &Path {
        self.ovs.dir()
    }

    /// The OpenFlow management socket of `bridge` (e.g.
    /// [`GATEWAY_BRIDGE`]), present once the bridge exists.
    pub fn mgmt_socket(&self, bridge: &str) -> PathBuf {
        self.ovs.bridge_mgmt_socket(bridge)
    }

    /// Runs `argv` inside the node's namespace. Returns stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        self.netns.run(argv)
    }
}
