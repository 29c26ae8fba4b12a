//! Frames sent to a guest between its port leaving one bridge and its
//! arrival on another.
//!
//! When a migrated or re-plugged guest's port leaves its bridge, the other
//! switches still send its frames to that host until the guest announces
//! itself elsewhere and the move reaches them; and a switch that has not
//! taken the move yet keeps sending them there for a moment after. Dropped
//! there, each such frame is a lost packet (a ping after the first RARP in
//! the moves benchmark; one in 8 of 20 runs lost one).
//!
//! So a VM port that leaves is remembered as *departed*, with the MACs the
//! registry placed on it (`Topology::departed`), until [`HOLD_FOR`] after
//! the later of its leaving and the first move of one of those MACs
//! (checked on the loop's one-second tick). Its host stays a member of the
//! VI, and its table 3 sends frames for those MACs to the controller: all
//! of them while the registry still places the MAC on the departed port,
//! those from tunnels once it has moved (`docs/pipeline.md`). The control
//! loop forwards each such frame straight to the MAC's port (or, behind a
//! gateway, into the operator's data center) as soon as the registry
//! places it on a port that is on its bridge, and holds it until then: at
//! most [`MAX_PER_MAC`] frames per MAC and [`MAX_HELD`] in all, each for at
//! most [`HOLD_FOR`] (again on the tick). What becomes of them is counted
//! in `iris_parked_frames_total` by outcome.
//!
//! The bounds are for the gap of a move, not for a guest that stays away:
//! 100 guests re-plugged at once in the moves benchmark stay unplugged
//! about 2 s each, and with 2 s of holding and 64 frames per MAC the
//! 2,400 frames sent up and the 1,000 sent on at the moment of the
//! announcements delayed the moves (first RARP to last move 131–144 ms
//! against 48–78 ms without, in the same run).

use super::Control;
use crate::compiler::flood_group;
use crate::model::{DepartedPort, HostName, Location, MacKey, Topology, ViId, Vlan};
use crate::packet_in::PacketInMeta;
use crate::server::ConnId;
use ofp::action::{port, Action};
use ofp::message::{PacketOut, NO_BUFFER};
use ofp::packet::EthernetFrame;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How long a departed port keeps its MACs' frames coming to the
/// controller after it left or one of its MACs first moved, and how long
/// one such frame waits for its guest.
pub(super) const HOLD_FOR: Duration = Duration::from_secs(1);
/// Frames held for one MAC at most; the oldest gives way.
pub(super) const MAX_PER_MAC: usize = 16;
/// Frames held in all at most; the oldest of the MAC being added to gives
/// way, or the new frame when that MAC holds none.
pub(super) const MAX_HELD: usize = 256;

/// Until when a departed port stays so.
#[derive(Debug, Clone, Copy)]
pub(super) struct Departure {
    until: Instant,
    /// Whether one of its MACs was seen elsewhere since it left.
    moved: bool,
}

/// The frames waiting for their MAC to reappear, by MAC.
#[derive(Debug, Default)]
pub(super) struct Parked {
    frames: BTreeMap<MacKey, VecDeque<(Instant, Vec<u8>)>>,
    held: usize,
}

/// Why a held frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dropped {
    /// Too many were held (for its MAC, or in all).
    Full,
    /// Its MAC did not reappear in time.
    Expired,
}

impl Dropped {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Expired => "expired",
        }
    }
}

impl Parked {
    /// Holds `frame` for `key`; how many frames were dropped to make room
    /// (0 or 1).
    pub(super) fn hold(&mut self, key: MacKey, frame: Vec<u8>, now: Instant) -> usize {
        let queue = self.frames.entry(key).or_default();
        let dropped = if queue.len() >= MAX_PER_MAC || self.held >= MAX_HELD {
            if queue.pop_front().is_none() {
                // Full with other MACs' frames: this one is the newest and
                // goes instead of an older one of someone else.
                self.frames.remove(&key);
                return 1;
            }
            self.held -= 1;
            1
        } else {
            0
        };
        queue.push_back((now, frame));
        self.held += 1;
        dropped
    }

    /// Takes every frame held for `key`, oldest first.
    pub(super) fn take(&mut self, key: &MacKey) -> Vec<Vec<u8>> {
        let frames: Vec<Vec<u8>> = self
            .frames
            .remove(key)
            .map(|q| q.into_iter().map(|(_, f)| f).collect())
            .unwrap_or_default();
        self.held -= frames.len();
        frames
    }

