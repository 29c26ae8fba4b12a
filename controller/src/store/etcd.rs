//! The etcd store: the same records as sled's, under a key prefix in an
//! etcd v3 cluster, so that several controllers (and several Iris data
//! centers, each under its own prefix) can share one cluster.
//!
//! Every commit is one etcd transaction guarded by the store's marker
//! (`<prefix>iris/store`): it applies only while the marker's
//! `mod_revision` is the one this store last saw, and it bumps the marker.
//! A store that another writer changed behind this one's back therefore
//! refuses to write over it rather than interleave. Replicas of a
//! `[cluster]` add their leadership's fence to that guard
//! ([`Store::lead`]): a deposed leader's late write is refused as
//! unavailable, and the new leader takes the marker as it finds it.
//!
//! A batch too large for one transaction (etcd's `--max-txn-ops`, 128 by
//! default, or its request size) is staged: its writes go, in order, into
//! chunks under `<prefix>iris/staged/` that nothing reads, then one small
//! transaction, the commit point, stamps the marker with `staged = n`.
//! From then on the batch counts as written: [`Store::load`] lays the
//! staged chunks over the records, and the chunks are copied onto the
//! records and removed (by this commit, or by the next commit or opening
//! of the store if this one was cut short). A batch cut before its commit
//! point leaves chunks that the next staging replaces: it is written whole
//! or not at all, whatever its size.
//!
//! A commit that etcd refuses or that cannot reach a quorum returns
//! [`StoreError::Unavailable`]. Its outcome may be unknown (etcd may have
//! applied a transaction whose answer was lost), so the store keeps the
//! keys it touched and the marker's revision from before, and the next
//! commit first puts those keys back to what they held then (etcd keeps
//! every revision until it is compacted): a write the controller refused
//! never shows up later.

use super::{decode_all, Batch, Snapshot, Store, StoreError, FORMAT, PREFIX, PROGRAM};
use etcd_client::{
    Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
};
use members::{range_end, unavailable, KeyValue, Members};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const BACKEND: &str = "etcd";
/// The marker's key, after the prefix.
pub(crate) const MARKER: &str = "iris/store";
/// Where a large batch is staged, after the prefix.
pub(crate) const STAGED: &str = "iris/staged/";
/// The generation id of the newest leadership, after the prefix: what
/// the switches last heard in a MASTER claim.
const GENERATION: &str = "iris/generation";
/// etcd refuses requests over `--max-request-bytes` (1.5 MiB by default):
/// a transaction or a staged chunk stays under this.
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How often an idle connection is pinged: etcd closes one pinged more
/// often than its `--grpc-keepalive-min-time` (5 s by default).
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(10);
/// Records read per request when loading: a registry of 100 000 entries
/// would be over gRPC's 4 MiB message limit in one answer (a record is a
/// few hundred bytes).
const PAGE: i64 = 2000;
/// The keys of host and VI records, after the records' prefix.
const HOSTS: &str = "host/";
const VIS: &str = "vi/";
/// Staged chunks read per request: etcd takes a value of up to
/// `--max-request-bytes` (1.5 MiB), so two chunks stay under gRPC's 4 MiB
/// answer, and a page of `PAGE` chunks, the whole of a large batch, did not.
const STAGED_PAGE: i64 = 2;

/// Writes in order, as stored: key (after the prefix) and value, `None`
/// to delete.
type Ops = Vec<(String, Option<Vec<u8>>)>;

/// Where the store is and how long to wait for it (`[store]` with
/// `backend = "etcd"` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://HOST:PORT` of each member the controller may talk to.
    pub endpoints: Vec<String>,
    /// Every key starts with this: one Iris data center's records.
    pub prefix: String,
    /// How long to wait for a connection to a member.
    pub dial_timeout: Duration,
    /// How long a read or a commit may take before it counts as failed.
    pub request_timeout: Duration,
    /// The most operations etcd takes in one transaction (its
    /// `--max-txn-ops`); larger batches are staged.
    pub max_txn_ops: usize,
    /// TLS to the members (`https://` endpoints): this controller's key
    /// and certificate, and the CA the members' chain to.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl EtcdConfig {
    /// etcd's own default for `--max-txn-ops`.
    pub const DEFAULT_MAX_TXN_OPS: usize = 128;

    /// Connection options with the dial timeout and, with [`Self::tls`],
    /// the CA and this controller's certificate (read now, so renewed
    /// files serve the next connection). The member's certificate must
    /// name the host of its endpoint's URL.
    pub fn connect_options(&self) -> Result<ConnectOptions, StoreError> {
        let options = ConnectOptions::new().with_connect_timeout(self.dial_timeout);
        let Some(files) = &self.tls else {
            return Ok(options);
        };
        let pems = files.etcd_pems().map_err(unavailable)?;
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(pems.ca_certificate))
            .identity(etcd_client::Identity::from_pem(
                pems.certificate,
                pems.private_key,
            ));
        Ok(options.with_tls(tls))
    }

    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> Self {
        Self {
            endpoints,
            prefix: prefix.into(),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_txn_ops: Self::DEFAULT_MAX_TXN_OPS,
            tls: None,
        }
    }
}

