//! Where each MAC of the gateway's VIs is, and when a report of it moving
//! is to be followed: MAC mobility as EVPN does it (RFC 7432 §15).
//!
//! Every (VI, VLAN, MAC) has a place (this data center, the peer's, or
//! gone) and a move sequence number. A MAC seen here that was believed
//! remote has moved: its seq becomes the highest known plus one, which the
//! peer must then follow. A report from the peer is followed when its seq
//! is higher than the one held; an equal seq is stale (RFC 7432 leaves the
//! tie to the lower address; here the side that holds it keeps it), except
//! for the very same report again, which changes nothing.
//!
//! A MAC that moves more than [`FLAP_MOVES`] times within [`FLAP_WINDOW`]
//! is flapping (a duplicated MAC, a loop): its moves are no longer
//! followed, only remembered, until it has not moved for [`FLAP_WINDOW`];
//! then the last place claimed is taken ([`Table::poll`]).
//!
//! Sans-IO: time is passed in, and every call returns what it decided.

use iris_controller::model::{MacKey, ViId};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// More moves than this within [`FLAP_WINDOW`] make a MAC flapping.
pub const FLAP_MOVES: usize = 5;
/// The window moves are counted in, and how long a flapping MAC must stay
/// still before it is followed again (RFC 7432's default M = 5, N = 180 s).
pub const FLAP_WINDOW: Duration = Duration::from_secs(180);
/// The IPs one MAC is known by, at most (as the controller's registry).
pub const MAX_IPS: usize = 256;
/// MACs the table holds, at most: beyond, a new MAC is refused
/// ([`Decision::Full`]) rather than let a flood of forged MACs grow it.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// Where a MAC is, as this gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// In this gateway's data center.
    Local,
    /// Behind the peer gateway, in the other data center.
    Remote,
    /// Withdrawn by the peer and not seen since.
    Gone,
}

/// What a call decided; the caller acts on it (report, write the registry,
/// count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing new: the same announcement or report again.
    Unchanged { seq: u32 },
    /// First seen, or known by a new IP, in the same place.
    Present { place: Place, seq: u32 },
    /// It moved, and the move is followed.
    Moved { from: Place, to: Place, seq: u32 },
    /// A report whose seq is not above the one held; `seq` is ours.
    Stale { seq: u32 },
    /// A move not followed because the MAC flaps; `newly` when this move
    /// made it so.
    Flapping { seq: u32, newly: bool },
    /// It settled after flapping; nothing to apply.
    Settled { seq: u32 },
    /// The peer withdrew it.
    Withdrawn { seq: u32 },
    /// A MAC not yet known, and the table is full.
    Full,
}

/// A place and seq claimed while the MAC flapped, applied once it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    place: Place,
    ips: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    place: Place,
    /// The highest seq known for the MAC, whether followed or not.
    seq: u32,
    /// Sorted, at most [`MAX_IPS`].
    ips: Vec<Ipv4Addr>,
    /// Move times within the window, oldest first.
    moves: VecDeque<Instant>,
    flapping: bool,
    /// The latest claim not followed while flapping.
    pending: Option<Claim>,
}

impl Entry {
    /// Where the MAC is believed to be: the latest claim, followed or not.
    fn believed(&self) -> Place {
        self.pending.as_ref().map_or(self.place, |c| c.place)
    }

    /// Adds `ips`; whether any was new.
    fn learn_ips(&mut self, ips: &[Ipv4Addr]) -> bool {
        merge_ips(&mut self.ips, ips)
    }

    /// A move to `to` at `seq`: followed, or held back while flapping.
    fn moved(&mut self, now: Instant, to: Place, seq: u32, ips: &[Ipv4Addr]) -> Decision {
        self.seq = self.seq.max(seq);
        while self
            .moves
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FLAP_WINDOW)
        {
            self.moves.pop_front();
        }
        self.moves.push_back(now);
        if self.moves.len() > FLAP_MOVES + 1 {
            self.moves.pop_front();
        }
        if self.flapping || self.moves.len() > FLAP_MOVES {
            let newly = !self.flapping;
            self.flapping = true;
            let mut claim = self.pending.take().unwrap_or(Claim {
                place: self.place,
                ips: self.ips.clone(),
            });
            claim.place = to;
            merge_ips(&mut claim.ips, ips);
            self.pending = Some(claim);
            return Decision::Flapping {
                seq: self.seq,
                newly,
            };
        }
        let from = self.place;
        self.place = to;
        self.learn_ips(ips);
        Decision::Moved {
            from,
            to,
            seq: self.seq,
        }
    }
}

fn merge_ips(into: &mut Vec<Ipv4Addr>, ips: &[Ipv4Addr]) -> bool {
    let mut changed = false;
    for ip in ips {
        if let Err(at) = into.binary_search(ip) {
            if into.len() < MAX_IPS {
                into.insert(at, *ip);
                changed = true;
            }
        }
    }
    changed
}

/// A MAC as the table holds it, for status and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    pub place: Place,
    pub seq: u32,
    pub ips: Vec<Ipv4Addr>,
    pub flapping: bool,
}

