//! The inter-cloud scenarios' world: the HaaS data center of every
//! scenario (PMs on the DC underlay, run by the controller) plus its
//! gateway node, an operator's IaaS data center built as CloudStack's KVM
//! agent builds one (a DC LAN carrying 802.1Q, compute nodes with a Linux
//! bridge per guest VLAN) with its own gateway node, and the emulated WAN
//! between the two gateways. An `iris-gateway` process runs for each
//! gateway node, on a configuration written here.
//!
//! ```text
//!  HaaS DC                                      IaaS DC (operator "acme")
//!  pm1  pm2 ── GRE mesh ── gwh ══ WAN (relay) ══ gwa ── DC LAN ── cn1  cn2
//!                          iris-gateway (haas)   iris-gateway (iaas)
//! ```
//!
//! `intercloud` then has an IaaS guest and a guest on a HaaS L1 node ping
//! each other across the WAN at several delays.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::harness::{check, ms, Harness, ScenarioError, CONVERGE};
use crate::controller::{ControllerConfig, HostRole, ViEntry};
use crate::ping::PingPlan;
use crate::ports::free_loopback;
use crate::readiness::{poll_until, Probe};
use crate::wan::{Backend, Impairment, WanSpec};
use crate::{
    ComputeId, ComputeSpec, GatewayId, IaasGatewaySpec, Ipv4Cidr, MacAddr, PmId, ProcessId,
    UnderlaySpec, VmId, VmSpec, WanId, GATEWAY_BRIDGE, INTEGRATION_BRIDGE,
};

/// The operator's VI, its GRE key, and the VLAN its guests use.
pub const VI: u32 = 1;
pub const GRE_KEY: u32 = 1001;
pub const VLAN: u16 = 100;
/// The operator's VLAN range, as its gateway carries it.
pub const VLANS: &str = "100-199";
/// The gateways' names: the HaaS one is also the controller's host name.
pub const HAAS_GATEWAY: &str = "gwh";
pub const IAAS_GATEWAY: &str = "gwa";
pub const HAAS_WAN: &str = "203.0.113.1/24";
const IAAS_WAN: &str = "203.0.113.2/24";
/// The IaaS DC LAN's own subnet (nodes' management; guests' frames cross
/// it tagged, in their own subnet).
const IAAS_LAN: &str = "192.168.70.0/24";

/// What one inter-cloud world is made of.
#[derive(Debug)]
pub struct World {
    /// HaaS compute PMs, then the HaaS gateway node.
    pub pms: Vec<PmId>,
    pub gw_haas: PmId,
    pub computes: Vec<ComputeId>,
    pub gw_iaas: GatewayId,
    pub wan: WanId,
    /// Guests on HaaS L1 nodes (the PMs), one per PM, on [`VLAN`].
    pub haas_vms: Vec<VmId>,
    /// Guests of the IaaS DC, one per compute node, on [`VLAN`].
    pub iaas_vms: Vec<VmId>,
    pub gateways: Option<Gateways>,
}

/// The two `iris-gateway` processes.
#[derive(Debug)]
pub struct Gateways {
    pub haas: ProcessId,
    pub iaas: ProcessId,
    pub haas_api: SocketAddr,
    pub iaas_api: SocketAddr,
}

/// A HaaS guest's address: `10.1.0.1<n>`.
fn haas_ip(n: u8) -> Result<Ipv4Cidr, ScenarioError> {
    Ok(format!("10.1.0.{}/24", 10 + n).parse()?)
}

/// An IaaS guest's address: `10.1.0.<n>`.
fn iaas_ip(n: u8) -> Result<Ipv4Cidr, ScenarioError> {
    Ok(format!("10.1.0.{n}/24").parse()?)
}

