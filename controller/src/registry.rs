//! Where every MAC lives and which MAC answers for every IP, per VI and VLAN.
//!
//! The registry is plain data. Every mutation takes the time as an argument
//! and returns the [`RegistryChange`]s it made, which the runtime turns into
//! flow recompilation, an event on the change stream, a metric and a write to
//! the [`crate::store::Store`].
//!
//! Trust rules (the heart of the issue):
//! - Only frames from VM ports teach, and the VI is the VM port's: a caller
//!   hands in a [`VmPort`], never a tunnel.
//! - A *sighting* (any frame, a plain ARP) creates an unknown entry, places a
//!   seeded entry that has no location yet, and moves a [`Origin::Learned`]
//!   entry. It never moves an entry that configuration, the API or an
//!   announcement put there.
//! - An *announcement* (RARP or GARP) moves any entry: that is how a
//!   migrated VM tells the network where it went.

use crate::model::{
    host_address_problem, is_port_number, HostName, IpKey, Location, MacKey, Topology, ViId, Vlan,
    VmPort,
};
use ofp::packet::{ArpOp, ArpRepr, EtherType, MacAddr};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch. The registry never reads a clock: the
/// caller passes `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// Who put an entry's current value there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A VI's seed file.
    Seeded,
    /// Seen in a frame from a VM port.
    Learned,
    /// A RARP or GARP from a VM port.
    Announced,
    /// The northbound API.
    Api,
}

impl Origin {
    /// Pinned entries move only on an announcement (or through the API).
    pub fn is_pinned(self) -> bool {
        self != Origin::Learned
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Seeded => "seeded",
            Origin::Learned => "learned",
            Origin::Announced => "announced",
            Origin::Api => "api",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the registry knows about one (VI, VLAN, MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacEntry {
    /// `None` for a seeded MAC that has not been seen yet: its IPs are
    /// answered, frames to it take the VI's unknown-unicast path.
    pub location: Option<Location>,
    pub origin: Origin,
    /// When the location (or origin) last changed.
    pub since: Timestamp,
}

/// Which MAC answers for one (VI, VLAN, IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpEntry {
    pub mac: MacAddr,
    pub origin: Origin,
    pub since: Timestamp,
}

/// One entry changing: `before` and `after` are `None` when it did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<K, V> {
    pub key: K,
    pub before: Option<V>,
    pub after: Option<V>,
}

/// A change the registry made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    Mac(Change<MacKey, MacEntry>),
    Ip(Change<IpKey, IpEntry>),
}

/// How an entry changed, for events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Added,
    /// A MAC's location, or the MAC an IP resolves to, changed.
    Moved,
    /// Only the origin changed: no flow depends on it.
    Updated,
    Removed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Moved => "moved",
            ChangeKind::Updated => "updated",
            ChangeKind::Removed => "removed",
        }
    }
}

impl RegistryChange {
    pub fn kind(&self) -> ChangeKind {
        match self {
            RegistryChange::Mac(c) => c.kind(|a, b| a.location != b.location),
            RegistryChange::Ip(c) => c.kind(|a, b| a.mac != b.mac),
        }
    }

    pub fn vi(&self) -> ViId {
        match self {
            RegistryChange::Mac(c) => c.key.vi,
            RegistryChange::Ip(c) => c.key.vi,
        }
    }

    /// Whether the switches' flows depend on what changed.
    pub fn affects_flows(&self) -> bool {
        self.kind() != ChangeKind::Updated
    }

    /// `(key, from, to)` when a MAC moved.
    pub fn as_move(&self) -> Option<(&MacKey, Option<&Location>, Option<&Location>)> {
        match self {
            RegistryChange::Mac(Change {
                key,
                before: Some(b),
                after: Some(a),
            }) if a.location != b.location => Some((key, b.location.as_ref(), a.location.as_ref())),
            _ => None,
        }
    }
}

impl<K, V> Change<K, V> {
    fn kind(&self, moved: impl Fn(&V, &V) -> bool) -> ChangeKind {
        match (&self.before, &self.after) {
            (None, _) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Removed,
            (Some(b), Some(a)) if moved(b, a) => ChangeKind::Moved,
            _ => ChangeKind::Updated,
        }
    }
}