    /// The MACs frames are held for.
    pub(super) fn keys(&self) -> Vec<MacKey> {
        self.frames.keys().copied().collect()
    }

    /// Drops the frames that have waited [`HOLD_FOR`] or longer at `now`;
    /// how many.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let before = self.held;
        self.frames.retain(|_, q| {
            q.retain(|(at, _)| now.saturating_duration_since(*at) < HOLD_FOR);
            !q.is_empty()
        });
        self.held = self.frames.values().map(VecDeque::len).sum();
        before - self.held
    }

    pub(super) fn len(&self) -> usize {
        self.held
    }
}

/// Where a frame for `key` goes now, straight from the controller: out of
/// the port the registry places it on (when that port is on its bridge, in
/// the MAC's VI), or into the operator's data center from the gateway it
/// is behind. `None` while it is nowhere a frame can be sent.
pub(super) fn destination(
    topology: &Topology,
    location: Option<&Location>,
    key: &MacKey,
) -> Option<(HostName, Action)> {
    match location? {
        Location::Port { host, ofport } => {
            let port = topology.vm_port(host, *ofport)?;
            (port.vi == key.vi).then(|| (host.clone(), Action::output(*ofport)))
        }
        Location::BehindGateway { gateway } => {
            Some((gateway.clone(), Action::Group(flood_group(key.vi, true))))
        }
    }
}

impl Control {
    /// A VM port left `host`'s bridge (`gone`, with the VI each was in):
    /// remember each for [`HOLD_FOR`] with the MACs placed on it.
    pub(super) fn ports_departed(&mut self, host: &HostName, gone: &[(u32, ViId)]) {
        let until = Instant::now() + HOLD_FOR;
        for &(ofport, vi) in gone {
            let macs: BTreeSet<MacKey> = self
                .registry
                .macs_in(vi)
                .filter(|(_, e)| {
                    matches!(&e.location, Some(Location::Port { host: h, ofport: p })
                        if h == host && *p == ofport)
                })
                .map(|(k, _)| *k)
                .collect();
            if macs.is_empty() {
                continue;
            }
            debug!(%host, "port {ofport} left with {} MAC(s) of {vi}: their frames come up for {} s", macs.len(), HOLD_FOR.as_secs());
            self.topology
                .departed
                .insert((host.clone(), ofport), DepartedPort { vi, macs });
            let departure = Departure {
                until,
                moved: false,
            };
            self.departed_until
                .insert((host.clone(), ofport), departure);
        }
    }

    /// Ports on `host`'s bridge again are no longer departed.
    pub(super) fn ports_returned(&mut self, host: &HostName) {
        let topology = &mut self.topology;
        let back: Vec<(HostName, u32)> = topology
            .departed
            .keys()
            .filter(|(h, p)| h == host && topology.vm_ports.contains_key(&(h.clone(), *p)))
            .cloned()
            .collect();
        for k in back {
            topology.departed.remove(&k);
            self.departed_until.remove(&k);
        }
    }

    /// Ends the departures that are over at `now`, and reprograms their
    /// hosts and the VIs' members (the host leaves the VI); drops the
    /// frames that waited too long.
    pub(super) fn expire_departures(&mut self, now: Instant) {
        let over: Vec<(HostName, u32)> = self
            .departed_until
            .iter()
            .filter(|(_, d)| now >= d.until)
            .map(|(k, _)| k.clone())
            .collect();
        if !over.is_empty() {
            let vis: BTreeSet<ViId> = over
                .iter()
                .filter_map(|k| self.topology.departed.get(k).map(|d| d.vi))
                .collect();
            let members = |t: &Topology| -> BTreeMap<ViId, BTreeSet<HostName>> {
                let all = t.vi_members();
                vis.iter()
                    .map(|vi| {
                        let hosts = all.get(vi).into_iter().flatten();
                        (*vi, hosts.map(|h| (*h).clone()).collect())
                    })
                    .collect()
            };
            let before = members(&self.topology);
            let mut hosts: BTreeSet<HostName> = BTreeSet::new();
            for k in &over {
                self.departed_until.remove(k);
                if self.topology.departed.remove(k).is_some() {
                    hosts.insert(k.0.clone());
                }
            }
            // The other members' flows change only when the host left a VI
            // (their floods no longer reach it); otherwise the departed
            // MACs' flows were its own.
            for (vi, after) in members(&self.topology) {
                if let Some(was) = before.get(&vi).filter(|was| **was != after) {
                    hosts.extend(was.iter().cloned());
                }
            }
            self.program_hosts(&hosts);
        }
        let expired = self.parked.expire(now);
        if expired > 0 {
            warn!(
                "dropped {expired} frame(s) held for guests whose port left their bridge: none \
                 reappeared within {} s",
                HOLD_FOR.as_secs()
            );
            self.metrics
                .parked_frames(Dropped::Expired.label(), expired);
        }
    }

