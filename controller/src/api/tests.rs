//! The API over a running control loop, request by request, without a
//! socket.

use super::*;
use crate::control::{Control, ManagedHost};
use crate::metrics::Metrics;
use crate::model::{Host, HostRole, Vi};
use axum::body::Body as HttpBody;
use axum::http::Method;
use http_body_util::BodyExt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn app() -> Router {
    app_storing_to(None)
}

/// The API over a control loop that commits to `store`.
fn app_storing_to(store: Option<Box<dyn crate::store::Store + Send>>) -> Router {
    app_with(store, crate::control::Configured::default())
}

/// The API over a control loop that commits to `store` and takes what
/// `configured` names as defined by the configuration file.
fn app_with(
    store: Option<Box<dyn crate::store::Store + Send>>,
    configured: crate::control::Configured,
) -> Router {
    app_holding_to(store, configured, None)
}

/// [`app_with`], holding hosts to `transport` where given.
fn app_holding_to(
    store: Option<Box<dyn crate::store::Store + Send>>,
    configured: crate::control::Configured,
    transport: Option<crate::config::OvsdbTransport>,
) -> Router {
    let hosts = [
        Host {
            name: HostName("pm1".into()),
            underlay_ip: [10, 0, 0, 1].into(),
            role: HostRole::Compute,
            ovsdb_remote: "unix:/run/pm1.sock".into(),
            datapath_id: 1,
        },
        Host {
            name: HostName("gw".into()),
            underlay_ip: [10, 0, 0, 9].into(),
            role: HostRole::Gateway,
            ovsdb_remote: "unix:/run/gw.sock".into(),
            datapath_id: 9,
        },
    ]
    .map(|host| ManagedHost {
        host,
        controller: None,
    })
    .to_vec();
    let vis = vec![Vi {
        id: ViId(1),
        name: "acme".into(),
        gre_key: 1001,
        gateways: vec![HostName("gw".into())],
    }];
    let parts = Control::start(hosts, vis, Registry::new(), Arc::new(Metrics::default()));
    let (mut control, inputs, senders) = (parts.control, parts.inputs, parts.senders);
    if let Some(store) = store {
        control.persist_to(store);
    }
    control.keep_configured(configured);
    // pm1 reports one VM port of VI 1.
    control.on_topology_event(crate::control::TopologyEvent::Ports {
        host: HostName("pm1".into()),
        vm_ports: vec![crate::control::VmPortSeen {
            name: "vnet0".into(),
            ofport: 5,
            vi: ViId(1),
            attached_mac: None,
        }],
        tunnels: vec![],
    });
    // The senders stay alive with the task so the loop keeps running.
    tokio::spawn(async move {
        let _senders = senders;
        let _ = control.run(inputs, CancellationToken::new()).await;
    });
    match transport {
        Some(t) => router(parts.handle.with_ovsdb_transport(t)),
        None => router(parts.handle),
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    /// The `Allow` header, when there is one.
    allow: String,
    json: serde_json::Value,
    text: String,
}

async fn call(app: &Router, method: Method, uri: &str, body: Option<&str>) -> Reply {
    call_as(app, None, method, uri, body).await
}

/// `call` with an `Authorization` header's value.
async fn call_as(
    app: &Router,
    authorization: Option<&str>,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> Reply {
    let method_name = method.to_string();
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(HttpBody::from(body.unwrap_or("").to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let text_of = |name| {
        resp.headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let content_type = text_of(header::CONTENT_TYPE);
    let allow = text_of(header::ALLOW);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    // Every answer these tests see is one the OpenAPI document allows.
    if let Err(e) =
        openapi::tests::check_exchange(&method_name, uri, status.as_u16(), &content_type, &text)
    {
        panic!("{e}");
    }
    Reply {
        status,
        content_type,
        allow,
        json,
        text,
    }
}

fn assert_problem(r: &Reply, status: StatusCode, pointer: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.json["status"], status.as_u16());
    assert!(
        r.json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        r.text
    );
    if let Some(p) = pointer {
        let pointers: Vec<&str> = r.json["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["pointer"].as_str()).collect())
            .unwrap_or_default();
        assert!(pointers.contains(&p), "no pointer {p:?} in {}", r.text);
    }
}

const PM2: &str =
    r#"{"name":"pm2","underlay_ip":"10.0.0.2","role":"compute","ovsdb":"tcp:10.0.0.2:6640"}"#;

#[tokio::test]
async fn hosts_can_be_listed_added_read_and_removed() {
    let app = app();
    let r = call(&app, Method::GET, "/v1/hosts", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json.as_array().unwrap().len(), 2);
    assert_eq!(r.json[0]["name"], "gw");
    assert_eq!(r.json[0]["openflow_connected"], false);

    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(PM2)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["datapath_id"].as_str().unwrap().len(), 16);
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(PM2)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&app, Method::GET, "/v1/hosts/pm2", None).await;
    assert_eq!(r.json["ovsdb"], "tcp:10.0.0.2:6640");
    let r = call(&app, Method::DELETE, "/v1/hosts/pm2", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&app, Method::GET, "/v1/hosts/pm2", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn a_change_the_store_refuses_is_not_reported_as_made() {
    let app = app_storing_to(Some(Box::new(crate::store::FullDisk)));
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(PM2)).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, None);
    // The controller stopped rather than run on with what it cannot keep.
    let r = call(&app, Method::GET, "/v1/hosts", None).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, None);
}

#[tokio::test]
async fn a_body_with_a_typo_is_refused_with_a_pointer() {
    let app = app();
    let typo = PM2.replace("underlay_ip", "underlay");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&typo)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/underlay"));
    let detail = r.json["detail"].as_str().unwrap();
    assert!(detail.contains("unknown field `underlay`"), "{detail}");
    assert!(detail.contains("`underlay_ip`"), "{detail}");
}

#[tokio::test]
async fn a_value_of_the_wrong_kind_points_at_its_field() {
    let app = app();
    let bad = PM2.replace("\"compute\"", "\"computer\"");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&bad)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/role"));
    let bad = PM2.replace("10.0.0.2\"", "10.0.0.256\"");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&bad)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/underlay_ip"));
}