/// The store's account of itself, at `<prefix>iris/store`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    program: String,
    format: u32,
    /// Commits made since the store was created.
    write: u64,
    /// Who wrote it: one controller's run, so that a write retried on
    /// another member after the first applied it is recognised.
    #[serde(default)]
    by: String,
    /// Chunks of a committed batch still to copy onto the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged: Option<u32>,
}

/// A commit whose outcome is unknown: the marker's revision before it and
/// the keys it may have written.
#[derive(Debug, Clone)]
struct Doubt {
    before: i64,
    keys: BTreeSet<String>,
}

/// The etcd backend. Its client runs on a runtime of its own, so it can be
/// called from the control loop's thread like sled.
pub struct EtcdStore {
    members: Members,
    config: EtcdConfig,
    /// The marker as last written or read, and its `mod_revision`.
    marker: Marker,
    known: i64,
    doubt: Option<Doubt>,
    /// The leadership every commit is conditional on, in a cluster.
    leadership: Option<crate::election::Leadership>,
    /// A replica's store: while it does not lead and the cluster has no
    /// quorum, [`Store::load`] answers from one member's own copy.
    member_reads: bool,
    /// Opened without a quorum, and why: the marker is read (or created)
    /// on leading.
    unopened: Option<String>,
    /// The revision the last load read at.
    loaded_at: AtomicI64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("prefix", &self.config.prefix)
            .field("write", &self.marker.write)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the cluster and reads (or creates) the store's marker;
    /// finishes a staged batch a previous controller committed but did
    /// not copy.
    pub fn open(config: EtcdConfig) -> Result<Self, StoreError> {
        let mut store = Self::unread(config)?;
        store.adopt_marker()?;
        Ok(store)
    }

    /// Opens the store of a replica of a `[cluster]`: as [`Self::open`]
    /// while the cluster has a quorum; without one, as far as one member
    /// allows. Such a store loads what a single member holds (a
    /// serializable read: every commit that member applied, which may
    /// miss the last ones the quorum made without it), takes no commit,
    /// and reads or creates its marker once it leads. With a quorum too,
    /// it loads from one member while it does not lead and the quorum is
    /// gone. What a standby serves from such a read never goes to a
    /// switch or the store: it writes nothing until it leads, and leading
    /// reads the store again through the quorum.
    pub fn open_replica(config: EtcdConfig) -> Result<Self, StoreError> {
        let mut store = match Self::open(config.clone()) {
            Ok(store) => store,
            Err(StoreError::Unavailable { message, .. }) => {
                tracing::warn!(
                    "etcd store: no quorum ({message}); starting as a standby on what one \
                     member holds, until the cluster takes writes again"
                );
                let mut store = Self::unread(config)?;
                store.unopened = Some(message);
                store
            }
            Err(e) => return Err(e),
        };
        store.member_reads = true;
        Ok(store)
    }

    /// Why the store was opened without etcd's quorum
    /// ([`Self::open_replica`]), until it leads.
    pub fn without_quorum(&self) -> Option<&str> {
        self.unopened.as_deref()
    }

