//! Persistence: the registry, hosts and VIs survive a controller restart.
//!
//! The [`Store`] trait is a key-value store that applies a [`Batch`] at
//! once and hands everything back on [`Store::load`]. Keys are text with a
//! version prefix (`v1/mac/<vi>/<vlan>/<mac>`, `v1/ip/...`, `v1/host/<name>`,
//! `v1/vi/<id>`) so a backend with prefix ranges (sled here, etcd later) can
//! keep them as they are; values are JSON records, checked strictly on the
//! way back. A record that does not decode, or that is filed under a key it
//! does not belong to, is a [`StoreError::Corrupt`] naming the key.
//!
//! Backends are synchronous: sled is, and an etcd backend would run its
//! client on its own thread. The runtime calls the store from a blocking
//! task, one batch per registry change list.

use crate::model::{Host, HostName, HostRole, IpKey, Location, MacKey, Vi, ViId, Vlan};
use crate::registry::{IpEntry, MacEntry, Origin, Registry, RegistryChange, Timestamp};
use ofp::packet::MacAddr;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stored record {key} is unreadable: {reason}; delete the record or restore the store from a backup")]
    Corrupt { key: String, reason: String },
    #[error(
        "another iris-controller is using the store {}; stop it, or set `store` in the \
         configuration to another directory",
        path.display()
    )]
    InUse { path: std::path::PathBuf },
    #[error("the {backend} store failed: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend {
            backend: "sled",
            message: e.to_string(),
        }
    }
}

/// Everything a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub hosts: Vec<Host>,
    pub vis: Vec<Vi>,
    pub macs: Vec<(MacKey, MacEntry)>,
    pub ips: Vec<(IpKey, IpEntry)>,
}

impl Snapshot {
    /// The registry the stored entries make up.
    pub fn registry(&self) -> Registry {
        Registry::restore(self.macs.iter().cloned(), self.ips.iter().cloned())
    }
}

