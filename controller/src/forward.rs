//! The API of a standby replica: reads are answered here, from the view
//! `replica.rs` keeps current; a write is forwarded to the leader and its
//! answer returned as it is, so that a client needs to know only one
//! replica and keeps its token (a redirect to another port loses the
//! `Authorization` header in most HTTP clients). Nothing of a write is
//! ever applied on a standby: when no replica leads (an election under
//! way) or the leader does not answer, the write gets a 503 naming the
//! leader, and the client retries.
//!
//! A leader whose API speaks HTTPS (`[api_tls]`) is reached over HTTPS
//! when `[cluster] api_ca` names the CA the replicas' API certificates
//! chain to: the standby trusts that CA alone, so a write and its token go
//! to no one else. Without `api_ca` the leader is named in a 307 redirect
//! instead, which a client follows with its token again (`curl
//! --location-trusted`).

use crate::api::Problem;
use crate::config::ClusterConfig;
use crate::replica::LeaderView;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Set on a forwarded request: a replica that gets one while it does not
/// lead answers 503 rather than forward it again.
pub const FORWARDED_BY: &str = "iris-forwarded-by";

/// The largest body forwarded; the API takes none larger.
const MAX_BODY: usize = 64 << 20;

/// How long the leader may take to answer a forwarded write.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the middleware needs.
#[derive(Debug, Clone)]
pub struct Forwarder {
    me: String,
    view: watch::Receiver<LeaderView>,
    apis: Arc<BTreeMap<String, String>>,
    client: reqwest::Client,
    /// Whether `client` trusts the replicas' API CA (`[cluster] api_ca`).
    https: bool,
}

impl Forwarder {
    pub fn new(cluster: &ClusterConfig, view: watch::Receiver<LeaderView>) -> Self {
        let (client, https) = forwarding_client(cluster.api_ca.as_deref());
        Self {
            me: cluster.name.clone(),
            view,
            apis: Arc::new(
                cluster
                    .replicas
                    .iter()
                    .map(|r| (r.name.clone(), r.api.clone()))
                    .collect(),
            ),
            client,
            https,
        }
    }
}

/// The client writes are forwarded with, and whether it may forward to
/// an HTTPS leader: only trusting `ca`, and only when that loaded (the
/// configuration was checked with the same call).
fn forwarding_client(ca: Option<&std::path::Path>) -> (reqwest::Client, bool) {
    // The API's own redirects are the client's to follow.
    let builder = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
    };
    if let Some(ca) = ca {
        let built = crate::http_client::trusting(builder(), Some(ca))
            .and_then(|b| b.build().map_err(|e| crate::http_client::error_text(&e)));
        match built {
            Ok(client) => return (client, true),
            Err(e) => tracing::warn!("writes to an HTTPS leader are redirected: {e}"),
        }
    }
    (builder().build().unwrap_or_default(), false)
}

/// `router` with its writes forwarded to the leader while this replica
/// does not lead.
pub fn writes_to_leader(router: axum::Router, forwarder: Forwarder) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(forwarder, forward))
}

fn reads(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unavailable(detail: String) -> Response {
    with_retry_after(Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail).into_response())
}

fn with_retry_after(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Axum middleware: see the module documentation.
pub async fn forward(State(f): State<Forwarder>, req: Request, next: Next) -> Response {
    let view = f.view.borrow().clone();
    if reads(req.method()) || view.me {
        return next.run(req).await;
    }
    let what = format!("{} {}", req.method(), req.uri().path());
    if let Some(by) = req.headers().get(FORWARDED_BY) {
        let by = by.to_str().unwrap_or("?");
        return unavailable(format!(
            "{what} was forwarded by replica {by} to {}, which does not lead either (the \
             leadership is changing hands); nothing was changed: retry in a moment",
            f.me
        ));
    }
    if let (None, Some(why)) = (&view.leader, &view.unavailable) {
        // What a lone controller answers under the same loss.
        let refused = crate::control::CallError::StoreUnavailable(format!(
            "the etcd store is unavailable, so the change was not made: {why}; no replica \
             leads without etcd's quorum, and {what} was not applied"
        ));
        return with_retry_after(Problem::from(refused).into_response());
    }
    let Some((leader, base)) = view
        .leader
        .as_ref()
        .and_then(|l| Some((l.clone(), f.apis.get(l)?.clone())))
    else {
        return unavailable(format!(
            "no replica leads right now (an election is under way, or etcd is out of reach); \
             {what} was not applied: retry in a few seconds"
        ));
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let url = format!("{base}{path}");
    if base.starts_with("https://") && !f.https {
        let mut r = Problem::new(
            StatusCode::TEMPORARY_REDIRECT,
            format!(
                "replica {} is a standby; replica {leader} leads: send {what} to {url}",
                f.me
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&url) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                format!("the body of {what} could not be read: {e}"),
            )
            .into_response()
        }
    };
    let mut request = f.client.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::CONNECTION {
            request = request.header(name, value);
        }
    }
    request = request.header(FORWARDED_BY, f.me.as_str());
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => {
            return unavailable(format!(
                "replica {} is a standby and forwards writes to the leader, {leader} at {base}, \
                 which did not answer ({}); whether {what} was applied is unknown if the \
                 connection broke after sending: read it back, or retry (every write of the API \
                 is idempotent)",
                f.me,
                crate::http_client::error_text(&e)
            ))
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return unavailable(format!(
                "the leader {leader} answered {what} with {status} but its body was cut ({e}): \
                 read the result back"
            ))
        }
    };
    let mut r = Response::new(axum::body::Body::from(bytes));
    *r.status_mut() = status;
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
            && name != header::CONNECTION
        {
            r.headers_mut().append(name, value.clone());
        }
    }
    r
}

#[cfg(test)]
mod tests;
