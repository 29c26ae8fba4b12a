//! The controller's TOML configuration: read strictly, validated whole, and
//! every problem reported with the key to fix and what to write instead.
//!
//! ```toml
//! listen = "0.0.0.0:6653"          # or "unix:/run/iris/openflow.sock"
//! api = "127.0.0.1:8080"
//! store = "/var/lib/iris/controller"
//!
//! [bridge]
//! name = "br-int"
//! datapath_type = "system"         # "netdev" for the userspace datapath
//! controller = "tcp:10.0.0.100:6653"  # how switches reach this controller
//! openflow = "active"              # or "passive": switches listen, Iris connects
//!
//! [keepalive]
//! echo_interval_secs = 5
//! echo_timeout_secs = 15
//!
//! [[host]]
//! name = "pm1"
//! underlay_ip = "10.0.0.1"
//! role = "compute"                 # or "gateway"
//! ovsdb = "ssl:10.0.0.1:6640"      # with [tls]; or "unix:/var/run/openvswitch/db.sock",
//!                                  # or "tcp:10.0.0.1:6640" with plain_ovsdb = true
//! # datapath_id = "0000000000000001"  (default: derived from the name)
//! # controller = "ptcp:6653:10.0.0.1"  (this host's own target; a passive
//! #   one, ptcp:PORT:IP, pssl:PORT:IP with [tls], or punix:PATH, makes its
//! #   switch listen)
//!
//! [[vi]]
//! id = 1
//! name = "acme"
//! gre_key = 1001
//! gateways = ["gw1"]
//! seed = "acme.csv"                # (MAC, IP, VLAN) rows; relative to this file
//! ```
//!
//! The host and VI tables ([`HostSpec`], [`ViSpec`]) are also the bodies the
//! northbound API accepts, so a host is described the same way everywhere.

use crate::api_server::ApiLimits;
use crate::control::ManagedHost;
use crate::model::Topology;
use crate::model::{host_address_problem, Host, HostName, HostRole, Location, Vi, ViId, Vlan};
use crate::ovs_manager::OpenFlowMode;
use crate::registry::{Registry, RegistryError, SeedEntry};
use crate::server::ListenAddr;
use crate::session::SessionConfig;
use crate::store::etcd::EtcdConfig;
pub use iris_schemas::northbound::{HostSpec, RoleSpec, SeedRow, ViSpec};
use ofp::packet::MacAddr;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use utoipa::ToSchema;