#[tokio::test]
async fn broken_json_and_wrong_media_types_are_refused() {
    let app = app();
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some("{\"name\": ")).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("#/name"));
    assert!(r.text.contains("column 9"), "{}", r.text);
    let req = axum::http::Request::builder()
        .method(Method::PUT)
        .uri("/v1/hosts/pm2")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(HttpBody::from(PM2))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_host_is_held_to_the_ovsdb_transports_the_file_allows() {
    let strict = crate::config::OvsdbTransport {
        tls: true,
        plain_tcp: false,
    };
    let app = app_holding_to(None, Default::default(), Some(strict));
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(PM2)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/ovsdb"));
    assert!(r.text.contains("plain_ovsdb = true"), "{}", r.text);
    let r = call(&app, Method::GET, "/v1/hosts/pm2", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing was added");
    let ssl = PM2.replace("tcp:", "ssl:");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&ssl)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let no_tls = crate::config::OvsdbTransport {
        tls: false,
        plain_tcp: true,
    };
    let app = app_holding_to(None, Default::default(), Some(no_tls));
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&ssl)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/ovsdb"));
    assert!(r.text.contains("no [tls] table"), "{}", r.text);
}

/// A host added through the API is held to the pairing of passive targets
/// with the listener that a configured one is: the controller would
/// otherwise dial a switch that listens in plain TCP while it only speaks
/// TLS, or the other way round.
#[tokio::test]
async fn a_host_passive_target_pairs_with_the_listener() {
    let with = |target: &str| {
        PM2.replace("\"role\"", &format!("\"controller\":\"{target}\",\"role\""))
            .replace("tcp:10.0.0.2:6640", "ssl:10.0.0.2:6640")
    };
    let strict = crate::config::OvsdbTransport {
        tls: true,
        plain_tcp: false,
    };
    let app = app_holding_to(None, Default::default(), Some(strict));
    let r = call(
        &app,
        Method::PUT,
        "/v1/hosts/pm2",
        Some(&with("ptcp:6653:10.0.0.2")),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/controller"));
    assert!(r.text.contains("write pssl:PORT:IP"), "{}", r.text);
    let r = call(&app, Method::GET, "/v1/hosts/pm2", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing was added");
    let r = call(
        &app,
        Method::PUT,
        "/v1/hosts/pm2",
        Some(&with("pssl:6653:10.0.0.2")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let plain = crate::config::OvsdbTransport {
        tls: false,
        plain_tcp: true,
    };
    let app = app_holding_to(None, Default::default(), Some(plain));
    let body = with("pssl:6653:10.0.0.2").replace("ssl:10.0.0.2:6640", "tcp:10.0.0.2:6640");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&body)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/controller"));
    assert!(r.text.contains("write ptcp:PORT:IP"), "{}", r.text);
}

#[tokio::test]
async fn semantic_errors_name_the_field_and_the_fix() {
    let app = app();
    let bad = PM2.replace("tcp:10.0.0.2:6640", "10.0.0.2:6640");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&bad)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/ovsdb"));
    assert!(
        r.text.contains("unix:PATH, tcp:IP:PORT or ssl:IP:PORT"),
        "{}",
        r.text
    );
    // The path and the body must name the same host.
    let r = call(&app, Method::PUT, "/v1/hosts/pm3", Some(PM2)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/name"));
    // Clashing with another host is a conflict.
    let clash = PM2.replace("10.0.0.2\"", "10.0.0.1\"");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&clash)).await;
    assert_problem(&r, StatusCode::CONFLICT, None);
    assert!(r.json["detail"].as_str().unwrap().contains("pm1"));
}

#[tokio::test]
async fn vis_round_trip_and_refuse_bad_ids() {
    let app = app();
    let r = call(&app, Method::GET, "/v1/vis/1", None).await;
    assert_eq!(r.json["gateways"][0], "gw");
    let body = r#"{"id":2,"name":"globex","gre_key":1002}"#;
    let r = call(&app, Method::PUT, "/v1/vis/2", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = call(&app, Method::GET, "/v1/vis", None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 2);
    let r = call(&app, Method::GET, "/v1/vis/two", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("path:id"));
    let r = call(&app, Method::PUT, "/v1/vis/3", Some(body)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/id"));
    let zero_key = r#"{"id":3,"name":"x","gre_key":0}"#;
    let r = call(&app, Method::PUT, "/v1/vis/3", Some(zero_key)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/gre_key"));
    let r = call(&app, Method::DELETE, "/v1/vis/2", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn registry_entries_are_put_read_filtered_and_deleted() {
    let app = app();
    let uri = "/v1/registry/1/100/52:54:00:00:00:01";
    let body = r#"{"location":{"kind":"gateway","gateway":"gw"},"ips":["10.1.1.1"]}"#;
    let r = call(&app, Method::PUT, uri, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["origin"], "api");
    assert_eq!(r.json["vlan"], 100);
    assert_eq!(r.json["location"]["gateway"], "gw");
    let r = call(&app, Method::GET, uri, None).await;
    assert_eq!(r.json["ips"][0], "10.1.1.1");
    let r = call(&app, Method::GET, "/v1/registry?vi=1", None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    let r = call(&app, Method::GET, "/v1/registry?vi=2", None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 0);
    let r = call(&app, Method::GET, "/metrics", None).await;
    assert!(
        r.text.contains("iris_registry_entries{kind=\"mac\"} 1"),
        "{}",
        r.text
    );
    let r = call(&app, Method::DELETE, uri, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&app, Method::DELETE, uri, None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn registry_paths_and_bodies_are_checked() {
    let app = app();
    let r = call(
        &app,
        Method::GET,
        "/v1/registry/1/4095/52:54:00:00:00:01",
        None,
    )
    .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("path:vlan"));
    let r = call(
        &app,
        Method::GET,
        "/v1/registry/1/untagged/52:54:00:00:00",
        None,
    )
    .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("path:mac"));
    let uri = "/v1/registry/1/untagged/52:54:00:00:00:01";
    // Behind a host that is not the VI's gateway.
    let r = call(
        &app,
        Method::PUT,
        uri,
        Some(r#"{"location":{"kind":"gateway","gateway":"pm1"}}"#),
    )
    .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("#/location/gateway"),
    );
    // A location of an unknown kind, and a stray field inside one.
    let r = call(
        &app,
        Method::PUT,
        uri,
        Some(r#"{"location":{"kind":"cloud"}}"#),
    )
    .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("#/location/kind"),
    );
    let r = call(
        &app,
        Method::PUT,
        uri,
        Some(r#"{"location":{"kind":"port","host":"pm1","ofport":3,"vlan":5}}"#),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, None);
    assert!(r.text.contains("unknown field `vlan`"), "{}", r.text);
    let r = call(&app, Method::PUT, uri, Some(r#"{"ips":["10.1.1"]}"#)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/ips/0"));
    // A multicast MAC cannot be an entry.
    let r = call(
        &app,
        Method::PUT,
        "/v1/registry/1/untagged/01:00:5e:00:00:01",
        Some("{}"),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("path:mac"));
    // An unknown VI.
    let r = call(
        &app,
        Method::PUT,
        "/v1/registry/7/untagged/02:00:00:00:00:01",
        Some("{}"),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("path:vi"));
}

#[tokio::test]
async fn unknown_query_parameters_and_routes_are_refused() {
    let app = app();
    let r = call(&app, Method::GET, "/v1/vm-ports?hots=pm1", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("query:hots"));
    assert!(r.text.contains("`host`"), "names what is known: {}", r.text);
    let r = call(&app, Method::GET, "/v1/vm-ports?vi=one", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("query:vi"));
    let r = call(&app, Method::GET, "/v1/registry?vi=-1", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("query:vi"));
    let r = call(&app, Method::GET, "/v1/registry?vi=1&vi=2", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("query:vi"));
    let r = call(&app, Method::GET, "/v1/vm-ports?vi=2", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, serde_json::json!([]));
    let r = call(&app, Method::GET, "/v2/nothing", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let app = app();
    let r = call(&app, Method::GET, "/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["status"], "ok");
    assert_eq!(r.json["hosts"], 2);
    let r = call(&app, Method::GET, "/metrics", None).await;
    assert!(r.content_type.starts_with("application/openmetrics-text"));
    assert!(r.text.contains("iris_switches_connected 0"), "{}", r.text);
}

#[tokio::test]
async fn events_stream_registry_changes() {
    let app = app();
    let req = axum::http::Request::builder()
        .uri("/v1/events")
        .body(HttpBody::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let put = call(
        &app,
        Method::PUT,
        "/v1/registry/1/untagged/02:00:00:00:00:07",
        Some(r#"{"ips":["10.9.9.9"]}"#),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let mut seen = String::new();
    while !seen.contains("10.9.9.9") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(seen.contains("event: registry"), "{seen}");
    assert!(seen.contains("\"change\":\"added\""), "{seen}");
    assert!(seen.contains("\"mac\":\"02:00:00:00:00:07\""), "{seen}");
}

#[tokio::test]
async fn a_method_a_route_does_not_take_gets_405_with_the_ones_it_does() {
    let app = app();
    for (uri, allowed) in [
        ("/healthz", &["GET"][..]),
        ("/metrics", &["GET"]),
        ("/v1/hosts", &["GET"]),
        ("/v1/hosts/pm1", &["GET", "PUT", "DELETE"]),
        ("/v1/vis", &["GET"]),
        ("/v1/vis/1", &["GET", "PUT", "DELETE"]),
        ("/v1/vis/1/seed", &["POST"]),
        ("/v1/vm-ports", &["GET"]),
        ("/v1/vm-ports/pm1/vnet0", &["GET"]),
        ("/v1/registry", &["GET"]),
        (
            "/v1/registry/1/untagged/02:00:00:00:00:01",
            &["GET", "PUT", "DELETE"],
        ),
        ("/v1/events", &["GET"]),
    ] {
        let r = call(&app, Method::PATCH, uri, None).await;
        assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED, None);
        let detail = r.json["detail"].as_str().unwrap();
        for m in allowed {
            assert!(detail.contains(m), "{uri}: {detail}");
        }
        for m in ["GET", "PUT", "DELETE", "POST"] {
            if !allowed.contains(&m) {
                assert!(!detail.contains(m), "{uri} does not take {m}: {detail}");
            }
        }
        let mut header: Vec<&str> = r.allow.split(',').filter(|m| *m != "HEAD").collect();
        header.sort_unstable();
        let mut want = allowed.to_vec();
        want.sort_unstable();
        assert_eq!(header, want, "{uri}: Allow");
    }
}

#[tokio::test]
async fn path_parameters_that_do_not_decode_are_refused_with_a_pointer() {
    let app = app();
    let r = call(&app, Method::GET, "/v1/hosts/%FF%FE", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("path:name"));
}

#[tokio::test]
async fn clashes_and_unknown_things_point_at_where() {
    let app = app();
    let r = call(
        &app,
        Method::PUT,
        "/v1/hosts/pm2",
        Some(&PM2.replace("10.0.0.2\"", "10.0.0.1\"")),
    )
    .await;
    assert_problem(&r, StatusCode::CONFLICT, Some("#/underlay_ip"));
    let same_dpid = PM2.replace("}", ",\"datapath_id\":\"0000000000000001\"}");
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&same_dpid)).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("#/datapath_id"));
    let demoted =
        r#"{"name":"gw","underlay_ip":"10.0.0.9","role":"compute","ovsdb":"unix:/run/gw.sock"}"#;
    let r = call(&app, Method::PUT, "/v1/hosts/gw", Some(demoted)).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("#/role"));
    let r = call(&app, Method::DELETE, "/v1/hosts/gw", None).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("path:name"));
    for (body, pointer) in [
        (r#"{"id":2,"name":"globex","gre_key":1001}"#, "#/gre_key"),
        (r#"{"id":2,"name":"acme","gre_key":1002}"#, "#/name"),
        (
            r#"{"id":2,"name":"globex","gre_key":1002,"gateways":["gw","pm1"]}"#,
            "#/gateways/1",
        ),
    ] {
        let r = call(&app, Method::PUT, "/v1/vis/2", Some(body)).await;
        assert_problem(&r, StatusCode::CONFLICT, Some(pointer));
    }
    let r = call(&app, Method::GET, "/v1/hosts/nope", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:name"));
    let r = call(&app, Method::DELETE, "/v1/hosts/nope", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:name"));
    let r = call(&app, Method::GET, "/v1/vis/9", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:id"));
    let r = call(&app, Method::DELETE, "/v1/vis/9", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:id"));
    let r = call(
        &app,
        Method::GET,
        "/v1/registry/1/untagged/02:00:00:00:00:01",
        None,
    )
    .await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:mac"));
    let r = call(
        &app,
        Method::DELETE,
        "/v1/registry/1/untagged/02:00:00:00:00:01",
        None,
    )
    .await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:mac"));
}

#[tokio::test]
async fn a_vm_port_is_listed_and_read_by_host_and_name() {
    let app = app();
    let port = serde_json::json!({"host": "pm1", "name": "vnet0", "ofport": 5, "vi": 1});
    let r = call(&app, Method::GET, "/v1/vm-ports?host=pm1&vi=1", None).await;
    assert_eq!(r.json, serde_json::json!([port.clone()]));
    let r = call(&app, Method::GET, "/v1/vm-ports/pm1/vnet0", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json, port);
    let r = call(&app, Method::GET, "/v1/vm-ports/pm1/vnet9", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:name"));
    let r = call(&app, Method::GET, "/v1/vm-ports/gw/vnet0", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:name"));
}

#[tokio::test]
async fn a_vi_launched_through_the_api_is_seeded_whole_or_not_at_all() {
    let app = app();
    let vi = r#"{"id":2,"name":"globex","gre_key":1002,"gateways":["gw"]}"#;
    let r = call(&app, Method::PUT, "/v1/vis/2", Some(vi)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bad = r#"[{"mac":"01:00:5e:00:00:01","ip":"10.1.1.1"},
                  {"mac":"52:54:00:00:00:02","ip":"10.1.1.2"},
                  {"mac":"52:54:00:00:00:03","behind":"pm1"},
                  {"mac":"52:54:00:00:00:04","vlan":4095}]"#;
    let r = call(&app, Method::POST, "/v1/vis/2/seed", Some(bad)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/0/mac"));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/2/behind"));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/3/vlan"));
    let r = call(&app, Method::GET, "/v1/registry?vi=2", None).await;
    assert_eq!(r.json, serde_json::json!([]), "nothing was seeded");
    let good = r#"[{"mac":"52:54:00:00:00:01","ip":"10.1.1.1","vlan":100},
                   {"mac":"52:54:00:00:00:02","behind":"gw"}]"#;
    let r = call(&app, Method::POST, "/v1/vis/2/seed", Some(good)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["changes"], 3, "two MACs and one IP");
    let r = call(&app, Method::GET, "/v1/registry?vi=2", None).await;
    let entries = r.json.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries.iter().all(|e| e["origin"] == "seeded"),
        "{}",
        r.text
    );
    // Seeding again changes nothing.
    let r = call(&app, Method::POST, "/v1/vis/2/seed", Some(good)).await;
    assert_eq!(r.json["changes"], 0);
    let r = call(&app, Method::POST, "/v1/vis/9/seed", Some(good)).await;
    assert_problem(&r, StatusCode::NOT_FOUND, Some("path:id"));
}

/// PUT `body` as the entry `mac` of VI 1, untagged; the answer.
async fn put_entry_at(app: &Router, mac: &str, body: &str) -> Reply {
    let uri = format!("/v1/registry/1/untagged/{mac}");
    call(app, Method::PUT, &uri, Some(body)).await
}

#[tokio::test]
async fn a_host_with_entries_on_it_is_removed_only_with_them_and_when_asked() {
    let app = app();
    let at_pm1 = r#"{"location":{"kind":"port","host":"pm1","ofport":5}}"#;
    let r = put_entry_at(&app, "52:54:00:00:00:05", at_pm1).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = call(&app, Method::DELETE, "/v1/hosts/pm1", None).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("path:name"));
    assert!(
        r.text.contains("52:54:00:00:00:05") && r.text.contains("cascade=true"),
        "names what still uses the host and how to go on: {}",
        r.text
    );
    let r = call(&app, Method::GET, "/v1/hosts/pm1", None).await;
    assert_eq!(r.status, StatusCode::OK, "the host is still there");
    let r = call(&app, Method::DELETE, "/v1/hosts/pm1?cascade=yes", None).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("query:cascade"));
    let r = call(&app, Method::DELETE, "/v1/hosts/pm1?cascade=true", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = call(&app, Method::GET, "/v1/registry", None).await;
    assert_eq!(
        r.json,
        serde_json::json!([]),
        "the entry went with its host"
    );
}

#[tokio::test]
async fn a_gateway_with_entries_behind_it_leaves_its_vi_only_with_them_and_when_asked() {
    let app = app();
    let behind = r#"{"location":{"kind":"gateway","gateway":"gw"},"ips":["10.1.1.9"]}"#;
    let r = put_entry_at(&app, "52:54:00:00:00:09", behind).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let no_gateways = r#"{"id":1,"name":"acme","gre_key":1001,"gateways":[]}"#;
    let r = call(&app, Method::PUT, "/v1/vis/1", Some(no_gateways)).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("#/gateways"));
    assert!(r.text.contains("52:54:00:00:00:09"), "{}", r.text);
    let r = call(&app, Method::GET, "/v1/vis/1", None).await;
    assert_eq!(r.json["gateways"], serde_json::json!(["gw"]), "unchanged");
    // The entry can still be written as it is.
    let r = put_entry_at(&app, "52:54:00:00:00:09", behind).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = call(
        &app,
        Method::PUT,
        "/v1/vis/1?cascade=true",
        Some(no_gateways),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = call(&app, Method::GET, "/v1/registry", None).await;
    assert_eq!(
        r.json,
        serde_json::json!([]),
        "the entry went with the gateway"
    );
    // Nothing is left behind a gateway the VI does not have.
    let r = call(&app, Method::DELETE, "/v1/hosts/gw", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}

#[tokio::test]
async fn hosts_and_vis_of_the_configuration_file_are_read_only() {
    let configured = crate::control::Configured {
        hosts: [HostName("pm1".into())].into(),
        vis: [ViId(1)].into(),
    };
    let app = app_with(None, configured);
    let pm1 =
        r#"{"name":"pm1","underlay_ip":"10.0.0.11","role":"compute","ovsdb":"unix:/run/pm1.sock"}"#;
    let r = call(&app, Method::PUT, "/v1/hosts/pm1", Some(pm1)).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("path:name"));
    assert!(r.text.contains("[[host]]"), "{}", r.text);
    let r = call(&app, Method::DELETE, "/v1/hosts/pm1", None).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("path:name"));
    let acme = r#"{"id":1,"name":"acme","gre_key":1007,"gateways":["gw"]}"#;
    let r = call(&app, Method::PUT, "/v1/vis/1", Some(acme)).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("path:id"));
    assert!(r.text.contains("[[vi]]"), "{}", r.text);
    let r = call(&app, Method::DELETE, "/v1/vis/1", None).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("path:id"));
    let r = call(&app, Method::GET, "/v1/vis/1", None).await;
    assert_eq!(r.json["gre_key"], 1001, "unchanged");
    // What the API added stays the API's, and entries of a configured VI
    // are written as ever.
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(PM2)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = call(&app, Method::DELETE, "/v1/hosts/pm2", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = put_entry_at(&app, "52:54:00:00:00:01", "{}").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn reserved_port_numbers_are_not_vm_ports() {
    let app = app();
    for ofport in [0u32, 0xffff_ff00, 0xffff_fffe, u32::MAX] {
        let body = format!(r#"{{"location":{{"kind":"port","host":"pm1","ofport":{ofport}}}}}"#);
        let r = put_entry_at(&app, "52:54:00:00:00:07", &body).await;
        assert_problem(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("#/location/ofport"),
        );
    }
    let body = r#"{"location":{"kind":"port","host":"pm1","ofport":4294967039}}"#;
    let r = put_entry_at(&app, "52:54:00:00:00:07", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn an_entry_answers_only_for_unicast_addresses_and_a_bounded_number() {
    let app = app();
    for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
        let body = format!(r#"{{"ips":["10.1.1.1","{bad}"]}}"#);
        let r = put_entry_at(&app, "52:54:00:00:00:07", &body).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/ips/1"));
        assert!(r.text.contains(bad), "{}", r.text);
    }
    // A metadata service's link-local address is a VM's to answer for.
    let r = put_entry_at(&app, "52:54:00:00:00:07", r#"{"ips":["169.254.169.254"]}"#).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ips = |n: u32| {
        let list: Vec<String> = (0..n)
            .map(|i| format!("\"{}\"", Ipv4Addr::from(0x0a01_0000 + i)))
            .collect();
        format!(r#"{{"ips":[{}]}}"#, list.join(","))
    };
    let limit = crate::registry::MAX_IPS_PER_MAC as u32;
    let r = put_entry_at(&app, "52:54:00:00:00:08", &ips(limit + 1)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/ips"));
    let r = put_entry_at(&app, "52:54:00:00:00:08", &ips(limit)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // A seed row is held to the same.
    let r = call(
        &app,
        Method::POST,
        "/v1/vis/1/seed",
        Some(r#"[{"mac":"52:54:00:00:00:09","ip":"224.0.0.1"}]"#),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/0/ip"));
}

#[tokio::test]
async fn a_seed_holds_a_mac_to_the_ips_it_answers_for_already_and_the_limit() {
    let app = app();
    let entry = "/v1/registry/1/untagged/52:54:00:00:00:09";
    let seed = |from: u32, n: u32| {
        let rows: Vec<String> = (from..from + n)
            .map(|i| {
                let ip = Ipv4Addr::from(0x0a01_0000 + i);
                format!(r#"{{"mac":"52:54:00:00:00:09","ip":"{ip}"}}"#)
            })
            .collect();
        format!("[{}]", rows.join(","))
    };
    let limit = crate::registry::MAX_IPS_PER_MAC as u32;
    let half = limit / 2;
    let r = call(
        &app,
        Method::POST,
        "/v1/vis/1/seed",
        Some(&seed(0, limit + 1)),
    )
    .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(&format!("#/{limit}")),
    );
    let r = call(&app, Method::GET, entry, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing was seeded");
    let r = call(&app, Method::POST, "/v1/vis/1/seed", Some(&seed(0, half))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A second seed adds to the first: one IP past the limit in all.
    let r = call(
        &app,
        Method::POST,
        "/v1/vis/1/seed",
        Some(&seed(half, limit - half + 1)),
    )
    .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(&format!("#/{}", limit - half)),
    );
    assert!(r.text.contains(&format!("at most {limit}")), "{}", r.text);
    let r = call(&app, Method::GET, entry, None).await;
    assert_eq!(r.json["ips"].as_array().unwrap().len() as u32, half);
    // IPs the MAC has already are not counted twice.
    let r = call(&app, Method::POST, "/v1/vis/1/seed", Some(&seed(0, limit))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = call(&app, Method::GET, entry, None).await;
    assert_eq!(r.json["ips"].as_array().unwrap().len() as u32, limit);
}

#[tokio::test]
async fn an_array_is_not_taken_for_an_object_nor_the_reverse() {
    let app = app();
    // The entry first: `[]` created an empty one (201), where serde only
    // happened to refuse the host's and the VI's for their missing fields.
    for (method, uri) in [
        (Method::PUT, "/v1/registry/1/untagged/52:54:00:00:00:07"),
        (Method::PUT, "/v1/hosts/pm2"),
        (Method::PUT, "/v1/vis/2"),
    ] {
        let r = call(&app, method, uri, Some(" []")).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#"));
        assert!(r.text.contains("object"), "{}", r.text);
    }
    let r = call(&app, Method::POST, "/v1/vis/1/seed", Some("{}")).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#"));
    let r = call(&app, Method::GET, "/v1/registry", None).await;
    assert_eq!(r.json, serde_json::json!([]), "nothing was written");
}

#[tokio::test]
async fn the_event_stream_refuses_unknown_parameters() {
    let app = app();
    // A stream taken would never end: give the refusal a second.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        call(&app, Method::GET, "/v1/events?since=0", None),
    )
    .await
    .expect("refused, not streamed");
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("query:since"));
}

#[tokio::test]
async fn an_ip_another_mac_holds_is_moved_only_when_asked() {
    let app = app();
    let r = call(
        &app,
        Method::POST,
        "/v1/vis/1/seed",
        Some(r#"[{"mac":"52:54:00:00:00:01","ip":"10.1.1.1"}]"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r#"{"ips":["10.1.1.2","10.1.1.1"]}"#;
    let r = put_entry_at(&app, "52:54:00:00:00:02", body).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("#/ips/1"));
    assert!(
        r.text.contains("52:54:00:00:00:01") && r.text.contains("take_ips=true"),
        "names the holder and the way to move it: {}",
        r.text
    );
    let r = call(
        &app,
        Method::GET,
        "/v1/registry/1/untagged/52:54:00:00:00:02",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing was written");
    let uri = "/v1/registry/1/untagged/52:54:00:00:00:02?take_ips=true";
    let r = call(&app, Method::PUT, uri, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = call(
        &app,
        Method::GET,
        "/v1/registry/1/untagged/52:54:00:00:00:01",
        None,
    )
    .await;
    assert_eq!(r.json["ips"], serde_json::json!([]), "moved: {}", r.text);
}

#[tokio::test]
async fn host_and_vi_bodies_are_held_to_what_the_configuration_is() {
    let app = app();
    for bad in ["127.0.0.1", "224.0.0.1", "0.0.0.0", "255.255.255.255"] {
        let body = format!(
            r#"{{"name":"pm2","underlay_ip":"{bad}","role":"compute","ovsdb":"tcp:10.0.0.2:6640"}}"#
        );
        let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(&body)).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/underlay_ip"));
    }
    let same_db =
        r#"{"name":"pm2","underlay_ip":"10.0.0.2","role":"compute","ovsdb":"unix:/run/pm1.sock"}"#;
    let r = call(&app, Method::PUT, "/v1/hosts/pm2", Some(same_db)).await;
    assert_problem(&r, StatusCode::CONFLICT, Some("#/ovsdb"));
    assert!(r.text.contains("pm1"), "{}", r.text);
    let twice = r#"{"id":2,"name":"globex","gre_key":1002,"gateways":["gw","gw"]}"#;
    let r = call(&app, Method::PUT, "/v1/vis/2", Some(twice)).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("#/gateways/1"));
}

#[tokio::test]
async fn every_route_refuses_a_parameter_it_does_not_take() {
    let app = app();
    let entry = "/v1/registry/1/untagged/52:54:00:00:00:01";
    for (method, uri, body) in [
        (Method::GET, "/v1/hosts", None),
        (Method::GET, "/v1/hosts/pm1", None),
        (Method::PUT, "/v1/hosts/pm2", Some(PM2)),
        (Method::DELETE, "/v1/hosts/pm1", None),
        (Method::GET, "/v1/vis", None),
        (Method::GET, "/v1/vis/1", None),
        (Method::DELETE, "/v1/vis/1", None),
        (Method::POST, "/v1/vis/1/seed", Some("[]")),
        (Method::GET, "/v1/vm-ports/pm1/vnet0", None),
        (Method::PUT, entry, Some("{}")),
        (Method::GET, entry, None),
        (Method::DELETE, entry, None),
    ] {
        let uri = format!("{uri}?dry_run=true");
        let r = call(&app, method.clone(), &uri, body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, Some("query:dry_run"));
    }
    let r = call(&app, Method::GET, "/v1/vis", None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1, "nothing was changed");
    let r = call(&app, Method::GET, "/v1/hosts", None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 2, "nothing was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_right_bearer_token_nothing_is_changed_or_read() {
    let token = "t0ken-for-the-api-tests";
    let hash = crate::api_auth::parse_hash(&crate::api_auth::hash_token(token).unwrap()).unwrap();
    let app = crate::api_auth::guarded(
        app(),
        crate::api_auth::ApiAuth::new(vec![hash], crate::api_auth::default_open_routes()),
    );
    let bearer = format!("Bearer {token}");
    for auth in [
        None,
        Some("Bearer not-the-token-at-all"),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer "),
    ] {
        let r = call_as(&app, auth, Method::PUT, "/v1/hosts/pm2", Some(PM2)).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, None);
        let r = call_as(&app, auth, Method::DELETE, "/v1/vis/1", None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, None);
        // Reads of the registry need it too: they tell tenants' addresses.
        let r = call_as(&app, auth, Method::GET, "/v1/hosts", None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, None);
    }
    let r = call_as(&app, Some(&bearer), Method::GET, "/v1/hosts/pm2", None).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "nothing was added: {}",
        r.text
    );
    let r = call_as(&app, Some(&bearer), Method::GET, "/v1/vis/1", None).await;
    assert_eq!(r.status, StatusCode::OK, "nothing was removed: {}", r.text);
    // Probes and scrapers need none.
    assert_eq!(
        call(&app, Method::GET, "/healthz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::GET, "/metrics", None).await.status,
        StatusCode::OK
    );
    // The right token changes state, the scheme's case aside.
    let r = call_as(&app, Some(&bearer), Method::PUT, "/v1/hosts/pm2", Some(PM2)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let lower = format!("bearer {token}");
    let r = call_as(&app, Some(&lower), Method::GET, "/v1/hosts/pm2", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn the_open_routes_are_configurable() {
    let hash = crate::api_auth::parse_hash(
        &crate::api_auth::hash_token("another-token-for-tests").unwrap(),
    )
    .unwrap();
    let app = crate::api_auth::guarded(
        app(),
        crate::api_auth::ApiAuth::new(vec![hash], ["/metrics".to_owned()].into()),
    );
    let r = call(&app, Method::GET, "/healthz", None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, None);
    assert_eq!(
        call(&app, Method::GET, "/metrics", None).await.status,
        StatusCode::OK
    );
    // An open route is open to reading only.
    let r = call(&app, Method::POST, "/metrics", None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, None);
}
