//! VIs added at run time through the gateway's API (`[vi_api]`, haas):
//! what a request carries, and how it is validated. The checks are the
//! file's own: a runtime VI and its peer are written as a `[[vi]]` and a
//! `[[peer]]` and validated together with the file's, so a runtime VI is
//! held to exactly what the file is, and a clash with the file or another
//! runtime VI is found by the same code that finds one within the file.
//!
//! ```toml
//! [vi_api]
//! token_file = "/etc/iris/gateway-api-token"   # first line: the bearer token
//! state_dir = "/var/lib/iris/gateway"          # runtime VIs kept in vis.json
//! ```

use super::{
    read_long_token, validate_peers, validate_vis, Config, ConfigError, Kind, PeerAuth, RawPeer,
    RawVi, RawVlan, Token,
};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use utoipa::ToSchema;

/// The file under `state_dir` that holds the runtime VIs.
pub const STATE_FILE: &str = "vis.json";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawViApi {
    /// A file whose first line is the bearer token `PUT`, `DELETE` and
    /// `GET /v1/vis` require (at least 16 characters).
    #[schema(value_type = String)]
    token_file: PathBuf,
    /// The directory where the VIs added at run time are kept, in
    /// `vis.json`, so that they survive a restart. Created if absent.
    #[schema(value_type = String)]
    state_dir: PathBuf,
}

impl RawViApi {
    pub(super) fn validate(&self, kind: Kind, errors: &mut Vec<ConfigError>) -> Option<ViApi> {
        if kind == Kind::Iaas {
            errors.push(ConfigError::new(
                "vi_api",
                "an iaas gateway's VIs are its configuration (its flow table is built from \
                 them); remove [vi_api]",
            ));
            return None;
        }
        let token = match read_long_token(&self.token_file, "the token of [vi_api]") {
            Ok(t) => Some(t),
            Err(p) => {
                errors.push(ConfigError::new("vi_api.token_file", p));
                None
            }
        };
        let dir = &self.state_dir;
        if dir.as_os_str().is_empty() {
            errors.push(ConfigError::new(
                "vi_api.state_dir",
                "empty: name the directory that keeps the VIs added at run time",
            ));
            return None;
        }
        if dir.exists() && !dir.is_dir() {
            errors.push(ConfigError::new(
                "vi_api.state_dir",
                format!("{} is not a directory", dir.display()),
            ));
            return None;
        }
        Some(ViApi {
            token: token?,
            state_dir: dir.clone(),
        })
    }
}

/// `[vi_api]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViApi {
    pub token: Token,
    pub state_dir: PathBuf,
}

impl ViApi {
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join(STATE_FILE)
    }
}

/// The peer gateway of a runtime VI: what a `[[peer]]` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// The peer's name, as its reports carry it (its `[gateway] name`).
    pub name: String,
    #[schema(value_type = String, format = Ipv4)]
    pub wan_ip: Ipv4Addr,
    /// The peer's API base URL, `http://IP:PORT`.
    pub api: String,
    /// The argon2 hash of the token the peer presents with its reports
    /// (`iris-gateway hash-token`), as a `[[peer]]`'s `token_hash`;
    /// required unless `allow_unauthenticated_peers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
}

/// `PUT /v1/vis/{id}`: what a `[[vi]]` says, with its `[[peer]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViSpec {
    /// The VI's GRE key on the WAN, as the peer's `[[vi]]` has it.
    pub gre_key: u32,
    pub peer: PeerSpec,
    /// The operator's VLANs: `"100-199"`, `100`, `"untagged"`.
    pub vlans: Vec<RawVlan>,
}

/// A VI added at run time, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeVi {
    pub id: u32,
    pub gre_key: u32,
    pub peer: PeerSpec,
    pub vlans: Vec<RawVlan>,
}

impl RuntimeVi {
    pub fn new(id: u32, spec: ViSpec) -> Self {
        Self {
            id,
            gre_key: spec.gre_key,
            peer: spec.peer,
            vlans: spec.vlans,
        }
    }