/// One thing wrong with the configuration (or an API body): where, and
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key's path, like `vi[2].gre_key` or `host "pm1".ovsdb`.
    pub key: String,
    /// What is wrong and what to write instead.
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Why a configuration file could not be used.
#[derive(Debug)]
pub enum LoadError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not TOML, or not the shape this file must have (unknown keys
    /// included); the parser's message points at the line.
    Syntax { path: PathBuf, message: String },
    /// Well-formed but wrong; every problem found.
    Invalid {
        path: PathBuf,
        errors: Vec<ConfigError>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => write!(f, "{}: cannot read: {error}", path.display()),
            Self::Syntax { path, message } => {
                write!(f, "{}: {}", path.display(), message.trim_end())
            }
            Self::Invalid { path, errors } => {
                write!(f, "{}: {} problem(s):", path.display(), errors.len())?;
                for e in errors {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {}

impl From<RoleSpec> for HostRole {
    fn from(r: RoleSpec) -> Self {
        match r {
            RoleSpec::Compute => HostRole::Compute,
            RoleSpec::Gateway => HostRole::Gateway,
        }
    }
}

impl From<HostRole> for RoleSpec {
    fn from(r: HostRole) -> Self {
        match r {
            HostRole::Compute => RoleSpec::Compute,
            HostRole::Gateway => RoleSpec::Gateway,
        }
    }
}

/// The controller's checks of a [`HostSpec`] (a shared type, so its
/// methods are a trait's).
pub trait HostSpecExt: Sized {
    /// Checks one host on its own; `key` prefixes the error paths.
    fn to_host(&self, key: &str) -> Result<ManagedHost, Vec<ConfigError>>;
    fn from_host(m: &ManagedHost) -> Self;
}

impl HostSpecExt for HostSpec {
    fn to_host(&self, key: &str) -> Result<ManagedHost, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if let Err(p) = check_name(&self.name) {
            errors.push(ConfigError::new(format!("{key}.name"), p));
        }
        if let Err(p) = check_ovsdb_remote(&self.ovsdb) {
            errors.push(ConfigError::new(format!("{key}.ovsdb"), p));
        }
        if let Some(Err(p)) = self.controller.as_deref().map(check_controller_target) {
            errors.push(ConfigError::new(format!("{key}.controller"), p));
        }
        if let Some(why) = host_address_problem(self.underlay_ip) {
            errors.push(ConfigError::new(
                format!("{key}.underlay_ip"),
                format!(
                    "{} is {why} and cannot terminate tunnels; write the host's own underlay \
                     address",
                    self.underlay_ip
                ),
            ));
        }
        let datapath_id = match &self.datapath_id {
            None => derived_datapath_id(&self.name),
            Some(text) => match parse_datapath_id(text) {
                Ok(d) => d,
                Err(p) => {
                    errors.push(ConfigError::new(format!("{key}.datapath_id"), p));
                    0
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ManagedHost {
            host: Host {
                name: HostName(self.name.clone()),
                underlay_ip: self.underlay_ip,
                role: self.role.into(),
                ovsdb_remote: self.ovsdb.clone(),
                datapath_id,
            },
            controller: self.controller.clone(),
        })
    }

    fn from_host(m: &ManagedHost) -> Self {
        let h = &m.host;
        Self {
            name: h.name.0.clone(),
            underlay_ip: h.underlay_ip,
            role: h.role.into(),
            ovsdb: h.ovsdb_remote.clone(),
            datapath_id: Some(format!("{:016x}", h.datapath_id)),
            controller: m.controller.clone(),
        }
    }
}

/// The controller's checks of a [`ViSpec`].
pub trait ViSpecExt: Sized {
    /// Checks one VI on its own; `key` prefixes the error paths.
    fn to_vi(&self, key: &str) -> Result<Vi, Vec<ConfigError>>;
    /// The VI as written, checked or not: what the configuration check
    /// holds its seed file against, so that a fault in the VI does not
    /// hide those in its seed.
    fn as_written(&self) -> Vi;
    fn from_vi(v: &Vi) -> Self;
}

impl ViSpecExt for ViSpec {
    fn to_vi(&self, key: &str) -> Result<Vi, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if !ViId(self.id).is_valid() {
            errors.push(ConfigError::new(
                format!("{key}.id"),
                format!(
                    "{} is not a usable VI id; use 1 to {} (0 marks packets outside every VI)",
                    self.id,
                    ViId::MAX
                ),
            ));
        }
        if let Err(p) = check_name(&self.name) {
            errors.push(ConfigError::new(format!("{key}.name"), p));
        }
        if self.gre_key == 0 {
            errors.push(ConfigError::new(
                format!("{key}.gre_key"),
                "0 means \"no key\" on a GRE tunnel; use 1 or more",
            ));
        }
        for (i, g) in self.gateways.iter().enumerate() {
            if let Err(p) = check_name(g) {
                errors.push(ConfigError::new(format!("{key}.gateways[{i}]"), p));
            }
            if let Some(j) = self.gateways[..i].iter().position(|h| h == g) {
                errors.push(ConfigError::new(
                    format!("{key}.gateways[{i}]"),
                    format!("{g:?} is already gateways[{j}]; list each gateway once"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Vi {
            id: ViId(self.id),
            name: self.name.clone(),
            gre_key: self.gre_key,
            gateways: self.gateways.iter().cloned().map(HostName).collect(),
        })
    }

    fn as_written(&self) -> Vi {
        Vi {
            id: ViId(self.id),
            name: self.name.clone(),
            gre_key: self.gre_key,
            gateways: self.gateways.iter().cloned().map(HostName).collect(),
        }
    }

    fn from_vi(v: &Vi) -> Self {
        Self {
            id: v.id.0,
            name: v.name.clone(),
            gre_key: v.gre_key,
            gateways: v.gateways.iter().map(|g| g.0.clone()).collect(),
            seed: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawBridge {
    #[serde(default = "default_bridge_name")]
    name: String,
    #[serde(default = "default_datapath_type")]
    datapath_type: String,
    #[serde(default)]
    controller: Option<String>,
    #[serde(default)]
    openflow: Option<String>,
}

impl Default for RawBridge {
    fn default() -> Self {
        Self {
            name: default_bridge_name(),
            datapath_type: default_datapath_type(),
            controller: None,
            openflow: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawKeepalive {
    #[serde(default = "default_echo_interval")]
    echo_interval_secs: f64,
    #[serde(default = "default_echo_timeout")]
    echo_timeout_secs: f64,
}

impl Default for RawKeepalive {
    fn default() -> Self {
        Self {
            echo_interval_secs: default_echo_interval(),
            echo_timeout_secs: default_echo_timeout(),
        }
    }
}

/// `[api_limits]`: how long and how many for the northbound API
/// ([`ApiLimits`]).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiLimits {
    max_connections: Option<i64>,
    header_timeout_secs: Option<f64>,
    body_timeout_secs: Option<f64>,
    shutdown_grace_secs: Option<f64>,
}

impl RawApiLimits {
    /// The limits, each fault pushed to `errors` under `api_limits.KEY` (the
    /// broker reads the same table).
    pub fn validate(&self, errors: &mut Vec<ConfigError>) -> ApiLimits {
        let default = ApiLimits::default();
        let secs =
            |key: &str, v: Option<f64>, default: Duration, errors: &mut Vec<ConfigError>| match v {
                None => default,
                Some(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Duration::from_secs_f64(v),
                Some(v) => {
                    errors.push(ConfigError::new(
                        format!("api_limits.{key}"),
                        format!(
                            "{v} is not a usable number of seconds; write a value in (0, 3600]"
                        ),
                    ));
                    default
                }
            };
        let max_connections = match self.max_connections {
            None => None,
            Some(n @ 1..=65536) => usize::try_from(n).ok(),
            Some(n) => {
                errors.push(ConfigError::new(
                    "api_limits.max_connections",
                    format!(
                        "{n} connections is not a usable cap; write 1 to 65536, or leave it out \
                         for a quarter of the open-file limit"
                    ),
                ));
                None
            }
        };
        ApiLimits {
            max_connections,
            header_timeout: secs(
                "header_timeout_secs",
                self.header_timeout_secs,
                default.header_timeout,
                errors,
            ),
            body_timeout: secs(
                "body_timeout_secs",
                self.body_timeout_secs,
                default.body_timeout,
                errors,
            ),
            shutdown_grace: secs(
                "shutdown_grace_secs",
                self.shutdown_grace_secs,
                default.shutdown_grace,
                errors,
            ),
        }
    }
}

/// `[api_auth]`: who may use the northbound API ([`ApiAuthConfig`]).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawApiAuth {
    #[serde(default)]
    token_hashes: Vec<String>,
    open_routes: Option<Vec<String>>,
    #[serde(default)]
    allow_unauthenticated: bool,
}

/// Who may use the northbound API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAuthConfig {
    /// argon2 hashes of the bearer tokens; empty: no token is asked for.
    pub token_hashes: Vec<password_hash::PasswordHashString>,
    /// Paths answered to GET and HEAD without a token.
    pub open_routes: BTreeSet<String>,
}

impl RawApiAuth {
    fn validate(&self, api: Option<&SocketAddr>, errors: &mut Vec<ConfigError>) -> ApiAuthConfig {
        let mut token_hashes = Vec::new();
        for (i, text) in self.token_hashes.iter().enumerate() {
            match crate::api_auth::parse_hash(text) {
                Ok(h) => token_hashes.push(h),
                Err(p) => errors.push(ConfigError::new(format!("api_auth.token_hashes[{i}]"), p)),
            }
        }
        let open_routes = match &self.open_routes {
            None => crate::api_auth::default_open_routes(),
            Some(routes) => {
                for (i, r) in routes.iter().enumerate() {
                    if !r.starts_with('/') || r.contains(['?', '#', '{']) {
                        errors.push(ConfigError::new(
                            format!("api_auth.open_routes[{i}]"),
                            format!(
                                "{r:?} is not a path; write one as requested, e.g. \"/healthz\""
                            ),
                        ));
                    }
                }
                routes.iter().cloned().collect()
            }
        };
        if self.allow_unauthenticated && !self.token_hashes.is_empty() {
            errors.push(ConfigError::new(
                "api_auth.allow_unauthenticated",
                "token_hashes are given, so the API asks for a token; remove one of the two",
            ));
        }
        if self.token_hashes.is_empty() && !self.allow_unauthenticated {
            if let Some(api) = api.filter(|a| !a.ip().is_loopback()) {
                errors.push(ConfigError::new(
                    "api_auth.token_hashes",
                    format!(
                        "api = \"{api}\" listens beyond this machine and no token is configured, \
                         so anyone who reaches it could change every VI; add a hash from \
                         `iris-controller hash-token` to [api_auth] token_hashes (or, behind an \
                         authenticating proxy, set allow_unauthenticated = true)"
                    ),
                ));
            }
        }
        ApiAuthConfig {
            token_hashes,
            open_routes,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_api")]
    api: String,
    #[serde(default = "default_raw_store")]
    #[schema(value_type = StoreSchema)]
    store: RawStore,
    #[serde(default)]
    bridge: RawBridge,
    #[serde(default)]
    keepalive: RawKeepalive,
    #[serde(default)]
    api_limits: RawApiLimits,
    #[serde(default)]
    api_auth: RawApiAuth,
    #[serde(default)]
    plain_openflow: bool,
    #[serde(default)]
    plain_ovsdb: bool,
    tls: Option<RawTls>,
    api_tls: Option<RawApiTls>,
    cluster: Option<RawCluster>,
    #[serde(default, rename = "host")]
    hosts: Vec<HostSpec>,
    #[serde(default, rename = "vi")]
    vis: Vec<ViSpec>,
}

/// `[cluster]`: this controller is one of several replicas sharing an
/// etcd store, one of them leading.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    /// This replica's name: one of the `[[cluster.replica]]` names.
    name: String,
    /// How long the leader's etcd lease outlives its last renewal: a
    /// standby takes over this long after the leader died.
    #[serde(default = "default_lease_ttl_secs")]
    lease_ttl_secs: u64,
    /// The CA certificate (PEM) the replicas' API certificates chain to:
    /// with it a standby forwards a write to a leader whose API speaks
    /// HTTPS, trusting only this CA; without it the write gets a 307
    /// redirect to the leader. Relative to the configuration file.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    api_ca: Option<PathBuf>,
    #[serde(rename = "replica")]
    replicas: Vec<RawReplica>,
}

/// `[[cluster.replica]]`: one replica, as the switches and the other
/// replicas reach it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawReplica {
    name: String,
    /// Its OpenFlow listener as a bridge's controller target, e.g.
    /// `tcp:10.0.0.11:6653` or `ssl:10.0.0.11:6653`.
    openflow: String,
    /// Its northbound API, e.g. `http://10.0.0.11:8080`.
    api: String,
}

fn default_lease_ttl_secs() -> u64 {
    2
}

/// A validated `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This replica's name.
    pub name: String,
    pub lease_ttl: Duration,
    pub replicas: Vec<Replica>,
    /// `api_ca`, resolved: a standby forwards writes to an HTTPS leader.
    pub api_ca: Option<PathBuf>,
}

/// One replica of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub name: String,
    pub openflow: String,
    /// `http://HOST:PORT` or `https://HOST:PORT`, without a trailing slash.
    pub api: String,
}

impl Replica {
    /// Whether its API speaks HTTPS (`check_api_url` took its URL).
    pub fn speaks_https(&self) -> bool {
        self.api.starts_with("https://")
    }
}

impl ClusterConfig {
    /// The API URL of the replica named `name`.
    pub fn api_of(&self, name: &str) -> Option<&str> {
        self.replicas
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.api.as_str())
    }
}

impl RawCluster {
    fn validate(
        &self,
        base: &Path,
        etcd: bool,
        bridge_controller: bool,
        api_tls: bool,
        errors: &mut Vec<ConfigError>,
    ) -> ClusterConfig {
        if !etcd {
            errors.push(ConfigError::new(
                "cluster",
                "replicas share the registry, hosts and VIs through etcd; set [store] backend = \
                 \"etcd\" with the cluster's endpoints",
            ));
        }
        if bridge_controller {
            errors.push(ConfigError::new(
                "bridge.controller",
                "with [cluster] every bridge gets each replica's openflow target; remove \
                 bridge.controller",
            ));
        }
        if !(2..=60).contains(&self.lease_ttl_secs) {
            errors.push(ConfigError::new(
                "cluster.lease_ttl_secs",
                format!(
                    "{} is out of range; write 2 to 60 (etcd grants no lease under about 2 s, \
                     and a standby waits this long after the leader died)",
                    self.lease_ttl_secs
                ),
            ));
        }
        let mut replicas = Vec::new();
        let mut names = BTreeSet::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let key = |f: &str| format!("cluster.replica[{i}].{f}");
            if r.name.is_empty() || r.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(ConfigError::new(
                    key("name"),
                    format!("{:?} is not a name; write one word, e.g. \"ctl1\"", r.name),
                ));
            } else if !names.insert(r.name.clone()) {
                errors.push(ConfigError::new(
                    key("name"),
                    format!("{:?} names two replicas; give each its own", r.name),
                ));
            }
            if let Err(p) = check_active_target(&r.openflow) {
                errors.push(ConfigError::new(key("openflow"), p));
            }
            let api = r.api.trim_end_matches('/');
            match check_api_url(api) {
                Ok(https) if r.name == self.name && https != api_tls => {
                    errors.push(ConfigError::new(
                        key("api"),
                        format!(
                            "this replica's API speaks {}, so its URL starts with {}",
                            if api_tls {
                                "HTTPS ([api_tls])"
                            } else {
                                "plain HTTP"
                            },
                            if api_tls { "https://" } else { "http://" }
                        ),
                    ));
                }
                Ok(_) => {}
                Err(p) => errors.push(ConfigError::new(key("api"), p)),
            }
            replicas.push(Replica {
                name: r.name.clone(),
                openflow: r.openflow.clone(),
                api: api.to_owned(),
            });
        }
        if self.replicas.is_empty() {
            errors.push(ConfigError::new(
                "cluster.replica",
                "no replica is listed; add a [[cluster.replica]] table for each, this one \
                 included",
            ));
        } else if !names.contains(&self.name) {
            errors.push(ConfigError::new(
                "cluster.name",
                format!(
                    "{:?} is none of the [[cluster.replica]] names ({}); name this replica as \
                     listed",
                    self.name,
                    names.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let api_ca = self.api_ca.as_ref().map(|ca| base.join(ca));
        if let Some(ca) = &api_ca {
            if !replicas.iter().any(Replica::speaks_https) {
                errors.push(ConfigError::new(
                    "cluster.api_ca",
                    "no replica's API speaks HTTPS, so there is nothing to trust it for; remove \
                     api_ca, or give the replicas [api_tls] and https:// URLs",
                ));
            } else if let Err(p) = crate::tls::https_client_config(ca) {
                errors.push(ConfigError::new("cluster.api_ca", p));
            }
        }
        ClusterConfig {
            name: self.name.clone(),
            lease_ttl: Duration::from_secs(self.lease_ttl_secs),
            replicas,
            api_ca,
        }
    }
}

/// A replica's API URL: `http://HOST:PORT` or `https://HOST:PORT`;
/// whether it is HTTPS.
fn check_api_url(url: &str) -> Result<bool, String> {
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => {
            return Err(format!(
                "{url:?} is not an API URL; write http://HOST:PORT (or https:// with [api_tls])"
            ))
        }
    };
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{url:?} is not an API URL; write http://HOST:PORT, the port included and no path"
        ));
    }
    Ok(https)
}

fn default_listen() -> String {
    "0.0.0.0:6653".into()
}

/// The JSON Schema of the configuration file, checked in at
/// `schemas/config/controller.schema.json` (editors and CI check files
/// against it; the controller itself reads with [`load`]).
pub fn json_schema() -> serde_json::Value {
    iris_schemas::northbound::generated::json_schema::<RawConfig>(
        "iris-controller configuration (TOML)",
    )
}
fn default_api() -> String {
    "127.0.0.1:8080".into()
}
fn default_store() -> PathBuf {
    "/var/lib/iris/controller".into()
}
fn default_raw_store() -> RawStore {
    RawStore::Path(default_store())
}

/// `store = "DIR"` (sled in DIR, as always), or a `[store]` table naming
/// its backend. The broker reads its own `store` the same way.
#[derive(Debug, Clone)]
pub enum RawStore {
    Path(PathBuf),
    Table(RawStoreTable),
}

impl<'de> Deserialize<'de> for RawStore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = RawStore;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a directory for the sled store, or a [store] table")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawStore, E> {
                Ok(RawStore::Path(s.into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawStore, A::Error> {
                // The table's own errors (an unknown key) keep their words.
                RawStoreTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawStore::Table)
            }
        }
        d.deserialize_any(Either)
    }
}

impl RawStore {
    /// `max_txn_ops`, if the table gives it.
    pub fn max_txn_ops(&self) -> Option<usize> {
        match self {
            RawStore::Table(t) => t.max_txn_ops,
            RawStore::Path(_) => None,
        }
    }
}

/// What `store` may be, for the configuration's JSON Schema: [`RawStore`]
/// reads it by hand to keep the table's own error words.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StoreSchema {
    Path(String),
    Table(RawStoreTable),
}

/// `[store]`: `backend = "sled"` with `path`, or `backend = "etcd"` with
/// the cluster's endpoints and this data center's key prefix.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStoreTable {
    backend: String,
    #[schema(value_type = Option<String>)]
    path: Option<PathBuf>,
    endpoints: Option<Vec<String>>,
    prefix: Option<String>,
    dial_timeout_secs: Option<f64>,
    request_timeout_secs: Option<f64>,
    max_txn_ops: Option<usize>,
    /// TLS to the members (`https://` endpoints): this controller's key
    /// and certificate, and the CA the members' certificates chain to.
    #[schema(value_type = Option<String>)]
    private_key: Option<PathBuf>,
    #[schema(value_type = Option<String>)]
    certificate: Option<PathBuf>,
    #[schema(value_type = Option<String>)]
    ca_certificate: Option<PathBuf>,
}

/// The store `raw` describes: the sled directory (resolved as `store =
/// DIR` is; `default_dir` when a sled table names none), and the etcd
/// store's settings when the backend is etcd.
pub fn check_store_table(
    raw: &RawStore,
    default_dir: &Path,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> (PathBuf, Option<EtcdConfig>) {
    let t = match raw {
        RawStore::Path(p) => return (check_store(p, base, errors), None),
        RawStore::Table(t) => t,
    };
    let etcd_only = [
        ("endpoints", t.endpoints.is_some()),
        ("prefix", t.prefix.is_some()),
        ("dial_timeout_secs", t.dial_timeout_secs.is_some()),
        ("request_timeout_secs", t.request_timeout_secs.is_some()),
        ("max_txn_ops", t.max_txn_ops.is_some()),
        ("private_key", t.private_key.is_some()),
        ("certificate", t.certificate.is_some()),
        ("ca_certificate", t.ca_certificate.is_some()),
    ];
    match t.backend.as_str() {
        "sled" => {
            for (key, given) in etcd_only {
                if given {
                    errors.push(ConfigError::new(
                        format!("store.{key}"),
                        "is for backend = \"etcd\"; remove it, or set backend = \"etcd\"",
                    ));
                }
            }
            let path = t.path.clone().unwrap_or_else(|| default_dir.to_owned());
            (check_store(&path, base, errors), None)
        }
        "etcd" => {
            if t.path.is_some() {
                errors.push(ConfigError::new(
                    "store.path",
                    "is for backend = \"sled\"; an etcd store lives in its cluster, so remove it",
                ));
            }
            let mut etcd = EtcdConfig::new(Vec::new(), t.prefix.clone().unwrap_or_default());
            etcd.tls = check_etcd_tls(t, base, errors);
            let endpoints = t.endpoints.clone().unwrap_or_default();
            if endpoints.is_empty() {
                errors.push(ConfigError::new(
                    "store.endpoints",
                    "an etcd store needs its members' client URLs, e.g. endpoints = \
                     [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"http://10.0.0.3:2379\"]",
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, e) in endpoints.iter().enumerate() {
                let key = format!("store.endpoints[{i}]");
                match check_etcd_endpoint(e, etcd.tls.is_some()) {
                    Err(p) => errors.push(ConfigError::new(key, p)),
                    Ok(()) if !seen.insert(e.trim_end_matches('/')) => {
                        errors.push(ConfigError::new(
                            key,
                            format!("{e:?} is listed twice; list each member once"),
                        ))
                    }
                    Ok(()) => {}
                }
            }
            etcd.endpoints = endpoints;
            match &t.prefix {
                None => errors.push(ConfigError::new(
                    "store.prefix",
                    "name this data center's keys, e.g. prefix = \"iris/dc1/\": data centers \
                     sharing a cluster each need their own",
                )),
                Some(p) if p.is_empty() || !p.ends_with('/') || p.starts_with('/') => {
                    errors.push(ConfigError::new(
                        "store.prefix",
                        format!(
                            "{p:?} must be a key path ending in \"/\" (not starting with one), \
                             e.g. \"iris/dc1/\", so that no data center's keys start another's"
                        ),
                    ))
                }
                Some(_) => {}
            }
            for (key, value, field) in [
                (
                    "store.dial_timeout_secs",
                    t.dial_timeout_secs,
                    &mut etcd.dial_timeout,
                ),
                (
                    "store.request_timeout_secs",
                    t.request_timeout_secs,
                    &mut etcd.request_timeout,
                ),
            ] {
                match value {
                    Some(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => {
                        *field = Duration::from_secs_f64(v);
                    }
                    Some(v) => errors.push(ConfigError::new(
                        key,
                        format!(
                            "{v} is not a usable number of seconds; write a value in (0, 3600]"
                        ),
                    )),
                    None => {}
                }
            }
            match t.max_txn_ops {
                Some(n) if n >= 2 => etcd.max_txn_ops = n,
                Some(n) => errors.push(ConfigError::new(
                    "store.max_txn_ops",
                    format!(
                        "{n} leaves no room for a write beside the store's marker; write etcd's \
                         --max-txn-ops (128 unless it was changed)"
                    ),
                )),
                None => {}
            }
            (default_store(), Some(etcd))
        }
        other => {
            errors.push(ConfigError::new(
                "store.backend",
                format!("{other:?} is not a store; write \"sled\" (embedded) or \"etcd\""),
            ));
            (default_store(), None)
        }
    }
}

/// `[store]`'s TLS files: all three or none; each must load.
fn check_etcd_tls(
    t: &RawStoreTable,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::tls::TlsFiles> {
    let files = match (&t.private_key, &t.certificate, &t.ca_certificate) {
        (None, None, None) => return None,
        (Some(k), Some(c), Some(ca)) => crate::tls::TlsFiles {
            private_key: base.join(k),
            certificate: base.join(c),
            ca_certificate: base.join(ca),
        },
        _ => {
            errors.push(ConfigError::new(
                "store",
                "TLS to etcd needs private_key, certificate and ca_certificate together \
                 (PEM files, relative to this file)",
            ));
            return None;
        }
    };
    if let Err(p) = files.etcd_pems() {
        errors.push(ConfigError::new("store", p));
    }
    Some(files)
}

/// An etcd member's client URL: `https://HOST:PORT` with TLS files,
/// `http://HOST:PORT` without.
fn check_etcd_endpoint(e: &str, tls: bool) -> Result<(), String> {
    let scheme = if tls { "https" } else { "http" };
    let example = format!("write one as {scheme}://HOST:PORT, e.g. \"{scheme}://10.0.0.1:2379\"");
    match (e.split_once("://").map(|(s, _)| s), tls) {
        (Some("https"), false) => {
            return Err(format!(
                "{e:?} speaks TLS: give [store] private_key, certificate and ca_certificate \
                 to reach it, or write http://"
            ))
        }
        (Some("http"), true) => {
            return Err(format!(
                "{e:?} is plain, while [store] has TLS files: every member is reached over \
                 https://, or none"
            ))
        }
        _ => {}
    }
    let Some(rest) = e.strip_prefix(&format!("{scheme}://")) else {
        return Err(format!("{e:?} is not a URL; {example}"));
    };
    let authority = rest.trim_end_matches('/');
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(format!("{e:?} has no port; {example}"));
    };
    if host.is_empty() || authority.contains('/') || host.contains(char::is_whitespace) {
        return Err(format!("{e:?} is not HOST:PORT; {example}"));
    }
    match port.parse::<u16>() {
        Ok(1..) => Ok(()),
        _ => Err(format!("{e:?}: {port:?} is not a port; {example}")),
    }
}
fn default_bridge_name() -> String {
    "br-int".into()
}
fn default_datapath_type() -> String {
    "system".into()
}
fn default_echo_interval() -> f64 {
    5.0
}
fn default_echo_timeout() -> f64 {
    15.0
}

/// How every host's integration bridge is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub name: String,
    /// `system` (kernel datapath) or `netdev` (userspace).
    pub datapath_type: String,
    /// The controller target written into each bridge that names none of
    /// its own, in active mode, as OVS spells it.
    pub controller: String,
    /// Who opens the OpenFlow connection of a host that names no target of
    /// its own.
    pub openflow: OpenFlowMode,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenAddr,
    /// With `listen = "ssl:…"`: the listener's TLS files.
    pub openflow_tls: Option<crate::tls::TlsFiles>,
    /// `[tls.host_sha256]`: certificates bound to hosts by fingerprint.
    pub host_sha256: BTreeMap<HostName, [u8; 32]>,
    /// The OVSDB remotes hosts may have, here and through the API.
    pub ovsdb_transport: OvsdbTransport,
    pub api: SocketAddr,
    /// The sled store's directory (unused with [`Config::etcd`]).
    pub store: PathBuf,
    /// `[store] backend = "etcd"`: the cluster the store lives in instead.
    pub etcd: Option<EtcdConfig>,
    pub bridge: BridgeConfig,
    pub echo_interval: Duration,
    pub echo_timeout: Duration,
    pub api_limits: ApiLimits,
    pub api_auth: ApiAuthConfig,
    /// `[api_tls]`: the API speaks HTTPS.
    pub api_tls: Option<ApiTlsFiles>,
    pub hosts: Vec<ManagedHost>,
    pub vis: Vec<Vi>,
    /// Seed entries by VI, read from the VIs' seed files.
    pub seeds: BTreeMap<ViId, Vec<SeedEntry>>,
    /// Take a store whose witness file is missing as it is (`run
    /// --accept-store`; never from the file).
    pub accept_store: bool,
    /// `[cluster]`: this controller is one replica of several.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Reads, parses and validates `path`, with seed files relative to it.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let base = path.parent().unwrap_or(Path::new("."));
        load_with(path, |text| Self::parse(text, base))
    }

    /// Parses and validates configuration text; seed paths resolve against
    /// `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ParseError> {
        let raw: RawConfig = from_toml(text)?;
        raw.validate(base).map_err(ParseError::Invalid)
    }

    /// The store as messages name it: sled's directory, or etcd's
    /// endpoints and prefix.
    pub fn store_name(&self) -> String {
        match &self.etcd {
            None => self.store.display().to_string(),
            Some(e) => format!("etcd {} prefix {:?}", e.endpoints.join(","), e.prefix),
        }
    }

    /// The session settings the keepalive section describes.
    pub fn session(&self) -> SessionConfig {
        SessionConfig {
            echo_interval: self.echo_interval,
            echo_timeout: self.echo_timeout,
            ..SessionConfig::default()
        }
    }

    /// What the configuration allows but an operator should know: `run`
    /// logs each at start and `check-config` prints each.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.api_auth.token_hashes.is_empty() {
            w.push(format!(
                "[api_auth] has no token_hashes, so the API on {} asks for no token: anyone who \
                 reaches it{} can change every VI; add a hash from `iris-controller hash-token`",
                self.api,
                if self.api.ip().is_loopback() {
                    " (any user of this machine)"
                } else {
                    ""
                }
            ));
        }
        w
    }

    /// A human summary for `check-config`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = match (&self.openflow_tls, &self.listen) {
            (Some(t), ListenAddr::Tcp(a)) => writeln!(
                s,
                "listen:    ssl:{a} (key {}, certificate {}, switches certified by {})",
                t.private_key.display(),
                t.certificate.display(),
                t.ca_certificate.display()
            ),
            _ => writeln!(s, "listen:    {} (plain_openflow)", self.listen),
        };
        let _ = match &self.api_tls {
            Some(t) => writeln!(
                s,
                "api:       https://{} (certificate {})",
                self.api,
                t.certificate.display()
            ),
            None => writeln!(s, "api:       {}", self.api),
        };
        let _ = writeln!(s, "store:     {}", self.store_name());
        if let Some(c) = &self.cluster {
            let _ = writeln!(
                s,
                "cluster:   replica {} of {} ({}), lease {} s{}",
                c.name,
                c.replicas.len(),
                c.replicas
                    .iter()
                    .map(|r| format!("{} {} {}", r.name, r.openflow, r.api))
                    .collect::<Vec<_>>()
                    .join("; "),
                c.lease_ttl.as_secs(),
                match (&c.api_ca, c.replicas.iter().any(Replica::speaks_https)) {
                    (Some(ca), _) => format!(
                        ", writes to an HTTPS leader forwarded trusting {}",
                        ca.display()
                    ),
                    (None, true) =>
                        ", writes to an HTTPS leader redirected (307; no api_ca)".into(),
                    (None, false) => String::new(),
                }
            );
        }
        let _ = match self.bridge.openflow {
            OpenFlowMode::Active => writeln!(
                s,
                "bridge:    {} (datapath_type={}, controller={})",
                self.bridge.name, self.bridge.datapath_type, self.bridge.controller
            ),
            OpenFlowMode::Passive => writeln!(
                s,
                "bridge:    {} (datapath_type={}, openflow=passive: each switch listens beside \
                 its OVSDB and the controller connects to it)",
                self.bridge.name, self.bridge.datapath_type
            ),
        };
        let _ = writeln!(
            s,
            "keepalive: echo after {:?} of silence, dead after {:?} more",
            self.echo_interval, self.echo_timeout
        );
        let l = &self.api_limits;
        let _ = writeln!(
            s,
            "api:       at most {} connections; request head within {:?}, body within {:?}; \
             {:?} to close at shutdown",
            l.max_connections.map_or_else(
                || "(a quarter of the open-file limit)".to_owned(),
                |n| n.to_string()
            ),
            l.header_timeout,
            l.body_timeout,
            l.shutdown_grace
        );
        let open: Vec<&str> = self
            .api_auth
            .open_routes
            .iter()
            .map(String::as_str)
            .collect();
        let _ = match self.api_auth.token_hashes.len() {
            0 => writeln!(s, "api auth:  none (no token_hashes)"),
            n => writeln!(
                s,
                "api auth:  bearer token ({n} hashes); open without one: GET [{}]",
                open.join(", ")
            ),
        };
        let _ = writeln!(s, "hosts:     {}", self.hosts.len());
        for m in &self.hosts {
            let h = &m.host;
            let role = match h.role {
                HostRole::Compute => "compute",
                HostRole::Gateway => "gateway",
            };
            let _ = writeln!(
                s,
                "  {} {role} underlay={} dpid={:016x} ovsdb={}",
                h.name, h.underlay_ip, h.datapath_id, h.ovsdb_remote
            );
        }
        let _ = writeln!(s, "vis:       {}", self.vis.len());
        for v in &self.vis {
            let gws: Vec<&str> = v.gateways.iter().map(|g| g.0.as_str()).collect();
            let _ = writeln!(
                s,
                "  {} {:?} gre_key={} gateways=[{}] seeded={}",
                v.id,
                v.name,
                v.gre_key,
                gws.join(", "),
                self.seeds.get(&v.id).map_or(0, Vec::len)
            );
        }
        s
    }
}

