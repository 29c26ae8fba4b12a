//! `service`: the HaaS service end to end, as `make demo` shows it. A HaaS
//! data center of four PMs and its gateway node, two operators' IaaS data
//! centers (the very same addressing) with their gateway nodes, the
//! controller and the broker (`iris-api`). Everything an operator does goes
//! through the `irisctl` binary, run as a subprocess with the operator's
//! token, its output kept for the transcript.
//!
//! ```text
//!                        ┌═ WAN a ═ gwa ── LAN a ── acn1 (ivma, mva: acme's guests)
//!  pm1..pm4 ── GRE ── gwh ┤
//!  (L1 nodes, l2a, l2b)   └═ WAN b ═ gwb ── LAN b ── bcn1 (ivmb: globex's guest)
//! ```
//!
//! - Each operator creates its VI and asks for two L1 nodes (anti-affinity)
//!   with `irisctl`; the broker allocates the VI's tunnel key.
//! - The gateways: the HaaS gateway runs before any VI exists; the broker
//!   pushes each VI to its API (`[vi_api]`) as the operator creates it, and
//!   answers with the HaaS gateway's WAN address and the VI's key, which the
//!   operator's IaaS gateway is then configured with.
//! - Each operator's cloud plugs an L2 VM into an L1 node's `cloudbr0` on
//!   its VLAN ([`Guest`]); the L2 VM and the operator's IaaS guest ping each
//!   other across the WAN, with both operators' marked pings at once and
//!   every guest interface and both WAN cables captured: no frame of one
//!   operator reaches the other's.
//! - acme's guest `mva` live-migrates from its IaaS compute node into its
//!   second L1 node and announces itself with QEMU's RARP rounds, while its
//!   IaaS neighbour and the L2 VM in the HaaS DC ping it every 10 ms.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, round3, Harness, PingSummary, ScenarioError, CONVERGE};
use super::intercloud::{self as ic, PeerVi, World, HAAS_GATEWAY, HAAS_WAN, VLAN, VLANS};
use super::migrate::qemu_announcement;
use crate::frames::{contains, gre_payload, send_frames, Capture};
use crate::iaas::COMPUTE_BRIDGE;
use crate::link::{Iface, Place, VethPair};
use crate::naming::NodeName;
use crate::ping::{ping_from, PingRun};
use crate::ports::free_loopback;
use crate::readiness::{poll_until, Probe};
use crate::wan::{Backend, Impairment, WanSpec};
use crate::{
    ComputeId, ComputeSpec, Error, IaasGatewaySpec, Ipv4Cidr, MacAddr, Netns, OvsInstance,
    PingPlan, UnderlaySpec, VmId, VmSpec, WallClock,
};

const PMS: [&str; 4] = ["pm1", "pm2", "pm3", "pm4"];
/// The HaaS gateway's `[vi_api]` token, which the broker sends.
const GATEWAY_API_TOKEN: &str = "service-gateway-vi-api-token-0123";
const IRISCTL: &str = "irisctl";
/// The bridge an L1 node's `netns` driver builds (docs/broker.md).
const NODE_BRIDGE: &str = "cloudbr0";
/// Pings per isolation run, 20 ms apart; pings per migration run, 10 ms apart.
const PINGS: u32 = 25;
const MOVE_PINGS: u32 = 300;
const BEFORE_MOVE: Duration = Duration::from_secs(1);

/// One operator: its data center and what the demo gives it.
#[derive(Debug, Clone, Copy)]
struct Dc {
    name: &'static str,
    lan: (&'static str, &'static str),
    compute: &'static str,
    gateway: &'static str,
    wan: &'static str,
    wan_addr: &'static str,
    guest: &'static str,
    l2: &'static str,
}

const DCS: [Dc; 2] = [
    Dc {
        name: "acme",
        lan: ("lana", "192.168.70.0/24"),
        compute: "acn1",
        gateway: "gwa",
        wan: "wana",
        wan_addr: "203.0.113.2/24",
        guest: "ivma",
        l2: "l2a",
    },
    Dc {
        name: "globex",
        lan: ("lanb", "192.168.71.0/24"),
        compute: "bcn1",
        gateway: "gwb",
        wan: "wanb",
        wan_addr: "203.0.113.3/24",
        guest: "ivmb",
        l2: "l2b",
    },
];

