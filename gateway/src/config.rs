//! The gateway's TOML configuration: read strictly, validated whole, every
//! problem reported with the key to fix, as the controller's is (the error
//! types, name checks and the misspelt-key hint are the controller's own).
//!
//! ```toml
//! [gateway]
//! name = "gw-haas"            # haas: the host name the controller knows this node by
//! kind = "haas"               # or "iaas"
//! dc = "haas-dc"
//! wan_ip = "203.0.113.1"
//! bridge = "br-int"           # default: br-int (haas), br-gw (iaas)
//! ovsdb = "unix:/var/run/openvswitch/db.sock"
//! # openflow = "unix:/var/run/openvswitch/br-gw.mgmt"   (iaas only)
//! # trunk = "gw1-trunk"                                  (iaas only)
//! wan_mtu = 9000              # or "clamp"
//! listen = "127.0.0.1:9180"
//! # allow_unauthenticated_peers = true   tests only: peers without a token
//!
//! [controller]                # haas only
//! url = "http://127.0.0.1:18080"
//!
//! [[peer]]
//! name = "gw-acme"
//! wan_ip = "203.0.113.2"
//! api = "http://127.0.0.1:9181"
//! token_hash = "$argon2id$..."  # haas: the hash of the token gw-acme presents
//! # token_file = "/etc/iris/peer-gw-haas.token"   iaas: the token to present
//!
//! [wan.encryption]          # optional: the GRE inside WireGuard
//! private_key_file = "/etc/iris/gw.key"
//! address = "10.254.0.1/24"
//!
//! [[peer]]  ...
//! [peer.encryption]           # with [wan.encryption], for every peer
//! public_key = "base64 of the peer's key"
//! inner_ip = "10.254.0.2"
//!
//! [[vi]]
//! id = 1
//! gre_key = 1001
//! peer = "gw-acme"
//! vlans = ["100-199", "untagged"]
//! ```

use crate::pipeline::VlanSet;
pub use encryption::{EncryptedPeer, Encryption, PrivateKey};
use iris_controller::api_auth::{parse_hash, PasswordHashString, MIN_TOKEN_LEN};
use iris_controller::config::{
    check_name, check_plain_ovsdb_remote, from_toml, load_with, ConfigError, LoadError, ParseError,
};
use iris_controller::model::{host_address_problem, ViId, Vlan};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use utoipa::ToSchema;

/// Which data center the gateway stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The HaaS data center: a host of the Iris controller, writing what
    /// its peers report into the controller's registry.
    Haas,
    /// An operator's data center: its own bridge and flows, snooping the
    /// DC LAN and reporting to its HaaS peer.
    Iaas,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Haas => "haas",
            Kind::Iaas => "iaas",
        })
    }
}

/// Bytes a guest frame gains on the WAN: outer IPv4 (20), GRE with a key
/// (8), the inner Ethernet header (14) and its 802.1Q tag (4).
pub const WAN_OVERHEAD: u16 = 20 + 8 + 14 + 4;
/// The guest MTU the WAN must carry whole.
pub const GUEST_MTU: u16 = 1500;

/// How a 1500-byte guest frame crosses the WAN.
///
/// With `[wan.encryption]` each GRE packet also travels inside WireGuard,
/// which adds [`encryption::OVERHEAD`] and pads to 16 bytes: see
/// [`Config::mtu_statement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuPolicy {
    /// The WAN carries packets of this size, at least guest MTU plus
    /// [`WAN_OVERHEAD`]: nothing is fragmented or clamped.
    Wan(u16),
    /// The WAN has an ordinary 1500-byte MTU: guests must use a smaller one
    /// (TCP MSS clamped at the DC edge); a full-size DF packet is dropped.
    Clamp,
}

impl fmt::Display for MtuPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MtuPolicy::Wan(m) => write!(
                f,
                "wan mtu {m} (a {GUEST_MTU}-byte guest frame needs {})",
                GUEST_MTU + WAN_OVERHEAD
            ),
            MtuPolicy::Clamp => write!(
                f,
                "clamp (guests get at most {} bytes across the WAN)",
                GUEST_MTU - WAN_OVERHEAD
            ),
        }
    }
}

/// One entry of `vlans`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VlanItem {
    Untagged,
    Range(u16, u16),
}

impl VlanItem {
    fn overlaps(self, other: VlanItem) -> bool {
        match (self, other) {
            (VlanItem::Untagged, VlanItem::Untagged) => true,
            (VlanItem::Range(a, b), VlanItem::Range(c, d)) => a <= d && c <= b,
            _ => false,
        }
    }
}

