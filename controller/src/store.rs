//! Persistence: the registry, hosts and VIs survive a controller restart.
//!
//! The [`Store`] trait is a key-value store that applies a [`Batch`] at
//! once and hands everything back on [`Store::load`]. Keys are text with a
//! version prefix (`v1/mac/<vi>/<vlan>/<mac>`, `v1/ip/...`, `v1/host/<name>`,
//! `v1/vi/<id>`) so a backend with prefix ranges (sled here, etcd later) can
//! keep them as they are; values are JSON records, checked strictly on the
//! way back. A record that does not decode, or that is filed under a key it
//! does not belong to, is a [`StoreError::Corrupt`] naming the key. The
//! sled store also keeps an account of itself and refuses to open files
//! that do not match it ([`SledStore`], [`StoreError::Unusable`]).
//!
//! Backends are synchronous: sled is, and the etcd backend ([`etcd`])
//! runs its client on a runtime of its own and waits for it. The runtime
//! calls the store from a blocking task, one batch per registry change
//! list.

use crate::model::{Host, HostName, HostRole, IpKey, Location, MacKey, Vi, ViId, Vlan};
use crate::registry::{IpEntry, MacEntry, Origin, Registry, RegistryChange, Timestamp};
use ofp::packet::MacAddr;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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
    InUse { path: PathBuf },
    /// The store's files are damaged, belong to another program or to a
    /// newer Iris: `problem` names the file.
    #[error(
        "{problem}; restore the directory {} from a backup (all of it), or start once with \
         `iris-controller run --empty-store` to move it aside and begin with an empty store",
        dir.display()
    )]
    Unusable { dir: PathBuf, problem: String },
    /// The store cannot take the write now (etcd without a quorum, or
    /// out of reach): nothing of it was made, and the controller goes on
    /// with what it holds in memory.
    #[error("the {backend} store is unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
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
    /// A step of the work commits leave that nothing waits for (the sled
    /// store folds its journal here); whether more is left. Run after a
    /// commit's result went out, a step at a time between commits, so that
    /// no answer waits for more than a step. A store whose tidying fails
    /// keeps what it has and does the work later, at the latest in a
    /// commit, which fails if it still cannot.
    fn tidy(&mut self) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The hosts and VIs alone, as the store held them at `revision` (0:
    /// now): what a follower reads again after a commit that changed them.
    fn load_topology(&self, revision: i64) -> Result<Snapshot, StoreError> {
        let _ = revision;
        let mut s = self.load()?;
        s.macs.clear();
        s.ips.clear();
        Ok(s)
    }
    /// The revision the last [`Store::load`] read at, from which a reader
    /// can follow the later commits of another handle (the etcd store's);
    /// `None` for a store no one else writes.
    fn loaded_at(&self) -> Option<i64> {
        None
    }
    /// The revision of the store's marker as this handle last wrote or read
    /// it ([`Store::lead`] reads it): every commit is at or before it.
    fn marker_revision(&self) -> Option<i64> {
        None
    }
    /// Makes every later commit conditional on `leadership` (a replica of
    /// a `[cluster]` that just won the election), so that once another
    /// replica leads, this one's late commit is refused
    /// ([`StoreError::Unavailable`]) rather than applied; and takes what
    /// other leaders wrote meanwhile as the store's current state. Only
    /// the etcd store is shared.
    fn lead(&mut self, leadership: &crate::election::Leadership) -> Result<(), StoreError> {
        let _ = leadership;
        Ok(())
    }
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
///
/// sled reads a damaged database in ways that do not tell: random bytes
/// as an empty store, a cut one as an older state, some damage as a panic.
/// So the store keeps its own account of what it holds: a marker record
/// ([`MARKER_KEY`]) with the program, the layout's format, the number of
/// the write and how many records of each kind there are, written in the
/// same sled batch as every write; and beside the database a copy of the
/// last marker ([`WITNESS_FILE`]), written after each flush, which a
/// database that lost its latest writes cannot match. The witness is
/// replaced by a rename when the store opens and then overwritten in place,
/// one write per commit: a rename per commit (a new file, a directory
/// update) cost more than the commit's flush. Opening checks the
/// files before sled reads them, catches sled's panics, and compares what
/// sled read with both.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    dir: PathBuf,
    marker: Marker,
    /// The witness, open for overwriting, and its length.
    witness: Option<(std::fs::File, usize)>,
    /// Commits of many writes, not folded into the records yet.
    journal: journal::Journal,
    limits: journal::Limits,
    /// A fold under way, done a step at a time between commits.
    folding: Option<Folding>,
}