/// A VM port a frame came in on, and whether that port leads into the
/// operator's own data center: a port of a VI on one of that VI's gateway
/// hosts (the gateway's WAN tunnel toward the operator) places what it sees
/// behind the gateway, which is also where the gateway's own reports put
/// it, so the two never move a MAC back and forth.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub port: &'a VmPort,
    pub behind_gateway: bool,
}

impl Sighting<'_> {
    fn location(&self) -> Location {
        if self.behind_gateway {
            Location::BehindGateway {
                gateway: self.port.host.clone(),
            }
        } else {
            Location::Port {
                host: self.port.host.clone(),
                ofport: self.port.ofport,
            }
        }
    }
}

impl<'a> From<&'a VmPort> for Sighting<'a> {
    /// A port of an ordinary host.
    fn from(port: &'a VmPort) -> Self {
        Self {
            port,
            behind_gateway: false,
        }
    }
}

/// One line of a VI's seed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedEntry {
    pub mac: MacAddr,
    pub ip: Option<Ipv4Addr>,
    pub vlan: Vlan,
    /// Where the MAC lives, when the seed file says (typically behind the
    /// VI's gateway); otherwise the first frame from a VM port places it.
    pub location: Option<Location>,
}

/// What the API writes: a MAC's whole entry, its IPs included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySpec {
    pub key: MacKey,
    pub location: Option<Location>,
    /// Exactly the IPs this MAC answers for afterwards.
    pub ips: Vec<Ipv4Addr>,
}

/// A MAC's entry with the IPs bound to it, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub key: MacKey,
    pub entry: MacEntry,
    pub ips: Vec<Ipv4Addr>,
}

/// Input the registry refuses; the API maps it to a 4xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{mac} is a multicast or all-zero address; a registry entry needs a unicast MAC")]
    NotUnicast { mac: MacAddr },
    #[error("VLAN {0} is out of range; use 1..=4094 or untagged")]
    BadVlan(u16),
    #[error("{vi} is not a known VI; create the VI first")]
    UnknownVi { vi: ViId },
    #[error("host {host} is not known; add the host first")]
    UnknownHost { host: HostName },
    #[error("port {ofport} on {host} belongs to {owner}, not {vi}: a VI's MAC cannot live on another VI's port")]
    PortOfOtherVi {
        host: HostName,
        ofport: u32,
        vi: ViId,
        owner: ViId,
    },
    #[error(
        "{host} is not a gateway of {vi}; a MAC can only live behind one of the VI's gateways"
    )]
    NotAGateway { host: HostName, vi: ViId },
    #[error("no entry for {mac} on {vlan} in {vi}")]
    NotFound { vi: ViId, vlan: Vlan, mac: MacAddr },
    #[error("seed entry {index} contradicts entry {earlier} for {what}; keep one line per MAC and per IP")]
    SeedConflict {
        index: usize,
        earlier: usize,
        what: String,
    },
    #[error("ofport {ofport} is not a port of a bridge; write the VM port's number, 1 to 4294967039 (0xfffffeff)")]
    BadOfport { ofport: u32 },
    #[error("{ip} is {why}; a MAC can only answer for a unicast address of its own")]
    BadIp { ip: Ipv4Addr, why: &'static str },
    #[error("{mac} would answer for {count} IPs; one MAC answers for at most {MAX_IPS_PER_MAC}")]
    TooManyIps { mac: MacAddr, count: usize },
    #[error("{ip} is {holder}'s ({origin}); remove it from {holder} first, or repeat with ?take_ips=true to move it")]
    IpHeld {
        ip: Ipv4Addr,
        holder: MacAddr,
        origin: Origin,
    },
}

/// How many IPs one MAC may answer ARP for: a NIC with a whole /24 of
/// addresses fits, and one entry cannot grow the ARP tables without bound.
pub const MAX_IPS_PER_MAC: usize = 256;

