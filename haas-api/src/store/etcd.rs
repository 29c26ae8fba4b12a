//! The broker's records in etcd, beside the controller's under the same
//! prefix: each record at `<prefix>broker/records/<tree>/<id>`.
//!
//! Brokers sharing the store hold an election (`<prefix>broker/leader`,
//! the controller's [`Candidate`](iris_controller::election::Candidate)),
//! and only the active one opens the store. Every write is a transaction
//! guarded twice, as the controller's commits are: by its leadership, so a
//! broker deposed meanwhile (its lease expired while it was cut off) has
//! its late writes refused and its term ends ([`EtcdStore::ended`]); and by
//! the store's marker (`<prefix>broker/marker`), which each write stamps
//! with its writer and number and which must still be at the revision this
//! broker last wrote it. A write can therefore apply only on top of the
//! one before it: an attempt that a member applies late (after the client
//! timed out and tried the next member, or after the broker wrote again)
//! finds the marker moved and changes nothing.
//!
//! A write whose answer was lost (a member died under it, the quorum went)
//! may or may not have been applied. The broker's records in memory keep
//! the value from before it, and so does the store once this broker
//! writes again or stops: the marker is moved so that the write can no
//! longer apply, and if it had, the key is put back to what it held at the
//! last revision this broker saw (etcd keeps every revision until it is
//! compacted). A broker that cannot do that (cut off from etcd until its
//! lease ended, killed) leaves it, and the next active broker reads the
//! store as it is: the client was told the outcome is unknown.

use super::{Store, StoreError};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use iris_controller::election::Leadership;
use iris_controller::store::etcd::members::{range_end, Members};
use iris_controller::store::etcd::EtcdConfig;
use iris_controller::store::StoreError as EtcdError;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// The broker's election, after the store's prefix.
pub const ELECTION: &str = "broker/leader";
/// The records, after the store's prefix.
const RECORDS: &str = "broker/records/";
/// The marker every write stamps, after the store's prefix.
const MARKER: &str = "broker/marker";
/// Records read per request when loading: an operation record carries
/// its request and error texts, so a page stays well under gRPC's 4 MiB.
const PAGE: i64 = 200;

/// Who wrote the store last: the broker's leadership (its election key
/// and that key's revision, unique to one term) and that term's write
/// number, which grows with every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    by: String,
    write: u64,
}

/// A write whose outcome is unknown: its key and the revision from
/// before it.
#[derive(Debug, Clone)]
struct Doubt {
    key: String,
    before: i64,
}

/// What writes go through, one at a time.
#[derive(Debug)]
struct Writes {
    /// The marker's `mod_revision` as this broker last wrote or read it:
    /// the next write applies only while it is still that.
    known: i64,
    /// The number of this term's last write attempt.
    write: u64,
    doubt: Option<Doubt>,
}

/// The active broker's store.
pub struct EtcdStore {
    members: Members,
    prefix: String,
    fence: Compare,
    /// This term's name in the marker.
    by: String,
    /// The newest revision etcd reported to this broker: every key holds
    /// there what this broker's records hold (it is the only writer).
    seen: AtomicI64,
    writes: Mutex<Writes>,
    ended: CancellationToken,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("members", &self.members)
            .field("prefix", &self.prefix)
            .field("by", &self.by)
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
    /// The store of the broker that holds `leadership`, with the marker as
    /// it is now; `ended` is cancelled when a write finds the leadership
    /// gone.
    pub fn open(
        config: EtcdConfig,
        leadership: &Leadership,
        ended: CancellationToken,
    ) -> Result<Self, StoreError> {
        let store = Self {
            prefix: config.prefix.clone(),
            members: Members::new(config).map_err(|e| unavailable(&e))?,
            fence: leadership.fence(),
            by: format!(
                "{}@{}",
                String::from_utf8_lossy(leadership.key()),
                leadership.generation()
            ),
            seen: AtomicI64::new(0),
            writes: Mutex::new(Writes {
                known: 0,
                write: 0,
                doubt: None,
            }),
            ended,
        };
        let known = store.read_marker()?.map_or(0, |(_, rev)| rev);
        store.lock()?.known = known;
        Ok(store)
    }

