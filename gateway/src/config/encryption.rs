//! `[wan.encryption]` and each peer's `[peer.encryption]`: the gateways'
//! GRE carried inside WireGuard (docs/gateway.md, "The encrypted WAN").

use super::{check_interface_name, ConfigError, RawPeer};
use base64::Engine;
use iris_controller::model::host_address_problem;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// WireGuard's UDP port unless the file says otherwise.
pub const DEFAULT_PORT: u16 = 51820;
/// Bytes WireGuard adds around a packet: outer IPv4 (20), UDP (8), the
/// data message header (16) and the Poly1305 tag (16).
pub const OVERHEAD: u16 = 20 + 8 + 16 + 16;
/// WireGuard pads what it encrypts to a multiple of this.
pub const PADDING: u16 = 16;

/// The largest packet the tunnel carries whole on a WAN of `wan_mtu`: what
/// is left after WireGuard's overhead, rounded down to its padding.
pub fn tunnel_mtu(wan_mtu: u16) -> u16 {
    wan_mtu.saturating_sub(OVERHEAD) / PADDING * PADDING
}

/// The WAN bytes a packet of `inner` bytes takes once encrypted.
pub fn wire_size(inner: u16) -> u16 {
    inner.div_ceil(PADDING) * PADDING + OVERHEAD
}

/// An X25519 key as `wg genkey` and `wg pubkey` write it: 32 bytes in
/// base64.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "is not base64".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("holds {} bytes, not the 32 of a WireGuard key", bytes.len()))
}

/// A key printed as `wg` prints it.
pub fn key_text(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// This gateway's private key: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub(crate) [u8; 32]);

impl PrivateKey {
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The public key a peer must hold for this gateway.
    pub fn public(&self) -> [u8; 32] {
        let secret = boringtun::x25519::StaticSecret::from(self.0);
        boringtun::x25519::PublicKey::from(&secret).to_bytes()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<hidden>)")
    }
}

/// Writes a new private key to `path`, which must not exist (mode 0600,
/// as `wg genkey` would be redirected), and gives its public key.
pub fn generate_key(path: &Path) -> Result<[u8; 32], String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    writeln!(file, "{}", key_text(&key))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(PrivateKey(key).public())
}

/// Reads a private key file: its first line, as `wg genkey` writes it.
fn read_private_key(path: &Path) -> Result<PrivateKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    parse_key(line).map(PrivateKey).map_err(|why| {
        format!(
            "{}: the first line {why}; write a key made by `wg genkey` (or `iris-gateway \
             genkey`)",
            path.display()
        )
    })
}

/// A validated `[wan.encryption]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    pub private_key: PrivateKey,
    /// The UDP port WireGuard listens on, on `wan_ip`.
    pub listen_port: u16,
    /// This gateway's address inside the tunnel: the GRE ports' `local_ip`.
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The bridge holding the inner address (userspace GRE leaves only
    /// through an OVS bridge that owns its `local_ip`).
    pub bridge: String,
    /// The tap device between that bridge and the gateway's WireGuard.
    pub tap: String,
    /// One per `[[peer]]`, in the same order.
    pub peers: Vec<EncryptedPeer>,
    /// The network namespace the WAN, the bridge and the tap are in, when
    /// it is not the gateway's own (its API and control plane stay in its
    /// own namespace).
    pub netns: Option<PathBuf>,
}

/// The keys of an encrypted WAN: what a reload (`SIGHUP`) changes while
/// the gateway runs (docs/gateway.md, "Rotating the keys").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub private_key: PrivateKey,
    /// Each peer's public key, in the order of [`Encryption::peers`].
    pub peers: Vec<[u8; 32]>,
}

impl Encryption {
    pub fn keys(&self) -> Keys {
        Keys {
            private_key: self.private_key.clone(),
            peers: self.peers.iter().map(|p| p.public_key).collect(),
        }
    }

    /// This encryption with `keys` in place of its own (peers beyond
    /// `keys.peers` keep theirs).
    pub fn with_keys(&self, keys: &Keys) -> Encryption {
        let mut e = self.clone();
        e.private_key = keys.private_key.clone();
        for (p, k) in e.peers.iter_mut().zip(&keys.peers) {
            p.public_key = *k;
        }
        e
    }
}

/// A peer's end of the encrypted WAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedPeer {
    pub name: String,
    pub public_key: [u8; 32],
    /// Where its WireGuard listens.
    pub endpoint: SocketAddrV4,
    /// Its address inside the tunnel: the GRE ports' `remote_ip`.
    pub inner_ip: Ipv4Addr,
}

impl Encryption {
    pub fn peer(&self, name: &str) -> Option<&EncryptedPeer> {
        self.peers.iter().find(|p| p.name == name)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        prefix_contains(self.address, self.prefix_len, ip)
    }
}

