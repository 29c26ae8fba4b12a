//! Two `iris-controller` replicas on a three-member etcd cluster: the
//! leader is killed with SIGKILL in the middle of a burst of registry
//! writes sent to the standby's API (which forwards them), the standby
//! takes over within the lease's ttl, and every write the API
//! acknowledged is there afterwards, on the new leader and on the old one
//! restarted as a standby. And against a real Open vSwitch bridge with
//! both replicas as its controllers: the leader is MASTER and the standby
//! SLAVE; killed, the leader is replaced as MASTER within 3 s by a standby
//! that sends the switch nothing, and the switch keeps its flows. And a
//! replica started while etcd has no quorum: SLAVE, reads answered, writes
//! refused, leading once the quorum is back. And over HTTPS with tokens: a
//! standby given the replicas' API CA forwards a write to the leader. The
//! real-OVS ones need root
//! and Open vSwitch, and fail (never skip) without them.

#![allow(clippy::unwrap_used)]

mod local_ovs;

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

/// The hosts and VIs of the registry test.
fn gateway_and_vi(dir: &Path) -> String {
    format!(
        "[[host]]\nname = \"gw1\"\nunderlay_ip = \"10.0.0.9\"\nrole = \"gateway\"\n\
         ovsdb = \"unix:{}/gw1.sock\"\n\
         [[vi]]\nid = 1\nname = \"acme\"\ngre_key = 1001\ngateways = [\"gw1\"]\n",
        dir.display()
    )
}

/// Writes replica `me`'s configuration into `dir`, with `tables` (hosts,
/// VIs, a bridge) after the cluster's.
fn config(dir: &Path, me: usize, ports: &[u16], etcd: &EtcdCluster, tables: &str) -> PathBuf {
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
         [cluster]\nname = \"ctl{me}\"\nlease_ttl_secs = 2\n{replicas}{tables}",
        ports[2 * me],
        ports[2 * me + 1],
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
    let tables = gateway_and_vi(dir.path());
    let configs: Vec<PathBuf> = (0..2)
        .map(|i| config(dir.path(), i, &ports, &etcd, &tables))
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

    // A batch large enough to be staged, and deletions, followed too: the
    // standby's listing ends as the leader's.
    let rows: Vec<_> = (1000..1300)
        .map(|i| json!({"mac": mac(i), "ip": format!("10.9.{}.{}", i / 256, i % 256), "behind": "gw1"}))
        .collect();
    let (status, body) = standby
        .request("POST", "/v1/vis/1/seed", Some(&json!(rows)))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // After the batch: the batch has the standby read the store whole.
    for i in 0..50 {
        let path = format!("/v1/registry/1/untagged/{}", mac(i));
        assert_eq!(standby.request("DELETE", &path, None).unwrap().0, 204);
    }
    assert_eq!(put(&standby, WRITES + 1), 201);
    let listing = |c: &ControllerProcess| c.request("GET", "/v1/registry?vi=1", None).unwrap();
    let on_leader = listing(&standby);
    assert!(on_leader.1.contains(&mac(1299)) && !on_leader.1.contains(&mac(0)));
    wait_until(
        "the standby's listing is the leader's",
        Duration::from_secs(5),
        || listing(&back) == on_leader,
    );
    // A VI made, then deleted, on the leader: the standby reads the hosts
    // and VIs again, not the whole store.
    let vi = json!({"id": 77, "name": "made-on-the-leader", "gre_key": 77, "gateways": []});
    let (status, body) = standby.request("PUT", "/v1/vis/77", Some(&vi)).unwrap();
    assert_eq!(status, 201, "{body}");
    let on_leader = standby.request("GET", "/v1/vis/77", None).unwrap();
    wait_until("the standby has the new VI", Duration::from_secs(5), || {
        back.request("GET", "/v1/vis/77", None)
            .is_ok_and(|r| r == on_leader)
    });
    let (status, body) = standby.request("DELETE", "/v1/vis/77", None).unwrap();
    assert_eq!(status, 204, "{body}");
    wait_until("the standby drops the VI", Duration::from_secs(5), || {
        back.request("GET", "/v1/vis/77", None)
            .is_ok_and(|(s, _)| s == 404)
    });
    assert_eq!(listing(&back), listing(&standby));
    // It read the store whole at its start only, and followed the rest,
    // the staged batch and the VIs included.
    assert!(metric(&back, "iris_store_followed_revision") > 0.0);
    assert_eq!(metric(&back, "iris_store_whole_reads_total"), 1.0);

    // SIGTERM to the leader resigns: the standby need not wait for the ttl.
    let leader = Arc::try_unwrap(standby).unwrap();
    let stopped = Instant::now();
    leader.stop(Duration::from_secs(5)).unwrap();
    wait_until(
        "the old leader leads again",
        Duration::from_secs(10),
        || leads(&back),
    );
    let took = stopped.elapsed();
    eprintln!(
        "after a SIGTERM the standby led {} ms later",
        took.as_millis()
    );
    assert!(
        took < Duration::from_millis(1500),
        "{took:?}: waited for the lease"
    );
}