/// Reads `path` and hands its text to `parse`, naming the file in every
/// error. (The gateway's configuration is read the same way.)
pub fn load_with<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(&text).map_err(|e| match e {
        ParseError::Syntax(message) => LoadError::Syntax {
            path: path.to_owned(),
            message,
        },
        ParseError::Invalid(errors) => LoadError::Invalid {
            path: path.to_owned(),
            errors,
        },
    })
}

/// TOML text into `R`; an unknown key's error names the key meant.
pub fn from_toml<R: serde::de::DeserializeOwned>(text: &str) -> Result<R, ParseError> {
    toml::from_str(text).map_err(|e| {
        let mut message = e.to_string().trim_end().to_owned();
        if let Some(hint) = did_you_mean(e.message()) {
            message.push_str("; ");
            message.push_str(&hint);
        }
        ParseError::Syntax(message)
    })
}

/// Why configuration text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Syntax(String),
    Invalid(Vec<ConfigError>),
}

impl RawConfig {
    fn validate(self, base: &Path) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let (listen, openflow_tls) = check_transport(&self, base, &mut errors);
        let api = self
            .api
            .parse::<SocketAddr>()
            .map_err(|_| {
                errors.push(ConfigError::new(
                    "api",
                    format!(
                        "{:?} is not IP:PORT; write e.g. \"127.0.0.1:8080\"",
                        self.api
                    ),
                ))
            })
            .ok();
        if !matches!(self.bridge.datapath_type.as_str(), "system" | "netdev") {
            errors.push(ConfigError::new(
                "bridge.datapath_type",
                format!(
                    "{:?} is not a datapath type; write \"system\" (kernel) or \"netdev\" (userspace)",
                    self.bridge.datapath_type
                ),
            ));
        }
        if let Err(p) = check_bridge_name(&self.bridge.name) {
            errors.push(ConfigError::new("bridge.name", p));
        }
        let openflow = check_openflow(&self.bridge, &mut errors);
        let controller = match (&self.bridge.controller, &listen) {
            (Some(c), _) => {
                if let Err(p) = check_active_target(c) {
                    errors.push(ConfigError::new("bridge.controller", p));
                }
                c.clone()
            }
            (None, Some(l)) => default_controller_target(l, openflow_tls.is_some()),
            (None, None) => String::new(),
        };
        for (key, v) in [
            (
                "keepalive.echo_interval_secs",
                self.keepalive.echo_interval_secs,
            ),
            (
                "keepalive.echo_timeout_secs",
                self.keepalive.echo_timeout_secs,
            ),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                errors.push(ConfigError::new(
                    key,
                    format!("{v} is not a usable number of seconds; write a value in (0, 3600]"),
                ));
            }
        }

        let api_limits = self.api_limits.validate(&mut errors);
        let api_auth = self.api_auth.validate(api.as_ref(), &mut errors);
        let api_tls = self.api_tls.as_ref().map(|t| t.validate(base, &mut errors));
        let (store, etcd) = check_store_table(&self.store, &default_store(), base, &mut errors);
        let cluster = self.cluster.as_ref().map(|c| {
            c.validate(
                base,
                etcd.is_some(),
                self.bridge.controller.is_some(),
                self.api_tls.is_some(),
                &mut errors,
            )
        });
        if let (Some(ListenAddr::Tcp(listen)), Some(api)) = (&listen, &api) {
            check_apart(listen, api, &mut errors);
        }
        let ovsdb_transport = OvsdbTransport {
            tls: self.tls.is_some(),
            plain_tcp: self.plain_ovsdb,
        };
        let hosts = validate_hosts(&self.hosts, ovsdb_transport, &mut errors);
        let mut host_sha256 = BTreeMap::new();
        for (name, text) in self.tls.iter().flat_map(|t| &t.host_sha256) {
            let key = format!("tls.host_sha256.{name}");
            if !self.hosts.iter().any(|h| &h.name == name) {
                errors.push(ConfigError::new(
                    key.clone(),
                    format!("no [[host]] is named {name:?}"),
                ));
            }
            match crate::tls::parse_sha256(text) {
                Ok(f) => {
                    host_sha256.insert(HostName(name.clone()), f);
                }
                Err(p) => errors.push(ConfigError::new(key, p)),
            }
        }
        let vis = validate_vis(&self.vis, &hosts, &mut errors);
        // Seeds are checked against what `run` starts with, by the code
        // that loads them then: what passes here loads there. A VI with
        // a fault of its own still has its seed checked, as written.
        let topology = Topology {
            hosts: hosts
                .iter()
                .map(|m| (m.host.name.clone(), m.host.clone()))
                .collect(),
            vis: self
                .vis
                .iter()
                .map(|v| (ViId(v.id), v.as_written()))
                .collect(),
            ..Topology::default()
        };
        let mut seeds = BTreeMap::new();
        for (i, spec) in self.vis.iter().enumerate() {
            let Some(seed) = &spec.seed else { continue };
            let path = base.join(seed);
            let key = format!("vi[{i}].seed");
            let at = |e: ConfigError| ConfigError::new(format!("{key} ({})", e.key), e.problem);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let (entries, parse_errors) = read_seed(&text, &path);
                    errors.extend(parse_errors.into_iter().map(at));
                    let vi = ViId(spec.id);
                    if topology.vis.contains_key(&vi) {
                        errors.extend(seed_problems(&topology, vi, &entries).into_iter().map(at));
                    }
                    seeds.insert(vi, entries.into_iter().map(|(_, e)| e).collect());
                }
                Err(e) => errors.push(ConfigError::new(
                    key,
                    format!(
                        "cannot read {}: {e}; the path is relative to the configuration file",
                        path.display()
                    ),
                )),
            }
        }
        match (listen, api) {
            (Some(listen), Some(api)) if errors.is_empty() => Ok(Config {
                listen,
                openflow_tls,
                host_sha256,
                ovsdb_transport,
                api,
                store,
                etcd,
                bridge: BridgeConfig {
                    name: self.bridge.name,
                    datapath_type: self.bridge.datapath_type,
                    controller,
                    openflow,
                },
                echo_interval: Duration::from_secs_f64(self.keepalive.echo_interval_secs),
                echo_timeout: Duration::from_secs_f64(self.keepalive.echo_timeout_secs),
                api_limits,
                api_auth,
                api_tls,
                hosts,
                vis,
                seeds,
                accept_store: false,
                cluster,
            }),
            _ => Err(errors),
        }
    }
}