fn prefix_contains(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWan {
    #[serde(default)]
    encryption: Option<RawEncryption>,
}

impl RawWan {
    pub(super) fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }
}

/// The gateways' GRE inside WireGuard.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    /// A file whose first line is this gateway's private key (`wg genkey`).
    #[schema(value_type = String)]
    private_key_file: PathBuf,
    /// WireGuard's UDP port on `wan_ip`; default 51820.
    #[serde(default)]
    listen_port: Option<i64>,
    /// This gateway's inner address with its prefix, like "10.254.0.1/24":
    /// the GRE ports' `local_ip`; every peer's `inner_ip` is in the prefix.
    address: String,
    /// The OVS bridge that holds `address`; default "br-wg".
    #[serde(default)]
    bridge: Option<String>,
    /// The tap device between that bridge and WireGuard; default "wg-tap".
    #[serde(default)]
    tap: Option<String>,
    /// A network namespace (a path like "/run/netns/wan") where `wan_ip`,
    /// the OVS instance and so the bridge and tap are, if not the
    /// gateway's own.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    netns: Option<PathBuf>,
}

/// A peer's end of the encrypted WAN.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeerEncryption {
    /// The peer's public key (`wg pubkey` of its private key).
    public_key: String,
    /// The peer's address inside the tunnel (its `address`, without prefix).
    #[schema(value_type = String, format = Ipv4)]
    inner_ip: Ipv4Addr,
    /// Where the peer's WireGuard listens; default its wan_ip and this
    /// file's listen_port.
    #[serde(default)]
    endpoint: Option<String>,
}

