//! Two `iris-api` processes on one three-member etcd cluster (loopback,
//! started here in its own directories) and the real controller: one is
//! active, the other answers 503 naming it; a kill -9 of the active one
//! during a burst of writes loses no acknowledged write, and the standby
//! takes over within the lease; a broker asked to stop hands over at once.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use iris_testbed::controller::ControllerProcess;
use iris_testbed::etcd::EtcdCluster;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TTL_SECS: u64 = 2;

struct Broker {
    name: &'static str,
    base: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn new(dir: &Path, name: &'static str, etcd: &EtcdCluster, controller: &str) -> Self {
        let port = iris_testbed::ports::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_token_file = \"admin-token\"\n\
             [store]\nbackend = \"etcd\"\nendpoints = [{}]\nprefix = \"iris/dc1/\"\n\
             request_timeout_secs = 2\ndial_timeout_secs = 2\n\
             [cluster]\nname = \"{name}\"\napi = \"http://127.0.0.1:{port}\"\nlease_ttl_secs = {TTL_SECS}\n\
             [controller]\nurl = \"http://{controller}\"\ntoken_file = \"{}\"\n",
            endpoints.join(", "),
            iris_testbed::controller::API_TOKEN_FILE
        );
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut b = Self {
            name,
            base: format!("http://127.0.0.1:{port}"),
            config,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        b.start();
        b
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_iris-api"))
                .args(["run", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, as a service manager's stop; waits for the exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        c.wait().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /healthz`: its status and body, or None while nothing listens.
    async fn health(&self) -> Option<(u16, Value)> {
        let r = reqwest::Client::new()
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Waits until this broker answers `/healthz` with `status`.
    async fn wait_health(&self, status: u16, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            if let Some((s, body)) = self.health().await {
                if s == status {
                    return body;
                }
            }
            assert!(
                Instant::now() < end,
                "broker {} never answered /healthz with {status}; its log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What every test here stands on: a three-member etcd cluster and the
/// real controller in `dir`, the brokers' admin token written beside them;
/// the controller's API address for the brokers' configurations.
fn cluster_and_controller(dir: &Path) -> (EtcdCluster, ControllerProcess, String) {
    let etcd = EtcdCluster::start(&dir.join("etcd"), 3)
        .unwrap_or_else(|e| panic!("cannot start etcd (run scripts/install-deps.sh): {e}"));
    let controller = start_controller(dir, Vec::new());
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
    let api = controller.api_addr().to_string();
    (etcd, controller, api)
}

/// Asserts a standby's refusal: 503 problem+json naming the active broker.
fn assert_refused_naming(status: u16, body: &Value, active: &Broker) {
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!(
            "the active broker is {} at {}",
            active.name, active.base
        )),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_broker_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (etcd, _controller, ctl) = cluster_and_controller(dir.path());
    let mut a = Broker::new(dir.path(), "api1", &etcd, &ctl);
    a.wait_health(200, Duration::from_secs(20)).await;
    let mut b = Broker::new(dir.path(), "api2", &etcd, &ctl);
    let (s, body) = loop {
        if let Some(h) = b.health().await {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_refused_naming(s, &body, &a);

    // Records of every kind on the active broker.
    let (provider_id, token) = provider(&a.base, "acme").await;
    small_flavor(&a.base, &token).await;
    let vi_body = json!({"name": "net", "gateway": "203.0.113.7", "vlans": {"first": 100, "last": 199},
        "addressing": {"mode": "static_pool", "cidr": "10.1.1.0/24", "reserved": ["10.1.1.1"]}});
    let (s, _, vi) = call(&a.base, Some(&token), "POST", "/v1/vis", Some(vi_body)).await;
    assert_eq!(s, 201, "{vi}");
    // A standby takes no request, and changes nothing.
    let (s, body) = create_provider(&b.base, "through-the-standby").await;
    assert_refused_naming(s, &body, &a);
    let (s, _, body) = call(&b.base, Some(&token), "GET", "/v1/vis", None).await;
    assert_refused_naming(s, &body, &a);

    // A burst of writes on the active broker, killed during it.
    let burst = tokio::spawn({
        let base = a.base.clone();
        async move {
            let client = reqwest::Client::new();
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let r = client
                    .post(format!("{base}/v1/providers"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"name": format!("burst-{i}")}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(r) = r else { break };
                if r.status().as_u16() != 201 {
                    break;
                }
                let p: Value = r.json().await.unwrap();
                acknowledged.push(p["id"].as_str().unwrap().to_owned());
            }
            acknowledged
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill();
    let killed = Instant::now();
    let acknowledged = burst.await.unwrap();
    assert!(
        acknowledged.len() >= 5,
        "only {} writes before the kill",
        acknowledged.len()
    );
    b.wait_health(200, Duration::from_secs(TTL_SECS + 8)).await;
    let takeover = killed.elapsed();
    eprintln!(
        "kill -9 of the active broker -> standby active in {} ms ({} writes acknowledged before)",
        takeover.as_millis(),
        acknowledged.len()
    );
    assert!(
        takeover < Duration::from_secs(TTL_SECS + 4),
        "took {takeover:?}"
    );

    // Everything acknowledged is there, the token included.
    for id in acknowledged.iter().chain([&provider_id]) {
        let (s, _, p) = call(
            &b.base,
            Some(ADMIN),
            "GET",
            &format!("/v1/providers/{id}"),
            None,
        )
        .await;
        assert_eq!(s, 200, "acknowledged provider {id} is missing: {p}");
    }
    let (s, _, vis) = call(&b.base, Some(&token), "GET", "/v1/vis", None).await;
    assert_eq!(s, 200, "{vis}");
    assert_eq!(vis["items"][0]["id"], vi["id"], "{vis}");
    let (s, _, flavors) = call(&b.base, Some(&token), "GET", "/v1/flavors", None).await;
    assert_eq!(
        (s, flavors["items"][0]["name"].as_str()),
        (200, Some("c1")),
        "{flavors}"
    );
    // And the new active broker takes writes.
    let (s, p) = create_provider(&b.base, "after").await;
    assert_eq!(s, 201, "{p}");

    // The killed broker comes back as a standby.
    a.start();
    let body = a.wait_health(503, Duration::from_secs(20)).await;
    assert_refused_naming(503, &body, &b);

    // Stopped, the active broker resigns: the standby leads well within
    // the lease.
    let asked = Instant::now();
    let status = b.stop();
    assert!(status.success(), "{status:?}\n{}", b.log());
    a.wait_health(200, Duration::from_secs(TTL_SECS + 8)).await;
    let handover = asked.elapsed();
    eprintln!(
        "stop of the active broker -> standby active in {} ms",
        handover.as_millis()
    );
    assert!(
        handover < Duration::from_secs(1),
        "took {handover:?}: no resignation?"
    );
    let (s, _, p) = call(
        &a.base,
        Some(ADMIN),
        "GET",
        &format!("/v1/providers/{}", p["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 200, "{p}");
}

/// Without etcd's quorum: the active broker refuses writes with 503 (the
/// outcome unknown), loses its lease and exits; the standby says it cannot
/// reach etcd. With the members back a broker leads again, with every
/// acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_no_broker_writes_and_one_leads_again_after() {
    let dir = tempfile::tempdir().unwrap();
    let (mut etcd, _controller, ctl) = cluster_and_controller(dir.path());
    let mut a = Broker::new(dir.path(), "api1", &etcd, &ctl);
    a.wait_health(200, Duration::from_secs(20)).await;
    let b = Broker::new(dir.path(), "api2", &etcd, &ctl);
    b.wait_health(503, Duration::from_secs(20)).await;
    let (before, _) = provider(&a.base, "before").await;

    etcd.kill(0).unwrap();
    etcd.kill(1).unwrap();
    let (s, body) = create_provider(&a.base, "during").await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("unknown"),
        "{body}"
    );
    // The lease cannot be renewed: the active broker's term ends.
    let mut child = a.child.take().unwrap();
    let end = Instant::now() + Duration::from_secs(TTL_SECS + 10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "still running:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    assert!(
        a.log().contains("term as the active one ended"),
        "{}",
        a.log()
    );
    let (s, body) = b.health().await.unwrap();
    assert_eq!(s, 503, "{body}");

    etcd.restore(0).unwrap();
    etcd.restore(1).unwrap();
    a.start();
    let end = Instant::now() + Duration::from_secs(30);
    let active = loop {
        if a.health().await.is_some_and(|(s, _)| s == 200) {
            break &a;
        }
        if b.health().await.is_some_and(|(s, _)| s == 200) {
            break &b;
        }
        assert!(
            Instant::now() < end,
            "no broker leads again:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (s, _, p) = call(
        &active.base,
        Some(ADMIN),
        "GET",
        &format!("/v1/providers/{before}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let (s, p) = create_provider(&active.base, "after").await;
    assert_eq!(s, 201, "{p}");
}

/// A record in etcd that does not read: no broker serves from a partial
/// view; every answer names the record; once it is removed a broker leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_keeps_every_broker_standing_by_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (etcd, _controller, ctl) = cluster_and_controller(dir.path());
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let key = "iris/dc1/broker/records/providers/p-damaged";
    client.put(key, "{not json", None).await.unwrap();
    let a = Broker::new(dir.path(), "api1", &etcd, &ctl);
    let body = a.wait_health(503, Duration::from_secs(20)).await;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, body) = call(&a.base, Some(ADMIN), "GET", "/v1/providers", None).await;
        assert_eq!(s, 503, "{body}");
        if body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("providers/p-damaged does not decode"))
        {
            break;
        }
        assert!(Instant::now() < end, "the record is never named: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(body["detail"].is_string(), "{body}");
    client.delete(key, None).await.unwrap();
    a.wait_health(200, Duration::from_secs(10)).await;
    let (s, p) = create_provider(&a.base, "after").await;
    assert_eq!(s, 201, "{p}");
}
