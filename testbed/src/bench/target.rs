//! The controllers under test: how each is installed, configured, started
//! on a loopback port, and what a switch running its pipeline would send it.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ofp::message::PacketInReason;

use super::iris;
use super::switch::{PacketInProfile, SwitchSpec};
use super::traffic::FrameKind;
use super::{BenchError, Workload};
use crate::host::find_program;
use crate::Process;

/// The os-ken learning switch, written into each run's directory.
const OSKEN_APP: &str = include_str!("../../bench/osken_learning_switch.py");
/// Installs a missing peer; the same file `make bench` runs.
const INSTALL_PEERS: &str = include_str!("../../bench/install-peers.sh");

/// Iris's interception table and ARP table (docs/pipeline.md).
const IRIS_TABLE_INTERCEPT: u8 = 1;
const IRIS_TABLE_ARP: u8 = 2;
/// Iris's cookie prefix ("IR"); the rest is a hash of the flow's
/// instructions, which Iris does not read back from PacketIns.
const IRIS_COOKIE: u64 = 0x4952 << 48;

/// Faucet's cookie for every flow it owns; it drops PacketIns without it.
const FAUCET_COOKIE: u64 = 0x5ada_1e55;
/// Faucet's eth_src table, which sends unknown sources up, in its minimal
/// pipeline (vlan, eth_src, eth_dst, flood).
const FAUCET_ETH_SRC_TABLE: u8 = 1;
const FAUCET_VLAN: u16 = 100;

/// A controller the benchmark can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// `iris-controller`, with an ovsdb-server per emulated switch.
    Iris,
    /// Open vSwitch's learning switch (`ovs-testcontroller`), C.
    OvsTestcontroller,
    /// An os-ken learning switch app (`osken-manager`), Python.
    OsKen,
    /// Faucet on os-ken, Python.
    Faucet,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Iris => "iris",
            Self::OvsTestcontroller => "ovs-testcontroller",
            Self::OsKen => "os-ken",
            Self::Faucet => "faucet",
        })
    }
}

/// Everything a controller needs to know about a run to be started for it.
#[derive(Debug)]
pub struct RunEnv<'a> {
    /// The run's own directory: configuration files and logs.
    pub dir: &'a Path,
    pub openflow: SocketAddr,
    pub switches: &'a [SwitchSpec],
    pub macs: u32,
    pub workload: Workload,
    /// Where the Python peers' venv lives.
    pub cache: &'a Path,
    /// The `iris-controller` to run, when not the one found by
    /// [`iris::binary`].
    pub iris_controller: Option<&'a Path>,
}

/// A started controller.
#[derive(Debug)]
pub struct Running {
    pub process: Process,
    /// What the controller says its version is.
    pub version: String,
    /// Iris's northbound API, which says when it knows every switch.
    pub api: Option<SocketAddr>,
    /// Processes the controller needs (Iris's emulated hosts' OVSDB),
    /// stopped after it.
    pub helpers: Vec<Process>,
}

impl Target {
    /// The frames a workload becomes for this controller (and the VLAN tag
    /// they carry when they go up), and the PacketIn header a switch
    /// running its pipeline would put on them.
    pub fn packet_ins(self, workload: Workload) -> (FrameKind, Option<u16>, PacketInProfile) {
        let peer_frames = match workload {
            Workload::Learning => FrameKind::Unicast,
            Workload::Arp => FrameKind::ArpRequest,
        };
        match self {
            // Iris learns VMs from their announcements, caught by table 1
            // (interception); ARP for a target the switch has no responder
            // flow for yet goes up from table 2 (see docs/pipeline.md).
            Self::Iris => {
                let (frames, table_id) = match workload {
                    Workload::Learning => (FrameKind::Garp, IRIS_TABLE_INTERCEPT),
                    Workload::Arp => (FrameKind::ArpRequest, IRIS_TABLE_ARP),
                };
                let profile = PacketInProfile {
                    reason: PacketInReason::Action,
                    table_id,
                    cookie: IRIS_COOKIE,
                    // Table 1 sends an announcement up and on; table 2
                    // stops the ARP request it sends up.
                    forwarded: workload == Workload::Learning,
                };
                (frames, None, profile)
            }
            // Both install a table-miss flow (priority 0, no match) that
            // outputs to the controller, which OVS reports as no_match.
            Self::OvsTestcontroller | Self::OsKen => {
                let profile = PacketInProfile {
                    reason: PacketInReason::NoMatch,
                    table_id: 0,
                    cookie: 0,
                    forwarded: false,
                };
                (peer_frames, None, profile)
            }
            // Faucet's VLAN table tags frames from untagged ports before its
            // eth_src table sends them up; Faucet drops untagged PacketIns.
            // That table's miss sends an unknown source to the controller
            // and on to the eth_dst table, which floods it.
            Self::Faucet => {
                let profile = PacketInProfile {
                    reason: PacketInReason::Action,
                    table_id: FAUCET_ETH_SRC_TABLE,
                    cookie: FAUCET_COOKIE,
                    forwarded: true,
                };
                (peer_frames, Some(FAUCET_VLAN), profile)
            }
        }
    }

