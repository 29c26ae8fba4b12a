//! An emulated physical machine (PM): a namespace with its own OVS instance,
//! an integration bridge for VMs and an underlay bridge carrying its address
//! on the DC's underlay network.
//!
//! ```text
//!   VM ports ──┐                          PM namespace
//!          [br-int] ··GRE (OVS native tunnelling)··> routed via [br-ul] ── underlay veth ──> DC switch
//! ```
//!
//! The underlay address sits on `br-ul`, an OVS bridge holding the underlay
//! veth, and not on the veth itself: the userspace datapath sends tunnel
//! packets only out of an OVS bridge port, and with the address on a plain
//! interface `ofproto/trace` reports "native tunnel routing failed".

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use crate::addr::Ipv4Cidr;
use crate::error::{Error, Result};
use crate::link::{Iface, Place, VethPair};
use crate::naming::{NodeName, Prefix};
use crate::netns::Netns;
use crate::ovs::OvsInstance;
use crate::ping::{PingReport, PING_REPLY_TIMEOUT};
use crate::underlay::Underlay;

/// The bridge VMs attach to, and the one a controller programs.
pub const INTEGRATION_BRIDGE: &str = "br-int";
/// The bridge holding the PM's underlay interface and address.
pub const UNDERLAY_BRIDGE: &str = "br-ul";
/// Name of the symlink in the PM's OVS directory through which vswitchd
/// reaches a controller's unix socket (see [`Pm::link_controller_socket`]).
pub const CONTROLLER_SOCKET_LINK: &str = "iris-controller.sock";

/// Interface role suffixes (see [`Prefix::link`]).
const ROLE_UNDERLAY: &str = "u";
const ROLE_MGMT_PM: &str = "m";
const ROLE_MGMT_ROOT: &str = "r";

/// What vswitchd does with `br-int` while no controller is connected
/// (`Bridge:fail_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Forward only by the flows installed; what Iris runs in production.
    Secure,
    /// Fall back to a learning switch; handy before a controller exists.
    Standalone,
}

impl FailMode {
    fn as_ovs(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Standalone => "standalone",
        }
    }
}

/// Who carries the PM's own traffic on the underlay
/// ([`Pm::set_underlay_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderlayPath {
    /// The address on `br-ul`, the interface its port: what OVS's GRE needs.
    Ovs,
    /// The address on the interface, which no bridge holds.
    Kernel,
}

/// A point-to-point link from the root namespace into a PM, so that a
/// controller listening on TCP in the root namespace is reachable at `root`'s
/// address. Both addresses are the caller's choice; they must not clash with
/// the host's own networks nor with another testbed's management links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagementSpec {
    pub root: Ipv4Cidr,
    pub pm: Ipv4Cidr,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct PmSpec {
    pub name: String,
    pub underlay: crate::UnderlayId,
    /// Underlay address; by default the lowest free host of the underlay's subnet.
    pub underlay_ip: Option<Ipv4Addr>,
    pub fail_mode: FailMode,
    /// Also serve OVSDB on TCP at the underlay address (`ptcp:<port>:<ip>`),
    /// as a real PM's OVSDB is reached over the network.
    pub ovsdb_tcp_port: Option<u16>,
    /// `br-int`'s datapath id; OVS derives one from a MAC address otherwise.
    pub datapath_id: Option<u64>,
    pub management: Option<ManagementSpec>,
    /// `Open_vSwitch` `other_config` keys set before vswitchd starts (e.g.
    /// `userspace-tso-enable`, read only at startup).
    pub other_config: Vec<(String, String)>,
    /// The PM's address on the WAN, for the HaaS DC's gateway node: its
    /// `br-wan` takes the WANs' cables (see [`crate::gateway_node`]).
    pub wan: Option<Ipv4Cidr>,
}

impl PmSpec {
    /// A PM on `underlay` with defaults: next free underlay address,
    /// `fail_mode=secure`, OVSDB on the unix socket only.
    pub fn new(name: &str, underlay: crate::UnderlayId) -> Self {
        Self {
            name: name.to_owned(),
            underlay,
            underlay_ip: None,
            fail_mode: FailMode::Secure,
            ovsdb_tcp_port: None,
            datapath_id: None,
            management: None,
            other_config: Vec::new(),
            wan: None,
        }
    }

