//! The broker and the HaaS gateway's VI API: the real `iris-controller`
//! and the real `iris-gateway` processes (the gateway's OVSDB absent: its
//! bridge keeper waits, its API serves), the broker in-process. A VI the
//! broker makes is pushed to the gateway, its response says where the
//! operator's gateway points; a VI the gateway refuses is not made
//! anywhere; a restart reconciles what drifted; a delete removes it; with
//! the gateway down nothing is made. Needs `cargo build -p iris-controller
//! -p iris-gateway` first.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use iris_api::config::{GatewayApi, Secret};
use iris_testbed::controller::{HostEntry, HostRole};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GW_TOKEN: &str = "gateway-vi-api-token-0123456789";

/// The real `iris-gateway` (haas) with `[vi_api]`, until dropped.
struct GatewayProcess {
    child: Child,
    base: String,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(dir: &Path, controller: std::net::SocketAddr) -> GatewayProcess {
    let binary = controller_binary().with_file_name("iris-gateway");
    assert!(
        binary.is_file(),
        "no iris-gateway at {}; build it first: cargo build -p iris-gateway",
        binary.display()
    );
    std::fs::write(dir.join("gw-token"), GW_TOKEN).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nname = \"gwh\"\nkind = \"haas\"\ndc = \"haas\"\nwan_ip = \"203.0.113.1\"\n\
             ovsdb = \"unix:{}\"\nlisten = \"127.0.0.1:0\"\n\n\
             [controller]\nurl = \"http://{controller}\"\ntoken_file = \"{}\"\n\n\
             [vi_api]\ntoken_file = \"{}\"\nstate_dir = \"{}\"\n",
            dir.join("no-ovsdb.sock").display(),
            dir.join(iris_testbed::controller::API_TOKEN_FILE).display(),
            dir.join("gw-token").display(),
            dir.join("gw-state").display(),
        ),
    )
    .unwrap();
    let log = dir.join("gateway.log");
    let mut gw = GatewayProcess {
        child: Command::new(&binary)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        base: String::new(),
    };
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // A line counts once it is whole: the address may be written in
        // pieces.
        let mut whole = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
        if let Some(addr) = whole.find_map(|l| {
            let at = l.find("listening on ")?;
            Some(l[at + "listening on ".len()..].trim().to_owned())
        }) {
            gw.base = format!("http://{addr}");
            return gw;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "iris-gateway did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gateway's VIs added at run time.
async fn runtime_vis(gw: &GatewayProcess) -> Vec<Value> {
    let (s, _, list) = call(&gw.base, Some(GW_TOKEN), "GET", "/v1/vis", None).await;
    assert_eq!(s, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .filter(|v| v["origin"] == "api")
        .cloned()
        .collect()
}

async fn eventually(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ok().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vis_are_pushed_to_the_haas_gateway_rolled_back_reconciled_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let host = HostEntry {
        name: "gwh".into(),
        underlay_ip: "192.0.2.1".parse().unwrap(),
        ovsdb: "tcp:192.0.2.1:6640".into(),
        controller: "tcp:127.0.0.1:6653".into(),
        role: HostRole::Gateway,
    };
    let controller = start_controller(dir.path(), vec![host]);
    let gw = start_gateway(dir.path(), controller.api_addr());
    let mut config = broker_config(dir.path(), controller.api_addr());
    config.haas_gateways = vec!["gwh".into()];
    config.gateway_apis = vec![GatewayApi {
        name: "gwh".into(),
        api: gw.base.clone(),
        token: Secret::new(GW_TOKEN),
        wan_ip: "203.0.113.1".parse().unwrap(),
    }];
    let broker = start_broker(&config).await;
    let b = broker.base.clone();
    let (_, acme) = provider(&b, "acme").await;
    let (_, globex) = provider(&b, "globex").await;

    // The hashes of the operators' gateways' tokens (the tokens stay with
    // the operators).
    let hash = |t: &str| iris_controller::api_auth::hash_token(t).unwrap();
    let (acme_hash, globex_hash) = (
        hash("gw-acme-reports-to-gwh-0123"),
        hash("gw-globex-reports-to-gwh-0123"),
    );

    // Without the hash of the operator gateway's token, or with a token
    // where its hash belongs: refused, made nowhere.
    let mut body = json!({"name": "net", "gateway": "203.0.113.7:9300", "gateway_name": "gw-acme",
        "vlans": {"first": 100, "last": 199}, "addressing": {"mode": "dhcp"}});
    let (s, _, p) = call(&b, Some(&acme), "POST", "/v1/vis", Some(body.clone())).await;
    assert_eq!(s, 422, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("#/peer/token_hash"),
        "{p}"
    );
    body["gateway_token_hash"] = json!("gw-acme-reports-to-gwh-0123");
    let (s, _, p) = call(&b, Some(&acme), "POST", "/v1/vis", Some(body.clone())).await;
    assert_eq!(s, 422, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("never tokens"),
        "{p}"
    );
    assert_eq!(runtime_vis(&gw).await, Vec::<Value>::new());

    // Made: in the controller, on the gateway, and the operator told where.
    body["gateway_token_hash"] = json!(acme_hash);
    let (s, _, vi) = call(&b, Some(&acme), "POST", "/v1/vis", Some(body)).await;
    assert_eq!(s, 201, "{vi}");
    let key = vi["tunnel_key"].as_u64().unwrap();
    assert_eq!(
        vi["haas_gateways"],
        json!([{"name": "gwh", "wan_ip": "203.0.113.1", "gre_key": key, "peer_name": "gw-acme"}])
    );
    let on_gw = runtime_vis(&gw).await;
    assert_eq!(
        on_gw,
        [json!({"id": key, "origin": "api", "gre_key": key,
            "peer": {"name": "gw-acme", "wan_ip": "203.0.113.7", "api": "http://203.0.113.7:9300",
                "token_hash": acme_hash},
            "vlans": ["100-199"]})]
    );

    // Another operator claiming that gateway name from another address:
    // the gateway refuses, so the VI is made nowhere.
    let clash = json!({"name": "net", "gateway": "203.0.113.8", "gateway_name": "gw-acme",
        "gateway_token_hash": globex_hash,
        "vlans": {"first": 100, "last": 199}, "addressing": {"mode": "dhcp"}});
    let (s, _, p) = call(&b, Some(&globex), "POST", "/v1/vis", Some(clash)).await;
    assert_eq!(s, 409, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("\"gw-acme\" is already"),
        "{p}"
    );
    let (_, _, theirs) = call(&b, Some(&globex), "GET", "/v1/vis", None).await;
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    let ctl_vis = controller.get_json("/v1/vis").unwrap();
    assert_eq!(ctl_vis.as_array().unwrap().len(), 1, "{ctl_vis}");
    assert_eq!(runtime_vis(&gw).await.len(), 1);

    // Drift while the broker is down (the VI lost, a stray one added) is
    // reconciled when it starts.
    broker.shut().await;
    let (s, _, _) = call(
        &gw.base,
        Some(GW_TOKEN),
        "DELETE",
        &format!("/v1/vis/{key}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let stray = json!({"gre_key": 4000, "vlans": ["5"],
        "peer": {"name": "gw-old", "wan_ip": "203.0.113.66", "api": "http://203.0.113.66:9180",
            "token_hash": globex_hash}});
    let (s, _, _) = call(&gw.base, Some(GW_TOKEN), "PUT", "/v1/vis/4000", Some(stray)).await;
    assert_eq!(s, 201);
    let broker = start_broker(&config).await;
    let b = broker.base.clone();
    eventually("the gateway reconciled to the broker's VIs", async || {
        let ids: Vec<u64> = runtime_vis(&gw)
            .await
            .iter()
            .filter_map(|v| v["id"].as_u64())
            .collect();
        ids == [key]
    })
    .await;

    // Deleted: from the gateway too.
    let id = vi["id"].as_str().unwrap();
    let (s, _, p) = call(&b, Some(&acme), "DELETE", &format!("/v1/vis/{id}"), None).await;
    assert_eq!(s, 204, "{p}");
    assert_eq!(runtime_vis(&gw).await, Vec::<Value>::new());

    // The gateway down: the VI is made nowhere, and the broker says why.
    drop(gw);
    let body = json!({"name": "net2", "gateway": "203.0.113.9", "gateway_token_hash": acme_hash,
        "vlans": {"first": 100, "last": 199}, "addressing": {"mode": "dhcp"}});
    let (s, _, p) = call(&b, Some(&acme), "POST", "/v1/vis", Some(body)).await;
    assert_eq!(s, 502, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("gateway gwh"), "{p}");
    let (_, _, mine) = call(&b, Some(&acme), "GET", "/v1/vis", None).await;
    assert_eq!(mine["items"], json!([]), "{mine}");
    let ctl_vis = controller.get_json("/v1/vis").unwrap();
    assert_eq!(ctl_vis, json!([]), "{ctl_vis}");
    broker.shut().await;
}
