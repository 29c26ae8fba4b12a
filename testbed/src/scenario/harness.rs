//! What every scenario stands on: a testbed with one DC underlay, PMs that
//! know each other's underlay MACs, the controller process started on a
//! configuration generated for them, and the ways to watch it work (its
//! API, its metrics, the switches' flows and ports).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where a PM serves OVSDB over SSL on its management link (the IANA port).
const OVSDB_PORT: u16 = 6640;
use serde_json::Value;

use crate::controller::{ControllerConfig, ControllerProcess, HostEntry, OpenFlowMode, ViEntry};
use crate::flow_dump::{parse_dump_stats, FlowWithStats};
use crate::ping::{PingPlan, PingRun, PingTrace};
use crate::{
    Error, Ipv4Cidr, MacAddr, PmId, PmSpec, Testbed, UnderlayId, VmId, VmSpec, INTEGRATION_BRIDGE,
};

use super::Options;

/// The DC underlay every scenario's PMs share.
const UNDERLAY: &str = "192.168.60.0/24";
/// How long the controller may take to bring switches up or react to a
/// change before a scenario calls it a failure.
pub const CONVERGE: Duration = Duration::from_secs(30);
/// How long the flows and the controller's FLOW_MOD count stay unchanged
/// before a dump counts as the settled state.
const SETTLED: Duration = Duration::from_millis(500);
/// The gateway's binary, looked for beside the controller's by default.
const GATEWAY_BINARY: &str = "iris-gateway";
/// How long SIGTERM may take.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Echoes a PM sends to another's underlay address before the underlay
/// counts as broken.
const UNDERLAY_PING_ATTEMPTS: u32 = 3;
/// The top 16 bits of every cookie Iris writes ("IR").
pub const IRIS_COOKIE: u64 = 0x4952;

/// Why a scenario did not pass.
#[derive(Debug)]
pub enum ScenarioError {
    /// The testbed or a tool it drives failed: no verdict about Iris.
    Testbed(Error),
    /// Iris did not do what the scenario requires; the text says what was
    /// expected and what was seen.
    Failed(String),
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Testbed(e) => write!(f, "the testbed failed (not a verdict on Iris): {e}"),
            Self::Failed(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl ScenarioError {
    /// The same failure with `note` appended to its text (where its
    /// evidence was kept, say). A testbed failure keeps its prefix, so
    /// the text still says it is no verdict on Iris.
    pub fn noted(self, note: &str) -> Self {
        Self::Failed(format!("{self}; {note}"))
    }
}

impl From<Error> for ScenarioError {
    fn from(e: Error) -> Self {
        Self::Testbed(e)
    }
}

/// A metric a scenario reads that the controller does not export fails
/// the scenario: a check on it could not have failed.
impl From<crate::controller::MissingMetric> for ScenarioError {
    fn from(e: crate::controller::MissingMetric) -> Self {
        Self::Failed(e.to_string())
    }
}

/// Fails the scenario with `why()` unless `holds`.
pub fn check(holds: bool, why: impl FnOnce() -> String) -> Result<(), ScenarioError> {
    if holds {
        Ok(())
    } else {
        Err(ScenarioError::Failed(why()))
    }
}

/// A ping run, as scenarios report it.
#[derive(Debug, Clone, Serialize)]
pub struct PingSummary {
    pub sent: u32,
    pub received: u32,
    /// Sequence numbers never answered.
    pub lost: Vec<u32>,
    pub interval_ms: f64,
    /// The longest time between two consecutive replies.
    pub longest_gap_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
}

impl From<&PingTrace> for PingSummary {
    fn from(t: &PingTrace) -> Self {
        Self {
            sent: t.summary.transmitted,
            received: t.summary.received,
            lost: t.lost(),
            interval_ms: ms(t.interval),
            longest_gap_ms: t.longest_gap().map(ms),
            rtt_avg_ms: t.summary.rtt.map(|r| ms(r.avg)),
            rtt_max_ms: t.summary.rtt.map(|r| ms(r.max)),
        }
    }
}

/// `10.<subnet>.0.<n>/24`, the addresses scenarios give their VMs
/// (subnet 0 for the VMs' main interfaces).
pub fn subnet_ip(subnet: u8, n: u8) -> Result<Ipv4Cidr, ScenarioError> {
    Ok(Ipv4Cidr::new(
        std::net::Ipv4Addr::new(10, subnet, 0, n),
        24,
    )?)
}

/// `10.0.0.<n>/24`, VM `n`'s main address.
pub fn vm_ip(n: u8) -> Result<Ipv4Cidr, ScenarioError> {
    subnet_ip(0, n)
}

/// Seeds `vi`'s registry with guest `n` (`02:00:00:00:00:<n>`,
/// [`vm_ip`]`(n)`), a guest the scenario boots itself rather than a
/// testbed VM; its MAC and address.
pub fn seed_guest(vi: &mut ViEntry, n: u8) -> Result<(MacAddr, Ipv4Cidr), ScenarioError> {
    let (mac, ip) = (MacAddr::local(n.into()), vm_ip(n)?);
    vi.seed.push(crate::controller::SeedRow {
        mac,
        ip: ip.addr(),
        vlan: None,
    });
    Ok((mac, ip))
}

/// Flows (identity and instructions) with their durations in seconds, by PM.
pub type FlowsByPm = BTreeMap<String, BTreeMap<String, f64>>;

/// Dump durations have millisecond resolution, and a PM's dump is not taken
/// at the very instant the clock is read.
const DURATION_SLACK: f64 = 0.25;

/// Checks that `after` (dumped `between` seconds after `before`) holds the
/// very same flows, none deleted and re-added: each one's duration grew by
/// the time between the dumps. Returns the flows kept per PM and the least
/// growth of a duration.
pub fn flows_kept(
    before: &FlowsByPm,
    after: &FlowsByPm,
    between: f64,
) -> Result<(BTreeMap<String, usize>, f64), ScenarioError> {
    let mut kept = BTreeMap::new();
    let mut least = f64::INFINITY;
    for (pm, old) in before {
        let new = after.get(pm).cloned().unwrap_or_default();
        let gone: Vec<&String> = old.keys().filter(|f| !new.contains_key(*f)).collect();
        let added: Vec<&String> = new.keys().filter(|f| !old.contains_key(*f)).collect();
        check(gone.is_empty() && added.is_empty(), || {
            format!("{pm}'s flows changed: gone {gone:#?}, new {added:#?}")
        })?;
        for (flow, d) in old {
            let growth = new[flow] - d;
            least = least.min(growth);
            check(growth + DURATION_SLACK >= between, || {
                format!(
                    "{pm}: {flow} was deleted and re-added: its duration went from {d} s to {} s \
                     in {between:.3} s",
                    new[flow]
                )
            })?;
        }
        kept.insert(pm.clone(), old.len());
    }
    Ok((kept, least))
}

/// A scenario's report as JSON.
pub fn to_json<T: Serialize>(report: &T) -> Result<Value, ScenarioError> {
    serde_json::to_value(report)
        .map_err(|e| ScenarioError::Failed(format!("the report does not serialise: {e}")))
}

/// A duration in milliseconds, rounded to microseconds for reports.
pub fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1e3)
}