    pub fn underlay_ip(mut self, ip: Ipv4Addr) -> Self {
        self.underlay_ip = Some(ip);
        self
    }

    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    pub fn ovsdb_tcp_port(mut self, port: u16) -> Self {
        self.ovsdb_tcp_port = Some(port);
        self
    }

    pub fn datapath_id(mut self, dpid: u64) -> Self {
        self.datapath_id = Some(dpid);
        self
    }

    /// Sets `other_config:<key>=<value>` on the PM's `Open_vSwitch` row
    /// before its vswitchd starts.
    pub fn other_config(mut self, key: &str, value: &str) -> Self {
        self.other_config.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Makes the PM a gateway node with `addr` on the WAN.
    pub fn wan_uplink(mut self, addr: Ipv4Cidr) -> Self {
        self.wan = Some(addr);
        self
    }

    pub fn management(mut self, root: Ipv4Cidr, pm: Ipv4Cidr) -> Self {
        self.management = Some(ManagementSpec { root, pm });
        self
    }
}

/// A running emulated PM.
#[derive(Debug)]
pub struct Pm {
    pub(crate) name: NodeName,
    pub(crate) underlay: crate::UnderlayId,
    underlay_addr: Ipv4Cidr,
    /// The PM's end of its underlay veth, a port of `br-ul`.
    underlay_port: String,
    ovsdb_tcp: Option<SocketAddrV4>,
    management: Option<ManagementSpec>,
    wan_addr: Option<Ipv4Cidr>,
    // Field order is drop order: OVS before links before the namespace.
    pub(crate) ovs: OvsInstance,
    pub(crate) links: Vec<VethPair>,
    pub(crate) netns: Netns,
}

impl Pm {
    /// Builds the PM around a namespace and the OVS instance running in it.
    pub(crate) fn create(
        prefix: &Prefix,
        name: NodeName,
        netns: Netns,
        ovs: OvsInstance,
        underlay: &Underlay,
        underlay_addr: Ipv4Cidr,
        spec: &PmSpec,
    ) -> Result<Self> {
        let mut pm = Self {
            underlay: spec.underlay,
            underlay_addr,
            underlay_port: prefix.link(&name, ROLE_UNDERLAY)?,
            ovsdb_tcp: None,
            management: spec.management,
            wan_addr: spec.wan,
            ovs,
            links: Vec::new(),
            netns,
            name,
        };
        pm.plug_underlay(prefix, underlay)?;
        pm.add_integration_bridge(spec)?;
        if let Some(port) = spec.ovsdb_tcp_port {
            let addr = SocketAddrV4::new(underlay_addr.addr(), port);
            pm.vsctl(&["set-manager", &format!("ptcp:{port}:{}", addr.ip())])?;
            pm.ovsdb_tcp = Some(addr);
        }
        if let Some(mgmt) = spec.management {
            pm.add_management_link(prefix, mgmt)?;
        }
        if let Some(addr) = spec.wan {
            crate::gateway_node::add_wan_bridge(&pm.ovs, &pm.netns, addr)?;
        }
        Ok(pm)
    }

    fn plug_underlay(&mut self, prefix: &Prefix, underlay: &Underlay) -> Result<()> {
        let port = self.underlay_port.clone();
        let pair = underlay.cable(prefix, &self.name, Iface::new(&port, self.netns.place()))?;
        self.links.push(pair);
        self.ovs.add_address_bridge(
            &self.netns,
            UNDERLAY_BRIDGE,
            underlay.mtu(),
            self.underlay_addr,
            &[&port],
        )
    }

    fn add_integration_bridge(&self, spec: &PmSpec) -> Result<()> {
        let fail_mode = format!("fail_mode={}", spec.fail_mode.as_ovs());
        let mut args = vec![
            "add-br",
            INTEGRATION_BRIDGE,
            "--",
            "set",
            "Bridge",
            INTEGRATION_BRIDGE,
            "datapath_type=netdev",
            "protocols=OpenFlow13",
            &fail_mode,
        ];
        let dpid = spec
            .datapath_id
            .map(|id| format!("other_config:datapath-id={id:016x}"));
        args.extend(dpid.as_deref());
        self.vsctl(&args).map(drop)
    }

