//! An emulated VM: a namespace whose interface is plugged into a PM's
//! integration bridge, with a MAC, an IPv4 address and the VI it belongs to.
//!
//! The VM's namespace outlives its attachment: moving a VM to another PM
//! replaces only the link, so processes inside the VM keep running, as they do
//! across a live migration.
//!
//! VLAN interfaces: kernels built without 802.1Q (`8021q`) and bridge VLAN
//! filtering, like the one the testbed was developed on, cannot tag frames in
//! a namespace. A VM with VLAN interfaces therefore gets one untagged veth per
//! VLAN plus a small "tagging" bridge in the PM's own vswitchd, which tags
//! each VLAN interface's frames (access port, `tag=<vid>`), leaves the main
//! interface untagged (`trunks=0`), and hands the resulting trunk to `br-int`
//! over a patch port, as a guest's own VLAN stack would. The same path is used
//! on every kernel, so scenarios behave alike everywhere.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::addr::{Ipv4Cidr, MacAddr};
use crate::error::{Error, Result};
use crate::iaas::ComputeNode;
use crate::link::{Iface, Place, VethPair};
use crate::naming::{NodeName, Prefix};
use crate::netns::Netns;
use crate::ping::{PingReport, PING_REPLY_TIMEOUT};
use crate::pm::{Pm, INTEGRATION_BRIDGE};
use crate::readiness::{poll_until, Probe};
use ofp::packet::ArpRepr;

/// MTU of VM interfaces, the usual Ethernet payload size.
pub const VM_MTU: u32 = 1500;

/// How long each attempt of [`Vm::wait_reachable`] waits for its reply: short,
/// so that a first request lost to neighbour resolution costs little.
const PROBE_REPLY_TIMEOUT: Duration = Duration::from_millis(250);

const ROLE_VM_MAIN: &str = "e";
const ROLE_PORT: &str = "p";
const ROLE_NATIVE: &str = "n";
const ROLE_TAG_BRIDGE: &str = "t";
const ROLE_TAG_PATCH: &str = "x";
const ROLE_VLAN_VM: &str = "e";
const ROLE_VLAN_PM: &str = "q";

/// How long a compute node's bridge port may take to forward.
const PORT_FORWARDING_TIMEOUT: Duration = Duration::from_secs(3);

/// Most VLAN interfaces per VM (the index is part of interface names).
pub const MAX_VLANS: usize = 100;

/// One VLAN interface of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanSpec {
    pub vid: u16,
    pub ip: Ipv4Cidr,
    /// By default the VM's own MAC, as a Linux VLAN sub-interface would have.
    pub mac: Option<MacAddr>,
}

/// Where a VM is plugged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// A HaaS PM: a port of its `br-int`.
    Pm(crate::PmId),
    /// A compute node of an IaaS DC: a port of the Linux bridge of the VM's
    /// VLAN ([`VmSpec::on_compute`]).
    Compute(crate::ComputeId),
}

impl From<crate::PmId> for Host {
    fn from(id: crate::PmId) -> Self {
        Self::Pm(id)
    }
}

impl From<crate::ComputeId> for Host {
    fn from(id: crate::ComputeId) -> Self {
        Self::Compute(id)
    }
}

/// A host to plug a VM into, borrowed from its testbed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plug<'a> {
    Pm(&'a Pm),
    Compute(&'a ComputeNode),
}

/// What to build.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    pub host: Host,
    /// The VLAN of the VM's main interface, which the guest sees untagged:
    /// the host tags it (an IaaS guest network, [`VmSpec::on_compute`]).
    pub access_vlan: Option<u16>,
    pub mac: MacAddr,
    pub ip: Ipv4Cidr,
    /// The virtual infrastructure the VM belongs to; recorded on its `br-int`
    /// port as `external_ids:iris-vi`.
    pub vi: u32,
    pub vlans: Vec<VlanSpec>,
}

