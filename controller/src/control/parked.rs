//! Frames sent to a guest that has just left a host.
//!
//! When a migrated or re-plugged guest's port leaves its bridge, the other
//! switches still send its frames to that host until the guest announces
//! itself elsewhere and the move reaches them; and once it has moved, a
//! switch that has not taken the move yet keeps sending them to the host
//! it left for a moment. Dropped there, each such frame is a lost packet
//! (a ping after the first RARP in the moves benchmark: one in 8 of 20
//! runs lost one).
//!
//! So a VM port that leaves while the registry still places MACs on it is
//! remembered as *departed*, with those MACs (`Topology::departed`), for
//! [`DEPARTED_FOR`] (or, once all of them have shown up elsewhere, as long
//! as their moved-from records); and a MAC that moves to another host is
//! remembered on the host it left (`Topology::moved_from`) for
//! [`HOLD_FOR`] from the move.
//! Both are checked on the loop's one-second tick. Meanwhile the host stays
//! a member of the VI, and its table 3 sends those MACs' frames to the
//! controller: all of them while the registry still places the MAC on the
//! departed port, those from tunnels once it has moved
//! (`docs/pipeline.md`). The control loop forwards each such frame straight
//! out of the MAC's port (or, behind a gateway, into the operator's data
//! center) as soon as the registry places it on a port that is on its
//! bridge, and holds it until then: at most [`MAX_PER_MAC`] frames per MAC
//! and [`MAX_HELD`] in all, the oldest giving way, each for at most
//! [`HOLD_FOR`] (again on the tick). What becomes of them is counted in
//! `iris_parked_frames_total` by outcome.
//!
//! The bounds are for the gap of a move, not for a guest that stays away:
//! 100 guests re-plugged at once in the moves benchmark stay unplugged
//! about 2 s each, and with 2 s of holding and 64 frames per MAC the
//! 2,400 frames sent up and the 1,000 sent on at the moment of the
//! announcements delayed the moves (first RARP to last move 131–144 ms
//! against 48–78 ms without, in the same run). Holding frames is bounded
//! so; the departure is not: a departure that ended before its guest
//! announced itself (1 s, while the hundred guests stayed away up to 2 s)
//! dropped every frame sent in the moment between the announcement and
//! the move reaching the sender, and with the store full of frames sent
//! while the guests were away, a new one gave way to them.

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

/// How long a host a MAC moved away from keeps the MAC's frames coming to
/// the controller, and how long one such frame waits for its guest.
pub(super) const HOLD_FOR: Duration = Duration::from_secs(1);
/// How long a departed port keeps its MACs' frames coming to the
/// controller: longer than a guest stays away, a migrated guest's pause or
/// a hundred guests re-plugged at once (up to 2 s in the moves benchmark).
pub(super) const DEPARTED_FOR: Duration = Duration::from_secs(5);
/// Frames held for one MAC at most; the oldest gives way.
pub(super) const MAX_PER_MAC: usize = 16;
/// Frames held in all at most; the oldest of all gives way: a frame sent
/// later is likelier to find its guest back while it is worth sending.
pub(super) const MAX_HELD: usize = 256;

/// The frames waiting for their MAC to reappear, by MAC.
#[derive(Debug, Default)]
pub(super) struct Parked {
    frames: BTreeMap<MacKey, VecDeque<(Instant, Vec<u8>)>>,
    held: usize,
}

impl Parked {
    /// Holds `frame` for `key`; how many frames were dropped to make room
    /// (0 or 1).
    pub(super) fn hold(&mut self, key: MacKey, frame: Vec<u8>, now: Instant) -> usize {
        let full = self
            .frames
            .get(&key)
            .is_some_and(|q| q.len() >= MAX_PER_MAC);
        let give_way = if full {
            Some(key)
        } else if self.held >= MAX_HELD {
            // At most MAX_HELD queues to look at, each oldest first.
            self.frames
                .iter()
                .filter_map(|(k, q)| Some((q.front()?.0, *k)))
                .min()
                .map(|(_, k)| k)
        } else {
            None
        };
        let dropped = give_way.map_or(0, |k| self.drop_oldest_of(&k));
        self.frames.entry(key).or_default().push_back((now, frame));
        self.held += 1;
        dropped
    }

