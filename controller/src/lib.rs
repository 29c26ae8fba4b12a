//! The Iris OpenFlow controller: switch sessions, the registry of where every
//! MAC lives, the flow compiler and reconciler, and OVSDB management of every
//! host's Open vSwitch.
//!
//! The registry, compiler and reconciler are sans-IO: plain data and functions
//! tested against a simulated flow table. Tokio tasks only move bytes and timers.

pub mod api;
pub mod compiler;
pub mod config;
pub mod control;
pub mod flowsim;
pub mod metrics;
pub mod model;
pub mod ovs_manager;
pub mod packet_in;
pub mod reconciler;
pub mod registry;
pub mod run;
pub mod server;
pub mod session;
pub mod switch_state;
pub mod topology;

#[cfg(test)]
mod fixtures;
