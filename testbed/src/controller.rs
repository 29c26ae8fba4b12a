//! The `iris-controller` process, driven from outside as an operator
//! drives it: a configuration file written for the testbed's PMs, the
//! binary started on it, and its northbound API (health, hosts, registry,
//! metrics) read over HTTP.
//!
//! The controller listens for OpenFlow on a unix socket in the testbed's
//! state directory, linked into each PM's OVS run directory (vswitchd only
//! connects to unix sockets there; see `docs/testbed.md`, finding 4). Its
//! API listens on an ephemeral loopback port, read back from its log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use iris_schemas::northbound::{Healthz, HostSpec, RoleSpec, SseParser};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::addr::MacAddr;
use crate::api_client::{ApiClient, HTTP_TIMEOUT};
use crate::error::{Error, Result};
use crate::pm::Pm;
use crate::process::{tail_of, Process};
use crate::readiness::{poll_until, Probe};

/// How long the controller may take to open its sockets.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The log line the controller writes once every socket is open; it
/// carries `api=<address>`.
const LISTENING: &str = "iris-controller listening";

/// One `[[host]]` of the configuration, or the body of `PUT /v1/hosts/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    /// The OVSDB remote the controller manages the host's OVS through.
    pub ovsdb: String,
    /// The target written into the host's bridge.
    pub controller: String,
    /// Whether the host is a gateway (VIs may name it) or a compute host.
    pub role: HostRole,
}

/// A host's `role` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostRole {
    #[default]
    Compute,
    /// A gateway node: MACs of an operator's own data center live behind it.
    Gateway,
}

impl HostRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Compute => "compute",
            Self::Gateway => "gateway",
        }
    }
}

impl HostEntry {
    /// The entry for `pm`, reached over its OVSDB unix socket, whose bridge
    /// reaches the controller listening on `listener` through a link in its
    /// run directory (created here), or in passive mode listens beside its
    /// OVSDB for the controller.
    pub fn of_pm(pm: &Pm, listener: &Path, openflow: OpenFlowMode) -> Result<Self> {
        let controller = match openflow {
            OpenFlowMode::Active => pm.link_controller_socket(listener)?,
            OpenFlowMode::Passive => pm.passive_controller_target(),
        };
        Ok(Self {
            name: pm.name().to_owned(),
            underlay_ip: pm.underlay_addr().addr(),
            ovsdb: pm.ovsdb_unix_target(),
            controller,
            role: HostRole::Compute,
        })
    }

    /// The API's JSON form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(HostSpec {
            name: self.name.clone(),
            underlay_ip: self.underlay_ip,
            role: match self.role {
                HostRole::Compute => RoleSpec::Compute,
                HostRole::Gateway => RoleSpec::Gateway,
            },
            ovsdb: self.ovsdb.clone(),
            datapath_id: None,
            controller: Some(self.controller.clone()),
        })
        .unwrap_or_default()
    }

    /// Without `with_controller`, the host's target is left to the mode.
    fn write_toml(&self, out: &mut String, with_controller: bool) {
        let _ = write!(
            out,
            "[[host]]\nname = {}\nunderlay_ip = \"{}\"\nrole = \"{}\"\novsdb = {}\n",
            toml_string(&self.name),
            self.underlay_ip,
            self.role.as_str(),
            toml_string(&self.ovsdb),
        );
        if with_controller {
            let _ = writeln!(out, "controller = {}", toml_string(&self.controller));
        }
        out.push('\n');
    }
}

/// One row of a VI's seed file: a MAC and the IP it answers for, on a VLAN
/// (`None`: untagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedRow {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub vlan: Option<u16>,
}

/// One `[[vi]]` of the configuration, with its seed rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViEntry {
    pub id: u32,
    pub name: String,
    pub gre_key: u32,
    /// Hosts (with role gateway) the VI reaches its operator's data center
    /// through.
    pub gateways: Vec<String>,
    pub seed: Vec<SeedRow>,
}

