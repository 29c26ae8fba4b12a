//! The Iris gateway: WAN tunnels between data centers, ARP/RARP snooping.

// Datapath: the gateway's bridge through OVSDB, its flow table, and the
// OpenFlow session that installs it and carries snooped frames up.
pub mod bridge;
pub mod openflow;
pub mod pipeline;
