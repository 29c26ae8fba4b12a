//! The HaaS broker: providers, PMs, flavors, VIs and L1 nodes.
//!
//! - [`records`], [`placement`]: the sans-IO core — what the broker knows,
//!   where nodes go, pools and pages; [`store`] keeps the records (sled).
//! - [`service`]: operations that make and unmake nodes through the
//!   [`compute`] drivers and the controller ([`northbound`]), and recovery
//!   after a crash; the HaaS gateways' VIs kept the broker's ([`gateways`]).
//! - [`api`] (behind [`auth`]), [`config`], [`run`].

pub mod active;
pub mod api;
pub mod auth;
pub mod compute;
pub mod config;
pub mod gateways;
pub mod northbound;
pub mod placement;
pub mod records;
pub mod run;
pub mod service;
pub mod store;
