//! The broker's etcd store against a real three-member etcd cluster on
//! loopback, started by each test in its own directories.

#![allow(clippy::unwrap_used)]

use super::*;
use iris_controller::election::Candidate;
use iris_testbed::etcd::EtcdCluster;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(2);

fn cluster() -> (tempfile::TempDir, EtcdCluster) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start(dir.path(), 3)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    (dir, cluster)
}

fn config(c: &EtcdCluster) -> EtcdConfig {
    let mut config = EtcdConfig::new(c.endpoints(), "iris/dc1/");
    config.dial_timeout = Duration::from_secs(3);
    config.request_timeout = Duration::from_secs(2);
    config
}

async fn leading(c: &EtcdCluster, name: &str) -> (Candidate, Leadership) {
    let candidate = Candidate::join_election(&config(c), ELECTION, name, TTL)
        .await
        .unwrap();
    let leadership = candidate.campaign().await.unwrap();
    (candidate, leadership)
}

/// Opens the store off the runtime's threads, as the broker does.
async fn open(c: &EtcdCluster, l: &Leadership) -> Arc<EtcdStore> {
    let (config, l) = (config(c), l.clone());
    tokio::task::spawn_blocking(move || {
        Arc::new(EtcdStore::open(config, &l, CancellationToken::new()).unwrap())
    })
    .await
    .unwrap()
}

use std::sync::Arc;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_kept_per_tree_in_id_order_beside_the_controllers() {
    let (_dir, c) = cluster();
    let (_candidate, l) = leading(&c, "api1").await;
    let s = open(&c, &l).await;
    let scanned = blocking({
        let s = s.clone();
        move || {
            s.put("flavors", "p1/small", b"1").unwrap();
            s.put("flavors", "p1/large", b"2").unwrap();
            s.put("flavor", "x", b"not a flavor").unwrap();
            s.put("nodes", "n1", b"3").unwrap();
            s.put("nodes", "n2", b"4").unwrap();
            s.delete("nodes", "n1").unwrap();
            s.delete("nodes", "never-there").unwrap();
            (s.scan("flavors").unwrap(), s.scan("nodes").unwrap())
        }
    })
    .await;
    assert_eq!(
        scanned.0,
        vec![
            ("p1/large".to_owned(), b"2".to_vec()),
            ("p1/small".to_owned(), b"1".to_vec())
        ]
    );
    assert_eq!(scanned.1, vec![("n2".to_owned(), b"4".to_vec())]);
    // Under the controller's prefix, apart from the controller's keys.
    let mut client = etcd_client::Client::connect(c.endpoints(), None)
        .await
        .unwrap();
    let all = client
        .get(
            "iris/dc1/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    let keys: Vec<String> = all
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("iris/dc1/broker/records/")
                || k.starts_with("iris/dc1/broker/leader")
                || k == "iris/dc1/broker/marker"),
        "{keys:?}"
    );
    // A second store of the same leadership reads what the first wrote.
    let again = open(&c, &l).await;
    let nodes = blocking(move || again.scan("nodes").unwrap()).await;
    assert_eq!(nodes, vec![("n2".to_owned(), b"4".to_vec())]);
}

/// A broker whose leadership passed to another has every write refused
/// (nothing of it lands) and its term ended; the new one writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_brokers_writes_are_refused_and_end_its_term() {
    let (_dir, c) = cluster();
    let (a, la) = leading(&c, "api1").await;
    let old = open(&c, &la).await;
    blocking({
        let old = old.clone();
        move || old.put("pms", "pm1", b"before").unwrap()
    })
    .await;
    let b = Candidate::join_election(&config(&c), ELECTION, "api2", TTL)
        .await
        .unwrap();
    a.resign(la).await.unwrap();
    let lb = tokio::time::timeout(Duration::from_secs(5), b.campaign())
        .await
        .unwrap()
        .unwrap();
    let e = blocking({
        let old = old.clone();
        move || old.put("pms", "pm1", b"late").unwrap_err()
    })
    .await;
    assert!(e.unavailable, "{e}");
    assert!(e.message.contains("no longer leads"), "{e}");
    assert!(old.ended().is_cancelled());
    // Refused at once afterwards, without asking etcd.
    let again = blocking({
        let old = old.clone();
        move || old.delete("pms", "pm1").unwrap_err()
    })
    .await;
    assert!(
        again.message.contains("no longer the active one"),
        "{again}"
    );
    let new = open(&c, &lb).await;
    let pms = blocking(move || {
        new.put("pms", "pm2", b"new").unwrap();
        new.scan("pms").unwrap()
    })
    .await;
    assert_eq!(
        pms,
        vec![
            ("pm1".to_owned(), b"before".to_vec()),
            ("pm2".to_owned(), b"new".to_vec())
        ]
    );
}