impl fmt::Display for VlanItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VlanItem::Untagged => f.write_str("untagged"),
            VlanItem::Range(a, b) if a == b => write!(f, "{a}"),
            VlanItem::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// `"untagged"`, `"100"`, `100` or `"100-199"`.
fn parse_vlan_item(raw: &RawVlan) -> Result<VlanItem, String> {
    const FIX: &str = "write a VLAN id 1-4094, a range like \"100-199\", or \"untagged\"";
    let id = |text: &str| match text.trim().parse::<u16>() {
        Ok(v @ 1..=4094) => Ok(v),
        _ => Err(format!("{text:?} is not a VLAN id; {FIX}")),
    };
    match raw {
        RawVlan::Id(n) => match u16::try_from(*n) {
            Ok(v @ 1..=4094) => Ok(VlanItem::Range(v, v)),
            _ => Err(format!("{n} is not a VLAN id; {FIX}")),
        },
        RawVlan::Text(t) if t == "untagged" => Ok(VlanItem::Untagged),
        RawVlan::Text(t) => match t.split_once('-') {
            None => id(t).map(|v| VlanItem::Range(v, v)),
            Some((a, b)) => {
                let (a, b) = (id(a)?, id(b)?);
                if a > b {
                    return Err(format!("{t:?} runs backwards; write \"{b}-{a}\""));
                }
                Ok(VlanItem::Range(a, b))
            }
        },
    }
}

/// A peer gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub wan_ip: Ipv4Addr,
    /// The peer's API base URL, without a trailing slash.
    pub api: String,
    /// iaas: the bearer token this gateway presents to the peer with its
    /// reports, read from `token_file`.
    pub token: Option<Token>,
    /// haas: the argon2 hash of the token the peer presents with its
    /// reports (`token_hash`); a report is taken only with that token.
    pub token_hash: Option<PasswordHashString>,
}

/// A VI this gateway carries to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViConfig {
    pub id: ViId,
    pub gre_key: u32,
    pub peer: String,
    pub vlans: VlanSet,
}

/// A bearer token: never printed, in a summary or a debug dump.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// The token in `path`: its first line, which must not be empty; `what`
/// says whose token belongs there.
fn read_token(path: &Path, what: &str) -> Result<Token, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!(
            "{} holds no token; write {what} on its first line",
            path.display()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: a token is printable ASCII without spaces, as an HTTP header carries it",
            path.display()
        ));
    }
    Ok(Token(token.to_owned()))
}

/// [`read_token`], for a token whose other end keeps a hash of it: at
/// least [`MIN_TOKEN_LEN`] characters, as `hash-token` takes them.
fn read_long_token(path: &Path, what: &str) -> Result<Token, String> {
    let token = read_token(path, what)?;
    if token.expose().len() < MIN_TOKEN_LEN {
        return Err(format!(
            "{} holds a token shorter than {MIN_TOKEN_LEN} characters; write a longer one \
             (e.g. `openssl rand -hex 32`)",
            path.display()
        ));
    }
    Ok(token)
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub name: String,
    pub kind: Kind,
    pub dc: String,
    pub wan_ip: Ipv4Addr,
    pub bridge: String,
    pub ovsdb: String,
    /// The OpenFlow target of the gateway's own bridge (iaas).
    pub openflow: Option<String>,
    /// The DC-side trunk interface (iaas).
    pub trunk: Option<String>,
    pub mtu: MtuPolicy,
    pub listen: SocketAddr,
    /// The controller's northbound base URL (haas), no trailing slash.
    pub controller: Option<String>,
    /// The bearer token for the controller's API, read from `token_file`.
    pub controller_token: Option<Token>,
    /// The CA trusted for an `https://` controller (`ca_certificate`).
    pub controller_ca: Option<std::path::PathBuf>,
    /// `[gateway] allow_unauthenticated_peers`: a peer without a token is
    /// accepted (haas: its reports are taken without one). Tests only.
    pub allow_unauthenticated_peers: bool,
    pub peers: Vec<Peer>,
    pub vis: Vec<ViConfig>,
    /// The GRE inside WireGuard (`[wan.encryption]`).
    pub encryption: Option<Encryption>,
    /// `[vi_api]`: VIs added and removed at run time (haas).
    pub vi_api: Option<ViApi>,
    /// The VIs added at run time, by id, included in `vis` (and their
    /// peers in `peers`).
    pub runtime: Vec<RuntimeVi>,
    /// The file's own `[[vi]]`, as written: what runtime VIs are
    /// validated together with.
    file_vis: Vec<RawVi>,
    /// How many of `peers` are the file's `[[peer]]`s (the first ones).
    file_peers: usize,
}