/// Open vSwitch of the test's own with a bridge named `name` and this
/// process's id, and the tables of its host pm1.
/// Over HTTPS, with tokens: a write sent to the standby with its token
/// reaches the leader (the standby trusts the replicas' API CA given as
/// `[cluster] api_ca`), one with a wrong token is refused by the standby
/// itself, and neither is applied on the standby.
#[test]
fn over_https_a_standby_given_the_api_ca_forwards_a_write_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 1)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    let pki = iris_testbed::pki::Pki::new(dir.path(), "api").unwrap();
    let cert = pki.issue("localhost").unwrap();
    let token = "replicas-over-https-token-1";
    let hash = iris_controller::api_auth::hash_token(token).unwrap();
    let ports = ports(4);
    let https = |i: usize| format!("https://localhost:{}", ports[2 * i + 1]);
    let tables = format!(
        "{}[api_tls]\nprivate_key = {:?}\ncertificate = {:?}\n\
         [api_auth]\ntoken_hashes = [\"{hash}\"]\n",
        gateway_and_vi(dir.path()),
        cert.private_key,
        cert.certificate
    );
    let configs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let path = config(dir.path(), i, &ports, &etcd, &tables);
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("api = \"http://127.0.0.1", "api = \"https://localhost")
                .replace(
                    "lease_ttl_secs = 2\n",
                    &format!("lease_ttl_secs = 2\napi_ca = {:?}\n", pki.ca_certificate),
                );
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = iris_controller::http_client::trusting(
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()),
        Some(&pki.ca_certificate),
    )
    .unwrap()
    .build()
    .unwrap();
    let call = |method: reqwest::Method, url: String, bearer: &str| {
        let body = json!({"location": {"kind": "gateway", "gateway": "gw1"}, "ips": []});
        let request = client
            .request(method, url)
            .bearer_auth(bearer)
            .header("content-type", "application/json")
            .body(body.to_string());
        rt.block_on(async {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let leads_https = |i: usize| {
        let (_, body) = call(reqwest::Method::GET, format!("{}/metrics", https(i)), "");
        body.lines().any(|l| l == "iris_leader 1")
    };
    let _leader = start(dir.path(), 0, &configs[0]);
    wait_until("ctl0 leads", Duration::from_secs(10), || leads_https(0));
    let standby = start(dir.path(), 1, &configs[1]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!leads_https(1), "two leaders");

    let path = |i: usize| format!("/v1/registry/1/untagged/{}", mac(i));
    let (status, body) = call(
        reqwest::Method::PUT,
        format!("{}{}", https(1), path(1)),
        token,
    );
    assert_eq!(status, 201, "{body}\n{}", standby.log_tail(20));
    let (status, body) = call(
        reqwest::Method::GET,
        format!("{}{}", https(0), path(1)),
        token,
    );
    assert_eq!(
        status, 200,
        "the forwarded write is not on the leader: {body}"
    );
    let (status, body) = call(
        reqwest::Method::PUT,
        format!("{}{}", https(1), path(2)),
        "not-the-token",
    );
    assert_eq!(status, 401, "{body}");
    let (status, _) = call(
        reqwest::Method::GET,
        format!("{}{}", https(0), path(2)),
        token,
    );
    assert_eq!(status, 404, "a write with a wrong token reached the leader");
}

fn one_bridge(dir: &Path, name: &str) -> (local_ovs::Ovs, String, String) {
    let bridge = format!("{name}{}", std::process::id() % 100_000);
    let mut ovs = local_ovs::Ovs::start(&dir.join("pm1"), false);
    ovs.bridges.push(bridge.clone());
    let tables = format!(
        "[bridge]\nname = \"{bridge}\"\ndatapath_type = \"netdev\"\n\
         [[host]]\nname = \"pm1\"\nunderlay_ip = \"192.168.78.1\"\nrole = \"compute\"\n\
         ovsdb = \"{}\"\ndatapath_id = \"00000000000000b1\"\n",
        ovs.db()
    );
    (ovs, bridge, tables)
}

fn metric(c: &ControllerProcess, series: &str) -> f64 {
    c.metrics()
        .ok()
        .and_then(|m| m.get(series).ok())
        .unwrap_or(-1.0)
}

#[test]
fn on_real_ovs_a_standby_is_slave_and_replaces_a_killed_master_within_3_s_sending_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 3)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    let (ovs, bridge, tables) = one_bridge(dir.path(), "irf");
    let ports = ports(4);
    let configs: Vec<PathBuf> = (0..2)
        .map(|i| config(dir.path(), i, &ports, &etcd, &tables))
        .collect();
    let leader = start(dir.path(), 0, &configs[0]);
    wait_until("ctl0 leads", Duration::from_secs(10), || leads(&leader));
    let standby = start(dir.path(), 1, &configs[1]);
    wait_until(
        "the switch confirms MASTER to ctl0 and SLAVE to ctl1",
        Duration::from_secs(20),
        || {
            metric(&leader, "iris_switches_master") == 1.0
                && metric(&standby, "iris_switches_slave") == 1.0
                && !ovs.flows(&bridge).is_empty()
        },
    );
    // The bridge has both replicas as its controllers.
    let targets = ovs.vsctl(&["get-controller", &bridge]);
    for i in 0..2 {
        assert!(
            targets.contains(&format!("tcp:127.0.0.1:{}", ports[2 * i])),
            "{targets}"
        );
    }
    assert_eq!(metric(&standby, "iris_flow_mods_sent_total"), 0.0);
    let flows = ovs.flows(&bridge);

    let killed = Instant::now();
    leader.kill().unwrap();
    wait_until("the standby is MASTER", Duration::from_secs(10), || {
        metric(&standby, "iris_switches_master") == 1.0
    });
    let took = killed.elapsed();
    eprintln!(
        "the standby was MASTER {} ms after the kill",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(3), "MASTER after {took:?}");
    // Time for a reconciliation that should send nothing to show.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(metric(&standby, "iris_flow_mods_sent_total"), 0.0);
    assert_eq!(metric(&standby, "iris_group_mods_sent_total"), 0.0);
    assert!(metric(&standby, "iris_leader_generation") > 0.0);
    assert_eq!(ovs.flows(&bridge), flows, "the switch kept its flows");
}