/// Builds the world: `haas_pms` PMs and the HaaS gateway node, an IaaS DC
/// with `computes` compute nodes and its gateway, a WAN of `delay` one way
/// between the gateways; a guest on every PM and compute node. Nothing
/// runs yet.
pub fn build(
    h: &mut Harness,
    haas_pms: usize,
    computes: usize,
    delay: Duration,
) -> Result<World, ScenarioError> {
    // The HaaS DC as in production: its PMs and its gateway node speak
    // OpenFlow over TLS and OVSDB over SSL to the controller.
    h.use_tls()?;
    let names: Vec<String> = (1..=haas_pms).map(|i| format!("pm{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut pms = h.add_pms(&names)?;
    let spec = h.pm_spec(HAAS_GATEWAY).wan_uplink(HAAS_WAN.parse()?);
    let gw_haas = h.add_pm_spec(spec)?;
    pms.push(gw_haas);

    let lan =
        h.tb.add_underlay(UnderlaySpec::new("lan", IAAS_LAN.parse()?))?;
    let computes = (1..=computes)
        .map(|i| h.tb.add_compute(ComputeSpec::new(&format!("cn{i}"), lan)))
        .collect::<Result<Vec<_>, _>>()?;
    let gw_iaas =
        h.tb.add_iaas_gateway(IaasGatewaySpec::new(IAAS_GATEWAY, lan, IAAS_WAN.parse()?))?;
    let wan = WanSpec {
        backend: Some(Backend::Relay),
        ..WanSpec::new("wan", Impairment::delay(delay))
    };
    let wan = h.tb.add_wan(wan.between(gw_haas, gw_iaas))?;

    let mut haas_vms = Vec::new();
    for (n, &pm) in (1u8..).zip(&pms[..haas_pms]) {
        let mac = MacAddr::local(0x100 + u32::from(n));
        // An L1 node runs the operator's hypervisor: it tags its guests'
        // frames itself, so the VM's port is a trunk of the VI.
        // Its untagged interface stays in a subnet of its own.
        let untagged = format!("10.99.0.{n}/24").parse()?;
        let spec = VmSpec::new(&format!("hvm{n}"), pm, VI, mac, untagged).vlan(VLAN, haas_ip(n)?);
        haas_vms.push(h.add_vm(spec)?);
    }
    let mut iaas_vms = Vec::new();
    for (n, &cn) in (1u8..).zip(&computes) {
        let mac = MacAddr::local(0x200 + u32::from(n));
        let spec = VmSpec::on_compute(&format!("ivm{n}"), cn, VLAN, VI, mac, iaas_ip(n)?);
        iaas_vms.push(h.add_vm(spec)?);
    }
    Ok(World {
        pms,
        gw_haas,
        computes,
        gw_iaas,
        wan,
        haas_vms,
        iaas_vms,
        gateways: None,
    })
}

/// The operator's VI as the controller knows it: its HaaS guests seeded
/// (their addresses are the operator's own allocation), reached through
/// the HaaS gateway.
pub fn operator_vi(h: &Harness, world: &World) -> ViEntry {
    let mut vi = ViEntry::new(VI, "acme", GRE_KEY);
    vi.gateways = vec![HAAS_GATEWAY.to_owned()];
    for &vm in &world.haas_vms {
        let vm = h.tb.vm(vm);
        if let Some(v) = vm.vlans().first() {
            vi = vi.seed(vm.mac(), v.ip.addr(), Some(VLAN));
        }
    }
    vi
}

/// Starts the controller on the HaaS PMs (the gateway node with role
/// gateway) and waits for every switch and the full mesh.
pub fn start_controller(h: &mut Harness, world: &World) -> Result<(), ScenarioError> {
    let vi = operator_vi(h, world);
    start_controller_with(h, world, vec![vi])
}

/// [`start_controller`] with the VIs of every operator of the world.
pub fn start_controller_with(
    h: &mut Harness,
    world: &World,
    vis: Vec<ViEntry>,
) -> Result<(), ScenarioError> {
    let config = controller_config_with(h, world, vis)?;
    h.start_controller(&config)?;
    let n = world.pms.len() as u64;
    h.wait_ready(n, n)?;
    h.wait_full_mesh(&world.pms)?;
    h.check_tls(&world.pms)?;
    Ok(())
}

/// One gateway's peer and the VI the two carry between them.
#[derive(Debug, Clone, Copy)]
pub struct PeerVi<'a> {
    pub peer: &'a str,
    /// The peer's WAN address, as a CIDR.
    pub wan: &'a str,
    pub api: SocketAddr,
    pub vi: u32,
    pub gre_key: u32,
}

/// The file of the token IaaS gateway `name` presents to the HaaS gateway
/// with its reports: made afresh for each run, the first time it is asked
/// for, and the same file after.
pub fn peer_token_file(h: &Harness, name: &str) -> Result<PathBuf, ScenarioError> {
    let file = h.file(&format!("peer-{name}.token"));
    if !file.exists() {
        std::fs::write(&file, crate::controller::fresh_token())
            .map_err(|e| crate::Error::io_at("writing", &file, e))?;
    }
    Ok(file)
}

/// The hash of IaaS gateway `name`'s token ([`peer_token_file`]), for the
/// HaaS gateway's `[[peer]] token_hash` or a VI's peer.
pub fn peer_token_hash(h: &Harness, name: &str) -> Result<String, ScenarioError> {
    let file = peer_token_file(h, name)?;
    let token =
        std::fs::read_to_string(&file).map_err(|e| crate::Error::io_at("reading", &file, e))?;
    Ok(crate::controller::token_hash(token.trim()))
}

/// The HaaS gateway's configuration: one `[[peer]]` and `[[vi]]` per IaaS
/// data center, each peer with the hash of its token.
pub fn haas_config(
    h: &Harness,
    world: &World,
    api: SocketAddr,
    peers: &[PeerVi],
) -> Result<String, ScenarioError> {
    let pm = h.tb.pm(world.gw_haas);
    let peers = peers
        .iter()
        .map(|p| {
            let hash = peer_token_hash(h, p.peer)?;
            peer_and_vi(p, &format!("token_hash = \"{hash}\"\n"))
        })
        .collect::<Result<Vec<_>, _>>()?
        .join("\n");
    let controller = h.controller()?.api_addr();
    Ok(format!(
        "[gateway]\nname = \"{HAAS_GATEWAY}\"\nkind = \"haas\"\ndc = \"haas\"\nwan_ip = \"{}\"\n\
         bridge = \"{INTEGRATION_BRIDGE}\"\novsdb = \"{}\"\nwan_mtu = 9000\nlisten = \"{api}\"\n\n\
         [controller]\nurl = \"http://{controller}\"\ntoken_file = \"{}\"\n\n{}",
        addr_of(HAAS_WAN)?,
        pm.ovsdb_unix_target(),
        h.file(crate::controller::API_TOKEN_FILE).display(),
        peers,
    ))
}

/// The configuration of IaaS gateway `gw`, called `name`, of data center
/// `dc`, its WAN address `wan`; it reports with its token
/// ([`peer_token_file`]).
pub fn iaas_config(
    h: &Harness,
    gw: GatewayId,
    (name, dc, wan): (&str, &str, &str),
    api: SocketAddr,
    peer: &PeerVi,
) -> Result<String, ScenarioError> {
    let token = peer_token_file(h, name)?;
    let token_line = format!("token_file = {:?}\n", token.display().to_string());
    let gw = h.tb.gateway(gw);
    Ok(format!(
        "[gateway]\nname = \"{name}\"\nkind = \"iaas\"\ndc = \"{dc}\"\nwan_ip = \"{}\"\n\
         bridge = \"{GATEWAY_BRIDGE}\"\novsdb = \"{}\"\nopenflow = \"unix:{}\"\ntrunk = \"{}\"\n\
         wan_mtu = 9000\nlisten = \"{api}\"\n\n{}",
        addr_of(wan)?,
        gw.ovsdb_target(),
        gw.mgmt_socket(GATEWAY_BRIDGE).display(),
        gw.trunk(),
        peer_and_vi(peer, &token_line)?,
    ))
}

/// A `[[peer]]` with `auth` (its token's line, before `api`, where
/// [`encrypt`] looks for the end of the table) and its `[[vi]]`.
fn peer_and_vi(p: &PeerVi, auth: &str) -> Result<String, ScenarioError> {
    let PeerVi {
        peer,
        wan,
        api,
        vi,
        gre_key,
    } = *p;
    Ok(format!(
        "[[peer]]\nname = \"{peer}\"\nwan_ip = \"{}\"\n{auth}api = \"http://{api}\"\n\n\
         [[vi]]\nid = {vi}\ngre_key = {gre_key}\npeer = \"{peer}\"\nvlans = [\"{VLANS}\"]\n",
        addr_of(wan)?
    ))
}

fn addr_of(cidr: &str) -> Result<Ipv4Addr, ScenarioError> {
    Ok(cidr.parse::<Ipv4Cidr>()?.addr())
}

/// Writes both gateways' configurations, has `iris-gateway check-config`
/// accept them, starts both, and waits until each answers `/healthz` and
/// the controller has classified the HaaS gateway's WAN port into the VI.
pub fn start_gateways(h: &mut Harness, world: &mut World) -> Result<(), ScenarioError> {
    start_gateways_with(h, world, false)
}

/// [`start_gateways`], the GRE between them inside WireGuard when
/// `encrypted`: each gateway's key made now by `iris-gateway genkey`.
pub fn start_gateways_with(
    h: &mut Harness,
    world: &mut World,
    encrypted: bool,
) -> Result<(), ScenarioError> {
    // Each gateway must know the other's API before either starts.
    let (haas_api, iaas_api) = (free_loopback()?, free_loopback()?);
    let to_iaas = PeerVi {
        peer: IAAS_GATEWAY,
        wan: IAAS_WAN,
        api: iaas_api,
        vi: VI,
        gre_key: GRE_KEY,
    };
    let to_haas = PeerVi {
        peer: HAAS_GATEWAY,
        wan: HAAS_WAN,
        api: haas_api,
        ..to_iaas
    };
    let haas = haas_config(h, world, haas_api, &[to_iaas])?;
    let iaas = iaas_config(
        h,
        world.gw_iaas,
        (IAAS_GATEWAY, "acme", IAAS_WAN),
        iaas_api,
        &to_haas,
    )?;
    let (haas, iaas) = if encrypted {
        let haas_key = genkey(h, "gateway-haas.key")?;
        let iaas_key = genkey(h, "gateway-iaas.key")?;
        // The gateways run in the root namespace (their APIs and the
        // controller's are on its loopback); WireGuard runs in the node's.
        let haas_ns = h.tb.pm(world.gw_haas).netns().path();
        let iaas_ns = h.tb.gateway(world.gw_iaas).netns().path();
        (
            encrypt(&haas, (&haas_key, 1), &haas_ns, &iaas_api, (&iaas_key, 2)),
            encrypt(&iaas, (&iaas_key, 2), &iaas_ns, &haas_api, (&haas_key, 1)),
        )
    } else {
        (haas, iaas)
    };
    let ids = launch_gateways(
        h,
        &[
            ("gateway-haas", haas, haas_api),
            ("gateway-iaas", iaas, iaas_api),
        ],
        &[VI],
    )?;
    world.gateways = Some(Gateways {
        haas: ids[0],
        iaas: ids[1],
        haas_api,
        iaas_api,
    });
    Ok(())
}

/// A gateway's key pair: the private key's file and the public key.
struct GatewayKey {
    file: PathBuf,
    public: String,
}

/// Writes a new WireGuard key with `iris-gateway genkey`.
fn genkey(h: &Harness, name: &str) -> Result<GatewayKey, ScenarioError> {
    let file = h.file(name);
    let _ = std::fs::remove_file(&file);
    let binary = h.gateway_binary();
    let out = std::process::Command::new(binary)
        .arg("genkey")
        .arg(&file)
        .output()
        .map_err(|e| crate::Error::io(format!("running {}", binary.display()), e))?;
    check(out.status.success(), || {
        format!(
            "iris-gateway genkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(GatewayKey {
        file,
        public: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    })
}

/// The encrypted WAN's part of a gateway's `/v1/status`.
fn wireguard_status(api: SocketAddr) -> Result<Value, ScenarioError> {
    Ok(gateway_status(api)?["datapath"]["encryption"].clone())
}

/// Rotates the HaaS gateway's WireGuard key as an operator would, while
/// the IaaS guest pings `hvm_ip` every 10 ms: a new key by `iris-gateway
/// genkey`; the IaaS gateway's file given its public key and SIGHUP (the
/// pair goes on in the session under the old keys); then the HaaS
/// gateway's file given the new private key and SIGHUP (a new session).
/// Every ping is answered.
fn rotate_haas_key(
    h: &mut Harness,
    world: &World,
    ivm: VmId,
    hvm_ip: Ipv4Addr,
) -> Result<(), ScenarioError> {
    let gws = world
        .gateways
        .as_ref()
        .ok_or_else(|| ScenarioError::Failed("the gateways did not start".into()))?;
    let (haas, iaas) = (gws.haas_api, gws.iaas_api);
    let (haas_id, iaas_id) = (gws.haas, gws.iaas);
    let old_public = wireguard_status(haas)?["public_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let next = genkey(h, "gateway-haas-next.key")?;
    let run = h.ping_run(
        ivm,
        PingPlan::new(hvm_ip, KEY_ROTATION_PINGS, Duration::from_millis(10)),
        "key-rotation",
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    rewrite(&h.file("gateway-iaas.toml"), &old_public, &next.public)?;
    h.tb.process(iaas_id)
        .signal(nix::sys::signal::Signal::SIGHUP)?;
    poll_until("the IaaS gateway holding the new key", CONVERGE, || {
        let peer = match wireguard_status(iaas) {
            Ok(e) => e["peers"][0].clone(),
            Err(e) => return Ok(Probe::NotYet(e.to_string())),
        };
        Ok(
            if peer["public_key"] == next.public.as_str() && peer["old_session"] == true {
                Probe::Ready(())
            } else {
                Probe::NotYet(peer.to_string())
            },
        )
    })?;
    let old_file = h.file("gateway-haas.key");
    rewrite(
        &h.file("gateway-haas.toml"),
        &old_file.display().to_string(),
        &next.file.display().to_string(),
    )?;
    h.tb.process(haas_id)
        .signal(nix::sys::signal::Signal::SIGHUP)?;
    for (api, name) in [(haas, "HaaS"), (iaas, "IaaS")] {
        poll_until(
            &format!("the {name} gateway's session under the new keys"),
            CONVERGE,
            || {
                let e = match wireguard_status(api) {
                    Ok(e) => e,
                    Err(e) => return Ok(Probe::NotYet(e.to_string())),
                };
                let peer = &e["peers"][0];
                Ok(
                    if e["rekeys"] == 1 && peer["state"] == "up" && peer["old_session"] == false {
                        Probe::Ready(())
                    } else {
                        Probe::NotYet(e.to_string())
                    },
                )
            },
        )?;
    }
    check(
        wireguard_status(haas)?["public_key"] == next.public.as_str(),
        || "the HaaS gateway's status does not show its new public key".to_owned(),
    )?;
    let rotated = started.elapsed();
    let trace = run.wait(CONVERGE)?;
    let lost = trace.lost();
    h.note(format!(
        "HaaS gateway key rotated by SIGHUP on both gateways in {:.0} ms while pinging every \
         10 ms: {} of {} answered, lost {lost:?}",
        rotated.as_secs_f64() * 1e3,
        trace.summary.received,
        trace.summary.transmitted
    ));
    check(lost.is_empty(), || {
        format!("pings lost while the keys were rotated: {lost:?}")
    })?;
    Ok(())
}

/// Replaces `from` with `to` in the file at `path`, which must hold it.
fn rewrite(path: &std::path::Path, from: &str, to: &str) -> Result<(), ScenarioError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| crate::Error::io_at("reading", path, e))?;
    check(!from.is_empty() && text.contains(from), || {
        format!("{} does not hold {from:?}", path.display())
    })?;
    std::fs::write(path, text.replace(from, to))
        .map_err(|e| crate::Error::io_at("writing", path, e))?;
    Ok(())
}

/// 10 ms pings across a key rotation: long enough for both reloads and
/// the status to show them (published once a second).
const KEY_ROTATION_PINGS: u32 = 600;

/// The inner prefix of the encrypted WAN.
const INNER: &str = "10.254.0";

/// `text`, a gateway's configuration with one peer (whose API is
/// `peer_api`), with its WAN encrypted: its own key and inner host
/// number, the peer's public key and inner host number.
fn encrypt(
    text: &str,
    (own, host): (&GatewayKey, u8),
    netns: &std::path::Path,
    peer_api: &SocketAddr,
    (peer, peer_host): (&GatewayKey, u8),
) -> String {
    let api = format!("api = \"http://{peer_api}\"\n");
    let text = text.replacen(
        &api,
        &format!(
            "{api}\n[peer.encryption]\npublic_key = \"{}\"\ninner_ip = \"{INNER}.{peer_host}\"\n",
            peer.public
        ),
        1,
    );
    format!(
        "{text}\n[wan.encryption]\nprivate_key_file = \"{}\"\naddress = \"{INNER}.{host}/24\"\n\
         netns = \"{}\"\n",
        own.file.display(),
        netns.display()
    )
}

/// Starts one `iris-gateway` per `(name, configuration, API address)`:
/// writes `<name>.toml`, has `check-config` accept it, runs it, and waits
/// until each answers `/healthz` and the controller has classified a WAN
/// port of the HaaS gateway into each of `vis`.
pub fn launch_gateways(
    h: &mut Harness,
    gateways: &[(&str, String, SocketAddr)],
    vis: &[u32],
) -> Result<Vec<ProcessId>, ScenarioError> {
    let binary = h.gateway_binary().to_path_buf();
    let mut paths: Vec<PathBuf> = Vec::new();
    for (name, text, _) in gateways {
        let path = h.file(&format!("{name}.toml"));
        std::fs::write(&path, text).map_err(|e| crate::Error::io_at("writing", &path, e))?;
        let out = std::process::Command::new(&binary)
            .args(["check-config", &path.to_string_lossy()])
            .output()
            .map_err(|e| crate::Error::io(format!("running {}", binary.display()), e))?;
        check(out.status.success(), || {
            format!(
                "iris-gateway check-config refused {name}.toml:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        paths.push(path);
    }
    let mut ids = Vec::new();
    for ((name, _, _), path) in gateways.iter().zip(&paths) {
        let bin = binary.to_string_lossy();
        let cfg = path.to_string_lossy();
        ids.push(h.tb.spawn(crate::Node::Root, name, &[&bin, "run", "--config", &cfg])?);
    }
    for &(_, _, api) in gateways {
        poll_until(&format!("iris-gateway /healthz at {api}"), CONVERGE, || {
            Ok(match crate::controller::http_get(api, "/healthz") {
                Ok((200, _)) => Probe::Ready(()),
                other => Probe::NotYet(format!("{other:?}")),
            })
        })?;
    }
    // The controller sees each WAN port as its VI's port on the gateway.
    let c = h.controller()?;
    for &vi in vis {
        poll_until(
            &format!("the HaaS gateway's WAN port in VI {vi}"),
            CONVERGE,
            || {
                let ports = c.get_json(&format!("/v1/vm-ports?host={HAAS_GATEWAY}"))?;
                let found = ports
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["vi"] == vi));
                Ok(if found {
                    Probe::Ready(())
                } else {
                    Probe::NotYet(ports.to_string())
                })
            },
        )?;
    }
    Ok(ids)
}

/// A gateway's `/v1/status`.
pub fn gateway_status(api: SocketAddr) -> Result<Value, ScenarioError> {
    let (status, body) = crate::controller::http_get(api, "/v1/status")?;
    check(status == 200, || {
        format!("GET {api}/v1/status: {status} {body}")
    })?;
    serde_json::from_str(&body)
        .map_err(|e| ScenarioError::Failed(format!("{api}/v1/status is not JSON ({e}): {body}")))
}

/// RTTs across the WAN at one configured delay.
#[derive(Debug, Clone, Serialize)]
pub struct RttAt {
    pub one_way_delay_ms: f64,
    pub pings: u32,
    pub received: u32,
    pub rtt_min_ms: f64,
    pub rtt_avg_ms: f64,
    pub rtt_max_ms: f64,
}

/// `count` pings from `from` to `to`, `interval` apart, after the WAN was
/// set to `delay` one way.
pub fn rtt_at(
    h: &mut Harness,
    world: &World,
    delay: Duration,
    from: VmId,
    to: Ipv4Addr,
    count: u32,
    interval: Duration,
) -> Result<RttAt, ScenarioError> {
    h.tb.wan_mut(world.wan)
        .set_impairment(Impairment::delay(delay))?;
    // The relay restarted: let the path come back before timing it.
    h.tb.vm(from).wait_reachable(to, CONVERGE)?;
    ping_rtt(h, delay, from, to, count, interval)
}

/// `count` pings from `from` to `to`, `interval` apart, as they are now;
/// labelled with the WAN's one-way `delay`.
pub fn ping_rtt(
    h: &Harness,
    delay: Duration,
    from: VmId,
    to: Ipv4Addr,
    count: u32,
    interval: Duration,
) -> Result<RttAt, ScenarioError> {
    let report = h.tb.vm(from).ping(to, count, interval)?;
    let rtt = report.rtt.ok_or_else(|| {
        ScenarioError::Failed(format!(
            "no reply from {to} at {} ms: {report:?}",
            ms(delay)
        ))
    })?;
    Ok(RttAt {
        one_way_delay_ms: ms(delay),
        pings: report.transmitted,
        received: report.received,
        rtt_min_ms: ms(rtt.min),
        rtt_avg_ms: ms(rtt.avg),
        rtt_max_ms: ms(rtt.max),
    })
}

/// A 1500-byte IPv4 packet with DF set (`ping -M do -s 1472`) goes from
/// `from` to `to` and back whole: the WAN carries a full guest frame with
/// its tag inside GRE, nothing is fragmented.
pub fn full_sized_frames_cross(h: &Harness, from: VmId, to: Ipv4Addr) -> Result<(), ScenarioError> {
    let crossed =
        crate::ping::full_sized_crosses(h.tb.vm(from).netns(), to, Duration::from_secs(2))?;
    check(crossed, || {
        format!("a 1500-byte packet with DF set did not cross the WAN to {to}")
    })
}

/// What `intercloud` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub setup_s: f64,
    pub rtt: Vec<RttAt>,
    /// ARP requests the controller sent toward the gateway (across the
    /// WAN) while the HaaS guest asked again for every address it knows.
    pub arp_wan_crossings_after_warmup: f64,
    /// Where the controller placed the IaaS guest.
    pub iaas_guest_location: Value,
    pub haas_gateway: Value,
    pub iaas_gateway: Value,
}

/// The one-way delays `intercloud` pings at.
const DELAYS_MS: [u64; 3] = [0, 10, 100];
const PINGS: u32 = 10;
const INTERVAL: Duration = Duration::from_millis(200);

/// `intercloud`: an IaaS guest and a guest on a HaaS L1 node ping each
/// other across the WAN at 0, 10 and 100 ms one-way delay; the IaaS
/// guest's MAC ends behind the HaaS gateway in the registry, and once the
/// registry knows the operator's addresses no ARP crosses the WAN.
pub fn run(h: &mut Harness) -> Result<Report, ScenarioError> {
    run_with(h, false)
}

/// `intercloud-encrypted`: [`run`] with the gateways' GRE inside WireGuard,
/// and a capture on the IaaS gateway's WAN cable while the guests ping
/// across it holds WireGuard's UDP and ARP only: no GRE, nothing else.
pub fn run_encrypted(h: &mut Harness) -> Result<Value, ScenarioError> {
    let report = run_with(h, true)?;
    for gw in [&report.haas_gateway, &report.iaas_gateway] {
        let peer = &gw["datapath"]["encryption"]["peers"][0];
        check(peer["state"] == "up", || {
            format!("a gateway's WireGuard session is not up: {gw}")
        })?;
    }
    super::harness::to_json(&report)
}

/// Every IPv4 frame of `frames` is WireGuard's UDP; the others are ARP.
fn only_wireguard(frames: &[crate::frames::Captured]) -> Result<usize, ScenarioError> {
    let port = crate::wan::WIREGUARD_PORT.to_be_bytes();
    let mut wireguard = 0;
    for f in frames {
        let d = &f.data;
        let ethertype = d.get(12..14);
        let is_wg = ethertype == Some(&[0x08, 0x00][..])
            && d.get(23) == Some(&17)
            && (d.get(34..36) == Some(&port[..]) || d.get(36..38) == Some(&port[..]));
        check(is_wg || ethertype == Some(&[0x08, 0x06][..]), || {
            format!(
                "not WireGuard on the encrypted WAN: {:02x?}",
                &d[..d.len().min(48)]
            )
        })?;
        wireguard += usize::from(is_wg);
    }
    Ok(wireguard)
}

fn run_with(h: &mut Harness, encrypted: bool) -> Result<Report, ScenarioError> {
    let start = Instant::now();
    let mut world = build(h, 2, 2, Duration::ZERO)?;
    start_controller(h, &world)?;
    start_gateways_with(h, &mut world, encrypted)?;
    h.wait_classified(&world.haas_vms)?;
    let setup_s = start.elapsed().as_secs_f64();
    h.note(format!("world up in {setup_s:.1} s"));

    let (hvm, ivm) = (world.haas_vms[0], world.iaas_vms[0]);
    let hvm_ip = h.tb.vm(hvm).vlans()[0].ip.addr();
    let ivm_ip = h.tb.vm(ivm).ip().addr();
    // A seeded guest is placed by its first frame, as a booting guest's
    // DHCP or ARP would place it.
    h.tb.vm(hvm).wait_reachable(ivm_ip, CONVERGE)?;
    h.tb.vm(ivm).wait_reachable(hvm_ip, CONVERGE)?;
    if encrypted {
        let site = h.tb.wan(world.wan).site(1);
        let capture = crate::frames::Capture::start(&site.netns, &site.iface.name)?;
        let report = h.tb.vm(ivm).ping(hvm_ip, 10, INTERVAL)?;
        check(report.all_replied(), || {
            format!("pings across the encrypted WAN: {report:?}")
        })?;
        let frames = capture.finish()?;
        let wireguard = only_wireguard(&frames)?;
        check(wireguard >= 20, || {
            format!("{wireguard} WireGuard datagrams for 10 pings and their replies")
        })?;
        h.note(format!(
            "the IaaS gateway's WAN cable carried {} frames during 10 pings: {wireguard} \
             WireGuard datagrams, the rest ARP; no GRE",
            frames.len()
        ));
        rotate_haas_key(h, &world, ivm, hvm_ip)?;
    }

    let mut rtt = Vec::new();
    for d in DELAYS_MS {
        let delay = Duration::from_millis(d);
        let one = rtt_at(h, &world, delay, ivm, hvm_ip, PINGS, INTERVAL)?;
        h.note(format!(
            "{d} ms one way: {}/{} replies, RTT min {} ms avg {} ms",
            one.received, one.pings, one.rtt_min_ms, one.rtt_avg_ms
        ));
        check(one.received == one.pings, || {
            format!("pings lost at {d} ms: {one:?}")
        })?;
        check(one.rtt_min_ms >= 2.0 * one.one_way_delay_ms, || {
            format!("the RTT at {d} ms one way is shorter than the WAN's: {one:?}")
        })?;
        rtt.push(one);
    }
    h.tb.wan_mut(world.wan)
        .set_impairment(Impairment::default())?;
    h.tb.vm(ivm).wait_reachable(hvm_ip, CONVERGE)?;
    full_sized_frames_cross(h, ivm, hvm_ip)?;

    // The registry has the IaaS guest behind the HaaS gateway.
    let c = h.controller()?;
    let ivm_mac = h.tb.vm(ivm).mac();
    let path = format!("/v1/registry/{VI}/{VLAN}/{ivm_mac}");
    let entry = c.get_json(&path)?;
    check(
        entry["location"]["kind"] == "gateway" && entry["location"]["gateway"] == HAAS_GATEWAY,
        || format!("{path}: {entry}"),
    )?;

    // A HaaS guest that has never sent a frame (the registry has its
    // address, not yet its place) is reached from the operator's data
    // center: the IaaS guest, told its MAC, pings it, and the HaaS gateway
    // floods the first request to the VI's hosts, which deliver it.
    let unseen = world.haas_vms[1];
    let unseen_ip = h.tb.vm(unseen).vlans()[0].ip.addr();
    let unseen_mac = h.tb.vm(unseen).mac().to_string();
    let ivm_dev = h.tb.vm(ivm).interface().to_owned();
    h.tb.vm(ivm).exec(&[
        "ip",
        "neigh",
        "replace",
        &unseen_ip.to_string(),
        "lladdr",
        &unseen_mac,
        "dev",
        &ivm_dev,
    ])?;
    let report = h.tb.vm(ivm).ping(unseen_ip, 3, INTERVAL)?;
    check(report.all_replied(), || {
        format!("pings to a HaaS guest that had not sent a frame yet: {report:?}")
    })?;

    // Warm: every HaaS guest asks again for the other side's address; the
    // answers come from inside the HaaS DC.
    let before = c.metrics()?;
    for &vm in &world.haas_vms {
        let dev = h.tb.vm(vm).vlan_interface(VLAN).map(str::to_owned);
        if let Some(dev) = dev {
            h.tb.vm(vm).exec(&["ip", "neigh", "flush", "dev", &dev])?;
        }
        let report = h.tb.vm(vm).ping(ivm_ip, 3, INTERVAL)?;
        check(report.all_replied(), || {
            format!("after the flush: {report:?}")
        })?;
    }
    let after = h.controller()?.metrics()?;
    let crossings = after
        .gained(&before, "iris_packet_ins_total", "reason")
        .get("arp_to_gateway")
        .copied()
        .unwrap_or(0.0);
    check(crossings == 0.0, || {
        format!("{crossings} ARP requests crossed the WAN for an address the registry knows")
    })?;

    let gws = world
        .gateways
        .as_ref()
        .ok_or_else(|| ScenarioError::Failed("the gateways did not start".into()))?;
    // Both ends export the WAN port's BFD state and counters.
    for api in [gws.haas_api, gws.iaas_api] {
        let (_, text) = crate::controller::http_get(api, "/metrics")?;
        let up = format!("iris_gateway_wan_up{{port=\"w{VI}-p0\",vi=\"{VI}\"}} 1");
        check(text.contains(&up), || {
            format!("{api}/metrics lacks {up}:\n{text}")
        })?;
    }
    Ok(Report {
        setup_s: (setup_s * 10.0).round() / 10.0,
        rtt,
        arp_wan_crossings_after_warmup: crossings,
        iaas_guest_location: entry["location"].clone(),
        haas_gateway: gateway_status(gws.haas_api)?,
        iaas_gateway: gateway_status(gws.iaas_api)?,
    })
}

/// The controller's configuration for `world`: its PMs, the HaaS gateway
/// node with role gateway, the operator's VI. A scenario that restarts the
/// controller writes it again with the API address the gateway was given.
pub fn controller_config(h: &Harness, world: &World) -> Result<ControllerConfig, ScenarioError> {
    controller_config_with(h, world, vec![operator_vi(h, world)])
}

/// The controller's configuration for the world with `vis`: the HaaS
/// gateway node has role gateway.
fn controller_config_with(
    h: &Harness,
    world: &World,
    vis: Vec<ViEntry>,
) -> Result<ControllerConfig, ScenarioError> {
    let mut config = h.config(&world.pms, vis)?;
    for host in &mut config.hosts {
        if host.name == HAAS_GATEWAY {
            host.role = HostRole::Gateway;
        }
    }
    Ok(config)
}