/// What a fold under way has left to write into sled's records: the
/// latest value of each key of the entries numbered below `upto`, in key
/// order. Entries appended meanwhile stay in the journal, which is read
/// on top of the records, so a key a later entry changed again reads at
/// its later value whatever the fold wrote.
#[derive(Debug)]
struct Folding {
    upto: u64,
    left: std::collections::VecDeque<(String, Option<Vec<u8>>)>,
}

/// The key of the store's own account, outside the records' prefix.
const MARKER_KEY: &str = "iris/store";
/// The file beside sled's that holds a copy of the last marker written.
pub const WITNESS_FILE: &str = "iris-store.json";
const PROGRAM: &str = "iris-controller";
/// The layout this release writes ([`PREFIX`], and since 2 the journal
/// beside the database); it reads every one from 1 on.
const FORMAT: u32 = 2;

/// What a store holds, by the store's own account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    program: String,
    format: u32,
    /// How many sled batches have been written since the marker was
    /// stamped.
    write: u64,
    records: Counts,
    /// Journal entries numbered below this are in the records.
    #[serde(default)]
    journal_folded: u64,
    /// The number after the last journal entry appended. The witness's
    /// copy is the one that counts (the database's is only as recent as
    /// its last sled write).
    #[serde(default)]
    journal_next: u64,
}

/// Records by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Counts {
    mac: u64,
    ip: u64,
    host: u64,
    vi: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.mac + self.ip + self.host + self.vi
    }

    fn slot(&mut self, key: &str) -> Option<&mut u64> {
        match key.strip_prefix(PREFIX)?.split('/').next()? {
            "mac" => Some(&mut self.mac),
            "ip" => Some(&mut self.ip),
            "host" => Some(&mut self.host),
            "vi" => Some(&mut self.vi),
            _ => None,
        }
    }

    fn differences(&self, recorded: &Counts) -> Vec<String> {
        [
            ("MAC", self.mac, recorded.mac),
            ("IP", self.ip, recorded.ip),
            ("host", self.host, recorded.host),
            ("VI", self.vi, recorded.vi),
        ]
        .into_iter()
        .filter(|(_, found, recorded)| found != recorded)
        .map(|(what, found, recorded)| {
            format!("{found} {what} records where it recorded {recorded}")
        })
        .collect()
    }
}

impl Marker {
    fn new(records: Counts) -> Self {
        Self {
            program: PROGRAM.to_owned(),
            format: FORMAT,
            write: 0,
            records,
            journal_folded: 0,
            journal_next: 0,
        }
    }
}