impl ViEntry {
    pub fn new(id: u32, name: &str, gre_key: u32) -> Self {
        Self {
            id,
            name: name.to_owned(),
            gre_key,
            gateways: Vec::new(),
            seed: Vec::new(),
        }
    }

    pub fn seed(mut self, mac: MacAddr, ip: Ipv4Addr, vlan: Option<u16>) -> Self {
        self.seed.push(SeedRow { mac, ip, vlan });
        self
    }

    fn seed_csv(&self) -> String {
        let mut out = String::from("mac,ip,vlan\n");
        for row in &self.seed {
            let vlan = row
                .vlan
                .map_or_else(|| "untagged".to_owned(), |v| v.to_string());
            let _ = writeln!(out, "{},{},{vlan}", row.mac, row.ip);
        }
        out
    }
}

/// Who opens the OpenFlow connection (`[bridge] openflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenFlowMode {
    /// Each bridge connects to the controller's socket.
    #[default]
    Active,
    /// Each bridge listens beside its OVSDB and the controller connects.
    Passive,
}

/// What the controller's configuration file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// The unix socket switches connect to.
    pub listen: PathBuf,
    /// The northbound API's address: an ephemeral loopback port unless a
    /// restart must keep the one its clients (a gateway) were given.
    pub api: SocketAddr,
    /// The sled store; kept across restarts of the process.
    pub store: PathBuf,
    pub hosts: Vec<HostEntry>,
    pub vis: Vec<ViEntry>,
    /// Keepalive: probe a silent switch after this long, drop it after
    /// `echo_timeout` more.
    pub echo_interval: Duration,
    pub echo_timeout: Duration,
    /// In passive mode the hosts' own `controller` targets are left out of
    /// the file: each host's comes from `openflow = "passive"`.
    pub openflow: OpenFlowMode,
    /// The API's bearer token, made afresh for each configuration: the
    /// file gets its hash, [`ControllerConfig::write`] the token itself in
    /// `api-token` beside it, where [`ControllerProcess`] reads it.
    pub api_token: String,
    /// OpenFlow over TLS instead of the unix socket `listen`.
    pub tls: Option<OpenFlowTls>,
    /// The etcd store instead of sled in `store`.
    pub etcd: Option<EtcdStore>,
    /// `[cluster]`: this controller is one replica of several.
    pub cluster: Option<Cluster>,
    /// `[api_tls]`: the API speaks HTTPS; with `cluster`, its CA is also
    /// the replicas' `api_ca`, so a standby forwards writes over HTTPS.
    pub api_tls: Option<ApiTls>,
}

/// `[api_tls]`'s files and the CA that certifies them, which
/// [`ControllerProcess`] trusts (from [`API_CA_FILE`] beside the
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    pub files: crate::pki::CertFiles,
    pub ca_certificate: PathBuf,
}

/// `[cluster]`: this replica's name among the replicas that share the
/// etcd store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub lease_ttl_secs: u64,
    pub replicas: Vec<Replica>,
}

/// `[[cluster.replica]]`: how the switches (`openflow`) and the other
/// replicas (`api`, an `http://` URL) reach one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub name: String,
    pub openflow: String,
    pub api: String,
}

/// `[store] backend = "etcd"`: a cluster's client URLs and the prefix of
/// this data center's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStore {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// How long a commit may take before it counts as refused.
    pub request_timeout: Duration,
    /// The client certificate and the CA, when the cluster speaks TLS.
    pub tls: Option<EtcdClientTls>,
}

/// `[store]`'s TLS files: the controller's client certificate for etcd and
/// the CA that certifies the members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdClientTls {
    pub files: crate::pki::CertFiles,
    pub ca_certificate: PathBuf,
}

impl EtcdStore {
    /// The store on `cluster` under `prefix`, over TLS when the cluster
    /// was started with it.
    pub fn on(cluster: &crate::etcd::EtcdCluster, prefix: &str, request_timeout: Duration) -> Self {
        Self {
            endpoints: cluster.endpoints(),
            prefix: prefix.to_owned(),
            request_timeout,
            tls: cluster.tls().map(|t| EtcdClientTls {
                files: t.client.clone(),
                ca_certificate: t.ca_certificate.clone(),
            }),
        }
    }
}

