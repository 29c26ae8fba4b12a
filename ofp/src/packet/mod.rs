//! Ethernet, 802.1Q and ARP/RARP frames: what PacketIn carries up and
//! PacketOut sends down. Zero-copy views for reading, reprs that emit into a
//! reusable buffer for writing.

mod arp;
mod ethernet;

pub use arp::{ArpOp, ArpPacket, ArpRepr, ARP_LEN};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr, VlanTag};