impl SledStore {
    /// Opens the database in directory `path`, or creates it there; refuses
    /// ([`StoreError::Unusable`]) one that is damaged, not Iris's, or of a
    /// newer format, naming the file.
    ///
    /// A lock still held by another process is waited for up to
    /// [`lock::LOCK_WAIT`] (a predecessor killed a moment ago may still
    /// hold it) before [`StoreError::InUse`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_waiting(path.as_ref(), false)
    }

    /// [`SledStore::open`], but a database whose witness ([`WITNESS_FILE`])
    /// is missing is taken as it is and the witness written anew: for an
    /// operator who knows that only that file was lost (`run
    /// --accept-store`).
    pub fn open_accepting(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_waiting(path.as_ref(), true)
    }

    fn open_waiting(path: &Path, accept_missing_witness: bool) -> Result<Self, StoreError> {
        lock::open_waiting(
            path,
            lock::LOCK_WAIT,
            || Self::open_with(path, accept_missing_witness),
            |e| matches!(e, StoreError::InUse { .. }),
        )
    }

    fn open_with(path: impl AsRef<Path>, accept_missing_witness: bool) -> Result<Self, StoreError> {
        let dir = path.as_ref().to_owned();
        let unusable = |problem: String| StoreError::Unusable {
            dir: dir.clone(),
            problem,
        };
        let db_file = dir.join("db");
        let db_bytes = std::fs::metadata(&db_file).map(|m| m.len()).ok();
        let witness = read_witness(&dir);
        let segment_size = check_sled_conf(&dir, db_bytes.unwrap_or(0)).map_err(&unusable)?;
        if let (Some(size), Some(n @ 1..)) = (segment_size, db_bytes) {
            if !has_a_segment(&db_file, size).map_err(&unusable)? {
                // sled would start a new log over it.
                return Err(unusable(format!(
                    "{} is damaged: sled finds nothing it wrote in its {n} bytes",
                    db_file.display()
                )));
            }
        }
        if db_bytes == Some(0) && witness.is_some() {
            return Err(unusable(format!(
                "{} is damaged: it is empty, although the store has been written to",
                db_file.display()
            )));
        }
        let opened = std::panic::catch_unwind(|| {
            // sled's default page cache is 1 GiB; the registry is read
            // whole at start and then only written, so a small cache is
            // enough.
            // No flush but the store's own: a store refused is left as
            // sled found it.
            sled::Config::new()
                .path(&dir)
                .cache_capacity(SLED_CACHE_BYTES)
                .flush_every_ms(None)
                .open()
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) if lock::is_lock_held(&e) => {
                return Err(StoreError::InUse { path: dir });
            }
            Ok(Err(e)) => {
                return Err(unusable(format!(
                    "{} is damaged: sled cannot read it ({e})",
                    db_file.display()
                )))
            }
            Err(panic) => {
                return Err(unusable(format!(
                    "{} is damaged: sled failed reading it ({})",
                    db_file.display(),
                    panic_message(&*panic)
                )))
            }
        };
        let refuse = |db: sled::Db, problem: String| {
            // Dropping flushes, which would write into what is refused.
            std::mem::forget(db);
            Err(unusable(problem))
        };
        if db_bytes.is_some_and(|n| n > 0) && !db.was_recovered() {
            return refuse(
                db,
                format!(
                    "{} is damaged: sled finds nothing it wrote in its {} bytes",
                    db_file.display(),
                    db_bytes.unwrap_or(0)
                ),
            );
        }
        let account = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| take_account(&db)));
        let (found, marker, foreign) = match account {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                let problem = format!(
                    "{} is damaged: sled cannot read it ({e})",
                    db_file.display()
                );
                return refuse(db, problem);
            }
            Err(panic) => {
                let problem = format!(
                    "{} is damaged: sled failed reading it ({})",
                    db_file.display(),
                    panic_message(&*panic)
                );
                return refuse(db, problem);
            }
        };
        let marker = match (marker, foreign) {
            (None, Some(what)) => {
                let problem = format!("{} is not an Iris store: it holds {what}", dir.display());
                return refuse(db, problem);
            }
            (Some(m), foreign) => match check_marker(&m, found, witness.as_ref()) {
                Err(problem) => return refuse(db, format!("{} {problem}", db_file.display())),
                Ok(_) if foreign.is_some() => {
                    let problem = format!(
                        "{} is damaged: it holds {}, which Iris does not write",
                        db_file.display(),
                        foreign.unwrap_or_default()
                    );
                    return refuse(db, problem);
                }
                // A database stamped by this release has had a witness
                // written beside it since: without it, a database cut back
                // to an older state cannot be told from the latest.
                Ok(m) if witness.is_none() && !dir.join(WITNESS_FILE).exists() => {
                    let witness_file = dir.join(WITNESS_FILE);
                    if !accept_missing_witness {
                        let problem = format!(
                            "{} is missing: {} holds write {} with {} records, but without the \
                             witness it cannot be told whether later writes were lost; if only \
                             that file was lost, start once with `iris-controller run \
                             --accept-store` to take the store as it is",
                            witness_file.display(),
                            db_file.display(),
                            m.write,
                            m.records.total()
                        );
                        return refuse(db, problem);
                    }
                    tracing::warn!(
                        "--accept-store: took {} as it is at write {} with {} records; {} was \
                         missing and is written anew",
                        db_file.display(),
                        m.write,
                        m.records.total(),
                        witness_file.display()
                    );
                    m
                }
                Ok(m) => m,
            },
            (None, None) => {
                if let Some(w) = &witness {
                    let problem = format!(
                        "{} is damaged: it has lost its marker, and with it {} records at write \
                         {} ({})",
                        db_file.display(),
                        w.records.total(),
                        w.write,
                        dir.join(WITNESS_FILE).display()
                    );
                    return refuse(db, problem);
                }
                if found.total() > 0 {
                    // Read before it is stamped: a record that does not
                    // decode refuses the store as `load` would, but with
                    // the store left as it was found.
                    if let Err(e) = read_records(&db) {
                        std::mem::forget(db);
                        return Err(e);
                    }
                    tracing::info!(
                        "store {}: written before the store kept an account of itself; \
                         counted its {} MAC, {} IP, {} host and {} VI records and stamped it \
                         (format {FORMAT})",
                        dir.display(),
                        found.mac,
                        found.ip,
                        found.host,
                        found.vi
                    );
                }
                let m = Marker::new(found);
                db.insert(MARKER_KEY, encode(&m))?;
                db.flush()?;
                m
            }
        };
        let mut marker = marker;
        let acknowledged = witness.as_ref().map(|w| w.journal_next);
        let opened = match journal::Journal::open(&dir, marker.journal_folded, acknowledged) {
            Ok(o) => o,
            Err(problem) => return refuse(db, problem),
        };
        if opened.dropped_tail > 0 {
            tracing::warn!(
                "store {}: dropped the last {} bytes of {}, an append cut short that no commit \
                 returned for",
                dir.display(),
                opened.dropped_tail,
                JOURNAL_FILE
            );
        }
        let journal = opened.journal;
        marker.journal_next = journal.next();
        if marker.format < FORMAT {
            // Stamped at once, before anything is journaled: a release
            // that reads only the older format must refuse the store, not
            // take it without its journal.
            marker.format = FORMAT;
            marker.write += 1;
            db.insert(MARKER_KEY, encode(&marker))?;
            db.flush()?;
        }
        let mut store = Self {
            db,
            dir,
            marker,
            witness: None,
            journal,
            limits: journal::Limits::default(),
            folding: None,
        };
        store.write_witness()?;
        Ok(store)
    }

    /// Replaces the copy of the marker beside the database (a rename, so a
    /// crash leaves the old copy or the new), and keeps it open for
    /// [`Self::update_witness`].
    fn write_witness(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(WITNESS_FILE);
        let tmp = self.dir.join(format!("{WITNESS_FILE}.new"));
        let io = |e: std::io::Error| witness_error(&path, e);
        let bytes = encode(&self.marker);
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io)?;
        self.witness = Some((file, bytes.len()));
        Ok(())
    }

    /// Overwrites the witness with the current marker in one write at its
    /// start, padded with spaces (which JSON allows after a value) to the
    /// length it had, so that nothing of the older copy is left behind.
    /// The write is whole once it returns, as a kill -9 cannot stop a write
    /// to the page cache halfway; a power cut may tear it, and a torn
    /// witness proves nothing ([`read_witness`]), as a rename not yet on
    /// disk proved nothing before.
    fn update_witness(&mut self) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let Some((file, len)) = self.witness.as_mut() else {
            return self.write_witness();
        };
        let mut bytes = encode(&self.marker);
        if bytes.len() < *len {
            bytes.resize(*len, b' ');
        }
        *len = bytes.len();
        file.write_all_at(&bytes, 0)
            .map_err(|e| witness_error(&self.dir.join(WITNESS_FILE), e))
    }
}