/// The controller's `ssl:` listener and its `[tls]` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFlowTls {
    pub listen: SocketAddr,
    pub files: crate::pki::CertFiles,
    pub ca_certificate: PathBuf,
}

/// The file beside the configuration that holds the API token.
pub const API_TOKEN_FILE: &str = "api-token";

/// The file beside the configuration that holds the CA certificate of an
/// API that speaks HTTPS.
pub const API_CA_FILE: &str = "api-ca.pem";

/// A token of 32 random bytes in hex.
pub(crate) fn fresh_token() -> String {
    let mut bytes = [0u8; 32];
    password_hash::rand_core::RngCore::fill_bytes(&mut password_hash::rand_core::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The argon2 hash `[api_auth] token_hashes` takes (and a gateway's
/// `[[peer]] token_hash`: the controller's `hash-token`, which the testbed
/// cannot depend on, as the controller's tests depend on the testbed).
pub(crate) fn token_hash(token: &str) -> String {
    use argon2::PasswordHasher;
    let salt = password_hash::SaltString::generate(&mut password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map_or_else(|e| format!("unhashable token: {e}"), |h| h.to_string())
}

impl ControllerConfig {
    pub fn new(listen: PathBuf, store: PathBuf) -> Self {
        Self {
            listen,
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            store,
            hosts: Vec::new(),
            vis: Vec::new(),
            echo_interval: Duration::from_secs(1),
            echo_timeout: Duration::from_secs(3),
            openflow: OpenFlowMode::Active,
            api_token: fresh_token(),
            tls: None,
            etcd: None,
            cluster: None,
            api_tls: None,
        }
    }

    /// The configuration file's text; seed files are named `vi<id>.csv`
    /// beside it.
    pub fn to_toml(&self) -> String {
        let (listen, transport) = match &self.tls {
            Some(t) => (
                format!("ssl:{}", t.listen),
                format!(
                    "[tls]\nprivate_key = {}\ncertificate = {}\nca_certificate = {}\n\n",
                    toml_string(&t.files.private_key.display().to_string()),
                    toml_string(&t.files.certificate.display().to_string()),
                    toml_string(&t.ca_certificate.display().to_string()),
                ),
            ),
            None => (format!("unix:{}", self.listen.display()), String::new()),
        };
        let store = match &self.etcd {
            None => format!(
                "store = {}\n",
                toml_string(&self.store.display().to_string())
            ),
            Some(_) => String::new(),
        };
        let mut out = format!(
            "listen = {}\nplain_openflow = {}\nplain_ovsdb = true\napi = \"{}\"\n{store}\n{transport}\
             [bridge]\nname = \"br-int\"\ndatapath_type = \"netdev\"\nopenflow = {}\n\n\
             [keepalive]\necho_interval_secs = {}\necho_timeout_secs = {}\n\n",
            toml_string(&listen),
            self.tls.is_none(),
            self.api,
            match self.openflow {
                OpenFlowMode::Active => "\"active\"",
                OpenFlowMode::Passive => "\"passive\"",
            },
            self.echo_interval.as_secs_f64(),
            self.echo_timeout.as_secs_f64(),
        );
        let _ = write!(
            out,
            "[api_auth]\ntoken_hashes = [{}]\n\n",
            toml_string(&token_hash(&self.api_token))
        );
        let path = |p: &Path| toml_string(&p.display().to_string());
        if let Some(t) = &self.api_tls {
            let _ = write!(
                out,
                "[api_tls]\nprivate_key = {}\ncertificate = {}\n\n",
                path(&t.files.private_key),
                path(&t.files.certificate)
            );
        }
        if let Some(e) = &self.etcd {
            let endpoints: Vec<String> = e.endpoints.iter().map(|e| toml_string(e)).collect();
            let _ = write!(
                out,
                "[store]\nbackend = \"etcd\"\nendpoints = [{}]\nprefix = {}\n\
                 request_timeout_secs = {}\n",
                endpoints.join(", "),
                toml_string(&e.prefix),
                e.request_timeout.as_secs_f64()
            );
            if let Some(t) = &e.tls {
                let _ = write!(
                    out,
                    "private_key = {}\ncertificate = {}\nca_certificate = {}\n",
                    path(&t.files.private_key),
                    path(&t.files.certificate),
                    path(&t.ca_certificate)
                );
            }
            out.push('\n');
        }
        if let Some(c) = &self.cluster {
            let _ = write!(
                out,
                "[cluster]\nname = {}\nlease_ttl_secs = {}\n",
                toml_string(&c.name),
                c.lease_ttl_secs
            );
            if let Some(t) = &self.api_tls {
                let _ = writeln!(out, "api_ca = {}", path(&t.ca_certificate));
            }
            for r in &c.replicas {
                let _ = write!(
                    out,
                    "[[cluster.replica]]\nname = {}\nopenflow = {}\napi = {}\n",
                    toml_string(&r.name),
                    toml_string(&r.openflow),
                    toml_string(&r.api)
                );
            }
            out.push('\n');
        }
        for host in &self.hosts {
            host.write_toml(&mut out, self.openflow == OpenFlowMode::Active);
        }
        for vi in &self.vis {
            let _ = write!(
                out,
                "[[vi]]\nid = {}\nname = {}\ngre_key = {}\ngateways = [{}]\n",
                vi.id,
                toml_string(&vi.name),
                vi.gre_key,
                vi.gateways
                    .iter()
                    .map(|g| toml_string(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !vi.seed.is_empty() {
                let _ = writeln!(out, "seed = \"vi{}.csv\"", vi.id);
            }
            out.push('\n');
        }
        out
    }

    /// Writes `controller.toml` and the seed files into `dir`; returns the
    /// configuration's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| Error::io_at("writing", &path, e))?;
            Ok(path)
        };
        for vi in self.vis.iter().filter(|v| !v.seed.is_empty()) {
            write(&format!("vi{}.csv", vi.id), &vi.seed_csv())?;
        }
        write(API_TOKEN_FILE, &self.api_token)?;
        let ca = dir.join(API_CA_FILE);
        match &self.api_tls {
            Some(t) => std::fs::copy(&t.ca_certificate, &ca)
                .map(drop)
                .map_err(|e| Error::io_at("copying the API's CA to", &ca, e))?,
            None => match std::fs::remove_file(&ca) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io_at("removing", &ca, e))
                }
                _ => {}
            },
        }
        write("controller.toml", &self.to_toml())
    }
}

/// A string as a TOML basic string: JSON's escapes are all valid TOML.
fn toml_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Where the `iris-controller` binary is: `explicit` if given, else beside
/// the running executable (where cargo puts every binary of the workspace).
pub fn locate_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidate = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| Error::io("finding the running executable", e))?
            .with_file_name("iris-controller"),
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(Error::Usage(format!(
            "no iris-controller binary at {}; build it (cargo build -p iris-controller) or \
             name it with --controller PATH",
            candidate.display()
        )))
    }
}

