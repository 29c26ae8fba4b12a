//! The broker's records in etcd, beside the controller's under the same
//! prefix: each record at `<prefix>broker/records/<tree>/<id>`.
//!
//! Brokers sharing the store hold an election (`<prefix>broker/leader`,
//! the controller's [`Candidate`](iris_controller::election::Candidate)),
//! and only the active one opens the store: every write is a transaction
//! guarded by its leadership, so a broker deposed meanwhile (its lease
//! expired while it was cut off) has its late writes refused, and its
//! term ends ([`EtcdStore::ended`]).
//!
//! A write whose answer was lost (a member died under it, the quorum went)
//! may or may not have been applied. The broker's records in memory keep
//! the value from before it, and so does the store once this broker
//! writes again or stops: the key is put back to what it held at the last
//! revision this broker saw (etcd keeps every revision until it is
//! compacted). A broker that cannot do that (cut off from etcd until its
//! lease ended, killed) leaves it, and the next active broker reads the
//! store as it is: the client was told the outcome is unknown.
//!
//! A write is guarded by the leadership alone, not by the key's revision:
//! a request the members' client retried on another member after a
//! timeout could, applied late, overwrite a later write to the same key.

use super::{Store, StoreError};
use etcd_client::{Compare, GetOptions, Txn, TxnOp};
use iris_controller::election::Leadership;
use iris_controller::store::etcd::members::{range_end, Members};
use iris_controller::store::etcd::EtcdConfig;
use iris_controller::store::StoreError as EtcdError;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// The broker's election, after the store's prefix.
pub const ELECTION: &str = "broker/leader";
/// The records, after the store's prefix.
const RECORDS: &str = "broker/records/";
/// Records read per request when loading: an operation record carries
/// its request and error texts, so a page stays well under gRPC's 4 MiB.
const PAGE: i64 = 200;

/// A key whose write's outcome is unknown, and the revision from before
/// that write.
#[derive(Debug, Clone)]
struct Doubt {
    key: String,
    before: i64,
}

/// The active broker's store.
pub struct EtcdStore {
    members: Members,
    prefix: String,
    fence: Compare,
    /// The newest revision etcd reported to this broker: every key holds
    /// there what this broker's records hold (it is the only writer).
    seen: AtomicI64,
    doubt: Mutex<Option<Doubt>>,
    ended: CancellationToken,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("members", &self.members)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: &EtcdError) -> StoreError {
    match e {
        EtcdError::Unavailable { message, .. } => StoreError::unavailable(message.clone()),
        e => StoreError::new(e.to_string()),
    }
}