/// The mobility table of one gateway, over all its VIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    entries: HashMap<MacKey, Entry>,
    flapping: BTreeSet<MacKey>,
    capacity: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Table {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            flapping: BTreeSet::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &MacKey) -> Option<View> {
        self.entries.get(key).map(|e| View {
            place: e.place,
            seq: e.seq,
            ips: e.ips.clone(),
            flapping: e.flapping,
        })
    }

    /// The seq held for `key`, 0 for a MAC never seen.
    pub fn seq(&self, key: &MacKey) -> u32 {
        self.entries.get(key).map_or(0, |e| e.seq)
    }

    /// Forgets every MAC of `vi`, a VI the gateway no longer carries.
    pub fn forget_vi(&mut self, vi: ViId) {
        self.entries.retain(|k, _| k.vi != vi);
        self.flapping.retain(|k| k.vi != vi);
    }

    /// The MACs flapping now.
    pub fn flapping(&self) -> impl Iterator<Item = &MacKey> {
        self.flapping.iter()
    }

    fn insert(&mut self, key: MacKey, place: Place, seq: u32, ips: &[Ipv4Addr]) -> Decision {
        if self.entries.len() >= self.capacity {
            return Decision::Full;
        }
        let mut entry = Entry {
            place,
            seq,
            ips: Vec::new(),
            moves: VecDeque::new(),
            flapping: false,
            pending: None,
        };
        entry.learn_ips(ips);
        self.entries.insert(key, entry);
        Decision::Present { place, seq }
    }

    /// The MAC was seen in this data center (an ARP, GARP or RARP on the
    /// trunk; on the haas side, the controller placing it on a port).
    pub fn local(&mut self, now: Instant, key: MacKey, ips: &[Ipv4Addr]) -> Decision {
        let Some(entry) = self.entries.get_mut(&key) else {
            return self.insert(key, Place::Local, 0, ips);
        };
        if entry.believed() == Place::Local {
            if entry.learn_ips(ips) {
                return Decision::Present {
                    place: Place::Local,
                    seq: entry.seq,
                };
            }
            return Decision::Unchanged { seq: entry.seq };
        }
        let seq = entry.seq.saturating_add(1);
        let d = entry.moved(now, Place::Local, seq, ips);
        self.note_flapping(key, &d);
        d
    }

    /// The peer says the MAC is in its data center at `seq` (a `presence`
    /// or `move` report, or the seq the peer answered a report of ours
    /// with).
    pub fn remote(&mut self, now: Instant, key: MacKey, seq: u32, ips: &[Ipv4Addr]) -> Decision {
        let Some(entry) = self.entries.get_mut(&key) else {
            return self.insert(key, Place::Remote, seq, ips);
        };
        let believed = entry.believed();
        if seq < entry.seq || (seq == entry.seq && believed != Place::Remote) {
            return Decision::Stale { seq: entry.seq };
        }
        if believed == Place::Remote {
            // Already there: at most a later seq (a move inside the peer's
            // data center) or another IP.
            let newer = seq > entry.seq;
            entry.seq = seq;
            let learnt = match &mut entry.pending {
                Some(claim) => merge_ips(&mut claim.ips, ips),
                None => entry.learn_ips(ips),
            };
            return if newer || learnt {
                Decision::Present {
                    place: Place::Remote,
                    seq,
                }
            } else {
                Decision::Unchanged { seq }
            };
        }
        let d = entry.moved(now, Place::Remote, seq, ips);
        self.note_flapping(key, &d);
        d
    }

    /// The peer says the MAC left its data center, as of `seq`.
    pub fn gone(&mut self, key: MacKey, seq: u32) -> Decision {
        let Some(entry) = self.entries.get_mut(&key) else {
            return self.insert(key, Place::Gone, seq, &[]);
        };
        if seq < entry.seq || entry.believed() != Place::Remote {
            return Decision::Stale { seq: entry.seq };
        }
        entry.seq = seq;
        if let Some(claim) = &mut entry.pending {
            claim.place = Place::Gone;
        } else {
            entry.place = Place::Gone;
        }
        Decision::Withdrawn { seq }
    }

    fn note_flapping(&mut self, key: MacKey, d: &Decision) {
        if matches!(d, Decision::Flapping { newly: true, .. }) {
            self.flapping.insert(key);
        }
    }

    /// When [`Table::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.flapping
            .iter()
            .filter_map(|k| self.entries.get(k)?.moves.back().map(|t| *t + FLAP_WINDOW))
            .min()
    }

    /// MACs that have not moved for [`FLAP_WINDOW`] stop flapping; the
    /// last place claimed meanwhile is taken.
    pub fn poll(&mut self, now: Instant) -> Vec<(MacKey, Decision)> {
        let settled: Vec<MacKey> = self
            .flapping
            .iter()
            .filter(|k| {
                self.entries.get(k).is_none_or(|e| {
                    e.moves
                        .back()
                        .is_none_or(|t| now.saturating_duration_since(*t) >= FLAP_WINDOW)
                })
            })
            .copied()
            .collect();
        let mut out = Vec::new();
        for key in settled {
            self.flapping.remove(&key);
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            e.flapping = false;
            e.moves.clear();
            let d = match e.pending.take() {
                Some(claim) if claim.place != e.place => {
                    let from = e.place;
                    e.place = claim.place;
                    e.ips = claim.ips;
                    Decision::Moved {
                        from,
                        to: e.place,
                        seq: e.seq,
                    }
                }
                Some(claim) => {
                    e.ips = claim.ips;
                    Decision::Settled { seq: e.seq }
                }
                None => Decision::Settled { seq: e.seq },
            };
            out.push((key, d));
        }
        out
    }
}

#[cfg(test)]
mod tests;