/// A running `iris-controller run --config FILE`.
#[derive(Debug)]
pub struct ControllerProcess {
    process: Process,
    api: SocketAddr,
    log: PathBuf,
    /// Its API, with the token of its configuration, when it has one.
    client: ApiClient,
}

impl ControllerProcess {
    /// Starts `binary` on `config`, logging to `log`, and waits until it
    /// listens.
    pub fn start(binary: &Path, config: &Path, log: &Path) -> Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,iris_controller=debug");
        let mut process = Process::spawn("iris-controller", command, Some(log))?;
        let line = poll_until("iris-controller", START_TIMEOUT, || {
            process.ensure_running()?;
            let text = std::fs::read_to_string(log).unwrap_or_default();
            Ok(match text.lines().find(|l| l.contains(LISTENING)) {
                Some(line) => Probe::Ready(line.to_owned()),
                None => Probe::NotYet(format!("no {LISTENING:?} line in {}", log.display())),
            })
        })?;
        let api = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("api="))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| Error::UnexpectedOutput {
                command: "iris-controller run".into(),
                reason: "its listening line names no api=ADDRESS".into(),
                output: line.clone(),
            })?;
        let api_token = std::fs::read_to_string(config.with_file_name(API_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_owned());
        // A configuration written by hand may have no CA beside it: its
        // author calls the API with a client of their own.
        let ca = config.with_file_name(API_CA_FILE);
        let client = if line.contains("api_tls=true") {
            ApiClient::https(api, api_token, ca.exists().then_some(ca.as_path()))?
        } else {
            ApiClient::new(api, api_token)?
        };
        Ok(Self {
            process,
            api,
            log: log.to_path_buf(),
            client,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the controller's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.log, lines)
    }

    /// The first line of the log containing `needle`, waiting up to `timeout`.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let log = self.log.clone();
        poll_until(
            &format!("{needle:?} in the controller's log"),
            timeout,
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                    return Ok(Probe::Ready(line.to_owned()));
                }
                self.process.ensure_running()?;
                Ok(Probe::NotYet(tail_of(&log, 5)))
            },
        )
    }

    /// One request to the API; the status and the body.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
        self.client.request(method, path, body)
    }

    /// [`Self::request`], with the response's content type too.
    pub fn request_typed(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String, String)> {
        self.client.request_typed(method, path, body)
    }

    /// A GET answered with 200 and JSON.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        self.client.get(path)
    }

    /// A GET answered with 200 and one of the API's bodies.
    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.client.get(path)
    }

    /// A request that must be answered with `expected`.
    pub fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Result<String> {
        let (status, text) = self.request(method, path, body)?;
        if status == expected {
            Ok(text)
        } else {
            Err(Error::UnexpectedOutput {
                command: format!("{method} {path}"),
                reason: format!("status {status}, expected {expected}"),
                output: text,
            })
        }
    }

    /// Every sample of `/metrics`.
    pub fn metrics(&self) -> Result<Metrics> {
        let (status, text) = self.request("GET", "/metrics", None)?;
        if status != 200 {
            return Err(Error::UnexpectedOutput {
                command: "GET /metrics".into(),
                reason: format!("status {status}"),
                output: text,
            });
        }
        Ok(Metrics::parse(&text))
    }

    /// Waits until `/healthz` counts `switches` switches past their
    /// handshake and `ovsdb` OVSDB sessions; returns how long that took.
    pub fn wait_ready(&mut self, switches: u64, ovsdb: u64, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        poll_until(
            "the controller's switches and OVSDB sessions",
            timeout,
            || {
                self.process.ensure_running()?;
                let h: Healthz = self.client.get("/healthz")?;
                Ok(
                    if h.health.switches_ready as u64 == switches
                        && h.health.ovsdb_connected as u64 == ovsdb
                    {
                        Probe::Ready(start.elapsed())
                    } else {
                        Probe::NotYet(format!(
                            "{h:?}; want {switches} switches and {ovsdb} OVSDB sessions"
                        ))
                    },
                )
            },
        )
    }

    /// An error if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }

    /// SIGTERM, and a clean exit within `grace`.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        let status = self.process.stop(grace)?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                command: "iris-controller run".into(),
                status: status.code(),
                stderr: self.log_tail(20),
            })
        }
    }

    /// How the process exited, waiting up to `within` for it to exit by
    /// itself (it is left running if it does not).
    pub fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus> {
        poll_until("iris-controller to exit", within, || {
            Ok(match self.process.try_exit_status()? {
                Some(status) => Probe::Ready(status),
                None => Probe::NotYet(self.log_tail(5)),
            })
        })
    }

    /// SIGKILL: the process dies at once, as in a crash or a power cut of
    /// the control node, leaving its socket file and store as they are.
    pub fn kill(mut self) -> Result<()> {
        self.process.signal(Signal::SIGKILL)?;
        self.process.stop(Duration::from_secs(1)).map(drop)
    }
}

