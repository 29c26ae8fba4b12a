//! The gateway's control plane over real sockets: a haas gateway and an
//! iaas gateway started in-process on 127.0.0.1, and a small HTTP server
//! in the controller's place that records the registry writes it is sent
//! (and answers the registry list and event stream the follower reads).

#![allow(clippy::unwrap_used)]

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures_util::stream::Stream;
use iris_gateway::run::{start, DatapathLink, Running};
use ofp::packet::{ArpRepr, MacAddr, VlanTag};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod common;
use common::{haas_config, iaas_config, metrics, token, token_hash, ACME_TOKEN_FILE};

/// What the registry stand-in was sent.
#[derive(Debug, Clone, PartialEq)]
struct Put {
    path: String,
    take_ips: bool,
    body: Value,
}

/// An open event stream: (event name, data).
type EventSender = mpsc::UnboundedSender<(String, String)>;

#[derive(Clone, Default)]
struct Recorder {
    puts: Arc<Mutex<Vec<Put>>>,
    /// MACs whose PUT without take_ips is refused with 409.
    ip_held: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<EventSender>>>,
    /// `GET /v1/registry?vi=` requests answered.
    lists: Arc<Mutex<Vec<String>>>,
}

async fn put_entry(
    State(r): State<Recorder>,
    Path((vi, vlan, mac)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let take_ips = q.get("take_ips").is_some_and(|v| v == "true");
    r.puts.lock().unwrap().push(Put {
        path: format!("{vi}/{vlan}/{mac}"),
        take_ips,
        body: body.clone(),
    });
    if !take_ips && r.ip_held.lock().unwrap().contains(&mac) {
        return (
            StatusCode::CONFLICT,
            Json(json!({"status": 409, "detail": "10.1.1.5 is another MAC's"})),
        );
    }
    (StatusCode::CREATED, Json(body))
}

async fn list(State(r): State<Recorder>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    r.lists
        .lock()
        .unwrap()
        .push(q.get("vi").cloned().unwrap_or_default());
    Json(json!([]))
}

async fn events(State(r): State<Recorder>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::unbounded_channel();
    r.events.lock().unwrap().push(tx);
    Sse::new(futures_util::stream::unfold(rx, |mut rx| async move {
        let (name, data) = rx.recv().await?;
        Some((Ok(Event::default().event(name).data(data)), rx))
    }))
}

impl Recorder {
    async fn serve_on(&self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/v1/registry/{vi}/{vlan}/{mac}", put(put_entry))
            .route("/v1/registry", get(list))
            .route("/v1/events", get(events))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    fn puts(&self) -> Vec<Put> {
        self.puts.lock().unwrap().clone()
    }

    /// Sends an event to every open stream; how many got it.
    fn event(&self, name: &str, data: Value) -> usize {
        let mut streams = self.events.lock().unwrap();
        streams.retain(|tx| tx.send((name.into(), data.to_string())).is_ok());
        streams.len()
    }
}

async fn start_haas(controller: SocketAddr) -> Running {
    start(
        Arc::new(haas_config(controller)),
        DatapathLink::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

async fn recorder() -> (Recorder, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = Recorder::default();
    r.serve_on(listener).await;
    (r, addr)
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1200 {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 30 s");
}

/// Posts a report as gw-acme, with its token.
async fn post(gw: SocketAddr, body: &Value) -> (u16, String, Value) {
    post_with(gw, Some(&token(ACME_TOKEN_FILE)), body).await
}

/// Posts a report with `token` as the bearer, or none.
async fn post_with(gw: SocketAddr, token: Option<&str>, body: &Value) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{gw}/v1/peer/macs"))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, r.json().await.unwrap())
}

/// The registry writes once there are two, and their paths, sorted.
async fn two_writes(rec: &Recorder) -> (Vec<Put>, Vec<String>) {
    let puts = eventually("two registry writes", || {
        let p = rec.puts();
        (p.len() >= 2).then_some(p)
    })
    .await;
    let mut paths: Vec<String> = puts.iter().map(|p| p.path.clone()).collect();
    paths.sort_unstable();
    (puts, paths)
}

fn mac_report(vi: u32, vlan: Value, mac: &str, seq: u32, kind: &str) -> Value {
    json!({"vi": vi, "vlan": vlan, "mac": mac, "ips": ["10.1.1.5"], "seq": seq, "kind": kind})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_report_is_written_into_the_registry_behind_this_gateway() {
    let (rec, ctl) = recorder().await;
    let gw = start_haas(ctl).await;
    let body = json!({"from": "gw-acme", "macs": [
        mac_report(1, json!(100), "52:54:00:00:01:05", 0, "presence"),
        mac_report(1, Value::Null, "52:54:00:00:01:06", 2, "move"),
    ]});
    let (status, _, answer) = post(gw.addr, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "followed");
    assert_eq!(answer["results"][1]["seq"], 2);
    let (puts, paths) = two_writes(&rec).await;
    assert_eq!(
        paths,
        ["1/100/52:54:00:00:01:05", "1/untagged/52:54:00:00:01:06"]
    );
    assert_eq!(
        puts[0].body,
        json!({"location": {"kind": "gateway", "gateway": "gw-haas"}, "ips": ["10.1.1.5"]})
    );
    // The same report again is answered the same and writes nothing more.
    let (_, _, again) = post(gw.addr, &body).await;
    assert_eq!(again["results"][0]["outcome"], "followed");
    assert_eq!(again["results"][0]["detail"], "already followed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rec.puts().len(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_move_takes_the_ips_another_mac_holds_but_a_presence_does_not() {
    let (rec, ctl) = recorder().await;
    rec.ip_held.lock().unwrap().extend([
        "52:54:00:00:01:05".to_owned(),
        "52:54:00:00:01:06".to_owned(),
    ]);
    let gw = start_haas(ctl).await;
    let body = json!({"from": "gw-acme", "macs": [
        mac_report(1, json!(100), "52:54:00:00:01:05", 0, "presence"),
    ]});
    post(gw.addr, &body).await;
    // The outbox replaces a waiting report with a newer one of the same
    // MAC, so the move below would swallow this presence if it were still
    // queued: the PUTs counted below need it sent (and refused) first.
    eventually("the presence's registry write", || {
        rec.puts()
            .iter()
            .any(|p| p.path.ends_with("52:54:00:00:01:05"))
            .then_some(())
    })
    .await;
    // The controller moves it into the HaaS DC (a port): seq 1 there.
    eventually("the follower's event stream", || {
        (rec.event(
            "registry",
            json!({"type": "registry", "change": "moved", "vi": 1, "vlan": 100,
                   "mac": "52:54:00:00:01:05", "location": "pm1:7", "from": "behind gw-haas"}),
        ) > 0)
            .then_some(())
    })
    .await;
    let stale = json!({"from": "gw-acme", "macs": [
        mac_report(1, json!(100), "52:54:00:00:01:05", 0, "presence"),
    ]});
    // The event reaches the gateway a moment after it is sent.
    let mut answer = Value::Null;
    for _ in 0..1200 {
        answer = post(gw.addr, &stale).await.2;
        if answer["results"][0]["outcome"] == "stale" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(answer["results"][0]["outcome"], "stale", "{answer}");
    assert_eq!(answer["results"][0]["seq"], 1);
    // The move back out is followed, and takes the IP.
    let back = json!({"from": "gw-acme", "macs": [
        mac_report(1, json!(100), "52:54:00:00:01:05", 2, "move"),
        mac_report(1, json!(100), "52:54:00:00:01:06", 0, "presence"),
    ]});
    let (_, _, answer) = post(gw.addr, &back).await;
    assert_eq!(answer["results"][0]["outcome"], "followed");
    let puts = eventually("the registry writes", || {
        let p = rec.puts();
        (p.len() >= 4).then_some(p)
    })
    .await;
    let of = |mac: &str| -> Vec<bool> {
        puts.iter()
            .filter(|p| p.path.ends_with(mac))
            .map(|p| p.take_ips)
            .collect()
    };
    // 01:05: the presence refused (409), the move retried taking the IPs.
    assert_eq!(of("01:05"), [false, false, true]);
    assert_eq!(of("01:06"), [false]);
    // Counted once the batch is done, a moment after its last PUT.
    let mut text = String::new();
    for _ in 0..1200 {
        text = metrics(gw.addr).await;
        if text.contains("iris_gateway_reports_queued 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        text.contains("iris_gateway_reports_dropped_total{why=\"refused\"} 2"),
        "{text}"
    );
    assert!(text.contains("iris_gateway_peer_reports_total{outcome=\"stale\"} 1"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reports_are_problem_documents_naming_the_field() {
    let (_rec, ctl) = recorder().await;
    let gw = start_haas(ctl).await;
    let cases = [
        (json!({"from": "gw-nobody", "macs": []}), 403, "#/from"),
        (
            json!({"from": "gw-acme", "macs": [mac_report(7, json!(100), "52:54:00:00:01:05", 0, "move")]}),
            403,
            "#/macs/0/vi",
        ),
        (
            json!({"from": "gw-acme", "macs": [{"vi": 1, "vlan": 100, "mac": "52:54:00:00:01:05", "seq": 0, "kind": "moved"}]}),
            422,
            "#/macs/0/kind",
        ),
        (
            json!({"from": "gw-acme", "macs": [], "extra": 1}),
            422,
            "#/extra",
        ),
        (json!([]), 422, "#"),
    ];
    for (body, status, pointer) in cases {
        let (got, ctype, problem) = post(gw.addr, &body).await;
        assert_eq!(
            (got, ctype.as_str()),
            (status, "application/problem+json"),
            "{body}: {problem}"
        );
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/peer/macs", gw.addr))
        .bearer_auth(token(ACME_TOKEN_FILE))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/peer/macs", gw.addr))
        .bearer_auth(token(ACME_TOKEN_FILE))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = reqwest::get(format!("http://{}/v1/peer/macs", gw.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "/v1/peer/macs does not take GET; use POST"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rarp_on_the_iaas_trunk_reaches_the_registry_after_the_controller_comes_back() {
    // The controller is down: its port is known but nothing listens.
    let parked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ctl = parked.local_addr().unwrap();
    drop(parked);
    let haas = start_haas(ctl).await;
    let (tx, rx) = mpsc::channel(16);
    let (_status_tx, status) = watch::channel(json!({"peers": {"gw-haas": {"bfd": "up"}}}));
    let iaas = start(
        Arc::new(iaas_config(haas.addr)),
        DatapathLink {
            frames: Some(rx),
            status: Some(status),
            plan: None,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mac = MacAddr([0x52, 0x54, 0, 0, 2, 1]);
    let mut rarp = ArpRepr::rarp_announce(mac);
    rarp.tags = vec![VlanTag {
        tpid: 0x8100,
        tci: 150,
    }];
    let mut frame = Vec::new();
    rarp.emit(&mut frame);
    tx.send(frame).await.unwrap();
    tx.send(vec![0xff; 9]).await.unwrap();
    // The haas side follows the report and queues the write while the
    // controller is away.
    let status = eventually("the haas side to hold the write", || {
        let s = haas.shared.control().status();
        (s.macs == 1 && s.outbox.queued == 1).then_some(s)
    })
    .await;
    assert_eq!(status.outbox.dropped, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The controller comes back on its address: the write arrives.
    let listener = tokio::net::TcpListener::bind(ctl).await.unwrap();
    let rec = Recorder::default();
    rec.serve_on(listener).await;
    let puts = eventually("the registry write", || {
        let p = rec.puts();
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(puts[0].path, "1/150/52:54:00:00:02:01");
    let iaas_metrics = metrics(iaas.addr).await;
    assert!(
        iaas_metrics.contains("iris_gateway_reports_sent_total 1"),
        "{iaas_metrics}"
    );
    assert!(iaas_metrics.contains("iris_gateway_malformed_frames_total{reason=\"truncated\"} 1"));
    let haas_metrics = metrics(haas.addr).await;
    assert!(
        !haas_metrics.contains("iris_gateway_report_failures_total 0"),
        "{haas_metrics}"
    );
    let status: Value = reqwest::get(format!("http://{}/v1/status", iaas.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["kind"], "iaas");
    assert_eq!(status["peers"][0]["queued"], 0);
    assert_eq!(status["datapath"]["peers"]["gw-haas"]["bfd"], "up");
    let status: Value = reqwest::get(format!("http://{}/v1/status", haas.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["datapath"], Value::Null);
    assert_eq!(status["macs"], 1);
    iaas.stop().await;
    haas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_that_fell_behind_is_reopened_and_the_registry_read_again() {
    let (rec, ctl) = recorder().await;
    let gw = start_haas(ctl).await;
    let topology = json!({"type": "topology", "what": "vi3 added"});
    eventually("the follower's event stream", || {
        (rec.event("topology", topology.clone()) > 0).then_some(())
    })
    .await;
    let lists = || rec.lists.lock().unwrap().clone();
    eventually("the first reading", || (lists().len() == 2).then_some(())).await;
    assert_eq!(lists(), ["1", "2"]);
    rec.event("lagged", json!({"missed": 12}));
    eventually("the second reading", || (lists().len() == 4).then_some(())).await;
    assert!(metrics(gw.addr)
        .await
        .contains("iris_gateway_follower_reconnects_total 1"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_back_from_the_haas_dc_is_reported_on_the_next_rarp_of_its_announcement() {
    let (rec, ctl) = recorder().await;
    let haas = start_haas(ctl).await;
    let (tx, rx) = mpsc::channel(16);
    let iaas = start(
        Arc::new(iaas_config(haas.addr)),
        DatapathLink {
            frames: Some(rx),
            status: None,
            plan: None,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut rarp = ArpRepr::rarp_announce(MacAddr([0x52, 0x54, 0, 0, 2, 2]));
    rarp.tags = vec![VlanTag {
        tpid: 0x8100,
        tci: 150,
    }];
    let mut frame = Vec::new();
    rarp.emit(&mut frame);
    // Seen in the IaaS DC: written behind the haas gateway.
    tx.send(frame.clone()).await.unwrap();
    eventually("the first registry write", || {
        (rec.puts().len() == 1).then_some(())
    })
    .await;
    // The guest migrates into the HaaS DC: the controller places it on a
    // port, which the iaas side does not hear of.
    eventually("the follower's event stream", || {
        (rec.event(
            "registry",
            json!({"type": "registry", "change": "moved", "vi": 1, "vlan": 150,
                   "mac": "52:54:00:00:02:02", "location": "pm1:7", "from": "behind gw-haas"}),
        ) > 0)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It migrates back and QEMU announces it twice, 50 ms apart: the first
    // RARP's presence report is answered stale (the MAC was away), so the
    // second is a move past the haas side's seq, and is written. The
    // report must leave at once: on the sender's idle second the answer
    // comes after the last RARP and nothing is written.
    tx.send(frame.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(frame).await.unwrap();
    let puts = eventually("the move back written behind the gateway", || {
        let p = rec.puts();
        (p.len() == 2).then_some(p)
    })
    .await;
    assert_eq!(puts[1].path, "1/150/52:54:00:00:02:02");
    assert_eq!(puts[1].body["location"]["gateway"], "gw-haas");
    iaas.stop().await;
    haas.stop().await;
}

/// A VI and peer added through the API work as the file's do: the new
/// peer's report is written into the registry behind this gateway, and the
/// follower reads the new VI's registry at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_added_at_run_time_reports_as_a_configured_one_and_its_registry_is_read() {
    let (rec, ctl) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let token = "runtime-vi-api-token-0123456789";
    std::fs::write(dir.path().join("token"), token).unwrap();
    let text = format!(
        "{}\n[vi_api]\ntoken_file = \"{}\"\nstate_dir = \"{}\"\n",
        common::haas_text(ctl, ""),
        dir.path().join("token").display(),
        dir.path().display()
    );
    let gw = start(
        Arc::new(iris_gateway::config::Config::parse(&text).unwrap()),
        DatapathLink::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let lists = || rec.lists.lock().unwrap().clone();
    eventually("the first reading", || (lists().len() == 2).then_some(())).await;
    let body = json!({"from": "gw-initech", "macs": [
        mac_report(5, json!(150), "52:54:00:00:05:01", 1, "move"),
    ]});
    let initech = "gw-initech-reports-to-gw-haas-0123";
    let (status, _, refused) = post_with(gw.addr, Some(initech), &body).await;
    assert_eq!(status, 401, "not a peer yet: {refused}");

    let put = |vi: Value| {
        reqwest::Client::new()
            .put(format!("http://{}/v1/vis/5", gw.addr))
            .bearer_auth(token)
            .json(&vi)
            .send()
    };
    // A peer without the hash of its token is refused at that field.
    let mut vi = json!({"gre_key": 1005, "vlans": ["100-199"],
        "peer": {"name": "gw-initech", "wan_ip": "203.0.113.9", "api": "http://127.0.0.1:9"}});
    let r = put(vi.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["pointer"], "#/peer/token_hash",
        "{problem}"
    );
    vi["peer"]["token_hash"] = iris_controller::api_auth::hash_token(initech)
        .unwrap()
        .into();
    let r = put(vi).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    eventually("the new VI's registry read", || {
        lists().contains(&"5".to_owned()).then_some(())
    })
    .await;
    // gw-acme's token is not gw-initech's.
    let (status, _, refused) = post(gw.addr, &body).await;
    assert_eq!(status, 403, "{refused}");
    let (status, _, answer) = post_with(gw.addr, Some(initech), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "followed");
    let puts = eventually("the registry write", || {
        let p = rec.puts();
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(puts[0].path, "5/150/52:54:00:00:05:01");
    assert_eq!(
        puts[0].body["location"],
        json!({"kind": "gateway", "gateway": "gw-haas"})
    );
    gw.stop().await;
}

/// A haas gateway whose peers are gw-acme (VIs 1 and 2, the token of
/// [`ACME_TOKEN_FILE`]) and gw-globex (VI 3, the token of
/// [`common::GLOBEX_TOKEN_FILE`]).
async fn start_haas_with_globex(ctl: SocketAddr, extra_gateway: &str) -> Running {
    let text = format!(
        "{}\n[[peer]]\nname = \"gw-globex\"\nwan_ip = \"203.0.113.3\"\napi = \"http://127.0.0.1:9\"\n\
         token_hash = \"{}\"\n\n[[vi]]\nid = 3\ngre_key = 1003\npeer = \"gw-globex\"\n\
         vlans = [\"100-199\"]\n",
        common::haas_text(ctl, "")
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:0\"\n{extra_gateway}")),
        token_hash(common::GLOBEX_TOKEN_FILE)
    );
    start(
        Arc::new(iris_gateway::config::Config::parse(&text).unwrap()),
        DatapathLink::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// The value of `iris_gateway_peer_reports_refused{why}`.
async fn refusals(gw: SocketAddr, why: &str) -> u64 {
    let text = metrics(gw).await;
    let line = format!("iris_gateway_peer_reports_refused_total{{why=\"{why}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in {text}"))
        .parse()
        .unwrap()
}

/// Reports without the sender's token, or for a VI the sender does not
/// share with this gateway, are refused whole with a problem document,
/// counted, and change nothing: no MAC learnt, no registry write; the
/// same reports with the right token are followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_needs_its_senders_token_and_may_name_only_the_senders_vis() {
    let (rec, ctl) = recorder().await;
    let gw = start_haas_with_globex(ctl, "").await;
    let (acme, globex) = (token(ACME_TOKEN_FILE), token(common::GLOBEX_TOKEN_FILE));
    let acme_mac = mac_report(1, json!(100), "52:54:00:00:01:05", 1, "move");
    let from_acme = json!({"from": "gw-acme", "macs": [acme_mac]});

    // No token, a wrong one, one that is not a bearer: 401, with the
    // challenge, before the body is read.
    for token in [None, Some("not-the-token-of-anyone-0123")] {
        let (status, ctype, problem) = post_with(gw.addr, token, &from_acme).await;
        assert_eq!(status, 401, "{token:?}: {problem}");
        assert_eq!(ctype, "application/problem+json");
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/peer/macs", gw.addr))
        .header("authorization", format!("Basic {acme}"))
        .body("not even JSON")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"iris-gateway\""
    );
    assert_eq!(refusals(gw.addr, "unauthenticated").await, 3);

    // gw-globex's token: not gw-acme's reports, nor reports for VI 1.
    let (status, _, problem) = post_with(gw.addr, Some(&globex), &from_acme).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "#/from", "{problem}");
    let from_globex = json!({"from": "gw-globex", "macs": [
        mac_report(3, json!(100), "52:54:00:00:03:01", 1, "move"),
        mac_report(1, json!(100), "52:54:00:00:01:05", 1, "move"),
    ]});
    let (status, ctype, problem) = post_with(gw.addr, Some(&globex), &from_globex).await;
    assert_eq!(
        (status, ctype.as_str()),
        (403, "application/problem+json"),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["pointer"], "#/macs/1/vi", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("vi 1 is not carried between this gateway and gw-globex"),
        "{problem}"
    );
    assert_eq!(refusals(gw.addr, "not_the_sender").await, 1);
    assert_eq!(refusals(gw.addr, "foreign_vi").await, 1);

    // Nothing changed: no MAC in the table, nothing for the registry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rec.puts().is_empty(), "{:?}", rec.puts());
    assert_eq!(gw.shared.control().status().macs, 0);

    // The senders' own reports, with their tokens, are followed.
    let (status, _, answer) = post_with(gw.addr, Some(&acme), &from_acme).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "followed");
    let from_globex = json!({"from": "gw-globex", "macs": [
        mac_report(3, json!(100), "52:54:00:00:03:01", 1, "move"),
    ]});
    let (status, _, answer) = post_with(gw.addr, Some(&globex), &from_globex).await;
    assert_eq!(status, 200, "{answer}");
    let (_, paths) = two_writes(&rec).await;
    assert_eq!(
        paths,
        ["1/100/52:54:00:00:01:05", "3/100/52:54:00:00:03:01"]
    );
    gw.stop().await;
}

/// `allow_unauthenticated_peers` takes reports without a token from a peer
/// that has no `token_hash`, never from one that has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_a_peer_without_a_hash_may_report_and_only_when_allowed() {
    let (rec, ctl) = recorder().await;
    // gw-globex has a hash: its reports need its token all the same.
    let gw = start_haas_with_globex(ctl, "allow_unauthenticated_peers = true").await;
    let from_globex = json!({"from": "gw-globex", "macs": [
        mac_report(3, json!(100), "52:54:00:00:03:01", 1, "move"),
    ]});
    let (status, _, problem) = post_with(gw.addr, None, &from_globex).await;
    assert_eq!(status, 401, "{problem}");
    gw.stop().await;

    let text = common::haas_text(ctl, "")
        .replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nallow_unauthenticated_peers = true",
        )
        .replace(
            &format!("token_hash = \"{}\"\n", token_hash(ACME_TOKEN_FILE)),
            "",
        );
    assert!(!text.contains("token_hash"));
    let config = iris_gateway::config::Config::parse(&text).unwrap();
    assert!(
        config.warnings()[0].contains("UNAUTHENTICATED PEERS ALLOWED"),
        "{:?}",
        config.warnings()
    );
    let gw = start(
        Arc::new(config),
        DatapathLink::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let body = json!({"from": "gw-acme", "macs": [
        mac_report(1, json!(100), "52:54:00:00:01:05", 1, "move"),
    ]});
    let (status, _, answer) = post_with(gw.addr, None, &body).await;
    assert_eq!(status, 200, "{answer}");
    eventually("the registry write", || {
        (!rec.puts().is_empty()).then_some(())
    })
    .await;
    gw.stop().await;
}