    /// How many switches the controller serves at all, when it has a limit:
    /// ovs-testcontroller never answers a 17th connection (it is built
    /// with room for 16 switches).
    pub fn max_switches(self) -> Option<u32> {
        match self {
            Self::OvsTestcontroller => Some(16),
            Self::Iris | Self::OsKen | Self::Faucet => None,
        }
    }

    /// Installs the controller when it is missing (see
    /// `testbed/bench/install-peers.sh`).
    pub fn ensure_installed(self, env: &RunEnv<'_>) -> Result<(), BenchError> {
        if self.program(env).is_some() {
            return Ok(());
        }
        let peer =
            match self {
                Self::Iris => return Err(BenchError::Host(
                    "iris-controller is not built; run `cargo build --release -p iris-controller` \
                     (it is looked for next to iris-testbed, then on PATH, or set IRIS_CONTROLLER)"
                        .into(),
                )),
                Self::OvsTestcontroller => "ovs-testcontroller",
                Self::OsKen | Self::Faucet => "python",
            };
        let script = env.dir.join("install-peers.sh");
        fs::write(&script, INSTALL_PEERS).map_err(|e| BenchError::io(&script, e))?;
        let status = Command::new("bash")
            .arg(&script)
            .arg(peer)
            .env("IRIS_BENCH_CACHE", env.cache)
            // Its messages (apt's, pip's) go to stderr: stdout carries the
            // bench's `--json` report alone.
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| BenchError::io(&script, e))?;
        match self.program(env) {
            Some(_) if status.success() => Ok(()),
            _ => Err(BenchError::Host(format!(
                "{self} is not installed and installing it failed ({status}); \
                 run testbed/bench/install-peers.sh {peer} and read its messages"
            ))),
        }
    }

    fn program(self, env: &RunEnv<'_>) -> Option<PathBuf> {
        let venv_bin = |name: &str| {
            let p = env.cache.join("venv/bin").join(name);
            p.is_file().then_some(p)
        };
        match self {
            Self::Iris => env
                .iris_controller
                .map(Path::to_path_buf)
                .or_else(iris::binary),
            Self::OvsTestcontroller => find_program("ovs-testcontroller"),
            Self::OsKen => venv_bin("osken-manager"),
            Self::Faucet => venv_bin("faucet"),
        }
    }

    /// Writes the controller's configuration into the run directory and
    /// starts it listening on `env.openflow`.
    pub fn start(self, env: &RunEnv<'_>) -> Result<Running, BenchError> {
        let program = self.program(env).ok_or_else(|| {
            BenchError::Host(format!(
                "{self} is not installed; run testbed/bench/install-peers.sh"
            ))
        })?;
        let port = env.openflow.port().to_string();
        let host = env.openflow.ip().to_string();
        let log = env.dir.join(format!("{self}.log"));
        let mut api = None;
        let mut helpers = Vec::new();
        let (command, version) = match self {
            Self::Iris => {
                let api_addr = SocketAddr::from((env.openflow.ip(), super::free_port()?));
                let prepared = iris::prepare(
                    env.dir,
                    env.openflow,
                    api_addr,
                    env.switches,
                    env.macs,
                    env.workload,
                )?;
                api = Some(prepared.api);
                helpers = prepared.ovsdb_servers;
                let mut c = Command::new(&program);
                c.arg("run").arg("--config").arg(&prepared.config);
                let version = first_line(Command::new(&program).arg("--version"));
                (c, version)
            }
            Self::OvsTestcontroller => {
                let mut c = Command::new(&program);
                c.arg("-O")
                    .arg("OpenFlow13")
                    .arg("--no-chdir")
                    .arg(format!(
                        "--unixctl={}",
                        env.dir.join("ovs-testcontroller.ctl").display()
                    ))
                    .arg(format!("ptcp:{port}:{host}"));
                let version = first_line(Command::new(&program).arg("--version"));
                (c, version)
            }
            Self::OsKen => {
                let app = env.dir.join("osken_learning_switch.py");
                fs::write(&app, OSKEN_APP).map_err(|e| BenchError::io(&app, e))?;
                let mut c = Command::new(&program);
                c.arg("--ofp-tcp-listen-port")
                    .arg(&port)
                    .arg("--ofp-listen-host")
                    .arg(&host)
                    .arg(&app);
                (
                    c,
                    format!("os-ken {}", python_package_version(env.cache, "os-ken")),
                )
            }
            Self::Faucet => {
                let config = env.dir.join("faucet.yaml");
                fs::write(&config, faucet_config(env.switches, env.macs))
                    .map_err(|e| BenchError::io(&config, e))?;
                let mut c = Command::new(&program);
                // Faucet execs osken-manager from PATH.
                c.env("PATH", venv_path(env.cache))
                    .arg("--ryu-ofp-tcp-listen-port")
                    .arg(&port)
                    .arg("--ryu-ofp-listen-host")
                    .arg(&host)
                    .env("FAUCET_CONFIG", &config)
                    .env("FAUCET_LOG", env.dir.join("faucet-events.log"))
                    .env(
                        "FAUCET_EXCEPTION_LOG",
                        env.dir.join("faucet-exceptions.log"),
                    )
                    .env("FAUCET_CONFIG_STAT_RELOAD", "0")
                    .env("FAUCET_PROMETHEUS_ADDR", "127.0.0.1")
                    .env("FAUCET_PROMETHEUS_PORT", super::free_port()?.to_string());
                (
                    c,
                    format!("faucet {}", python_package_version(env.cache, "faucet")),
                )
            }
        };
        let process = Process::spawn(self.to_string(), command, Some(&log))?;
        Ok(Running {
            process,
            version,
            api,
            helpers,
        })
    }
}

