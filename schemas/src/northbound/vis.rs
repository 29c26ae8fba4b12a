//! Virtual infrastructures: `[[vi]]`, `PUT /v1/vis/{id}` and their seeds.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use utoipa::ToSchema;

/// A VI as written in `[[vi]]` and in API bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViSpec {
    pub id: u32,
    pub name: String,
    pub gre_key: u32,
    #[serde(default)]
    pub gateways: Vec<String>,
    /// A seed file of (MAC, IP, VLAN) rows, `.csv` or `.toml`; relative
    /// paths are relative to the configuration file. Configuration only:
    /// an API body leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub seed: Option<PathBuf>,
}

/// A seed entry as a TOML seed file's `[[entry]]` table and the API's
/// seed body write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedRow {
    pub mac: String,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Ipv4)]
    pub ip: Option<Ipv4Addr>,
    /// Absent for untagged frames.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The gateway host the MAC lives behind.
    #[serde(default)]
    pub behind: Option<String>,
}

/// The answer to `POST /v1/vis/{id}/seed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeedOutcome {
    /// How many registry changes (MACs and IP bindings) the seed made.
    pub changes: usize,
}
