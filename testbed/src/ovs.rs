//! One private Open vSwitch instance: an `ovsdb-server` and an `ovs-vswitchd`
//! running inside a namespace, with their database, sockets and logs in a
//! directory of their own.
//!
//! Several instances run side by side, one per namespace: each vswitchd sees
//! only its namespace's interfaces and routes, and with the userspace datapath
//! (`datapath_type=netdev`) no kernel module is shared between them. The
//! client tools (`ovs-vsctl`, `ovs-ofctl`, `ovs-appctl`) run in the root
//! namespace and reach the daemons through the unix sockets in the directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::addr::Ipv4Cidr;
use crate::command::{output, program, run};
use crate::error::{Error, Result};
use crate::link::Iface;
use crate::netns::Netns;
use crate::process::{tail_of, Process, STOP_GRACE};
use crate::readiness::{poll_until, Probe};

/// The Open_vSwitch database schema shipped with OVS.
pub const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Bound on every client call, so that a wedged daemon fails a scenario
/// instead of hanging it.
pub const CLIENT_TIMEOUT_SECS: u32 = 10;

/// A running ovsdb-server + ovs-vswitchd pair; both are stopped when dropped
/// (vswitchd first).
#[derive(Debug)]
pub struct OvsInstance {
    name: String,
    dir: PathBuf,
    vswitchd: Option<Process>,
    ovsdb: Option<Process>,
}

impl OvsInstance {
    /// Creates a database in `dir` and starts both daemons inside `netns`,
    /// returning once vswitchd has applied the database's configuration.
    /// `name` identifies the instance in messages and becomes its
    /// `external_ids:system-id`.
    pub fn start(name: &str, netns: &Netns, dir: PathBuf, timeout: Duration) -> Result<Self> {
        Self::start_with(name, netns, dir, timeout, &[])
    }

