//! ARP requests answered in the connection tasks, without the hop through
//! the control loop.
//!
//! An ARP request for a known IP that misses the datapath's responder
//! (table 2, see `docs/pipeline.md`) needs nothing but a lookup: the
//! control loop would learn nothing from it and answer with one PacketOut.
//! The control loop publishes what that decision reads as an immutable
//! [`ArpSnapshot`] (per connection, which VM port belongs to which VI; per
//! VI, IP → MAC; and what learning would make of each sender), and each
//! connection task answers from it ([`ConnAnswers`]), encoding the reply
//! straight into its write buffer. Everything else, and everything the
//! snapshot cannot vouch for, goes to the control loop as before.
//!
//! Why the answers are the control loop's, in order:
//! - The snapshot is withdrawn the moment the control loop changes
//!   anything it depends on (the registry, the topology, which switch is
//!   which host), before that change is committed or acted on, and a new
//!   one is built only outside a burst, from committed state. So whatever
//!   snapshot a connection holds reflects every change committed before it
//!   looked (the withdrawal happens-before the commit's acknowledgement:
//!   [`AnswerSlot::publish`] bumps the generation with release ordering,
//!   the connections read it with acquire).
//! - A connection answers only while the control loop has taken, and
//!   committed the effects of, every PacketIn the connection handed it
//!   (the control loop acknowledges them through the connection's
//!   [`crate::server::SwitchHandle`] once its burst is stored). Once one
//!   PacketIn of a read goes to the control loop, the rest of that read
//!   follows it. So a GARP that rebinds an IP is always seen before an ARP
//!   request for that IP from the same switch, as in the control loop.

use crate::compiler::{TABLE_CLASSIFY, TABLE_INTERCEPT};
use crate::metrics::{Metrics, ReasonLabel};
use crate::model::{HostName, IpKey, Location, MacKey, Topology, ViId, Vlan};
use crate::packet_in::{reply_actions, PacketInKind};
use crate::registry::{binds_ip, is_usable, Origin, Registry};
use crate::server::ConnId;
use crate::session::Shortcut;
use fxhash::FxHasher;
use ofp::action::{port, Action};
use ofp::message::{PacketInReason, PacketInView, PacketOutRef, NO_BUFFER};
use ofp::oxm::{FieldId, OxmField};
use ofp::packet::{ArpOp, ArpRepr, EtherType, EthernetFrame, MacAddr};
use prometheus_client::metrics::counter::Counter;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// FxHash with its high half folded into its low half. Hashbrown picks a
/// bucket by the low bits, and FxHash's last multiplication leaves those
/// depending on the low bits of the last word alone: keys that differ only
/// in an IP's or a MAC's last bytes (all of them, in a subnet) would share
/// one probe sequence.
#[derive(Default)]
struct FoldedFx(FxHasher);

impl Hasher for FoldedFx {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    fn write_u16(&mut self, i: u16) {
        self.0.write_u16(i);
    }

    fn write_u32(&mut self, i: u32) {
        self.0.write_u32(i);
    }