fn validate_hosts(
    specs: &[HostSpec],
    transport: OvsdbTransport,
    errors: &mut Vec<ConfigError>,
) -> Vec<ManagedHost> {
    let mut hosts = Vec::new();
    let mut names = HashMap::new();
    let mut ips = HashMap::new();
    let mut ovsdbs = HashMap::new();
    let mut dpids = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let key = format!("host[{i}]");
        // Clashes with earlier hosts are reported whether or not the host
        // has faults of its own, so one run names every problem.
        let dpid = match &spec.datapath_id {
            None => Some(derived_datapath_id(&spec.name)),
            Some(text) => parse_datapath_id(text).ok(),
        };
        let clashes = [
            (
                "name",
                names.insert(spec.name.clone(), i),
                format!("{:?}", spec.name),
                "host names must be unique",
            ),
            (
                "underlay_ip",
                ips.insert(spec.underlay_ip, i),
                spec.underlay_ip.to_string(),
                "every host needs its own underlay address",
            ),
            (
                "ovsdb",
                ovsdbs.insert(spec.ovsdb.clone(), i),
                spec.ovsdb.clone(),
                "every host has its own database",
            ),
            (
                "datapath_id",
                dpid.and_then(|d| dpids.insert(d, i)),
                format!("{:016x}", dpid.unwrap_or_default()),
                "set a distinct datapath_id",
            ),
        ];
        for (field, earlier, value, fix) in clashes {
            if let Some(j) = earlier {
                errors.push(ConfigError::new(
                    format!("{key}.{field}"),
                    format!("{value} is already host[{j}]'s; {fix}"),
                ));
            }
        }
        match spec.to_host(&key) {
            Ok(m) => {
                if let Err(p) = transport.check(&spec.ovsdb) {
                    errors.push(ConfigError::new(format!("{key}.ovsdb"), p));
                }
                hosts.push(m);
            }
            Err(es) => errors.extend(es),
        }
    }
    hosts
}