    pub fn spec(&self) -> ViSpec {
        ViSpec {
            gre_key: self.gre_key,
            peer: self.peer.clone(),
            vlans: self.vlans.clone(),
        }
    }

    fn raw_peer(&self) -> RawPeer {
        RawPeer {
            name: self.peer.name.clone(),
            wan_ip: self.peer.wan_ip,
            api: self.peer.api.clone(),
            token_file: None,
            token_hash: self.peer.token_hash.clone(),
            encryption: None,
        }
    }

    fn raw_vi(&self) -> RawVi {
        RawVi {
            id: self.id,
            gre_key: self.gre_key,
            peer: self.peer.name.clone(),
            vlans: self.vlans.clone(),
        }
    }
}

/// The JSON pointer into a `PUT /v1/vis/{id}` request of a problem the
/// file's checks report at `key` for a lone `vi[0]` and `peer[0]`.
fn pointer_of(key: &str) -> String {
    if key == "vi[0].id" {
        return "path:id".into();
    }
    let rest = key
        .strip_prefix("peer[0].")
        .map(|r| format!("peer/{r}"))
        .or_else(|| key.strip_prefix("vi[0].").map(str::to_owned))
        .unwrap_or_else(|| key.to_owned());
    format!("#/{}", rest.replace('[', "/").replace(']', ""))
}