    fn add_management_link(&mut self, prefix: &Prefix, mgmt: ManagementSpec) -> Result<()> {
        let pair = VethPair::create(
            Iface::new(prefix.link(&self.name, ROLE_MGMT_PM)?, self.netns.place()),
            Iface::new(prefix.link(&self.name, ROLE_MGMT_ROOT)?, Place::Root),
            1500,
        )?;
        pair.a().add_addr(mgmt.pm)?;
        pair.b().add_addr(mgmt.root)?;
        self.links.push(pair);
        Ok(())
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

    /// The underlay network the PM is plugged into.
    pub fn underlay(&self) -> crate::UnderlayId {
        self.underlay
    }

    /// The PM's address on its underlay, the endpoint of its GRE tunnels.
    pub fn underlay_addr(&self) -> Ipv4Cidr {
        self.underlay_addr
    }

    /// The PM's end of its underlay link (in its namespace): every tunnel
    /// packet to or from the PM crosses it, so a capture there sees what
    /// the PM puts on the DC's network.
    pub fn underlay_interface(&self) -> &str {
        &self.underlay_port
    }

    /// The PM's WAN address, if it is a gateway node
    /// ([`PmSpec::wan_uplink`]).
    pub fn wan_addr(&self) -> Option<Ipv4Cidr> {
        self.wan_addr
    }

    /// The management link's addresses, if the PM has one.
    pub fn management(&self) -> Option<ManagementSpec> {
        self.management
    }

    /// The OVSDB remote on the unix socket, reachable from any namespace.
    pub fn ovsdb_unix_target(&self) -> String {
        self.ovs.db_target()
    }

    /// The OVSDB remote on TCP (`tcp:<ip>:<port>`), reachable from the
    /// underlay only, if the PM serves one.
    pub fn ovsdb_tcp_target(&self) -> Option<String> {
        self.ovsdb_tcp.map(|a| format!("tcp:{a}"))
    }

    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        self.ovs.vsctl(args)
    }

    pub fn ofctl(&self, args: &[&str]) -> Result<String> {
        self.ovs.ofctl(args)
    }

    pub fn appctl(&self, args: &[&str]) -> Result<String> {
        self.ovs.appctl(args)
    }

    /// Runs `argv` inside the PM's namespace. Returns stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        self.netns.run(argv)
    }

    /// Where the PM's underlay address and interface are: on `br-ul`
    /// ([`UnderlayPath::Ovs`], as built), or the address on the interface
    /// itself, which has left the bridge ([`UnderlayPath::Kernel`]).
    ///
    /// The PM's own sockets reach the underlay either way, but through
    /// `br-ul` every datagram they send or receive crosses ovs-vswitchd
    /// (the bridge's local port is a tap it reads and writes); held by the
    /// kernel they leave by the interface at once. OVS's GRE needs the
    /// address on `br-ul`; the encrypted WAN's WireGuard, whose GRE runs on
    /// another bridge, needs only the kernel. Held by the kernel, the
    /// interface takes `br-ul`'s MAC (which the bridge keeps), so the
    /// address has one MAC on the wire either way and the neighbours'
    /// caches stay right across a move.
    pub fn set_underlay_path(&self, path: UnderlayPath) -> Result<()> {
        let addr = self.underlay_addr.to_string();
        let port = &self.underlay_port;
        let (from, to) = match path {
            UnderlayPath::Kernel => (UNDERLAY_BRIDGE, port.as_str()),
            UnderlayPath::Ovs => (port.as_str(), UNDERLAY_BRIDGE),
        };
        self.netns
            .ip(&["addr", "flush", "dev", from, "to", &addr])?;
        match path {
            UnderlayPath::Kernel => {
                self.vsctl(&["--if-exists", "del-port", UNDERLAY_BRIDGE, port])?;
                let path = format!("/sys/class/net/{UNDERLAY_BRIDGE}/address");
                let mac = self.netns.run(&["cat", &path])?;
                self.netns
                    .ip(&["link", "set", "dev", port, "address", mac.trim()])?;
            }
            UnderlayPath::Ovs => {
                self.vsctl(&["--may-exist", "add-port", UNDERLAY_BRIDGE, port])?;
            }
        }
        self.netns.ip(&["addr", "replace", &addr, "dev", to])?;
        Iface::new(to, self.netns.place()).set_up()
    }

