//! The election against a real three-member etcd cluster on loopback.

use super::*;
use iris_testbed::etcd::EtcdCluster;

const TTL: Duration = Duration::from_secs(2);

fn cluster() -> (tempfile::TempDir, EtcdCluster) {
    let dir = tempfile::tempdir().unwrap();
    let c = EtcdCluster::start(dir.path(), 3)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    (dir, c)
}

fn config(c: &EtcdCluster) -> EtcdConfig {
    let mut config = EtcdConfig::new(c.endpoints(), "iris/dc1/");
    config.request_timeout = Duration::from_secs(2);
    config
}

/// Whether `campaign` is still waiting after `d`.
async fn still_waiting<T>(campaign: &mut JoinHandle<T>, d: Duration) -> bool {
    tokio::time::timeout(d, campaign).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_and_takes_over_when_the_leaders_lease_expires() {
    let (_dir, c) = cluster();
    let a = Candidate::join(&config(&c), "a", TTL).await.unwrap();
    let b = std::sync::Arc::new(Candidate::join(&config(&c), "b", TTL).await.unwrap());
    let first = a.campaign().await.unwrap();
    let standby = std::sync::Arc::clone(&b);
    let mut campaign = tokio::spawn(async move { standby.campaign().await });
    assert!(
        still_waiting(&mut campaign, Duration::from_secs(1)).await,
        "b won beside a"
    );
    assert_eq!(b.leader().await.unwrap().as_deref(), Some("a"));
    // Longer than the ttl: a keeps its lease alive.
    let mut probe = Client::connect(c.endpoints(), None).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(TTL / 2).await;
        let ttl = probe.lease_time_to_live(a.lease, None).await.unwrap().ttl();
        assert!(ttl > 0 && *a.alive().borrow(), "a's lease: ttl {ttl}");
    }
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(10), &mut campaign).await {
        panic!("b's campaign ended while a was alive: {r:?}");
    }

    // a dies without a word (kill -9): its lease expires, b wins.
    let died = Instant::now();
    a.abandon();
    let second = tokio::time::timeout(TTL * 3, campaign)
        .await
        .expect("b never took over")
        .unwrap()
        .unwrap();
    let took = died.elapsed();
    assert!(
        took <= TTL + Duration::from_secs(2),
        "took over after {took:?}"
    );
    assert_eq!(b.leader().await.unwrap().as_deref(), Some("b"));
    assert!(second.generation() > first.generation());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resigning_leader_hands_over_at_once_and_its_fence_fails() {
    let (_dir, c) = cluster();
    let a = Candidate::join(&config(&c), "a", TTL).await.unwrap();
    let b = std::sync::Arc::new(Candidate::join(&config(&c), "b", TTL).await.unwrap());
    assert_eq!(a.leader().await.unwrap(), None);
    let first = a.campaign().await.unwrap();
    let standby = std::sync::Arc::clone(&b);
    let campaign = tokio::spawn(async move { standby.campaign().await });

    // The fence holds while a leads, and not after.
    let mut kv = Client::connect(c.endpoints(), None).await.unwrap();
    let fenced = |l: &Leadership| {
        etcd_client::Txn::new()
            .when([l.fence()])
            .and_then([etcd_client::TxnOp::put("iris/dc1/probe", "x", None)])
    };
    assert!(kv.txn(fenced(&first)).await.unwrap().succeeded());
    let resigned = Instant::now();
    a.resign(first.clone()).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(2), campaign)
        .await
        .expect("b did not take over")
        .unwrap()
        .unwrap();
    assert!(resigned.elapsed() < Duration::from_secs(1));
    assert_eq!(a.leader().await.unwrap().as_deref(), Some("b"));
    assert!(
        !kv.txn(fenced(&first)).await.unwrap().succeeded(),
        "a deposed leader's write went through"
    );
    assert!(kv.txn(fenced(&second)).await.unwrap().succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_quorum_learns_that_its_lease_is_gone() {
    let (_dir, mut c) = cluster();
    let a = Candidate::join(&config(&c), "a", TTL).await.unwrap();
    let _lead = a.campaign().await.unwrap();
    let mut alive = a.alive();
    c.kill(0).unwrap();
    c.kill(1).unwrap();
    let lost = Instant::now();
    tokio::time::timeout(TTL * 3, alive.wait_for(|a| !*a))
        .await
        .expect("the leader still believes in its lease")
        .unwrap();
    assert!(
        lost.elapsed() <= TTL + Duration::from_secs(2),
        "{:?}",
        lost.elapsed()
    );
}
