//! The broker's (`iris-api`) resources as its API reads and writes them.
//!
//! Bodies a client sends refuse unknown fields; records the broker returns
//! carry every field, so a client can rely on their presence. The OpenAPI
//! document `schemas/openapi/broker.json` is generated from these types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem document, as every refusal carries it
/// (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemDoc {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What is wrong and what to do about it.
    pub detail: String,
    /// Where: a JSON pointer into the body (`#/count`), or `path:NAME`,
    /// `query:NAME`, `header:NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblemDoc>,
}

/// One place in a request that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldProblemDoc {
    pub pointer: String,
    pub detail: String,
}

/// One page of a list: at most `limit` items after `marker`, in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The marker of the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// An IaaS operator that rents capacity (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderCreate {
    /// 1-63 characters: letters, digits, `-`, `_`, `.`.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub created_ms: u64,
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "provider")]
pub enum Scope {
    /// Everything: providers, PMs, tokens.
    Admin,
    /// One provider's flavors, VIs, nodes and operations, and nothing else.
    Provider(String),
}

/// A token as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub scope: Scope,
    pub created_ms: u64,
}

/// A token just made: the secret is shown here once and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// vCPUs, memory and disk: a PM's capacity, its use, a flavor's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// A physical machine to register (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PmCreate {
    /// The host name the controller knows the PM by.
    pub name: String,
    pub capacity: Capacity,
    pub underlay_ip: String,
    /// OVSDB remote of the PM's Open vSwitch: `unix:PATH` or `tcp:IP:PORT`.
    pub ovsdb: String,
    /// The integration bridge nodes are plugged into.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// The compute driver that makes nodes on it: `netns` or `libvirt`.
    #[serde(default = "default_driver")]
    pub driver: String,
    /// Where the driver reaches the PM's hypervisor: for `netns`, the
    /// PM's network namespace; for `libvirt`, the connection URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

fn default_bridge() -> String {
    "br-int".into()
}

fn default_driver() -> String {
    "netns".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pm {
    #[serde(flatten)]
    pub spec: PmCreate,
    /// What the nodes on it take (building ones included).
    pub used: Capacity,
    pub nodes: u32,
    /// No node is placed on a draining PM.
    pub draining: bool,
}

/// A node size an operator defines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavorCreate {
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Flavor {
    #[serde(flatten)]
    pub spec: FlavorCreate,
    pub provider: String,
}

/// The VLANs of the operator's network a VI carries, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VlanRange {
    pub first: u16,
    pub last: u16,
}

/// How nodes get their address on the VI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "mode", deny_unknown_fields)]
pub enum Addressing {
    /// The broker hands out addresses of `cidr` (network and broadcast
    /// addresses excepted), lowest free first, and seeds them in the
    /// controller's registry so ARP is answered at once.
    StaticPool {
        cidr: String,
        /// Addresses of the pool the broker never hands out (the
        /// operator's router, its own hosts).
        #[serde(default)]
        reserved: Vec<String>,
    },
    /// The operator's own DHCP server answers; the registry learns the
    /// address from ARP.
    Dhcp,
}

/// A virtual infrastructure to create: the operator's L2 network as
/// stretched into the HaaS data center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViCreate {
    pub name: String,
    /// The operator's gateway endpoint (its WAN address, `IP` or `IP:PORT`,
    /// the port its API's, 9180 when not given).
    pub gateway: String,
    /// The operator gateway's name (its `[gateway] name`), which the HaaS
    /// gateway accepts its reports by; default: the VI's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_name: Option<String>,
    /// The argon2 hash (`iris-gateway hash-token`) of the token the
    /// operator's gateway presents with its MAC reports: the HaaS gateways
    /// take its reports only with that token, and refuse the VI without a
    /// hash unless they allow unauthenticated peers (tests). The token
    /// itself never reaches the broker. Every VI of one operator gateway
    /// carries the same hash (a hash made again has another salt, and the
    /// HaaS gateway would take it for another peer of the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_token_hash: Option<String>,
    pub vlans: VlanRange,
    pub addressing: Addressing,
    /// Installed for each node's SSH user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vi {
    pub id: String,
    pub provider: String,
    #[serde(flatten)]
    pub spec: ViCreate,
    /// The controller's VI id and GRE key, allocated by the broker.
    pub tunnel_key: u32,
    pub nodes: u32,
    /// The HaaS gateways that carry the VI: what the operator's gateway is
    /// configured with (its `[[peer]]` and `[[vi]]`).
    #[serde(default)]
    pub haas_gateways: Vec<ViGateway>,
}