fn validate_vis(specs: &[ViSpec], hosts: &[ManagedHost], errors: &mut Vec<ConfigError>) -> Vec<Vi> {
    let mut vis = Vec::new();
    let mut ids = HashMap::new();
    let mut names = HashMap::new();
    let mut keys = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let key = format!("vi[{i}]");
        let checked = spec.to_vi(&key).map_err(|es| errors.extend(es));
        // The rest is checked as written even when the VI has faults of
        // its own, so one run names every problem.
        let vi = spec.as_written();
        for (field, dup) in [
            ("id", ids.insert(vi.id, i)),
            ("name", names.insert(vi.name.clone(), i)),
            ("gre_key", keys.insert(vi.gre_key, i)),
        ] {
            if let Some(j) = dup {
                errors.push(ConfigError::new(
                    format!("{key}.{field}"),
                    format!("the same {field} as vi[{j}]; each VI needs its own"),
                ));
            }
        }
        for (g, gw) in vi.gateways.iter().enumerate() {
            match hosts.iter().map(|m| &m.host).find(|h| h.name == *gw) {
                None => errors.push(ConfigError::new(
                    format!("{key}.gateways[{g}]"),
                    format!(
                        "{:?} is not a host in this file; add a [[host]] named {:?} with role = \"gateway\"",
                        gw.0, gw.0
                    ),
                )),
                Some(h) if h.role != HostRole::Gateway => errors.push(ConfigError::new(
                    format!("{key}.gateways[{g}]"),
                    format!(
                        "host {:?} has role \"compute\"; a VI's gateway must have role = \"gateway\"",
                        gw.0
                    ),
                )),
                Some(_) => {}
            }
        }
        if let Ok(vi) = checked {
            vis.push(vi);
        }
    }
    vis
}

