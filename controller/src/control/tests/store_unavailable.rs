//! A store that is unavailable (etcd without a quorum) refuses API writes,
//! which are undone, while the controller goes on: what the data plane
//! teaches meanwhile is followed and committed once the store is back.

use super::*;
use crate::model::Vlan;
use crate::registry::Change;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A [`store::MemoryStore`] that is unavailable while `down` is set.
#[derive(Debug)]
struct Flaky {
    down: Arc<AtomicBool>,
    inner: Arc<Mutex<store::MemoryStore>>,
}

impl Store for Flaky {
    fn load(&self) -> Result<store::Snapshot, store::StoreError> {
        self.inner.lock().unwrap().load()
    }

    fn commit(&mut self, batch: &store::Batch) -> Result<(), store::StoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(store::StoreError::Unavailable {
                backend: "test",
                message: "no quorum".into(),
            });
        }
        self.inner.lock().unwrap().commit(batch)
    }
}

type Stored = Arc<Mutex<store::MemoryStore>>;

/// Stores `c`'s registry as it is into a [`Flaky`] store, and persists to it.
fn flaky(c: &mut Control) -> (Arc<AtomicBool>, Stored) {
    let down = Arc::new(AtomicBool::new(false));
    let inner: Stored = Arc::default();
    let mut all = store::Batch::new();
    for (k, e) in c.registry.macs() {
        all.record_changes(&[RegistryChange::Mac(Change {
            key: *k,
            before: None,
            after: Some(e.clone()),
        })]);
    }
    inner.lock().unwrap().commit(&all).unwrap();
    c.persist_to(Box::new(Flaky {
        down: Arc::clone(&down),
        inner: Arc::clone(&inner),
    }));
    (down, inner)
}

fn stored_location(stored: &Stored, key: &MacKey) -> Option<Location> {
    let r = stored.lock().unwrap().load().unwrap().registry();
    r.mac(key)?.location.clone()
}

fn key_of(mac: MacAddr) -> MacKey {
    MacKey {
        vi: ViId(1),
        vlan: Vlan::Untagged,
        mac,
    }
}

#[test]
fn an_api_write_the_store_cannot_take_is_undone_and_the_controller_goes_on() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let (down, stored) = flaky(&mut c);
    let key = key_of(mac);
    let before = c.registry.clone();
    down.store(true, Ordering::Relaxed);

    c.delete_registry_entry(&key).unwrap();
    let why = c.take_refusal().expect("the delete was refused");
    assert!(
        why.contains("unavailable") && why.contains("no quorum"),
        "{why}"
    );
    assert_eq!(c.registry, before, "the refused delete was undone");
    c.delete_vi(ViId(1)).unwrap();
    assert!(c.take_refusal().is_some());
    assert!(
        c.topology.vis.contains_key(&ViId(1)),
        "the VI is still there"
    );
    assert_eq!(c.registry, before);
    for (conn, rx) in &mut rxs {
        assert!(
            batches(rx).is_empty(),
            "switch {conn} was told of a refused change"
        );
    }
    assert!(
        !c.halted() && !c.stop.is_cancelled(),
        "the controller goes on"
    );
    assert_eq!(metric(&c, "iris_store_unavailable_total"), 2);

    down.store(false, Ordering::Relaxed);
    c.delete_registry_entry(&key).unwrap();
    assert_eq!(c.take_refusal(), None);
    assert!(c.registry.mac(&key).is_none());
    assert!(stored.lock().unwrap().load().unwrap().macs.is_empty());
}

#[test]
fn a_move_while_the_store_is_away_is_followed_and_stored_once_it_is_back() {
    let (mut c, mut rxs, mac) = vm_on_pm1();
    let (down, stored) = flaky(&mut c);
    let key = key_of(mac);
    let on_pm1 = stored_location(&stored, &key);
    down.store(true, Ordering::Relaxed);

    c.begin_burst();
    migrate_to_pm2(&mut c, mac);
    c.end_burst();
    let on_pm2 = Some(Location::Port {
        host: HostName("pm2".into()),
        ofport: 6,
    });
    assert_eq!(c.registry.mac(&key).unwrap().location, on_pm2, "followed");
    assert!(
        !tickets(rxs.get_mut(&2).unwrap()).is_empty(),
        "pm2, where the VM went, was reprogrammed"
    );
    assert_eq!(stored_location(&stored, &key), on_pm1);
    c.on_tick(Instant::now());
    assert_eq!(stored_location(&stored, &key), on_pm1, "still away");
    assert!(!c.halted());

    down.store(false, Ordering::Relaxed);
    c.on_tick(Instant::now());
    assert_eq!(stored_location(&stored, &key), on_pm2, "stored once back");
    assert!(c.owed.is_empty());
}