    /// A frame table 3 sent up for a MAC that left a port of this host's
    /// bridge: sent on where the MAC is now, or held until it is somewhere.
    pub(super) fn on_parked_frame(&mut self, conn: ConnId, meta: &PacketInMeta, frame: &[u8]) {
        let Some(host) = self.switch_host(conn) else {
            return;
        };
        let vi = match meta.tun_id {
            Some(key) => u32::try_from(key)
                .ok()
                .and_then(|k| self.topology.vi_by_key(k))
                .map(|v| v.id),
            None => self.topology.vm_port(host, meta.in_port).map(|p| p.vi),
        };
        let eth = EthernetFrame::new_checked(frame).ok();
        let key = vi.zip(eth).and_then(|(vi, eth)| {
            Some(MacKey {
                vi,
                vlan: Vlan::from_vid(eth.vlan())?,
                mac: eth.dst(),
            })
        });
        let Some(key) = key else {
            self.metrics.packet_in("invalid");
            return;
        };
        self.metrics.packet_in("parked");
        let location = self.registry.mac(&key).and_then(|e| e.location.as_ref());
        if let Some((to, action)) = destination(&self.topology, location, &key) {
            self.forward_parked(&to, action, vec![frame.to_vec()]);
            return;
        }
        let dropped = self.parked.hold(key, frame.to_vec(), Instant::now());
        if dropped > 0 {
            self.metrics.parked_frames(Dropped::Full.label(), dropped);
        }
    }

    /// After the registry or the ports changed: sends on the held frames
    /// of every MAC that is now somewhere a frame can be sent (a move, a
    /// port reported again), and keeps a departed port whose MAC moved
    /// for [`HOLD_FOR`] more, for what the switches that have not taken
    /// the move yet still send it.
    pub(super) fn release_parked(&mut self) {
        if !self.topology.departed.is_empty() {
            let registry = &self.registry;
            let now = Instant::now();
            for (k, d) in &self.topology.departed {
                let Some(departure) = self.departed_until.get_mut(k).filter(|d| !d.moved) else {
                    continue;
                };
                let here = Location::Port {
                    host: k.0.clone(),
                    ofport: k.1,
                };
                let moved = d.macs.iter().any(|m| {
                    registry
                        .mac(m)
                        .is_some_and(|e| e.location.as_ref() != Some(&here))
                });
                if moved {
                    departure.moved = true;
                    departure.until = departure.until.max(now + HOLD_FOR);
                }
            }
        }
        if self.parked.len() == 0 {
            return;
        }
        for key in self.parked.keys() {
            let location = self.registry.mac(&key).and_then(|e| e.location.as_ref());
            if let Some((to, action)) = destination(&self.topology, location, &key) {
                let frames = self.parked.take(&key);
                debug!("sending {} frame(s) held for {} on", frames.len(), key.mac);
                self.forward_parked(&to, action, frames);
            }
        }
    }

    /// PacketOuts of `frames` with `action` from `host`'s switch, sent with
    /// the burst's when one is being taken.
    fn forward_parked(&mut self, host: &HostName, action: Action, frames: Vec<Vec<u8>>) {
        let n = frames.len();
        let Some(conn) = self.conn_of(host) else {
            self.metrics.parked_frames("switch_gone", n);
            return;
        };
        let outs = frames
            .into_iter()
            .map(|data| PacketOut {
                buffer_id: NO_BUFFER,
                in_port: port::CONTROLLER,
                actions: vec![action.clone()],
                data,
            })
            .collect();
        self.metrics.parked_frames("forwarded", n);
        self.queue_packet_outs(BTreeMap::from([(conn, outs)]));
    }
}