/// Whether two `token_hash` texts are one hash (as parsed, so that two
/// spellings of one PHC string agree).
fn same_hash(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let parse = iris_controller::api_auth::parse_hash;
            a == b || matches!((parse(a), parse(b)), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

impl Config {
    fn peer_auth(&self) -> PeerAuth {
        PeerAuth {
            kind: self.kind,
            allow_unauthenticated: self.allow_unauthenticated_peers,
        }
    }

    /// Whether VI `id` is one of the file's `[[vi]]`.
    pub fn is_file_vi(&self, id: u32) -> bool {
        self.file_vis.iter().any(|v| v.id == id)
    }

    /// The file's `[[vi]]`s as written, with their peers, for `GET /v1/vis`.
    pub fn file_vi_specs(&self) -> Vec<RuntimeVi> {
        self.file_vis
            .iter()
            .filter_map(|v| {
                let p = self.peer(&v.peer)?;
                Some(RuntimeVi {
                    id: v.id,
                    gre_key: v.gre_key,
                    peer: PeerSpec {
                        name: p.name.clone(),
                        wan_ip: p.wan_ip,
                        api: p.api.clone(),
                        token_hash: p.token_hash.as_ref().map(|h| h.as_str().to_owned()),
                    },
                    vlans: v.vlans.clone(),
                })
            })
            .collect()
    }

    /// What is wrong with VI `id` as `spec` on its own, as
    /// `(JSON pointer, detail)`: the checks a lone `[[vi]]` and its
    /// `[[peer]]` get in the file.
    pub fn check_runtime_vi(&self, id: u32, spec: &ViSpec) -> Vec<(String, String)> {
        let vi = RuntimeVi::new(id, spec.clone());
        let peers = [vi.raw_peer()];
        let mut errors = Vec::new();
        validate_peers(
            &peers,
            (&self.name, self.wan_ip),
            self.peer_auth(),
            &mut errors,
        );
        validate_vis(&[vi.raw_vi()], &peers, self.kind, &mut errors);
        errors
            .into_iter()
            .map(|e| (pointer_of(&e.key), e.problem))
            .collect()
    }

    /// This configuration carrying `vis` as its runtime VIs (instead of
    /// those it has), each validated together with the file's `[[peer]]`
    /// and `[[vi]]` and the others, as if written in the file after them.
    /// A runtime peer is the file's (or another runtime VI's) when it has
    /// the same name, address and API; one with a name or address taken
    /// otherwise is refused as the file refuses a second `[[peer]]` with
    /// it. Problems name the VIs and peers involved.
    pub fn with_runtime_vis(&self, mut vis: Vec<RuntimeVi>) -> Result<Config, Vec<ConfigError>> {
        vis.sort_by_key(|v| v.id);
        let mut peers: Vec<RawPeer> = self.peers[..self.file_peers]
            .iter()
            .map(|p| RawPeer {
                name: p.name.clone(),
                wan_ip: p.wan_ip,
                api: p.api.clone(),
                token_file: None,
                token_hash: p.token_hash.as_ref().map(|h| h.as_str().to_owned()),
                encryption: None,
            })
            .collect();
        // Labels of the entries past the file's, for the problems.
        let mut labels = Vec::new();
        let mut errors = Vec::new();
        let mut raw_vis = self.file_vis.clone();
        for v in &vis {
            // The token hash is part of the peer: a VI that names a peer
            // with another hash would let another token report for it.
            let same = |p: &RawPeer| {
                p.name == v.peer.name
                    && p.wan_ip == v.peer.wan_ip
                    && p.api.trim_end_matches('/') == v.peer.api.trim_end_matches('/')
                    && same_hash(p.token_hash.as_deref(), v.peer.token_hash.as_deref())
            };
            if !peers.iter().any(same) {
                let key = format!("peer[{}]", peers.len());
                if peers.iter().any(|p| {
                    p.name == v.peer.name
                        && !same_hash(p.token_hash.as_deref(), v.peer.token_hash.as_deref())
                }) {
                    errors.push(ConfigError::new(
                        format!("{key}.token_hash"),
                        format!(
                            "{:?} has another token_hash here: every VI of one peer carries the \
                             same hash (hash its token once; a hash made again has another salt)",
                            v.peer.name
                        ),
                    ));
                }
                if self.encryption.is_some() {
                    errors.push(ConfigError::new(
                        format!("{key}.name"),
                        format!(
                            "this gateway's WAN is encrypted ([wan.encryption]) and {:?} has no \
                             WireGuard key here; add it as a [[peer]] with [peer.encryption] to \
                             the configuration first",
                            v.peer.name
                        ),
                    ));
                }
                labels.push((
                    key,
                    format!("the peer {:?} of VI {} (run time)", v.peer.name, v.id),
                ));
                peers.push(v.raw_peer());
            }
            labels.push((
                format!("vi[{}]", raw_vis.len()),
                format!("VI {} (run time)", v.id),
            ));
            raw_vis.push(v.raw_vi());
        }
        let out_peers = validate_peers(
            &peers,
            (&self.name, self.wan_ip),
            self.peer_auth(),
            &mut errors,
        );
        let out_vis = validate_vis(&raw_vis, &peers, self.kind, &mut errors);
        for (i, v) in self.file_vis.iter().enumerate() {
            labels.push((
                format!("vi[{i}]"),
                format!("vi[{i}] (VI {} in the configuration)", v.id),
            ));
        }
        for (i, p) in self.peers[..self.file_peers].iter().enumerate() {
            labels.push((
                format!("peer[{i}]"),
                format!("peer[{i}] ({:?} in the configuration)", p.name),
            ));
        }
        if !errors.is_empty() {
            let relabel = |text: &str| {
                // One pass, so that a label's own text is never relabelled.
                let mut out = String::new();
                let mut rest = text;
                'scan: while !rest.is_empty() {
                    for (token, label) in &labels {
                        if let Some(after) = rest.strip_prefix(token.as_str()) {
                            out.push_str(label);
                            rest = after;
                            continue 'scan;
                        }
                    }
                    let c = rest.chars().next().unwrap_or_default();
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
                out
            };
            return Err(errors
                .into_iter()
                .map(|e| ConfigError::new(relabel(&e.key), relabel(&e.problem)))
                .collect());
        }
        let mut config = self.clone();
        config.peers = out_peers;
        config.vis = out_vis;
        config.runtime = vis;
        Ok(config)
    }
}
