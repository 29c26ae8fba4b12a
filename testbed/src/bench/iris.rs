//! Running `iris-controller` against emulated switches.
//!
//! Iris learns a host's VM ports from the host's OVSDB, not from OpenFlow,
//! so each emulated switch is also an emulated host: a real `ovsdb-server`
//! (no `ovs-vswitchd`) whose database already holds `br-int` with ports
//! `p1..pN`, each tagged `external_ids:iris-vi=<VI>` and given the ofport
//! ovs-vswitchd would have assigned. The controller makes the bridge right
//! and builds its GRE mesh there as it would on a real host; the tunnels
//! never get an ofport (nothing runs them), so no flow uses them.
//!
//! Iris meshes every host with every other by GRE. Each database also
//! holds the tunnel ports a controller that managed these hosts before
//! would have left (a restart, in effect), so the controller finds the mesh
//! right instead of creating n·(n−1) ports through n ovsdb-servers at once
//! while the switches connect; were the names to drift, it would correct
//! them like any stale mesh.
//!
//! Each switch is its own tenant: VI `i + 1` has switch `i`'s ports only,
//! so whatever a host's frame changes concerns that one switch, as a
//! learning switch's MAC table concerns only its own switch. For the ARP
//! workload each VI is seeded with the addresses its hosts ask for.

use crate::api_client::ApiClient;
use iris_schemas::northbound::{Healthz, VmPortInfo};
use std::fmt::Write as _;
use std::fs;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::switch::SwitchSpec;
use super::traffic::{known_ip, known_mac};
use super::{BenchError, Workload};
use crate::command::run as run_command;
use crate::host::find_program;
use crate::{Process, VSWITCH_SCHEMA};

const BRIDGE: &str = "br-int";

/// The emulated hosts' databases and the controller's configuration.
#[derive(Debug)]
pub struct Prepared {
    pub config: PathBuf,
    pub api: SocketAddr,
    /// One ovsdb-server per emulated host; stopped when dropped.
    pub ovsdb_servers: Vec<Process>,
}

/// Where the `iris-controller` binary is: `$IRIS_CONTROLLER`, next to this
/// program (both are built into the same target directory), or on PATH.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IRIS_CONTROLLER") {
        return Some(p.into());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("iris-controller")))
        .filter(|p| p.is_file());
    beside.or_else(|| find_program("iris-controller"))
}

fn host_name(s: &SwitchSpec) -> String {
    format!("h{}", s.index)
}

fn vi_id(s: &SwitchSpec) -> u32 {
    u32::from(s.index) + 1
}

/// Where the host's GRE tunnels end.
fn underlay_ip(s: &SwitchSpec) -> Ipv4Addr {
    let [_, _, hi, lo] = (u32::from(s.index) + 1).to_be_bytes();
    Ipv4Addr::new(10, 255, hi, lo)
}

/// The name Iris gives the tunnel port toward `peer` (`gre-` and the
/// address in hex, as its OVSDB manager does).
fn tunnel_name(peer: Ipv4Addr) -> String {
    format!("gre-{:08x}", u32::from(peer))
}

/// Writes every emulated host's database and starts its ovsdb-server, then
/// the controller's configuration (and the VIs' seed files).
pub fn prepare(
    dir: &Path,
    openflow: SocketAddr,
    api: SocketAddr,
    switches: &[SwitchSpec],
    macs: u32,
    workload: Workload,
) -> Result<Prepared, BenchError> {
    for program in ["ovsdb-tool", "ovsdb-server"] {
        if find_program(program).is_none() {
            return Err(BenchError::Host(format!(
                "{program} is missing (package openvswitch-switch); run scripts/install-deps.sh"
            )));
        }
    }
    let mut ovsdb_servers = Vec::with_capacity(switches.len());
    let mut toml = format!(
        "listen = \"{openflow}\"\nplain_openflow = true\napi = \"{api}\"\nstore = \"{}\"\n\n\
         [bridge]\nname = \"{BRIDGE}\"\ndatapath_type = \"netdev\"\n\
         controller = \"tcp:{openflow}\"\n",
        dir.join("store").display()
    );
    for s in switches {
        let host_dir = dir.join(host_name(s));
        fs::create_dir_all(&host_dir).map_err(|e| BenchError::io(&host_dir, e))?;
        let db = host_dir.join("conf.db");
        run_command(
            Command::new("ovsdb-tool")
                .arg("create")
                .arg(&db)
                .arg(VSWITCH_SCHEMA),
        )?;
        run_command(
            Command::new("ovsdb-tool")
                .arg("transact")
                .arg(&db)
                .arg(bridge_transaction(s, switches)),
        )?;
        let socket = host_dir.join("db.sock");
        let mut c = Command::new("ovsdb-server");
        c.arg(&db)
            .arg(format!("--remote=punix:{}", socket.display()))
            .arg(format!(
                "--unixctl={}",
                host_dir.join("ovsdb-server.ctl").display()
            ))
            .arg("--no-chdir");
        let log = host_dir.join("ovsdb-server.log");
        ovsdb_servers.push(Process::spawn(
            format!("ovsdb-server of {}", host_name(s)),
            c,
            Some(&log),
        )?);
        let _ = write!(
            toml,
            "\n[[host]]\nname = \"{}\"\nunderlay_ip = \"{}\"\nrole = \"compute\"\n\
             ovsdb = \"unix:{}\"\ndatapath_id = \"{:016x}\"\n",
            host_name(s),
            underlay_ip(s),
            socket.display(),
            s.datapath_id
        );
    }
    for s in switches {
        let vi = vi_id(s);
        let _ = write!(
            toml,
            "\n[[vi]]\nid = {vi}\nname = \"bench{vi}\"\ngre_key = {vi}\n"
        );
        if workload == Workload::Arp {
            let seed = dir.join(format!("vi{vi}.csv"));
            fs::write(&seed, seed_file(s, macs)).map_err(|e| BenchError::io(&seed, e))?;
            let _ = writeln!(toml, "seed = \"{}\"", seed.display());
        }
    }
    let config = dir.join("iris.toml");
    fs::write(&config, toml).map_err(|e| BenchError::io(&config, e))?;
    Ok(Prepared {
        config,
        api,
        ovsdb_servers,
    })
}