/// Faucet's configuration: one datapath per emulated switch, all ports
/// untagged in one VLAN. Learning limits are raised above the run's host
/// count, and `ignore_learn_ins` (which drops every n-th PacketIn by
/// default to shed load) is off, so Faucet works on every PacketIn the
/// other controllers get.
fn faucet_config(switches: &[SwitchSpec], macs: u32) -> String {
    use fmt::Write;
    let limit = macs.saturating_mul(2).max(256);
    let mut y = format!("vlans:\n  bench:\n    vid: {FAUCET_VLAN}\n    max_hosts: {limit}\ndps:\n");
    for s in switches {
        let _ = write!(
            y,
            "  sw{}:\n    dp_id: {}\n    hardware: \"Open vSwitch\"\n    cookie: {FAUCET_COOKIE}\n    \
             ignore_learn_ins: 0\n    interfaces:\n",
            s.index, s.datapath_id
        );
        for p in 1..=s.ports {
            let _ = write!(
                y,
                "      {p}:\n        native_vlan: bench\n        max_hosts: {limit}\n"
            );
        }
    }
    y
}

/// PATH with the venv's bin directory first.
fn venv_path(cache: &Path) -> std::ffi::OsString {
    let bin = cache.join("venv/bin");
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&rest))).unwrap_or(rest)
}

/// The first line a command prints, or what went wrong running it.
fn first_line(command: &mut Command) -> String {
    match command.output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
        Err(e) => format!("unknown ({e})"),
    }
}

fn python_package_version(cache: &Path, package: &str) -> String {
    first_line(
        Command::new(cache.join("venv/bin/python"))
            .arg("-c")
            .arg("import sys, importlib.metadata as m; print(m.version(sys.argv[1]))")
            .arg(package),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faucet_config_names_every_datapath_and_port() {
        let switches: Vec<SwitchSpec> = (0..2)
            .map(|i| SwitchSpec {
                index: i,
                datapath_id: u64::from(i) + 1,
                ports: 2,
                n_buffers: 0,
            })
            .collect();
        let y = faucet_config(&switches, 1000);
        assert!(y.contains("  sw1:\n    dp_id: 2\n"));
        assert_eq!(y.matches("native_vlan: bench").count(), 4);
        assert_eq!(y.matches("max_hosts: 2000").count(), 5);
        assert!(y.contains(&format!("cookie: {FAUCET_COOKIE}")));
    }
}