/// The store's directory: not empty, and a relative one resolved against
/// the configuration file's directory like seed files (a service manager
/// starts the controller in `/`).
fn check_store(store: &Path, base: &Path, errors: &mut Vec<ConfigError>) -> PathBuf {
    if store.as_os_str().is_empty() {
        errors.push(ConfigError::new(
            "store",
            "an empty path would put the store in whatever directory the program starts in; \
             write a directory such as \"/var/lib/iris/controller\"",
        ));
    }
    base.join(store)
}

/// The OpenFlow listener and the API cannot share a port on one address.
fn check_apart(listen: &SocketAddr, api: &SocketAddr, errors: &mut Vec<ConfigError>) {
    let overlap =
        listen.ip() == api.ip() || listen.ip().is_unspecified() || api.ip().is_unspecified();
    if listen.port() == api.port() && listen.port() != 0 && overlap {
        errors.push(ConfigError::new(
            "api",
            format!(
                "{api} is the port `listen` ({listen}) takes for OpenFlow; give the API a port \
                 of its own, like {}",
                SocketAddr::new(api.ip(), if api.port() == 8080 { 8081 } else { 8080 })
            ),
        ));
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the expected
/// key closest to the typo, when one is close enough to be meant.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (typo, expected) = rest.split_once('`')?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (edit_distance(typo, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min()
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

/// Levenshtein distance, for short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Names end up in OVSDB rows, port names and URLs: keep them plain.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a usable name; use 1-64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// A Linux interface name: at most 15 bytes.
fn check_bridge_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if name.len() > 15 {
        return Err(format!(
            "{name:?} is longer than the 15 characters an interface name may have"
        ));
    }
    Ok(())
}

/// `unix:PATH` or `tcp:IP:PORT`: how OVS spells both OVSDB remotes and
/// controller targets.
/// Checks an OVSDB remote Iris connects to, with the OVSDB client's own
/// words for what is wrong.
pub fn check_ovsdb_remote(remote: &str) -> Result<(), String> {
    remote
        .parse::<ovsdb::Remote>()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// [`check_ovsdb_remote`] for a component without TLS settings of its own
/// (the gateway, the broker's compute drivers), which refuses `ssl:` at
/// once rather than at its first connection.
pub fn check_plain_ovsdb_remote(remote: &str, who: &str) -> Result<(), String> {
    check_ovsdb_remote(remote)?;
    match remote.parse::<ovsdb::Remote>() {
        Ok(ovsdb::Remote::Ssl(_)) => Err(format!(
            "{remote:?} needs TLS, which {who} does not speak to OVSDB; write unix:PATH (its \
             own node's socket) or tcp:IP:PORT"
        )),
        _ => Ok(()),
    }
}

/// Which OVSDB transports this controller may use: `ssl:` with the `[tls]`
/// files, `tcp:` only where the file allows plain connections
/// (`plain_ovsdb = true`), `unix:` always, as it never leaves the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OvsdbTransport {
    pub tls: bool,
    pub plain_tcp: bool,
}

impl OvsdbTransport {
    /// A remote this controller may not use, and why; `remote` is assumed
    /// well formed ([`check_ovsdb_remote`] says when it is not).
    pub fn check(&self, remote: &str) -> Result<(), String> {
        match remote.parse::<ovsdb::Remote>() {
            Ok(ovsdb::Remote::Ssl(_)) if !self.tls => Err(format!(
                "{remote:?} needs TLS, and this controller has no [tls] table (its key, \
                 certificate and CA serve OVSDB as they serve OpenFlow)"
            )),
            Ok(ovsdb::Remote::Tcp(_)) if !self.plain_tcp => Err(format!(
                "{remote:?} carries OVSDB without TLS, where anyone on the path may rewrite the \
                 host's bridge; use ssl:IP:PORT with a [tls] table, or allow plain connections \
                 with plain_ovsdb = true (a testbed, a network no one else reaches)"
            )),
            _ => Ok(()),
        }
    }
}

/// A host's own target: one its switch connects to, or a passive one it
/// listens on for the controller to connect to.
fn check_controller_target(target: &str) -> Result<(), String> {
    match ListenAddr::of_passive_target(target)? {
        Some(_) => Ok(()),
        None => check_active_target(target),
    }
}

/// A target the switch connects to.
fn check_active_target(target: &str) -> Result<(), String> {
    // A switch's targets are written as OVSDB's remotes are.
    if target.parse::<ovsdb::Remote>().is_ok() {
        return Ok(());
    }
    if ListenAddr::of_passive_target(target).is_ok_and(|p| p.is_some()) {
        return Err(format!(
            "{target:?} is a passive target, one switch's own; give it to that host \
             (`controller` in its [[host]]), or set openflow = \"passive\" here so that every \
             switch listens beside its OVSDB"
        ));
    }
    Err(format!(
        "{target:?} is not a controller target; write ssl:IP:PORT or tcp:IP:PORT (an address \
         the hosts can reach), or unix:PATH"
    ))
}

/// `[bridge] openflow`: who opens the OpenFlow connection. In passive mode
/// each switch listens on an address of its own, so one `[bridge]
/// controller` for all cannot be.
fn check_openflow(bridge: &RawBridge, errors: &mut Vec<ConfigError>) -> OpenFlowMode {
    let mode = match bridge.openflow.as_deref() {
        None | Some("active") => OpenFlowMode::Active,
        Some("passive") => OpenFlowMode::Passive,
        Some(other) => {
            errors.push(ConfigError::new(
                "bridge.openflow",
                format!(
                    "{other:?} is not an OpenFlow mode; write \"active\" (switches connect to \
                     the controller) or \"passive\" (switches listen, the controller connects)"
                ),
            ));
            OpenFlowMode::Active
        }
    };
    if mode == OpenFlowMode::Passive && bridge.controller.is_some() {
        errors.push(ConfigError::new(
            "bridge.controller",
            "with openflow = \"passive\" each switch listens beside its OVSDB (punix: next to \
             a unix socket, ptcp:6653:IP on a TCP remote's address); remove this key, or give a \
             host its own `controller = \"ptcp:PORT:IP\"`",
        ));
    }
    mode
}

/// Without an explicit target, switches are pointed at the listen address
/// itself; a wildcard listener is reached through loopback, which is right
/// only when the switches run on the controller's host.
fn default_controller_target(listen: &ListenAddr, tls: bool) -> String {
    let scheme = if tls { "ssl" } else { "tcp" };
    match listen {
        ListenAddr::Unix(p) => format!("unix:{}", p.display()),
        ListenAddr::Tcp(a) if a.ip().is_unspecified() => {
            format!("{scheme}:127.0.0.1:{}", a.port())
        }
        ListenAddr::Tcp(a) => format!("{scheme}:{a}"),
    }
}

/// `[tls]`: the OpenFlow listener's key, certificate and CA, PEM files
/// relative to the configuration file.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[schema(value_type = String)]
    private_key: PathBuf,
    #[schema(value_type = String)]
    certificate: PathBuf,
    #[schema(value_type = String)]
    ca_certificate: PathBuf,
    /// Host name → the SHA-256 fingerprint of a certificate that may speak
    /// for it although it does not name it (one from `ovs-pki`, whose
    /// name is in the CN only).
    #[serde(default)]
    host_sha256: BTreeMap<String, String>,
}