/// One event of the `/v1/events` stream, stamped when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEvent {
    pub at: Instant,
    /// The event's `data:` line, parsed.
    pub data: Value,
}

/// The controller's `/v1/events` stream, read on a thread of its own from
/// [`ControllerProcess::events`] until [`EventStream::finish`].
#[derive(Debug)]
pub struct EventStream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<ServerEvent>>>>,
}

/// How often the reading thread looks at its stop flag.
const EVENT_POLL: Duration = Duration::from_millis(20);

impl ControllerProcess {
    /// Subscribes to `/v1/events`; returns once the controller answered,
    /// so no event published afterwards is missed.
    pub fn events(&self) -> Result<EventStream> {
        let what = format!("GET {}", self.client.url("/v1/events"));
        let req = self
            .client
            .builder("GET", "/v1/events", None)?
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (opened, answered) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("iris events".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io("starting the event reader's runtime", e))?;
                rt.block_on(read_events(req, what, flag, opened))
            })
            .map_err(|e| Error::io("starting the event reader", e))?;
        let mut stream = EventStream {
            stop,
            thread: Some(thread),
        };
        match answered.recv() {
            Ok(()) => Ok(stream),
            // The reader ended before the stream was open: its error.
            Err(_) => match stream.thread.take().map(JoinHandle::join) {
                Some(Ok(Err(e))) => Err(e),
                _ => Err(Error::Usage("the event reader ended at once".into())),
            },
        }
    }
}