fn witness_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend {
        backend: "sled",
        message: format!("cannot write {}: {e}", path.display()),
    }
}

/// Checks sled's `conf` file as sled would (which only warns on a bad
/// checksum and calls garbage a database from before sled 0.29): the
/// parameters, then a CRC-32 of them, little-endian. Its segment size, if
/// there is one.
fn check_sled_conf(dir: &Path, db_bytes: u64) -> Result<Option<u64>, String> {
    let path = dir.join("conf");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if db_bytes > 0 {
                Err(format!(
                    "{} is missing beside a database of {db_bytes} bytes",
                    path.display()
                ))
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let bad = |why: &str| Err(format!("{} is damaged: {why}", path.display()));
    let Some(split) = bytes.len().checked_sub(4).filter(|n| *n > 4) else {
        return bad("it is too short to be sled's");
    };
    let (text, crc) = bytes.split_at(split);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(text);
    if hasher.finalize().to_le_bytes() != crc {
        return bad("its checksum does not match");
    }
    let Ok(text) = std::str::from_utf8(text) else {
        return bad("it is not text");
    };
    for key in ["use_compression: ", "version: "] {
        if !text.lines().any(|l| l.starts_with(key)) {
            return bad(&format!("it has no {}", key.trim_end_matches(": ")));
        }
    }
    match text
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => bad("it has no segment_size"),
    }
}