impl VmSpec {
    pub fn new(name: &str, pm: crate::PmId, vi: u32, mac: MacAddr, ip: Ipv4Cidr) -> Self {
        Self {
            name: name.to_owned(),
            host: Host::Pm(pm),
            access_vlan: None,
            mac,
            ip,
            vi,
            vlans: Vec::new(),
        }
    }

    /// A guest of an IaaS DC on compute node `compute`, its NIC on guest
    /// network VLAN `vid`; `vi` is the Iris VI that VLAN belongs to, which
    /// its port carries once the VM moves to a HaaS PM.
    pub fn on_compute(
        name: &str,
        compute: crate::ComputeId,
        vid: u16,
        vi: u32,
        mac: MacAddr,
        ip: Ipv4Cidr,
    ) -> Self {
        Self {
            name: name.to_owned(),
            host: Host::Compute(compute),
            access_vlan: Some(vid),
            mac,
            ip,
            vi,
            vlans: Vec::new(),
        }
    }

    pub fn vlan(mut self, vid: u16, ip: Ipv4Cidr) -> Self {
        self.vlans.push(VlanSpec { vid, ip, mac: None });
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.vlans.len() > MAX_VLANS {
            return Err(Error::Usage(format!(
                "VM {} has {} VLAN interfaces; at most {MAX_VLANS} are supported",
                self.name,
                self.vlans.len()
            )));
        }
        for (i, vlan) in self.vlans.iter().enumerate() {
            if self.vlans[..i]
                .iter()
                .any(|earlier| earlier.vid == vlan.vid)
            {
                return Err(Error::Usage(format!(
                    "VM {} has VLAN {} twice",
                    self.name, vlan.vid
                )));
            }
        }
        for vid in self.vlans.iter().map(|v| v.vid).chain(self.access_vlan) {
            check_vid(vid).map_err(|e| Error::Usage(format!("VM {}: {e}", self.name)))?;
        }
        if self.access_vlan.is_some() && !self.vlans.is_empty() {
            return Err(Error::Usage(format!(
                "VM {} is on a VLAN and cannot also have VLAN interfaces",
                self.name
            )));
        }
        Ok(())
    }
}

/// A VLAN id a tag can carry: 1 to 4094.
pub(crate) fn check_vid(vid: u16) -> Result<()> {
    if (1..=4094).contains(&vid) {
        Ok(())
    } else {
        Err(Error::Usage(format!("VLAN id {vid} is outside 1..=4094")))
    }
}

/// Interfaces and OVS configuration that plug a VM into one PM.
#[derive(Debug)]
struct Attachment {
    links: Vec<VethPair>,
    /// The tagging bridge, when the VM has VLAN interfaces.
    tag_bridge: Option<String>,
}

/// A running emulated VM.
#[derive(Debug)]
pub struct Vm {
    pub(crate) name: NodeName,
    pub(crate) host: Host,
    access_vlan: Option<u16>,
    mac: MacAddr,
    ip: Ipv4Cidr,
    vi: u32,
    vlans: Vec<VlanSpec>,
    interface: String,
    vlan_interfaces: Vec<String>,
    port: String,
    attachment: Option<Attachment>,
    pub(crate) netns: Netns,
}

impl Vm {
    pub(crate) fn create(
        prefix: &Prefix,
        name: NodeName,
        netns: Netns,
        spec: &VmSpec,
    ) -> Result<Self> {
        spec.validate()?;
        Ok(Self {
            interface: prefix.link(&name, ROLE_VM_MAIN)?,
            vlan_interfaces: (0..spec.vlans.len())
                .map(|index| prefix.link(&name, &format!("{ROLE_VLAN_VM}{index}")))
                .collect::<Result<_>>()?,
            port: prefix.link(&name, ROLE_PORT)?,
            name,
            host: spec.host,
            access_vlan: spec.access_vlan,
            mac: spec.mac,
            ip: spec.ip,
            vi: spec.vi,
            vlans: spec.vlans.clone(),
            attachment: None,
            netns,
        })
    }

    /// Whether the VM can be plugged into `host`: a compute node takes
    /// only VMs on a VLAN. Checked before a move unplugs anything.
    pub(crate) fn check_host(&self, host: Plug) -> Result<()> {
        match host {
            Plug::Pm(_) => Ok(()),
            Plug::Compute(_) => self.compute_vlan().map(drop),
        }
    }