/// Both operators use these on VLAN 100: the IaaS guest, the L2 VM on an
/// L1 node, and acme's guest that migrates.
const IAAS_GUEST: (u32, &str) = (0x201, "10.1.0.1/24");
const L2_GUEST: (u32, &str) = (0x111, "10.1.0.11/24");
const MOVER: (u32, &str) = (0x221, "10.1.0.21/24");
/// The L1 nodes' own addresses (untagged on the VI), from the broker's pool.
const NODE_POOL: &str = "10.50.0.0/24";

/// One `irisctl` command as typed, and what it printed.
#[derive(Debug, Clone, Serialize)]
pub struct Typed {
    /// The demo's step it belongs to.
    pub step: u8,
    /// `admin`, or the operator whose token was used.
    pub who: String,
    pub command: String,
    pub output: String,
    pub ms: f64,
}

/// One operator's VI as the broker returned it, and its L1 nodes.
#[derive(Debug, Serialize)]
pub struct OperatorReport {
    pub operator: &'static str,
    pub vi: String,
    pub tunnel_key: u32,
    /// `(node id, PM, address)`.
    pub nodes: Vec<(String, String, String)>,
    pub vi_create_ms: f64,
    pub nodes_request_ms: f64,
    /// The L2 VM's first reply from the IaaS guest across the WAN.
    pub first_reply_ms: f64,
    pub pings: BTreeMap<String, PingSummary>,
}

/// What one captured interface saw, by operator marker.
#[derive(Debug, Serialize)]
pub struct Seen {
    pub operator: &'static str,
    pub what: String,
    pub own: usize,
    pub foreign: usize,
}

/// The migration's measurements.
#[derive(Debug, Serialize)]
pub struct Move {
    pub guest: String,
    pub to_node: String,
    pub to_pm: String,
    /// The registry's location of the guest's MAC after the move.
    pub location: Value,
    /// `(watcher, first reply after the first RARP, pings lost after it)`.
    pub watchers: Vec<(String, Option<f64>, usize)>,
    pub pings: BTreeMap<String, PingSummary>,
}

/// What `service` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub setup_s: f64,
    pub transcript: Vec<Typed>,
    pub operators: Vec<OperatorReport>,
    pub gateways_s: f64,
    pub seen: Vec<Seen>,
    /// `(operator, GRE packets, keys seen)` per WAN cable.
    pub wan_cables: Vec<(&'static str, usize, Vec<u32>)>,
    pub migration: Move,
    /// Both VIs deleted with their nodes, every node namespace gone.
    pub scale_in_ms: f64,
}

pub(super) fn run(h: &mut Harness) -> Result<Value, ScenarioError> {
    super::harness::to_json(&measure(h)?)
}

/// An L2 VM as the operator's cloud runs one on an L1 node (or on its own
/// compute node): a namespace whose NIC `vm0` is on the operator's VLAN.
/// This kernel has no 802.1Q (docs/testbed.md, finding 5), so the VLAN
/// stack is an access port `tag=<vid>` of a small OVS bridge in the
/// guest's namespace, its other port the uplink, as the testbed's VMs and
/// compute nodes do it. The uplink is a veth whose far end is plugged into
/// the host's bridge; migrating re-plugs only the uplink, so the guest's
/// namespace, MAC and address stay, as across a live migration.
struct Guest {
    name: String,
    mac: MacAddr,
    ip: Ipv4Cidr,
    host_end: String,
    // Field order is drop order: the uplink, OVS, then the namespace.
    uplink: Option<VethPair>,
    ovs: OvsInstance,
    netns: Netns,
}

const GUEST_NIC: &str = "vm0";
const GUEST_UPLINK: &str = "up0";

