//! The broker's TOML configuration, read strictly and validated whole, every
//! problem reported with its key, as the controller's is (its error types
//! and misspelt-key hint are the controller's own).
//!
//! ```toml
//! listen = "127.0.0.1:8090"
//! store = "/var/lib/iris/broker"
//! admin_token_file = "/etc/iris/broker-admin-token"  # first line: the admin token
//! first_tunnel_key = 1000          # VIs get tunnel keys from here up
//! node_mtu = 1500
//! # The controller's gateway hosts every VI is carried through: a name
//! # alone, or with the gateway's `[vi_api]`, so that each VI is pushed to
//! # it and its WAN address shown to the operator.
//! [[haas_gateways]]
//! name = "gwh"                     # the controller's host name of the gateway node
//! api = "http://127.0.0.1:9180"    # the gateway's API
//! token_file = "/etc/iris/gateway-api-token"   # its [vi_api] token
//! wan_ip = "203.0.113.1"           # where operators point their gateways
//!
//! [controller]
//! url = "http://127.0.0.1:8080"
//! token_file = "/etc/iris/controller-token"       # the controller's [api_auth] token
//!
//! [api_tls]                        # optional: the API speaks HTTPS
//! private_key = "/etc/iris/broker-key.pem"
//! certificate = "/etc/iris/broker-cert.pem"
//!
//! [api_limits]                     # as the controller's (docs/operations.md)
//! max_connections = 256
//! header_timeout_secs = 10
//!
//! # Instead of `store = DIR`: the records in etcd, shared by brokers
//! # of which one is active at a time (docs/operations.md).
//! # [store]
//! # backend = "etcd"
//! # endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]
//! # prefix = "iris/dc1/"           # the controller's prefix may be shared
//! # [cluster]
//! # name = "api1"                  # this broker, as the others name it
//! # api = "http://10.0.0.21:8090"  # its API, as clients reach it
//! # lease_ttl_secs = 5             # a standby takes over this long after
//!
//! [libvirt]                        # optional: PMs with driver = "libvirt" (docs/libvirt.md)
//! kernel = "/var/lib/iris/guest/vmlinuz"
//! initrd = "/var/lib/iris/guest/initrd.img"
//! firmware = "/usr/share/qboot/bios.bin"   # optional
//! cmdline = "console=ttyS0 quiet"          # the driver appends iris.ip=
//! accel = "kvm"                    # or "tcg"
//! console_dir = "/var/log/iris/consoles"   # optional; none: a pty
//! state_dir = "/var/lib/iris/disks"        # the nodes' disks, one directory per PM
//! ```

use iris_controller::api_server::ApiLimits;
use iris_controller::config::{
    check_store_table, from_toml, load_with, ApiTlsFiles, ConfigError, LoadError, ParseError,
    RawApiLimits, RawApiTls, RawStore,
};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A bearer token read from a file: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_raw_store")]
    store: RawStore,
    cluster: Option<RawCluster>,
    admin_token_file: Option<PathBuf>,
    #[serde(default = "default_first_key")]
    first_tunnel_key: u32,
    #[serde(default = "default_mtu")]
    node_mtu: u16,
    #[serde(default)]
    haas_gateways: Vec<RawHaasGateway>,
    controller: Option<RawController>,
    /// The controller's `[api_limits]`, read and checked as it reads them.
    #[serde(default)]
    api_limits: RawApiLimits,
    /// HTTPS for the API: its key and certificate.
    api_tls: Option<RawApiTls>,
    libvirt: Option<RawLibvirt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Read only to be refused without the `libvirt` feature.
#[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
struct RawLibvirt {
    kernel: PathBuf,
    initrd: PathBuf,
    firmware: Option<PathBuf>,
    #[serde(default)]
    cmdline: String,
    accel: String,
    console_dir: Option<PathBuf>,
    state_dir: PathBuf,
}

/// `[cluster]`: this broker is one of several sharing an etcd store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    api: String,
    #[serde(default = "default_lease_ttl_secs")]
    lease_ttl_secs: u64,
}

fn default_lease_ttl_secs() -> u64 {
    5
}

/// A validated `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This broker's name.
    pub name: String,
    /// Its API's base URL as clients reach it, without a trailing slash:
    /// what a standby names when it refuses a request.
    pub api: String,
    /// How long the active broker's lease outlives its last renewal.
    pub lease_ttl: std::time::Duration,
}