impl Config {
    /// How a 1500-byte guest frame crosses this gateway's WAN, as the
    /// status and `check-config` state it.
    pub fn mtu_statement(&self) -> String {
        let Some(_) = &self.encryption else {
            return self.mtu.to_string();
        };
        let gre = GUEST_MTU + WAN_OVERHEAD;
        match self.mtu {
            MtuPolicy::Wan(m) => format!(
                "wan mtu {m}, encrypted (a {GUEST_MTU}-byte guest frame needs {gre} inside \
                 WireGuard, {} on the wire; the tunnel carries {})",
                encryption::wire_size(gre),
                encryption::tunnel_mtu(m)
            ),
            MtuPolicy::Clamp => format!(
                "clamp, encrypted (guests get at most {} bytes across the WAN; the tunnel \
                 carries {})",
                encryption::tunnel_mtu(GUEST_MTU).saturating_sub(WAN_OVERHEAD),
                encryption::tunnel_mtu(GUEST_MTU)
            ),
        }
    }

    /// The WAN MTU assumed by the policy (1500 when clamping).
    pub fn wan_mtu(&self) -> u16 {
        match self.mtu {
            MtuPolicy::Wan(m) => m,
            MtuPolicy::Clamp => GUEST_MTU,
        }
    }

    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        load_with(path, Self::parse)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let raw: RawConfig = from_toml(text)?;
        raw.validate().map_err(ParseError::Invalid)
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    pub fn vi(&self, id: ViId) -> Option<&ViConfig> {
        self.vis.iter().find(|v| v.id == id)
    }

    /// The VI a trunk frame of `vlan` belongs to (iaas: VLAN ranges do not
    /// overlap, so at most one).
    pub fn vi_of_vlan(&self, vlan: Vlan) -> Option<&ViConfig> {
        self.vis.iter().find(|v| v.vlans.contains_vlan(vlan))
    }