/// Reads the stream `req` opens until `stop`; says on `opened` once the
/// controller answered 200.
async fn read_events(
    req: reqwest::RequestBuilder,
    what: String,
    stop: Arc<AtomicBool>,
    opened: std::sync::mpsc::Sender<()>,
) -> Result<Vec<ServerEvent>> {
    let fail = |e: reqwest::Error| Error::io(&what, std::io::Error::other(e));
    let mut resp = tokio::time::timeout(HTTP_TIMEOUT, req.send())
        .await
        .map_err(|_| Error::io(&what, std::io::ErrorKind::TimedOut.into()))?
        .map_err(fail)?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(Error::UnexpectedOutput {
            command: what,
            reason: "the stream was not opened with 200".into(),
            output: format!("{}", resp.status()),
        });
    }
    let _ = opened.send(());
    let mut sse = SseParser::default();
    let mut events = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let chunk = match tokio::time::timeout(EVENT_POLL, resp.chunk()).await {
            Err(_) => continue,
            Ok(chunk) => chunk.map_err(fail)?,
        };
        let Some(bytes) = chunk else { break };
        let at = Instant::now();
        for event in sse.push(&bytes) {
            // Every event Iris publishes is JSON; anything else is not an
            // event this reader is for.
            if let Ok(data) = serde_json::from_str(&event.data) {
                events.push(ServerEvent { at, data });
            }
        }
    }
    Ok(events)
}

impl EventStream {
    /// Stops reading; every event read, in order.
    pub fn finish(mut self) -> Result<Vec<ServerEvent>> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(events)) => events,
            Some(Err(_)) => Err(Error::Usage("the event reader panicked".into())),
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The samples of an OpenMetrics exposition, by series (`name{labels}`),
/// and the metrics it declares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    samples: BTreeMap<String, f64>,
    /// The names of its `# TYPE` lines.
    declared: std::collections::BTreeSet<String>,
}

/// A metric read from `/metrics` that the controller does not export: a
/// renamed or dropped metric, which must fail the check that reads it
/// rather than read as 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingMetric(pub String);

impl std::fmt::Display for MissingMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the controller does not export {} (renamed or dropped?); nothing can be checked \
             against it",
            self.0
        )
    }
}

impl std::error::Error for MissingMetric {}

/// What a sample's name adds to its metric's: a counter's `_total`, a
/// histogram's `_count`, `_sum` and `_bucket`.
const SAMPLE_SUFFIXES: [&str; 5] = ["_total", "_count", "_sum", "_bucket", "_created"];