/// `[api_tls]`: the API's key and certificate, PEM files relative to the
/// configuration file.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiTls {
    #[schema(value_type = String)]
    private_key: PathBuf,
    #[schema(value_type = String)]
    certificate: PathBuf,
}

/// The API's TLS files, checked by loading them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTlsFiles {
    pub private_key: PathBuf,
    pub certificate: PathBuf,
}

impl RawApiTls {
    /// The files, relative to `base`, checked by loading them (the broker
    /// reads its own `[api_tls]` with this too).
    pub fn validate(&self, base: &Path, errors: &mut Vec<ConfigError>) -> ApiTlsFiles {
        let files = ApiTlsFiles {
            private_key: base.join(&self.private_key),
            certificate: base.join(&self.certificate),
        };
        if let Err(p) = crate::tls::api_server_config(&files.private_key, &files.certificate) {
            errors.push(ConfigError::new("api_tls", p));
        }
        files
    }
}

/// `listen` and what goes with it: a `ssl:` listener needs `[tls]`, whose
/// files must load; a plain one must be allowed by `plain_openflow`.
fn check_transport(
    raw: &RawConfig,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> (Option<ListenAddr>, Option<crate::tls::TlsFiles>) {
    let (text, tls) = match raw.listen.strip_prefix("ssl:") {
        Some(addr) => (addr, true),
        None => (raw.listen.as_str(), false),
    };
    let listen = text
        .parse::<ListenAddr>()
        .map_err(|p| errors.push(ConfigError::new("listen", p)))
        .ok();
    if tls && matches!(listen, Some(ListenAddr::Unix(_))) {
        errors.push(ConfigError::new(
            "listen",
            "ssl: takes IP:PORT; a unix socket is reached only from this host",
        ));
    }
    let files = raw.tls.as_ref().map(|t| crate::tls::TlsFiles {
        private_key: base.join(&t.private_key),
        certificate: base.join(&t.certificate),
        ca_certificate: base.join(&t.ca_certificate),
    });
    match (&files, tls) {
        (Some(f), true) => {
            if let Err(p) = f.server_config() {
                errors.push(ConfigError::new("tls", p));
            }
        }
        (None, true) => errors.push(ConfigError::new(
            "tls",
            "listen = \"ssl:…\" needs a [tls] table with private_key, certificate and \
             ca_certificate (PEM files)",
        )),
        (Some(_), false) => errors.push(ConfigError::new(
            "tls",
            format!(
                "[tls] is given but listen = {:?} is plain; write listen = \"ssl:IP:PORT\"",
                raw.listen
            ),
        )),
        (None, false) => {}
    }
    if !tls && !raw.plain_openflow {
        errors.push(ConfigError::new(
            "listen",
            format!(
                "{:?} takes OpenFlow without TLS, where any peer that reaches it may claim a \
                 host's datapath id; listen on \"ssl:IP:PORT\" with a [tls] table, or allow \
                 plain connections with plain_openflow = true (a testbed, a unix socket only \
                 this host reaches)",
                raw.listen
            ),
        ));
    }
    // Every TCP connection is TLS when the listener is, the ones the
    // controller opens too: a switch's own passive target says which.
    for (i, h) in raw.hosts.iter().enumerate() {
        if let Some(Err(problem)) = h
            .controller
            .as_deref()
            .map(|t| check_passive_transport(t, tls))
        {
            errors.push(ConfigError::new(format!("host[{i}].controller"), problem));
        }
    }
    (listen, if tls { files } else { None })
}

/// A switch's own passive target `target` against the controller's
/// listener: every TCP connection is TLS when the listener is (`tls`), the
/// ones the controller opens to a switch that listens too.
pub fn check_passive_transport(target: &str, tls: bool) -> Result<(), &'static str> {
    match (target.split(':').next(), tls) {
        (Some("pssl"), false) => Err(
            "a pssl: target is reached over TLS, which needs listen = \"ssl:IP:PORT\" and a \
             [tls] table; write ptcp:PORT:IP for plain TCP",
        ),
        (Some("ptcp"), true) => Err(
            "with listen = \"ssl:…\" the controller reaches a switch that listens over TLS: \
             write pssl:PORT:IP, and give the switch its key, certificate and CA \
             (ovs-vsctl set-ssl)",
        ),
        _ => Ok(()),
    }
}