    /// Drops the oldest frame held for `key`; how many (0 or 1).
    fn drop_oldest_of(&mut self, key: &MacKey) -> usize {
        let Some(queue) = self.frames.get_mut(key) else {
            return 0;
        };
        let dropped = usize::from(queue.pop_front().is_some());
        if queue.is_empty() {
            self.frames.remove(key);
        }
        self.held -= dropped;
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

/// The keys of `until` whose time is over at `now`.
fn due<K: Clone>(until: &BTreeMap<K, Instant>, now: Instant) -> Vec<K> {
    until
        .iter()
        .filter(|(_, t)| now >= **t)
        .map(|(k, _)| k.clone())
        .collect()
}

impl Control {
    /// A VM port left `host`'s bridge (`gone`, with the VI each was in):
    /// remember each for [`DEPARTED_FOR`] with the MACs placed on it.
    pub(super) fn ports_departed(&mut self, host: &HostName, gone: &[(u32, ViId)]) {
        let until = Instant::now() + DEPARTED_FOR;
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
            debug!(%host, "port {ofport} left with {} MAC(s) of {vi}: their frames come up for {} s", macs.len(), DEPARTED_FOR.as_secs());
            self.topology
                .departed
                .insert((host.clone(), ofport), DepartedPort { vi, macs });
            self.departed_until.insert((host.clone(), ofport), until);
        }
    }

    /// The MACs the registry places on ports of `host` that just left
    /// (`gone`) and that exactly one other VM port of their VI carries as
    /// `external_ids:attached-mac` are placed there at once, as their
    /// announcement would place them: a migration or a move makes the
    /// destination's port first and removes the source's once the guest
    /// runs at the destination, so the guest is there. An announcement
    /// the destination's switch could not pass up (its connection to the
    /// controller down at that moment) is not waited for, and a guest that
    /// says nothing afterwards is reachable all the same. A port that
    /// leaves before the destination's appears (the testbed's re-plugging)
    /// waits for the announcement as before.
    pub(super) fn follow_nics(&mut self, host: &HostName, gone: &[(u32, ViId)]) {
        if !self.role.writes() {
            // The leader sees the same report and moves them.
            return;
        }
        let mut changes = Vec::new();
        for &(ofport, vi) in gone {
            let Some(departed) = self.topology.departed.get(&(host.clone(), ofport)) else {
                continue;
            };
            // `ports_departed` has just recorded the MACs of `vi` the
            // registry places on this port.
            for key in &departed.macs {
                let mut carriers = self
                    .topology
                    .vm_ports
                    .values()
                    .filter(|p| p.vi == vi && p.attached_mac == Some(key.mac));
                let (Some(port), None) = (carriers.next(), carriers.next()) else {
                    continue;
                };
                let sighting = self.topology.sighting(port);
                if let Some(c) = self.registry.follow_nic(super::now_ms(), sighting, *key) {
                    debug!(%host, "port {ofport} left; {} follows its NIC to {}", key.mac, port.host);
                    changes.push(c);
                }
            }
        }
        if !changes.is_empty() {
            self.registry_changed(&changes);
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

    /// MACs that `changes` moved from one host to another are
    /// remembered on the host they left (`Topology::moved_from`), before
    /// the switches are compiled for the changes.
    pub(super) fn note_moves(&mut self, changes: &[crate::registry::RegistryChange]) {
        let mut until = None;
        for c in changes {
            let Some((key, Some(from), Some(to))) = c.as_move() else {
                continue;
            };
            // Nothing is cloned for a move within one host: the learning
            // path makes those by the tens of thousands a second.
            if from.host() == to.host() {
                continue;
            }
            let from = from.host().clone();
            let until = *until.get_or_insert_with(|| Instant::now() + HOLD_FOR);
            self.topology
                .moved_from
                .entry(from.clone())
                .or_default()
                .insert(*key);
            self.moved_until.insert((from, *key), until);
        }
        let Some(until) = until else {
            return;
        };
        // A departure is kept long for guests still away: one whose MACs
        // have all shown up elsewhere ends with their moved-from records
        // (the host's floods and flows for them go then).
        let registry = &self.registry;
        for ((host, ofport), d) in &self.topology.departed {
            let left = d.macs.iter().all(|k| {
                !matches!(registry.mac(k).and_then(|e| e.location.as_ref()),
                    Some(Location::Port { host: h, ofport: p }) if h == host && p == ofport)
            });
            if left {
                if let Some(t) = self.departed_until.get_mut(&(host.clone(), *ofport)) {
                    *t = (*t).min(until);
                }
            }
        }
    }

    /// Ends the departures and moves that are over at `now` and reprograms
    /// their hosts, and the VIs' members where a host leaves a VI; drops
    /// the frames that waited too long.
    pub(super) fn expire_departures(&mut self, now: Instant) {
        let ports = due(&self.departed_until, now);
        let moves = due(&self.moved_until, now);
        if !ports.is_empty() || !moves.is_empty() {
            let vis: BTreeSet<ViId> = ports
                .iter()
                .filter_map(|k| self.topology.departed.get(k).map(|d| d.vi))
                .chain(moves.iter().map(|(_, k)| k.vi))
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
            for k in ports {
                self.departed_until.remove(&k);
                if self.topology.departed.remove(&k).is_some() {
                    hosts.insert(k.0);
                }
            }
            for (host, key) in moves {
                self.moved_until.remove(&(host.clone(), key));
                if let Some(keys) = self.topology.moved_from.get_mut(&host) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        self.topology.moved_from.remove(&host);
                    }
                    hosts.insert(host);
                }
            }
            // The other members' flows change only when the host left a VI
            // (their floods no longer reach it); otherwise the flows that
            // go were its own.
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
            self.metrics.parked_frames("expired", expired);
        }
    }

    /// `host` is no longer managed: nothing is kept for it.
    pub(super) fn forget_departures(&mut self, host: &HostName) {
        self.topology.departed.retain(|(h, _), _| h != host);
        self.departed_until.retain(|(h, _), _| h != host);
        self.topology.moved_from.remove(host);
        self.moved_until.retain(|(h, _), _| h != host);
    }

    /// A frame table 3 sent up for a MAC that left this host: sent on where
    /// the MAC is now, or held until it is somewhere.
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
            self.metrics.parked_frames("full", dropped);
        }
    }

    /// After the registry or the ports changed: sends on the held frames
    /// of every MAC that is now somewhere a frame can be sent (a move, a
    /// port reported again).
    pub(super) fn release_parked(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ofp::packet::MacAddr;

    fn key(n: u8) -> MacKey {
        MacKey {
            vi: ViId(1),
            vlan: Vlan::Untagged,
            mac: MacAddr([0x52, 0x54, 0, 0, 1, n]),
        }
    }

    #[test]
    fn when_every_place_is_taken_the_oldest_frame_of_all_gives_way() {
        let mut p = Parked::default();
        let start = Instant::now();
        let per = u8::try_from(MAX_PER_MAC).unwrap();
        let macs = u8::try_from(MAX_HELD / MAX_PER_MAC).unwrap();
        // Full: every MAC holds as many as it may, MAC 0's sent first.
        for seq in 0..per {
            for m in 0..macs {
                let at = start + Duration::from_millis(u64::from(seq) * 10 + u64::from(m));
                assert_eq!(p.hold(key(m), vec![m, seq], at), 0);
            }
        }
        assert_eq!(p.len(), MAX_HELD);
        // A MAC that holds nothing yet: MAC 0's first frame gives way.
        let late = start + Duration::from_secs(1);
        assert_eq!(p.hold(key(200), vec![200], late), 1);
        assert_eq!(p.len(), MAX_HELD);
        assert_eq!(p.take(&key(200)), [vec![200]]);
        let zero = p.take(&key(0));
        assert_eq!(zero.len(), MAX_PER_MAC - 1);
        assert_eq!(zero[0], [0, 1]);
        // A MAC at its own bound loses its own oldest.
        assert_eq!(p.hold(key(1), vec![1, 99], late), 1);
        let one = p.take(&key(1));
        assert_eq!(
            (one.len(), &one[0], one.last()),
            (MAX_PER_MAC, &vec![1, 1], Some(&vec![1, 99]))
        );
        assert_eq!(p.len(), MAX_HELD - 2 * MAX_PER_MAC);
    }
}