    /// The VLAN whose bridge the VM joins on a compute node.
    fn compute_vlan(&self) -> Result<u16> {
        self.access_vlan.ok_or_else(|| {
            Error::Usage(format!(
                "VM {} has no VLAN; a compute node plugs guests into a VLAN's bridge \
                 (VmSpec::on_compute)",
                self.name
            ))
        })
    }

    /// Plugs the VM into `host`.
    pub(crate) fn attach(&mut self, prefix: &Prefix, host: Plug) -> Result<()> {
        if self.attachment.is_some() {
            return Err(Error::Usage(format!(
                "VM {} is already attached",
                self.name
            )));
        }
        match host {
            Plug::Pm(pm) => self.attach_pm(prefix, pm),
            Plug::Compute(node) => self.attach_compute(node),
        }
    }

    /// Plugs the VM into the Linux bridge of its VLAN on `node`.
    fn attach_compute(&mut self, node: &ComputeNode) -> Result<()> {
        let vid = self.compute_vlan()?;
        let bridge = node.vlan_bridge_for(vid)?;
        let link = self.vm_link(
            &self.interface,
            &self.port,
            node.netns().place(),
            self.mac,
            self.ip,
        )?;
        link.b().set_master(&bridge)?;
        self.attachment = Some(Attachment {
            links: vec![link],
            tag_bridge: None,
        });
        // A new bridge port forwards only once the kernel's link watch saw
        // its carrier, up to a second later, and until it saw the guest's
        // end, that end's queue discards what is sent: either way the
        // RARP announcing the guest would be lost.
        let port = Iface::new(self.port.clone(), node.netns().place());
        let nic = Iface::new(self.interface.clone(), self.netns.place());
        poll_until(
            &format!("port {} of {bridge} forwarding", self.port),
            PORT_FORWARDING_TIMEOUT,
            || {
                let port_state = port.ip(&["-d", "-o", "link", "show", "dev", &port.name])?;
                let nic_state = nic.ip(&["-o", "link", "show", "dev", &nic.name])?;
                Ok(
                    if port_state.contains("state forwarding")
                        && nic_state.contains("state UP")
                        && !nic_state.contains("qdisc noop")
                    {
                        Probe::Ready(())
                    } else {
                        Probe::NotYet(format!("{port_state}\n{nic_state}"))
                    },
                )
            },
        )
    }