    /// What the configuration allows but an operator should know.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let open: Vec<&str> = self
            .peers
            .iter()
            .filter(|p| match self.kind {
                Kind::Haas => p.token_hash.is_none(),
                Kind::Iaas => p.token.is_none(),
            })
            .map(|p| p.name.as_str())
            .collect();
        if self.allow_unauthenticated_peers {
            let what = match self.kind {
                Kind::Haas => format!(
                    "anyone who reaches {} can report MACs as {} and so redirect their VIs' \
                     traffic",
                    self.listen,
                    if open.is_empty() {
                        "a peer added at run time without a token_hash".to_owned()
                    } else {
                        open.join(", ")
                    }
                ),
                Kind::Iaas => format!(
                    "reports go without a token to {}, whose gateway must then take them from \
                     anyone",
                    if open.is_empty() {
                        "no peer now".to_owned()
                    } else {
                        open.join(", ")
                    }
                ),
            };
            w.push(format!(
                "UNAUTHENTICATED PEERS ALLOWED ([gateway] allow_unauthenticated_peers = true): \
                 {what}; for tests only, give every [[peer]] a token and remove the key"
            ));
        }
        if self.vis.is_empty() {
            w.push("no [[vi]]: the gateway carries nothing".into());
        }
        w
    }

    /// A human summary for `check-config`: one line per peer and per VI.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "gateway:    {} kind={} dc={} wan_ip={}",
            self.name, self.kind, self.dc, self.wan_ip
        );
        let _ = writeln!(s, "bridge:     {} ovsdb={}", self.bridge, self.ovsdb);
        if let (Some(of), Some(trunk)) = (&self.openflow, &self.trunk) {
            let _ = writeln!(s, "datapath:   openflow={of} trunk={trunk}");
        }
        if let Some(url) = &self.controller {
            let auth = if self.controller_token.is_some() {
                " (with a bearer token)"
            } else {
                ""
            };
            let ca = match &self.controller_ca {
                Some(ca) => format!(", trusting the CA in {}", ca.display()),
                None if url.starts_with("https://") => ", trusting the system's CAs".to_owned(),
                None => String::new(),
            };
            let _ = writeln!(s, "controller: {url}{auth}{ca}");
        }
        let _ = writeln!(s, "mtu:        {}", self.mtu_statement());
        if let Some(e) = &self.encryption {
            let _ = writeln!(
                s,
                "encryption: wireguard udp {}:{} inner {}/{} bridge={} tap={} public_key={}",
                self.wan_ip,
                e.listen_port,
                e.address,
                e.prefix_len,
                e.bridge,
                e.tap,
                encryption::key_text(&e.private_key.public())
            );
        }
        let _ = writeln!(s, "listen:     {}", self.listen);
        if self.allow_unauthenticated_peers {
            let _ = writeln!(
                s,
                "peer auth:  UNAUTHENTICATED PEERS ALLOWED (allow_unauthenticated_peers = true)"
            );
        }
        if let Some(a) = &self.vi_api {
            let _ = writeln!(
                s,
                "vi api:     PUT/DELETE/GET /v1/vis with a bearer token, state in {}",
                a.state_file().display()
            );
        }
        let _ = writeln!(s, "peers:      {}", self.peers.len());
        for p in &self.peers {
            let vis: Vec<String> = self
                .vis
                .iter()
                .filter(|v| v.peer == p.name)
                .map(|v| v.id.0.to_string())
                .collect();
            let auth = match (&p.token, &p.token_hash) {
                (Some(_), _) => "token=from token_file",
                (None, Some(_)) => "token=hashed",
                (None, None) => "token=NONE",
            };
            let _ = writeln!(
                s,
                "  {} wan_ip={} api={} {auth} vis=[{}]",
                p.name,
                p.wan_ip,
                p.api,
                vis.join(", ")
            );
            if let Some(e) = self.encryption.as_ref().and_then(|e| e.peer(&p.name)) {
                let _ = writeln!(
                    s,
                    "    encrypted endpoint={} inner_ip={} public_key={}",
                    e.endpoint,
                    e.inner_ip,
                    encryption::key_text(&e.public_key)
                );
            }
        }
        let _ = writeln!(s, "vis:        {}", self.vis.len());
        for v in &self.vis {
            let _ = writeln!(
                s,
                "  {} gre_key={} peer={} vlans={}",
                v.id, v.gre_key, v.peer, v.vlans
            );
        }
        s
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: RawGateway,
    #[serde(default)]
    controller: Option<RawController>,
    #[serde(default)]
    wan: Option<encryption::RawWan>,
    #[serde(default, rename = "peer")]
    peers: Vec<RawPeer>,
    #[serde(default, rename = "vi")]
    vis: Vec<RawVi>,
    #[serde(default)]
    vi_api: Option<runtime::RawViApi>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    name: String,
    kind: Kind,
    dc: String,
    #[schema(value_type = String, format = Ipv4)]
    wan_ip: Ipv4Addr,
    #[serde(default)]
    bridge: Option<String>,
    ovsdb: String,
    #[serde(default)]
    openflow: Option<String>,
    #[serde(default)]
    trunk: Option<String>,
    #[serde(default)]
    wan_mtu: Option<RawMtu>,
    #[serde(default = "default_listen")]
    listen: String,
    /// Accept peers without a token: a haas gateway then takes their
    /// reports from anyone who reaches its API. Tests only.
    #[serde(default)]
    allow_unauthenticated_peers: bool,
}

fn default_listen() -> String {
    "127.0.0.1:9180".into()
}