/// A datapath id as OVS's `other_config:datapath-id` takes it: 16 hex
/// digits (an optional `0x` is accepted), not zero.
pub fn parse_datapath_id(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    match u64::from_str_radix(digits, 16) {
        Ok(0) | Err(_) => Err(format!(
            "{text:?} is not a datapath id; write up to 16 hex digits, not all zero, like \"00000000000000a1\""
        )),
        Ok(d) if digits.len() <= 16 => Ok(d),
        Ok(_) => Err(format!("{text:?} has more than 16 hex digits")),
    }
}

/// A stable datapath id for a host that names none: FNV-1a of its name, in
/// 48 bits under a fixed `0x1415` prefix so Iris's ids are recognisable in
/// `ovs-ofctl show` output and never zero.
pub fn derived_datapath_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0x1415 << 48) | (h & 0xffff_ffff_ffff)
}

/// Reads a seed file: `.toml` as `[[entry]]` tables, anything else as CSV.
/// Only the file's own form is checked here; whether the entries fit the
/// VI (unicast MACs, its gateways, one place per MAC and one MAC per IP) is
/// [`Registry::check_seed`]'s to say.
pub fn parse_seed(text: &str, path: &Path) -> Result<Vec<SeedEntry>, Vec<ConfigError>> {
    let (entries, errors) = read_seed(text, path);
    if errors.is_empty() {
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    } else {
        Err(errors)
    }
}

/// The entries of a seed file with where each is, and the problems with
/// the rest.
fn read_seed(text: &str, path: &Path) -> (Located, Vec<ConfigError>) {
    if path.extension().is_some_and(|e| e == "toml") {
        parse_seed_toml(text)
    } else {
        parse_seed_csv(text)
    }
}

/// What [`Registry::check_seed`] finds wrong with `entries`, each under the
/// place in the file of the entry at fault.
fn seed_problems(topology: &Topology, vi: ViId, entries: &Located) -> Vec<ConfigError> {
    let seed: Vec<SeedEntry> = entries.iter().map(|(_, e)| e.clone()).collect();
    let place = |i: usize| entries.get(i).map_or("?", |(k, _)| k.as_str());
    Registry::check_seed(topology, vi, &seed)
        .into_iter()
        .map(|(i, e)| {
            let problem = match &e {
                RegistryError::SeedConflict { earlier, what, .. } => format!(
                    "{what} contradicts {}; keep one line per MAC and per IP",
                    place(*earlier)
                ),
                other => other.to_string(),
            };
            ConfigError::new(place(i), problem)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedToml {
    #[serde(default)]
    entry: Vec<SeedRow>,
}

/// The controller's reading of a [`SeedRow`].
pub trait SeedRowExt {
    /// The entry, or each field that does not read (`mac`, `vlan`) with
    /// what is wrong. Whether it fits its VI is the registry's to check.
    fn to_entry(&self) -> Result<SeedEntry, Vec<ConfigError>>;
}

impl SeedRowExt for SeedRow {
    fn to_entry(&self) -> Result<SeedEntry, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mac = self
            .mac
            .parse::<MacAddr>()
            .map_err(|err| errors.push(ConfigError::new("mac", err.to_string())));
        let vlan = self
            .vlan
            .map_or(Ok(Vlan::Untagged), vlan_from_number)
            .map_err(|p| errors.push(ConfigError::new("vlan", p)));
        match (mac, vlan) {
            (Ok(mac), Ok(vlan)) => Ok(SeedEntry {
                mac,
                ip: self.ip,
                vlan,
                location: self.behind.clone().map(behind),
            }),
            _ => Err(errors),
        }
    }
}

/// (where, entry) pairs, so conflicts can name both places.
type Located = Vec<(String, SeedEntry)>;

/// The entries that parsed, and the problems with the rest.
fn parse_seed_toml(text: &str) -> (Located, Vec<ConfigError>) {
    let raw: SeedToml = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), vec![ConfigError::new("toml", e.to_string())]),
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, row) in raw.entry.iter().enumerate() {
        let key = format!("entry[{i}]");
        match row.to_entry() {
            Ok(e) => out.push((key, e)),
            Err(es) => errors.extend(
                es.into_iter()
                    .map(|e| ConfigError::new(format!("{key}.{}", e.key), e.problem)),
            ),
        }
    }
    (out, errors)
}

fn vlan_from_number(v: u16) -> Result<Vlan, String> {
    if (1..=4094).contains(&v) {
        Ok(Vlan::Tagged(v))
    } else {
        Err(format!(
            "{v} is not a VLAN id; write 1-4094, or leave it out for untagged frames"
        ))
    }
}

fn behind(gateway: String) -> Location {
    Location::BehindGateway {
        gateway: HostName(gateway),
    }
}

/// `mac,ip[,vlan[,behind]]` per line; `#` comments, blank lines and a
/// header line starting with `mac` are skipped. An empty IP binds none; an
/// empty or `untagged` VLAN means untagged frames; `behind` names the
/// gateway host the MAC lives behind.
fn parse_seed_csv(text: &str) -> (Located, Vec<ConfigError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.to_ascii_lowercase().starts_with("mac") {
            continue;
        }
        let key = format!("line {}", n + 1);
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if !(2..=4).contains(&cols.len()) {
            errors.push(ConfigError::new(
                key,
                format!(
                    "found {} column(s); write mac,ip[,vlan[,behind]] like \
                     52:54:00:00:00:01,10.1.1.5,100,gw1",
                    cols.len()
                ),
            ));
            continue;
        }
        let mac = cols[0]
            .parse::<MacAddr>()
            .map_err(|e| errors.push(ConfigError::new(key.clone(), e.to_string())));
        let ip = match cols[1] {
            "" => Ok(None),
            text => text.parse::<Ipv4Addr>().map(Some).map_err(|_| {
                errors.push(ConfigError::new(
                    key.clone(),
                    format!("{text:?} is not an IPv4 address"),
                ))
            }),
        };
        let vlan = match cols.get(2).copied() {
            None | Some("") | Some("untagged") => Ok(Vlan::Untagged),
            Some(v) => v
                .parse::<u16>()
                .map_err(|_| format!("{v:?} is not a VLAN id; write 1-4094 or leave it empty"))
                .and_then(vlan_from_number),
        }
        .map_err(|p| errors.push(ConfigError::new(key.clone(), p)));
        let location = cols
            .get(3)
            .filter(|g| !g.is_empty())
            .map(|g| behind((*g).to_owned()));
        if let (Ok(mac), Ok(ip), Ok(vlan)) = (mac, ip, vlan) {
            out.push((
                key,
                SeedEntry {
                    mac,
                    ip,
                    vlan,
                    location,
                },
            ));
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests;
