//! The Iris gateway: WAN tunnels between data centers, ARP/RARP snooping.