/// Writes to apply together: `None` deletes the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<(String, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The writes that make a store follow these registry changes.
    pub fn from_changes(changes: &[RegistryChange]) -> Self {
        let mut b = Self::new();
        b.record_changes(changes);
        b
    }

    pub fn record_changes(&mut self, changes: &[RegistryChange]) {
        for c in changes {
            match c {
                RegistryChange::Mac(c) => {
                    let value = c.after.as_ref().map(|e| encode(&MacRecord::new(&c.key, e)));
                    self.ops.push((mac_key(&c.key), value));
                }
                RegistryChange::Ip(c) => {
                    let value = c.after.as_ref().map(|e| encode(&IpRecord::new(&c.key, e)));
                    self.ops.push((ip_key(&c.key), value));
                }
            }
        }
    }

    pub fn put_host(&mut self, host: &Host) {
        let value = encode(&HostRecord::new(host));
        self.ops.push((host_key(&host.name), Some(value)));
    }

    pub fn delete_host(&mut self, name: &HostName) {
        self.ops.push((host_key(name), None));
    }

    pub fn put_vi(&mut self, vi: &Vi) {
        self.ops
            .push((vi_key(vi.id), Some(encode(&ViRecord::new(vi)))));
    }

    pub fn delete_vi(&mut self, id: ViId) {
        self.ops.push((vi_key(id), None));
    }

    /// Adds `other`'s writes after these.
    pub fn append(&mut self, mut other: Batch) {
        self.ops.append(&mut other.ops);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes in order; a later write to a key wins.
    pub fn ops(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.ops.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// The writes in order, at most `n` at a time.
    pub fn chunks(
        &self,
        n: usize,
    ) -> impl Iterator<Item = impl Iterator<Item = (&str, Option<&[u8]>)>> {
        self.ops
            .chunks(n.max(1))
            .map(|c| c.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
    }
}

/// Persistence behind one interface.
pub trait Store {
    /// Everything stored, decoded.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Applies the writes of `batch`, durably before it returns. A batch
    /// of at most [`ATOMIC_OPS`] writes is applied whole or not at all; a
    /// larger one (a seed) may be applied in pieces, so a crash or an error
    /// in between leaves the store holding a prefix of its writes, in
    /// order. Nothing is announced or answered before this returned `Ok`,
    /// so a prefix is never told to anyone before the controller restarts
    /// (a burst's learned flows may already be on the switches, and the
    /// restart's reconciliation takes them back).
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
}

/// The largest batch every backend applies atomically. Registry changes
/// list a seed's MAC entries before its IP bindings, and an IP's MAC before
/// the IP elsewhere, so any prefix of a larger batch is a registry in which
/// every stored IP's MAC is stored too.
pub const ATOMIC_OPS: usize = 256;

/// The page cache of the sled store. The registry lives in memory and
/// the store is only written after the start, so the cache buys little:
/// 4 MiB instead of 16 took 20–30 MiB off the controller at 100 k MACs
/// with no change in seeding time (docs/benchmarks.md).
const SLED_CACHE_BYTES: u64 = 4 << 20;

/// The embedded default: a sled database on local disk.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        // sled's default page cache is 1 GiB; the registry is read whole at
        // start and then only written, so a small cache is enough.
        let opened = sled::Config::new()
            .path(path.as_ref())
            .cache_capacity(SLED_CACHE_BYTES)
            .open();
        match opened {
            Ok(db) => Ok(Self { db }),
            // sled holds an exclusive lock on its files while open, and
            // reports a held one only in this message (with kind Other).
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                Err(StoreError::InUse {
                    path: path.as_ref().to_owned(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Store for SledStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let mut records = Vec::new();
        for kv in self.db.scan_prefix(PREFIX) {
            let (k, v) = kv?;
            records.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        decode_all(records)
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let db = self.db.clone();
        self.commit_in_chunks(batch, |b| Ok(db.apply_batch(b)?))
    }
}

impl SledStore {
    /// Applies `batch` through `apply`, [`ATOMIC_OPS`] writes per sled
    /// batch, and flushes once at the end. sled keeps every tree node a
    /// batch replaces until the batch ends: one batch of a 100 000-entry
    /// seed peaked at some 80 MB, which the allocator then kept.
    fn commit_in_chunks(
        &self,
        batch: &Batch,
        mut apply: impl FnMut(sled::Batch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for chunk in batch.chunks(ATOMIC_OPS) {
            let mut b = sled::Batch::default();
            for (k, v) in chunk {
                match v {
                    Some(v) => b.insert(k, v),
                    None => b.remove(k),
                }
            }
            apply(b)?;
        }
        // A kill -9 right after a move must not lose it.
        self.db.flush()?;
        Ok(())
    }
}

/// A store whose disk is full: every commit fails.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FullDisk;

#[cfg(test)]
impl Store for FullDisk {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::default())
    }

    fn commit(&mut self, _: &Batch) -> Result<(), StoreError> {
        Err(StoreError::Backend {
            backend: "test",
            message: "no space left on device".into(),
        })
    }
}

/// A store in memory, for tests and for running without a disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    records: BTreeMap<String, Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        decode_all(self.records.iter().map(|(k, v)| (k.clone(), v.clone())))
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        for (k, v) in batch.ops() {
            match v {
                Some(v) => self.records.insert(k.to_owned(), v.to_vec()),
                None => self.records.remove(k),
            };
        }
        Ok(())
    }
}

/// Every key starts with the layout version.
const PREFIX: &str = "v1/";

fn vlan_text(v: Vlan) -> String {
    match v {
        Vlan::Untagged => "untagged".to_owned(),
        Vlan::Tagged(id) => id.to_string(),
    }
}

fn mac_key(k: &MacKey) -> String {
    format!("{PREFIX}mac/{}/{}/{}", k.vi.0, vlan_text(k.vlan), k.mac)
}

fn ip_key(k: &IpKey) -> String {
    format!("{PREFIX}ip/{}/{}/{}", k.vi.0, vlan_text(k.vlan), k.ip)
}

fn host_key(name: &HostName) -> String {
    format!("{PREFIX}host/{name}")
}

fn vi_key(id: ViId) -> String {
    format!("{PREFIX}vi/{}", id.0)
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Records are plain structs of strings and numbers: serialising them
    // cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Decodes every record, each checked against the key it was found under.
fn decode_all(
    records: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Snapshot, StoreError> {
    let mut s = Snapshot::default();
    for (key, value) in records {
        let kind = key
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        match kind {
            "mac" => {
                let r: MacRecord = decode(&key, &value)?;
                let (k, e) = r.typed().map_err(|reason| corrupt(&key, reason))?;
                check_key(&key, mac_key(&k))?;
                s.macs.push((k, e));
            }
            "ip" => {
                let r: IpRecord = decode(&key, &value)?;
                let (k, e) = r.typed().map_err(|reason| corrupt(&key, reason))?;
                check_key(&key, ip_key(&k))?;
                s.ips.push((k, e));
            }
            "host" => {
                let r: HostRecord = decode(&key, &value)?;
                let h = r.typed().map_err(|reason| corrupt(&key, reason))?;
                check_key(&key, host_key(&h.name))?;
                s.hosts.push(h);
            }
            "vi" => {
                let r: ViRecord = decode(&key, &value)?;
                let vi = r.typed();
                check_key(&key, vi_key(vi.id))?;
                s.vis.push(vi);
            }
            _ => return Err(corrupt(&key, "not a kind of record Iris stores".to_owned())),
        }
    }
    Ok(s)
}

fn corrupt(key: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    }
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e.to_string()))
}

fn check_key(found: &str, belongs: String) -> Result<(), StoreError> {
    if found == belongs {
        Ok(())
    } else {
        Err(corrupt(
            found,
            format!("the record belongs under {belongs}"),
        ))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MacRecord {
    vi: u32,
    /// 0 for untagged.
    vlan: u16,
    mac: String,
    location: Option<LocationRecord>,
    origin: OriginRecord,
    since_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IpRecord {
    vi: u32,
    vlan: u16,
    ip: Ipv4Addr,
    mac: String,
    origin: OriginRecord,
    since_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
enum LocationRecord {
    Port { host: String, ofport: u32 },
    BehindGateway { gateway: String },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OriginRecord {
    Seeded,
    Learned,
    Announced,
    Api,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostRecord {
    name: String,
    underlay_ip: Ipv4Addr,
    role: RoleRecord,
    ovsdb_remote: String,
    datapath_id: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RoleRecord {
    Compute,
    Gateway,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViRecord {
    id: u32,
    name: String,
    gre_key: u32,
    gateways: Vec<String>,
}

fn vlan_wire(v: Vlan) -> u16 {
    match v {
        Vlan::Untagged => 0,
        Vlan::Tagged(id) => id,
    }
}

fn vlan_typed(v: u16) -> Result<Vlan, String> {
    match v {
        0 => Ok(Vlan::Untagged),
        1..=4094 => Ok(Vlan::Tagged(v)),
        _ => Err(format!("VLAN {v} is out of range")),
    }
}

fn mac_typed(s: &str) -> Result<MacAddr, String> {
    s.parse::<MacAddr>().map_err(|e| e.to_string())
}

impl From<Origin> for OriginRecord {
    fn from(o: Origin) -> Self {
        match o {
            Origin::Seeded => Self::Seeded,
            Origin::Learned => Self::Learned,
            Origin::Announced => Self::Announced,
            Origin::Api => Self::Api,
        }
    }
}

impl From<OriginRecord> for Origin {
    fn from(o: OriginRecord) -> Self {
        match o {
            OriginRecord::Seeded => Self::Seeded,
            OriginRecord::Learned => Self::Learned,
            OriginRecord::Announced => Self::Announced,
            OriginRecord::Api => Self::Api,
        }
    }
}

impl MacRecord {
    fn new(k: &MacKey, e: &MacEntry) -> Self {
        Self {
            vi: k.vi.0,
            vlan: vlan_wire(k.vlan),
            mac: k.mac.to_string(),
            location: e.location.as_ref().map(|l| match l {
                Location::Port { host, ofport } => LocationRecord::Port {
                    host: host.0.clone(),
                    ofport: *ofport,
                },
                Location::BehindGateway { gateway } => LocationRecord::BehindGateway {
                    gateway: gateway.0.clone(),
                },
            }),
            origin: e.origin.into(),
            since_ms: e.since.0,
        }
    }

    fn typed(self) -> Result<(MacKey, MacEntry), String> {
        let key = MacKey {
            vi: ViId(self.vi),
            vlan: vlan_typed(self.vlan)?,
            mac: mac_typed(&self.mac)?,
        };
        let location = self.location.map(|l| match l {
            LocationRecord::Port { host, ofport } => Location::Port {
                host: HostName(host),
                ofport,
            },
            LocationRecord::BehindGateway { gateway } => Location::BehindGateway {
                gateway: HostName(gateway),
            },
        });
        let entry = MacEntry {
            location,
            origin: self.origin.into(),
            since: Timestamp(self.since_ms),
        };
        Ok((key, entry))
    }
}

impl IpRecord {
    fn new(k: &IpKey, e: &IpEntry) -> Self {
        Self {
            vi: k.vi.0,
            vlan: vlan_wire(k.vlan),
            ip: k.ip,
            mac: e.mac.to_string(),
            origin: e.origin.into(),
            since_ms: e.since.0,
        }
    }

    fn typed(self) -> Result<(IpKey, IpEntry), String> {
        let key = IpKey {
            vi: ViId(self.vi),
            vlan: vlan_typed(self.vlan)?,
            ip: self.ip,
        };
        let entry = IpEntry {
            mac: mac_typed(&self.mac)?,
            origin: self.origin.into(),
            since: Timestamp(self.since_ms),
        };
        Ok((key, entry))
    }
}

impl HostRecord {
    fn new(h: &Host) -> Self {
        Self {
            name: h.name.0.clone(),
            underlay_ip: h.underlay_ip,
            role: match h.role {
                HostRole::Compute => RoleRecord::Compute,
                HostRole::Gateway => RoleRecord::Gateway,
            },
            ovsdb_remote: h.ovsdb_remote.clone(),
            datapath_id: h.datapath_id,
        }
    }

    fn typed(self) -> Result<Host, String> {
        if self.name.is_empty() {
            return Err("a host needs a name".to_owned());
        }
        Ok(Host {
            name: HostName(self.name),
            underlay_ip: self.underlay_ip,
            role: match self.role {
                RoleRecord::Compute => HostRole::Compute,
                RoleRecord::Gateway => HostRole::Gateway,
            },
            ovsdb_remote: self.ovsdb_remote,
            datapath_id: self.datapath_id,
        })
    }
}

impl ViRecord {
    fn new(v: &Vi) -> Self {
        Self {
            id: v.id.0,
            name: v.name.clone(),
            gre_key: v.gre_key,
            gateways: v.gateways.iter().map(|g| g.0.clone()).collect(),
        }
    }

    fn typed(self) -> Vi {
        Vi {
            id: ViId(self.id),
            name: self.name,
            gre_key: self.gre_key,
            gateways: self.gateways.into_iter().map(HostName).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