/// The JSON Schema of the configuration file, checked in at
/// `schemas/config/gateway.schema.json`.
pub fn json_schema() -> serde_json::Value {
    iris_schemas::northbound::generated::json_schema::<RawConfig>(
        "iris-gateway configuration (TOML)",
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum RawMtu {
    Bytes(i64),
    Policy(String),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawController {
    url: String,
    /// A file holding the bearer token for the controller's API (its
    /// `[api_auth]`); the token itself is never in this file.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    token_file: Option<std::path::PathBuf>,
    /// For an `https://` url (the controller's API with `[api_tls]`): the
    /// PEM file of the CA its certificate chains to, trusted alone;
    /// without it, the system's roots.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    ca_certificate: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    #[schema(value_type = String, format = Ipv4)]
    wan_ip: Ipv4Addr,
    api: String,
    /// iaas: a file whose first line is the bearer token this gateway
    /// presents to this peer with its reports.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    token_file: Option<std::path::PathBuf>,
    /// haas: the argon2 hash (`iris-gateway hash-token`) of the token this
    /// peer presents with its reports.
    #[serde(default)]
    token_hash: Option<String>,
    #[serde(default)]
    encryption: Option<encryption::RawPeerEncryption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawVi {
    id: u32,
    gre_key: u32,
    peer: String,
    vlans: Vec<RawVlan>,
}

/// One entry of a VI's `vlans`: `"untagged"`, `100`, `"100"` or
/// `"100-199"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RawVlan {
    Id(i64),
    Text(String),
}

impl RawConfig {
    fn validate(self) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut token = None;
        let g = &self.gateway;
        let mut err = |key: &str, problem: String| errors.push(ConfigError::new(key, problem));
        for (key, name) in [("gateway.name", &g.name), ("gateway.dc", &g.dc)] {
            if let Err(p) = check_name(name) {
                err(key, p);
            }
        }
        if let Some(why) = host_address_problem(g.wan_ip) {
            err(
                "gateway.wan_ip",
                format!(
                    "{} is {why} and cannot terminate tunnels; write this node's WAN address",
                    g.wan_ip
                ),
            );
        }
        let bridge = g.bridge.clone().unwrap_or_else(|| match g.kind {
            Kind::Haas => "br-int".into(),
            Kind::Iaas => "br-gw".into(),
        });
        if let Err(p) = check_interface_name(&bridge) {
            err("gateway.bridge", p);
        }
        if let Err(p) = check_plain_ovsdb_remote(&g.ovsdb, "the gateway") {
            err("gateway.ovsdb", p);
        }
        let listen = g.listen.parse::<SocketAddr>().map_err(|_| {
            format!(
                "{:?} is not IP:PORT; write e.g. \"127.0.0.1:9180\"",
                g.listen
            )
        });
        if let Err(p) = &listen {
            err("gateway.listen", p.clone());
        }
        let encrypted = self.wan.as_ref().is_some_and(|w| w.is_encrypted());
        let encrypted_minimum = encryption::wire_size(GUEST_MTU + WAN_OVERHEAD);
        let mtu = match &g.wan_mtu {
            None => MtuPolicy::Wan(9000),
            Some(RawMtu::Policy(p)) if p == "clamp" => MtuPolicy::Clamp,
            Some(RawMtu::Bytes(n)) => match u16::try_from(*n) {
                Ok(m) if m >= GUEST_MTU + WAN_OVERHEAD && !encrypted => MtuPolicy::Wan(m),
                Ok(m) if m >= encrypted_minimum => MtuPolicy::Wan(m),
                Ok(m) if m >= GUEST_MTU + WAN_OVERHEAD => {
                    err(
                        "gateway.wan_mtu",
                        format!(
                            "{m} cannot carry a {GUEST_MTU}-byte guest frame inside WireGuard \
                             ([wan.encryption]): its {} bytes of GRE and 802.1Q grow to \
                             {encrypted_minimum} encrypted; write at least {encrypted_minimum}, \
                             or \"clamp\"",
                            GUEST_MTU + WAN_OVERHEAD
                        ),
                    );
                    MtuPolicy::Clamp
                }
                _ => {
                    err(
                        "gateway.wan_mtu",
                        format!(
                            "{n} cannot carry a {GUEST_MTU}-byte guest frame with its \
                             {WAN_OVERHEAD} bytes of GRE and 802.1Q overhead; write at least {} \
                             (at most 65535), or \"clamp\" when the WAN cannot be raised",
                            GUEST_MTU + WAN_OVERHEAD
                        ),
                    );
                    MtuPolicy::Clamp
                }
            },
            Some(RawMtu::Policy(p)) => {
                err(
                    "gateway.wan_mtu",
                    format!("{p:?} is not an MTU policy; write a number of bytes or \"clamp\""),
                );
                MtuPolicy::Clamp
            }
        };
        match g.kind {
            Kind::Iaas => {
                match &g.openflow {
                    None => err(
                        "gateway.openflow",
                        "an iaas gateway programs its own bridge; write the bridge's \
                         management socket, like \"unix:/var/run/openvswitch/br-gw.mgmt\""
                            .into(),
                    ),
                    Some(of) if check_plain_ovsdb_remote(of, "the gateway").is_err() => err(
                        "gateway.openflow",
                        format!("{of:?} is not an OpenFlow target; write unix:PATH or tcp:IP:PORT"),
                    ),
                    Some(_) => {}
                }
                match &g.trunk {
                    None => err(
                        "gateway.trunk",
                        "an iaas gateway needs the DC-side trunk interface; write its name, \
                         like \"eth1\""
                            .into(),
                    ),
                    Some(t) => {
                        if let Err(p) = check_interface_name(t) {
                            err("gateway.trunk", p);
                        }
                    }
                }
                if self.controller.is_some() {
                    err(
                        "controller",
                        "an iaas gateway has no Iris controller; remove [controller] (it \
                         reports to its haas peer)"
                            .into(),
                    );
                }
            }
            Kind::Haas => {
                for (key, set) in [
                    ("gateway.openflow", g.openflow.is_some()),
                    ("gateway.trunk", g.trunk.is_some()),
                ] {
                    if set {
                        err(
                            key,
                            "a haas gateway installs no flows and has no trunk: the controller \
                             programs its bridge; remove this key"
                                .into(),
                        );
                    }
                }
                match &self.controller {
                    None => err(
                        "controller",
                        "a haas gateway writes its peers' reports into the controller's \
                         registry; add [controller] with url = \"http://IP:PORT\""
                            .into(),
                    ),
                    Some(c) => {
                        let https = c.url.starts_with("https://");
                        if let Err(p) = check_base_url(&c.url, Schemes::HttpOrHttps) {
                            err("controller.url", p);
                        }
                        match (&c.ca_certificate, https) {
                            (Some(ca), true) => {
                                if let Err(p) = iris_controller::tls::https_client_config(ca) {
                                    err("controller.ca_certificate", p);
                                }
                            }
                            (Some(_), false) => err(
                                "controller.ca_certificate",
                                "is for an https:// controller url; remove it, or write \
                                 https:// if the controller's API has [api_tls]"
                                    .into(),
                            ),
                            (None, _) => {}
                        }
                        if let Some(f) = &c.token_file {
                            match read_token(f, "the controller's API token") {
                                Ok(t) => token = Some(t),
                                Err(p) => err("controller.token_file", p),
                            }
                        }
                    }
                }
            }
        }
        let auth = PeerAuth {
            kind: g.kind,
            allow_unauthenticated: g.allow_unauthenticated_peers,
        };
        let peers = validate_peers(&self.peers, (&g.name, g.wan_ip), auth, &mut errors);
        let encryption = encryption::validate(
            self.wan.as_ref(),
            &self.peers,
            (g.wan_ip, &bridge, g.trunk.as_deref()),
            &mut errors,
        );
        let vis = validate_vis(&self.vis, &self.peers, g.kind, &mut errors);
        let vi_api = self
            .vi_api
            .as_ref()
            .and_then(|a| a.validate(g.kind, &mut errors));
        match listen {
            Ok(listen) if errors.is_empty() => Ok(Config {
                name: g.name.clone(),
                kind: g.kind,
                dc: g.dc.clone(),
                wan_ip: g.wan_ip,
                bridge,
                ovsdb: g.ovsdb.clone(),
                openflow: g.openflow.clone(),
                trunk: g.trunk.clone(),
                mtu,
                listen,
                controller_ca: self
                    .controller
                    .as_ref()
                    .and_then(|c| c.ca_certificate.clone()),
                controller: self
                    .controller
                    .map(|c| c.url.trim_end_matches('/').to_owned()),
                controller_token: token,
                allow_unauthenticated_peers: g.allow_unauthenticated_peers,
                file_peers: peers.len(),
                peers,
                vis,
                encryption,
                vi_api,
                runtime: Vec::new(),
                file_vis: self.vis,
            }),
            _ => Err(errors),
        }
    }
}

/// What a gateway asks of its peers' tokens.
#[derive(Debug, Clone, Copy)]
struct PeerAuth {
    kind: Kind,
    allow_unauthenticated: bool,
}

/// The peers' own checks and those between them; `own` is this gateway's
/// name and WAN address, which no peer may have.
fn validate_peers(
    peers: &[RawPeer],
    own: (&str, Ipv4Addr),
    auth: PeerAuth,
    errors: &mut Vec<ConfigError>,
) -> Vec<Peer> {
    let mut names = HashMap::new();
    let mut ips = HashMap::new();
    let mut hashes = HashMap::new();
    let mut out = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let key = format!("peer[{i}]");
        let mut err = |field: &str, problem: String| {
            errors.push(ConfigError::new(format!("{key}.{field}"), problem));
        };
        if let Err(problem) = check_name(&p.name) {
            err("name", problem);
        } else if p.name == own.0 {
            err(
                "name",
                format!(
                    "{:?} is this gateway's own name; a peer is another data center's gateway",
                    p.name
                ),
            );
        }
        if let Some(j) = names.insert(p.name.as_str(), i) {
            err(
                "name",
                format!("{:?} is already peer[{j}]'s; name each peer once", p.name),
            );
        }
        if let Some(why) = host_address_problem(p.wan_ip) {
            err(
                "wan_ip",
                format!("{} is {why}; write the peer's WAN address", p.wan_ip),
            );
        } else if p.wan_ip == own.1 {
            err(
                "wan_ip",
                format!(
                    "{} is this gateway's own wan_ip; a tunnel needs two ends",
                    p.wan_ip
                ),
            );
        }
        if let Some(j) = ips.insert(p.wan_ip, i) {
            err(
                "wan_ip",
                format!(
                    "{} is already peer[{j}]'s; one gateway per data center and address",
                    p.wan_ip
                ),
            );
        }
        if let Err(problem) = check_base_url(&p.api, Schemes::Http) {
            err("api", problem);
        }
        let (token, token_hash) = peer_tokens(p, auth, &mut err);
        if let Some(h) = &token_hash {
            if let Some(j) = hashes.insert(h.as_str().to_owned(), i) {
                err(
                    "token_hash",
                    format!(
                        "is already peer[{j}]'s; give each peer its own token, so that its \
                         token says which peer reports"
                    ),
                );
            }
        }
        out.push(Peer {
            name: p.name.clone(),
            wan_ip: p.wan_ip,
            api: p.api.trim_end_matches('/').to_owned(),
            token,
            token_hash,
        });
    }
    out
}

/// A peer's token (iaas: the one to present) or token hash (haas: of the
/// one it presents), problems reported through `err` by field.
fn peer_tokens(
    p: &RawPeer,
    auth: PeerAuth,
    err: &mut impl FnMut(&str, String),
) -> (Option<Token>, Option<PasswordHashString>) {
    let unauthenticated = "or, for tests only, set [gateway] allow_unauthenticated_peers = true";
    match auth.kind {
        Kind::Haas => {
            if p.token_file.is_some() {
                err(
                    "token_file",
                    "a haas gateway reports to no peer, its peers report to it; remove \
                     token_file, give the token to the peer's own token_file and write its hash \
                     here as token_hash"
                        .into(),
                );
            }
            match &p.token_hash {
                Some(text) => match parse_hash(text) {
                    Ok(h) => return (None, Some(h)),
                    Err(problem) => err(
                        "token_hash",
                        problem.replace("iris-controller hash-token", "iris-gateway hash-token"),
                    ),
                },
                None if !auth.allow_unauthenticated => err(
                    "token_hash",
                    format!(
                        "no token: anyone who reaches this gateway's API could report MACs as \
                         {:?} and redirect its VIs' traffic; write the hash of the token {:?} \
                         presents (`iris-gateway hash-token < TOKEN-FILE`), {unauthenticated}",
                        p.name, p.name
                    ),
                ),
                None => {}
            }
        }
        Kind::Iaas => {
            if p.token_hash.is_some() {
                err(
                    "token_hash",
                    "an iaas gateway takes no reports, it sends them; remove token_hash and \
                     name the file of the token to present in token_file"
                        .into(),
                );
            }
            match &p.token_file {
                Some(f) => match read_long_token(f, &format!("the token {:?} expects", p.name)) {
                    Ok(t) => return (Some(t), None),
                    Err(problem) => err("token_file", problem),
                },
                None if !auth.allow_unauthenticated => err(
                    "token_file",
                    format!(
                        "no token: {:?} takes reports only with the token it keeps the hash \
                         of; name the file holding it, {unauthenticated}",
                        p.name
                    ),
                ),
                None => {}
            }
        }
    }
    (None, None)
}

fn validate_vis(
    vis: &[RawVi],
    peers: &[RawPeer],
    kind: Kind,
    errors: &mut Vec<ConfigError>,
) -> Vec<ViConfig> {
    let mut ids = HashMap::new();
    let mut keys = HashMap::new();
    // Every VLAN item read so far: (vi index, item index, peer, item).
    let mut seen: Vec<(usize, usize, &str, VlanItem)> = Vec::new();
    let mut out = Vec::new();
    for (i, v) in vis.iter().enumerate() {
        let key = format!("vi[{i}]");
        if !ViId(v.id).is_valid() {
            errors.push(ConfigError::new(
                format!("{key}.id"),
                format!(
                    "{} is not a usable VI id; use 1 to {} as in the controller's [[vi]]",
                    v.id,
                    ViId::MAX
                ),
            ));
        }
        if let Some(j) = ids.insert(v.id, i) {
            errors.push(ConfigError::new(
                format!("{key}.id"),
                format!("{} is already vi[{j}]'s; list each VI once", v.id),
            ));
        }
        if v.gre_key == 0 {
            errors.push(ConfigError::new(
                format!("{key}.gre_key"),
                "0 means \"no key\" on a GRE tunnel; use the VI's key, 1 or more",
            ));
        }
        if let Some(j) = keys.insert(v.gre_key, i) {
            errors.push(ConfigError::new(
                format!("{key}.gre_key"),
                format!(
                    "{} is already vi[{j}]'s; the key selects the VI on the WAN, so each VI \
                     needs its own",
                    v.gre_key
                ),
            ));
        }
        if !peers.iter().any(|p| p.name == v.peer) {
            let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
            let hint = if names.is_empty() {
                "add a [[peer]] with that name".to_owned()
            } else {
                format!("write one of {}", names.join(", "))
            };
            errors.push(ConfigError::new(
                format!("{key}.peer"),
                format!("{:?} is not a [[peer]] in this file; {hint}", v.peer),
            ));
        }
        if v.vlans.is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.vlans"),
                "no VLAN: write the operator's VLANs, like [\"100-199\", \"untagged\"]",
            ));
        }
        let mut set = VlanSet::new();
        for (k, raw) in v.vlans.iter().enumerate() {
            let at = format!("{key}.vlans[{k}]");
            let item = match parse_vlan_item(raw) {
                Ok(item) => item,
                Err(p) => {
                    errors.push(ConfigError::new(at, p));
                    continue;
                }
            };
            // The trunk of an iaas gateway is one: its VLAN selects the VI.
            // A haas gateway's peer has one trunk per peer likewise.
            let clash = seen.iter().find(|(j, _, peer, other)| {
                other.overlaps(item) && (*j == i || kind == Kind::Iaas || *peer == v.peer)
            });
            if let Some((j, m, _, other)) = clash {
                let why = if *j == i {
                    "list each VLAN once".to_owned()
                } else {
                    format!(
                        "a trunk frame's VLAN must select one VI; vi[{j}] and vi[{i}] reach {} \
                         over one trunk",
                        if kind == Kind::Iaas {
                            "this gateway"
                        } else {
                            "the same peer"
                        }
                    )
                };
                errors.push(ConfigError::new(
                    at,
                    format!("{item} overlaps vi[{j}].vlans[{m}] ({other}); {why}"),
                ));
            }
            seen.push((i, k, v.peer.as_str(), item));
            set = match item {
                VlanItem::Untagged => set.with_untagged(),
                // parse_vlan_item has checked the range.
                VlanItem::Range(a, b) => match set.clone().with_range(a, b) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(ConfigError::new(format!("{key}.vlans[{k}]"), e.0));
                        set
                    }
                },
            };
        }
        out.push(ViConfig {
            id: ViId(v.id),
            gre_key: v.gre_key,
            peer: v.peer.clone(),
            vlans: set,
        });
    }
    out
}

