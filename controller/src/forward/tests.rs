//! The standby's API: reads here, writes to the leader or refused.

use super::*;
use crate::config::Replica;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::routing::get;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;

fn cluster(leader_api: &str) -> ClusterConfig {
    ClusterConfig {
        name: "ctl1".into(),
        lease_ttl: Duration::from_secs(2),
        replicas: vec![
            Replica {
                name: "ctl0".into(),
                openflow: "tcp:127.0.0.1:6653".into(),
                api: leader_api.into(),
            },
            Replica {
                name: "ctl1".into(),
                openflow: "tcp:127.0.0.1:6654".into(),
                api: "http://127.0.0.1:1".into(),
            },
        ],
        api_ca: None,
    }
}

/// This replica's own API, counting what it handles, behind the
/// forwarding layer as `view` says.
fn standby(leader_api: &str, view: LeaderView) -> (axum::Router, Arc<AtomicUsize>) {
    standby_of(cluster(leader_api), view)
}

fn standby_of(cluster: ClusterConfig, view: LeaderView) -> (axum::Router, Arc<AtomicUsize>) {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let local = axum::Router::new().route(
        "/v1/x",
        get(|| async { "local" }).put(move || {
            h.fetch_add(1, Ordering::Relaxed);
            async { "local" }
        }),
    );
    let (_tx, rx) = watch::channel(view);
    // The sender may go: the receiver keeps the last view.
    let router = writes_to_leader(local, Forwarder::new(&cluster, rx));
    (router, handled)
}

async fn send(
    router: axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router
        .oneshot(req.body(Body::from("{\"a\":1}")).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// What the echoing leader answers: the request as it got it.
async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let line = format!(
        "{} {} auth={} by={}",
        parts.method,
        parts.uri,
        h("authorization"),
        h(FORWARDED_BY)
    );
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    (
        StatusCode::CREATED,
        [("x-leader", "ctl0")],
        format!("{line} body={}", String::from_utf8_lossy(&body)),
    )
        .into_response()
}

/// A leader on loopback that answers each request with what it got.
async fn echoing_leader() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// [`echoing_leader`] over HTTPS, served as the controller serves its API,
/// with a certificate for `localhost` from `pki`.
async fn echoing_https_leader(pki: &iris_testbed::pki::Pki) -> String {
    let files = pki.issue("localhost").unwrap();
    let tls = crate::tls::api_server_config(&files.private_key, &files.certificate).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(crate::api_server::serve_with_tls(
        listener,
        app,
        crate::api_server::ApiLimits::default(),
        16,
        Some(tls),
        tokio_util::sync::CancellationToken::new(),
    ));
    format!("https://localhost:{port}")
}

fn led_by(leader: &str) -> LeaderView {
    LeaderView {
        me: false,
        leader: Some(leader.into()),
        unavailable: None,
    }
}

#[tokio::test]
async fn a_write_on_a_standby_reaches_the_leader_with_its_token_and_is_not_applied_here() {
    let leader = echoing_leader().await;
    let (router, handled) = standby(&leader, led_by("ctl0"));
    let (status, headers, body) = send(
        router.clone(),
        "PUT",
        "/v1/x?cascade=true",
        &[("authorization", "Bearer t0k3n")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body,
        "PUT /v1/x?cascade=true auth=Bearer t0k3n by=ctl1 body={\"a\":1}"
    );
    assert_eq!(headers.get("x-leader").unwrap(), "ctl0");
    assert_eq!(handled.load(Ordering::Relaxed), 0, "applied on the standby");
    // Reads are answered here.
    let (status, _, body) = send(router, "GET", "/v1/x", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "local"));
}

#[tokio::test]
async fn without_a_leader_within_reach_a_write_gets_503_naming_why_and_changes_nothing() {
    // No one leads.
    let (router, handled) = standby("http://127.0.0.1:9", LeaderView::default());
    let (status, headers, body) = send(router, "PUT", "/v1/x", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert!(body.contains("no replica leads"), "{body}");
    // etcd has no quorum: said as a lone controller says it.
    let lost = LeaderView {
        unavailable: Some("etcdserver: request timed out".into()),
        ..LeaderView::default()
    };
    let (router, _) = standby("http://127.0.0.1:9", lost);
    let (status, headers, body) = send(router, "PUT", "/v1/x", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    assert!(
        body.contains("the etcd store is unavailable, so the change was not made")
            && body.contains("request timed out")
            && body.contains("answers reads"),
        "{body}"
    );
    // The leader does not answer: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (router, _) = standby(&url, led_by("ctl0"));
    let (status, _, body) = send(router, "DELETE", "/v1/x", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("ctl0") && body.contains(&url), "{body}");
    // Forwarded to a replica that does not lead either: not forwarded on.
    let leader = echoing_leader().await;
    let (router, _) = standby(&leader, led_by("ctl0"));
    let (status, _, body) = send(router, "PUT", "/v1/x", &[(FORWARDED_BY, "ctl2")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("does not lead either"), "{body}");
    assert_eq!(handled.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn given_the_api_ca_a_standby_forwards_to_an_https_leader_it_can_verify_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let ours = iris_testbed::pki::Pki::new(dir.path(), "ours").unwrap();
    let theirs = iris_testbed::pki::Pki::new(dir.path(), "theirs").unwrap();
    let leader = echoing_https_leader(&ours).await;
    let trusting = |ca: &iris_testbed::pki::Pki| ClusterConfig {
        api_ca: Some(ca.ca_certificate.clone()),
        ..cluster(&leader)
    };
    let (router, handled) = standby_of(trusting(&ours), led_by("ctl0"));
    let (status, headers, body) =
        send(router, "PUT", "/v1/x", &[("authorization", "Bearer t0k3n")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, "PUT /v1/x auth=Bearer t0k3n by=ctl1 body={\"a\":1}");
    assert_eq!(headers.get("x-leader").unwrap(), "ctl0");
    assert_eq!(handled.load(Ordering::Relaxed), 0, "applied on the standby");
    // A leader whose certificate another CA signed gets nothing: not the
    // write, not the token.
    let (router, handled) = standby_of(trusting(&theirs), led_by("ctl0"));
    let (status, _, body) =
        send(router, "PUT", "/v1/x", &[("authorization", "Bearer t0k3n")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains(&leader) && body.to_lowercase().contains("certificate"),
        "{body}"
    );
    assert_eq!(handled.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_leader_over_https_is_named_in_a_redirect_and_a_leader_applies_its_own_writes() {
    let (router, handled) = standby("https://10.0.0.11:8443", led_by("ctl0"));
    let (status, headers, body) = send(router, "PUT", "/v1/x", &[]).await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT, "{body}");
    assert_eq!(
        headers.get(header::LOCATION).unwrap(),
        "https://10.0.0.11:8443/v1/x"
    );
    assert_eq!(handled.load(Ordering::Relaxed), 0);
    let (router, handled) = standby(
        "http://127.0.0.1:9",
        LeaderView {
            me: true,
            leader: Some("ctl1".into()),
            unavailable: None,
        },
    );
    let (status, _, body) = send(router, "PUT", "/v1/x", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "local"));
    assert_eq!(handled.load(Ordering::Relaxed), 1);
}
