//! The HaaS broker: providers, PMs, flavors, VIs and L1 nodes.

pub mod compute;