/// Whether sled's log in `db` has a segment whose header (a CRC-32 of the
/// 16 bytes after it, little-endian, inverted) checks: one that sled wrote.
/// Without one, sled starts a new log over the file.
fn has_a_segment(db: &Path, segment_size: u64) -> Result<bool, String> {
    use std::io::{Read, Seek, SeekFrom};
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", db.display());
    let mut file = std::fs::File::open(db).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    let mut at = 0;
    while at + 20 <= len {
        let mut header = [0u8; 20];
        file.seek(SeekFrom::Start(at)).map_err(cannot)?;
        file.read_exact(&mut header).map_err(cannot)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[4..]);
        let stored = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if hasher.finalize() == stored ^ 0xFFFF_FFFF {
            return Ok(true);
        }
        at += segment_size;
    }
    Ok(false)
}

/// The records counted by kind, the marker's bytes, and the first thing
/// that is not Iris's (another tree, a key outside the layout).
type Account = (Counts, Option<sled::IVec>, Option<String>);

fn take_account(db: &sled::Db) -> Result<Account, sled::Error> {
    let mut counts = Counts::default();
    let mut marker = None;
    let mut foreign = None;
    let default_tree: &[u8] = b"__sled__default";
    if let Some(tree) = db.tree_names().into_iter().find(|t| &t[..] != default_tree) {
        foreign = Some(format!("a tree {:?}", String::from_utf8_lossy(&tree)));
    }
    for kv in db.iter() {
        let (k, v) = kv?;
        if &k[..] == MARKER_KEY.as_bytes() {
            marker = Some(v);
            continue;
        }
        let key = String::from_utf8_lossy(&k);
        match counts.slot(&key) {
            Some(n) => *n += 1,
            None if key.starts_with(PREFIX) => {} // load() names the record.
            None => {
                foreign.get_or_insert_with(|| format!("a key {key:?}"));
            }
        }
    }
    Ok((counts, marker, foreign))
}

/// The marker, if it accounts for what was `found` and for the writes
/// the witness saw; else what is wrong, after the database's file name.
fn check_marker(bytes: &[u8], found: Counts, witness: Option<&Marker>) -> Result<Marker, String> {
    let m: Marker = serde_json::from_slice(bytes).map_err(|e| {
        format!("is not an Iris store, or its marker {MARKER_KEY:?} is damaged ({e})")
    })?;
    if m.program != PROGRAM {
        return Err(format!(
            "is not an Iris store: its marker names {:?}",
            m.program
        ));
    }
    if !(1..=FORMAT).contains(&m.format) {
        return Err(format!(
            "was written in store format {}, and this release reads formats 1 to {FORMAT}: run \
             the release that wrote it",
            m.format
        ));
    }
    let differences = found.differences(&m.records);
    if !differences.is_empty() {
        return Err(format!(
            "is damaged: it holds {}: records are lost",
            differences.join(", ")
        ));
    }
    if let Some(w) = witness.filter(|w| w.write > m.write) {
        return Err(format!(
            "is damaged: it goes back to write {}, and write {} was made: the last writes are \
             lost",
            m.write, w.write
        ));
    }
    Ok(m)
}