impl Metrics {
    /// Reads `name{labels} value` lines and the `# TYPE name kind` lines;
    /// other comments and lines that do not parse are skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        let declared = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        Self { samples, declared }
    }

    /// Whether the exposition declares the metric sample name `name`
    /// (without labels) belongs to.
    fn declares(&self, name: &str) -> bool {
        self.declared.contains(name)
            || SAMPLE_SUFFIXES
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .any(|base| self.declared.contains(base))
    }

    /// One series, e.g. `iris_flow_mods_sent_total` or
    /// `iris_packet_ins_total{reason="rarp"}`. A labelled series of a
    /// declared metric that has not been counted yet is 0; anything else
    /// absent is an error, so that a check never passes on a metric the
    /// controller does not have.
    pub fn get(&self, series: &str) -> std::result::Result<f64, MissingMetric> {
        if let Some(v) = self.samples.get(series) {
            return Ok(*v);
        }
        match series.split_once('{') {
            Some((name, _)) if self.declares(name) => Ok(0.0),
            _ => Err(MissingMetric(series.to_owned())),
        }
    }

    /// [`Self::by_label`] of a metric the controller must declare.
    pub fn labelled(
        &self,
        name: &str,
        label: &str,
    ) -> std::result::Result<BTreeMap<String, f64>, MissingMetric> {
        if !self.declares(name) {
            return Err(MissingMetric(name.to_owned()));
        }
        Ok(self.by_label(name, label))
    }

    /// [`Self::gained`] of a metric the controller must declare.
    pub fn gained_in(
        &self,
        before: &Self,
        name: &str,
        label: &str,
    ) -> std::result::Result<BTreeMap<String, f64>, MissingMetric> {
        before.labelled(name, label)?;
        self.labelled(name, label)?;
        Ok(self.gained(before, name, label))
    }

    /// One series, e.g. `iris_flow_mods_sent_total`; 0 when absent (a
    /// labelled counter appears only once counted). Checks that must fail
    /// on a metric the controller does not export use [`Self::get`].
    pub fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The series of metric `name` with label `label`, by label value:
    /// `by_label("iris_packet_ins_total", "reason")`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let open = format!("{name}{{");
        let key = format!("{label}=\"");
        self.samples
            .iter()
            .filter_map(|(series, v)| {
                let labels = series.strip_prefix(&open)?.strip_suffix('}')?;
                let value = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix(&key)?.strip_suffix('"'))?;
                Some((value.to_owned(), *v))
            })
            .collect()
    }

    /// What each series of `name` by `label` gained since `before`; series
    /// that did not change are left out.
    pub fn gained(&self, before: &Self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let old = before.by_label(name, label);
        self.by_label(name, label)
            .into_iter()
            .filter_map(|(k, v)| {
                let d = v - old.get(&k).copied().unwrap_or(0.0);
                (d != 0.0).then_some((k, d))
            })
            .collect()
    }
}

/// A GET of `path` from the HTTP server at `addr` (a gateway's API): the
/// status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    ApiClient::new(addr, None)?.request("GET", path, None)
}