    /// [`OvsInstance::start`] with `Open_vSwitch` `other_config` keys set in
    /// the database before vswitchd starts: some (`userspace-tso-enable`)
    /// are read only at startup.
    pub fn start_with(
        name: &str,
        netns: &Netns,
        dir: PathBuf,
        timeout: Duration,
        other_config: &[(String, String)],
    ) -> Result<Self> {
        let mut ovs = Self {
            name: name.to_owned(),
            dir,
            vswitchd: None,
            ovsdb: None,
        };
        run(&mut ovs.client(
            "ovsdb-tool",
            &["create", &ovs.path("conf.db"), VSWITCH_SCHEMA],
        ))?;

        ovs.ovsdb = Some(ovs.spawn_daemon(
            netns,
            "ovsdb-server",
            &[
                ovs.path("conf.db"),
                format!("--remote=punix:{}", ovs.path("db.sock")),
                // Lets `ovs-vsctl set-manager ptcp:…` open TCP remotes later,
                // and `pssl:…` ones with the key `set-ssl` gives, as
                // Debian's ovs-ctl starts it.
                "--remote=db:Open_vSwitch,Open_vSwitch,manager_options".to_owned(),
                "--private-key=db:Open_vSwitch,SSL,private_key".to_owned(),
                "--certificate=db:Open_vSwitch,SSL,certificate".to_owned(),
                "--ca-cert=db:Open_vSwitch,SSL,ca_cert".to_owned(),
            ],
        )?);
        ovs.await_ready("ovsdb-server", timeout, |ovs| {
            let db = format!("--db={}", ovs.db_target());
            ovs.client_probe("ovs-vsctl", &[&db, "--no-wait", "init"])
        })?;
        for (key, value) in other_config {
            let setting = format!("other_config:{key}={value}");
            let db = format!("--db={}", ovs.db_target());
            let args = ["--no-wait", "set", "Open_vSwitch", ".", &setting];
            ovs.run_client("ovs-vsctl", &[&db], &args)?;
        }

        ovs.vswitchd = Some(ovs.spawn_daemon(netns, "ovs-vswitchd", &[ovs.db_target()])?);
        ovs.await_ready("ovs-vswitchd", timeout, |ovs| {
            ovs.client_probe(
                "ovs-appctl",
                &["-t", &ovs.path("ovs-vswitchd.ctl"), "version"],
            )
        })?;
        // Without --no-wait, ovs-vsctl returns only once vswitchd has applied
        // the change: proof that it reads its database.
        ovs.vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            &format!("external_ids:system-id={name}"),
        ])?;
        Ok(ovs)
    }

    /// Starts `daemon args…` inside `netns` with its pidfile, control socket
    /// and log in the instance's directory, and its stdout and stderr in
    /// `<daemon>.stderr` there. The daemon stays in the foreground (no
    /// `--detach`): it is this process's child.
    fn spawn_daemon(&self, netns: &Netns, daemon: &str, args: &[String]) -> Result<Process> {
        let mut command = netns.command(daemon);
        command
            .args(args)
            .arg(format!("--pidfile={}", self.path(&format!("{daemon}.pid"))))
            .arg(format!("--unixctl={}", self.path(&format!("{daemon}.ctl"))))
            .arg(format!(
                "--log-file={}",
                self.path(&format!("{daemon}.log"))
            ))
            .arg("-vconsole:off");
        self.set_env(&mut command);
        let output = self.dir.join(format!("{daemon}.stderr"));
        Process::spawn(format!("{} {daemon}", self.name), command, Some(&output))
    }

    /// Points every OVS program at this instance's directory. vswitchd
    /// creates `<bridge>.mgmt` sockets in `OVS_RUNDIR`, and `ovs-ofctl <bridge>`
    /// looks for them there.
    fn set_env(&self, command: &mut Command) {
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            command.env(var, &self.dir);
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    fn client(&self, tool: &str, args: &[&str]) -> Command {
        let mut command = program(tool, args);
        self.set_env(&mut command);
        command
    }

    /// One readiness probe: `tool args…` succeeding means ready.
    fn client_probe(&self, tool: &str, args: &[&str]) -> Result<Probe<()>> {
        let timeout = "--timeout=1";
        let mut command = self.client(tool, &[timeout]);
        command.args(args);
        let out = output(&mut command)?;
        Ok(if out.status.success() {
            Probe::Ready(())
        } else {
            Probe::NotYet(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        })
    }

    fn await_ready(
        &mut self,
        daemon: &str,
        timeout: Duration,
        probe: impl Fn(&Self) -> Result<Probe<()>>,
    ) -> Result<()> {
        let what = format!("{} {daemon}", self.name);
        let log = self.dir.join(format!("{daemon}.log"));
        poll_until(&what, timeout, || {
            for process in [&mut self.ovsdb, &mut self.vswitchd].into_iter().flatten() {
                process.ensure_running()?;
            }
            probe(self)
        })
        .map_err(|e| match e {
            Error::NotReady {
                what,
                waited,
                detail,
            } => Error::NotReady {
                what,
                waited,
                detail: format!(
                    "{detail}; {} ends with:\n{}",
                    log.display(),
                    tail_of(&log, 20)
                ),
            },
            other => other,
        })
    }

    /// Adds a standalone netdev bridge holding `ports`, with `addr` on the
    /// bridge's own internal port in `netns`: where the userspace datapath
    /// routes tunnel packets from (its route table knows the namespace's
    /// connected routes, and it can send only out of an OVS port; see
    /// docs/testbed.md, finding 2). A PM's underlay and a gateway node's WAN
    /// uplink are such bridges.
    pub fn add_address_bridge(
        &self,
        netns: &Netns,
        bridge: &str,
        mtu: u32,
        addr: Ipv4Cidr,
        ports: &[&str],
    ) -> Result<()> {
        let mtu = format!("mtu_request={mtu}");
        let mut args = vec![
            "add-br",
            bridge,
            "--",
            "set",
            "Bridge",
            bridge,
            "datapath_type=netdev",
            "fail_mode=standalone",
            "--",
            "set",
            "Interface",
            bridge,
            &mtu,
        ];
        for port in ports {
            args.extend(["--", "add-port", bridge, port]);
        }
        self.vsctl(&args)?;
        let iface = Iface::new(bridge, netns.place());
        iface.disable_offloads()?;
        iface.add_addr(addr)?;
        iface.set_up()
    }

    /// The OpenFlow port number OVS gave `port`.
    pub fn ofport(&self, port: &str) -> Result<u32> {
        let text = self.vsctl(&["get", "Interface", port, "ofport"])?;
        match text.trim().parse::<i64>() {
            Ok(n) if n > 0 => u32::try_from(n).map_err(|_| Error::UnexpectedOutput {
                command: format!("ovs-vsctl get Interface {port} ofport"),
                reason: "port number out of range".into(),
                output: text.clone(),
            }),
            _ => Err(Error::UnexpectedOutput {
                command: format!("ovs-vsctl get Interface {port} ofport"),
                reason: "OVS gave the port no OpenFlow number (is its interface missing?)".into(),
                output: text.clone(),
            }),
        }
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory holding the database, sockets, pidfiles and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The OVSDB unix socket. The filesystem is shared by all namespaces, so a
    /// manager in any namespace can connect to it.
    pub fn db_socket(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    /// The OVSDB remote as OVS clients spell it: `unix:<dir>/db.sock`.
    pub fn db_target(&self) -> String {
        format!("unix:{}", self.path("db.sock"))
    }

    /// The OpenFlow management socket vswitchd opens for `bridge`
    /// (`ovs-ofctl` can use it directly as `unix:<path>`).
    pub fn bridge_mgmt_socket(&self, bridge: &str) -> PathBuf {
        self.dir.join(format!("{bridge}.mgmt"))
    }

    /// The vswitchd log file.
    pub fn vswitchd_log(&self) -> PathBuf {
        self.dir.join("ovs-vswitchd.log")
    }

    /// The pid of ovs-vswitchd, while it runs.
    pub fn vswitchd_pid(&self) -> Option<u32> {
        self.vswitchd.as_ref().map(Process::pid)
    }

    /// Pids of the running daemons.
    pub fn pids(&self) -> Vec<u32> {
        [&self.ovsdb, &self.vswitchd]
            .into_iter()
            .flatten()
            .map(Process::pid)
            .collect()
    }

    /// Runs `ovs-vsctl` against this instance; like the command line tool it
    /// waits until vswitchd has applied the change (bounded by
    /// [`CLIENT_TIMEOUT_SECS`]). Returns stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        let db = format!("--db={}", self.db_target());
        self.run_client("ovs-vsctl", &[&db], args)
    }

    /// Runs `ovs-ofctl -O OpenFlow13`; a bridge name as the target resolves to
    /// this instance's bridge. Returns stdout.
    pub fn ofctl(&self, args: &[&str]) -> Result<String> {
        self.run_client("ovs-ofctl", &["-O", "OpenFlow13"], args)
    }

    /// Runs `ovs-appctl` against this instance's vswitchd. Returns stdout.
    pub fn appctl(&self, args: &[&str]) -> Result<String> {
        let target = self.path("ovs-vswitchd.ctl");
        self.run_client("ovs-appctl", &["-t", &target], args)
    }

    /// Runs `ovs-appctl` against this instance's ovsdb-server. Returns stdout.
    pub fn ovsdb_appctl(&self, args: &[&str]) -> Result<String> {
        let target = self.path("ovsdb-server.ctl");
        self.run_client("ovs-appctl", &["-t", &target], args)
    }

    fn run_client(&self, tool: &str, fixed: &[&str], args: &[&str]) -> Result<String> {
        let timeout = format!("--timeout={CLIENT_TIMEOUT_SECS}");
        let mut command = self.client(tool, &[timeout.as_str()]);
        command.args(fixed).args(args);
        run(&mut command)
    }

    /// Stops vswitchd, then ovsdb-server. Stopping twice is a no-op.
    pub fn stop(&mut self) -> Result<()> {
        let mut failures = Vec::new();
        for process in [&mut self.vswitchd, &mut self.ovsdb].into_iter().flatten() {
            if let Err(e) = process.stop(STOP_GRACE) {
                failures.push(e);
            }
        }
        match failures.len() {
            0 => Ok(()),
            _ => Err(Error::Teardown(failures)),
        }
    }
}

impl Drop for OvsInstance {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("iris-testbed: {e}");
        }
    }
}