/// How much an observation may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    /// A frame or a plain ARP: creates, places, moves learned entries.
    Sighting,
    /// A RARP or GARP: moves anything.
    Announcement,
    /// A seed file: creates, places, takes over learned entries.
    Seed,
}

impl Evidence {
    fn origin(self) -> Origin {
        match self {
            Evidence::Sighting => Origin::Learned,
            Evidence::Announcement => Origin::Announced,
            Evidence::Seed => Origin::Seeded,
        }
    }
}

/// The registry: (VI, VLAN, MAC) → location and (VI, VLAN, IP) → MAC.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    macs: BTreeMap<MacKey, MacEntry>,
    ips: BTreeMap<IpKey, IpEntry>,
    /// Each MAC with each IP bound to it, kept in step with `ips`. One
    /// flat set rather than a set per MAC: a MAC has one IP or a few, and
    /// a set of its own costs a B-tree node (about 60 bytes) each.
    ips_of: BTreeSet<(MacKey, Ipv4Addr)>,
    /// Counts the writes to this registry's entries.
    version: u64,
}

/// Two registries are equal when they hold the same entries, however many
/// changes it took each to get there.
impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.macs == other.macs && self.ips == other.ips
    }
}

impl Eq for Registry {}

/// The key of `ip` in the VI and VLAN of `mac`.
fn ip_key(mac: &MacKey, ip: Ipv4Addr) -> IpKey {
    IpKey {
        vi: mac.vi,
        vlan: mac.vlan,
        ip,
    }
}

/// Whether `mac` can have an entry: unicast and not all zeros.
pub(crate) fn is_usable(mac: MacAddr) -> bool {
    !mac.is_multicast() && mac != MacAddr::ZERO
}

