//! The registry: where each MAC of a VI lives and the IPs it answers for,
//! and the VM ports the controller found in OVSDB.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::net::Ipv4Addr;
use utoipa::ToSchema;

/// Where a MAC lives, as bodies write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LocationBody {
    /// On a VM port of a host's bridge.
    Port { host: String, ofport: u32 },
    /// In the operator's data center, behind this gateway host.
    Gateway { gateway: String },
}

/// The body of `PUT /v1/registry/{vi}/{vlan}/{mac}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    /// `null` or absent: the MAC exists but its place is not known yet.
    #[serde(default)]
    pub location: Option<LocationBody>,
    /// Exactly the IPs this MAC answers ARP for afterwards.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub ips: Vec<Ipv4Addr>,
}

/// A registry entry as `GET /v1/registry` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EntryInfo {
    pub vi: u32,
    /// `null` for untagged frames.
    pub vlan: Option<u16>,
    pub mac: String,
    pub location: Option<LocationBody>,
    /// Who placed it: `seeded`, `api`, `learned`, `announced`...
    #[schema(value_type = String)]
    pub origin: Cow<'static, str>,
    /// When the location last changed, in milliseconds since the epoch.
    pub since_ms: u64,
    #[schema(value_type = Vec<String>)]
    pub ips: Vec<Ipv4Addr>,
}

/// A port with `external_ids:iris-vi` on a host's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmPortInfo {
    pub host: String,
    pub name: String,
    pub ofport: u32,
    pub vi: u32,
}