/// A HaaS gateway as an operator's gateway sees it for one VI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViGateway {
    /// The HaaS gateway's name (the operator's `[[peer]] name`).
    pub name: String,
    /// Its WAN address: where the operator's gateway points its tunnel.
    pub wan_ip: String,
    /// The GRE key of the VI on the WAN (its tunnel key).
    pub gre_key: u32,
    /// The name the HaaS gateway knows the operator's gateway by: the
    /// operator gateway's `[gateway] name` must be this.
    pub peer_name: String,
}

/// Where nodes may go.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementHint {
    /// Only this PM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pm: Option<String>,
    /// A group the nodes join (per provider); its policy applies to every
    /// node of the group, earlier ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<GroupPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPolicy {
    /// Every node of the group on one PM.
    Affinity,
    /// No two nodes of the group on one PM.
    AntiAffinity,
}

/// N nodes of one flavor on one VI, in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    /// The VI's id.
    pub vi: String,
    pub flavor: String,
    pub count: u32,
    #[serde(default)]
    pub placement: PlacementHint,
}

/// building → active → migrating → active → deleting; active → draining
/// → deleting (or back to active when the drain times out); error with
/// `last_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Building,
    Active,
    /// Moving to another PM; back to `active` on the new PM, or on the old
    /// one with `last_error` when the move failed.
    Migrating,
    /// Asked to be deleted once the operator's cloud has moved its guests
    /// away (`DELETE /v1/nodes/{id}?drain=true`): no guest MAC may remain
    /// on its port before it goes to `deleting`; back to `active` with
    /// `last_error` when the drain times out.
    Draining,
    Deleting,
    Error,
}

/// Where a node migrates to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeMigrate {
    /// The target PM; without it, placement picks one (best fit, the
    /// node's group policy, capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pm: Option<String>,
}

/// An L1 node: what the operator's cloud needs to adopt it as a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub provider: String,
    pub vi: String,
    pub flavor: String,
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub pm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub mac: String,
    /// Address and prefix on the VI (`10.1.1.5/24`); absent with DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Where the operator's cloud reaches the node to manage it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_address: Option<String>,
    /// The user holding the operator's SSH key.
    pub ssh_user: String,
    pub nested_virtualization: bool,
    /// The Linux bridge in the node the operator's guests plug into
    /// (CloudStack's `cloudbr0`).
    pub bridge: String,
    /// The VLANs that bridge carries.
    pub vlan_trunk: VlanRange,
    pub mtu: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    CreateNodes,
    DeleteNodes,
    MigrateNode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Running,
    Succeeded,
    Failed,
}

/// What became of the object of a change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Made, or changed: the object as it is now.
    Updated,
    /// Gone: the object as it was last.
    Removed,
}

/// One event of the broker's change stream (`GET /v1/events`), named for
/// its `type`. A reader that falls behind gets a `lagged` event instead
/// (the controller's `Lagged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrokerEvent {
    Node {
        change: Change,
        node: Node,
    },
    Vi {
        change: Change,
        vi: Vi,
    },
    /// An operation was started, advanced or ended.
    Operation {
        operation: Operation,
    },
}

impl BrokerEvent {
    /// The SSE event name: the `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Node { .. } => "node",
            Self::Vi { .. } => "vi",
            Self::Operation { .. } => "operation",
        }
    }

    /// The provider whose tokens may see it.
    pub fn provider(&self) -> &str {
        match self {
            Self::Node { node, .. } => &node.provider,
            Self::Vi { vi, .. } => &vi.provider,
            Self::Operation { operation } => &operation.provider,
        }
    }
}

/// Long work, polled at its `Location`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    pub id: String,
    pub provider: String,
    pub kind: OperationKind,
    pub status: OperationStatus,
    /// Nodes done (active, or gone when deleting) out of `total`.
    pub done: u32,
    pub total: u32,
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A draining delete's wait for the node's guests to leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// How far a draining delete is: the guest MACs the controller's registry
/// still places on the node's port, at the last look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Drain {
    /// How long the delete waits for the guests to leave (`drain_timeout_secs`).
    pub timeout_secs: u32,
    /// When it stops waiting, in milliseconds since the epoch: the node is
    /// then active again and the operation failed, naming the MACs left.
    pub deadline_ms: u64,
    /// How many guest MACs remain on the node's port.
    pub guest_macs_remaining: u32,
    /// Which ones (the node's own MAC is never counted).
    pub guest_macs: Vec<String>,
}