/// Whether `arp` binds its sender IP to its sender: an ARP (not RARP)
/// frame sent by the MAC it names as sender, from a unicast, specified IP.
pub(crate) fn binds_ip(arp: &ArpRepr) -> bool {
    arp.ethertype == EtherType::Arp
        && arp.sha == arp.eth_src
        && !arp.spa.is_unspecified()
        && !arp.spa.is_broadcast()
        && !arp.spa.is_multicast()
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a registry from stored entries.
    pub fn restore(
        macs: impl IntoIterator<Item = (MacKey, MacEntry)>,
        ips: impl IntoIterator<Item = (IpKey, IpEntry)>,
    ) -> Self {
        let mut r = Self {
            macs: macs.into_iter().collect(),
            ..Self::default()
        };
        for (k, e) in ips {
            r.set_ip(k, Some(e));
        }
        r
    }

    pub fn mac(&self, key: &MacKey) -> Option<&MacEntry> {
        self.macs.get(key)
    }

    pub fn ip(&self, key: &IpKey) -> Option<&IpEntry> {
        self.ips.get(key)
    }

    /// Every MAC entry, ordered by (VI, VLAN, MAC).
    pub fn macs(&self) -> impl Iterator<Item = (&MacKey, &MacEntry)> {
        self.macs.iter()
    }

    /// Every IP binding, ordered by (VI, VLAN, IP).
    pub fn ips(&self) -> impl Iterator<Item = (&IpKey, &IpEntry)> {
        self.ips.iter()
    }

    /// The MAC entries of one VI.
    pub fn macs_in(&self, vi: ViId) -> impl Iterator<Item = (&MacKey, &MacEntry)> {
        let lo = MacKey {
            vi,
            vlan: Vlan::Untagged,
            mac: MacAddr::ZERO,
        };
        self.macs.range(lo..).take_while(move |(k, _)| k.vi == vi)
    }

    /// The IP bindings of one VI.
    pub fn ips_in(&self, vi: ViId) -> impl Iterator<Item = (&IpKey, &IpEntry)> {
        let lo = IpKey {
            vi,
            vlan: Vlan::Untagged,
            ip: Ipv4Addr::UNSPECIFIED,
        };
        self.ips.range(lo..).take_while(move |(k, _)| k.vi == vi)
    }

    /// Grows with every write to an entry (a write that changes nothing
    /// included): what was compiled from the registry at one version still
    /// holds at the same version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of MAC entries and of IP bindings.
    pub fn len(&self) -> (usize, usize) {
        (self.macs.len(), self.ips.len())
    }

    pub fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.ips.is_empty()
    }

    /// The IPs bound to one MAC, in order.
    fn ips_of(&self, key: &MacKey) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let lo = (*key, Ipv4Addr::UNSPECIFIED);
        let hi = (*key, Ipv4Addr::BROADCAST);
        self.ips_of.range(lo..=hi).map(|(_, ip)| *ip)
    }

    /// One MAC's entry with its IPs.
    pub fn get(&self, key: &MacKey) -> Option<RegistryEntry> {
        self.macs.get(key).map(|e| self.view(key, e))
    }

    /// Every entry, or those of one VI.
    pub fn list(&self, vi: Option<ViId>) -> Vec<RegistryEntry> {
        match vi {
            Some(vi) => self.macs_in(vi).map(|(k, e)| self.view(k, e)).collect(),
            None => self.macs.iter().map(|(k, e)| self.view(k, e)).collect(),
        }
    }

    fn view(&self, key: &MacKey, e: &MacEntry) -> RegistryEntry {
        RegistryEntry {
            key: *key,
            entry: e.clone(),
            ips: self.ips_of(key).collect(),
        }
    }

    /// Learns from an ARP, GARP or RARP frame that arrived on VM port `port`
    /// (a [`Sighting`] when the port may be a gateway's).
    /// A RARP request or a GARP is an announcement; anything else a sighting.
    /// Frames with a priority tag, a multicast source, or a sender hardware
    /// address that is not the frame's source teach nothing they cannot back.
    pub fn learn_arp<'a>(
        &mut self,
        now: Timestamp,
        port: impl Into<Sighting<'a>>,
        arp: &ArpRepr,
    ) -> Vec<RegistryChange> {
        let port = port.into();
        let Some(vlan) = Vlan::from_vid(arp.tags.first().map(|t| t.vid())) else {
            return Vec::new();
        };
        let src = arp.eth_src;
        let announced = (arp.ethertype == EtherType::Rarp && arp.op == ArpOp::RarpRequest)
            || arp.is_gratuitous();
        let evidence = if announced {
            Evidence::Announcement
        } else {
            Evidence::Sighting
        };
        let mut changes: Vec<RegistryChange> = self
            .sighted(now, &port, vlan, src, evidence)
            .into_iter()
            .collect();
        if binds_ip(arp) {
            let ip_key = IpKey {
                vi: port.port.vi,
                vlan,
                ip: arp.spa,
            };
            changes.extend(self.bind(now, ip_key, src, evidence));
        }
        changes
    }

    /// Places `key` on `port`, which carries its guest's NIC now that the
    /// port it was on has left: as strong as an announcement.
    pub fn follow_nic<'a>(
        &mut self,
        now: Timestamp,
        port: impl Into<Sighting<'a>>,
        key: MacKey,
    ) -> Option<RegistryChange> {
        let port = port.into();
        self.place(now, key, Some(port.location()), Evidence::Announcement)
    }

    /// Learns where `src` lives from any other frame from VM port `port`.
    pub fn learn_source<'a>(
        &mut self,
        now: Timestamp,
        port: impl Into<Sighting<'a>>,
        vlan: Vlan,
        src: MacAddr,
    ) -> Vec<RegistryChange> {
        let port = port.into();
        if !vlan.is_valid() {
            return Vec::new();
        }
        self.sighted(now, &port, vlan, src, Evidence::Sighting)
            .into_iter()
            .collect()
    }

    /// `src` seen on `port`: places it there as far as `evidence` allows.
    fn sighted(
        &mut self,
        now: Timestamp,
        port: &Sighting<'_>,
        vlan: Vlan,
        src: MacAddr,
        evidence: Evidence,
    ) -> Option<RegistryChange> {
        if !is_usable(src) {
            return None;
        }
        let key = MacKey {
            vi: port.port.vi,
            vlan,
            mac: src,
        };
        self.place(now, key, Some(port.location()), evidence)
    }

    /// Initialises a VI's entries from its seed file. The whole file is
    /// checked before anything changes ([`Registry::check_seed`]). Seeding
    /// again (a relaunch, a restart) is harmless: it takes over learned
    /// entries and places unplaced ones, but never moves what an
    /// announcement or the API put somewhere.
    pub fn seed(
        &mut self,
        now: Timestamp,
        topology: &Topology,
        vi: ViId,
        entries: &[SeedEntry],
    ) -> Result<Vec<RegistryChange>, RegistryError> {
        let (macs, ips) = plan_seed(topology, vi, entries).map_err(|mut problems| {
            let (_, first) = problems.swap_remove(0);
            first
        })?;
        let mut changes = Vec::new();
        for (key, (location, _)) in macs {
            changes.extend(self.place(now, key, location, Evidence::Seed));
        }
        for (key, (mac, _)) in ips {
            changes.extend(self.bind(now, key, mac, Evidence::Seed));
        }
        Ok(changes)
    }

    /// Every reason [`Registry::seed`] would refuse `entries` for `vi`, each
    /// with the index of the entry at fault, without changing anything:
    /// what the configuration check and the runtime both rely on.
    pub fn check_seed(
        topology: &Topology,
        vi: ViId,
        entries: &[SeedEntry],
    ) -> Vec<(usize, RegistryError)> {
        plan_seed(topology, vi, entries).err().unwrap_or_default()
    }

    /// The rows of `entries` that would leave a MAC of `vi` answering for
    /// more than [`MAX_IPS_PER_MAC`] IPs with those it answers for already:
    /// a seed adds to a MAC's IPs, so seeding again and again could pass a
    /// limit that [`Registry::check_seed`] holds each seed to alone.
    pub fn seed_beyond_limit(
        &self,
        vi: ViId,
        entries: &[SeedEntry],
    ) -> Vec<(usize, RegistryError)> {
        let mut held: BTreeMap<MacKey, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        let mut problems = Vec::new();
        for (index, s) in entries.iter().enumerate() {
            let Some(ip) = s.ip else { continue };
            let key = MacKey {
                vi,
                vlan: s.vlan,
                mac: s.mac,
            };
            let ips = held
                .entry(key)
                .or_insert_with(|| self.ips_of(&key).collect());
            if ips.insert(ip) && ips.len() == MAX_IPS_PER_MAC + 1 {
                problems.push((
                    index,
                    RegistryError::TooManyIps {
                        mac: s.mac,
                        count: MAX_IPS_PER_MAC + 1,
                    },
                ));
            }
        }
        problems
    }

    /// The API's put: the MAC's location and exactly the IPs given, all
    /// pinned. IPs given here are taken from any other MAC that had them
    /// (see [`Registry::held_elsewhere`] for refusing that).
    pub fn put(
        &mut self,
        now: Timestamp,
        topology: &Topology,
        spec: &EntrySpec,
    ) -> Result<Vec<RegistryChange>, RegistryError> {
        validate(topology, &spec.key, spec.location.as_ref())?;
        check_ips(&spec.key, &spec.ips)?;
        let key = spec.key;
        let mut changes = Vec::new();
        let entry = MacEntry {
            location: spec.location.clone(),
            origin: Origin::Api,
            since: now,
        };
        let unchanged = self
            .macs
            .get(&key)
            .is_some_and(|e| e.location == entry.location && e.origin == Origin::Api);
        if !unchanged {
            changes.extend(self.set_mac(key, Some(entry)));
        }
        let wanted: BTreeSet<Ipv4Addr> = spec.ips.iter().copied().collect();
        let had: BTreeSet<Ipv4Addr> = self.ips_of(&key).collect();
        for ip in had.difference(&wanted) {
            changes.extend(self.set_ip(ip_key(&key, *ip), None));
        }
        for ip in wanted {
            let ip_key = ip_key(&key, ip);
            let same = self
                .ips
                .get(&ip_key)
                .is_some_and(|e| e.mac == key.mac && e.origin == Origin::Api);
            if !same {
                let e = IpEntry {
                    mac: key.mac,
                    origin: Origin::Api,
                    since: now,
                };
                changes.extend(self.set_ip(ip_key, Some(e)));
            }
        }
        Ok(changes)
    }

    /// The first IP of `spec` that another MAC answers for by
    /// configuration, the API or an announcement: a put would take it
    /// away from that MAC. (A learned binding is only a guess and is
    /// taken without asking.)
    pub fn held_elsewhere(&self, spec: &EntrySpec) -> Result<(), RegistryError> {
        for ip in &spec.ips {
            if let Some(e) = self.ips.get(&ip_key(&spec.key, *ip)) {
                if e.mac != spec.key.mac && e.origin.is_pinned() {
                    return Err(RegistryError::IpHeld {
                        ip: *ip,
                        holder: e.mac,
                        origin: e.origin,
                    });
                }
            }
        }
        Ok(())
    }

    /// The MAC entries whose location is on `host`'s bridge or behind it.
    pub fn located_at(&self, host: &HostName) -> Vec<MacKey> {
        self.macs
            .iter()
            .filter(|(_, e)| e.location.as_ref().is_some_and(|l| l.host() == host))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The MAC entries of `vi` that live behind a gateway not in `gateways`.
    pub fn behind_other_gateways(&self, vi: ViId, gateways: &[HostName]) -> Vec<MacKey> {
        self.macs_in(vi)
            .filter(|(_, e)| {
                matches!(&e.location, Some(Location::BehindGateway { gateway })
                    if !gateways.contains(gateway))
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// The entries `topology` no longer allows, each with why: what a
    /// store holds after the configuration file dropped a host, a VI or a
    /// VI's gateway that entries were placed on.
    pub fn stranded(&self, topology: &Topology) -> Vec<(MacKey, RegistryError)> {
        self.macs
            .iter()
            .filter_map(|(k, e)| Some((*k, validate(topology, k, e.location.as_ref()).err()?)))
            .collect()
    }

    /// Removes these MACs and the IPs bound to them.
    pub fn remove(&mut self, keys: &[MacKey]) -> Vec<RegistryChange> {
        keys.iter().flat_map(|k| self.remove_mac(k)).collect()
    }

    /// Removes a MAC and the IPs bound to it.
    pub fn delete(&mut self, key: &MacKey) -> Result<Vec<RegistryChange>, RegistryError> {
        if !self.macs.contains_key(key) {
            return Err(RegistryError::NotFound {
                vi: key.vi,
                vlan: key.vlan,
                mac: key.mac,
            });
        }
        Ok(self.remove_mac(key))
    }

    /// Removes every entry of a VI (the VI was deleted).
    pub fn remove_vi(&mut self, vi: ViId) -> Vec<RegistryChange> {
        let keys: Vec<MacKey> = self.macs_in(vi).map(|(k, _)| *k).collect();
        let mut changes = self.remove(&keys);
        let orphans: Vec<IpKey> = self.ips_in(vi).map(|(k, _)| *k).collect();
        changes.extend(orphans.into_iter().filter_map(|k| self.set_ip(k, None)));
        changes
    }

    fn remove_mac(&mut self, key: &MacKey) -> Vec<RegistryChange> {
        let ips: Vec<Ipv4Addr> = self.ips_of(key).collect();
        let mut changes: Vec<RegistryChange> = ips
            .into_iter()
            .filter_map(|ip| self.set_ip(ip_key(key, ip), None))
            .collect();
        changes.extend(self.set_mac(*key, None));
        changes
    }

    /// Applies a location observation with the trust rules.
    fn place(
        &mut self,
        now: Timestamp,
        key: MacKey,
        location: Option<Location>,
        evidence: Evidence,
    ) -> Option<RegistryChange> {
        let new = |location: Option<Location>, origin| MacEntry {
            location,
            origin,
            since: now,
        };
        let next = match self.macs.get(&key) {
            None => new(location, evidence.origin()),
            Some(cur) => {
                let location = location.or_else(|| cur.location.clone());
                let moves = location != cur.location;
                let origin = match (evidence, cur.origin) {
                    (Evidence::Announcement, o) if !moves && o.is_pinned() => return None,
                    (Evidence::Announcement, _) => Origin::Announced,
                    // Configuration takes over a guess.
                    (Evidence::Seed, Origin::Learned) => Origin::Seeded,
                    // What configuration, the API or an announcement placed
                    // stays put until the next announcement.
                    (_, o) if o.is_pinned() && cur.location.is_some() => return None,
                    (_, o) => o,
                };
                if !moves && origin == cur.origin {
                    return None;
                }
                new(location, origin)
            }
        };
        self.set_mac(key, Some(next))
    }

    /// Applies an IP→MAC observation with the trust rules.
    fn bind(
        &mut self,
        now: Timestamp,
        key: IpKey,
        mac: MacAddr,
        evidence: Evidence,
    ) -> Option<RegistryChange> {
        let origin = match self.ips.get(&key) {
            None => evidence.origin(),
            Some(cur) => match (evidence, cur.origin) {
                (Evidence::Announcement, _) if cur.mac != mac || cur.origin == Origin::Learned => {
                    Origin::Announced
                }
                (Evidence::Seed, Origin::Learned) => Origin::Seeded,
                (Evidence::Sighting, Origin::Learned) if cur.mac != mac => Origin::Learned,
                _ => return None,
            },
        };
        let e = IpEntry {
            mac,
            origin,
            since: now,
        };
        self.set_ip(key, Some(e))
    }

    /// Sets the entry of `key` as stored elsewhere (`None`: none).
    pub fn restore_mac(&mut self, key: MacKey, entry: Option<MacEntry>) {
        self.set_mac(key, entry);
    }

    /// Sets the binding of `key` as stored elsewhere (`None`: none).
    pub fn restore_ip(&mut self, key: IpKey, entry: Option<IpEntry>) {
        self.set_ip(key, entry);
    }

    /// Undoes `changes` (as made, in order): each entry goes back to what
    /// it was before them.
    pub fn revert(&mut self, changes: &[RegistryChange]) {
        for c in changes.iter().rev() {
            match c {
                RegistryChange::Mac(c) => {
                    self.set_mac(c.key, c.before.clone());
                }
                RegistryChange::Ip(c) => {
                    self.set_ip(c.key, c.before.clone());
                }
            }
        }
    }

    /// The one place MAC entries change.
    fn set_mac(&mut self, key: MacKey, after: Option<MacEntry>) -> Option<RegistryChange> {
        let before = match &after {
            Some(e) => self.macs.insert(key, e.clone()),
            None => self.macs.remove(&key),
        };
        self.version += 1;
        (before != after).then_some(RegistryChange::Mac(Change { key, before, after }))
    }

    /// The one place IP bindings change; keeps the reverse index in step.
    fn set_ip(&mut self, key: IpKey, after: Option<IpEntry>) -> Option<RegistryChange> {
        let before = match &after {
            Some(e) => self.ips.insert(key, e.clone()),
            None => self.ips.remove(&key),
        };
        let owner = |mac| MacKey {
            vi: key.vi,
            vlan: key.vlan,
            mac,
        };
        if let Some(b) = &before {
            self.ips_of.remove(&(owner(b.mac), key.ip));
        }
        if let Some(a) = &after {
            self.ips_of.insert((owner(a.mac), key.ip));
        }
        self.version += 1;
        (before != after).then_some(RegistryChange::Ip(Change { key, before, after }))
    }
}

/// A seed file's MAC locations and IP bindings, each with the index of the
/// entry that set it.
type SeedPlan = (
    BTreeMap<MacKey, (Option<Location>, usize)>,
    BTreeMap<IpKey, (MacAddr, usize)>,
);

/// What seeding `entries` would set, or every entry that cannot be seeded.
fn plan_seed(
    topology: &Topology,
    vi: ViId,
    entries: &[SeedEntry],
) -> Result<SeedPlan, Vec<(usize, RegistryError)>> {
    let mut macs: BTreeMap<MacKey, (Option<Location>, usize)> = BTreeMap::new();
    let mut ips: BTreeMap<IpKey, (MacAddr, usize)> = BTreeMap::new();
    // IPs per MAC, for the limit.
    let mut counts: BTreeMap<MacKey, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, s) in entries.iter().enumerate() {
        let key = MacKey {
            vi,
            vlan: s.vlan,
            mac: s.mac,
        };
        if let Err(e) = validate(topology, &key, s.location.as_ref()) {
            problems.push((index, e));
            continue;
        }
        let slot = macs.entry(key).or_insert((None, index));
        match (&slot.0, &s.location) {
            (Some(a), Some(b)) if a != b => problems.push((
                index,
                RegistryError::SeedConflict {
                    index,
                    earlier: slot.1,
                    what: format!("{} on {}", s.mac, s.vlan),
                },
            )),
            (None, Some(b)) => *slot = (Some(b.clone()), index),
            _ => {}
        }
        if let Some(ip) = s.ip {
            if let Some(why) = host_address_problem(ip) {
                problems.push((index, RegistryError::BadIp { ip, why }));
                continue;
            }
            let count = counts.entry(key).or_insert(0);
            *count += 1;
            if *count == MAX_IPS_PER_MAC + 1 {
                problems.push((
                    index,
                    RegistryError::TooManyIps {
                        mac: s.mac,
                        count: MAX_IPS_PER_MAC + 1,
                    },
                ));
            }
            let ip_key = IpKey {
                vi,
                vlan: s.vlan,
                ip,
            };
            match ips.get(&ip_key) {
                Some((mac, earlier)) if *mac != s.mac => problems.push((
                    index,
                    RegistryError::SeedConflict {
                        index,
                        earlier: *earlier,
                        what: format!("{ip} on {}", s.vlan),
                    },
                )),
                Some(_) => {}
                None => {
                    ips.insert(ip_key, (s.mac, index));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok((macs, ips))
    } else {
        Err(problems)
    }
}

/// Checks the IPs a put gives a MAC: each a unicast address of its own,
/// and not too many.
fn check_ips(key: &MacKey, ips: &[Ipv4Addr]) -> Result<(), RegistryError> {
    if let Some((ip, why)) = ips
        .iter()
        .find_map(|ip| Some((*ip, host_address_problem(*ip)?)))
    {
        return Err(RegistryError::BadIp { ip, why });
    }
    let count = ips.iter().collect::<BTreeSet<_>>().len();
    if count > MAX_IPS_PER_MAC {
        return Err(RegistryError::TooManyIps {
            mac: key.mac,
            count,
        });
    }
    Ok(())
}

/// Checks a key and a location against the topology: a VI's MAC can only
/// live on one of its own ports or behind one of its gateways.
fn validate(
    topology: &Topology,
    key: &MacKey,
    location: Option<&Location>,
) -> Result<(), RegistryError> {
    if !is_usable(key.mac) {
        return Err(RegistryError::NotUnicast { mac: key.mac });
    }
    if let Vlan::Tagged(v) = key.vlan {
        if !key.vlan.is_valid() {
            return Err(RegistryError::BadVlan(v));
        }
    }
    if !topology.vis.contains_key(&key.vi) {
        return Err(RegistryError::UnknownVi { vi: key.vi });
    }
    match location {
        None => Ok(()),
        Some(Location::Port { host, ofport }) => {
            if !is_port_number(*ofport) {
                return Err(RegistryError::BadOfport { ofport: *ofport });
            }
            if !topology.hosts.contains_key(host) {
                return Err(RegistryError::UnknownHost { host: host.clone() });
            }
            match topology.vm_port(host, *ofport) {
                Some(p) if p.vi != key.vi => Err(RegistryError::PortOfOtherVi {
                    host: host.clone(),
                    ofport: *ofport,
                    vi: key.vi,
                    owner: p.vi,
                }),
                _ => Ok(()),
            }
        }
        Some(Location::BehindGateway { gateway }) => {
            if topology.is_gateway_of(gateway, key.vi) {
                Ok(())
            } else {
                Err(RegistryError::NotAGateway {
                    host: gateway.clone(),
                    vi: key.vi,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