/// The last marker copied beside the database, if there is one that
/// reads; one that does not (a crash between writing and renaming it on a
/// file system that does not order them) proves nothing, and is replaced.
fn read_witness(dir: &Path) -> Option<Marker> {
    let path = dir.join(WITNESS_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!("{} is unreadable ({e}); writing it anew", path.display());
            None
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Moves the store directory `dir` aside (to `<dir>.set-aside-<seconds
/// since the epoch>`) so that the controller starts with an empty one;
/// the path it went to, or `None` when there was nothing to move.
pub fn set_aside(dir: &Path) -> Result<Option<PathBuf>, StoreError> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Backend {
                backend: "sled",
                message: format!("cannot read {}: {e}", dir.display()),
            })
        }
    };
    if empty {
        return Ok(None);
    }
    // sled locks its `db` file while a controller has the store open.
    if let Ok(file) = std::fs::File::open(dir.join("db")) {
        use nix::fcntl::{Flock, FlockArg};
        if let Err((_, nix::errno::Errno::EWOULDBLOCK)) =
            Flock::lock(file, FlockArg::LockExclusiveNonblock)
        {
            return Err(StoreError::InUse {
                path: dir.to_owned(),
            });
        }
    }
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut to = dir.as_os_str().to_owned();
    to.push(format!(".set-aside-{seconds}"));
    let to = PathBuf::from(to);
    std::fs::rename(dir, &to).map_err(|e| StoreError::Backend {
        backend: "sled",
        message: format!("cannot move {} to {}: {e}", dir.display(), to.display()),
    })?;
    Ok(Some(to))
}

impl Store for SledStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let mut records = raw_records(&self.db)?;
        let latest = self
            .journal
            .latest(self.marker.journal_folded)
            .map_err(|problem| self.unusable(problem))?;
        for (k, v) in latest {
            match v {
                Some(v) => records.insert(k, v),
                None => records.remove(&k),
            };
        }
        decode_all(records)
    }

    /// A commit of [`journal::Limits::from_ops`] to `up_to_ops` writes (a
    /// burst of learned MACs) is appended to the journal, and so is any
    /// commit while the journal holds entries; the journal is folded into
    /// the records once it holds `fold_at` writes, a step at a time
    /// between commits ([`Store::tidy`]), or whole here once it holds
    /// twice that (nobody tidied) or before a larger commit, which goes to
    /// sled in pieces. Others go to sled.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let n = batch.len();
        let l = self.limits;
        let journaled = (l.from_ops..=l.up_to_ops).contains(&n)
            || (n > 0 && n < l.from_ops && !self.journal.is_empty());
        if journaled {
            if self.journal.ops() >= l.fold_at.saturating_mul(2) {
                self.fold()?;
            }
            // In entries of at most ENTRY_OPS writes, each whole or not at
            // all, as a batch of sled's is.
            for piece in batch.ops.chunks(journal::ENTRY_OPS) {
                let appended = self
                    .journal
                    .append(piece.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
                appended.map_err(|message| StoreError::Backend {
                    backend: "sled",
                    message,
                })?;
            }
            self.marker.journal_next = self.journal.next();
            return self.update_witness();
        }
        if !self.journal.is_empty() {
            self.fold()?;
        }
        let db = self.db.clone();
        self.commit_in_chunks(batch, |b| Ok(db.apply_batch(b)?))?;
        self.update_witness()
    }

    /// Folds the journal once it holds [`journal::Limits::fold_at`]
    /// writes, [`journal::Limits::fold_step`] keys a step: a whole fold is
    /// a second or more with many keys, which no commit should wait for.
    fn tidy(&mut self) -> Result<bool, StoreError> {
        if self.folding.is_none() && self.journal.ops() < self.limits.fold_at {
            return Ok(false);
        }
        Ok(!self.fold_step(self.limits.fold_step)?)
    }
}

impl SledStore {
    fn unusable(&self, problem: String) -> StoreError {
        StoreError::Unusable {
            dir: self.dir.clone(),
            problem,
        }
    }

    /// Folds the whole journal now, the fold under way first: the journal
    /// is empty afterwards.
    fn fold(&mut self) -> Result<(), StoreError> {
        while self.folding.is_some() || !self.journal.is_empty() {
            self.fold_step(usize::MAX)?;
        }
        Ok(())
    }