    fn write_u64(&mut self, i: u64) {
        self.0.write_u64(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.0.write_usize(i);
    }

    fn finish(&self) -> u64 {
        let h = self.0.finish();
        h ^ (h >> 32)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldedFx>>;

/// What an ARP request's sender, seen on a VM port, leaves of its MAC
/// entry: the registry's trust rules, precomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Pinned and placed: a sighting moves it nowhere.
    Anywhere,
    /// Placed on this port (host by its index): a sighting there changes
    /// nothing, one elsewhere may move it.
    At { host: u32, ofport: u32 },
}

/// A connection's switch: its host and the VI of each VM port, with
/// whether the host is that VI's gateway (the port leads into the
/// operator's data center, whose requests are never answered).
#[derive(Debug)]
struct SwitchPorts {
    host: u32,
    vm_ports: FastMap<u32, (ViId, bool)>,
}

/// What answering an ARP request reads, as of one committed state.
#[derive(Debug, Default)]
pub struct ArpSnapshot {
    switches: FastMap<ConnId, SwitchPorts>,
    ips: FastMap<IpKey, (MacAddr, Origin)>,
    /// MACs a sighting leaves alone (on some port); absent ones it changes.
    macs: FastMap<MacKey, Kept>,
}

impl ArpSnapshot {
    /// The snapshot of `registry` and `topology` for the connections in
    /// `switches` (each with the host its switch serves).
    pub fn build<'a>(
        registry: &Registry,
        topology: &Topology,
        switches: impl IntoIterator<Item = (ConnId, &'a HostName)>,
    ) -> Self {
        let hosts: BTreeMap<&HostName, u32> = topology.hosts.keys().zip(0..).collect();
        let switches = switches
            .into_iter()
            .filter_map(|(conn, name)| {
                let host = *hosts.get(name)?;
                let vm_ports = topology
                    .vm_ports_on(name)
                    .filter(|p| topology.vis.contains_key(&p.vi))
                    .map(|p| (p.ofport, (p.vi, topology.sighting(p).behind_gateway)))
                    .collect();
                Some((conn, SwitchPorts { host, vm_ports }))
            })
            .collect();
        let ips = registry
            .ips()
            .map(|(k, e)| (*k, (e.mac, e.origin)))
            .collect();
        let macs = registry
            .macs()
            .filter_map(|(k, e)| {
                let kept = match &e.location {
                    Some(_) if e.origin.is_pinned() => Kept::Anywhere,
                    Some(Location::Port { host, ofport }) => Kept::At {
                        host: *hosts.get(host)?,
                        ofport: *ofport,
                    },
                    _ => return None,
                };
                Some((*k, kept))
            })
            .collect();
        Self {
            switches,
            ips,
            macs,
        }
    }

    /// Answers an ARP request from `conn`'s switch when the control loop
    /// would answer it from the registry and learn nothing from it: writes
    /// the reply frame into `reply` and returns the port to send it out of.
    /// `None` means the control loop must decide.
    pub fn answer(&self, conn: ConnId, pi: &PacketInView<'_>, reply: &mut Vec<u8>) -> Option<u32> {
        // A RARP table 0 sends up may be held; a copy from the interception
        // table went on in the datapath: both are the control loop's.
        let went_on = pi.reason() == PacketInReason::Action && pi.table_id() == TABLE_INTERCEPT;
        if went_on || pi.table_id() == TABLE_CLASSIFY {
            return None;
        }
        let sw = self.switches.get(&conn)?;
        let in_port = in_port_of_valid_match(pi)?;
        let (vi, behind) = *sw.vm_ports.get(&in_port)?;
        if behind {
            // A request from the operator's data center is never answered.
            return None;
        }
        let frame = pi.data();
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let vlan = Vlan::from_vid(eth.vlan())?;
        if eth.ethertype() != EtherType::Arp {
            return None;
        }
        let arp = ArpRepr::parse_frame(frame).ok()?;
        if arp.op != ArpOp::Request || arp.is_gratuitous() || arp.spa.is_unspecified() {
            return None;
        }
        if !self.sighting_keeps(sw.host, in_port, vi, &arp) {
            return None;
        }
        let target = IpKey {
            vi,
            vlan,
            ip: arp.tpa,
        };
        let (mac, _) = self.ips.get(&target)?;
        if *mac == arp.sha {
            return None;
        }
        reply.clear();
        arp.reply_from(*mac).emit(reply);
        Some(in_port)
    }

    /// Whether learning from `arp` (a plain request, a sighting) on VM
    /// port `ofport` of `host` would leave the registry as it is.
    fn sighting_keeps(&self, host: u32, ofport: u32, vi: ViId, arp: &ArpRepr) -> bool {
        let Some(vlan) = Vlan::from_vid(arp.tags.first().map(|t| t.vid())) else {
            // Learning skips priority-tagged frames.
            return true;
        };
        let src = arp.eth_src;
        if is_usable(src) {
            let key = MacKey { vi, vlan, mac: src };
            match self.macs.get(&key) {
                Some(Kept::Anywhere) => {}
                Some(Kept::At { host: h, ofport: p }) if *h == host && *p == ofport => {}
                _ => return false,
            }
        }
        // The frame's ethertype was checked to be ARP before it was parsed.
        if binds_ip(arp) {
            let key = IpKey {
                vi,
                vlan,
                ip: arp.spa,
            };
            match self.ips.get(&key) {
                Some((mac, origin)) if *origin != Origin::Learned || *mac == src => {}
                _ => return false,
            }
        }
        true
    }
}

/// The ingress port of a PacketIn whose match decodes as the owned decode
/// would have it (every field well formed, none twice); `None` otherwise,
/// and then the control loop sees it, or the session's error reply does.
fn in_port_of_valid_match(pi: &PacketInView<'_>) -> Option<u32> {
    let mut seen: [Option<FieldId>; 8] = [None; 8];
    let mut in_port = None;
    for (i, tlv) in pi.oxms().enumerate() {
        let field = OxmField::from_tlv(&tlv.ok()?).ok()?;
        let id = field.id();
        // More fields than a switch sends up are not worth a bigger check.
        if i >= seen.len() || seen[..i].contains(&Some(id)) {
            return None;
        }
        seen[i] = Some(id);
        if let OxmField::InPort(p) = field {
            in_port = Some(p);
        }
    }
    in_port
}

/// Where the control loop publishes the current [`ArpSnapshot`], and the
/// connections pick it up.
#[derive(Debug)]
pub struct AnswerSlot {
    /// Bumped (under the lock) by every publication, so a connection reads
    /// one atomic per read to see whether its copy is still current.
    generation: AtomicU64,
    current: Mutex<Option<Arc<ArpSnapshot>>>,
    /// The PacketIns-by-reason counter the control loop counts answered
    /// ARP requests in: the connections count theirs there too.
    answered: Counter,
}

impl AnswerSlot {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            generation: AtomicU64::new(0),
            current: Mutex::new(None),
            answered: metrics
                .packet_ins
                .get_or_create(&ReasonLabel {
                    reason: PacketInKind::ArpAnswered.label(),
                })
                .clone(),
        }
    }