/// A write whose outcome was unknown and that etcd did apply is put back
/// before the next write, or as the broker stops, so the store ends as the
/// broker's records (which never took it) say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_doubt_is_undone_before_the_next() {
    let (_dir, c) = cluster();
    let (_a, l) = leading(&c, "api1").await;
    let s = open(&c, &l).await;
    blocking({
        let s = s.clone();
        move || {
            s.put("vis", "vi1", b"kept").unwrap();
            s.scan("vis").unwrap();
        }
    })
    .await;
    // What a lost answer leaves: the write applied, the broker told
    // "unknown", its records still holding the value from before.
    let before = s.seen.load(Ordering::Relaxed);
    let mut client = etcd_client::Client::connect(c.endpoints(), None)
        .await
        .unwrap();
    for (key, value) in [("vis/vi1", "doubtful"), ("vis/vi2", "doubtful too")] {
        let key = format!("iris/dc1/{RECORDS}{key}");
        client.put(key.clone(), value, None).await.unwrap();
        s.writes.lock().unwrap().doubt = Some(Doubt { key, before });
        blocking({
            let s = s.clone();
            move || s.put("nodes", "n1", b"next").unwrap()
        })
        .await;
    }
    // And as the broker stops, with no write after it.
    let key = format!("iris/dc1/{RECORDS}vis/vi3");
    client
        .put(key.clone(), "doubtful three", None)
        .await
        .unwrap();
    s.writes.lock().unwrap().doubt = Some(Doubt { key, before });
    blocking({
        let s = s.clone();
        move || s.settle_doubt().unwrap()
    })
    .await;
    assert!(s.writes.lock().unwrap().doubt.is_none());
    let (vis, nodes) = blocking(move || (s.scan("vis").unwrap(), s.scan("nodes").unwrap())).await;
    assert_eq!(vis, vec![("vi1".to_owned(), b"kept".to_vec())]);
    assert_eq!(nodes, vec![("n1".to_owned(), b"next".to_vec())]);
}