    /// Writes up to `keys` keys of the fold under way (started with the
    /// entries the journal holds now, if none is) into the records;
    /// whether the fold is done. Once every key is written, the marker
    /// records up to which entry the journal is folded, and those entries
    /// leave the journal. A crash in between leaves them in the journal
    /// and some of them in the records: read again on top of the records,
    /// they give the same state.
    fn fold_step(&mut self, keys: usize) -> Result<bool, StoreError> {
        let mut f = match self.folding.take() {
            Some(f) => f,
            None => {
                let latest = self
                    .journal
                    .latest(self.marker.journal_folded)
                    .map_err(|problem| self.unusable(problem))?;
                Folding {
                    upto: self.journal.next(),
                    left: latest.into_iter().collect(),
                }
            }
        };
        let step = Batch {
            ops: f.left.drain(..keys.min(f.left.len())).collect(),
        };
        let db = self.db.clone();
        // A step that fails leaves no fold under way: the next starts
        // over from the journal, which holds every entry still.
        self.commit_in_chunks(&step, |b| Ok(db.apply_batch(b)?))?;
        if !f.left.is_empty() {
            self.folding = Some(f);
            return Ok(false);
        }
        let mut marker = self.marker.clone();
        marker.journal_folded = f.upto;
        marker.write += 1;
        self.db.insert(MARKER_KEY, encode(&marker))?;
        self.db.flush()?;
        self.marker = marker;
        self.update_witness()?;
        self.journal
            .drop_before(f.upto)
            .map_err(|message| StoreError::Backend {
                backend: "sled",
                message,
            })?;
        Ok(true)
    }

