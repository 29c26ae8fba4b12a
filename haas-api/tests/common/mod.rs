//! What the broker's tests stand on: the real `iris-controller` process,
//! the broker started in-process on a configuration of its own, and an
//! HTTP client for its API.

#![allow(clippy::unwrap_used, dead_code)]

use iris_api::config::Config;
use iris_testbed::controller::{ControllerConfig, ControllerProcess, HostEntry};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "iris-api-test-admin-token-0123456789";

pub fn controller_binary() -> PathBuf {
    // target/debug/deps/TEST-HASH -> target/debug/iris-controller
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("iris-controller");
    assert!(
        path.is_file(),
        "no iris-controller at {}; build it first: cargo build -p iris-controller",
        path.display()
    );
    path
}

/// The real controller, managing `hosts`, in `dir`.
pub fn start_controller(dir: &Path, hosts: Vec<HostEntry>) -> ControllerProcess {
    start_controller_with(dir, hosts, Vec::new())
}

/// The real controller, managing `hosts` with the `[[vi]]`s `vis`, in `dir`.
pub fn start_controller_with(
    dir: &Path,
    hosts: Vec<HostEntry>,
    vis: Vec<iris_testbed::controller::ViEntry>,
) -> ControllerProcess {
    let mut config = ControllerConfig::new(dir.join("of.sock"), dir.join("controller-store"));
    config.hosts = hosts;
    config.vis = vis;
    let path = config.write(dir).unwrap();
    ControllerProcess::start(&controller_binary(), &path, &dir.join("controller.log")).unwrap()
}

/// The broker's configuration in `dir`, calling the controller at `api`.
pub fn broker_config(dir: &Path, controller: SocketAddr) -> Config {
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstore = \"broker-store\"\nadmin_token_file = \"admin-token\"\n\
         [controller]\nurl = \"http://{controller}\"\ntoken_file = \"{}\"\n",
        iris_testbed::controller::API_TOKEN_FILE
    );
    Config::parse(&text, dir).unwrap()
}

/// A broker serving on a loopback port until `stop` is cancelled.
pub struct BrokerHandle {
    pub base: String,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start_broker(config: &Config) -> BrokerHandle {
    let stop = CancellationToken::new();
    // A broker just shut in this process lets go of its store once its
    // last operation task has ended; the new one's open waits for that.
    let running = iris_api::run::start(config, stop.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    BrokerHandle {
        base: format!("http://{}", running.addr),
        stop,
        task: running.task,
    }
}

impl BrokerHandle {
    pub async fn shut(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// One API call: status, headers and the body as JSON (Null when empty).
pub async fn call(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, value)
}

/// `POST /v1/providers` of a provider named `name` with the admin token:
/// status and body.
pub async fn create_provider(base: &str, name: &str) -> (u16, Value) {
    let (s, _, p) = call(
        base,
        Some(ADMIN),
        "POST",
        "/v1/providers",
        Some(json!({ "name": name })),
    )
    .await;
    (s, p)
}

/// A provider and a token of it, made by the admin.
pub async fn provider(base: &str, name: &str) -> (String, String) {
    let (s, p) = create_provider(base, name).await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, _, t) = call(
        base,
        Some(ADMIN),
        "POST",
        &format!("/v1/providers/{id}/tokens"),
        None,
    )
    .await;
    assert_eq!(s, 201, "{t}");
    (id, t["token"].as_str().unwrap().to_owned())
}

/// Polls operation `location` until it is no longer running.
pub async fn wait_operation(base: &str, token: &str, location: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (s, _, op) = call(base, Some(token), "GET", location, None).await;
        assert_eq!(s, 200, "{op}");
        if op["status"] != "running" {
            return op;
        }
        assert!(
            start.elapsed() < timeout,
            "operation still running after {timeout:?}: {op}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node namespaces the `netns` driver has made on the PM whose
/// namespace is `pm`, sorted.
pub fn node_namespaces(pm: &str) -> Vec<String> {
    let prefix = iris_api::compute::netns::namespace(pm, "");
    let mut out: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A namespace standing for a PM whose OVS does not answer, deleted on drop.
pub struct FakePmNetns(pub String);

impl FakePmNetns {
    pub fn new() -> Self {
        let name = format!("irisapitest-{}", iris_api::service::random_hex(4));
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        Self(name)
    }

    pub fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0, "-o", "link"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for FakePmNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub async fn register_pm(base: &str, name: &str, vcpus: u32, netns: &str, dir: &Path) {
    let body = json!({
        "name": name,
        "capacity": {"vcpus": vcpus, "memory_mib": 65536, "disk_gib": 1000},
        "underlay_ip": "192.168.60.1",
        "ovsdb": format!("unix:{}/no-such-ovsdb.sock", dir.display()),
        "driver": "netns",
        "endpoint": netns,
    });
    let (s, _, pm) = call(base, Some(ADMIN), "POST", "/v1/pms", Some(body)).await;
    assert_eq!(s, 201, "{pm}");
}

/// The flavor `c1` (1 vCPU, 512 MiB, 1 GiB) of the provider of `token`.
pub async fn small_flavor(b: &str, token: &str) {
    let body = json!({"name": "c1", "vcpus": 1, "memory_mib": 512, "disk_gib": 1});
    let (s, _, f) = call(b, Some(token), "POST", "/v1/flavors", Some(body)).await;
    assert_eq!(s, 201, "{f}");
}
