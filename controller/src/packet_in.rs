//! What the controller does with a PACKET_IN, decided without I/O.
//!
//! The flow that sent a packet up says what the datapath already did with
//! it (its table id, see `docs/pipeline.md`):
//! - table 1 (interception) with the packet still going on: RARPs stop
//!   there, GARPs for known IPs are flooded by the datapath, unknown sources
//!   continue; the controller only learns, and floods the RARP itself;
//! - table 2 (ARP for a target the switch cannot answer): the packet stops,
//!   so the controller answers from the registry if it can (the flows may
//!   not have landed yet) or sends the request toward the VI's gateway, or
//!   floods it in a VI without one; a GARP for an IP the switch does not
//!   know is flooded;
//! - anything else (a table miss on a switch that sends them): treated as
//!   "the datapath did nothing".
//!
//! Only VM ports teach: a packet from a tunnel or an unknown port changes
//! nothing.

use crate::compiler::{flood_group, unknown_destination, TABLE_INTERCEPT};
use crate::model::{HostName, IpKey, Topology, Vi, Vlan, VmPort};
use crate::registry::{Registry, RegistryChange, Timestamp};
use ofp::action::{port, Action};
use ofp::message::{PacketIn, PacketInReason, PacketOut, NO_BUFFER};
use ofp::oxm::{OxmField, OxmIter};
use ofp::packet::{ArpOp, ArpRepr, EtherType, EthernetFrame};
use ofp::DecodeError;

/// The parts of a PACKET_IN the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInMeta {
    pub reason: PacketInReason,
    pub table_id: u8,
    pub cookie: u64,
    /// From the match's `in_port`.
    pub in_port: u32,
    /// From the match's tunnel id, for a packet that came by tunnel.
    pub tun_id: Option<u64>,
}

impl PacketInMeta {
    /// Reads the fields from a decoded PACKET_IN; `None` without an
    /// `in_port` (a switch always sends one).
    pub fn from_packet_in(pi: &PacketIn) -> Option<Self> {
        let l = pi.match_.lookup();
        Some(Self {
            reason: pi.reason,
            table_id: pi.table_id,
            cookie: pi.cookie,
            in_port: l.in_port()?,
            tun_id: l.tun_id().map(|(v, _)| v),
        })
    }

    /// Reads the fields from the zero-copy view; `None` without an
    /// `in_port` or with a malformed match.
    pub fn from_view(v: &ofp::message::PacketInView<'_>) -> Option<Self> {
        let mut tun_id = None;
        for tlv in OxmIter::new(v.match_bytes()) {
            match OxmField::from_tlv(&tlv.ok()?).ok()? {
                OxmField::TunnelId(t, _) | OxmField::NxTunId(t, _) => tun_id = Some(t),
                _ => {}
            }
        }
        Some(Self {
            reason: v.reason(),
            table_id: v.table_id(),
            cookie: v.cookie(),
            in_port: v.in_port()?,
            tun_id,
        })
    }
}

/// What a PACKET_IN was, for logs and the PacketIns-by-reason metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketInKind {
    /// A RARP announcement: learned, then flooded in the VI.
    Rarp,
    /// A gratuitous ARP: learned (and flooded if the datapath did not).
    Garp,
    /// A frame from a source the switch did not know: learned.
    UnknownSource,
    /// An ARP request the controller answered from the registry.
    ArpAnswered,
    /// An ARP request for an unknown target, flooded inside the data
    /// center (on a gateway, or in a VI without one).
    ArpUnknownTarget,
    /// An ARP request for an unknown target, sent toward the VI's gateway:
    /// one that crosses the WAN. After warm-up the registry knows the
    /// operator's addresses and this stays still.
    ArpToGateway,
    /// Not from a VM port (a tunnel, or a port not yet known): ignored.
    NotFromVmPort,
    /// From a VM port, but nothing to learn (a priority-tagged frame, an
    /// ARP reply already forwarded, ...): ignored.
    Ignored,
    /// A frame that does not parse: counted and ignored.
    Invalid(DecodeError),
}

impl PacketInKind {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PacketInKind::Rarp => "rarp",
            PacketInKind::Garp => "garp",
            PacketInKind::UnknownSource => "unknown_source",
            PacketInKind::ArpAnswered => "arp_answered",
            PacketInKind::ArpUnknownTarget => "arp_unknown_target",
            PacketInKind::ArpToGateway => "arp_to_gateway",
            PacketInKind::NotFromVmPort => "not_from_vm_port",
            PacketInKind::Ignored => "ignored",
            PacketInKind::Invalid(_) => "invalid",
        }
    }
}

/// The decision: registry changes to act on, and packets to send to the
/// same switch the PACKET_IN came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub kind: PacketInKind,
    pub changes: Vec<RegistryChange>,
    /// To be sent after the flows that `changes` call for are confirmed
    /// (by barrier), so a flooded RARP meets switches that already know
    /// where its MAC went.
    pub packet_outs: Vec<PacketOut>,
}