    /// Plugs the VM into `pm`'s `br-int`.
    fn attach_pm(&mut self, prefix: &Prefix, pm: &Pm) -> Result<()> {
        let mut links = Vec::new();
        let direct = self.vlans.is_empty() && self.access_vlan.is_none();
        let pm_end = if direct {
            self.port.clone()
        } else {
            prefix.link(&self.name, ROLE_NATIVE)?
        };
        links.push(self.vm_link(
            &self.interface,
            &pm_end,
            pm.netns().place(),
            self.mac,
            self.ip,
        )?);
        let (bridge, patch) = if direct {
            (None, None)
        } else {
            (
                Some(prefix.link(&self.name, ROLE_TAG_BRIDGE)?),
                Some(prefix.link(&self.name, ROLE_TAG_PATCH)?),
            )
        };
        let mut vlan_ports = Vec::new();
        for (index, vlan) in self.vlans.iter().enumerate() {
            let vm_end = &self.vlan_interfaces[index];
            let pm_end = prefix.link(&self.name, &format!("{ROLE_VLAN_PM}{index}"))?;
            let mac = vlan.mac.unwrap_or(self.mac);
            links.push(self.vm_link(vm_end, &pm_end, pm.netns().place(), mac, vlan.ip)?);
            vlan_ports.push((pm_end, format!("tag={}", vlan.vid)));
        }

        // One ovs-vsctl transaction: the tagging bridge if any, then the
        // br-int port carrying the VM's identity.
        let mut args: Vec<String> = Vec::new();
        let mut push = |words: &[&str]| args.extend(words.iter().map(|w| (*w).to_owned()));
        if let (Some(bridge), Some(patch)) = (&bridge, &patch) {
            // The main interface is untagged, unless the VM's network is a
            // VLAN, which the host tags.
            let main = self
                .access_vlan
                .map_or_else(|| "trunks=0".to_owned(), |vid| format!("tag={vid}"));
            push(&["--", "add-br", bridge, "--", "set", "Bridge", bridge]);
            push(&["datapath_type=netdev", "fail_mode=standalone"]);
            push(&[
                "--", "add-port", bridge, &pm_end, "--", "set", "Port", &pm_end, &main,
            ]);
            for (port, tag) in &vlan_ports {
                push(&[
                    "--", "add-port", bridge, port, "--", "set", "Port", port, tag,
                ]);
            }
            push(&[
                "--",
                "add-port",
                bridge,
                patch,
                "--",
                "set",
                "Interface",
                patch,
            ]);
            push(&["type=patch", &format!("options:peer={}", self.port)]);
        }
        push(&["--", "add-port", INTEGRATION_BRIDGE, &self.port]);
        push(&["--", "set", "Interface", &self.port]);
        if let Some(patch) = &patch {
            push(&["type=patch", &format!("options:peer={patch}")]);
        }
        push(&[
            &format!("external_ids:iris-vi={}", self.vi),
            &format!("external_ids:iris-vm={}", self.name),
            &format!("external_ids:attached-mac={}", self.mac),
        ]);
        pm.vsctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        self.attachment = Some(Attachment {
            links,
            tag_bridge: bridge,
        });
        Ok(())
    }

    /// A veth from this VM (`vm_end`, configured with `mac` and `ip`) into
    /// its host (`host_end` at `host`).
    fn vm_link(
        &self,
        vm_end: &str,
        host_end: &str,
        host: Place,
        mac: MacAddr,
        ip: Ipv4Cidr,
    ) -> Result<VethPair> {
        let pair = VethPair::create(
            Iface::new(vm_end, self.netns.place()),
            Iface::new(host_end, host),
            VM_MTU,
        )?;
        pair.a().set_mac(mac)?;
        pair.a().add_addr(ip)?;
        Ok(pair)
    }

    /// Unplugs the VM from `host`: on a PM, removes its ports (and tagging
    /// bridge) from OVS; then deletes its links (a Linux bridge's port goes
    /// with its veth).
    pub(crate) fn detach(&mut self, host: Plug) -> Result<()> {
        let Some(mut attachment) = self.attachment.take() else {
            return Ok(());
        };
        if let Plug::Pm(pm) = host {
            let mut args = vec!["--if-exists", "del-port", INTEGRATION_BRIDGE, &self.port];
            if let Some(bridge) = &attachment.tag_bridge {
                args.extend(["--", "--if-exists", "del-br", bridge]);
            }
            pm.vsctl(&args)?;
        }
        for link in &mut attachment.links {
            link.delete()?;
        }
        Ok(())
    }

