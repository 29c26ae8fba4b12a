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
//! - [`packet_in`]: what to learn and send for a PACKET_IN.
//! - [`flowsim`]: a simulated OpenFlow 1.3 switch and tunnel fabric that the
//!   compiler's behaviour is tested against.
//!
//! Tokio tasks only move bytes and timers.

pub mod compiler;
pub mod flowsim;
pub mod model;
pub mod packet_in;
pub mod reconciler;
pub mod registry;
pub mod store;
pub mod switch_state;
pub mod topology;

#[cfg(test)]
mod fixtures;