/// GETs the whole registry of vi 1 and returns the entries `macs` lacks.
fn missing(c: &ControllerProcess, macs: &BTreeSet<String>) -> Vec<String> {
    let (status, body) = c.request("GET", "/v1/registry?vi=1", None).unwrap();
    assert_eq!(status, 200, "{body}");
    macs.iter()
        .filter(|m| !body.contains(*m))
        .cloned()
        .collect()
}

#[test]
fn on_real_ovs_a_replica_started_without_the_etcd_quorum_stands_by_and_leads_once_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    let (ovs, bridge, mut tables) = one_bridge(dir.path(), "irq");
    tables.push_str(&gateway_and_vi(dir.path()));
    let ports = ports(2);
    let config = config(dir.path(), 0, &ports, &etcd, &tables);
    let first = start(dir.path(), 0, &config);
    wait_until("ctl0 leads and is MASTER", Duration::from_secs(20), || {
        leads(&first) && metric(&first, "iris_switches_master") == 1.0
    });
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        assert_eq!(put(&first, i), 201, "{}", first.log_tail(20));
        acked.insert(mac(i));
    }
    wait_until("the bridge has flows", Duration::from_secs(10), || {
        !ovs.flows(&bridge).is_empty()
    });
    first.stop(Duration::from_secs(5)).unwrap();
    let flows = ovs.flows(&bridge);

    // Two members of three down: no quorum. The replica starts anyway.
    etcd.kill(0).unwrap();
    etcd.kill(1).unwrap();
    let mut standby = start(dir.path(), 0, &config);
    let waiting = Instant::now();
    while metric(&standby, "iris_switches_slave") != 1.0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the quorumless replica is not SLAVE on the switch: {}",
            standby.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    standby.ensure_running().unwrap();
    assert!(!leads(&standby), "led without a quorum");
    // Reads answer what one member holds: every acknowledged write.
    assert_eq!(missing(&standby, &acked), Vec::<String>::new());
    // Writes are refused as a lone controller refuses them, and not made.
    let body = json!({"location": {"kind": "gateway", "gateway": "gw1"}, "ips": []});
    let refused = format!("/v1/registry/1/untagged/{}", mac(100));
    let (status, content_type, problem) =
        standby.request_typed("PUT", &refused, Some(&body)).unwrap();
    assert_eq!(status, 503, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert!(
        problem.contains("the etcd store is unavailable, so the change was not made"),
        "{problem}"
    );
    assert_eq!(
        standby.request("GET", &refused, None).unwrap().0,
        404,
        "a refused write was made"
    );
    // The data plane keeps the flows, and the standby sent it nothing.
    assert_eq!(ovs.flows(&bridge), flows);
    assert_eq!(metric(&standby, "iris_flow_mods_sent_total"), 0.0);

    let restored = Instant::now();
    etcd.restore(0).unwrap();
    etcd.restore(1).unwrap();
    wait_until(
        "the replica leads and is MASTER once the quorum is back",
        Duration::from_secs(30),
        || leads(&standby) && metric(&standby, "iris_switches_master") == 1.0,
    );
    eprintln!(
        "MASTER {} ms after the members were restored",
        restored.elapsed().as_millis()
    );
    wait_until("a write is acknowledged", Duration::from_secs(10), || {
        put(&standby, 100) == 201
    });
    acked.insert(mac(100));
    assert_eq!(missing(&standby, &acked), Vec::<String>::new());
    // The switch held what the store says: the takeover sent nothing.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(metric(&standby, "iris_flow_mods_sent_total"), 0.0);
    assert_eq!(metric(&standby, "iris_group_mods_sent_total"), 0.0);
}