    /// The generation id the newest leader claimed MASTER with, as one
    /// member knows it (no quorum needed); 0 if none did yet or no member
    /// answers. A standby's SLAVE requests carry it: the switches refuse
    /// an older one as stale and leave the standby EQUAL. It is never
    /// newer than a live leader's, whose claims it would make stale.
    pub fn generation(&self) -> u64 {
        let key = self.key(GENERATION);
        let read = self.run(move |mut kv| {
            let key = key.clone();
            async move { kv.get(key, Reads::Member.options()).await }
        });
        read.ok()
            .and_then(|r| r.kvs().first().map(|kv| kv.value().to_vec()))
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0)
    }

    /// Records `leadership`'s generation id for [`Self::generation`],
    /// before its MASTER claims go out.
    fn record_generation(
        &self,
        leadership: &crate::election::Leadership,
    ) -> Result<(), StoreError> {
        let txn = Txn::new().when([leadership.fence()]).and_then([TxnOp::put(
            self.key(GENERATION),
            leadership.generation().to_string(),
            None,
        )]);
        if !self.txn(txn)?.succeeded() {
            return Err(unavailable(
                "this controller no longer leads its cluster (its lease expired or another \
                 replica won the election)",
            ));
        }
        Ok(())
    }

    /// The store with its clients, before anything is read.
    fn unread(config: EtcdConfig) -> Result<Self, StoreError> {
        let store = Self {
            members: Members::new(config.clone())?,
            config,
            marker: Marker {
                program: PROGRAM.to_owned(),
                format: FORMAT,
                write: 0,
                by: writer(),
                staged: None,
            },
            known: 0,
            doubt: None,
            leadership: None,
            member_reads: false,
            unopened: None,
            loaded_at: AtomicI64::new(0),
        };
        Ok(store)
    }

    /// Reads the marker, creating it if there is none yet; finishes a
    /// staged batch a previous controller committed but did not copy.
    fn adopt_marker(&mut self) -> Result<(), StoreError> {
        match self.read_marker()? {
            Some((m, rev)) => {
                self.marker = Marker {
                    by: self.marker.by.clone(),
                    ..m
                };
                self.known = rev;
            }
            None => {
                // Created once, by whichever controller comes first.
                let key = self.key(MARKER);
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, super::encode(&self.marker), None)]);
                self.txn(txn)?;
                let (m, rev) = self.read_marker()?.ok_or_else(|| StoreError::Backend {
                    backend: BACKEND,
                    message: "the store's marker vanished as it was written".to_owned(),
                })?;
                self.marker = m;
                self.known = rev;
            }
        }
        self.unopened = None;
        if self.marker.staged.is_some() {
            self.copy_staged()?;
        }
        Ok(())
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.config.prefix)
    }

    fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.members.txn(txn)
    }

    fn run<T: Send + 'static, F>(&self, request: impl Fn(KvClient) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        self.members.run(request)
    }

    /// The marker and its `mod_revision`, if there is one.
    fn read_marker(&self) -> Result<Option<(Marker, i64)>, StoreError> {
        self.read_marker_from(Reads::Quorum)
    }

    fn read_marker_from(&self, reads: Reads) -> Result<Option<(Marker, i64)>, StoreError> {
        self.read_marker_at(reads, 0)
    }

    /// The marker as it was at `revision` (0: now).
    fn read_marker_at(
        &self,
        reads: Reads,
        revision: i64,
    ) -> Result<Option<(Marker, i64)>, StoreError> {
        let key = self.key(MARKER);
        let k = key.clone();
        let options = reads.at(revision);
        let resp = self.run(move |mut kv| {
            let (k, options) = (k.clone(), options.clone());
            async move { kv.get(k, options).await }
        })?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let m: Marker = serde_json::from_slice(kv.value()).map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            reason: format!("not an Iris store's marker ({e})"),
        })?;
        if m.program != PROGRAM {
            return Err(StoreError::Corrupt {
                key,
                reason: format!(
                    "the prefix {:?} belongs to {:?}; give Iris a prefix of its own",
                    self.config.prefix, m.program
                ),
            });
        }
        if m.format != FORMAT {
            return Err(StoreError::Corrupt {
                key,
                reason: format!(
                    "written in store format {}, and this release reads format {FORMAT}: run \
                     the release that wrote it",
                    m.format
                ),
            });
        }
        Ok(Some((m, kv.mod_revision())))
    }

    /// Every key and value from `from` up to `to` at one revision (`at`,
    /// or with 0 the first page's), `page` keys at a time, asking `reads`.
    fn scan(
        &self,
        from: &str,
        to: Vec<u8>,
        page: i64,
        reads: Reads,
        at: i64,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        self.members
            .scan(from, to, page, |at| reads.at(at).unwrap_or_default(), at)
    }

    /// The staged chunks' writes, in order.
    fn staged_ops(&self, reads: Reads) -> Result<Ops, StoreError> {
        self.staged_ops_at(reads, 0)
    }

    /// The staged chunks' writes as they were at `revision` (0: now).
    fn staged_ops_at(&self, reads: Reads, revision: i64) -> Result<Ops, StoreError> {
        let from = self.key(STAGED);
        let (chunks, _) = self.scan(&from, range_end(&from), STAGED_PAGE, reads, revision)?;
        let mut ops = Vec::new();
        for (key, value) in chunks {
            let chunk: Vec<(String, Option<String>)> =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    key: key.clone(),
                    reason: format!("a staged chunk that does not read ({e})"),
                })?;
            ops.extend(
                chunk
                    .into_iter()
                    .map(|(k, v)| (k, v.map(String::into_bytes))),
            );
        }
        Ok(ops)
    }

    /// Copies a committed staged batch onto the records, a transaction
    /// per chunk, then clears the marker's `staged` and the chunks.
    fn copy_staged(&mut self) -> Result<(), StoreError> {
        let ops = self.staged_ops(Reads::Quorum)?;
        let per_txn = self.config.max_txn_ops.saturating_sub(1).max(1);
        for piece in pieces(&ops, per_txn) {
            let txn = self.guarded(piece.iter().map(|(k, v)| self.op(k, v.as_deref())));
            self.expect_applied(txn, None)?;
        }
        let mut m = self.marker.clone();
        m.staged = None;
        let staged = self.key(STAGED);
        let txn = self.guarded([
            TxnOp::put(self.key(MARKER), super::encode(&m), None),
            TxnOp::delete(
                staged.clone(),
                Some(DeleteOptions::new().with_range(range_end(&staged))),
            ),
        ]);
        let rev = self.expect_applied(txn, Some(&m))?;
        self.marker = m;
        self.known = rev;
        Ok(())
    }

    fn op(&self, key: &str, value: Option<&[u8]>) -> TxnOp {
        let key = self.key(key);
        match value {
            Some(v) => TxnOp::put(key, v.to_vec(), None),
            None => TxnOp::delete(key, None),
        }
    }

    /// A transaction of `ops` that applies only if the marker is still
    /// the one this store last saw.
    fn guarded(&self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        let marker = Compare::mod_revision(self.key(MARKER), CompareOp::Equal, self.known);
        let when = match &self.leadership {
            Some(l) => vec![marker, l.fence()],
            None => vec![marker],
        };
        Txn::new()
            .when(when)
            .and_then(ops.into_iter().collect::<Vec<_>>())
    }

    /// Whether this store's leadership is still the election's: its key
    /// is there, created at the same revision.
    fn still_leading(&self, l: &crate::election::Leadership) -> Result<bool, StoreError> {
        let key = l.key().to_vec();
        let resp = self.run(move |mut kv| {
            let key = key.clone();
            async move { kv.get(key, None).await }
        })?;
        Ok(resp
            .kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() == l.generation()))
    }

    /// Runs a guarded transaction; its revision, or why not. One that
    /// writes the marker `writes` and finds the guard failed checks
    /// whether the marker is that one: a member applied it and the answer
    /// was lost before the retry.
    fn expect_applied(&self, txn: Txn, writes: Option<&Marker>) -> Result<i64, StoreError> {
        let resp = self.txn(txn)?;
        if !resp.succeeded() {
            if let (Some(m), Some((found, rev))) = (writes, self.read_marker()?) {
                if &found == m {
                    return Ok(rev);
                }
            }
            if let Some(l) = &self.leadership {
                if !self.still_leading(l)? {
                    return Err(unavailable(
                        "this controller no longer leads its cluster (its lease expired or \
                         another replica won the election); the write was refused, and the \
                         leader takes writes",
                    ));
                }
            }
            return Err(StoreError::Backend {
                backend: BACKEND,
                message: format!(
                    "the store under {:?} was written by someone else since this controller \
                     last wrote it (another iris-controller with the same [store] prefix?); \
                     restart this controller to read it again",
                    self.config.prefix
                ),
            });
        }
        Ok(resp.header().map_or(self.known, |h| h.revision()))
    }

    /// Puts the keys of a commit whose outcome was unknown back to what
    /// they held before it, if it (or an earlier undo) was applied.
    fn settle_doubt(&mut self) -> Result<(), StoreError> {
        let Some(doubt) = self.doubt.clone() else {
            return Ok(());
        };
        let (marker, rev) = self.read_marker()?.ok_or_else(|| StoreError::Backend {
            backend: BACKEND,
            message: format!("the store's marker under {:?} is gone", self.config.prefix),
        })?;
        if rev == doubt.before {
            self.doubt = None;
            return Ok(());
        }
        self.marker = marker;
        self.known = rev;
        let mut undo = Vec::new();
        for key in &doubt.keys {
            let k = self.key(key);
            let at = doubt.before;
            let resp = self.run(move |mut kv| {
                let k = k.clone();
                async move { kv.get(k, Some(GetOptions::new().with_revision(at))).await }
            })?;
            undo.push((
                key.clone(),
                resp.kvs().first().map(|kv| kv.value().to_vec()),
            ));
        }
        // A staged batch that reached its commit point is dropped, not
        // copied: the undo puts back every key it could have written.
        self.marker.staged = None;
        self.write(&undo)?;
        tracing::warn!(
            "etcd store: a commit refused while the cluster was unavailable had been applied \
             after all; put its {} keys back as they were",
            doubt.keys.len()
        );
        self.doubt = None;
        Ok(())
    }

    /// Writes `ops` as one commit, staged when they do not fit one
    /// transaction; on an error, records the doubt.
    fn write(&mut self, ops: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let before = self.known;
        let result = self.write_once(ops);
        if let Err(e) = &result {
            if matches!(e, StoreError::Unavailable { .. }) {
                let doubt = self.doubt.get_or_insert_with(|| Doubt {
                    before,
                    keys: BTreeSet::new(),
                });
                doubt.keys.extend(ops.iter().map(|(k, _)| k.clone()));
            }
        }
        result
    }

    fn write_once(&mut self, ops: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let bytes: usize = ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let mut next = self.marker.clone();
        next.write += 1;
        if ops.len() < self.config.max_txn_ops && bytes < MAX_REQUEST_BYTES {
            next.staged = None;
            let txn = self.guarded(
                ops.iter()
                    .map(|(k, v)| self.op(k, v.as_deref()))
                    .chain([TxnOp::put(self.key(MARKER), super::encode(&next), None)]),
            );
            self.known = self.expect_applied(txn, Some(&next))?;
            self.marker = next;
            return Ok(());
        }
        // Staged: chunks nothing reads until the marker names them.
        let staged = self.key(STAGED);
        let clear = self.guarded([TxnOp::delete(
            staged.clone(),
            Some(DeleteOptions::new().with_range(range_end(&staged))),
        )]);
        self.expect_applied(clear, None)?;
        let mut n = 0u32;
        let per_chunk = self.config.max_txn_ops.max(1) * 8;
        for piece in pieces(ops, per_chunk) {
            let chunk: Vec<(&str, Option<String>)> = piece
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect();
            let value = super::encode(&chunk);
            let txn = self.guarded([TxnOp::put(
                self.key(&format!("{STAGED}{n:08}")),
                value,
                None,
            )]);
            self.expect_applied(txn, None)?;
            n += 1;
        }
        next.staged = Some(n);
        // The commit point.
        let txn = self.guarded([TxnOp::put(self.key(MARKER), super::encode(&next), None)]);
        self.known = self.expect_applied(txn, Some(&next))?;
        self.marker = next;
        // Written: copying it onto the records can wait for the next
        // commit or opening if the cluster goes away now.
        if let Err(e) = self.copy_staged() {
            tracing::warn!(
                "etcd store: a committed batch is left staged until the next write: {e}"
            );
        }
        Ok(())
    }
}