impl RawCluster {
    fn validate(&self, errors: &mut Vec<ConfigError>) -> Cluster {
        if self.name.is_empty()
            || self
                .name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            errors.push(ConfigError::new(
                "cluster.name",
                format!(
                    "{:?} is not a name; write one word, e.g. \"api1\"",
                    self.name
                ),
            ));
        }
        let api = self.api.trim_end_matches('/');
        let host = api
            .strip_prefix("http://")
            .or_else(|| api.strip_prefix("https://"));
        if host.is_none_or(|h| h.is_empty() || h.contains('/')) {
            errors.push(ConfigError::new(
                "cluster.api",
                format!(
                    "{:?} is not the base URL of this broker's API; write e.g. \
                     \"http://10.0.0.21:8090\"",
                    self.api
                ),
            ));
        }
        if !(2..=60).contains(&self.lease_ttl_secs) {
            errors.push(ConfigError::new(
                "cluster.lease_ttl_secs",
                format!(
                    "{} is out of range; write 2 to 60 (etcd grants no lease under about 2 s, \
                     and a standby waits this long after the active broker died)",
                    self.lease_ttl_secs
                ),
            ));
        }
        Cluster {
            name: self.name.clone(),
            api: api.to_owned(),
            lease_ttl: std::time::Duration::from_secs(self.lease_ttl_secs),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawController {
    url: String,
    token_file: Option<PathBuf>,
    /// For an `https://` url: the CA the controller's certificate chains
    /// to.
    ca_certificate: Option<PathBuf>,
}

/// A `haas_gateways` entry: the host name alone (the gateway's VIs are
/// its configuration), or the gateway's API too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHaasGateway {
    Name(String),
    Api(RawGatewayApi),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGatewayApi {
    name: String,
    api: String,
    token_file: PathBuf,
    wan_ip: String,
}

impl RawHaasGateway {
    fn name(&self) -> &str {
        match self {
            Self::Name(n) => n,
            Self::Api(a) => &a.name,
        }
    }
}

/// A HaaS gateway the broker pushes VIs to (its `[vi_api]`).
#[derive(Debug, Clone)]
pub struct GatewayApi {
    /// The controller's host name of the gateway node.
    pub name: String,
    /// The gateway's API base URL, no trailing slash.
    pub api: String,
    pub token: Secret,
    /// The gateway's WAN address, which the operator's gateway points at.
    pub wan_ip: std::net::Ipv4Addr,
}

fn default_listen() -> String {
    "127.0.0.1:8090".into()
}
fn default_store() -> PathBuf {
    "/var/lib/iris/broker".into()
}
fn default_raw_store() -> RawStore {
    RawStore::Path(default_store())
}
fn default_first_key() -> u32 {
    1000
}
fn default_mtu() -> u16 {
    1500
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The sled store's directory (unused with `etcd`).
    pub store: PathBuf,
    /// `[store] backend = "etcd"`: the records live in etcd instead,
    /// under `<prefix>broker/`.
    pub etcd: Option<iris_controller::store::etcd::EtcdConfig>,
    /// With `etcd`: this broker among those sharing the store.
    pub cluster: Option<Cluster>,
    pub admin_token: Secret,
    pub first_tunnel_key: u32,
    pub node_mtu: u16,
    /// Host names (of the controller) of the HaaS gateway nodes every VI is
    /// created with: the operator's MACs live behind them. Empty: the VIs
    /// stay inside the HaaS data center.
    pub haas_gateways: Vec<String>,
    /// Those of `haas_gateways` with an API: every VI is pushed to them.
    pub gateway_apis: Vec<GatewayApi>,
    /// The controller's northbound base URL, no trailing slash.
    pub controller_url: String,
    pub controller_token: Option<Secret>,
    /// The CA trusted for an `https://` controller URL (the system's roots
    /// without it).
    pub controller_ca: Option<PathBuf>,
    pub api_limits: ApiLimits,
    /// `[api_tls]`: the API speaks HTTPS with these.
    pub api_tls: Option<ApiTlsFiles>,
    /// The `libvirt` driver's settings: with them, PMs may be registered
    /// with `driver = "libvirt"`.
    #[cfg(feature = "libvirt")]
    pub libvirt: Option<crate::compute::libvirt::Config>,
}

/// The token on the first line of `path`.
pub fn read_token(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.len() < iris_controller::api_auth::MIN_TOKEN_LEN {
        return Err(format!(
            "{} holds {} characters on its first line; write a token of at least {} \
             (e.g. `openssl rand -hex 32`)",
            path.display(),
            token.len(),
            iris_controller::api_auth::MIN_TOKEN_LEN
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: a token is printable ASCII without spaces, as an HTTP header carries it",
            path.display()
        ));
    }
    Ok(Secret(token.to_owned()))
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        load_with(path, |t| Self::parse(t, &base))
    }

    /// Parses and validates configuration text; relative paths are
    /// relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ParseError> {
        let raw: RawConfig = from_toml(text)?;
        raw.validate(base).map_err(ParseError::Invalid)
    }

