use super::*;
use crate::fixtures::{host, port, world};
use crate::registry::{EntrySpec, SeedEntry};
use ofp::packet::ArpRepr;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// A registry with an entry of every origin, untagged and tagged, placed
/// and not, and the changes that built it.
fn populated() -> (Registry, Vec<RegistryChange>) {
    let t = world();
    let mut r = Registry::new();
    let mut changes = r
        .seed(
            Timestamp(1),
            &t,
            ViId(1),
            &[
                SeedEntry {
                    mac: mac("52:54:00:00:00:09"),
                    ip: Some(Ipv4Addr::new(10, 0, 0, 9)),
                    vlan: Vlan::Tagged(10),
                    location: Some(Location::BehindGateway {
                        gateway: host("gw"),
                    }),
                },
                SeedEntry {
                    mac: mac("52:54:00:00:00:08"),
                    ip: Some(Ipv4Addr::new(10, 0, 0, 8)),
                    vlan: Vlan::Untagged,
                    location: None,
                },
            ],
        )
        .unwrap();
    let req = ArpRepr::request(
        mac("52:54:00:00:00:01"),
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
    );
    changes.extend(r.learn_arp(Timestamp(2), &port(&t, "a", 2), &req));
    changes.extend(r.learn_arp(
        Timestamp(3),
        &port(&t, "b", 1),
        &ArpRepr::rarp_announce(mac("52:54:00:00:00:07")),
    ));
    let spec = EntrySpec {
        key: MacKey {
            vi: ViId(1),
            vlan: Vlan::Tagged(30),
            mac: mac("52:54:00:00:00:06"),
        },
        location: Some(Location::Port {
            host: host("c"),
            ofport: 3,
        }),
        ips: vec![Ipv4Addr::new(10, 3, 0, 6)],
    };
    changes.extend(r.put(Timestamp(4), &t, &spec).unwrap());
    (r, changes)
}

/// What every backend must do.
fn behaves_as_a_store(store: &mut dyn Store) {
    assert_eq!(store.load().unwrap(), Snapshot::default());
    let (mut r, changes) = populated();
    let t = world();
    let mut batch = Batch::from_changes(&changes);
    for h in t.hosts.values() {
        batch.put_host(h);
    }
    for v in t.vis.values() {
        batch.put_vi(v);
    }
    store.commit(&batch).unwrap();
    let s = store.load().unwrap();
    assert_eq!(s.registry(), r);
    assert_eq!(s.hosts, t.hosts.values().cloned().collect::<Vec<_>>());
    assert_eq!(s.vis, t.vis.values().cloned().collect::<Vec<_>>());

    // Deletions follow the registry, and a batch applies in order.
    let gone = MacKey {
        vi: ViId(1),
        vlan: Vlan::Tagged(30),
        mac: mac("52:54:00:00:00:06"),
    };
    let mut batch = Batch::from_changes(&r.delete(&gone).unwrap());
    batch.delete_host(&host("c"));
    batch.delete_vi(ViId(2));
    batch.put_vi(&t.vis[&ViId(1)]);
    store.commit(&batch).unwrap();
    let s = store.load().unwrap();
    assert_eq!(s.registry(), r);
    assert_eq!(s.hosts.len(), 3);
    assert_eq!(s.vis.len(), 1);
}

#[test]
fn memory_store_keeps_everything() {
    behaves_as_a_store(&mut MemoryStore::new());
}

#[test]
fn sled_store_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SledStore::open(dir.path()).unwrap();
    behaves_as_a_store(&mut s);
    let before = s.load().unwrap();
    assert!(!before.macs.is_empty() && !before.hosts.is_empty());
    drop(s);
    let reopened = reopen(dir.path());
    assert_eq!(reopened.load().unwrap(), before);
}

#[test]
fn corrupt_records_are_reported_by_key() {
    let good = {
        let (_, changes) = populated();
        let mut m = MemoryStore::new();
        m.commit(&Batch::from_changes(&changes)).unwrap();
        m
    };
    let mac_key = "v1/mac/1/10/52:54:00:00:00:09";
    let record = good.records[mac_key].clone();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (mac_key, b"{not json".to_vec(), "key must be a string"),
        (mac_key, b"\xff\xfe".to_vec(), "expected value"),
        (
            mac_key,
            String::from_utf8(record.clone())
                .unwrap()
                .replace("\"vlan\":10", "\"vlan\":5000")
                .into_bytes(),
            "VLAN 5000",
        ),
        (
            mac_key,
            String::from_utf8(record.clone())
                .unwrap()
                .replace("{\"vi\"", "{\"extra\":1,\"vi\"")
                .into_bytes(),
            "unknown field `extra`",
        ),
        (
            mac_key,
            String::from_utf8(record.clone())
                .unwrap()
                .replace("52:54:00:00:00:09", "52:54:zz:00:00:09")
                .into_bytes(),
            "not a MAC address",
        ),
        (
            "v1/mac/1/10/52:54:00:00:00:99",
            record.clone(),
            "belongs under v1/mac/1/10/52:54:00:00:00:09",
        ),
        ("v1/weird/1", b"{}".to_vec(), "not a kind of record"),
    ];
    for (key, value, says) in cases {
        let mut m = good.clone();
        m.records.insert(key.to_owned(), value);
        let err = m.load().unwrap_err();
        let StoreError::Corrupt { key: named, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(named, key);
        assert!(err.to_string().contains(says), "{err} should say {says}");
    }
    // The same through sled's own bytes.
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    s.db.insert(mac_key, &b"[]"[..]).unwrap();
    assert!(matches!(s.load(), Err(StoreError::Corrupt { key, .. }) if key == mac_key));
}

