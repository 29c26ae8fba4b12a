//! OVN on testbed PMs, the peer Iris is compared with: the northbound and
//! southbound ovsdb-servers and `ovn-northd` on unix sockets in a directory
//! of their own, and each PM made a chassis by an `ovn-controller` of its
//! own that drives the PM's `br-int` (userspace datapath) and tunnels with
//! Geneve between the PMs' underlay addresses, which sit on the netdev
//! bridge `br-ul` as OVS's userspace tunnelling needs.
//!
//! ```text
//!   nb.sock ── ovn-northd ── sb.sock ──┬── ovn-controller (pm1) ── pm1's OVS
//!   (ovn-nbctl)                        ├── ovn-controller (pm2) ── pm2's OVS
//!                                      └── ovn-controller (pm3) ── pm3's OVS
//! ```
//!
//! Every daemon runs in the foreground as a child of this process and is
//! stopped when [`Ovn`] is dropped (the chassis first), so that nothing is
//! left running whatever happens to the caller. The packages' own services
//! are not used (scripts/install-deps.sh disables them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::command::{program, run};
use crate::error::{Error, Result};
use crate::pm::{Pm, INTEGRATION_BRIDGE};
use crate::process::{Process, STOP_GRACE};
use crate::readiness::{poll_until, Probe};

const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
const SB_SCHEMA: &str = "/usr/share/ovn/ovn-sb.ovsschema";
/// Bound on every `ovn-nbctl`/`ovn-sbctl` call; `--wait=hv` waits for
/// every chassis, which a loaded host makes slow.
const CLIENT_TIMEOUT_SECS: u32 = 30;
/// How long a daemon may take to answer after it started.
const START: Duration = Duration::from_secs(30);
/// The OpenFlow versions `ovn-controller` speaks (1.5) besides the one
/// the testbed gives `br-int` for Iris (1.3).
const PROTOCOLS: &str = "protocols=OpenFlow10,OpenFlow13,OpenFlow15";

/// One PM's `ovn-controller`.
#[derive(Debug)]
struct Chassis {
    name: String,
    process: Process,
}

/// A running OVN: its central daemons and its chassis.
#[derive(Debug)]
pub struct Ovn {
    // Dropped in this order: the chassis before the databases they use.
    chassis: Vec<Chassis>,
    northd: Option<Process>,
    sb: Option<Process>,
    nb: Option<Process>,
    dir: PathBuf,
}

impl Ovn {
    /// Creates both databases in `dir` (which must exist) and starts their
    /// ovsdb-servers and `ovn-northd`; returns once northd answers and
    /// both databases do.
    pub fn start(dir: &Path) -> Result<Self> {
        for schema in [NB_SCHEMA, SB_SCHEMA] {
            if !Path::new(schema).is_file() {
                return Err(Error::Host {
                    problem: format!(
                        "{schema} is missing: OVN (ovn-central, ovn-host) is not installed; {}",
                        crate::INSTALL_ADVICE
                    ),
                });
            }
        }
        let mut ovn = Self {
            chassis: Vec::new(),
            northd: None,
            sb: None,
            nb: None,
            dir: dir.to_path_buf(),
        };
        ovn.nb = Some(ovn.database("nb", NB_SCHEMA)?);
        ovn.sb = Some(ovn.database("sb", SB_SCHEMA)?);
        let mut northd = Command::new("ovn-northd");
        northd.args([
            format!("--ovnnb-db={}", ovn.target("nb")),
            format!("--ovnsb-db={}", ovn.target("sb")),
            format!("--unixctl={}", ovn.path("northd.ctl")),
            format!("--log-file={}", ovn.path("northd.log")),
            "-vconsole:off".to_owned(),
        ]);
        ovn.set_env(&mut northd, dir);
        let mut process = Process::spawn("ovn-northd", northd, Some(&dir.join("northd.stderr")))?;
        let ctl = ovn.path("northd.ctl");
        poll_until("ovn-northd answering", START, || {
            process.ensure_running()?;
            Ok(
                match run(&mut program("ovn-appctl", &["-t", &ctl, "status"])) {
                    Ok(s) => Probe::Ready(s),
                    Err(e) => Probe::NotYet(e.to_string()),
                },
            )
        })?;
        ovn.northd = Some(process);
        Ok(ovn)
    }

