//! The broker's records: one trait, with sled (embedded, the default) or
//! etcd (shared by several brokers, `etcd.rs`) behind it.
//!
//! Every record is JSON under its id in a tree named for its kind. A write
//! is durable before it returns (sled flushes; etcd commits on a quorum),
//! so a record the API has answered about survives a kill -9 of the
//! broker.

use std::fmt;
use std::path::Path;

pub mod etcd;

/// Why the store could not read or write.
#[derive(Debug, thiserror::Error)]
#[error("store: {message}")]
pub struct StoreError {
    pub message: String,
    /// The store could not be reached or this broker may no longer write
    /// to it: a retry later (or at the active broker) may work.
    pub unavailable: bool,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unavailable: false,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unavailable: true,
        }
    }
}

/// Where the broker keeps its records.
pub trait Store: Send + Sync + fmt::Debug {
    fn put(&self, tree: &str, id: &str, value: &[u8]) -> Result<(), StoreError>;
    fn delete(&self, tree: &str, id: &str) -> Result<(), StoreError>;
    /// Every record of `tree`, in id order.
    fn scan(&self, tree: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// The embedded default.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens the database in directory `path`, or creates it there. A lock
    /// still held by another process is waited for a bounded time: a
    /// broker restarted right after a `kill -9` can find its predecessor's
    /// lock held by a child that predecessor was spawning.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_within(path, iris_controller::store::lock::LOCK_WAIT)
    }

    fn open_within(path: &Path, wait: std::time::Duration) -> Result<Self, StoreError> {
        use iris_controller::store::lock;
        lock::open_waiting(path, wait, || sled::open(path), lock::is_lock_held)
            .map(|db| Self { db })
            .map_err(|e| {
                if lock::is_lock_held(&e) {
                    StoreError::new(format!(
                        "another process is using the store {} (held by {} after a {} s wait); \
                         stop it, or set `store` in the configuration to another directory",
                        path.display(),
                        lock::holders_text(&path.join("db")),
                        wait.as_secs_f32()
                    ))
                } else {
                    StoreError::new(format!("cannot open {}: {e}", path.display()))
                }
            })
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree(name)
            .map_err(|e| StoreError::new(format!("tree {name}: {e}")))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| StoreError::new(format!("flush: {e}")))
    }
}

impl Store for SledStore {
    fn put(&self, tree: &str, id: &str, value: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?
            .insert(id.as_bytes(), value)
            .map_err(|e| StoreError::new(format!("{tree}/{id}: {e}")))?;
        self.flush()
    }

    fn delete(&self, tree: &str, id: &str) -> Result<(), StoreError> {
        self.tree(tree)?
            .remove(id.as_bytes())
            .map_err(|e| StoreError::new(format!("{tree}/{id}: {e}")))?;
        self.flush()
    }

    fn scan(&self, tree: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.tree(tree)?
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| StoreError::new(format!("{tree}: {e}")))?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put("nodes", "b", b"2").unwrap();
            s.put("nodes", "a", b"1").unwrap();
            s.put("nodes", "c", b"3").unwrap();
            s.delete("nodes", "c").unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            s.scan("nodes").unwrap(),
            vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]
        );
        assert!(s.scan("vis").unwrap().is_empty());
    }

    #[test]
    fn a_store_held_by_another_opener_is_waited_for_then_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = SledStore::open(dir.path()).unwrap();
        let e = SledStore::open_within(dir.path(), std::time::Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        let me = format!("held by {} (", std::process::id());
        assert!(
            e.contains("another process is using the store") && e.contains(&me),
            "{e}"
        );
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(first);
        });
        let second = SledStore::open(dir.path());
        releaser.join().unwrap();
        assert!(second.is_ok(), "{second:?}");
    }
}