/// Validates the encryption keys; errors go to `errors` with their keys.
pub(super) fn validate(
    wan: Option<&RawWan>,
    peers: &[RawPeer],
    gateway: (Ipv4Addr, &str, Option<&str>),
    errors: &mut Vec<ConfigError>,
) -> Option<Encryption> {
    let (wan_ip, bridge_name, trunk) = gateway;
    let Some(raw) = wan.and_then(|w| w.encryption.as_ref()) else {
        for (i, p) in peers.iter().enumerate() {
            if p.encryption.is_some() {
                errors.push(ConfigError::new(
                    format!("peer[{i}].encryption"),
                    "this gateway's WAN is not encrypted; add [wan.encryption] or remove this \
                     table",
                ));
            }
        }
        return None;
    };
    let start = errors.len();
    let mut err = |key: &str, problem: String| {
        errors.push(ConfigError::new(format!("wan.encryption.{key}"), problem));
    };
    let private_key = match read_private_key(&raw.private_key_file) {
        Ok(k) => Some(k),
        Err(p) => {
            err("private_key_file", p);
            None
        }
    };
    let listen_port = match raw.listen_port {
        None => DEFAULT_PORT,
        Some(n) => match u16::try_from(n) {
            Ok(p) if p > 0 => p,
            _ => {
                err(
                    "listen_port",
                    format!("{n} is not a UDP port; write 1-65535 (WireGuard's is 51820)"),
                );
                DEFAULT_PORT
            }
        },
    };
    let (address, prefix_len) = match parse_cidr(&raw.address) {
        Ok((ip, len)) => {
            if ip == wan_ip || prefix_contains(ip, len, wan_ip) {
                err(
                    "address",
                    format!(
                        "{} overlaps this gateway's wan_ip {wan_ip}: the WAN itself would be \
                         routed into the tunnel; pick a prefix of its own, like \
                         \"10.254.0.1/24\"",
                        raw.address
                    ),
                );
            }
            (ip, len)
        }
        Err(p) => {
            err("address", p);
            (Ipv4Addr::UNSPECIFIED, 32)
        }
    };
    let bridge = raw.bridge.clone().unwrap_or_else(|| "br-wg".into());
    let tap = raw.tap.clone().unwrap_or_else(|| "wg-tap".into());
    for (key, name) in [("bridge", &bridge), ("tap", &tap)] {
        if let Err(p) = check_interface_name(name) {
            err(key, p);
        } else if name == bridge_name || Some(name.as_str()) == trunk {
            err(
                key,
                format!("{name:?} is already the gateway's bridge or trunk; name another device"),
            );
        }
    }
    if bridge == tap {
        err(
            "tap",
            format!("{tap:?} is the bridge's own name; the tap is a port of it"),
        );
    }
    if let Some(ns) = &raw.netns {
        if let Err(e) = std::fs::File::open(ns) {
            err(
                "netns",
                format!(
                    "cannot open {}: {e}; write the path of a network namespace, like \
                     \"/run/netns/wan\"",
                    ns.display()
                ),
            );
        }
    }
    let own_public = private_key.as_ref().map(PrivateKey::public);
    let mut encrypted = Vec::new();
    let mut keys = HashMap::new();
    let mut inner = HashMap::new();
    for (i, p) in peers.iter().enumerate() {
        let key = format!("peer[{i}].encryption");
        let mut err = |field: &str, problem: String| {
            let at = if field.is_empty() {
                key.clone()
            } else {
                format!("{key}.{field}")
            };
            errors.push(ConfigError::new(at, problem));
        };
        let Some(e) = &p.encryption else {
            err(
                "",
                "the WAN is encrypted ([wan.encryption]): give this peer's public_key and \
                 inner_ip in [peer.encryption]"
                    .into(),
            );
            continue;
        };
        let public_key = match parse_key(&e.public_key) {
            Ok(k) if Some(k) == own_public => {
                err(
                    "public_key",
                    "is this gateway's own public key; write the peer's (`wg pubkey` of its \
                     private key)"
                        .into(),
                );
                k
            }
            Ok(k) => k,
            Err(why) => {
                err(
                    "public_key",
                    format!("{why}; write the peer's key as `wg pubkey` prints it"),
                );
                [0; 32]
            }
        };
        if public_key != [0; 32] {
            if let Some(j) = keys.insert(public_key, i) {
                err(
                    "public_key",
                    format!("is already peer[{j}]'s; each gateway has its own key"),
                );
            }
        }
        let ip = e.inner_ip;
        if !prefix_contains(address, prefix_len, ip) || prefix_len >= 31 {
            err(
                "inner_ip",
                format!(
                    "{ip} is outside wan.encryption.address {}; the tunnel's addresses share \
                     one prefix",
                    raw.address
                ),
            );
        } else if ip == address {
            err(
                "inner_ip",
                format!("{ip} is this gateway's own inner address; write the peer's"),
            );
        } else if let Some(why) = host_address_problem(ip) {
            err(
                "inner_ip",
                format!("{ip} is {why}; write the peer's address"),
            );
        } else if is_edge_of_prefix(ip, prefix_len) {
            err(
                "inner_ip",
                format!("{ip} is the network or broadcast address of its prefix"),
            );
        }
        if let Some(j) = inner.insert(ip, i) {
            err("inner_ip", format!("{ip} is already peer[{j}]'s"));
        }
        let endpoint = match &e.endpoint {
            None => SocketAddrV4::new(p.wan_ip, listen_port),
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(SocketAddr::V4(a)) if a.port() != 0 => a,
                _ => {
                    err(
                        "endpoint",
                        format!(
                            "{text:?} is not IPV4:PORT; write the peer's WireGuard address, \
                             like \"{}:{DEFAULT_PORT}\"",
                            p.wan_ip
                        ),
                    );
                    SocketAddrV4::new(p.wan_ip, listen_port)
                }
            },
        };
        if prefix_contains(address, prefix_len, *endpoint.ip()) {
            err(
                "endpoint",
                format!(
                    "{} is inside the tunnel's own prefix {}; WireGuard must reach it over the \
                     WAN",
                    endpoint.ip(),
                    raw.address
                ),
            );
        }
        encrypted.push(EncryptedPeer {
            name: p.name.clone(),
            public_key,
            endpoint,
            inner_ip: ip,
        });
    }
    if errors.len() > start {
        return None;
    }
    let e = Encryption {
        private_key: private_key?,
        listen_port,
        address,
        prefix_len,
        bridge,
        tap,
        peers: encrypted,
        netns: raw.netns.clone(),
    };
    debug_assert!(e.peers.iter().all(|p| e.contains(p.inner_ip)));
    Some(e)
}

fn is_edge_of_prefix(ip: Ipv4Addr, len: u8) -> bool {
    let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    let bits = u32::from(ip) & host;
    bits == 0 || bits == host
}

/// `"10.254.0.1/24"`: an address to put on an interface, prefix 8-30.
fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let fix = "write this gateway's inner address and prefix, like \"10.254.0.1/24\"";
    let (ip, len) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} has no prefix length; {fix}"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address; {fix}"))?;
    let len: u8 = match len.parse() {
        Ok(l @ 8..=30) => l,
        _ => {
            return Err(format!(
                "/{len} leaves no room for two gateways or is not a prefix length; use /8 to \
                 /30"
            ))
        }
    };
    if let Some(why) = host_address_problem(ip) {
        return Err(format!("{ip} is {why}; {fix}"));
    }
    if is_edge_of_prefix(ip, len) {
        return Err(format!(
            "{ip} is the network or broadcast address of /{len}; {fix}"
        ));
    }
    Ok((ip, len))
}
