//! The Iris gateway: WAN tunnels between data centers, ARP/RARP snooping
//! and MAC mobility between them.
//!
//! The control plane is sans-IO where it decides, tokio where it moves bytes:
//! - [`config`]: the TOML configuration, validated whole.
//! - [`snoop`]: what a trunk frame (a packet-in's payload) says about a MAC.
//! - [`mobility`]: the EVPN-style table of where each MAC is, with move
//!   sequence numbers and flap detection; decisions out as values.
//! - [`report`]: the outbox of MAC reports (coalesced, bounded, retried
//!   with backoff) and the HTTP clients for the peer and the registry.
//! - [`follower`]: the haas side's view of the controller's registry.
//! - [`control`]: those decisions over one gateway's state, without I/O.
//! - [`api`]: status, metrics and the peer report endpoint; [`metrics`].
//! - [`runtime_vis`]: VIs added and removed at run time, and the state
//!   file that keeps them.
//! - [`run`]: starting it all, the datapath included.
//!
//! The datapath:
//! - [`bridge`]: the gateway's bridge kept right through OVSDB.
//! - [`pipeline`]: the iaas bridge's flow table, a function of the plan.
//! - [`openflow`]: the session that installs it and carries snooped
//!   frames up.
//! - [`wireguard`]: the encrypted WAN, the GRE inside WireGuard.

pub mod api;
pub mod bridge;
pub mod config;
pub mod control;
pub mod follower;
pub mod metrics;
pub mod mobility;
pub mod openflow;
pub mod pipeline;
pub mod reload;
pub mod report;
pub mod run;
pub mod runtime_vis;
pub mod snoop;
pub mod wireguard;