    /// Deletes the VM's links without touching OVS (the PM's OVS is gone or
    /// going). Idempotent.
    pub(crate) fn delete_links(&mut self) -> Result<()> {
        if let Some(attachment) = &mut self.attachment {
            for link in &mut attachment.links {
                link.delete()?;
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Where the VM is plugged in.
    pub fn host(&self) -> Host {
        self.host
    }

    /// The PM the VM is attached to.
    ///
    /// Panics for a VM on a compute node, like a handle used with the
    /// wrong testbed: the PM-only code that asks knows its VMs are on PMs;
    /// anything else asks [`Vm::host`].
    pub fn pm(&self) -> crate::PmId {
        match self.host {
            Host::Pm(pm) => pm,
            Host::Compute(_) => panic!("VM {} is on a compute node, not a PM", self.name),
        }
    }

    /// The VLAN of the VM's main interface, tagged by its host.
    pub fn access_vlan(&self) -> Option<u16> {
        self.access_vlan
    }

    /// Sends one RARP from the VM's main interface, as QEMU announces a
    /// migrated guest, so that switches relearn its MAC on the new port.
    pub fn announce(&self) -> Result<Instant> {
        let mut frame = Vec::new();
        ArpRepr::rarp_announce(ofp::packet::MacAddr(self.mac.0)).emit(&mut frame);
        let sent =
            crate::frames::send_frames(&self.netns, &self.interface, &[(Duration::ZERO, frame)])?;
        sent.first()
            .copied()
            .ok_or_else(|| Error::Usage("no frame was sent".into()))
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    pub fn ip(&self) -> Ipv4Cidr {
        self.ip
    }

    pub fn vi(&self) -> u32 {
        self.vi
    }

    pub fn vlans(&self) -> &[VlanSpec] {
        &self.vlans
    }

    /// The VM's interface for VLAN `vid`, inside its namespace.
    pub fn vlan_interface(&self, vid: u16) -> Option<&str> {
        self.vlans
            .iter()
            .position(|v| v.vid == vid)
            .map(|index| self.vlan_interfaces[index].as_str())
    }

    /// The VM's main interface, inside its namespace.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The VM's port on the PM's `br-int` (a veth end, or a patch port when
    /// the VM has VLAN interfaces).
    pub fn port(&self) -> &str {
        &self.port
    }

    /// Runs `argv` inside the VM. Returns stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        self.netns.run(argv)
    }

    /// Sends `count` echo requests to `dst`, `interval` apart, and reports
    /// what came back (each reply is awaited up to
    /// [`PING_REPLY_TIMEOUT`]). Lost replies are not an error; a ping that
    /// cannot run at all (no route, bad arguments) is.
    pub fn ping(&self, dst: Ipv4Addr, count: u32, interval: Duration) -> Result<PingReport> {
        crate::ping::ping_from(&self.netns, dst, count, interval, PING_REPLY_TIMEOUT)
    }

    /// Pings `dst` once per attempt until a reply comes back; returns how long
    /// that took. For waiting out convergence (tunnel neighbour resolution,
    /// MAC learning, a controller installing flows) without a fixed sleep.
    pub fn wait_reachable(&self, dst: Ipv4Addr, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        poll_until(&format!("{dst} from VM {}", self.name), timeout, || {
            let interval = Duration::from_millis(200);
            let report =
                crate::ping::ping_from(&self.netns, dst, 1, interval, PROBE_REPLY_TIMEOUT)?;
            Ok(if report.received > 0 {
                Probe::Ready(start.elapsed())
            } else {
                Probe::NotYet(format!("{report:?}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        let ip = "10.0.0.1/24".parse().unwrap();
        VmSpec::new("vm1", crate::PmId(0), 7, MacAddr::local(1), ip)
    }

    #[test]
    fn a_guest_of_a_compute_node_has_one_valid_vlan_and_no_vlan_interfaces() {
        let ip: Ipv4Cidr = "10.1.0.1/24".parse().unwrap();
        let node = crate::ComputeId(0);
        let guest = |vid| VmSpec::on_compute("vm1", node, vid, 1, MacAddr::local(1), ip);
        assert!(guest(100).validate().is_ok());
        assert!(guest(0).validate().is_err());
        assert!(guest(4095).validate().is_err());
        assert!(guest(100).vlan(10, ip).validate().is_err());
    }

    #[test]
    fn vlan_ids_must_be_valid_and_distinct() {
        let ip: Ipv4Cidr = "10.10.0.1/24".parse().unwrap();
        assert!(spec().vlan(10, ip).vlan(20, ip).validate().is_ok());
        assert!(spec().vlan(10, ip).vlan(10, ip).validate().is_err());
        assert!(spec().vlan(0, ip).validate().is_err());
        assert!(spec().vlan(4095, ip).validate().is_err());
        assert!(spec().vlan(4094, ip).validate().is_ok());
        let many = (1..=MAX_VLANS as u16 + 1).fold(spec(), |s, vid| s.vlan(vid, ip));
        assert!(many.validate().is_err());
    }
}