/// A Linux interface name: a plain name of at most 15 bytes.
fn check_interface_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if name.len() > 15 {
        return Err(format!(
            "{name:?} is longer than the 15 characters an interface name may have"
        ));
    }
    Ok(())
}

/// A base URL the gateway's HTTP client can reach: plain `http`, a host,
/// no query. (The WAN management network carries no TLS here; a TLS
/// terminating proxy is the operator's.)
/// The schemes a base URL may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schemes {
    /// A peer gateway's API: plain HTTP only.
    Http,
    /// The controller's API, which may have `[api_tls]`.
    HttpOrHttps,
}

fn check_base_url(text: &str, schemes: Schemes) -> Result<(), String> {
    let fix = match schemes {
        Schemes::Http => "write a base URL like \"http://192.0.2.1:9180\"",
        Schemes::HttpOrHttps => {
            "write a base URL like \"http://192.0.2.1:8080\" (https:// when the controller's \
             API has [api_tls])"
        }
    };
    let url =
        reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e}); {fix}"))?;
    match (url.scheme(), schemes) {
        ("http", _) | ("https", Schemes::HttpOrHttps) => {}
        (_, Schemes::Http) => {
            return Err(format!(
                "{text:?} is not plain http; a gateway's API speaks http only, {fix}"
            ))
        }
        (_, Schemes::HttpOrHttps) => return Err(format!("{text:?} is not http or https; {fix}")),
    }
    if url.host_str().is_none_or(str::is_empty) || url.query().is_some() || url.fragment().is_some()
    {
        return Err(format!("{text:?} is not a base URL; {fix}"));
    }
    Ok(())
}

pub mod encryption;
pub mod runtime;
pub use runtime::{PeerSpec, RuntimeVi, ViApi, ViSpec};
#[cfg(test)]
pub(crate) mod tests;