impl Guest {
    fn create(h: &Harness, name: &str, (mac, ip): (u32, &str)) -> Result<Self, ScenarioError> {
        let node = NodeName::new(name)?;
        let netns = Netns::create(h.tb.prefix().netns(&node))?;
        let dir = h.file(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io_at("creating", &dir, e))?;
        let ovs = OvsInstance::start(name, &netns, dir, CONVERGE)?;
        let mac = MacAddr::local(mac);
        let tag = format!("tag={VLAN}");
        let mac_column = format!("mac=\"{mac}\"");
        ovs.vsctl(&[
            "add-br",
            "br0",
            "--",
            "set",
            "Bridge",
            "br0",
            "datapath_type=netdev",
            "fail_mode=standalone",
            "--",
            "add-port",
            "br0",
            GUEST_NIC,
            "--",
            "set",
            "Interface",
            GUEST_NIC,
            "type=internal",
            &mac_column,
            "--",
            "set",
            "Port",
            GUEST_NIC,
            &tag,
        ])?;
        let nic = Iface::new(GUEST_NIC, netns.place());
        nic.disable_offloads()?;
        nic.set_mac(mac)?;
        let ip: Ipv4Cidr = ip.parse()?;
        nic.add_addr(ip)?;
        nic.set_up()?;
        Ok(Self {
            name: name.to_owned(),
            mac,
            ip,
            host_end: h.tb.prefix().link(&node, "u")?,
            uplink: None,
            ovs,
            netns,
        })
    }

    /// A fresh uplink with its far end in `host`, made a trunk port of the
    /// guest's bridge once vswitchd let go of the old one (deleting and
    /// adding the port in one transaction leaves vswitchd on the dead
    /// device).
    fn cable(&mut self, host: Place) -> Result<&Iface, ScenarioError> {
        if let Some(mut old) = self.uplink.take() {
            self.ovs
                .vsctl(&["--if-exists", "del-port", "br0", GUEST_UPLINK])?;
            old.delete()?;
        }
        let pair = VethPair::create(
            Iface::new(GUEST_UPLINK, self.netns.place()),
            Iface::new(&self.host_end, host),
            crate::VM_MTU,
        )?;
        self.ovs.vsctl(&["add-port", "br0", GUEST_UPLINK])?;
        poll_until(
            &format!("{}'s uplink in its bridge", self.name),
            CONVERGE,
            || {
                Ok(match self.ovs.ofport(GUEST_UPLINK) {
                    Ok(n) if n > 0 => Probe::Ready(()),
                    other => Probe::NotYet(format!("{other:?}")),
                })
            },
        )?;
        Ok(self.uplink.insert(pair).b())
    }

    /// Plugs the guest into the `cloudbr0` of the L1 node whose namespace
    /// is `node`, as the operator's cloud plugs a guest into a host it
    /// adopted.
    fn plug_node(&mut self, node: &str) -> Result<(), ScenarioError> {
        let end = self.cable(Place::Netns(node.to_owned()))?.clone();
        end.set_master(NODE_BRIDGE)?;
        // A new Linux bridge port forwards once the kernel's link watch
        // saw its carrier: a RARP sent before that is lost (vm.rs).
        poll_until(
            &format!("{} forwarding in {node}", end.name),
            CONVERGE,
            || {
                let state = end.ip(&["-d", "-o", "link", "show", "dev", &end.name])?;
                Ok(if state.contains("state forwarding") {
                    Probe::Ready(())
                } else {
                    Probe::NotYet(state)
                })
            },
        )?;
        Ok(())
    }

    /// Plugs the guest into the IaaS compute node's trunk bridge.
    fn plug_compute(&mut self, h: &Harness, cn: ComputeId) -> Result<(), ScenarioError> {
        let node = h.tb.compute(cn);
        let end = self.cable(node.netns().place())?.name.clone();
        node.ovs().vsctl(&["add-port", COMPUTE_BRIDGE, &end])?;
        Ok(())
    }

    /// Unplugs from a compute node's OVS bridge before the link goes.
    fn unplug_compute(&mut self, h: &Harness, cn: ComputeId) -> Result<(), ScenarioError> {
        h.tb.compute(cn).ovs().vsctl(&[
            "--if-exists",
            "del-port",
            COMPUTE_BRIDGE,
            &self.host_end,
        ])?;
        Ok(())
    }