    /// Replaces the snapshot; `None` withdraws it (connections hand every
    /// PacketIn to the control loop until the next one).
    pub fn publish(&self, snapshot: Option<Arc<ArpSnapshot>>) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *current, snapshot);
        self.generation.fetch_add(1, Ordering::Release);
        drop(current);
        // Freeing a whole registry's maps must not hold up the connections
        // waiting for the lock.
        drop(old);
    }

    /// The snapshot published last, if it was not withdrawn.
    pub fn current(&self) -> Option<Arc<ArpSnapshot>> {
        self.load().1
    }

    fn load(&self) -> (u64, Option<Arc<ArpSnapshot>>) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (self.generation.load(Ordering::Acquire), current.clone())
    }
}

/// One connection's side: answers from the current snapshot while the
/// control loop has caught up with this connection.
#[derive(Debug)]
pub struct ConnAnswers {
    conn: ConnId,
    slot: Arc<AnswerSlot>,
    generation: u64,
    snapshot: Option<Arc<ArpSnapshot>>,
    /// PacketIns handed to the control loop so far.
    forwarded: u64,
    /// How many of them the control loop has taken and committed.
    acked: Arc<AtomicU64>,
    /// Whether the PacketIns of the current read may still be answered.
    open: bool,
    reply: Vec<u8>,
    actions: [Action; 1],
}

impl ConnAnswers {
    /// `acked` is what the control loop acknowledges through the
    /// connection's handle.
    pub fn new(conn: ConnId, slot: Arc<AnswerSlot>, acked: Arc<AtomicU64>) -> Self {
        Self {
            conn,
            slot,
            generation: u64::MAX,
            snapshot: None,
            forwarded: 0,
            acked,
            open: false,
            reply: Vec::with_capacity(64),
            actions: reply_actions(0),
        }
    }

    /// Before the PacketIns of one read: picks up a newer snapshot, and
    /// answers only if the control loop has caught up with this connection.
    pub fn begin_read(&mut self) {
        if self.slot.generation.load(Ordering::Acquire) != self.generation {
            (self.generation, self.snapshot) = self.slot.load();
        }
        self.open = self.snapshot.is_some() && self.acked.load(Ordering::Acquire) == self.forwarded;
    }

    /// A PacketIn went to the control loop.
    pub fn forwarded(&mut self) {
        self.forwarded += 1;
        self.open = false;
    }
}

impl Shortcut for ConnAnswers {
    fn answer(&mut self, packet_in: &PacketInView<'_>) -> Option<PacketOutRef<'_>> {
        if !self.open {
            return None;
        }
        let answered = self
            .snapshot
            .as_ref()
            .and_then(|s| s.answer(self.conn, packet_in, &mut self.reply));
        let Some(out_port) = answered else {
            // What follows in this read goes after it, through the control
            // loop.
            self.open = false;
            return None;
        };
        self.slot.answered.inc();
        self.actions = reply_actions(out_port);
        Some(PacketOutRef {
            buffer_id: NO_BUFFER,
            in_port: port::CONTROLLER,
            actions: &self.actions,
            data: &self.reply,
        })
    }
}

#[cfg(test)]
mod tests;