/// User and system CPU of process `pid` so far.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: state is the 3rd
    // field, utime the 14th and stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    Duration::from_millis((f[0] + f[1]) * 10)
}

/// How a standby follows a leader holding a large registry (a benchmark:
/// `cargo test --release -p iris-controller --test failover -- --ignored
/// --nocapture measure`; `MACS` sets the registry's size, 100 000 by
/// default). The leader starts with the registry seeded; the standby is
/// started once the leader leads; then the leader takes one registry write
/// every 50 ms for 10 s, and for each the time until the standby answers
/// it is measured, with both replicas' CPU over those 10 s.
#[test]
#[ignore = "a benchmark"]
fn measure_a_standby_following_a_large_registry() {
    let macs: usize = std::env::var("MACS").map_or(100_000, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 3)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    let mut seed = String::from("mac,ip,vlan,behind\n");
    for i in 0..macs {
        let [_, a, b, c] = u32::try_from(i).unwrap().to_be_bytes();
        seed.push_str(&format!(
            "52:54:01:{a:02x}:{b:02x}:{c:02x},10.{a}.{b}.{c},,gw1\n"
        ));
    }
    std::fs::write(dir.path().join("seed.csv"), seed).unwrap();
    let tables = gateway_and_vi(dir.path()).replace(
        "gateways = [\"gw1\"]\n",
        "gateways = [\"gw1\"]\nseed = \"seed.csv\"\n",
    );
    let ports = ports(4);
    let configs: Vec<PathBuf> = (0..2)
        .map(|i| config(dir.path(), i, &ports, &etcd, &tables))
        .collect();
    let started = Instant::now();
    let leader = start(dir.path(), 0, &configs[0]);
    wait_until("ctl0 leads", Duration::from_secs(120), || leads(&leader));
    let size = |c: &ControllerProcess| {
        c.metrics()
            .ok()
            .and_then(|m| m.get("iris_registry_entries{kind=\"mac\"}").ok())
            .unwrap_or(0.0)
    };
    wait_until("ctl0 holds the seed", Duration::from_secs(120), || {
        size(&leader) >= macs as f64
    });
    eprintln!(
        "leader seeded and leading: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let standby_started = Instant::now();
    let standby = start(dir.path(), 1, &configs[1]);
    while size(&standby) < macs as f64 {
        assert!(
            standby_started.elapsed() < Duration::from_secs(120),
            "the standby holds {} MACs of {macs}: {}",
            size(&standby),
            standby.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "standby started to holding the seed: {:.2} s",
        standby_started.elapsed().as_secs_f64()
    );
    assert!(!leads(&standby), "two leaders");
    std::thread::sleep(Duration::from_secs(1));

    let (cpu_leader, cpu_standby) = (cpu_of(leader.pid()), cpu_of(standby.pid()));
    let window = Instant::now();
    let mut lags = Vec::new();
    let mut next = Instant::now();
    // `mac(i)` is outside the seed's 52:54:01 block.
    let mut i = 0;
    while window.elapsed() < Duration::from_secs(10) {
        assert_eq!(put(&leader, i), 201, "{}", leader.log_tail(20));
        let written = Instant::now();
        let path = format!("/v1/registry/1/untagged/{}", mac(i));
        wait_until(
            "the standby answers the write",
            Duration::from_secs(30),
            || {
                standby
                    .request("GET", &path, None)
                    .is_ok_and(|(s, _)| s == 200)
            },
        );
        lags.push(written.elapsed());
        i += 1;
        next += Duration::from_millis(50);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let seconds = window.elapsed().as_secs_f64();
    let slowest = (0..lags.len()).max_by_key(|&i| lags[i]).unwrap_or(0);
    let (leader_cpu, standby_cpu) = (
        cpu_of(leader.pid()) - cpu_leader,
        cpu_of(standby.pid()) - cpu_standby,
    );
    // A seed of 1000 MACs through the API: more than a transaction takes,
    // so staged.
    let rows: Vec<_> = (0..1000u32)
        .map(|n| {
            let [_, _, a, b] = n.to_be_bytes();
            json!({"mac": format!("52:54:02:00:{a:02x}:{b:02x}"), "behind": "gw1"})
        })
        .collect();
    let (status, body) = leader
        .request("POST", "/v1/vis/1/seed", Some(&json!(rows)))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let seeded = Instant::now();
    wait_until(
        "the standby answers the seed",
        Duration::from_secs(60),
        || {
            standby
                .request("GET", "/v1/registry/1/untagged/52:54:02:00:03:e7", None)
                .is_ok_and(|(s, _)| s == 200)
        },
    );
    eprintln!(
        "a seed of 1000 MACs: the standby answered its last {:.1} ms after the leader",
        seeded.elapsed().as_secs_f64() * 1000.0
    );

    // A VI made on the leader: the standby reads the hosts and VIs again.
    let vi = json!({"id": 77, "name": "made-on-the-leader", "gre_key": 77, "gateways": []});
    let (status, body) = leader.request("PUT", "/v1/vis/77", Some(&vi)).unwrap();
    assert_eq!(status, 201, "{body}");
    let made = Instant::now();
    wait_until(
        "the standby answers the VI",
        Duration::from_secs(60),
        || {
            standby
                .request("GET", "/v1/vis/77", None)
                .is_ok_and(|(s, _)| s == 200)
        },
    );
    eprintln!(
        "a VI made: the standby answered it {:.1} ms after the leader",
        made.elapsed().as_secs_f64() * 1000.0
    );

    // The leader killed: how long until the standby leads and takes a write.
    let killed = Instant::now();
    leader.kill().unwrap();
    wait_until("the standby leads", Duration::from_secs(60), || {
        leads(&standby)
    });
    let led = killed.elapsed();
    wait_until(
        "the new leader takes a write",
        Duration::from_secs(60),
        || put(&standby, i) == 201,
    );
    let wrote = killed.elapsed();
    let took = standby
        .log_tail(200)
        .lines()
        .filter(|l| l.contains("leading the cluster"))
        .filter_map(|l| l.split("took_ms=").nth(1))
        .map(|t| t.trim().to_owned())
        .next_back()
        .unwrap_or_default();
    let followed = standby
        .log_tail(200)
        .contains("taking over with the followed view");
    eprintln!(
        "leader killed: the standby led {:.2} s later (its take-over {took} ms, {}), took a \
         write {:.2} s later",
        led.as_secs_f64(),
        if followed {
            "on the followed view"
        } else {
            "reading the store whole"
        },
        wrote.as_secs_f64()
    );
    lags.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{macs} MACs, {} writes in {seconds:.1} s: standby lag p50 {:.1} ms, p99 {:.1} ms, max \
         {:.1} ms (write {slowest}); CPU over the window: leader {:.2} cores, standby {:.2} cores",
        lags.len(),
        ms(lags[lags.len() / 2]),
        ms(lags[lags.len() * 99 / 100]),
        ms(lags[lags.len() - 1]),
        leader_cpu.as_secs_f64() / seconds,
        standby_cpu.as_secs_f64() / seconds,
    );
}