    /// Waits until `dst` answers a ping from the guest; how long it took.
    fn wait_reachable(&self, dst: Ipv4Addr) -> Result<Duration, ScenarioError> {
        let start = Instant::now();
        loop {
            let r = ping_from(
                &self.netns,
                dst,
                1,
                Duration::from_millis(100),
                Duration::from_millis(250),
            )?;
            if r.received > 0 {
                return Ok(start.elapsed());
            }
            check(start.elapsed() < CONVERGE, || {
                format!("{} gets no answer from {dst}", self.name)
            })?;
        }
    }
}

/// Runs `irisctl` with `token`, keeps what it printed, fails on a non-zero
/// exit.
struct Irisctl {
    step: u8,
    binary: PathBuf,
    url: String,
    transcript: Vec<Typed>,
}

impl Irisctl {
    fn run(&mut self, who: &str, token: &str, args: &[&str]) -> Result<String, ScenarioError> {
        let start = Instant::now();
        let out = Command::new(&self.binary)
            .args(args)
            .env("IRIS_API_URL", &self.url)
            .env("IRIS_API_TOKEN", token)
            .output()
            .map_err(|e| Error::io(format!("running {}", self.binary.display()), e))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let command = format!("{IRISCTL} {}", args.join(" "));
        check(out.status.success(), || {
            format!(
                "`{command}` exited with {}: {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        self.transcript.push(Typed {
            step: self.step,
            who: who.to_owned(),
            command,
            output: text.clone(),
            ms: ms(start.elapsed()),
        });
        Ok(text)
    }

    fn json(&mut self, who: &str, token: &str, args: &[&str]) -> Result<Value, ScenarioError> {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let text = self.run(who, token, &all)?;
        serde_json::from_str(&text)
            .map_err(|e| ScenarioError::Failed(format!("irisctl printed no JSON ({e}): {text}")))
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The payload marker of operator `name`'s pings (at most 16 bytes).
fn marker(name: &str) -> Vec<u8> {
    format!("{name}-vi-marker").into_bytes()
}

/// Runs the scenario on `h` and returns what it measured.
pub fn measure(h: &mut Harness) -> Result<Report, ScenarioError> {
    let start = Instant::now();
    // The HaaS DC as in production: its PMs and its gateway node speak
    // OpenFlow over TLS and OVSDB over SSL to the controller.
    h.use_tls()?;
    let mut pms = h.add_pms(&PMS)?;
    let gw_spec = h.pm_spec(HAAS_GATEWAY).wan_uplink(HAAS_WAN.parse()?);
    let gw_haas = h.add_pm_spec(gw_spec)?;
    pms.push(gw_haas);
    let mut sites = Vec::new();
    for dc in DCS {
        let lan =
            h.tb.add_underlay(UnderlaySpec::new(dc.lan.0, dc.lan.1.parse()?))?;
        let cn = h.tb.add_compute(ComputeSpec::new(dc.compute, lan))?;
        let gw =
            h.tb.add_iaas_gateway(IaasGatewaySpec::new(dc.gateway, lan, dc.wan_addr.parse()?))?;
        let wan = WanSpec {
            backend: Some(Backend::Relay),
            ..WanSpec::new(dc.wan, Impairment::default())
        };
        let wan = h.tb.add_wan(wan.between(gw_haas, gw))?;
        sites.push((cn, gw, wan));
    }
    let world = World {
        pms: pms.clone(),
        gw_haas,
        computes: sites.iter().map(|s| s.0).collect(),
        gw_iaas: sites[0].1,
        wan: sites[0].2,
        haas_vms: Vec::new(),
        iaas_vms: Vec::new(),
        gateways: None,
    };
    let _sweep = super::broker::Sweep(
        pms.iter()
            .map(|&p| h.tb.pm(p).netns().name().to_owned())
            .collect(),
    );
    ic::start_controller_with(h, &world, Vec::new())?;
    // The HaaS gateway runs before any VI exists: the broker pushes each
    // VI to its API as the operator creates it.
    let gw_start = Instant::now();
    let haas_api = free_loopback()?;
    let gw_token = h.file("gateway-api-token");
    std::fs::write(&gw_token, GATEWAY_API_TOKEN)
        .map_err(|e| Error::io_at("writing", &gw_token, e))?;
    let haas_text = format!(
        "{}\n[vi_api]\ntoken_file = {:?}\nstate_dir = {:?}\n",
        ic::haas_config(h, &world, haas_api, &[])?,
        gw_token.display().to_string(),
        h.file("gateway-haas-state").display().to_string(),
    );
    ic::launch_gateways(h, &[("gateway-haas", haas_text, haas_api)], &[])?;
    let mut gateways_s = gw_start.elapsed().as_secs_f64();
    let broker = super::broker::start_broker(
        h,
        &format!(
            "[[haas_gateways]]\nname = \"{HAAS_GATEWAY}\"\napi = \"http://{haas_api}\"\n\
             token_file = {:?}\nwan_ip = \"{}\"\n",
            gw_token.display().to_string(),
            HAAS_WAN.parse::<Ipv4Cidr>()?.addr()
        ),
    )?;
    let setup_s = start.elapsed().as_secs_f64();
    h.note(format!(
        "HaaS DC, two IaaS DCs, controller and broker up in {setup_s:.1} s"
    ));

    let mut ctl = Irisctl {
        step: 2,
        binary: h.controller_binary().with_file_name(IRISCTL),
        url: format!("http://{}", broker.addr),
        transcript: Vec::new(),
    };
    let admin = super::broker::ADMIN_TOKEN;
    for &pm in &pms[..PMS.len()] {
        let pm = h.tb.pm(pm);
        let (ip, ovsdb) = (
            pm.underlay_addr().addr().to_string(),
            pm.ovsdb_unix_target(),
        );
        ctl.run(
            "admin",
            admin,
            &[
                "pm",
                "register",
                pm.name(),
                "--vcpus",
                "4",
                "--memory-mib",
                "16384",
                "--disk-gib",
                "100",
                "--underlay-ip",
                &ip,
                "--ovsdb",
                &ovsdb,
                "--endpoint",
                pm.netns().name(),
            ],
        )?;
    }
    let mut tokens = Vec::new();
    for dc in DCS {
        let provider = ctl.json("admin", admin, &["provider", "create", dc.name])?;
        let id = text(&provider["id"]);
        let token = ctl.json("admin", admin, &["token", "create", "--provider", &id])?;
        tokens.push(text(&token["token"]));
    }

    let mut operators = Vec::new();
    let mut node_ns: Vec<Vec<String>> = Vec::new();
    ctl.step = 3;
    // The operators' gateways' APIs: the port of each VI's `--gateway`.
    let apis = [free_loopback()?, free_loopback()?];
    for ((dc, token), api) in DCS.iter().zip(&tokens).zip(apis) {
        ctl.run(
            dc.name,
            token,
            &[
                "flavor",
                "create",
                "c1",
                "--vcpus",
                "1",
                "--memory-mib",
                "1024",
                "--disk-gib",
                "10",
            ],
        )?;
        let asked = Instant::now();
        let gateway = format!("{}:{}", dc.wan_addr.parse::<Ipv4Cidr>()?.addr(), api.port());
        // The operator's gateway keeps its token, the broker its hash.
        let gateway_token_hash = ic::peer_token_hash(h, dc.gateway)?;
        let vi = ctl.json(
            dc.name,
            token,
            &[
                "vi",
                "create",
                "net",
                "--gateway",
                &gateway,
                "--gateway-name",
                dc.gateway,
                "--gateway-token-hash",
                &gateway_token_hash,
                "--vlans",
                VLANS,
                "--pool",
                NODE_POOL,
            ],
        )?;
        let vi_create_ms = ms(asked.elapsed());
        let (vi_id, key) = (
            text(&vi["id"]),
            vi["tunnel_key"].as_u64().unwrap_or(0) as u32,
        );
        // What the operator points its gateway at, from the broker's answer.
        let haas_end = &vi["haas_gateways"][0];
        check(
            haas_end["wan_ip"] == HAAS_WAN.parse::<Ipv4Cidr>()?.addr().to_string()
                && haas_end["gre_key"] == key
                && haas_end["peer_name"] == dc.gateway,
            || {
                format!(
                    "{}: the VI does not say where to point the gateway: {vi}",
                    dc.name
                )
            },
        )?;
        let asked = Instant::now();
        ctl.run(
            dc.name,
            token,
            &[
                "node",
                "request",
                "--vi",
                &vi_id,
                "--count",
                "2",
                "--flavor",
                "c1",
                "--group",
                "hosts",
                "--policy",
                "anti-affinity",
            ],
        )?;
        let nodes_request_ms = ms(asked.elapsed());
        let list = ctl.json(dc.name, token, &["node", "list", "--vi", &vi_id])?;
        let list = list.as_array().cloned().unwrap_or_default();
        check(
            list.len() == 2 && list.iter().all(|n| n["state"] == "active"),
            || format!("{}: not two active nodes: {list:?}", dc.name),
        )?;
        let mut names = Vec::new();
        let mut nodes = Vec::new();
        for n in &list {
            let pm = text(&n["pm"]);
            let pm_ns = pms
                .iter()
                .map(|&p| h.tb.pm(p))
                .find(|p| p.name() == pm)
                .map(|p| p.netns().name().to_owned())
                .ok_or_else(|| ScenarioError::Failed(format!("node on unknown PM {pm}")))?;
            names.push(format!("irisn-{pm_ns}-{}", text(&n["id"])));
            nodes.push((text(&n["id"]), pm, text(&n["ip"])));
        }
        node_ns.push(names);
        operators.push(OperatorReport {
            operator: dc.name,
            vi: vi_id,
            tunnel_key: key,
            nodes,
            vi_create_ms,
            nodes_request_ms,
            first_reply_ms: 0.0,
            pings: BTreeMap::new(),
        });
    }

    // The operators' gateways, configured with what the broker returned;
    // the HaaS gateway has the VIs from the broker already.
    let gw_start = Instant::now();
    let peers: Vec<PeerVi> = DCS
        .iter()
        .zip(&operators)
        .zip(apis)
        .map(|((dc, op), api)| PeerVi {
            peer: dc.gateway,
            wan: dc.wan_addr,
            api,
            vi: op.tunnel_key,
            gre_key: op.tunnel_key,
        })
        .collect();
    let mut gateways = Vec::new();
    for ((dc, &(_, gw, _)), (peer, api)) in DCS.iter().zip(&sites).zip(peers.iter().zip(apis)) {
        let to_haas = PeerVi {
            peer: HAAS_GATEWAY,
            wan: HAAS_WAN,
            api: haas_api,
            ..*peer
        };
        let name = if dc.name == "acme" {
            "gateway-acme"
        } else {
            "gateway-globex"
        };
        let text = ic::iaas_config(h, gw, (dc.gateway, dc.name, dc.wan_addr), api, &to_haas)?;
        gateways.push((name, text, api));
    }
    let keys: Vec<u32> = operators.iter().map(|o| o.tunnel_key).collect();
    ic::launch_gateways(h, &gateways, &keys)?;
    gateways_s += gw_start.elapsed().as_secs_f64();

    // Each operator's guests: an IaaS guest and an L2 VM on its first node.
    let mut iaas_guests: Vec<VmId> = Vec::new();
    let mut l2: Vec<Guest> = Vec::new();
    for ((dc, op), (&(cn, _, _), ns)) in DCS.iter().zip(&operators).zip(sites.iter().zip(&node_ns))
    {
        let spec = VmSpec::on_compute(
            dc.guest,
            cn,
            VLAN,
            op.tunnel_key,
            MacAddr::local(IAAS_GUEST.0),
            IAAS_GUEST.1.parse()?,
        );
        iaas_guests.push(h.add_vm(spec)?);
        let mut g = Guest::create(h, dc.l2, L2_GUEST)?;
        g.plug_node(&ns[0])?;
        l2.push(g);
    }
    let iaas_ip = IAAS_GUEST.1.parse::<Ipv4Cidr>()?.addr();
    let l2_ip = L2_GUEST.1.parse::<Ipv4Cidr>()?.addr();
    for (i, op) in operators.iter_mut().enumerate() {
        op.first_reply_ms = ms(l2[i].wait_reachable(iaas_ip)?);
        h.wait_reachable(iaas_guests[i], l2_ip)?;
    }

    // Both operators' marked pings at once, every guest interface and both
    // WAN cables captured.
    let mut captures = Vec::new();
    for (i, dc) in DCS.iter().enumerate() {
        captures.push((
            i,
            format!(
                "{} {GUEST_NIC} (L2 VM on {})",
                dc.l2, operators[i].nodes[0].1
            ),
            Capture::start(&l2[i].netns, GUEST_NIC)?,
        ));
        let vm = h.tb.vm(iaas_guests[i]);
        captures.push((
            i,
            format!("{} {} (IaaS guest)", dc.guest, vm.interface()),
            Capture::start(vm.netns(), vm.interface())?,
        ));
    }
    let mut cables = Vec::new();
    for (i, &(_, _, wan)) in sites.iter().enumerate() {
        let site = h.tb.wan(wan).site(1);
        cables.push((i, Capture::start(&site.netns, &site.iface.name)?));
    }
    let mut runs = Vec::new();
    for (i, dc) in DCS.iter().enumerate() {
        let plan =
            PingPlan::new(iaas_ip, PINGS, Duration::from_millis(20)).pattern(&marker(dc.name));
        let label = format!("{}-l2-to-iaas", dc.name);
        let out = h.file(&format!("{label}.ping"));
        runs.push((i, label, PingRun::start(&l2[i].netns, plan, &out)?));
        let plan = PingPlan::new(l2_ip, PINGS, Duration::from_millis(20)).pattern(&marker(dc.name));
        let label = format!("{}-iaas-to-l2", dc.name);
        runs.push((i, label.clone(), h.ping_run(iaas_guests[i], plan, &label)?));
    }
    for (i, label, run) in runs {
        let trace = run.wait(Duration::from_secs(15))?;
        check(trace.lost().is_empty(), || {
            format!("{label} lost {:?}", trace.lost())
        })?;
        operators[i].pings.insert(label, PingSummary::from(&trace));
    }
    let mut seen = Vec::new();
    for (i, what, capture) in captures {
        let frames = capture.finish()?;
        let own = frames
            .iter()
            .filter(|f| contains(&f.data, &marker(DCS[i].name)))
            .count();
        let foreign = frames
            .iter()
            .filter(|f| contains(&f.data, &marker(DCS[1 - i].name)))
            .count();
        check(own > 0 && foreign == 0, || {
            format!("{what}: {own} frames of its operator, {foreign} of the other")
        })?;
        seen.push(Seen {
            operator: DCS[i].name,
            what,
            own,
            foreign,
        });
    }
    let mut wan_cables = Vec::new();
    for (i, capture) in cables {
        let frames = capture.finish()?;
        let mut keys: Vec<u32> = Vec::new();
        let mut gre = 0;
        for f in &frames {
            if let Some(g) = gre_payload(&f.data) {
                gre += 1;
                let k = g.key.unwrap_or(0);
                if !keys.contains(&k) {
                    keys.push(k);
                }
                check(!contains(g.payload, &marker(DCS[1 - i].name)), || {
                    format!("{}'s WAN carried the other operator's frame", DCS[i].name)
                })?;
            }
        }
        check(gre > 0 && keys == [operators[i].tunnel_key], || {
            format!(
                "{}'s WAN: {gre} GRE packets with keys {keys:?}, not only {}",
                DCS[i].name, operators[i].tunnel_key
            )
        })?;
        wan_cables.push((DCS[i].name, gre, keys));
    }

    let migration = migrate(
        h,
        &sites,
        &operators[0],
        &node_ns[0],
        iaas_guests[0],
        &l2[0],
    )?;

    // The operators give their nodes back: the guests go first, as the
    // operator's cloud would evacuate a host, then the VI with its nodes.
    drop(l2);
    ctl.step = 7;
    let scale_in = Instant::now();
    for (dc, (op, token)) in DCS.iter().zip(operators.iter().zip(&tokens)) {
        ctl.run(dc.name, token, &["vi", "delete", &op.vi, "--force"])?;
    }
    let scale_in_ms = ms(scale_in.elapsed());
    let left: Vec<String> = pms
        .iter()
        .flat_map(|&p| super::broker::node_namespaces(h.tb.pm(p).netns().name()))
        .collect();
    check(left.is_empty(), || {
        format!("the VIs are deleted but their nodes' namespaces are left: {left:?}")
    })?;
    Ok(Report {
        scale_in_ms,
        setup_s: round3(setup_s),
        transcript: ctl.transcript,
        operators,
        gateways_s: round3(gateways_s),
        seen,
        wan_cables,
        migration,
    })
}

/// acme's guest `mva` migrates from its IaaS compute node into acme's
/// second L1 node while the IaaS guest and the L2 VM ping it.
fn migrate(
    h: &Harness,
    sites: &[(ComputeId, crate::GatewayId, crate::WanId)],
    op: &OperatorReport,
    node_ns: &[String],
    iaas_guest: VmId,
    l2: &Guest,
) -> Result<Move, ScenarioError> {
    let cn = sites[0].0;
    let mut mover = Guest::create(h, "mva", MOVER)?;
    mover.plug_compute(h, cn)?;
    let ip = mover.ip.addr();
    mover.wait_reachable(IAAS_GUEST.1.parse::<Ipv4Cidr>()?.addr())?;
    h.wait_reachable(iaas_guest, ip)?;
    l2.wait_reachable(ip)?;
    let c = h.controller()?;
    let path = format!("/v1/registry/{}/{VLAN}/{}", op.tunnel_key, mover.mac);
    let before = c.get_json(&path)?;
    check(before["location"]["kind"] == "gateway", || {
        format!(
            "{} in the IaaS DC is not behind the gateway: {before}",
            mover.name
        )
    })?;

    let clock = WallClock::now();
    let plan = PingPlan::new(ip, MOVE_PINGS, Duration::from_millis(10));
    let mut runs = vec![(
        "ivma (IaaS DC)".to_owned(),
        h.ping_run(iaas_guest, plan.clone(), "move-from-iaas")?,
    )];
    let out = h.file("move-from-haas.ping");
    runs.push((
        "l2a (HaaS DC)".to_owned(),
        PingRun::start(&l2.netns, plan, &out)?,
    ));
    std::thread::sleep(BEFORE_MOVE);
    mover.unplug_compute(h, cn)?;
    mover.plug_node(&node_ns[1])?;
    let sent = send_frames(&mover.netns, GUEST_NIC, &qemu_announcement(mover.mac))?;
    let first = sent
        .first()
        .copied()
        .ok_or_else(|| ScenarioError::Failed("no RARP was sent".into()))?;
    let t = clock.epoch(first);
    let mut watchers = Vec::new();
    let mut pings = BTreeMap::new();
    for (who, run) in runs {
        let trace = run.wait(Duration::from_secs(15))?;
        let first_reply = trace.first_reply_after(t).map(ms);
        check(first_reply.is_some(), || {
            format!("{who} got no reply from {} after its move", mover.name)
        })?;
        watchers.push((who.clone(), first_reply, trace.lost_since(t).len()));
        pings.insert(who, PingSummary::from(&trace));
    }
    let after = c.get_json(&path)?;
    check(after["location"]["kind"] == "port", || {
        format!("{} is not on a port after its move: {after}", mover.name)
    })?;
    let moved = Move {
        guest: mover.name.clone(),
        to_node: op.nodes[1].0.clone(),
        to_pm: op.nodes[1].1.clone(),
        location: after["location"].clone(),
        watchers,
        pings,
    };
    Ok(moved)
}
