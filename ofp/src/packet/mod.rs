//! Ethernet / 802.1Q / ARP / RARP frames.