/// Without a quorum a write fails as unavailable, quickly, and is in
/// doubt; with the members back the next write settles it and lands, and
/// the refused one is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_fail_as_unavailable_and_nothing_refused_shows_later() {
    let (_dir, mut c) = cluster();
    let (a, l) = leading(&c, "api1").await;
    let s = open(&c, &l).await;
    blocking({
        let s = s.clone();
        move || s.put("providers", "p1", b"acknowledged").unwrap()
    })
    .await;
    c.kill(0).unwrap();
    c.kill(1).unwrap();
    let started = std::time::Instant::now();
    let e = blocking({
        let s = s.clone();
        move || s.put("providers", "p2", b"refused").unwrap_err()
    })
    .await;
    assert!(e.unavailable, "{e}");
    assert!(e.message.contains("unknown"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(s.writes.lock().unwrap().doubt.is_some());
    c.restore(0).unwrap();
    c.restore(1).unwrap();
    c.wait_writable().unwrap();
    // The lease may have lapsed while the quorum was gone: lead again.
    a.abandon();
    let (_b, l) = leading(&c, "api1").await;
    let s = Arc::new(EtcdStore {
        fence: l.fence(),
        ..Arc::try_unwrap(s).unwrap()
    });
    let providers = blocking(move || {
        s.put("providers", "p3", b"after").unwrap();
        assert!(s.writes.lock().unwrap().doubt.is_none());
        s.scan("providers").unwrap()
    })
    .await;
    assert_eq!(
        providers,
        vec![
            ("p1".to_owned(), b"acknowledged".to_vec()),
            ("p3".to_owned(), b"after".to_vec())
        ]
    );
}

/// An attempt of a write that a member applies late (the client timed out
/// on it and the next member applied the write) changes nothing once the
/// broker wrote the key again; and an attempt applied with its answer lost
/// counts as applied when the retry finds the marker it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_attempt_of_a_write_never_overwrites_a_later_one() {
    let (_dir, c) = cluster();
    let (_a, l) = leading(&c, "api1").await;
    let s = open(&c, &l).await;
    let key = format!("iris/dc1/{RECORDS}vis/vi1");
    let attempt = |s: &EtcdStore, value: &str| {
        let w = s.writes.lock().unwrap();
        s.guarded_txn(
            vec![TxnOp::put(key.clone(), value, None)],
            w.known,
            w.write + 1,
        )
        .unwrap()
        .0
    };
    // The first attempt, stuck at a member, and the broker's own write,
    // the same transaction, applied by the next member.
    let stuck = attempt(&s, "one");
    blocking({
        let s = s.clone();
        move || {
            s.put("vis", "vi1", b"one").unwrap();
            s.put("vis", "vi1", b"two").unwrap();
        }
    })
    .await;
    let mut client = etcd_client::Client::connect(c.endpoints(), None)
        .await
        .unwrap();
    assert!(!client.txn(stuck).await.unwrap().succeeded());
    // Applied by a member whose answer was lost: the retry finds it done.
    let lost = attempt(&s, "three");
    assert!(client.txn(lost).await.unwrap().succeeded());
    let (vis, ended) = blocking({
        let s = s.clone();
        move || {
            s.put("vis", "vi1", b"three").unwrap();
            (s.scan("vis").unwrap(), s.ended().is_cancelled())
        }
    })
    .await;
    assert_eq!(vis, vec![("vi1".to_owned(), b"three".to_vec())]);
    assert!(!ended);
    // Something else stamping the marker ends the term, and is named; so
    // does a marker that does not decode, found under a refused guard.
    for (stamp, late) in [
        (r#"{"by":"etcdctl","write":1}"#, "four"),
        ("not a marker", "five"),
    ] {
        let s = open(&c, &l).await;
        client
            .put("iris/dc1/broker/marker", stamp, None)
            .await
            .unwrap();
        let e = blocking({
            let s = s.clone();
            move || s.put("vis", "vi1", late.as_bytes()).unwrap_err()
        })
        .await;
        assert!(
            e.message.contains("something other than this broker"),
            "{stamp}: {e}"
        );
        assert!(s.ended().is_cancelled(), "{stamp}");
        let now = client.get(key.as_str(), None).await.unwrap();
        assert_eq!(now.kvs()[0].value(), b"three", "{stamp}");
    }
}

/// A write in doubt that applies after the broker read the marker for its
/// undo: the undo goes on top of it, and the store ends as the records say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_doubt_applying_during_its_undo_is_still_undone() {
    let (_dir, c) = cluster();
    let (_a, l) = leading(&c, "api1").await;
    let s = open(&c, &l).await;
    blocking({
        let s = s.clone();
        move || s.put("vis", "vi1", b"kept").unwrap()
    })
    .await;
    let key = format!("iris/dc1/{RECORDS}vis/vi1");
    // Sent, no answer: in doubt, applying only now, under the marker the
    // broker knew, with the number it used.
    let doubtful = {
        let mut w = s.writes.lock().unwrap();
        w.write += 1;
        let (txn, _) = s
            .guarded_txn(
                vec![TxnOp::put(key.clone(), "doubtful", None)],
                w.known,
                w.write,
            )
            .unwrap();
        w.doubt = Some(Doubt {
            key: key.clone(),
            before: s.seen.load(Ordering::Relaxed),
        });
        txn
    };
    let mut client = etcd_client::Client::connect(c.endpoints(), None)
        .await
        .unwrap();
    assert!(client.txn(doubtful).await.unwrap().succeeded());
    let (vis, ended) = blocking({
        let s = s.clone();
        move || {
            s.settle_doubt().unwrap();
            (s.scan("vis").unwrap(), s.ended().is_cancelled())
        }
    })
    .await;
    assert_eq!(vis, vec![("vi1".to_owned(), b"kept".to_vec())]);
    assert!(!ended);
}