/// The transaction that gives a fresh database `br-int` with the switch's
/// ports as VM ports of its VI, ofports assigned, and a GRE tunnel port to
/// every other host.
fn bridge_transaction(s: &SwitchSpec, all: &[SwitchSpec]) -> String {
    let vi = vi_id(s);
    let mut ops = Vec::new();
    let mut ports = Vec::new();
    for peer in all.iter().filter(|p| p.index != s.index) {
        let (name, remote) = (tunnel_name(underlay_ip(peer)), underlay_ip(peer));
        let n = peer.index;
        ops.push(format!(
            r#"{{"op":"insert","table":"Interface","row":{{"name":"{name}","type":"gre","options":["map",[["key","flow"],["remote_ip","{remote}"]]]}},"uuid-name":"ti{n}"}}"#
        ));
        ops.push(format!(
            r#"{{"op":"insert","table":"Port","row":{{"name":"{name}","interfaces":["named-uuid","ti{n}"],"external_ids":["map",[["iris-role","tunnel"]]]}},"uuid-name":"tp{n}"}}"#
        ));
        ports.push(format!(r#"["named-uuid","tp{n}"]"#));
    }
    for p in 1..=s.ports {
        ops.push(format!(
            r#"{{"op":"insert","table":"Interface","row":{{"name":"p{p}","ofport":{p},"external_ids":["map",[["iris-vi","{vi}"]]]}},"uuid-name":"i{p}"}}"#
        ));
        ops.push(format!(
            r#"{{"op":"insert","table":"Port","row":{{"name":"p{p}","interfaces":["named-uuid","i{p}"]}},"uuid-name":"p{p}"}}"#
        ));
        ports.push(format!(r#"["named-uuid","p{p}"]"#));
    }
    ops.push(format!(
        r#"{{"op":"insert","table":"Bridge","row":{{"name":"{BRIDGE}","ports":["set",[{}]]}},"uuid-name":"br"}}"#,
        ports.join(",")
    ));
    ops.push(
        r#"{"op":"insert","table":"Open_vSwitch","row":{"bridges":["named-uuid","br"]}}"#.into(),
    );
    format!(r#"["Open_vSwitch",{}]"#, ops.join(","))
}

/// `mac,ip` for every address the switch's hosts ask for.
fn seed_file(s: &SwitchSpec, macs: u32) -> String {
    let mut csv = String::from("mac,ip\n");
    for i in 0..macs {
        let _ = writeln!(csv, "{},{}", known_mac(s.index, i), known_ip(i));
    }
    csv
}

/// Whether the controller has every switch, every host's OVSDB and every VM
/// port; the text says what is still missing.
pub fn ready(api: SocketAddr, switches: usize, ports: usize) -> Result<(), String> {
    // The control loop answers the API between bursts of switch events; a
    // busy one may take a while (the client allows 10 s).
    let client = ApiClient::new(api, None).map_err(|e| format!("API {api}: {e}"))?;
    let health: Healthz = client
        .get("/healthz")
        .map_err(|e| format!("API {api}: {e}"))?;
    let (sw, db) = (health.health.switches_ready, health.health.ovsdb_connected);
    if sw != switches || db != switches {
        return Err(format!(
            "{sw} of {switches} switches ready, {db} OVSDB sessions up"
        ));
    }
    let vm_ports: Vec<VmPortInfo> = client
        .get("/v1/vm-ports")
        .map_err(|e| format!("API {api}: {e}"))?;
    let n = vm_ports.len();
    if n != switches * ports {
        return Err(format!("{n} of {} VM ports known", switches * ports));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SwitchSpec {
        SwitchSpec {
            index: 2,
            datapath_id: 3,
            ports: 2,
            n_buffers: 0,
        }
    }

    #[test]
    fn the_bridge_transaction_is_json_with_tagged_numbered_ports_and_the_mesh() {
        let peer = SwitchSpec { index: 0, ..spec() };
        let all = [peer, spec()];
        let t: serde_json::Value =
            serde_json::from_str(&bridge_transaction(&spec(), &all)).unwrap();
        let ops = t.as_array().unwrap();
        assert_eq!(ops[0], "Open_vSwitch");
        let tunnel = &ops[1]["row"];
        assert_eq!(tunnel["name"], "gre-0aff0001");
        assert_eq!(tunnel["type"], "gre");
        assert_eq!(tunnel["options"][1][1][1], "10.255.0.1");
        assert_eq!(ops[2]["row"]["external_ids"][1][0][1], "tunnel");
        let iface = &ops[5]["row"];
        assert_eq!(iface["name"], "p2");
        assert_eq!(iface["ofport"], 2);
        assert_eq!(iface["external_ids"][1][0][1], "3");
        assert_eq!(ops[7]["row"]["ports"][1].as_array().unwrap().len(), 3);
    }

    #[test]
    fn seeds_are_the_addresses_the_hosts_ask_for() {
        let csv = seed_file(&spec(), 2);
        assert_eq!(
            csv,
            "mac,ip\n06:00:02:00:00:00,10.128.0.1\n06:00:02:00:00:01,10.128.0.2\n"
        );
    }
}