#[test]
fn a_store_in_use_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path()).unwrap();
    let e = SledStore::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("another iris-controller") && e.contains(&dir.path().display().to_string()),
        "{e}"
    );
}

/// Opens the store in `dir` again once the previous handle was dropped:
/// sled's flusher thread holds the files' lock until its current flush
/// ends, which a large batch can make outlast the drop.
fn reopen(dir: &Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(dir) {
            Err(StoreError::InUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened.unwrap(),
        }
    }
}

/// A seed of `n` MACs behind the gateway, one IP each: `2 n` writes.
fn big_seed(n: u32) -> Vec<SeedEntry> {
    (0..n)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            SeedEntry {
                mac: MacAddr([0x52, 0x54, 0x00, a, b, c]),
                ip: Some(Ipv4Addr::new(10, a, b, c)),
                vlan: Vlan::Tagged(10),
                location: Some(Location::BehindGateway {
                    gateway: host("gw"),
                }),
            }
        })
        .collect()
}

#[test]
fn a_batch_larger_than_a_sled_batch_is_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SledStore::open(dir.path()).unwrap();
    let mut r = Registry::new();
    let entries = big_seed(1500);
    let changes = r.seed(Timestamp(1), &world(), ViId(1), &entries).unwrap();
    let batch = Batch::from_changes(&changes);
    assert!(batch.len() > 2 * ATOMIC_OPS);
    s.commit(&batch).unwrap();
    drop(s);
    let reopened = reopen(dir.path());
    assert_eq!(reopened.load().unwrap().registry(), r);
}

/// A seed whose commit stops after its first sled batch (the disk filled,
/// or the controller was killed before the next) leaves a prefix: every
/// stored IP's MAC is stored, and seeding again after the restart, as the
/// client that never got an answer does, ends where one whole seed ends.
#[test]
fn a_seed_cut_between_sled_batches_restarts_to_a_prefix_that_seeding_again_completes() {
    let t = world();
    let entries = big_seed(1500);
    let mut whole = Registry::new();
    let changes = whole.seed(Timestamp(1), &t, ViId(1), &entries).unwrap();
    let batch = Batch::from_changes(&changes);

    for applied in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut chunks = 0;
        let err = s
            .commit_in_chunks(&batch, |b| {
                if chunks == applied {
                    return Err(StoreError::Backend {
                        backend: "test",
                        message: "no space left on device".into(),
                    });
                }
                chunks += 1;
                Ok(s.db.apply_batch(b)?)
            })
            .unwrap_err();
        assert!(err.to_string().contains("no space left"), "{err}");
        drop(s);

        let reopened = reopen(dir.path());
        let stored = reopened.load().unwrap();
        let mut expected = MemoryStore::new();
        let prefix: Vec<_> = batch.ops().take(applied * ATOMIC_OPS).collect();
        for (k, v) in &prefix {
            expected
                .records
                .insert((*k).to_owned(), v.unwrap().to_vec());
        }
        assert_eq!(
            stored,
            expected.load().unwrap(),
            "after {applied} batch(es)"
        );
        assert_eq!(stored.macs.len() + stored.ips.len(), applied * ATOMIC_OPS);
        let macs: std::collections::BTreeSet<MacKey> =
            stored.macs.iter().map(|(k, _)| *k).collect();
        for (k, ip) in &stored.ips {
            let owner = MacKey {
                vi: k.vi,
                vlan: k.vlan,
                mac: ip.mac,
            };
            assert!(macs.contains(&owner), "{k:?} outlived its MAC");
        }

        let mut restarted = stored.registry();
        let again = restarted.seed(Timestamp(1), &t, ViId(1), &entries).unwrap();
        assert_eq!(restarted, whole);
        let mut s = reopened;
        s.commit(&Batch::from_changes(&again)).unwrap();
        assert_eq!(s.load().unwrap().registry(), whole);
    }
}