    /// Applies `batch` through `apply`, [`ATOMIC_OPS`] writes per sled
    /// batch, each with the marker that accounts for it, and flushes once
    /// at the end. sled keeps every tree node a batch replaces until the
    /// batch ends: one batch of a 100 000-entry seed peaked at some 80 MB,
    /// which the allocator then kept.
    fn commit_in_chunks(
        &mut self,
        batch: &Batch,
        mut apply: impl FnMut(sled::Batch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Whether each key written so far in this batch is there now.
        let mut present: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        for chunk in batch.chunks(ATOMIC_OPS) {
            let mut b = sled::Batch::default();
            let mut marker = self.marker.clone();
            for (k, v) in chunk {
                let was = match present.get(k) {
                    Some(p) => *p,
                    None => self.db.contains_key(k)?,
                };
                present.insert(k, v.is_some());
                if let Some(n) = marker.records.slot(k) {
                    match (was, v.is_some()) {
                        (false, true) => *n += 1,
                        (true, false) => *n = n.saturating_sub(1),
                        _ => {}
                    }
                }
                match v {
                    Some(v) => b.insert(k, v),
                    None => b.remove(k),
                }
            }
            marker.write += 1;
            b.insert(MARKER_KEY, encode(&marker));
            apply(b)?;
            self.marker = marker;
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

/// A registry key's VLAN as its store key writes it.
struct VlanText(Vlan);

impl std::fmt::Display for VlanText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Vlan::Untagged => f.write_str("untagged"),
            Vlan::Tagged(id) => write!(f, "{id}"),
        }
    }
}

/// Room for the longest registry key, so that writing one never grows it.
const KEY_ROOM: usize = 64;

fn mac_key(k: &MacKey) -> String {
    let mut key = String::with_capacity(KEY_ROOM);
    let _ = write!(key, "{PREFIX}mac/{}/{}/{}", k.vi.0, VlanText(k.vlan), k.mac);
    key
}

fn ip_key(k: &IpKey) -> String {
    let mut key = String::with_capacity(KEY_ROOM);
    let _ = write!(key, "{PREFIX}ip/{}/{}/{}", k.vi.0, VlanText(k.vlan), k.ip);
    key
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
/// Every record of `db`, decoded.
fn read_records(db: &sled::Db) -> Result<Snapshot, StoreError> {
    decode_all(raw_records(db)?)
}

/// Every record of `db`, by key, as stored.
fn raw_records(db: &sled::Db) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let mut records = BTreeMap::new();
    for kv in db.scan_prefix(PREFIX) {
        let (k, v) = kv?;
        records.insert(String::from_utf8_lossy(&k).into_owned(), v.to_vec());
    }
    Ok(records)
}

fn decode_all(
    records: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Snapshot, StoreError> {
    let mut s = Snapshot::default();
    for (key, value) in records {
        match decode_one(&key, &value)? {
            Record::Mac(k, e) => s.macs.push((k, e)),
            Record::Ip(k, e) => s.ips.push((k, e)),
            Record::Host(h) => s.hosts.push(h),
            Record::Vi(vi) => s.vis.push(vi),
        }
    }
    Ok(s)
}

/// One stored record, decoded.
enum Record {
    Mac(MacKey, MacEntry),
    Ip(IpKey, IpEntry),
    Host(Host),
    Vi(Vi),
}

/// Decodes the record `value` stored under `key` (without the store's
/// prefix), checking that it belongs there.
fn decode_one(key: &str, value: &[u8]) -> Result<Record, StoreError> {
    let kind = key
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    match kind {
        "mac" => {
            let r: MacRecord = decode(key, value)?;
            let (k, e) = r.typed().map_err(|reason| corrupt(key, reason))?;
            check_key(key, mac_key(&k))?;
            Ok(Record::Mac(k, e))
        }
        "ip" => {
            let r: IpRecord = decode(key, value)?;
            let (k, e) = r.typed().map_err(|reason| corrupt(key, reason))?;
            check_key(key, ip_key(&k))?;
            Ok(Record::Ip(k, e))
        }
        "host" => {
            let r: HostRecord = decode(key, value)?;
            let h = r.typed().map_err(|reason| corrupt(key, reason))?;
            check_key(key, host_key(&h.name))?;
            Ok(Record::Host(h))
        }
        "vi" => {
            let r: ViRecord = decode(key, value)?;
            let vi = r.typed();
            check_key(key, vi_key(vi.id))?;
            Ok(Record::Vi(vi))
        }
        _ => Err(corrupt(key, "not a kind of record Iris stores".to_owned())),
    }
}

/// A registry entry as a commit left it: `None` when the commit deleted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryRecord {
    Mac(MacKey, Option<MacEntry>),
    Ip(IpKey, Option<IpEntry>),
}

/// What a write of another store handle did to the key `key` (without
/// the prefix): written with `value`, or deleted, when it held `before`
/// (a deletion written without its old value, as a staged batch's are, is
/// read from the key). `Ok(None)` for a host or VI record, which a
/// follower re-reads whole (they merge with the configuration).
pub fn decode_write(
    key: &str,
    value: Option<&[u8]>,
    before: Option<&[u8]>,
) -> Result<Option<RegistryRecord>, StoreError> {
    let (bytes, deleted) = match (value, before) {
        (Some(v), _) => (v, false),
        (None, Some(b)) => (b, true),
        (None, None) => {
            return deleted_entry(key).map(Some).ok_or_else(|| {
                corrupt(
                    key,
                    "deleted, and neither its key nor what it held tells which entry it was"
                        .to_owned(),
                )
            })
        }
    };
    Ok(match decode_one(key, bytes)? {
        Record::Mac(k, e) => Some(RegistryRecord::Mac(k, (!deleted).then_some(e))),
        Record::Ip(k, e) => Some(RegistryRecord::Ip(k, (!deleted).then_some(e))),
        Record::Host(_) | Record::Vi(_) => None,
    })
}

/// The registry entry `key` is the record of, as deleted: `None` for any
/// other key, or one this store would not have written for that entry.
fn deleted_entry(key: &str) -> Option<RegistryRecord> {
    let mut parts = key.strip_prefix(PREFIX)?.splitn(4, '/');
    let (kind, vi, vlan, address) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let vi = ViId(vi.parse().ok()?);
    let vlan = match vlan {
        "untagged" => Vlan::Untagged,
        id => Vlan::from_vid(Some(id.parse().ok()?))?,
    };
    let (record, written) = match kind {
        "mac" => {
            let k = MacKey {
                vi,
                vlan,
                mac: address.parse().ok()?,
            };
            (RegistryRecord::Mac(k, None), mac_key(&k))
        }
        "ip" => {
            let k = IpKey {
                vi,
                vlan,
                ip: address.parse().ok()?,
            };
            (RegistryRecord::Ip(k, None), ip_key(&k))
        }
        _ => return None,
    };
    (written == key).then_some(record)
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

mod journal;
pub mod lock;
#[cfg(test)]
mod tests;
pub use journal::JOURNAL_FILE;

pub mod etcd;