/// This run of the controller, as the marker's `by` names it.
fn writer() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}/{nanos}", host.trim(), std::process::id())
}

/// `ops` cut into pieces of at most `n` writes and [`MAX_REQUEST_BYTES`]
/// (bar a single write larger than that).
fn pieces<T: AsRef<[u8]>>(ops: &[(String, Option<T>)], n: usize) -> Vec<&[(String, Option<T>)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (k, v)) in ops.iter().enumerate() {
        let size = k.len() + v.as_ref().map_or(0, |v| v.as_ref().len()) + 16;
        if i > start && (i - start >= n || bytes + size > MAX_REQUEST_BYTES / 2) {
            out.push(&ops[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

impl Store for EtcdStore {
    fn lead(&mut self, leadership: &crate::election::Leadership) -> Result<(), StoreError> {
        // Whatever this replica wrote in doubt before is the store's now:
        // other leaders have read it and written since, so undoing it
        // would overwrite them.
        self.doubt = None;
        self.leadership = Some(leadership.clone());
        self.record_generation(leadership)?;
        if self.unopened.is_some() {
            // Opened without a quorum: the marker may never have been
            // written.
            return self.adopt_marker();
        }
        let (m, rev) = self.read_marker()?.ok_or_else(|| StoreError::Backend {
            backend: BACKEND,
            message: format!("the store's marker under {:?} is gone", self.config.prefix),
        })?;
        self.marker = Marker {
            by: self.marker.by.clone(),
            ..m
        };
        self.known = rev;
        if self.marker.staged.is_some() {
            self.copy_staged()?;
        }
        Ok(())
    }

    fn marker_revision(&self) -> Option<i64> {
        Some(self.known).filter(|&r| r > 0)
    }

    fn loaded_at(&self) -> Option<i64> {
        Some(self.loaded_at.load(Ordering::Relaxed)).filter(|&r| r > 0)
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        match self.load_from(Reads::Quorum) {
            Err(StoreError::Unavailable { message, .. })
                if self.member_reads && self.leadership.is_none() =>
            {
                let snapshot = self.load_from(Reads::Member)?;
                tracing::info!(
                    "etcd store: read from one member, the cluster having no quorum ({message})"
                );
                Ok(snapshot)
            }
            loaded => loaded,
        }
    }

    fn load_topology(&self, revision: i64) -> Result<Snapshot, StoreError> {
        match self.topology_from(Reads::Quorum, revision) {
            Err(StoreError::Unavailable { .. })
                if self.member_reads && self.leadership.is_none() =>
            {
                self.topology_from(Reads::Member, revision)
            }
            read => read,
        }
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if self.unopened.is_some() {
            return Err(unavailable(
                "the store was opened without a quorum and is read once this controller leads",
            ));
        }
        self.settle_doubt()?;
        if self.marker.staged.is_some() {
            self.copy_staged()?;
        }
        let ops: Ops = batch
            .ops()
            .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
            .collect();
        self.write(&ops)
    }
}

impl EtcdStore {
    /// The host and VI records at `revision` (0: now).
    fn topology_from(&self, reads: Reads, revision: i64) -> Result<Snapshot, StoreError> {
        let mut records = Vec::new();
        for kind in [HOSTS, VIS] {
            let from = self.key(&format!("{PREFIX}{kind}"));
            let (found, _) = self.scan(&from, range_end(&from), PAGE, reads, revision)?;
            records.extend(
                found
                    .into_iter()
                    .map(|(k, v)| (k[self.config.prefix.len()..].to_owned(), v)),
            );
        }
        decode_all(records)
    }

    /// Every record, with a committed staged batch laid over them.
    /// Records, marker and chunks are read at one revision, which
    /// [`Store::loaded_at`] then answers.
    fn load_from(&self, reads: Reads) -> Result<Snapshot, StoreError> {
        let from = self.key(PREFIX);
        let (records, at) = self.scan(&from, range_end(&from), PAGE, reads, 0)?;
        let mut records: BTreeMap<String, Vec<u8>> = records
            .into_iter()
            .map(|(k, v)| (k[self.config.prefix.len()..].to_owned(), v))
            .collect();
        let marker = self.read_marker_at(reads, at)?;
        if marker.as_ref().is_some_and(|(m, _)| m.staged.is_some()) {
            for (k, v) in self.staged_ops_at(reads, at)? {
                match v {
                    Some(v) => records.insert(k, v),
                    None => records.remove(&k),
                };
            }
        }
        let snapshot = decode_all(records)?;
        self.loaded_at.store(at, Ordering::Relaxed);
        Ok(snapshot)
    }
}

/// Whom a read asks.
#[derive(Debug, Clone, Copy)]
enum Reads {
    /// The quorum (linearizable): what every acknowledged commit wrote.
    Quorum,
    /// The member asked alone (serializable): answers without a quorum,
    /// from what that member has applied.
    Member,
}

impl Reads {
    fn options(self) -> Option<GetOptions> {
        match self {
            Self::Quorum => None,
            Self::Member => Some(GetOptions::new().with_serializable()),
        }
    }

    /// The options of a read at `revision` (0: the newest).
    fn at(self, revision: i64) -> Option<GetOptions> {
        if revision == 0 {
            return self.options();
        }
        Some(self.options().unwrap_or_default().with_revision(revision))
    }
}

pub mod follow;
pub mod members;
#[cfg(test)]
mod tests;