    pub fn summary(&self) -> String {
        #[cfg(feature = "libvirt")]
        let libvirt = match &self.libvirt {
            None => "  libvirt driver: off (no [libvirt])\n".to_owned(),
            Some(l) => format!(
                "  libvirt driver: {:?}, kernel {}, disks in {}\n",
                l.accel,
                l.image.kernel.display(),
                l.state_dir.display()
            ),
        };
        #[cfg(not(feature = "libvirt"))]
        let libvirt = "  libvirt driver: not built\n".to_owned();
        let general = format!(
            "  listen {}://{}\n  store {}\n  controller {} (token: {}{})\n  tunnel keys from {}\n  node MTU {}\n  HaaS gateways [{}]\n",
            if self.api_tls.is_some() { "https" } else { "http" },
            self.listen,
            self.store_summary(),
            self.controller_url,
            if self.controller_token.is_some() { "yes" } else { "none" },
            match &self.controller_ca {
                Some(ca) => format!(", CA {}", ca.display()),
                None if self.controller_url.starts_with("https://") => ", the system's CAs".to_owned(),
                None => String::new(),
            },
            self.first_tunnel_key,
            self.node_mtu,
            self.haas_gateways.join(", ")
        );
        general + &libvirt
    }
}

impl Config {
    fn store_summary(&self) -> String {
        match (&self.etcd, &self.cluster) {
            (Some(e), Some(c)) => format!(
                "etcd [{}] under {:?}; this broker is {} at {}, lease {} s",
                e.endpoints.join(", "),
                format!("{}broker/", e.prefix),
                c.name,
                c.api,
                c.lease_ttl.as_secs()
            ),
            _ => format!("sled in {}", self.store.display()),
        }
    }
}

