//! The Iris OpenFlow controller: switch sessions, registry, flow compiler and reconciler.