    /// Cancelled once this broker may no longer write: it must stop
    /// serving as the active broker.
    pub fn ended(&self) -> CancellationToken {
        self.ended.clone()
    }

    fn tree_key(&self, tree: &str) -> String {
        format!("{}{RECORDS}{tree}/", self.prefix)
    }

    fn marker_key(&self) -> String {
        format!("{}{MARKER}", self.prefix)
    }

    fn saw(&self, revision: i64) {
        self.seen.fetch_max(revision, Ordering::Relaxed);
    }

    fn lock(&self) -> Result<MutexGuard<'_, Writes>, StoreError> {
        self.writes
            .lock()
            .map_err(|_| StoreError::new("the store's lock was poisoned"))
    }

    fn end_term(&self, why: &str) -> StoreError {
        tracing::error!("{why}: this broker stops being the active one");
        self.ended.cancel();
        StoreError::unavailable(why)
    }

    /// The marker and its `mod_revision`, if there is one.
    fn read_marker(&self) -> Result<Option<(Marker, i64)>, StoreError> {
        let key = self.marker_key();
        let resp = self
            .members
            .run(move |mut kv| {
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .map_err(|e| unavailable(&e))?;
        if let Some(h) = resp.header() {
            self.saw(h.revision());
        }
        resp.kvs()
            .first()
            .map(|kv| {
                serde_json::from_slice(kv.value())
                    .map(|m| (m, kv.mod_revision()))
                    .map_err(|e| {
                        StoreError::new(format!(
                            "the broker's marker {} does not decode ({e}): it was written by \
                             something other than iris-api; delete it with etcdctl to go on",
                            self.marker_key()
                        ))
                    })
            })
            .transpose()
    }

    /// The transaction of write number `write`: `ops` apply only under
    /// this broker's leadership and on top of the marker at `known`, and
    /// stamp the marker with that number.
    fn guarded_txn(
        &self,
        ops: Vec<TxnOp>,
        known: i64,
        write: u64,
    ) -> Result<(Txn, Marker), StoreError> {
        let marker = Marker {
            by: self.by.clone(),
            write,
        };
        let stamp = serde_json::to_vec(&marker).map_err(|e| StoreError::new(e.to_string()))?;
        let mut ops = ops;
        ops.push(TxnOp::put(self.marker_key(), stamp, None));
        let txn = Txn::new()
            .when([
                self.fence.clone(),
                Compare::mod_revision(self.marker_key(), CompareOp::Equal, known),
            ])
            .and_then(ops);
        Ok((txn, marker))
    }

    /// Sends `ops` as write number `w.write + 1`; the marker's revision
    /// once applied. A refused guard with the marker being the one this
    /// write leaves means a member applied it and its answer was lost
    /// before the client tried the next member.
    fn send(&self, w: &mut Writes, ops: Vec<TxnOp>) -> Result<i64, Refused> {
        w.write += 1;
        let (txn, marker) = self
            .guarded_txn(ops, w.known, w.write)
            .map_err(Refused::Error)?;
        let resp = self
            .members
            .txn(txn)
            .map_err(|e| Refused::Error(unavailable(&e)))?;
        let rev = if resp.succeeded() {
            resp.header().map_or(w.known, |h| h.revision())
        } else {
            let found = match self.read_marker() {
                Ok(found) => found,
                // A marker that does not decode was written by something
                // else: the same as any other writer's.
                Err(e) if !e.unavailable => None,
                Err(e) => return Err(Refused::Error(e)),
            };
            match found {
                Some((found, rev)) if found == marker => rev,
                Some((found, rev)) => {
                    return Err(Refused::Moved {
                        by_us: found.by == self.by,
                        rev,
                    })
                }
                None => {
                    return Err(Refused::Moved {
                        by_us: false,
                        rev: 0,
                    })
                }
            }
        };
        w.known = rev;
        self.saw(rev);
        Ok(rev)
    }

    /// A write refused by its guard: this broker no longer leads, or
    /// something else wrote the store. Its term ends either way, for the
    /// next active broker to read the store as it is.
    fn refused(&self, what: &str) -> StoreError {
        match self.still_leading() {
            Ok(false) => self.end_term(&format!(
                "this broker no longer leads the brokers sharing the store (its lease expired or \
                 another broker won the election), so {what} was not written; the active broker \
                 takes writes"
            )),
            Ok(true) => self.end_term(&format!(
                "the broker's records under {:?} were written by something other than this \
                 broker since it last wrote them (an iris-api with the same [store] prefix \
                 outside this election, or etcdctl), so {what} was not written; the next active \
                 broker reads them again",
                self.prefix
            )),
            Err(e) => self.end_term(&format!(
                "{what} was refused by its guard, and whether this broker still leads cannot be \
                 read ({e})"
            )),
        }
    }

    /// Whether this broker's leadership still holds.
    fn still_leading(&self) -> Result<bool, StoreError> {
        let txn = Txn::new().when([self.fence.clone()]);
        Ok(self
            .members
            .txn(txn)
            .map_err(|e| unavailable(&e))?
            .succeeded())
    }

    /// Makes a write in doubt as if it never happened: its key put back to
    /// what it held before it, on top of the newest marker this broker
    /// left, so that neither it nor any other attempt of this broker still
    /// in flight can apply afterwards.
    fn settle(&self, w: &mut Writes, doubt: &Doubt) -> Result<(), StoreError> {
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
        let undo = match before.kvs().first() {
            Some(kv) => TxnOp::put(doubt.key.clone(), kv.value().to_vec(), None),
            None => TxnOp::delete(doubt.key.clone(), None),
        };
        let what = format!("the undo of {}", doubt.key);
        // Each of this broker's attempts that applied late moves the
        // marker once; there is one at a time, and its retries on other
        // members.
        for _ in 0..=self.members_count() {
            match self.send(w, vec![undo.clone()]) {
                Ok(_) => return Ok(()),
                Err(Refused::Moved { by_us: true, rev }) => w.known = rev,
                Err(Refused::Moved { by_us: false, .. }) => return Err(self.refused(&what)),
                Err(Refused::Error(e)) => return Err(e),
            }
        }
        Err(self.refused(&what))
    }

    fn members_count(&self) -> usize {
        self.members.endpoints().len()
    }

    /// Settles a write in doubt now, if there is one: what a broker
    /// about to stop being the active one does, so that the next one does
    /// not find it (best effort: etcd may still not answer).
    pub fn settle_doubt(&self) -> Result<(), StoreError> {
        let mut w = self.lock()?;
        if let Some(d) = w.doubt.clone() {
            self.settle(&mut w, &d)?;
            w.doubt = None;
        }
        Ok(())
    }

    /// Writes `op` to `key`, after settling an earlier write in doubt;
    /// a write whose answer is lost becomes the doubt.
    fn write(&self, key: String, op: TxnOp) -> Result<(), StoreError> {
        let mut w = self.lock()?;
        if self.ended.is_cancelled() {
            return Err(StoreError::unavailable(
                "this broker is no longer the active one; the active broker takes writes",
            ));
        }
        if let Some(d) = w.doubt.clone() {
            self.settle(&mut w, &d).map_err(|e| StoreError {
                message: format!(
                    "an earlier write whose outcome is unknown could not be undone yet ({}), so \
                     nothing was written",
                    e.message
                ),
                unavailable: e.unavailable,
            })?;
            w.doubt = None;
        }
        let before = self.seen.load(Ordering::Relaxed);
        match self.send(&mut w, vec![op]) {
            Ok(_) => Ok(()),
            Err(Refused::Moved { .. }) => Err(self.refused(&key)),
            Err(Refused::Error(e)) if e.unavailable && !self.ended.is_cancelled() => {
                w.doubt = Some(Doubt { key, before });
                Err(StoreError::unavailable(format!(
                    "{}; whether the write was applied is unknown: this broker undoes it before \
                     its next write or as it stops, but one cut off from etcd until its lease \
                     ends cannot, so read the object back before retrying",
                    e.message
                )))
            }
            Err(Refused::Error(e)) => Err(e),
        }
    }
}

/// Why a write did not apply.
enum Refused {
    /// Its guard failed: the marker is at `rev`, left by another of this
    /// broker's writes (`by_us`, one sent before whose answer was lost) or
    /// by something else, or this broker no longer leads.
    Moved { by_us: bool, rev: i64 },
    /// Not sent, or sent without an answer (`unavailable`): it may still
    /// apply.
    Error(StoreError),
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