impl RawConfig {
    fn validate(self, base: &Path) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let (store, etcd) = check_store_table(&self.store, &default_store(), base, &mut errors);
        if self.store.max_txn_ops().is_some() {
            errors.push(ConfigError::new(
                "store.max_txn_ops",
                "iris-api writes each record in a transaction of its own and reads no \
                 max_txn_ops (iris-controller does, to split its commits): remove it here",
            ));
        }
        let cluster = self.cluster.as_ref().map(|c| c.validate(&mut errors));
        match (&etcd, &cluster) {
            (Some(_), None) => errors.push(ConfigError::new(
                "cluster",
                "brokers on an etcd store hold an election for who is active: add [cluster] \
                 with this broker's name and API, e.g. name = \"api1\", api = \
                 \"http://10.0.0.21:8090\"",
            )),
            (None, Some(_)) => errors.push(ConfigError::new(
                "cluster",
                "brokers share their records only through etcd; set [store] backend = \"etcd\" \
                 with the cluster's endpoints, or remove [cluster]",
            )),
            _ => {}
        }
        let listen = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                errors.push(ConfigError::new(
                    "listen",
                    format!(
                        "{:?} is not IP:PORT; write e.g. \"127.0.0.1:8090\"",
                        self.listen
                    ),
                ))
            })
            .ok();
        let admin_token = match &self.admin_token_file {
            None => {
                errors.push(ConfigError::new(
                    "admin_token_file",
                    "missing: name a file whose first line is the admin token \
                     (e.g. made with `openssl rand -hex 32 > FILE`)",
                ));
                None
            }
            Some(p) => read_token(&base.join(p))
                .map_err(|e| errors.push(ConfigError::new("admin_token_file", e)))
                .ok(),
        };
        if self.first_tunnel_key == 0 || self.first_tunnel_key > iris_controller::model::ViId::MAX {
            errors.push(ConfigError::new(
                "first_tunnel_key",
                format!(
                    "{} is not a usable VI id; use 1 to {}",
                    self.first_tunnel_key,
                    iris_controller::model::ViId::MAX
                ),
            ));
        }
        if !(576..=9000).contains(&self.node_mtu) {
            errors.push(ConfigError::new(
                "node_mtu",
                format!("{} is outside 576..=9000", self.node_mtu),
            ));
        }
        let names: Vec<String> = self
            .haas_gateways
            .iter()
            .map(|g| g.name().to_owned())
            .collect();
        let mut gateway_apis = Vec::new();
        for (i, g) in self.haas_gateways.iter().enumerate() {
            let at = |field: &str| match g {
                RawHaasGateway::Name(_) => format!("haas_gateways[{i}]"),
                RawHaasGateway::Api(_) => format!("haas_gateways[{i}].{field}"),
            };
            let name = g.name();
            if name.is_empty() || names[..i].iter().any(|n| n == name) {
                errors.push(ConfigError::new(
                    at("name"),
                    format!("{name:?} is empty or named twice; name each gateway host once"),
                ));
            }
            if let RawHaasGateway::Api(a) = g {
                if let Some(api) = a.validate(base, &at, &mut errors) {
                    gateway_apis.push(api);
                }
            }
        }
        let api_limits = self.api_limits.validate(&mut errors);
        let api_tls = self.api_tls.as_ref().map(|t| t.validate(base, &mut errors));
        if let Some(c) = &cluster {
            match (c.api.starts_with("https://"), api_tls.is_some()) {
                (true, false) => errors.push(ConfigError::new(
                    "cluster.api",
                    "is https://, and this broker's API speaks plain HTTP: give it [api_tls], \
                     or write http://",
                )),
                (false, true) if c.api.starts_with("http://") => errors.push(ConfigError::new(
                    "cluster.api",
                    "is http://, and this broker's API speaks HTTPS ([api_tls]): write https://",
                )),
                _ => {}
            }
        }
        #[cfg(feature = "libvirt")]
        let libvirt = self
            .libvirt
            .as_ref()
            .and_then(|l| l.validate(base, &mut errors));
        #[cfg(not(feature = "libvirt"))]
        if self.libvirt.is_some() {
            errors.push(ConfigError::new(
                "libvirt",
                "this iris-api is built without the `libvirt` feature; remove the table or \
                 build with it (docs/libvirt.md)",
            ));
        }
        let (controller_url, controller_token, controller_ca) = match &self.controller {
            None => {
                errors.push(ConfigError::new(
                    "controller",
                    "missing: add [controller] with the controller's API url, e.g. \
                     url = \"http://127.0.0.1:8080\"",
                ));
                (String::new(), None, None)
            }
            Some(c) => {
                let https = c.url.starts_with("https://");
                let scheme = if https { "https://" } else { "http://" };
                if !c.url.starts_with(scheme) || c.url.len() <= scheme.len() {
                    errors.push(ConfigError::new(
                        "controller.url",
                        format!(
                            "{:?} is not an http:// URL (or https://, when the controller's \
                             API has [api_tls])",
                            c.url
                        ),
                    ));
                }
                let token = c.token_file.as_ref().and_then(|p| {
                    read_token(&base.join(p))
                        .map_err(|e| errors.push(ConfigError::new("controller.token_file", e)))
                        .ok()
                });
                let ca = c.ca_certificate.as_ref().map(|p| base.join(p));
                match (&ca, https) {
                    (Some(ca), true) => {
                        if let Err(e) = iris_controller::tls::https_client_config(ca) {
                            errors.push(ConfigError::new("controller.ca_certificate", e));
                        }
                    }
                    (Some(_), false) => errors.push(ConfigError::new(
                        "controller.ca_certificate",
                        "is for an https:// controller url; remove it, or write https:// if \
                         the controller's API has [api_tls]",
                    )),
                    (None, _) => {}
                }
                (c.url.trim_end_matches('/').to_owned(), token, ca)
            }
        };
        match (listen, admin_token, errors.is_empty()) {
            (Some(listen), Some(admin_token), true) => Ok(Config {
                listen,
                store,
                etcd,
                cluster,
                admin_token,
                first_tunnel_key: self.first_tunnel_key,
                node_mtu: self.node_mtu,
                haas_gateways: names,
                gateway_apis,
                controller_url,
                controller_token,
                controller_ca,
                api_limits,
                api_tls,
                #[cfg(feature = "libvirt")]
                libvirt,
            }),
            _ => Err(errors),
        }
    }
}

