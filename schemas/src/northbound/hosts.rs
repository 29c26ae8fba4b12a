//! Hosts: what `[[host]]` and `PUT /v1/hosts/{name}` write, and what
//! `GET /v1/hosts` and `/healthz` answer.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::net::Ipv4Addr;
use utoipa::ToSchema;

/// A host as written in `[[host]]` and in API bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    #[schema(value_type = String, format = Ipv4)]
    pub underlay_ip: Ipv4Addr,
    pub role: RoleSpec,
    /// OVSDB remote: `unix:PATH` or `tcp:IP:PORT`.
    pub ovsdb: String,
    /// 16 hex digits; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<String>,
    /// The controller target this host's bridge gets, when it differs from
    /// `[bridge] controller` (a unix socket in the host's own run directory,
    /// say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
}

/// Whether a host runs VMs or stands for an operator's data center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleSpec {
    Compute,
    Gateway,
}

/// A host as the API shows it: its definition (a [`HostSpec`], with
/// `datapath_id` always given) and its connections.
///
/// The definition's fields are spelled out rather than flattened: a
/// flattened `HostSpec` would be described as `allOf` with a schema that
/// refuses every other field, which no answer could satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostInfo {
    pub name: String,
    #[schema(value_type = String, format = Ipv4)]
    pub underlay_ip: Ipv4Addr,
    pub role: RoleSpec,
    pub ovsdb: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    pub openflow_connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openflow_peer: Option<String>,
    /// The switch's ports as it reports them (PORT_DESC, PORT_STATUS).
    pub openflow_ports: Vec<SwitchPort>,
    pub ovsdb_connected: bool,
}

/// One port of a connected switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwitchPort {
    pub port_no: u32,
    pub name: String,
    /// Neither administratively down nor without link.
    pub up: bool,
}

/// A summary for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub hosts: usize,
    /// Switches of configured hosts past their handshake.
    pub switches_ready: usize,
    pub ovsdb_connected: usize,
    pub vis: usize,
    /// The datapath ids of connected switches that match no host: held
    /// apart and left alone, never counted as ready.
    pub unknown_switches: Vec<String>,
}

/// The body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Healthz {
    /// `ok` whenever the control loop answers.
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
    #[serde(flatten)]
    pub health: Health,
}
