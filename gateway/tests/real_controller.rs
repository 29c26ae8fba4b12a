//! A haas gateway against the real `iris-controller` process (started
//! through the testbed's harness; no switch is needed for its API): the
//! registry writes the gateway makes are the ones the controller takes, and
//! the controller's event stream tells the gateway of a move into the HaaS
//! data center; over plain HTTP and over HTTPS (the controller's
//! `[api_tls]`, with a throwaway CA the gateway is told to trust).
//!
//! The controller binary is the one cargo built beside this test
//! (`target/debug/iris-controller`; `cargo test --workspace` builds it).

#![allow(clippy::unwrap_used)]

use iris_gateway::run::{start, DatapathLink, Running};
use iris_testbed::controller::ControllerProcess;
use iris_testbed::pki::{CertFiles, Pki};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod common;
use common::{haas_config_with_token, metrics};

const MAC: &str = "52:54:00:00:01:05";
const OTHER: &str = "52:54:00:00:01:06";
/// The controller's API token (its hash in the controller's file, the
/// token in a file the gateway reads).
const TOKEN: &str = "iris-gateway-test-token-0123456789abcdef";

fn controller_binary() -> PathBuf {
    // target/debug/deps/real_controller-HASH -> target/debug/iris-controller
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

/// The token the controller's API asks for, written where the testbed's
/// controller handle and the gateway read it, and its hash as
/// `iris-controller hash-token` makes it.
fn api_token(dir: &std::path::Path) -> String {
    std::fs::write(dir.join(iris_testbed::controller::API_TOKEN_FILE), TOKEN).unwrap();
    let mut child = std::process::Command::new(controller_binary())
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(TOKEN.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn controller_config(dir: &std::path::Path, api_tls: Option<&CertFiles>) -> PathBuf {
    let hash = api_token(dir);
    let api_tls = api_tls.map_or_else(String::new, |c| {
        format!(
            "[api_tls]\nprivate_key = {:?}\ncertificate = {:?}\n",
            c.private_key, c.certificate
        )
    });
    let text = format!(
        r#"
plain_openflow = true
listen = "unix:{dir}/of.sock"
api = "127.0.0.1:0"
store = "{dir}/store"

[bridge]
name = "br-int"
datapath_type = "netdev"

[[host]]
name = "pm1"
underlay_ip = "192.168.60.1"
role = "compute"
ovsdb = "unix:{dir}/pm1.sock"

[[host]]
name = "gw-haas"
underlay_ip = "192.168.60.254"
role = "gateway"
ovsdb = "unix:{dir}/gw.sock"

[[vi]]
id = 1
name = "acme"
gre_key = 1001
gateways = ["gw-haas"]

[api_auth]
token_hashes = ["{hash}"]

{api_tls}
"#,
        dir = dir.display()
    );
    let path = dir.join("controller.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The controller's API as this test calls it.
struct Api {
    base: String,
    http: reqwest::Client,
}

/// The real controller in a directory of its own, its API over HTTPS with
/// `tls`, and a haas gateway writing to it.
async fn controller_and_gateway(tls: bool) -> (tempfile::TempDir, ControllerProcess, Running, Api) {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls.then(|| Pki::new(dir.path(), "iris").unwrap());
    let cert = pki.as_ref().map(|p| p.issue("127.0.0.1").unwrap());
    let controller = ControllerProcess::start(
        &controller_binary(),
        &controller_config(dir.path(), cert.as_ref()),
        &dir.path().join("controller.log"),
    )
    .unwrap();
    let token = dir.path().join(iris_testbed::controller::API_TOKEN_FILE);
    let config = match &pki {
        None => haas_config_with_token(controller.api_addr(), Some(&token)),
        Some(pki) => {
            let extra = format!(
                "token_file = {:?}\nca_certificate = {:?}\n",
                token, pki.ca_certificate
            );
            let text = common::haas_text(controller.api_addr(), &extra).replacen(
                "url = \"http://",
                "url = \"https://",
                1,
            );
            let config = iris_gateway::config::Config::parse(&text).unwrap();
            assert!(
                config.summary().contains("trusting the CA in"),
                "{}",
                config.summary()
            );
            config
        }
    };
    let gw = start(
        Arc::new(config),
        DatapathLink::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let scheme = if tls { "https" } else { "http" };
    let http = iris_controller::http_client::trusting(
        reqwest::Client::builder(),
        pki.as_ref().map(|p| p.ca_certificate.as_path()),
    )
    .unwrap()
    .build()
    .unwrap();
    let api = Api {
        base: format!("{scheme}://{}", controller.api_addr()),
        http,
    };
    (dir, controller, gw, api)
}

async fn report(gw: SocketAddr, mac: &str, seq: u32, kind: &str) -> Value {
    let body = json!({"from": "gw-acme", "macs": [
        {"vi": 1, "vlan": 100, "mac": mac, "ips": ["10.1.1.5"], "seq": seq, "kind": kind}]});
    let r = reqwest::Client::new()
        .post(format!("http://{gw}/v1/peer/macs"))
        .bearer_auth(common::token(common::ACME_TOKEN_FILE))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    answer["results"][0].clone()
}

async fn entry(ctl: &Api, token: &str, mac: &str) -> (u16, Value) {
    let r = ctl
        .http
        .get(format!("{}/v1/registry/1/100/{mac}", ctl.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `f` every 25 ms for up to 30 s (a loaded machine is slow; a
/// working path returns at once).
macro_rules! eventually {
    ($what:expr, $f:expr) => {{
        let mut last = None;
        for _ in 0..1200 {
            let v = $f;
            if v.0 {
                last = Some(v.1);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        last.unwrap_or_else(|| panic!("{} did not happen within 30 s", $what))
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_land_in_the_controllers_registry_and_its_moves_come_back() {
    reports_and_moves(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_reports_land_in_the_controllers_registry_and_its_moves_come_back() {
    reports_and_moves(true).await;
}

async fn reports_and_moves(tls: bool) {
    let (_dir, controller, gw, api) = controller_and_gateway(tls).await;
    let ctl = &api;
    let behind = json!({"kind": "gateway", "gateway": "gw-haas"});

    // A MAC present in the peer's DC is placed behind this gateway.
    assert_eq!(
        report(gw.addr, MAC, 0, "presence").await["outcome"],
        "followed"
    );
    let e = eventually!("the registry entry", {
        let (s, e) = entry(ctl, TOKEN, MAC).await;
        (s == 200 && e["location"] == behind, e)
    });
    assert_eq!(e["ips"], json!(["10.1.1.5"]));

    // It migrates into the HaaS DC: the controller places it on a port,
    // its event reaches the gateway, and the peer's seq is stale now.
    let r = ctl
        .http
        .put(format!("{}/v1/registry/1/100/{MAC}", ctl.base))
        .bearer_auth(TOKEN)
        .json(
            &json!({"location": {"kind": "port", "host": "pm1", "ofport": 7}, "ips": ["10.1.1.5"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer = eventually!("the gateway to see the move", {
        let a = report(gw.addr, MAC, 0, "presence").await;
        (a["outcome"] == "stale", a)
    });
    assert_eq!(answer["seq"], 1);

    // It migrates back: the move past that seq is followed.
    assert_eq!(report(gw.addr, MAC, 2, "move").await["outcome"], "followed");
    eventually!("the entry behind the gateway again", {
        let (_, e) = entry(ctl, TOKEN, MAC).await;
        (e["location"] == behind, ())
    });

    // Another MAC claiming the same IP by mere presence is refused by the
    // controller (409), and the gateway does not take the IP.
    assert_eq!(
        report(gw.addr, OTHER, 0, "presence").await["outcome"],
        "followed"
    );
    eventually!("the refusal to be counted", {
        let m = metrics(gw.addr).await;
        (
            m.contains("iris_gateway_reports_dropped_total{why=\"refused\"} 1"),
            (),
        )
    });
    assert_eq!(entry(ctl, TOKEN, OTHER).await.0, 404);
    assert_eq!(entry(ctl, TOKEN, MAC).await.1["ips"], json!(["10.1.1.5"]));
    gw.stop().await;
    controller.stop(Duration::from_secs(5)).unwrap();
}

/// The gateways' share of a move's latency: from a RARP handed to the
/// iaas gateway's control plane to the real controller's event placing the
/// MAC behind the haas gateway, over loopback, MAC after MAC. Prints the
/// figures; run with
/// `cargo test -p iris-gateway --test real_controller -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_rarp_to_registry_latency() {
    use futures_util::StreamExt;
    use ofp::packet::{ArpRepr, MacAddr, VlanTag};
    const N: u8 = 200;
    let (_dir, controller, haas, _) = controller_and_gateway(false).await;
    let ctl = controller.api_addr();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let iaas = start(
        Arc::new(common::iaas_config(haas.addr)),
        DatapathLink {
            frames: Some(rx),
            status: None,
            plan: None,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut events = reqwest::Client::new()
        .get(format!("http://{ctl}/v1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut parser = iris_gateway::follower::SseParser::default();
    let mut took = Vec::new();
    for n in 0..N {
        let mac = MacAddr([0x52, 0x54, 0, 0, 3, n]);
        let mut rarp = ArpRepr::rarp_announce(mac);
        rarp.tags = vec![VlanTag {
            tpid: 0x8100,
            tci: 100,
        }];
        let mut frame = Vec::new();
        rarp.emit(&mut frame);
        let t0 = std::time::Instant::now();
        tx.send(frame).await.unwrap();
        let needle = mac.to_string();
        'wait: while let Some(chunk) = events.next().await {
            for e in parser.push(&chunk.unwrap()) {
                if e.data.contains(&needle) && e.data.contains("behind gw-haas") {
                    break 'wait;
                }
            }
        }
        took.push(t0.elapsed());
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "RARP to registry over loopback, {N} MACs: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        took[took.len() - 1]
    );
    iaas.stop().await;
    haas.stop().await;
    controller.stop(Duration::from_secs(5)).unwrap();
}