impl RawGatewayApi {
    fn validate(
        &self,
        base: &Path,
        at: &dyn Fn(&str) -> String,
        errors: &mut Vec<ConfigError>,
    ) -> Option<GatewayApi> {
        let before = errors.len();
        let url = reqwest::Url::parse(&self.api).ok();
        let fine = url.as_ref().is_some_and(|u| {
            u.scheme() == "http"
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if !fine {
            errors.push(ConfigError::new(
                at("api"),
                format!(
                    "{:?} is not the gateway's API base URL; write one like \
                     \"http://192.0.2.1:9180\"",
                    self.api
                ),
            ));
        }
        let token = read_token(&base.join(&self.token_file))
            .map_err(|e| errors.push(ConfigError::new(at("token_file"), e)))
            .ok();
        let wan_ip = match self.wan_ip.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => match iris_controller::model::host_address_problem(ip) {
                None => Some(ip),
                Some(why) => {
                    errors.push(ConfigError::new(
                        at("wan_ip"),
                        format!("{ip} is {why}; write the gateway's WAN address"),
                    ));
                    None
                }
            },
            Err(_) => {
                errors.push(ConfigError::new(
                    at("wan_ip"),
                    format!(
                        "{:?} is not an IPv4 address; write the gateway's WAN address",
                        self.wan_ip
                    ),
                ));
                None
            }
        };
        (errors.len() == before).then(|| GatewayApi {
            name: self.name.clone(),
            api: self.api.trim_end_matches('/').to_owned(),
            token: token.unwrap_or_else(|| Secret::new("")),
            wan_ip: wan_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        })
    }
}

/// Why `path` (a file when `file`, else a directory) cannot be used.
#[cfg(feature = "libvirt")]
fn unusable(path: &Path, file: bool) -> Option<String> {
    let kind = if file { "file" } else { "directory" };
    match std::fs::metadata(path) {
        Err(e) => Some(format!("{}: {e}", path.display())),
        Ok(m) if !(if file { m.is_file() } else { m.is_dir() }) => {
            Some(format!("{} is not a {kind}", path.display()))
        }
        Ok(_) if file => std::fs::File::open(path)
            .err()
            .map(|e| format!("{} cannot be read: {e}", path.display())),
        Ok(_) => std::fs::read_dir(path)
            .err()
            .map(|e| format!("{} cannot be read: {e}", path.display())),
    }
}

#[cfg(feature = "libvirt")]
impl RawLibvirt {
    fn validate(
        &self,
        base: &Path,
        errors: &mut Vec<ConfigError>,
    ) -> Option<crate::compute::libvirt::Config> {
        use crate::compute::libvirt::{Accel, BootImage, Config};
        let before = errors.len();
        let mut path = |key: &str, p: &Path, file: bool| {
            let p = base.join(p);
            if let Some(why) = unusable(&p, file) {
                errors.push(ConfigError::new(format!("libvirt.{key}"), why));
            }
            p
        };
        let kernel = path("kernel", &self.kernel, true);
        let initrd = path("initrd", &self.initrd, true);
        let firmware = self.firmware.as_ref().map(|f| path("firmware", f, true));
        let console_dir = self
            .console_dir
            .as_ref()
            .map(|d| path("console_dir", d, false));
        let state_dir = path("state_dir", &self.state_dir, false);
        let accel = match self.accel.as_str() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            other => {
                errors.push(ConfigError::new(
                    "libvirt.accel",
                    format!(
                        "{other:?} is not an accelerator; write \"kvm\" (nodes get the host CPU \
                         and nested virtualization) or \"tcg\" (no KVM on the PMs)"
                    ),
                ));
                None
            }
        };
        if self.cmdline.contains("iris.ip=") {
            errors.push(ConfigError::new(
                "libvirt.cmdline",
                "holds iris.ip=, which the driver appends for each node; remove it",
            ));
        }
        if errors.len() != before {
            return None;
        }
        Some(Config {
            accel: accel?,
            image: BootImage {
                kernel,
                initrd,
                firmware,
                cmdline: self.cmdline.clone(),
            },
            console_dir,
            state_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "abc\n").unwrap();
        let text = r#"
listen = "nowhere"
admin_token_file = "short"
first_tunnel_key = 0
node_mtu = 20
haas_gateways = ["gwh", "gwh"]
[api_limits]
header_timeout_secs = -1
[controller]
url = "ftp://x"
token_file = "missing"
"#;
        let ParseError::Invalid(errors) = Config::parse(text, dir.path()).unwrap_err() else {
            panic!("not a validation error");
        };
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "listen",
                "admin_token_file",
                "first_tunnel_key",
                "node_mtu",
                "haas_gateways[1]",
                "api_limits.header_timeout_secs",
                "controller.url",
                "controller.token_file"
            ]
        );
    }

    #[test]
    fn a_haas_gateway_with_an_api_is_checked_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin"), "0123456789abcdef0123\n").unwrap();
        std::fs::write(dir.path().join("gw"), "gateway-token-0123456789\n").unwrap();
        let head = "admin_token_file = \"admin\"\n[controller]\nurl = \"http://127.0.0.1:8080\"\n";
        let bad = format!(
            "haas_gateways = [\"gwa\", {{name = \"gwa\", api = \"ftp://x\", token_file = \"none\", \
             wan_ip = \"127.0.0.1\"}}, {{name = \"gwc\", api = \"http://127.0.0.1:9\", token_file = \"gw\", \
             wan_ip = \"nowhere\", port = 1}}]\n{head}"
        );
        let err = Config::parse(&bad, dir.path()).unwrap_err();
        let ParseError::Syntax(m) = err else {
            panic!("an unknown key is a syntax error: {err:?}");
        };
        assert!(m.contains("haas_gateways"), "{m}");
        let bad = bad.replace(", port = 1", "");
        let ParseError::Invalid(errors) = Config::parse(&bad, dir.path()).unwrap_err() else {
            panic!("not a validation error");
        };
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "haas_gateways[1].name",
                "haas_gateways[1].api",
                "haas_gateways[1].token_file",
                "haas_gateways[1].wan_ip",
                "haas_gateways[2].wan_ip"
            ],
            "{errors:?}"
        );
        // The array-of-tables form, as the module's example writes it.
        let good = "admin_token_file = \"admin\"\n[[haas_gateways]]\nname = \"gwh\"\n\
                    api = \"http://127.0.0.1:9180/\"\ntoken_file = \"gw\"\nwan_ip = \"203.0.113.1\"\n\
                    [controller]\nurl = \"http://127.0.0.1:8080\"\n";
        let c = Config::parse(good, dir.path()).unwrap();
        assert_eq!(c.haas_gateways, ["gwh"]);
        assert_eq!(c.gateway_apis[0].api, "http://127.0.0.1:9180");
        assert_eq!(c.gateway_apis[0].token.expose(), "gateway-token-0123456789");
        assert_eq!(c.gateway_apis[0].wan_ip.to_string(), "203.0.113.1");
    }

    #[cfg(feature = "libvirt")]
    #[test]
    fn the_libvirt_table_is_checked_path_by_path_and_a_good_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin"), "0123456789abcdef0123\n").unwrap();
        std::fs::write(dir.path().join("vmlinuz"), "k").unwrap();
        std::fs::create_dir(dir.path().join("disks")).unwrap();
        let head = "admin_token_file = \"admin\"\n[controller]\nurl = \"http://127.0.0.1:8080\"\n";
        let bad = format!(
            "{head}[libvirt]\nkernel = \"disks\"\ninitrd = \"no-initrd\"\nfirmware = \"no-bios\"\n\
             cmdline = \"iris.ip=1.2.3.4/24\"\naccel = \"hvf\"\nconsole_dir = \"vmlinuz\"\n\
             state_dir = \"no-disks\"\n"
        );
        let ParseError::Invalid(errors) = Config::parse(&bad, dir.path()).unwrap_err() else {
            panic!("not a validation error");
        };
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "libvirt.kernel",
                "libvirt.initrd",
                "libvirt.firmware",
                "libvirt.console_dir",
                "libvirt.state_dir",
                "libvirt.accel",
                "libvirt.cmdline"
            ],
            "{errors:?}"
        );
        assert!(errors[1].to_string().contains("no-initrd"), "{errors:?}");
        let err = Config::parse(
            &format!("{head}[libvirt]\nkernel = \"vmlinuz\"\n"),
            dir.path(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ParseError::Syntax(ref m) if m.contains("initrd")),
            "{err:?}"
        );

        let good = format!(
            "{head}[libvirt]\nkernel = \"vmlinuz\"\ninitrd = \"vmlinuz\"\naccel = \"tcg\"\n\
             cmdline = \"console=ttyS0\"\nstate_dir = \"disks\"\n"
        );
        let l = Config::parse(&good, dir.path()).unwrap().libvirt.unwrap();
        assert_eq!(l.accel, crate::compute::libvirt::Accel::Tcg);
        assert_eq!(l.image.kernel, dir.path().join("vmlinuz"));
        assert_eq!(l.state_dir, dir.path().join("disks"));
        assert_eq!(l.image.firmware, None);
        assert_eq!(l.console_dir, None);
        let none = Config::parse(head, dir.path()).unwrap();
        assert!(none.libvirt.is_none());
    }

    #[test]
    fn unknown_keys_are_refused_and_a_good_file_passes() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::parse("lissen = \"x\"\n", dir.path()).unwrap_err();
        assert!(
            matches!(err, ParseError::Syntax(ref m) if m.contains("lissen")),
            "{err:?}"
        );
        std::fs::write(dir.path().join("admin"), "0123456789abcdef0123\n").unwrap();
        let c = Config::parse(
            "admin_token_file = \"admin\"\nstore = \"db\"\n[controller]\nurl = \"http://127.0.0.1:8080/\"\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(c.admin_token.expose(), "0123456789abcdef0123");
        assert_eq!(c.controller_url, "http://127.0.0.1:8080");
        assert_eq!(c.store, dir.path().join("db"));
    }

    #[test]
    fn an_etcd_store_needs_a_cluster_and_both_are_checked_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin"), "0123456789abcdef0123\n").unwrap();
        let head = "admin_token_file = \"admin\"\n[controller]\nurl = \"http://127.0.0.1:8080\"\n";
        let keys = |text: &str| match Config::parse(text, dir.path()).unwrap_err() {
            ParseError::Invalid(errors) => errors.into_iter().map(|e| e.key).collect::<Vec<_>>(),
            e => panic!("not a validation error: {e:?}"),
        };
        let etcd = "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"iris/dc1/\"\n";
        assert_eq!(keys(&format!("{head}{etcd}")), ["cluster"]);
        assert_eq!(
            keys(&format!(
                "{head}[cluster]\nname = \"api1\"\napi = \"http://127.0.0.1:8090\"\n"
            )),
            ["cluster"]
        );
        assert_eq!(
            keys(&format!(
                "{head}[store]\nbackend = \"etcd\"\nendpoints = [\"nowhere\"]\nprefix = \"/x\"\n\
                 [cluster]\nname = \"api 1\"\napi = \"10.0.0.1:8090\"\nlease_ttl_secs = 1\n"
            )),
            [
                "store.endpoints[0]",
                "store.prefix",
                "cluster.name",
                "cluster.api",
                "cluster.lease_ttl_secs"
            ]
        );
        // The controller's commit size, copied with its [store] table.
        assert_eq!(
            keys(&format!(
                "{head}{etcd}max_txn_ops = 64\n[cluster]\nname = \"api1\"\n\
                 api = \"http://10.0.0.21:8090\"\n"
            )),
            ["store.max_txn_ops"]
        );
        let c = Config::parse(
            &format!("{head}{etcd}[cluster]\nname = \"api1\"\napi = \"http://10.0.0.21:8090/\"\n"),
            dir.path(),
        )
        .unwrap();
        let cluster = c.cluster.clone().unwrap();
        assert_eq!(cluster.api, "http://10.0.0.21:8090");
        assert_eq!(cluster.lease_ttl, std::time::Duration::from_secs(5));
        assert_eq!(c.etcd.as_ref().unwrap().prefix, "iris/dc1/");
        assert!(
            c.summary()
                .contains("etcd [http://127.0.0.1:2379] under \"iris/dc1/broker/\""),
            "{}",
            c.summary()
        );
        // A sled table without a path keeps the broker's own directory.
        let c = Config::parse(&format!("{head}[store]\nbackend = \"sled\"\n"), dir.path()).unwrap();
        assert_eq!(c.store, PathBuf::from("/var/lib/iris/broker"));
    }
}