/// One request with a JSON body to the HTTP API at `addr` (the broker's),
/// with bearer `token`: the status and the body.
pub fn http_request(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    ApiClient::new(addr, token.map(str::to_owned))?.request(method, path, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_series_and_label() {
        let text = "# HELP iris_packet_ins PacketIns received\n\
                    # TYPE iris_packet_ins counter\n\
                    iris_packet_ins_total{reason=\"rarp\"} 2\n\
                    iris_packet_ins_total{reason=\"unknown_source\"} 5\n\
                    iris_flow_mods_sent_total 17\n\
                    iris_move_latency_seconds_sum 0.0125\n\
                    # EOF\n";
        let m = Metrics::parse(text);
        assert_eq!(m.value("iris_flow_mods_sent_total"), 17.0);
        assert_eq!(m.value("iris_move_latency_seconds_sum"), 0.0125);
        assert_eq!(m.value("iris_group_mods_sent_total"), 0.0);
        let by_reason = m.by_label("iris_packet_ins_total", "reason");
        assert_eq!(by_reason.len(), 2);
        assert_eq!(by_reason["unknown_source"], 5.0);
        let later = Metrics::parse(&text.replace("} 5", "} 8"));
        let gained = later.gained(&m, "iris_packet_ins_total", "reason");
        assert_eq!(gained, BTreeMap::from([("unknown_source".to_owned(), 3.0)]));
    }

    #[test]
    fn a_metric_the_controller_does_not_export_is_an_error_not_a_zero() {
        let text = "# HELP iris_packet_ins PacketIns received\n\
                    # TYPE iris_packet_ins counter\n\
                    iris_packet_ins_total{reason=\"rarp\"} 2\n\
                    # TYPE iris_flow_mods_sent counter\n\
                    iris_flow_mods_sent_total 0\n\
                    # TYPE iris_move_latency_seconds histogram\n\
                    iris_move_latency_seconds_count 0\n\
                    # EOF\n";
        let m = Metrics::parse(text);
        assert_eq!(m.get("iris_flow_mods_sent_total"), Ok(0.0));
        assert_eq!(m.get("iris_move_latency_seconds_count"), Ok(0.0));
        assert_eq!(m.get("iris_packet_ins_total{reason=\"rarp\"}"), Ok(2.0));
        // Declared, not counted yet for this label.
        assert_eq!(m.get("iris_packet_ins_total{reason=\"garp\"}"), Ok(0.0));
        for missing in [
            "iris_group_mods_sent_total",
            "iris_flow_mod_sent_total",
            "iris_moves_incomplete_total{why=\"refused\"}",
        ] {
            let e = m.get(missing).unwrap_err();
            assert!(e.to_string().contains(missing), "{e}");
        }
        assert!(m.labelled("iris_packet_ins_total", "reason").is_ok());
        assert!(m.labelled("iris_packet_in_total", "reason").is_err());
        assert!(m.gained_in(&m, "iris_nothing_total", "why").is_err());
    }

    #[test]
    fn the_configuration_names_every_host_vi_and_seed_file() {
        let mut c = ControllerConfig::new("/run/x/of.sock".into(), "/run/x/store".into());
        c.hosts.push(HostEntry {
            name: "pm1".into(),
            underlay_ip: Ipv4Addr::new(192, 168, 60, 1),
            ovsdb: "unix:/run/x/pm1/db.sock".into(),
            controller: "unix:/run/x/pm1/iris-controller.sock".into(),
            role: HostRole::Compute,
        });
        c.hosts.push(HostEntry {
            name: "gw1".into(),
            underlay_ip: Ipv4Addr::new(192, 168, 60, 254),
            ovsdb: "unix:/run/x/gw1/db.sock".into(),
            controller: "unix:/run/x/gw1/iris-controller.sock".into(),
            role: HostRole::Gateway,
        });
        c.vis.push(
            ViEntry::new(1, "acme", 1001)
                .seed(MacAddr::local(1), Ipv4Addr::new(10, 0, 0, 1), None)
                .seed(MacAddr::local(1), Ipv4Addr::new(10, 10, 0, 1), Some(10)),
        );
        let mut globex = ViEntry::new(2, "globex", 1002);
        globex.gateways.push("gw1".into());
        c.vis.push(globex);
        let text = c.to_toml();
        assert!(
            !text.contains(&c.api_token),
            "the token itself stays out of the file"
        );
        assert!(text.contains("token_hashes = [\"$argon2id$"), "{text}");
        for line in [
            "listen = \"unix:/run/x/of.sock\"",
            "ovsdb = \"unix:/run/x/pm1/db.sock\"",
            "controller = \"unix:/run/x/pm1/iris-controller.sock\"",
            "seed = \"vi1.csv\"",
            "gre_key = 1002",
            "echo_interval_secs = 1",
            "role = \"gateway\"",
            "gateways = [\"gw1\"]",
            "gateways = []",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
        assert_eq!(text.matches("seed =").count(), 1, "{text}");
        assert_eq!(
            c.vis[0].seed_csv(),
            "mac,ip,vlan\n02:00:00:00:00:01,10.0.0.1,untagged\n02:00:00:00:00:01,10.10.0.1,10\n"
        );
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
    }
}
