//! The broker's API against the real controller (no switch needed): who
//! may see and touch what, the problem documents, idempotency, pages,
//! placement under concurrent requests, and a restart that loses nothing.
//!
//! The PM registered here has no reachable OVSDB, so every node the
//! `netns` driver starts fails and is rolled back: that is the error path
//! tested here; `nodes.rs` makes real nodes on real OVS.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use iris_testbed::controller::{HostEntry, HostRole};
use serde_json::{json, Value};
use std::time::Duration;

fn assert_problem(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert_eq!(
        headers[reqwest::header::CONTENT_TYPE],
        "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], want);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

fn pointer(body: &Value) -> &str {
    body["errors"][0]["pointer"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_another_providers_objects() {
    let dir = tempfile::tempdir().unwrap();
    // The controller's own VI holds key 1000, where the broker starts.
    let own = iris_testbed::controller::ViEntry::new(1000, "from-the-file", 1000);
    let controller = start_controller_with(dir.path(), Vec::new(), vec![own]);
    let broker = start_broker(&broker_config(dir.path(), controller.api_addr())).await;
    let b = broker.base.as_str();
    let pm_ns = FakePmNetns::new();

    // Open routes.
    let (s, _, h) = call(b, None, "GET", "/healthz", None).await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (s, _, doc) = call(b, None, "GET", "/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(&iris_api::api::openapi_text()).unwrap()
    );

    let (a_id, a) = provider(b, "acme").await;
    let (_b_id, other) = provider(b, "globex").await;
    register_pm(b, "pmx", 8, &pm_ns.0, dir.path()).await;

    small_flavor(b, &a).await;
    let vi_body = json!({"name": "net", "gateway": "203.0.113.7", "vlans": {"first": 100, "last": 199},
        "addressing": {"mode": "static_pool", "cidr": "10.1.1.0/24", "reserved": ["10.1.1.1"]},
        "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0 op@acme"});
    let (s, _, vi) = call(b, Some(&a), "POST", "/v1/vis", Some(vi_body.clone())).await;
    assert_eq!(s, 201, "{vi}");
    let vi_id = vi["id"].as_str().unwrap().to_owned();
    let key = vi["tunnel_key"].as_u64().unwrap();
    assert_eq!(key, 1001, "the controller's own VI 1000 is left alone");
    // The controller has it, under the key the broker allocated.
    let ctl_vi = controller.get_json(&format!("/v1/vis/{key}")).unwrap();
    assert_eq!(ctl_vi["gre_key"], key, "{ctl_vi}");
    // Asking again for what exists is a success, not a second VI.
    let (s, _, again) = call(b, Some(&a), "POST", "/v1/vis", Some(vi_body)).await;
    assert_eq!((s, &again["id"]), (200, &vi["id"]));

    // A node whose driver fails: the operation fails with the driver's
    // reason, the node is left in `error`, and nothing of it on the PM.
    let (s, h, op) = call(
        b,
        Some(&a),
        "POST",
        "/v1/nodes",
        Some(json!({"vi": vi_id, "flavor": "c1", "count": 1})),
    )
    .await;
    assert_eq!(s, 202, "{op}");
    let location = h[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    let op = wait_operation(b, &a, &location, Duration::from_secs(30)).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert!(
        op["error"].as_str().unwrap().contains("netns driver"),
        "{op}"
    );
    let node_id = op["nodes"][0].as_str().unwrap().to_owned();
    let (s, _, node) = call(b, Some(&a), "GET", &format!("/v1/nodes/{node_id}"), None).await;
    assert_eq!((s, node["state"].as_str()), (200, Some("error")), "{node}");
    assert!(
        node["last_error"].as_str().unwrap().contains("OVSDB"),
        "{node}"
    );
    assert_eq!(
        node["ip"], "10.1.1.2/24",
        "the reserved address is skipped: {node}"
    );
    assert!(
        node_namespaces(&pm_ns.0).is_empty(),
        "{:?}",
        node_namespaces(&pm_ns.0)
    );
    assert!(
        !pm_ns.links().contains(&format!("vn{node_id}")),
        "{}",
        pm_ns.links()
    );
    let op_id = op["id"].as_str().unwrap();

    // The same Idempotency-Key twice: one operation, one node.
    let keyed = || async {
        let r = reqwest::Client::new()
            .post(format!("{b}/v1/nodes"))
            .bearer_auth(&a)
            .header("Idempotency-Key", "acme-req-1")
            .json(&json!({"vi": vi_id, "flavor": "c1", "count": 1}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (s1, first) = keyed().await;
    let (s2, second) = keyed().await;
    assert_eq!((s1, s2), (202, 202), "{first} {second}");
    assert_eq!(first["id"], second["id"]);
    let (_, _, all) = call(b, Some(&a), "GET", "/v1/nodes", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");
    let at = format!("/v1/operations/{}", first["id"].as_str().unwrap());
    wait_operation(b, &a, &at, Duration::from_secs(30)).await;
    // The key with another request: refused, naming the header.
    let r = reqwest::Client::new()
        .post(format!("{b}/v1/nodes"))
        .bearer_auth(&a)
        .header("Idempotency-Key", "acme-req-1")
        .json(&json!({"vi": vi_id, "flavor": "c1", "count": 2}))
        .send()
        .await
        .unwrap();
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    let p: Value = r.json().await.unwrap();
    assert_problem(s, &h, &p, 422);
    assert_eq!(pointer(&p), "header:Idempotency-Key");

    // Every object of acme, with globex's token, with none, with a wrong one.
    let owned = [
        "/v1/flavors/c1".to_owned(),
        format!("/v1/vis/{vi_id}"),
        format!("/v1/nodes/{node_id}"),
        format!("/v1/operations/{op_id}"),
        format!("/v1/providers/{a_id}"),
    ];
    for path in &owned {
        for method in ["GET", "DELETE"] {
            if path.starts_with("/v1/operations") && method == "DELETE" {
                continue;
            }
            let (s, h, p) = call(b, Some(&other), method, path, None).await;
            let want = if path.starts_with("/v1/providers") && method == "DELETE" {
                403
            } else {
                404
            };
            assert_problem(s, &h, &p, want);
            let (s, h, p) = call(b, None, method, path, None).await;
            assert_problem(s, &h, &p, 401);
            assert!(h.contains_key(reqwest::header::WWW_AUTHENTICATE));
            let (s, h, p) = call(b, Some("iris.tk-000000000000.nope"), method, path, None).await;
            assert_problem(s, &h, &p, 401);
        }
    }
    // A migration of acme's node: globex's token sees no such node, none
    // is refused, and acme hears why a node in error does not move.
    let migrate = format!("/v1/nodes/{node_id}/migrate");
    let (s, h, p) = call(b, Some(&other), "POST", &migrate, Some(json!({}))).await;
    assert_problem(s, &h, &p, 404);
    let (s, h, p) = call(b, None, "POST", &migrate, Some(json!({}))).await;
    assert_problem(s, &h, &p, 401);
    let (s, h, p) = call(b, Some(&a), "POST", &migrate, Some(json!({}))).await;
    assert_problem(s, &h, &p, 409);
    assert!(p["detail"].as_str().unwrap().contains("in error"), "{p}");
    // acme's own still work (the foreign DELETEs changed nothing).
    for path in &owned[..4] {
        let (s, _, v) = call(b, Some(&a), "GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    for list in [
        "/v1/flavors",
        "/v1/vis",
        "/v1/nodes",
        "/v1/operations",
        "/v1/providers",
    ] {
        let (s, _, page) = call(b, Some(&other), "GET", list, None).await;
        assert_eq!(s, 200, "{page}");
        let theirs = page["items"].as_array().unwrap();
        assert!(
            theirs
                .iter()
                .all(|i| i["provider"].as_str().is_none_or(|p| p != a_id)
                    && i["id"] != a_id.as_str()),
            "{list}: {page}"
        );
        let (s, h, p) = call(b, None, "GET", list, None).await;
        assert_problem(s, &h, &p, 401);
    }
    // Every route and method but the two open ones wants a token.
    for (method, path) in [
        ("GET", "/v1/providers"),
        ("POST", "/v1/providers"),
        ("GET", "/v1/providers/x"),
        ("DELETE", "/v1/providers/x"),
        ("GET", "/v1/providers/x/tokens"),
        ("POST", "/v1/providers/x/tokens"),
        ("DELETE", "/v1/tokens/x"),
        ("GET", "/v1/pms"),
        ("POST", "/v1/pms"),
        ("GET", "/v1/pms/x"),
        ("DELETE", "/v1/pms/x"),
        ("GET", "/v1/flavors"),
        ("POST", "/v1/flavors"),
        ("GET", "/v1/flavors/x"),
        ("DELETE", "/v1/flavors/x"),
        ("GET", "/v1/vis"),
        ("POST", "/v1/vis"),
        ("GET", "/v1/vis/x"),
        ("DELETE", "/v1/vis/x"),
        ("GET", "/v1/nodes"),
        ("POST", "/v1/nodes"),
        ("GET", "/v1/nodes/x"),
        ("DELETE", "/v1/nodes/x"),
        ("POST", "/v1/nodes/x/migrate"),
        ("GET", "/v1/operations"),
        ("GET", "/v1/operations/x"),
    ] {
        let (s, h, p) = call(b, None, method, path, Some(json!({}))).await;
        assert_problem(s, &h, &p, 401);
    }
    // Writes with another provider's token change nothing of acme's.
    let (s, _, _) = call(
        b,
        Some(&other),
        "POST",
        "/v1/flavors",
        Some(json!({"name": "c1", "vcpus": 9, "memory_mib": 9, "disk_gib": 9})),
    )
    .await;
    assert_eq!(s, 201, "globex's own c1, beside acme's");
    let (_, _, mine) = call(b, Some(&a), "GET", "/v1/flavors/c1", None).await;
    assert_eq!(mine["vcpus"], 1, "{mine}");

    // Admin-only routes refuse a provider's token.
    for (method, path) in [
        ("GET", "/v1/pms"),
        ("GET", "/v1/pms/pmx"),
        ("DELETE", "/v1/pms/pmx"),
        ("POST", "/v1/providers"),
        ("POST", &*format!("/v1/providers/{a_id}/tokens")),
        ("GET", &*format!("/v1/providers/{a_id}/tokens")),
    ] {
        let (s, h, p) = call(b, Some(&a), method, path, Some(json!({"name": "x"}))).await;
        assert_problem(s, &h, &p, 403);
    }
    // A request on another provider's VI names the field.
    let (s, h, p) = call(
        b,
        Some(&other),
        "POST",
        "/v1/nodes",
        Some(json!({"vi": vi_id, "flavor": "c1", "count": 1})),
    )
    .await;
    assert_problem(s, &h, &p, 422);
    assert_eq!(pointer(&p), "#/vi");

    // A revoked token stops at once (it had passed and been remembered).
    let (s, _, extra) = call(
        b,
        Some(ADMIN),
        "POST",
        &format!("/v1/providers/{a_id}/tokens"),
        None,
    )
    .await;
    assert_eq!(s, 201, "{extra}");
    let extra_token = extra["token"].as_str().unwrap();
    let (s, _, _) = call(b, Some(extra_token), "GET", "/v1/vis", None).await;
    assert_eq!(s, 200);
    let (s, _, listed) = call(
        b,
        Some(ADMIN),
        "GET",
        &format!("/v1/providers/{a_id}/tokens"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(listed.to_string().contains(extra["id"].as_str().unwrap()));
    assert!(
        !listed.to_string().contains(extra_token),
        "a listed token shows no secret"
    );
    let (s, _, _) = call(
        b,
        Some(ADMIN),
        "DELETE",
        &format!("/v1/tokens/{}", extra["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, h, p) = call(b, Some(extra_token), "GET", "/v1/vis", None).await;
    assert_problem(s, &h, &p, 401);

    // In use: the VI and the PM refuse to go, saying what uses them.
    let (s, h, p) = call(b, Some(&a), "DELETE", &format!("/v1/vis/{vi_id}"), None).await;
    assert_problem(s, &h, &p, 409);
    assert!(p["detail"].as_str().unwrap().contains(&node_id));
    let (s, h, p) = call(b, Some(ADMIN), "DELETE", "/v1/pms/pmx", None).await;
    assert_problem(s, &h, &p, 409);
    assert!(p["detail"].as_str().unwrap().contains(&node_id));

    broker.shut().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start_controller(dir.path(), Vec::new());
    let broker = start_broker(&broker_config(dir.path(), controller.api_addr())).await;
    let b = broker.base.as_str();
    let (_, a) = provider(b, "acme").await;

    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "POST",
            "/v1/flavors",
            json!({"name": "c1", "vcpus": 0, "memory_mib": 1, "disk_gib": 1}),
            422,
            "#/vcpus",
        ),
        (
            "POST",
            "/v1/flavors",
            json!({"name": "c 1", "vcpus": 1, "memory_mib": 1, "disk_gib": 1}),
            422,
            "#/name",
        ),
        (
            "POST",
            "/v1/flavors",
            json!({"name": "c1", "vcpus": 1, "memory_mib": 1, "disk_gib": 1, "gpu": 1}),
            422,
            "#",
        ),
        (
            "POST",
            "/v1/flavors",
            json!({"name": "c1", "vcpus": "two", "memory_mib": 1, "disk_gib": 1}),
            422,
            "#/vcpus",
        ),
        (
            "POST",
            "/v1/vis",
            json!({"name": "n", "gateway": "nowhere", "vlans": {"first": 1, "last": 2}, "addressing": {"mode": "dhcp"}}),
            422,
            "#/gateway",
        ),
        (
            "POST",
            "/v1/vis",
            json!({"name": "n", "gateway": "10.0.0.1", "vlans": {"first": 20, "last": 2}, "addressing": {"mode": "dhcp"}}),
            422,
            "#/vlans",
        ),
        (
            "POST",
            "/v1/vis",
            json!({"name": "n", "gateway": "10.0.0.1", "vlans": {"first": 1, "last": 2}, "addressing": {"mode": "static_pool", "cidr": "10.0.0.1/24"}}),
            422,
            "#/addressing/cidr",
        ),
        (
            "POST",
            "/v1/vis",
            json!({"name": "n", "gateway": "10.0.0.1", "vlans": {"first": 1, "last": 2}, "addressing": {"mode": "dhcp"}, "ssh_public_key": "hello"}),
            422,
            "#/ssh_public_key",
        ),
        (
            "POST",
            "/v1/vis",
            json!({"name": "n", "gateway": "10.0.0.1", "vlans": {"first": 1, "last": 2}, "addressing": {"mode": "dhcp"}, "ssh_public_key": "ssh-ed25519 AAAA\tB op@acme"}),
            422,
            "#/ssh_public_key",
        ),
        (
            "POST",
            "/v1/vis",
            json!({"name": "n", "gateway": "10.0.0.1", "vlans": {"first": 1, "last": 2}, "addressing": {"mode": "dhcp"}, "ssh_public_key": format!("ssh-rsa {} op@acme", "A".repeat(1100))}),
            422,
            "#/ssh_public_key",
        ),
        (
            "POST",
            "/v1/nodes",
            json!({"vi": "vi-x", "flavor": "c1", "count": 0}),
            422,
            "#/count",
        ),
        (
            "POST",
            "/v1/nodes",
            json!({"vi": "vi-x", "flavor": "c1", "count": 1}),
            422,
            "#/vi",
        ),
        (
            "POST",
            "/v1/nodes",
            json!({"vi": "vi-x", "flavor": "c1", "count": 1, "placement": {"policy": "affinity"}}),
            422,
            "#/placement/policy",
        ),
        ("GET", "/v1/nodes?limit=0", Value::Null, 400, "query:limit"),
        (
            "GET",
            "/v1/nodes?colour=red",
            Value::Null,
            400,
            "query:colour",
        ),
        (
            "DELETE",
            "/v1/vis/vi-x?force=maybe",
            Value::Null,
            400,
            "query:force",
        ),
    ];
    for (method, path, body, want, at) in cases {
        let body = (!body.is_null()).then_some(body);
        let (s, h, p) = call(b, Some(&a), method, path, body.clone()).await;
        assert_problem(s, &h, &p, want);
        assert!(pointer(&p).starts_with(at), "{method} {path} {body:?}: {p}");
    }
    let admin_cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "pm1", "capacity": {"vcpus": 0, "memory_mib": 1, "disk_gib": 1}, "underlay_ip": "10.0.0.1", "ovsdb": "unix:/x"}),
            "#/capacity",
        ),
        (
            json!({"name": "pm1", "capacity": {"vcpus": 1, "memory_mib": 1, "disk_gib": 1}, "underlay_ip": "ten", "ovsdb": "unix:/x"}),
            "#/underlay_ip",
        ),
        (
            json!({"name": "pm1", "capacity": {"vcpus": 1, "memory_mib": 1, "disk_gib": 1}, "underlay_ip": "10.0.0.1", "ovsdb": "http://x"}),
            "#/ovsdb",
        ),
        (
            json!({"name": "pm1", "capacity": {"vcpus": 1, "memory_mib": 1, "disk_gib": 1}, "underlay_ip": "10.0.0.1", "ovsdb": "unix:/x", "driver": "xen"}),
            "#/driver",
        ),
    ];
    for (body, at) in admin_cases {
        let (s, h, p) = call(b, Some(ADMIN), "POST", "/v1/pms", Some(body.clone())).await;
        assert_problem(s, &h, &p, 422);
        assert_eq!(pointer(&p), at, "{body}: {p}");
    }
    // A driver this build has but this broker's configuration does not set up.
    let body = json!({"name": "pm1", "capacity": {"vcpus": 1, "memory_mib": 1, "disk_gib": 1}, "underlay_ip": "10.0.0.1", "ovsdb": "unix:/x", "driver": "libvirt"});
    let (s, h, p) = call(b, Some(ADMIN), "POST", "/v1/pms", Some(body)).await;
    assert_problem(s, &h, &p, 422);
    assert_eq!(pointer(&p), "#/driver", "{p}");
    let detail = p["errors"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("no [libvirt] table") && detail.contains("[\"netns\"]"),
        "{p}"
    );
    // Not JSON, not labelled JSON, an unknown route, a wrong method.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{b}/v1/flavors"))
        .bearer_auth(&a)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = client
        .post(format!("{b}/v1/flavors"))
        .bearer_auth(&a)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let (s, h, p) = call(b, Some(&a), "GET", "/v1/nope", None).await;
    assert_problem(s, &h, &p, 404);
    let (s, h, p) = call(b, Some(&a), "PUT", "/v1/nodes", None).await;
    assert_problem(s, &h, &p, 405);
    broker.shut().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_requests_never_overbook_and_everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start_controller(dir.path(), Vec::new());
    let config = broker_config(dir.path(), controller.api_addr());
    let broker = start_broker(&config).await;
    let b = broker.base.clone();
    let pm_ns = FakePmNetns::new();
    let (_, a) = provider(&b, "acme").await;
    // 8 vCPUs of which a 5-vCPU node takes 5: room for 3 one-vCPU nodes.
    register_pm(&b, "pmfull", 8, &pm_ns.0, dir.path()).await;
    for (name, vcpus) in [("big", 5), ("c1", 1)] {
        let (s, _, f) = call(
            &b,
            Some(&a),
            "POST",
            "/v1/flavors",
            Some(json!({"name": name, "vcpus": vcpus, "memory_mib": 256, "disk_gib": 1})),
        )
        .await;
        assert_eq!(s, 201, "{f}");
    }
    let (s, _, vi) = call(
        &b,
        Some(&a),
        "POST",
        "/v1/vis",
        Some(json!({"name": "net", "gateway": "203.0.113.7",
        "vlans": {"first": 1, "last": 10}, "addressing": {"mode": "dhcp"}})),
    )
    .await;
    assert_eq!(s, 201, "{vi}");
    let vi_id = vi["id"].as_str().unwrap().to_owned();
    let (s, _, _) = call(
        &b,
        Some(&a),
        "POST",
        "/v1/nodes",
        Some(json!({"vi": vi_id, "flavor": "big", "count": 1})),
    )
    .await;
    assert_eq!(s, 202);

    let requests = (0..12).map(|_| {
        let (b, a, vi_id) = (b.clone(), a.clone(), vi_id.clone());
        tokio::spawn(async move {
            call(
                &b,
                Some(&a),
                "POST",
                "/v1/nodes",
                Some(json!({"vi": vi_id, "flavor": "c1", "count": 1})),
            )
            .await
        })
    });
    let mut accepted = 0;
    for r in futures_util::future::join_all(requests).await {
        let (s, h, p) = r.unwrap();
        match s {
            202 => accepted += 1,
            _ => {
                assert_problem(s, &h, &p, 409);
                assert_eq!(pointer(&p), "#/count");
            }
        }
    }
    assert_eq!(
        accepted, 3,
        "12 parallel one-vCPU requests at a PM with 3 vCPUs free"
    );
    let (_, _, pm) = call(&b, Some(ADMIN), "GET", "/v1/pms/pmfull", None).await;
    assert_eq!(pm["used"]["vcpus"], 8, "{pm}");
    assert_eq!(pm["nodes"], 4, "{pm}");

    // Idempotency: the same key gives the same operation, and no new node.
    let key_req = || {
        let (b, a, vi_id) = (b.clone(), a.clone(), vi_id.clone());
        async move {
            let r = reqwest::Client::new()
                .post(format!("{b}/v1/nodes"))
                .bearer_auth(&a)
                .header("Idempotency-Key", "req-42")
                .json(&json!({"vi": vi_id, "flavor": "c1", "count": 1}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s1, op1) = key_req().await;
    let (s2, op2) = key_req().await;
    // The PM is full, so the first is refused, and so is its repeat.
    assert_eq!((s1, s2), (409, 409), "{op1} {op2}");
    let (s, _, _) = call(&b, Some(ADMIN), "DELETE", "/v1/pms/pmfull?drain=true", None).await;
    assert_eq!(s, 409);
    let (s, _, pm) = call(&b, Some(ADMIN), "GET", "/v1/pms/pmfull", None).await;
    assert_eq!((s, pm["draining"].as_bool()), (200, Some(true)));

    // Pages of operations, then a restart that keeps every record and token.
    let (_, _, p1) = call(&b, Some(&a), "GET", "/v1/operations?limit=3", None).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 3, "{p1}");
    let marker = p1["next_marker"].as_str().unwrap().to_owned();
    let (_, _, p2) = call(
        &b,
        Some(&a),
        "GET",
        &format!("/v1/operations?limit=3&marker={marker}"),
        None,
    )
    .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1, "{p2}");
    assert!(p2.get("next_marker").is_none(), "{p2}");
    for op in p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["items"].as_array().unwrap())
    {
        let at = format!("/v1/operations/{}", op["id"].as_str().unwrap());
        wait_operation(&b, &a, &at, Duration::from_secs(30)).await;
    }
    let (_, _, nodes_before) = call(&b, Some(&a), "GET", "/v1/nodes", None).await;
    broker.shut().await;
    let broker = start_broker(&config).await;
    let b = broker.base.clone();
    let (s, _, nodes_after) = call(&b, Some(&a), "GET", "/v1/nodes", None).await;
    assert_eq!(
        s, 200,
        "the provider's token survives a restart: {nodes_after}"
    );
    assert_eq!(nodes_before, nodes_after);
    let (_, _, pm) = call(&b, Some(ADMIN), "GET", "/v1/pms/pmfull", None).await;
    assert_eq!(
        (pm["used"]["vcpus"].as_u64(), pm["draining"].as_bool()),
        (Some(8), Some(true))
    );
    broker.shut().await;
}

/// A VI the broker creates lists the broker's `haas_gateways` in the
/// controller: the operator's MACs the HaaS gateway reports live behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vi_is_created_with_the_haas_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = HostEntry {
        name: "gw1".into(),
        underlay_ip: "192.0.2.1".parse().unwrap(),
        ovsdb: "tcp:192.0.2.1:6640".into(),
        controller: "tcp:127.0.0.1:6653".into(),
        role: HostRole::Gateway,
    };
    let controller = start_controller(dir.path(), vec![gateway]);
    let mut config = broker_config(dir.path(), controller.api_addr());
    config.haas_gateways = vec!["gw1".into()];
    let broker = start_broker(&config).await;
    let b = broker.base.as_str();
    let (_, a) = provider(b, "acme").await;
    let body = json!({"name": "net", "gateway": "203.0.113.7", "vlans": {"first": 100, "last": 199},
        "addressing": {"mode": "dhcp"}});
    let (s, _, vi) = call(b, Some(&a), "POST", "/v1/vis", Some(body)).await;
    assert_eq!(s, 201, "{vi}");
    let key = vi["tunnel_key"].as_u64().unwrap();
    let ctl_vi = controller.get_json(&format!("/v1/vis/{key}")).unwrap();
    assert_eq!(ctl_vi["gateways"], json!(["gw1"]), "{ctl_vi}");
    broker.stop.cancel();
}

/// A VI `name` of the provider of `token`, its nodes on DHCP.
async fn dhcp_vi(b: &str, token: &str, name: &str) -> Value {
    let body = json!({"name": name, "gateway": "203.0.113.8",
        "vlans": {"first": 100, "last": 199}, "addressing": {"mode": "dhcp"}});
    let (s, _, vi) = call(b, Some(token), "POST", "/v1/vis", Some(body)).await;
    assert_eq!(s, 201, "{vi}");
    vi
}

/// A reader of `GET /v1/events`: the events (name, data) read so far.
struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

impl EventStream {
    async fn open(base: &str, token: Option<&str>) -> Result<Self, (u16, Value)> {
        let mut req = reqwest::Client::new().get(format!("{base}/v1/events"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        if resp.status() != 200 {
            let s = resp.status().as_u16();
            return Err((s, resp.json().await.unwrap()));
        }
        assert_eq!(
            resp.headers()[reqwest::header::CONTENT_TYPE],
            "text/event-stream"
        );
        Ok(Self {
            resp,
            buf: String::new(),
        })
    }

    /// The events that arrive within `within`, until one `until` accepts.
    async fn read(
        &mut self,
        within: Duration,
        until: impl Fn(&str, &Value) -> bool,
    ) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let v: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(v["type"].as_str(), Some(name.as_str()), "{v}");
                let done = until(&name, &v);
                out.push((name, v));
                if done {
                    return out;
                }
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                Ok(other) => panic!("the stream ended: {other:?}"),
                Err(_) => return out,
            }
        }
    }
}

/// The change stream shows a provider its own nodes, VIs and operations as
/// they change, an admin everyone's, another provider nothing of them, and
/// no one without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_stream_shows_each_provider_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start_controller(dir.path(), Vec::new());
    let broker = start_broker(&broker_config(dir.path(), controller.api_addr())).await;
    let b = broker.base.as_str();
    let pm_ns = FakePmNetns::new();
    let (a_id, a) = provider(b, "acme").await;
    let (g_id, g) = provider(b, "globex").await;
    register_pm(b, "pmx", 8, &pm_ns.0, dir.path()).await;

    let (s, p) = EventStream::open(b, None).await.err().unwrap();
    assert_eq!(s, 401, "{p}");
    let (s, p) = EventStream::open(b, Some("iris.tk-000000000000.nope"))
        .await
        .err()
        .unwrap();
    assert_eq!(s, 401, "{p}");
    let mut acme = EventStream::open(b, Some(&a)).await.unwrap();
    let mut globex = EventStream::open(b, Some(&g)).await.unwrap();
    let mut admin = EventStream::open(b, Some(ADMIN)).await.unwrap();

    // acme: a VI, a node whose driver fails (building, then error), its
    // operation (running, then failed), another VI made and deleted.
    small_flavor(b, &a).await;
    let (s, _, vi) = call(
        b,
        Some(&a),
        "POST",
        "/v1/vis",
        Some(json!({"name": "net",
        "gateway": "203.0.113.7", "vlans": {"first": 100, "last": 199},
        "addressing": {"mode": "static_pool", "cidr": "10.1.1.0/24"}})),
    )
    .await;
    assert_eq!(s, 201, "{vi}");
    let (s, h, op) = call(
        b,
        Some(&a),
        "POST",
        "/v1/nodes",
        Some(json!({"vi": vi["id"], "flavor": "c1", "count": 1})),
    )
    .await;
    assert_eq!(s, 202, "{op}");
    let at = h[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    let op = wait_operation(b, &a, &at, Duration::from_secs(30)).await;
    assert_eq!(op["status"], "failed", "{op}");
    // A VI made and deleted (a node the fake PM holds cannot be deleted).
    let spare = dhcp_vi(b, &a, "spare").await;
    let (s, _, p) = call(
        b,
        Some(&a),
        "DELETE",
        &format!("/v1/vis/{}", spare["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 204, "{p}");

    let removed = |n: &str, v: &Value| n == "vi" && v["change"] == "removed";
    let seen = acme.read(Duration::from_secs(10), removed).await;
    let names: Vec<String> = seen
        .iter()
        .map(|(n, v)| match n.as_str() {
            "node" => format!(
                "node {} {}",
                v["change"].as_str().unwrap(),
                v["node"]["state"].as_str().unwrap()
            ),
            "operation" => format!(
                "operation {} {}",
                v["operation"]["kind"].as_str().unwrap(),
                v["operation"]["status"].as_str().unwrap()
            ),
            _ => format!("{n} {}", v["change"].as_str().unwrap()),
        })
        .collect();
    let want = [
        "vi updated",
        "operation create_nodes running",
        "node updated building",
        "node updated error",
        "operation create_nodes failed",
        "vi updated",
        "vi removed",
    ];
    let mut at_want = want.iter().peekable();
    for n in &names {
        if at_want.peek().is_some_and(|w| *w == n) {
            at_want.next();
        }
    }
    assert!(
        at_want.peek().is_none(),
        "acme saw {names:?}, in order wanting {want:?}"
    );
    assert!(seen.iter().all(|(_, v)| {
        [
            &v["vi"]["provider"],
            &v["node"]["provider"],
            &v["operation"]["provider"],
        ]
        .iter()
        .any(|p| **p == a_id)
    }));
    // The admin sees acme's changes too.
    let seen = admin.read(Duration::from_secs(10), removed).await;
    assert!(
        seen.iter()
            .any(|(n, v)| n == "vi" && v["vi"]["id"] == vi["id"]),
        "{seen:?}"
    );
    // globex sees nothing of acme's: the first event it reads is its own VI.
    let gvi = dhcp_vi(b, &g, "net").await;
    let seen = globex.read(Duration::from_secs(10), |n, _| n == "vi").await;
    assert_eq!(seen.len(), 1, "globex saw {seen:?}");
    assert_eq!(
        (&seen[0].1["vi"]["id"], &seen[0].1["vi"]["provider"]),
        (&gvi["id"], &json!(g_id))
    );
    // And acme nothing of globex's.
    let seen = acme.read(Duration::from_millis(500), |_, _| false).await;
    assert!(seen.is_empty(), "acme saw {seen:?}");
    drop((acme, globex, admin));
}