impl Decision {
    fn only(kind: PacketInKind) -> Self {
        Self {
            kind,
            changes: Vec::new(),
            packet_outs: Vec::new(),
        }
    }
}

/// Decides what to do with a PACKET_IN from `host`'s switch.
pub fn handle_packet_in(
    now: Timestamp,
    registry: &mut Registry,
    topology: &Topology,
    host: &HostName,
    meta: &PacketInMeta,
    frame: &[u8],
) -> Decision {
    let eth = match EthernetFrame::new_checked(frame) {
        Ok(e) => e,
        Err(e) => return Decision::only(PacketInKind::Invalid(e)),
    };
    let Some(port) = topology.vm_port(host, meta.in_port) else {
        return Decision::only(PacketInKind::NotFromVmPort);
    };
    let Some(vi) = topology.vis.get(&port.vi) else {
        return Decision::only(PacketInKind::NotFromVmPort);
    };
    let Some(vlan) = Vlan::from_vid(eth.vlan()) else {
        return Decision::only(PacketInKind::Ignored);
    };
    let ethertype = eth.ethertype();
    if ethertype != EtherType::Arp && ethertype != EtherType::Rarp {
        return Decision {
            kind: PacketInKind::UnknownSource,
            changes: registry.learn_source(now, topology.sighting(port), vlan, eth.src()),
            packet_outs: Vec::new(),
        };
    }
    let arp = match ArpRepr::parse_frame(frame) {
        Ok(a) => a,
        Err(e) => return Decision::only(PacketInKind::Invalid(e)),
    };
    let changes = registry.learn_arp(now, topology.sighting(port), &arp);
    // Flows in the interception table send a copy up and (but for RARP)
    // let the packet go on; anywhere else the packet stopped at the switch.
    let datapath_went_on =
        meta.reason == PacketInReason::Action && meta.table_id == TABLE_INTERCEPT;
    let flood = || vec![flood_out(vi, port, frame)];
    let (kind, packet_outs) = if ethertype == EtherType::Rarp {
        (PacketInKind::Rarp, flood())
    } else if arp.is_gratuitous() {
        let outs = if datapath_went_on {
            Vec::new()
        } else {
            flood()
        };
        (PacketInKind::Garp, outs)
    } else if arp.op != ArpOp::Request {
        let kind = if changes.is_empty() {
            PacketInKind::Ignored
        } else {
            PacketInKind::UnknownSource
        };
        (kind, Vec::new())
    } else if datapath_went_on {
        (PacketInKind::UnknownSource, Vec::new())
    } else {
        let target = IpKey {
            vi: vi.id,
            vlan,
            ip: arp.tpa,
        };
        // From a gateway's port the request comes from the operator's data
        // center, perhaps for a neighbour there: never answered (see the
        // compiler's gateway ARP flow).
        let from_operator = topology.sighting(port).behind_gateway;
        match registry.ip(&target) {
            // A probe (sender 0.0.0.0) is for the owner to answer, and a
            // host asking for its own address gets no answer from us.
            Some(e) if !from_operator && !arp.spa.is_unspecified() && e.mac != arp.sha => (
                PacketInKind::ArpAnswered,
                vec![reply_out(port, &arp, e.mac)],
            ),
            _ => {
                let actions = unknown_destination(topology, host, vi);
                let kind = if matches!(actions.as_slice(), [Action::Group(_)]) {
                    PacketInKind::ArpUnknownTarget
                } else {
                    PacketInKind::ArpToGateway
                };
                let out = PacketOut {
                    buffer_id: NO_BUFFER,
                    in_port: port.ofport,
                    actions,
                    data: frame.to_vec(),
                };
                (kind, vec![out])
            }
        }
    };
    Decision {
        kind,
        changes,
        packet_outs,
    }
}

/// The frame flooded in the VI as if it had just come in on `port` (so the
/// sender does not get it back, and other hosts deliver it locally).
fn flood_out(vi: &Vi, port: &VmPort, frame: &[u8]) -> PacketOut {
    PacketOut {
        buffer_id: NO_BUFFER,
        in_port: port.ofport,
        actions: vec![Action::Group(flood_group(vi.id, false))],
        data: frame.to_vec(),
    }
}

/// The ARP reply from `mac`, sent to the requester's port.
fn reply_out(port: &VmPort, request: &ArpRepr, mac: ofp::packet::MacAddr) -> PacketOut {
    let mut data = Vec::with_capacity(request.frame_len());
    request.reply_from(mac).emit(&mut data);
    PacketOut {
        buffer_id: NO_BUFFER,
        in_port: port::CONTROLLER,
        actions: reply_actions(port.ofport).to_vec(),
        data,
    }
}

/// How an ARP reply from the controller leaves: out of the requester's
/// port (`ofport`), and nowhere else.
pub(crate) fn reply_actions(ofport: u32) -> [Action; 1] {
    [Action::output(ofport)]
}

#[cfg(test)]
mod tests;