/// Now, as `ping -D` stamps its replies (seconds since the epoch).
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A measurement rounded to three decimals (milliseconds to microseconds,
/// seconds to milliseconds): what the clocks involved resolve.
pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// How long [`Harness::bring_up`]'s stages took.
#[derive(Debug, Clone, Copy)]
pub struct BroughtUp {
    /// Until every switch and OVSDB session was up.
    pub controller_ready: Duration,
    /// Then until every PM had its tunnels.
    pub full_mesh: Duration,
    /// Then until every VM port had its classification flow.
    pub classified: Duration,
}

/// A testbed, the controller process, and the scenario's view of both.
#[derive(Debug)]
pub struct Harness {
    // Dropped before the testbed: the controller goes before the switches.
    controller: Option<ControllerProcess>,
    pub tb: Testbed,
    dc: UnderlayId,
    label: &'static str,
    binary: PathBuf,
    gateway_binary: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    config: Option<PathBuf>,
    starts: u32,
    started: Instant,
    openflow: OpenFlowMode,
    tls: Option<HarnessTls>,
}

/// OpenFlow over TLS: a CA made for the run, the controller's listener,
/// and how many management links the PMs have taken.
#[derive(Debug)]
struct HarnessTls {
    pki: crate::pki::Pki,
    controller: crate::pki::CertFiles,
    port: u16,
    links: u32,
}

impl Harness {
    pub fn new(label: &'static str, options: &Options) -> Result<Self, ScenarioError> {
        let mut tb = Testbed::with_config(label, options.testbed.clone())?;
        let dc = tb.add_underlay(crate::UnderlaySpec::new("dc", UNDERLAY.parse()?))?;
        let dir = tb.state_dir().join("controller");
        std::fs::create_dir(&dir).map_err(|e| Error::io_at("creating", &dir, e))?;
        Ok(Self {
            controller: None,
            socket: dir.join("of.sock"),
            tb,
            dc,
            label,
            binary: options.controller.clone(),
            gateway_binary: options
                .gateway
                .clone()
                .unwrap_or_else(|| options.controller.with_file_name(GATEWAY_BINARY)),
            dir,
            config: None,
            starts: 0,
            started: Instant::now(),
            openflow: OpenFlowMode::Active,
            tls: None,
        })
    }

    /// The `iris-gateway` binary the inter-cloud scenarios run.
    pub fn gateway_binary(&self) -> &Path {
        &self.gateway_binary
    }

    /// The `iris-controller` binary; the broker's is looked for beside it.
    pub fn controller_binary(&self) -> &Path {
        &self.binary
    }

    /// Runs OpenFlow over TLS and OVSDB over SSL from here on, as in
    /// production: a throwaway CA certifies the controller and each PM
    /// added afterwards (its name in the certificate, set in its SSL
    /// table), each PM reaches the controller over a management link (OVS's
    /// `ssl:` targets are TCP only) and serves OVSDB on it (`pssl:`), and
    /// the controller listens on `ssl:0.0.0.0:<free port>`.
    pub fn use_tls(&mut self) -> Result<(), ScenarioError> {
        let dir = self.dir.join("pki");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io_at("creating", &dir, e))?;
        let pki = crate::pki::Pki::new(&dir, "iris")?;
        let controller = pki.issue("controller")?;
        let port = crate::ports::free_port(std::net::Ipv4Addr::UNSPECIFIED.into())?;
        self.tls = Some(HarnessTls {
            pki,
            controller,
            port,
            links: 0,
        });
        Ok(())
    }

    /// With [`Harness::use_tls`]: the run's CA, for other services (etcd)
    /// to certify their members and clients with.
    pub fn pki(&self) -> Option<&crate::pki::Pki> {
        self.tls.as_ref().map(|t| &t.pki)
    }

    /// With [`Harness::use_tls`]: an `ssl:` listener of its own for one
    /// more controller (a replica beside the first), on a free port, with a
    /// certificate naming `name` from the run's CA.
    pub fn another_controller_tls(
        &self,
        name: &str,
    ) -> Result<Option<crate::controller::OpenFlowTls>, ScenarioError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let port = crate::ports::free_port(std::net::Ipv4Addr::UNSPECIFIED.into())?;
        Ok(Some(crate::controller::OpenFlowTls {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], port)),
            files: tls.pki.issue(name)?,
            ca_certificate: tls.pki.ca_certificate.clone(),
        }))
    }

    /// With [`Harness::use_tls`]: `[api_tls]` files for a controller's API
    /// on loopback, certified by the run's CA for 127.0.0.1 (the address
    /// in the replicas' `api` URLs).
    pub fn api_tls(&self) -> Result<Option<crate::controller::ApiTls>, ScenarioError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        Ok(Some(crate::controller::ApiTls {
            files: tls.pki.issue("127.0.0.1")?,
            ca_certificate: tls.pki.ca_certificate.clone(),
        }))
    }

    /// Progress for the human watching; stdout carries only the summary.
    pub fn note(&self, what: impl fmt::Display) {
        eprintln!(
            "[{} {:6.1}s] {what}",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A file in the scenario's own directory (ping outputs, the
    /// configuration, the controller's logs).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Adds a PM on the DC underlay.
    pub fn add_pm(&mut self, name: &str) -> Result<PmId, ScenarioError> {
        self.add_pm_spec(self.pm_spec(name))
    }

    /// The defaults [`Harness::add_pm`] uses, for a caller to change.
    pub fn pm_spec(&self, name: &str) -> PmSpec {
        PmSpec::new(name, self.dc)
    }

    /// Adds a PM built from `spec` (made by [`Harness::pm_spec`]).
    pub fn add_pm_spec(&mut self, spec: PmSpec) -> Result<PmId, ScenarioError> {
        let Some(tls) = &mut self.tls else {
            return Ok(self.tb.add_pm(spec)?);
        };
        let (root, pm_end) = crate::pm::free_management_net(self.tb.prefix(), tls.links)?;
        tls.links += 1;
        let pm = self.tb.add_pm(spec.management(root, pm_end))?;
        let files = tls.pki.issue(self.tb.pm(pm).name())?;
        let path = |p: &Path| p.display().to_string();
        self.tb.pm(pm).vsctl(&[
            "set-ssl",
            &path(&files.private_key),
            &path(&files.certificate),
            &path(&tls.pki.ca_certificate),
        ])?;
        let manager = format!("pssl:{OVSDB_PORT}:{}", pm_end.addr());
        self.tb.pm(pm).vsctl(&["set-manager", &manager])?;
        Ok(pm)
    }

    /// With [`Harness::use_tls`]: the controller listens for OpenFlow over
    /// TLS only, and every PM in `pms` has its bridge pointed at its `ssl:`
    /// target alone (or, in passive mode, listens on `pssl:` alone), so the
    /// switches it counts as ready came that way.
    pub fn check_openflow_over_tls(&self, pms: &[PmId]) -> Result<(), ScenarioError> {
        if self.tls.is_none() {
            return Ok(());
        }
        self.check_openflow_over_tls_in(self.controller()?.log_path(), pms)
    }

    /// [`Harness::check_openflow_over_tls`] for the controller that logs
    /// to `log` (a replica the harness did not start itself).
    pub fn check_openflow_over_tls_in(
        &self,
        log: &Path,
        pms: &[PmId],
    ) -> Result<(), ScenarioError> {
        if self.tls.is_none() {
            return Ok(());
        }
        let log = std::fs::read_to_string(log)
            .map_err(|e| Error::io_at("reading the controller's log", log, e))?;
        check(log.contains("openflow_tls=true"), || {
            "the controller does not listen for OpenFlow over TLS".into()
        })?;
        let scheme = match self.openflow {
            OpenFlowMode::Active => "ssl:",
            OpenFlowMode::Passive => "pssl:",
        };
        for &pm in pms {
            let pm = self.tb.pm(pm);
            let targets = pm.vsctl(&["get-controller", "br-int"])?;
            let targets: Vec<&str> = targets.lines().collect();
            check(targets.len() == 1 && targets[0].starts_with(scheme), || {
                format!(
                    "{}'s bridge has the targets {targets:?}, not one {scheme}",
                    pm.name()
                )
            })?;
        }
        Ok(())
    }

    /// With [`Harness::use_tls`]: both of the controller's sessions with
    /// every PM in `pms` ran over TLS ([`Harness::check_openflow_over_tls`],
    /// [`Harness::check_ovsdb_over_ssl`]).
    pub fn check_tls(&self, pms: &[PmId]) -> Result<(), ScenarioError> {
        self.check_openflow_over_tls(pms)?;
        self.check_ovsdb_over_ssl(pms)
    }

    /// With [`Harness::use_tls`] and the configuration [`Harness::config`]
    /// makes: the controller configured every PM in `pms` over OVSDB on
    /// `ssl:`.
    pub fn check_ovsdb_over_ssl(&self, pms: &[PmId]) -> Result<(), ScenarioError> {
        if self.tls.is_none() {
            return Ok(());
        }
        self.check_ovsdb_over_ssl_in(self.controller()?.log_path(), pms)
    }

    /// [`Harness::check_ovsdb_over_ssl`] for the controller that logs to
    /// `log`.
    pub fn check_ovsdb_over_ssl_in(&self, log: &Path, pms: &[PmId]) -> Result<(), ScenarioError> {
        if self.tls.is_none() {
            return Ok(());
        }
        let log = std::fs::read_to_string(log)
            .map_err(|e| Error::io_at("reading the controller's log", log, e))?;
        for &pm in pms {
            let name = self.tb.pm(pm).name();
            let span = format!("ovsdb{{host={name}}}");
            let over_ssl = log.lines().any(|l| {
                l.contains(&span) && l.contains("OVSDB connected") && l.contains("remote=ssl:")
            });
            check(over_ssl, || {
                format!("the controller did not configure {name} over OVSDB on ssl:")
            })?;
        }
        Ok(())
    }

    /// Adds a PM for each name.
    pub fn add_pms(&mut self, names: &[&str]) -> Result<Vec<PmId>, ScenarioError> {
        names.iter().map(|n| self.add_pm(n)).collect()
    }

    /// Adds VM `vm<n>` of `vi` on the `n`-th PM of `on` (`n` from 1): MAC
    /// `02:00:00:00:00:<n>`, address `10.0.0.<n>/24`, both seeded into
    /// `vi` as an operator's configuration would.
    pub fn add_vms(&mut self, vi: &mut ViEntry, on: &[PmId]) -> Result<Vec<VmId>, ScenarioError> {
        let mut vms = Vec::new();
        for (n, &pm) in (1u8..).zip(on) {
            let (ip, mac) = (vm_ip(n)?, MacAddr::local(n.into()));
            vms.push(self.add_vm(VmSpec::new(&format!("vm{n}"), pm, vi.id, mac, ip))?);
            vi.seed.push(crate::controller::SeedRow {
                mac,
                ip: ip.addr(),
                vlan: None,
            });
        }
        Ok(vms)
    }

    /// Starts the controller managing `pms` with `vis` and waits until it
    /// has every switch and OVSDB session, the full mesh, and the
    /// classification flows of `vms`.
    pub fn bring_up(
        &mut self,
        pms: &[PmId],
        vis: Vec<ViEntry>,
        vms: &[VmId],
    ) -> Result<BroughtUp, ScenarioError> {
        let config = self.config(pms, vis)?;
        self.bring_up_with(pms, &config, vms)
    }

    /// [`Harness::bring_up`] on `config`, made by [`Harness::config`] for
    /// `pms` (and perhaps changed).
    pub fn bring_up_with(
        &mut self,
        pms: &[PmId],
        config: &ControllerConfig,
        vms: &[VmId],
    ) -> Result<BroughtUp, ScenarioError> {
        self.start_controller(config)?;
        let n = pms.len() as u64;
        let controller_ready = self.wait_ready(n, n)?;
        let full_mesh = self.wait_full_mesh(pms)?;
        let classified = self.wait_classified(vms)?;
        Ok(BroughtUp {
            controller_ready,
            full_mesh,
            classified,
        })
    }

    pub fn add_vm(&mut self, spec: VmSpec) -> Result<VmId, ScenarioError> {
        Ok(self.tb.add_vm(spec)?)
    }

    /// Who opens the OpenFlow connections of the configurations made from
    /// now on: the bridges (active, the default) or the controller.
    pub fn set_openflow(&mut self, mode: OpenFlowMode) {
        self.openflow = mode;
    }

    /// The `[[host]]` entry of `pm`, its bridge pointed at the controller
    /// (or, in passive mode, listening for it).
    pub fn host(&self, pm: PmId) -> Result<HostEntry, ScenarioError> {
        let mut host = HostEntry::of_pm(self.tb.pm(pm), &self.socket, self.openflow)?;
        if let (Some(tls), Some(link)) = (&self.tls, self.tb.pm(pm).management()) {
            host.controller = format!("ssl:{}:{}", link.root.addr(), tls.port);
            host.ovsdb = format!("ssl:{}:{OVSDB_PORT}", link.pm.addr());
        }
        Ok(host)
    }

    /// A configuration managing `pms` with `vis`, its store in the
    /// scenario's directory.
    pub fn config(
        &self,
        pms: &[PmId],
        vis: Vec<ViEntry>,
    ) -> Result<ControllerConfig, ScenarioError> {
        let mut config = ControllerConfig::new(self.socket.clone(), self.dir.join("store"));
        config.openflow = self.openflow;
        config.tls = self.tls.as_ref().map(|t| crate::controller::OpenFlowTls {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], t.port)),
            files: t.controller.clone(),
            ca_certificate: t.pki.ca_certificate.clone(),
        });
        for &pm in pms {
            config.hosts.push(self.host(pm)?);
        }
        config.vis = vis;
        Ok(config)
    }

    /// Writes `config` and starts the controller on it.
    pub fn start_controller(&mut self, config: &ControllerConfig) -> Result<(), ScenarioError> {
        self.config = Some(config.write(&self.dir)?);
        self.restart_controller()
    }

    /// Starts the controller (again) on the configuration written last, with
    /// the same store; each start logs to its own file.
    pub fn restart_controller(&mut self) -> Result<(), ScenarioError> {
        let Some(config) = self.config.clone() else {
            return Err(ScenarioError::Testbed(Error::Usage(
                "no controller configuration written yet".into(),
            )));
        };
        if self.controller.is_some() {
            return Err(ScenarioError::Testbed(Error::Usage(
                "the controller is already running".into(),
            )));
        }
        self.starts += 1;
        let log = self.file(&format!("controller-{}.log", self.starts));
        // A controller that exits or never listens is a verdict on it.
        let process = verdict(ControllerProcess::start(&self.binary, &config, &log))?;
        self.note(format!(
            "controller started (pid {}, api {})",
            process.pid(),
            process.api_addr()
        ));
        self.controller = Some(process);
        Ok(())
    }

    pub fn controller(&self) -> Result<&ControllerProcess, ScenarioError> {
        self.controller
            .as_ref()
            .ok_or_else(|| ScenarioError::Failed("the controller is not running".into()))
    }

    pub fn controller_mut(&mut self) -> Result<&mut ControllerProcess, ScenarioError> {
        self.controller
            .as_mut()
            .ok_or_else(|| ScenarioError::Failed("the controller is not running".into()))
    }

    /// SIGTERM to the controller; it must exit cleanly.
    pub fn stop_controller(&mut self) -> Result<(), ScenarioError> {
        if let Some(c) = self.controller.take() {
            verdict(c.stop(STOP_GRACE))?;
        }
        Ok(())
    }

    /// SIGKILL to the controller.
    pub fn kill_controller(&mut self) -> Result<(), ScenarioError> {
        if let Some(c) = self.controller.take() {
            c.kill()?;
        }
        Ok(())
    }

    /// Waits until the controller counts `switches` switches past their
    /// handshake and `ovsdb` OVSDB sessions; how long that took.
    pub fn wait_ready(&mut self, switches: u64, ovsdb: u64) -> Result<Duration, ScenarioError> {
        let c = self
            .controller
            .as_mut()
            .ok_or_else(|| ScenarioError::Failed("the controller is not running".into()))?;
        verdict(c.wait_ready(switches, ovsdb, CONVERGE))
    }

    /// Polls `probe` until it gives a value (`Ok(Ok(v))`); `Ok(Err(seen))`
    /// means not yet. A timeout is Iris's failure and quotes what was seen
    /// last.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<Result<T, String>, ScenarioError>,
    ) -> Result<T, ScenarioError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let seen = match probe()? {
                Ok(v) => return Ok(v),
                Err(seen) => seen,
            };
            if start.elapsed() >= timeout {
                return Err(ScenarioError::Failed(format!(
                    "{what}: not within {:.1} s; last seen: {seen}",
                    timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// `br-int`'s flows on `pm`, with their ages and counters.
    pub fn flows(&self, pm: PmId) -> Result<Vec<FlowWithStats>, ScenarioError> {
        let text = self.tb.pm(pm).ofctl(&["dump-flows", INTEGRATION_BRIDGE])?;
        Ok(parse_dump_stats(&text))
    }

    /// Every Iris flow (by its cookie) of every PM in `pms`, as `ovs-ofctl`
    /// prints its identity and instructions, with its duration; by PM name.
    pub fn iris_flows(&self, pms: &[PmId]) -> Result<FlowsByPm, ScenarioError> {
        let mut out = BTreeMap::new();
        for &pm in pms {
            let flows = self
                .flows(pm)?
                .into_iter()
                .filter(|f| f.flow.cookie >> 48 == IRIS_COOKIE)
                .map(|f| (f.flow.to_string(), f.duration))
                .collect();
            out.insert(self.tb.pm(pm).name().to_owned(), flows);
        }
        Ok(out)
    }

    /// Like [`Harness::iris_flows`], once the controller has finished what it
    /// was doing: the same flows, and no FLOW_MOD sent, across [`SETTLED`].
    /// A flow the controller adds just after a dump (a learned MAC, a port
    /// report landing late) would otherwise look like one a later restart
    /// added. Returns the dump and when it was taken.
    pub fn settled_iris_flows(&self, pms: &[PmId]) -> Result<(FlowsByPm, Instant), ScenarioError> {
        let start = Instant::now();
        let read = || -> Result<(f64, FlowsByPm, Instant), ScenarioError> {
            let sent = self
                .controller()?
                .metrics()?
                .value("iris_flow_mods_sent_total");
            let at = Instant::now();
            Ok((sent, self.iris_flows(pms)?, at))
        };
        let same = |a: &FlowsByPm, b: &FlowsByPm| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((pa, fa), (pb, fb))| pa == pb && fa.keys().eq(fb.keys()))
        };
        let mut last = read()?;
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = read()?;
            if now.0 != last.0 || !same(&now.1, &last.1) {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= SETTLED {
                return Ok((last.1, last.2));
            }
            check(start.elapsed() < CONVERGE, || {
                format!(
                    "the flows did not settle within {} s: the controller kept sending FLOW_MODs",
                    CONVERGE.as_secs()
                )
            })?;
        }
    }

    /// Packets the ARP responder flows (table 2, answering to `IN_PORT`)
    /// counted on every PM in `pms`.
    pub fn responder_packets(&self, pms: &[PmId]) -> Result<u64, ScenarioError> {
        let mut n = 0;
        for &pm in pms {
            n += self
                .flows(pm)?
                .iter()
                .filter(|f| {
                    f.flow.table == 2
                        && f.flow.match_text.contains("arp_tpa=")
                        && f.flow.actions_text.contains("IN_PORT")
                })
                .map(|f| f.n_packets)
                .sum::<u64>();
        }
        Ok(n)
    }

    /// The GRE ports on `pm`'s `br-int`, sorted.
    pub fn tunnels(&self, pm: PmId) -> Result<Vec<String>, ScenarioError> {
        let text = self.tb.pm(pm).vsctl(&["list-ports", INTEGRATION_BRIDGE])?;
        let mut ports: Vec<String> = text
            .lines()
            .filter(|p| p.starts_with("gre-"))
            .map(str::to_owned)
            .collect();
        ports.sort();
        Ok(ports)
    }

    /// The name the controller gives the tunnel toward `pm`.
    pub fn tunnel_to(&self, pm: PmId) -> String {
        format!(
            "gre-{:08x}",
            u32::from(self.tb.pm(pm).underlay_addr().addr())
        )
    }

    /// Waits until every PM in `pms` has a tunnel to every other one, and
    /// to nothing else; then makes every PM's OVS learn every tunnel
    /// endpoint's MAC ([`Harness::resolve_tunnel_endpoints`]). How long the
    /// mesh took.
    pub fn wait_full_mesh(&self, pms: &[PmId]) -> Result<Duration, ScenarioError> {
        let start = Instant::now();
        let took = self.wait_for("a full GRE mesh", CONVERGE, || {
            for &pm in pms {
                let mut want: Vec<String> = pms
                    .iter()
                    .filter(|&&p| p != pm)
                    .map(|&p| self.tunnel_to(p))
                    .collect();
                want.sort();
                let have = self.tunnels(pm)?;
                if have != want {
                    return Ok(Err(format!(
                        "{} has {have:?}, want {want:?}",
                        self.tb.pm(pm).name()
                    )));
                }
            }
            Ok(Ok(start.elapsed()))
        })?;
        self.resolve_tunnel_endpoints(pms)?;
        Ok(took)
    }

    /// Makes each PM's OVS learn the underlay MAC of every other PM in
    /// `pms`, so that no VM frame is dropped while OVS resolves a tunnel
    /// endpoint (`docs/testbed.md`, finding 2: the first frame into a cold
    /// tunnel is lost and the guest retries after a second). OVS learns
    /// endpoints only by snooping ARP replies addressed to its bridge, and
    /// only once it has a tunnel port; so each PM forgets its kernel's ARP
    /// entries and pings the others, whose replies OVS then snoops. This
    /// belongs to the underlay, not to Iris, and no scenario should
    /// measure it.
    pub fn resolve_tunnel_endpoints(&self, pms: &[PmId]) -> Result<(), ScenarioError> {
        for &a in pms {
            let pm = self.tb.pm(a);
            pm.exec(&["ip", "neigh", "flush", "dev", crate::UNDERLAY_BRIDGE])?;
            for &b in pms.iter().filter(|&&b| b != a) {
                let dst = self.tb.pm(b).underlay_addr().addr();
                // A loaded host may lose one ARP or echo on the underlay
                // bridge; a third loss in a row is a broken underlay.
                let mut r = pm.ping_underlay(dst, 1, Duration::from_millis(100))?;
                for _ in 1..UNDERLAY_PING_ATTEMPTS {
                    if r.all_replied() {
                        break;
                    }
                    r = pm.ping_underlay(dst, 1, Duration::from_millis(100))?;
                }
                if !r.all_replied() {
                    return Err(ScenarioError::Testbed(Error::NotReady {
                        what: format!("the underlay from {} to {dst}", pm.name()),
                        waited: Duration::ZERO,
                        detail: format!("{r:?}"),
                    }));
                }
            }
            let known = pm.appctl(&["tnl/neigh/show"])?;
            for &b in pms.iter().filter(|&&b| b != a) {
                let ip = self.tb.pm(b).underlay_addr().addr().to_string();
                if !known.split_whitespace().any(|w| w == ip) {
                    return Err(ScenarioError::Testbed(Error::UnexpectedOutput {
                        command: format!("ovs-appctl tnl/neigh/show on {}", pm.name()),
                        reason: format!("OVS did not learn the tunnel endpoint {ip}"),
                        output: known,
                    }));
                }
            }
        }
        Ok(())
    }

    /// Waits until the classification flow of every VM's port is on its
    /// PM's bridge: from then on the VM's frames enter the pipeline.
    pub fn wait_classified(&self, vms: &[VmId]) -> Result<Duration, ScenarioError> {
        let start = Instant::now();
        self.wait_for("classification flows for every VM port", CONVERGE, || {
            for &vm in vms {
                let vm = self.tb.vm(vm);
                let pm = self.tb.pm(vm.pm());
                let ofport = pm.ofport(vm.port())?;
                let flows = self.flows(vm.pm())?;
                let needle = format!("in_port={ofport}");
                let found = flows.iter().any(|f| {
                    f.flow.table == 0
                        && f.flow.cookie >> 48 == IRIS_COOKIE
                        && f.flow.match_text.split(',').any(|m| m == needle)
                });
                if !found {
                    return Ok(Err(format!(
                        "{} has no table 0 flow for {} (port {ofport})",
                        pm.name(),
                        vm.name()
                    )));
                }
            }
            Ok(Ok(start.elapsed()))
        })
    }

    /// The registry entries of `vi` from the API.
    pub fn registry(&self, vi: u32) -> Result<Vec<Value>, ScenarioError> {
        let v = self
            .controller()?
            .get_json(&format!("/v1/registry?vi={vi}"))?;
        match v {
            Value::Array(entries) => Ok(entries),
            other => Err(ScenarioError::Failed(format!(
                "GET /v1/registry answered {other}, not a list"
            ))),
        }
    }

    /// Waits until the registry of `vi` places every `(mac, vlan)` on a
    /// port of the PM its VM is on, and that PM holds the source flow for
    /// it, so no frame from it goes to the controller any more.
    pub fn wait_placed(
        &self,
        vi: u32,
        vms: &[(VmId, Option<u16>)],
    ) -> Result<Duration, ScenarioError> {
        let start = Instant::now();
        self.wait_for("every VM's MAC placed by the registry", CONVERGE, || {
            let entries = self.registry(vi)?;
            for &(vm, vlan) in vms {
                let vm = self.tb.vm(vm);
                let host = self.tb.pm(vm.pm()).name();
                let mac = vm.mac().to_string();
                let placed = entries.iter().any(|e| {
                    e["mac"] == mac.as_str()
                        && e["vlan"] == vlan.map_or(Value::Null, Value::from)
                        && e["location"]["kind"] == "port"
                        && e["location"]["host"] == host
                });
                if !placed {
                    return Ok(Err(format!(
                        "{mac} (vlan {vlan:?}) is not at a port of {host}: {}",
                        Value::Array(entries)
                    )));
                }
                let source = format!("dl_src={mac}");
                let flows = self.flows(vm.pm())?;
                if !flows
                    .iter()
                    .any(|f| f.flow.table == 1 && f.flow.match_text.contains(&source))
                {
                    return Ok(Err(format!("{host} has no source flow for {mac}")));
                }
            }
            Ok(Ok(start.elapsed()))
        })
    }

    /// Starts `plan` from `vm` in the background; its output goes to
    /// `<name>.ping` in the scenario's directory.
    pub fn ping_run(&self, vm: VmId, plan: PingPlan, name: &str) -> Result<PingRun, ScenarioError> {
        let out = self.file(&format!("{name}.ping"));
        Ok(PingRun::start(self.tb.vm(vm).netns(), plan, &out)?)
    }

    /// Waits until `vm` gets an answer from `dst`; how long that took.
    pub fn wait_reachable(
        &self,
        vm: VmId,
        dst: std::net::Ipv4Addr,
    ) -> Result<Duration, ScenarioError> {
        verdict(self.tb.vm(vm).wait_reachable(dst, CONVERGE))
    }

    /// What `vm`'s neighbour table says `ip` is (`ip neigh`), if anything.
    pub fn neighbour(
        &self,
        vm: VmId,
        ip: std::net::Ipv4Addr,
    ) -> Result<Option<MacAddr>, ScenarioError> {
        let text = self
            .tb
            .vm(vm)
            .exec(&["ip", "-4", "neigh", "show", &ip.to_string()])?;
        Ok(text
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .and_then(|m| m.parse().ok()))
    }

    /// Copies the logs out of the state directory before teardown removes
    /// it; where they went.
    pub fn keep_logs(&self) -> Option<PathBuf> {
        self.tb.keep_logs().ok().flatten()
    }

    /// Stops the controller (SIGTERM: a clean exit is part of passing),
    /// then tears the testbed down.
    pub fn teardown(mut self) -> Result<(), ScenarioError> {
        let stopped = match self.controller.take() {
            Some(c) => c.stop(STOP_GRACE).map_err(ScenarioError::from),
            None => Ok(()),
        };
        let Self { tb, .. } = self;
        tb.teardown()?;
        stopped
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A wait that timed out is Iris's failure; anything else the testbed's.
fn verdict<T>(r: crate::Result<T>) -> Result<T, ScenarioError> {
    r.map_err(|e| match e {
        Error::NotReady { .. } => ScenarioError::Failed(e.to_string()),
        other => ScenarioError::Testbed(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(flows: &[(&str, f64)]) -> FlowsByPm {
        let flows = flows.iter().map(|(f, d)| ((*f).to_owned(), *d)).collect();
        BTreeMap::from([("pm1".to_owned(), flows)])
    }

    #[test]
    fn flows_that_kept_counting_are_kept() {
        let before = dump(&[("table=0 a", 3.0), ("table=1 b", 10.5)]);
        let after = dump(&[("table=0 a", 9.01), ("table=1 b", 16.5)]);
        let (kept, least) = flows_kept(&before, &after, 6.0).unwrap();
        assert_eq!(kept["pm1"], 2);
        assert!((least - 6.0).abs() < 1e-9, "{least}");
    }

    #[test]
    fn a_re_added_flow_or_a_changed_set_fails() {
        let before = dump(&[("table=0 a", 3.0), ("table=1 b", 10.5)]);
        let re_added = dump(&[("table=0 a", 9.0), ("table=1 b", 1.2)]);
        let err = flows_kept(&before, &re_added, 6.0).unwrap_err().to_string();
        assert!(
            err.contains("table=1 b") && err.contains("re-added"),
            "{err}"
        );
        let changed = dump(&[("table=0 a", 9.0), ("table=1 c", 16.5)]);
        let err = flows_kept(&before, &changed, 6.0).unwrap_err().to_string();
        assert!(err.contains("gone") && err.contains("table=1 c"), "{err}");
    }
}