    /// Pings `dst` on the underlay from the PM's own network stack.
    ///
    /// Besides checking the underlay, this teaches OVS the peer's MAC: OVS
    /// resolves tunnel endpoints by snooping ARP on `br-ul`, and until it has,
    /// the first frame into a new tunnel is dropped and the sender's ARP
    /// retransmission costs about a second (measured: 1.03 s to a first VM
    /// reply over a cold tunnel, under 10 ms after both PMs pinged each other).
    pub fn ping_underlay(
        &self,
        dst: Ipv4Addr,
        count: u32,
        interval: Duration,
    ) -> Result<PingReport> {
        crate::ping::ping_from(&self.netns, dst, count, interval, PING_REPLY_TIMEOUT)
    }

    /// Adds a GRE port to `br-int` towards `remote` with `key=flow`, so flows
    /// choose the key (the VI) with `set_field:<key>->tun_id`. Returns the
    /// port's OpenFlow port number.
    pub fn add_gre_port(&self, port: &str, remote: Ipv4Addr) -> Result<u32> {
        let remote = format!("options:remote_ip={remote}");
        self.vsctl(&[
            "add-port",
            INTEGRATION_BRIDGE,
            port,
            "--",
            "set",
            "Interface",
            port,
            "type=gre",
            &remote,
            "options:key=flow",
        ])?;
        self.ofport(port)
    }

    /// The OpenFlow port number OVS gave `port`.
    pub fn ofport(&self, port: &str) -> Result<u32> {
        self.ovs.ofport(port)
    }

    /// Makes a controller listening on the unix socket `listener` reachable
    /// from this PM's vswitchd, and returns the target to give to
    /// [`Pm::set_controller`].
    ///
    /// vswitchd refuses `unix:` controller targets outside its own run
    /// directory; a symlink inside that directory pointing at `listener` is
    /// accepted, so one controller socket in the root namespace can serve every
    /// PM without any network path to it.
    pub fn link_controller_socket(&self, listener: &Path) -> Result<String> {
        let link = self.ovs.dir().join(CONTROLLER_SOCKET_LINK);
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_at("removing", &link, e)),
        }
        std::os::unix::fs::symlink(listener, &link)
            .map_err(|e| Error::io_at("creating", &link, e))?;
        Ok(format!("unix:{}", link.display()))
    }

    /// The passive target `br-int` gets when the controller runs with
    /// `openflow = "passive"`: a socket beside the PM's `db.sock`, in the
    /// run directory where vswitchd accepts one (docs/testbed.md, finding
    /// 4), that the controller connects to.
    pub fn passive_controller_target(&self) -> String {
        format!(
            "punix:{}",
            self.ovs
                .dir()
                .join(format!("{INTEGRATION_BRIDGE}.iris.sock"))
                .display()
        )
    }

    /// Points `br-int` at `targets` (`unix:…`, `tcp:ip:port`), replacing any
    /// controllers it had.
    pub fn set_controller(&self, targets: &[&str]) -> Result<()> {
        let mut args = vec!["set-controller", INTEGRATION_BRIDGE];
        args.extend_from_slice(targets);
        self.vsctl(&args).map(drop)
    }
}

/// A /30 in 198.18.0.0/15 (set aside for testing) for a management link,
/// chosen from `prefix` and `salt` (one per link of a testbed) among those
/// no address of this host is in: (root end, PM end).
pub fn free_management_net(prefix: &Prefix, salt: u32) -> Result<(Ipv4Cidr, Ipv4Cidr)> {
    let in_use = crate::command::run(&mut crate::command::program(
        "ip",
        &["-4", "-o", "addr", "show"],
    ))?;
    let seed = prefix
        .as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
        .wrapping_add(salt.wrapping_mul(97));
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    // 2^17 addresses make 2^15 /30s.
    for i in 0..64 {
        let net = base + ((seed.wrapping_add(i) % (1 << 15)) << 2);
        let (root, pm) = (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2));
        if !in_use.contains(&format!("inet {root}/")) && !in_use.contains(&format!("inet {pm}/")) {
            return Ok((Ipv4Cidr::new(root, 30)?, Ipv4Cidr::new(pm, 30)?));
        }
    }
    Err(Error::Usage(
        "no free /30 for a management link in 198.18.0.0/15".into(),
    ))
}
