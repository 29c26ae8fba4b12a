//! The underlay network of one emulated data center: a namespace holding a
//! Linux bridge that stands for the DC's physical switch. Every PM plugs one
//! veth into it and gets an address from the underlay's subnet.

use crate::addr::Ipv4Cidr;
use crate::error::{Error, Result};
use crate::link::{Iface, VethPair};
use crate::naming::{NodeName, Prefix};
use crate::netns::Netns;

/// MTU of underlay links. GRE with a key adds 38 bytes (outer Ethernet, IPv4,
/// GRE) to every tenant frame, and the userspace datapath drops encapsulated
/// frames the underlay cannot carry: a 1500-byte VM MTU needs at least 1538
/// here, and a jumbo MTU leaves room for VLAN tags and other encapsulations.
pub const DEFAULT_UNDERLAY_MTU: u32 = 9000;

/// Name of the Linux bridge inside the underlay namespace.
pub const UNDERLAY_SWITCH: &str = "sw0";

/// Role suffix of a node's port on the switch (see [`Prefix::link`]).
const ROLE_SWITCH_PORT: &str = "s";

/// What to build: a name and the subnet PMs take their addresses from.
#[derive(Debug, Clone)]
pub struct UnderlaySpec {
    pub name: String,
    /// PMs get host addresses of this subnet, in order, unless they ask for one.
    pub subnet: Ipv4Cidr,
    pub mtu: u32,
}

impl UnderlaySpec {
    pub fn new(name: &str, subnet: Ipv4Cidr) -> Self {
        Self {
            name: name.to_owned(),
            subnet,
            mtu: DEFAULT_UNDERLAY_MTU,
        }
    }
}

/// A running underlay network.
#[derive(Debug)]
pub struct Underlay {
    pub(crate) name: NodeName,
    pub(crate) netns: Netns,
    subnet: Ipv4Cidr,
    mtu: u32,
    /// Host numbers already given out.
    taken: Vec<u32>,
}

impl Underlay {
    pub(crate) fn create(name: NodeName, netns: Netns, spec: &UnderlaySpec) -> Result<Self> {
        netns.ip(&[
            "link",
            "add",
            UNDERLAY_SWITCH,
            "mtu",
            &spec.mtu.to_string(),
            "type",
            "bridge",
        ])?;
        Iface::new(UNDERLAY_SWITCH, netns.place()).set_up()?;
        Ok(Self {
            name,
            netns,
            subnet: spec.subnet,
            mtu: spec.mtu,
            taken: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Cables `node`'s interface `node_end` to the switch: a veth whose
    /// other end, `<prefix><node>s`, is a port of the bridge.
    pub(crate) fn cable(
        &self,
        prefix: &Prefix,
        node: &NodeName,
        node_end: Iface,
    ) -> Result<VethPair> {
        let switch_end = Iface::new(prefix.link(node, ROLE_SWITCH_PORT)?, self.netns.place());
        let pair = VethPair::create(node_end, switch_end, self.mtu)?;
        pair.b().set_master(UNDERLAY_SWITCH)?;
        Ok(pair)
    }

    /// Reserves an address for a new PM: `wanted` if given (it must be a free
    /// address of the subnet), else the lowest free host number.
    pub(crate) fn lease(&mut self, wanted: Option<std::net::Ipv4Addr>) -> Result<Ipv4Cidr> {
        let n = match wanted {
            Some(addr) => {
                if !self.subnet.contains(addr) {
                    return Err(Error::Usage(format!(
                        "{addr} is outside underlay {}'s subnet {}",
                        self.name, self.subnet
                    )));
                }
                u32::from(addr) - u32::from(self.subnet.network())
            }
            None => (1..).find(|n| !self.taken.contains(n)).unwrap_or(1),
        };
        if self.taken.contains(&n) {
            return Err(Error::Usage(format!(
                "{} is already taken on underlay {}",
                self.subnet.host(n)?,
                self.name
            )));
        }
        let addr = self.subnet.host(n)?;
        self.taken.push(n);
        Ok(addr)
    }

    /// Gives back an address (the PM that had it failed to come up or moved).
    pub(crate) fn release(&mut self, addr: Ipv4Cidr) {
        let n = u32::from(addr.addr()) - u32::from(self.subnet.network());
        self.taken.retain(|&t| t != n);
    }
}
