//! Announcements (RARP or GARP) from ports the controller does not know
//! yet.
//!
//! A migrated guest announces itself the moment it resumes (QEMU sends
//! RARPs; a guest with virtio-net's announce feature sends GARPs), and its
//! new port may be on the bridge before OVSDB has told the controller which
//! VI it belongs to: the port has no classification flow yet. Table 0 sends
//! such a RARP or ARP up (`docs/pipeline.md`), and the control loop holds
//! the announcements here until the host's OVSDB report names the port,
//! then handles them as if they had just come in. The wait and the memory
//! are bounded: at most [`MAX_HELD`] announcements, each at most
//! [`HOLD_FOR`] (checked on the control loop's one-second tick).

use crate::model::HostName;
use crate::server::ConnId;
use ofp::message::PacketIn;
use ofp::packet::{ArpRepr, EtherType, EthernetFrame};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long an announcement waits for its port to be reported.
pub(super) const HOLD_FOR: Duration = Duration::from_secs(2);
/// How many announcements wait at most; the oldest gives way to a new one.
pub(super) const MAX_HELD: usize = 1024;

/// How a guest announced itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Announcement {
    Rarp,
    /// An ARP request or reply whose sender IP is its target IP.
    Garp,
}

impl Announcement {
    /// What `frame` announces, if it is an announcement.
    pub(super) fn of(frame: &[u8]) -> Option<Self> {
        match EthernetFrame::new_checked(frame).ok()?.ethertype() {
            EtherType::Rarp => Some(Self::Rarp),
            EtherType::Arp => ArpRepr::parse_frame(frame)
                .ok()
                .filter(ArpRepr::is_gratuitous)
                .map(|_| Self::Garp),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Rarp => "RARP",
            Self::Garp => "GARP",
        }
    }

    /// The PacketIn reason counted when one is given up.
    pub(super) fn given_up(self) -> &'static str {
        match self {
            Self::Rarp => "rarp_given_up",
            Self::Garp => "garp_given_up",
        }
    }
}

/// One announcement waiting for its port.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub what: Announcement,
    pub conn: ConnId,
    pub host: HostName,
    pub in_port: u32,
    pub packet_in: PacketIn,
    /// When its PacketIn arrived: a move's latency counts the wait.
    pub received: Instant,
}

/// The announcements waiting, oldest first.
#[derive(Debug, Default)]
pub(super) struct HeldRarps {
    held: VecDeque<Held>,
}

impl HeldRarps {
    /// Holds `announcement`; the one it pushed out when [`MAX_HELD`] were
    /// waiting.
    pub(super) fn hold(&mut self, announcement: Held) -> Option<Held> {
        let out = (self.held.len() >= MAX_HELD)
            .then(|| self.held.pop_front())
            .flatten();
        self.held.push_back(announcement);
        out
    }

    /// Takes the announcements from `host` whose port `known` now recognises, in
    /// the order they came.
    pub(super) fn release(&mut self, host: &HostName, known: impl Fn(u32) -> bool) -> Vec<Held> {
        let (ready, waiting) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| &h.host == host && known(h.in_port));
        self.held = waiting;
        ready.into()
    }

    /// Takes the announcements that have waited [`HOLD_FOR`] or longer at `now`.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Held> {
        let (old, young) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| now.saturating_duration_since(h.received) >= HOLD_FOR);
        self.held = young;
        old.into()
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ofp::message::{PacketInReason, NO_BUFFER};
    use ofp::oxm::Match;

    fn held(host: &str, in_port: u32, received: Instant) -> Held {
        Held {
            what: Announcement::Rarp,
            conn: ConnId(1),
            host: HostName(host.into()),
            in_port,
            packet_in: PacketIn {
                buffer_id: NO_BUFFER,
                total_len: 0,
                reason: PacketInReason::Action,
                table_id: 0,
                cookie: 0,
                match_: Match::new().in_port(in_port),
                data: Vec::new(),
            },
            received,
        }
    }

    #[test]
    fn a_rarp_is_released_only_for_its_own_host_and_port() {
        let now = Instant::now();
        let mut h = HeldRarps::default();
        h.hold(held("pm1", 5, now));
        h.hold(held("pm2", 5, now));
        h.hold(held("pm1", 6, now));
        assert!(h.release(&HostName("pm1".into()), |p| p == 7).is_empty());
        let out = h.release(&HostName("pm1".into()), |p| p == 5);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].host.0.as_str(), out[0].in_port), ("pm1", 5));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn rarps_and_garps_are_announcements_and_other_arp_is_not() {
        let mac = ofp::packet::MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        let ip = std::net::Ipv4Addr::new(10, 0, 0, 1);
        let frame = |arp: ArpRepr| {
            let mut data = Vec::new();
            arp.emit(&mut data);
            data
        };
        let of = |arp| Announcement::of(&frame(arp));
        assert_eq!(of(ArpRepr::rarp_announce(mac)), Some(Announcement::Rarp));
        let garp = ArpRepr::gratuitous(mac, ip);
        assert_eq!(of(garp.clone()), Some(Announcement::Garp));
        let unsolicited_reply = ArpRepr {
            op: ofp::packet::ArpOp::Reply,
            ..garp.clone()
        };
        assert_eq!(of(unsolicited_reply), Some(Announcement::Garp));
        let request = ArpRepr {
            tpa: std::net::Ipv4Addr::new(10, 0, 0, 2),
            ..garp
        };
        assert_eq!(of(request), None, "an ordinary request announces nothing");
        assert_eq!(Announcement::of(&[0; 10]), None, "too short to parse");
    }

    #[test]
    fn the_wait_and_the_memory_are_bounded() {
        let start = Instant::now();
        let mut h = HeldRarps::default();
        for port in 0..MAX_HELD as u32 {
            assert!(h.hold(held("pm1", port, start)).is_none());
        }
        let pushed = h.hold(held("pm1", 9999, start + HOLD_FOR)).unwrap();
        assert_eq!(pushed.in_port, 0, "the oldest gives way");
        assert_eq!(h.len(), MAX_HELD);
        let expired = h.expire(start + HOLD_FOR);
        assert_eq!(expired.len(), MAX_HELD - 1);
        assert_eq!(h.len(), 1, "the youngest has not waited long enough");
        assert_eq!(h.expire(start + HOLD_FOR * 2).len(), 1);
    }
}
