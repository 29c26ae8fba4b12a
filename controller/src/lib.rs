//! The Iris OpenFlow controller: switch sessions, the registry of where every
//! MAC lives, the flow compiler and reconciler, and OVSDB management of every
//! host's Open vSwitch.
//!
//! The core is sans-IO: plain data and functions, with time passed in.
//! - [`model`] and [`topology`]: hosts, VIs, VM ports, tunnels.
//! - [`registry`]: (VI, VLAN, MAC) → location and (VI, VLAN, IP) → MAC, with
//!   the rules for who may move what; [`store`] persists it.
//! - [`compiler`]: registry + topology → one switch's flows and groups
//!   ([`switch_state`]), as `docs/pipeline.md` specifies.
//! - [`reconciler`]: the fewest messages from what a switch holds to what the
//!   compiler wants.
//! - [`packet_in`]: what to learn and send for a PACKET_IN; [`answers`]:
//!   the ARP requests the connections answer themselves, from a snapshot the
//!   control loop publishes.
//! - [`flowsim`]: a simulated OpenFlow 1.3 switch and tunnel fabric that the
//!   compiler's behaviour is tested against.
//!
//!
//! The runtime around it:
//! - [`session`]: one switch connection as a sans-IO state machine;
//!   [`server`]: the tokio listener, one task per switch, over TLS with
//!   the certificates of [`tls`].
//! - [`control`]: the actor that owns registry and topology and keeps every
//!   switch programmed; [`ovs_manager`]: every host's bridge and GRE mesh
//!   through OVSDB; [`api`]: the northbound REST API, served within limits by
//!   [`api_server`], behind the bearer tokens of [`api_auth`]; [`metrics`];
//!   [`http_client`] for the clients of Iris's APIs, HTTPS included.
//! - [`config`]: the TOML configuration; [`run`]: starting and stopping it all.
//!
//! Tokio tasks only move bytes and timers.

pub mod answers;
pub mod api;
pub mod api_auth;
pub mod api_server;
pub mod compiler;
pub mod config;
pub mod control;
pub mod election;
pub mod flowsim;
pub mod forward;
pub mod http_client;
pub mod metrics;
pub mod model;
pub mod ovs_manager;
pub mod packet_in;
pub mod reconciler;
pub mod registry;
pub mod replica;
pub mod run;
pub mod server;
pub mod session;
pub mod store;
pub mod switch_state;
pub mod tls;
pub mod topology;

#[cfg(test)]
mod fixtures;
