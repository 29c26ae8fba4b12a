//! Two `iris-controller` replicas on a three-member etcd cluster: the
//! leader is killed with SIGKILL in the middle of a burst of registry
//! writes sent to the standby's API (which forwards them), the standby
//! takes over within the lease's ttl, and every write the API
//! acknowledged is there afterwards, on the new leader and on the old one
//! restarted as a standby.

#![allow(clippy::unwrap_used)]

use iris_testbed::controller::ControllerProcess;
use iris_testbed::etcd::EtcdCluster;
use serde_json::json;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two free loopback ports per replica (OpenFlow, API).
fn ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Writes replica `me`'s configuration into `dir`.
fn config(dir: &Path, me: usize, ports: &[u16], etcd: &EtcdCluster) -> PathBuf {
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut replicas = String::new();
    for i in 0..ports.len() / 2 {
        replicas.push_str(&format!(
            "[[cluster.replica]]\nname = \"ctl{i}\"\nopenflow = \"tcp:127.0.0.1:{}\"\n\
             api = \"http://127.0.0.1:{}\"\n",
            ports[2 * i],
            ports[2 * i + 1]
        ));
    }
    let text = format!(
        "listen = \"127.0.0.1:{}\"\nplain_openflow = true\napi = \"127.0.0.1:{}\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = [{endpoints}]\nprefix = \"iris/failover/\"\n\
         request_timeout_secs = 2\n\
         [cluster]\nname = \"ctl{me}\"\nlease_ttl_secs = 2\n{replicas}\
         [[host]]\nname = \"gw1\"\nunderlay_ip = \"10.0.0.9\"\nrole = \"gateway\"\n\
         ovsdb = \"unix:{}/gw1.sock\"\n\
         [[vi]]\nid = 1\nname = \"acme\"\ngre_key = 1001\ngateways = [\"gw1\"]\n",
        ports[2 * me],
        ports[2 * me + 1],
        dir.display()
    );
    let path = dir.join(format!("ctl{me}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn start(dir: &Path, me: usize, config: &Path) -> ControllerProcess {
    ControllerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_iris-controller")),
        config,
        &dir.join(format!("ctl{me}.{}.log", std::process::id())),
    )
    .unwrap()
}

fn leads(c: &ControllerProcess) -> bool {
    c.metrics()
        .ok()
        .and_then(|m| m.get("iris_leader").ok())
        .is_some_and(|v| v == 1.0)
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

fn mac(i: usize) -> String {
    format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256)
}

fn put(c: &ControllerProcess, i: usize) -> u16 {
    let body = json!({"location": {"kind": "gateway", "gateway": "gw1"}, "ips": []});
    let path = format!("/v1/registry/1/untagged/{}", mac(i));
    c.request("PUT", &path, Some(&body)).map_or(0, |(s, _)| s)
}

#[test]
fn every_acknowledged_write_survives_a_kill_of_the_leader_and_a_standby_takes_over_in_3_s() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 3)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    let ports = ports(4);
    let configs: Vec<PathBuf> = (0..2)
        .map(|i| config(dir.path(), i, &ports, &etcd))
        .collect();
    let leader = start(dir.path(), 0, &configs[0]);
    wait_until("ctl0 leads", Duration::from_secs(10), || leads(&leader));
    let standby = Arc::new(start(dir.path(), 1, &configs[1]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!leads(&standby), "two leaders");

    // The burst, through the standby's API: each write is retried until
    // acknowledged (a 503 while no one leads, or the leader's death
    // mid-request, acknowledges nothing).
    const WRITES: usize = 400;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (standby, acked, refused, stop) = (
            standby.clone(),
            acked.clone(),
            refused.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            for i in 0..WRITES {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match put(&standby, i) {
                        200 | 201 => {
                            acked.lock().unwrap().insert(mac(i));
                            break;
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            }
        })
    };
    wait_until("100 writes acknowledged", Duration::from_secs(30), || {
        acked.lock().unwrap().len() >= 100
    });
    let killed = Instant::now();
    leader.kill().unwrap();
    wait_until("the standby leads", Duration::from_secs(10), || {
        leads(&standby)
    });
    let took = killed.elapsed();
    eprintln!("the standby led {} ms after the kill", took.as_millis());
    assert!(took < Duration::from_secs(3), "took over after {took:?}");
    wait_until("the burst ends", Duration::from_secs(60), || {
        writer.is_finished()
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), WRITES);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "no write was refused: the kill did not land in the burst"
    );

    let (status, body) = standby.request("GET", "/v1/registry?vi=1", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let missing: Vec<&String> = acked.iter().filter(|m| !body.contains(*m)).collect();
    assert!(missing.is_empty(), "acknowledged, then lost: {missing:?}");

    // The old leader, back as a standby: its reads show the new leader's
    // writes, and its writes reach the leader.
    let back = start(dir.path(), 0, &configs[0]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!leads(&back), "the restarted replica took the leadership");
    let (status, body) = back.request("GET", "/v1/registry?vi=1", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        acked.iter().all(|m| body.contains(m)),
        "a standby's read is behind"
    );
    assert_eq!(put(&back, WRITES), 201, "{}", back.log_tail(20));
    let on_leader = standby
        .request(
            "GET",
            &format!("/v1/registry/1/untagged/{}", mac(WRITES)),
            None,
        )
        .unwrap();
    assert_eq!(on_leader.0, 200, "the forwarded write is not on the leader");
    wait_until("the standby's view follows", Duration::from_secs(2), || {
        back.request(
            "GET",
            &format!("/v1/registry/1/untagged/{}", mac(WRITES)),
            None,
        )
        .is_ok_and(|(s, _)| s == 200)
    });
}