    /// The directory of the databases, sockets and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// `unix:<dir>/<db>.sock`.
    fn target(&self, db: &str) -> String {
        format!("unix:{}", self.path(&format!("{db}.sock")))
    }

    /// Keeps every OVS/OVN program's default files (pidfiles, control
    /// sockets) in `dir`, away from the system's.
    fn set_env(&self, command: &mut Command, dir: &Path) {
        for var in [
            "OVS_RUNDIR",
            "OVS_DBDIR",
            "OVS_LOGDIR",
            "OVN_RUNDIR",
            "OVN_DBDIR",
            "OVN_LOGDIR",
        ] {
            command.env(var, dir);
        }
    }

    /// Creates `<db>.db` from `schema` and serves it on `<db>.sock`.
    fn database(&self, db: &str, schema: &str) -> Result<Process> {
        let file = self.path(&format!("{db}.db"));
        run(&mut program("ovsdb-tool", &["create", &file, schema]))?;
        let mut command = Command::new("ovsdb-server");
        command.args([
            file,
            format!("--remote=punix:{}", self.path(&format!("{db}.sock"))),
            format!("--unixctl={}", self.path(&format!("{db}.ctl"))),
            format!("--log-file={}", self.path(&format!("{db}.log"))),
            "-vconsole:off".to_owned(),
        ]);
        self.set_env(&mut command, &self.dir);
        let mut process = Process::spawn(
            format!("ovsdb-server ({db})"),
            command,
            Some(&self.dir.join(format!("{db}.stderr"))),
        )?;
        let target = self.target(db);
        poll_until(&format!("the OVN {db} database"), START, || {
            process.ensure_running()?;
            Ok(
                match run(&mut program("ovsdb-client", &["list-dbs", &target])) {
                    Ok(_) => Probe::Ready(()),
                    Err(e) => Probe::NotYet(e.to_string()),
                },
            )
        })?;
        Ok(process)
    }

    /// `ovn-nbctl args…` on the northbound database; its stdout.
    pub fn nbctl(&self, args: &[&str]) -> Result<String> {
        self.client("ovn-nbctl", "nb", args)
    }

    /// `ovn-sbctl args…` on the southbound database; its stdout.
    pub fn sbctl(&self, args: &[&str]) -> Result<String> {
        self.client("ovn-sbctl", "sb", args)
    }

    fn client(&self, tool: &str, db: &str, args: &[&str]) -> Result<String> {
        let mut command = Command::new(tool);
        command
            .arg(format!("--db={}", self.target(db)))
            .arg(format!("--timeout={CLIENT_TIMEOUT_SECS}"))
            .args(args);
        self.set_env(&mut command, &self.dir);
        run(&mut command)
    }

    /// Waits until northd has compiled the northbound database and every
    /// chassis has installed the result (`ovn-nbctl --wait=hv sync`).
    pub fn sync(&self) -> Result<()> {
        self.nbctl(&["--wait=hv", "sync"]).map(drop)
    }

