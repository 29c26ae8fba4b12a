//! What a frame from the DC-side trunk says about a MAC.
//!
//! The iaas gateway's bridge sends every ARP and RARP frame from the trunk
//! to the gateway as a packet-in, VLAN tag intact (a socket on the trunk
//! would not see the tag: Linux moves it into packet metadata). This module
//! reads one such frame into an [`Observation`]: the VLAN, the MAC
//! announced, the IP an ARP binds to it, and whether it was an ordinary
//! ARP, a gratuitous ARP or a RARP announcement. Anything else is a typed
//! [`SnoopError`] the caller counts by [`SnoopError::reason`]; parsing never
//! panics, whatever the bytes.

use iris_controller::model::Vlan;
use ofp::error::DecodeError;
use ofp::packet::{ArpOp, ArpRepr, EtherType, EthernetFrame, MacAddr};
use std::net::Ipv4Addr;

/// How the MAC made itself known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Announcement {
    /// An ordinary request or reply: the sender is here.
    Arp,
    /// A gratuitous ARP (sender IP = target IP): the sender says it is here
    /// now, as after a failover or a migration.
    Garp,
    /// A RARP request, as QEMU broadcasts after a live migration.
    Rarp,
}

impl Announcement {
    /// A GARP or a RARP: sent to say "I moved", so a move is believed.
    pub fn is_announcement(self) -> bool {
        matches!(self, Announcement::Garp | Announcement::Rarp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Announcement::Arp => "arp",
            Announcement::Garp => "garp",
            Announcement::Rarp => "rarp",
        }
    }
}

/// What one frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub vlan: Vlan,
    pub mac: MacAddr,
    /// The IP an ARP binds to the MAC; none for a RARP or an ARP probe.
    pub ip: Option<Ipv4Addr>,
    pub kind: Announcement,
}

/// Why a frame says nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnoopError {
    #[error("truncated at the {at}: {available} bytes of {needed}")]
    Truncated {
        at: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("two or more VLAN tags: the trunk carries single-tagged frames only")]
    DoubleTagged,
    #[error("an 802.1ad service tag: the trunk carries 802.1Q tags only")]
    ServiceTag,
    #[error("VLAN id {0} is reserved (0 is a priority tag, 4095 is invalid)")]
    ReservedVid(u16),
    #[error("ethertype {0:#06x} is neither ARP nor RARP")]
    NotArp(u16),
    #[error("{0} is not an announcement Iris learns from")]
    UnsupportedOp(ArpOp),
    #[error("sender {0} is not a unicast MAC")]
    NotUnicast(MacAddr),
}

impl SnoopError {
    /// The label the malformed-frame counter uses.
    pub fn reason(&self) -> &'static str {
        match self {
            SnoopError::Truncated { .. } => "truncated",
            SnoopError::Malformed(_) => "malformed",
            SnoopError::DoubleTagged | SnoopError::ServiceTag => "double_tagged",
            SnoopError::ReservedVid(_) => "reserved_vlan",
            SnoopError::NotArp(_) => "not_arp",
            SnoopError::UnsupportedOp(_) => "unsupported_op",
            SnoopError::NotUnicast(_) => "not_unicast",
        }
    }

    /// Every label [`SnoopError::reason`] gives, for exporting zeros.
    pub const REASONS: [&'static str; 7] = [
        "truncated",
        "malformed",
        "double_tagged",
        "reserved_vlan",
        "not_arp",
        "unsupported_op",
        "not_unicast",
    ];
}

impl From<DecodeError> for SnoopError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated {
                at,
                needed,
                available,
            } => SnoopError::Truncated {
                at,
                needed,
                available,
            },
            other => SnoopError::Malformed(other.to_string()),
        }
    }
}

const TPID_8021Q: u16 = 0x8100;

/// Reads one trunk frame.
pub fn observe(frame: &[u8]) -> Result<Observation, SnoopError> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut tags = eth.tags();
    let vlan = match (tags.next(), tags.next()) {
        (None, _) => Vlan::Untagged,
        (Some(t), None) if t.tpid == TPID_8021Q => {
            Vlan::from_vid(Some(t.vid())).ok_or(SnoopError::ReservedVid(t.vid()))?
        }
        (Some(_), None) => return Err(SnoopError::ServiceTag),
        (Some(_), Some(_)) => return Err(SnoopError::DoubleTagged),
    };
    let ethertype = eth.ethertype();
    if matches!(ethertype, EtherType::Vlan | EtherType::QinQ) {
        // A tag after the ones the view reads: a third one at least.
        return Err(SnoopError::DoubleTagged);
    }
    if ethertype != EtherType::Arp && ethertype != EtherType::Rarp {
        return Err(SnoopError::NotArp(ethertype.into()));
    }
    let arp = ArpRepr::parse_frame(frame)?;
    let kind = match (arp.ethertype, arp.op) {
        (EtherType::Rarp, ArpOp::RarpRequest) => Announcement::Rarp,
        (EtherType::Arp, ArpOp::Request | ArpOp::Reply) if arp.is_gratuitous() => {
            Announcement::Garp
        }
        (EtherType::Arp, ArpOp::Request | ArpOp::Reply) => Announcement::Arp,
        (_, op) => return Err(SnoopError::UnsupportedOp(op)),
    };
    if arp.sha.is_multicast() || arp.sha == MacAddr::ZERO {
        return Err(SnoopError::NotUnicast(arp.sha));
    }
    // An ARP probe (sender IP 0.0.0.0) binds nothing; nor does an address
    // no host can have.
    let ip = Some(arp.spa).filter(|ip| {
        kind != Announcement::Rarp && iris_controller::model::host_address_problem(*ip).is_none()
    });
    Ok(Observation {
        vlan,
        mac: arp.sha,
        ip,
        kind,
    })
}

#[cfg(test)]
mod tests;