impl EtcdStore {
    /// The store of the broker that holds `leadership`; `ended` is
    /// cancelled when a write finds the leadership gone.
    pub fn open(
        config: EtcdConfig,
        leadership: &Leadership,
        ended: CancellationToken,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            prefix: config.prefix.clone(),
            members: Members::new(config).map_err(|e| unavailable(&e))?,
            fence: leadership.fence(),
            seen: AtomicI64::new(0),
            doubt: Mutex::new(None),
            ended,
        })
    }

    /// Cancelled once this broker may no longer write: it must stop
    /// serving as the active broker.
    pub fn ended(&self) -> CancellationToken {
        self.ended.clone()
    }

    fn tree_key(&self, tree: &str) -> String {
        format!("{}{RECORDS}{tree}/", self.prefix)
    }

    fn saw(&self, revision: i64) {
        self.seen.fetch_max(revision, Ordering::Relaxed);
    }

    fn end_term(&self, why: &str) -> StoreError {
        tracing::error!("{why}: this broker stops being the active one");
        self.ended.cancel();
        StoreError::unavailable(why)
    }

    /// `op` under this broker's leadership; a refused guard ends the term.
    fn guarded(&self, op: TxnOp, what: &str) -> Result<(), StoreError> {
        let txn = Txn::new().when([self.fence.clone()]).and_then([op]);
        let resp = self.members.txn(txn).map_err(|e| unavailable(&e))?;
        if !resp.succeeded() {
            return Err(self.end_term(&format!(
                "this broker no longer leads the brokers sharing the store (its lease expired or \
                 another broker won the election), so {what} was not written; the active broker \
                 takes writes"
            )));
        }
        if let Some(h) = resp.header() {
            self.saw(h.revision());
        }
        Ok(())
    }

    /// Puts a doubtful key back to what it held before its write.
    fn settle(&self, doubt: &Doubt) -> Result<(), StoreError> {
        let key = doubt.key.clone();
        let options = GetOptions::new().with_revision(doubt.before);
        let before = self
            .members
            .run(move |mut kv| {
                let (key, options) = (key.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .map_err(|e| match e {
                // Compacted past the revision (etcd's OUT_OF_RANGE): what
                // it held is gone.
                EtcdError::Backend { .. } | EtcdError::Corrupt { .. } => self.end_term(&format!(
                    "a write of {} whose outcome is unknown cannot be undone: etcd no longer \
                     holds revision {} (compacted) or refused the read ({e})",
                    doubt.key, doubt.before
                )),
                e => unavailable(&e),
            })?;
        let op = match before.kvs().first() {
            Some(kv) => TxnOp::put(doubt.key.clone(), kv.value().to_vec(), None),
            None => TxnOp::delete(doubt.key.clone(), None),
        };
        self.guarded(op, &format!("the undo of {}", doubt.key))
    }

    /// Settles a write in doubt now, if there is one: what a broker
    /// about to stop being the active one does, so that the next one does
    /// not find it (best effort: etcd may still not answer).
    pub fn settle_doubt(&self) -> Result<(), StoreError> {
        let mut doubt = self
            .doubt
            .lock()
            .map_err(|_| StoreError::new("the store's lock was poisoned"))?;
        if let Some(d) = doubt.clone() {
            self.settle(&d)?;
            *doubt = None;
        }
        Ok(())
    }

    /// Writes `op` to `key`, after settling an earlier write in doubt;
    /// a write whose answer is lost becomes the doubt.
    fn write(&self, key: String, op: TxnOp) -> Result<(), StoreError> {
        let mut doubt = self
            .doubt
            .lock()
            .map_err(|_| StoreError::new("the store's lock was poisoned"))?;
        if self.ended.is_cancelled() {
            return Err(StoreError::unavailable(
                "this broker is no longer the active one; the active broker takes writes",
            ));
        }
        if let Some(d) = doubt.clone() {
            self.settle(&d).map_err(|e| StoreError {
                message: format!(
                    "an earlier write whose outcome is unknown could not be undone yet ({}), so \
                     nothing was written",
                    e.message
                ),
                unavailable: e.unavailable,
            })?;
            *doubt = None;
        }
        let before = self.seen.load(Ordering::Relaxed);
        match self.guarded(op, &key) {
            Err(e) if e.unavailable && !self.ended.is_cancelled() => {
                *doubt = Some(Doubt { key, before });
                Err(StoreError::unavailable(format!(
                    "{}; whether the write was applied is unknown: this broker undoes it before \
                     its next write or as it stops, but one cut off from etcd until its lease \
                     ends cannot, so read the object back before retrying",
                    e.message
                )))
            }
            r => r,
        }
    }
}

impl Store for EtcdStore {
    fn put(&self, tree: &str, id: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = format!("{}{id}", self.tree_key(tree));
        let op = TxnOp::put(key.clone(), value.to_vec(), None);
        self.write(key, op)
    }

    fn delete(&self, tree: &str, id: &str) -> Result<(), StoreError> {
        let key = format!("{}{id}", self.tree_key(tree));
        let op = TxnOp::delete(key.clone(), None);
        self.write(key, op)
    }

    fn scan(&self, tree: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let from = self.tree_key(tree);
        let (kvs, at) = self
            .members
            .scan(
                &from,
                range_end(&from),
                PAGE,
                |at| {
                    if at == 0 {
                        GetOptions::new()
                    } else {
                        GetOptions::new().with_revision(at)
                    }
                },
                0,
            )
            .map_err(|e| unavailable(&e))?;
        self.saw(at);
        Ok(kvs
            .into_iter()
            .map(|(k, v)| (k[from.len()..].to_owned(), v))
            .collect())
    }
}

#[cfg(test)]
mod tests;