    /// Makes `pm` a chassis (named after its OVS `system-id`): points its
    /// OVS at the southbound database with its underlay address as the
    /// Geneve endpoint, and starts its `ovn-controller` in its namespace.
    /// Returns once the chassis is registered. `br-int` keeps its
    /// userspace datapath.
    pub fn add_chassis(&mut self, pm: &Pm) -> Result<String> {
        let name = pm
            .vsctl(&["get", "Open_vSwitch", ".", "external_ids:system-id"])?
            .trim()
            .trim_matches('"')
            .to_owned();
        let encap_ip = pm.underlay_addr().addr();
        pm.vsctl(&["set", "Bridge", INTEGRATION_BRIDGE, PROTOCOLS])?;
        pm.vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            &format!("external_ids:ovn-remote={}", self.target("sb")),
            "external_ids:ovn-encap-type=geneve",
            &format!("external_ids:ovn-encap-ip={encap_ip}"),
            &format!("external_ids:ovn-bridge={INTEGRATION_BRIDGE}"),
            "external_ids:ovn-bridge-datapath-type=netdev",
        ])?;
        let dir = self.dir.join(format!("chassis-{name}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io_at("creating", &dir, e))?;
        let file = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let mut command = pm.netns().command("ovn-controller");
        command.args([
            pm.ovsdb_unix_target(),
            format!("--log-file={}", file("ovn-controller.log")),
            "-vconsole:off".to_owned(),
        ]);
        // Its control socket (it takes no --unixctl) goes in OVN_RUNDIR.
        self.set_env(&mut command, &dir);
        // ovn-controller reaches vswitchd through `<OVS_RUNDIR>/br-int.mgmt`.
        command.env("OVS_RUNDIR", pm.ovs().dir());
        let mut process = Process::spawn(
            format!("ovn-controller ({name})"),
            command,
            Some(&dir.join("ovn-controller.stderr")),
        )?;
        let what = format!("chassis {name} registering in the southbound database");
        let registered = poll_until(&what, START, || {
            process.ensure_running()?;
            let names = self.sbctl(&["--bare", "--columns=name", "list", "Chassis"])?;
            Ok(if names.split_whitespace().any(|n| n == name) {
                Probe::Ready(())
            } else {
                Probe::NotYet(format!("chassis registered: {names:?}"))
            })
        });
        // Kept even when it failed to register: stopped with the rest.
        self.chassis.push(Chassis {
            name: name.clone(),
            process,
        });
        registered?;
        Ok(name)
    }

    /// Binds `port` of `pm`'s `br-int` to logical switch port `lsp`
    /// (`external_ids:iface-id`), as the cloud's agent would.
    pub fn bind(pm: &Pm, port: &str, lsp: &str) -> Result<()> {
        pm.vsctl(&[
            "set",
            "Interface",
            port,
            &format!("external_ids:iface-id={lsp}"),
        ])
        .map(drop)
    }

    /// Waits until logical port `lsp` is bound to `chassis` (its
    /// `Port_Binding`'s `chassis`) and, when `additional` is given, also
    /// claimed by that chassis (`additional_chassis`).
    pub fn wait_bound(
        &self,
        lsp: &str,
        chassis: &str,
        additional: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let uuid_of = |name: &str| -> Result<String> {
            Ok(self
                .sbctl(&[
                    "--bare",
                    "--columns=_uuid",
                    "find",
                    "Chassis",
                    &format!("name={name}"),
                ])?
                .trim()
                .to_owned())
        };
        let main = uuid_of(chassis)?;
        let extra = additional.map(uuid_of).transpose()?;
        let what = format!("logical port {lsp} bound to {chassis}");
        poll_until(&what, timeout, || {
            let row = self.sbctl(&[
                "--bare",
                "--columns=chassis,additional_chassis",
                "find",
                "Port_Binding",
                &format!("logical_port={lsp}"),
            ])?;
            let words: Vec<&str> = row.split_whitespace().collect();
            let bound = words.contains(&main.as_str())
                && extra.as_deref().is_none_or(|e| words.contains(&e));
            Ok(if bound {
                Probe::Ready(())
            } else {
                Probe::NotYet(format!("Port_Binding {lsp}: chassis, additional {row:?}"))
            })
        })
    }

    /// Waits until logical port `lsp`'s binding says its additional
    /// chassis activated it by its activation strategy (southbound
    /// `Port_Binding` `options:additional-chassis-activated`); that value,
    /// the chassis that did.
    pub fn wait_activated(&self, lsp: &str, timeout: Duration) -> Result<String> {
        poll_until(&format!("logical port {lsp} activated"), timeout, || {
            let options = self.sbctl(&[
                "--bare",
                "--columns=options",
                "find",
                "Port_Binding",
                &format!("logical_port={lsp}"),
            ])?;
            Ok(
                match options
                    .split_whitespace()
                    .find_map(|o| o.strip_prefix("additional-chassis-activated="))
                {
                    Some(by) => Probe::Ready(by.trim_matches('"').to_owned()),
                    None => Probe::NotYet(format!("options {:?}", options.trim())),
                },
            )
        })
    }

    /// The chassis' names, in the order they were added.
    pub fn chassis(&self) -> Vec<String> {
        self.chassis.iter().map(|c| c.name.clone()).collect()
    }

    /// Stops every daemon (the chassis first) and says which did not stop.
    pub fn stop(mut self) -> Result<()> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        for mut c in self.chassis.drain(..) {
            if let Err(e) = c.process.stop(STOP_GRACE) {
                errors.push(e);
            }
        }
        let central = [self.northd.take(), self.sb.take(), self.nb.take()];
        for mut p in central.into_iter().flatten() {
            if let Err(e) = p.stop(STOP_GRACE) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(errors))
        }
    }
}

impl Drop for Ovn {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all() {
            eprintln!("iris-testbed: stopping OVN: {e}");
        }
    }
}
