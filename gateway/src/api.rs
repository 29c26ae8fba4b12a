//! The gateway's HTTP API (axum), on `listen`.
//!
//! | route | method | |
//! |---|---|---|
//! | `/healthz` | GET | `{"status":"ok","kind","name"}` |
//! | `/v1/status` | GET | peers, VIs, MTU policy, outbox, flapping MACs |
//! | `/metrics` | GET | OpenMetrics text, `iris_gateway_*` |
//! | `/v1/peer/macs` | POST | a peer's MAC report (haas kind; the peer's bearer token) |
//! | `/v1/vis` | GET | every VI, `origin` `configuration` or `api` (bearer token) |
//! | `/v1/vis/{id}` | GET, PUT, DELETE | one VI; added or removed at run time (bearer token) |
//!
//! The `/v1/vis` routes need `[vi_api]` (haas kind) and its token in
//! `Authorization: Bearer`; without `[vi_api]` they answer 403, never
//! open. `PUT` is idempotent: 201 when new, 200 when replaced or already
//! so; a clash with a VI of the configuration or another runtime VI (its
//! GRE key, its peer's name or address, VLANs on one peer) is 409 naming
//! it; a VI of the configuration file is never changed (409). `DELETE` of
//! a VI not there is 204.
//!
//! Bodies are read as the controller's API reads them (its `Body`
//! extractor): 415 when not JSON, 400 when not valid JSON, 422 when not the
//! schema, each an `application/problem+json` document pointing at the
//! field.
//!
//! A peer report needs the token of the peer it comes from in
//! `Authorization: Bearer`, checked against the `token_hash` of each
//! `[[peer]]` before the body is read: without one, or with one that
//! matches no peer's hash, it is 401 and changes nothing. The peer whose
//! hash the token matches is the sender: a report whose `from` names
//! another is 403, as is one from a name that is no `[[peer]]`, or one
//! naming a VI this gateway does not carry with the sender (at
//! `#/macs/N/vi`); every refusal is counted in
//! `iris_gateway_peer_reports_refused`. Only with
//! `allow_unauthenticated_peers` (tests) is a report taken without a token,
//! and then only from a peer that has no `token_hash`. Within a good
//! report, each MAC is decided alone (`refused` with a detail for a VLAN
//! outside its VI, a bad MAC or IP).

use crate::bridge::BridgePlan;
use crate::config::{Config, RuntimeVi, ViApi, ViSpec};
use crate::control::{Control, Refusal, Status};
use crate::metrics::Metrics;
use crate::report::{PeerAnswer, PeerReport};
use crate::runtime_vis::{self, Put, Refused};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use iris_controller::api::{Body, BodyShape, FieldProblem, Problem};
use iris_controller::api_auth::{bearer_token, PasswordHashString, TokenCheck};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{watch, Notify};

impl BodyShape for PeerReport {}
impl BodyShape for ViSpec {}

/// What the API and the gateway's tasks share.
#[derive(Debug)]
pub struct Shared {
    control: Mutex<Control>,
    pub metrics: Arc<Metrics>,
    /// The datapath's part of the status, as it publishes it.
    datapath: Option<watch::Receiver<serde_json::Value>>,
    /// Woken when something was queued, so a sender does not wait for its
    /// timer.
    queued: Notify,
    /// The bridge plan the keeper follows, when a datapath runs.
    plan: Mutex<Option<watch::Sender<BridgePlan>>>,
    /// Held by a change of the runtime VIs, so two never interleave.
    vis_writer: Mutex<()>,
    /// Counts the changes of the VIs, for the follower to read the
    /// registry of a new one.
    vis_changed: watch::Sender<u64>,
    /// The peers' tokens, checked against their `token_hash`.
    peer_tokens: TokenCheck,
}

impl Shared {
    pub fn new(
        control: Control,
        metrics: Arc<Metrics>,
        datapath: Option<watch::Receiver<serde_json::Value>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            control: Mutex::new(control),
            metrics,
            datapath,
            queued: Notify::new(),
            plan: Mutex::new(None),
            vis_writer: Mutex::new(()),
            vis_changed: watch::Sender::new(0),
            peer_tokens: TokenCheck::default(),
        })
    }

    /// Where a new configuration's bridge plan goes.
    pub fn follow_plan(&self, plan: Option<watch::Sender<BridgePlan>>) {
        *lock(&self.plan) = plan;
    }

    /// Makes `config` (with VIs added or removed at run time) the
    /// gateway's: the control core's, and the bridge's.
    pub fn set_config(&self, config: Arc<Config>) {
        if let Some(plan) = lock(&self.plan).as_ref() {
            plan.send_replace(crate::run::bridge_plan(&config));
        }
        self.control().set_config(config);
        self.vis_changed.send_modify(|n| *n += 1);
    }

    /// Follows the changes of the gateway's VIs.
    pub fn vis_changes(&self) -> watch::Receiver<u64> {
        self.vis_changed.subscribe()
    }

    /// Wakes the senders: those waiting now, and the next one to wait
    /// (a sender busy with a batch sees it when it is done).
    pub fn wake(&self) {
        self.queued.notify_waiters();
        self.queued.notify_one();
    }

    /// The control core; a panic while it was held does not stop the
    /// others (its state is plain data, consistent between calls).
    /// Resolves at the next [`Shared::wake`].
    pub async fn woken(&self) {
        self.queued.notified().await;
    }

    pub fn control(&self) -> MutexGuard<'_, Control> {
        lock(&self.control)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route(
            "/v1/peer/macs",
            post(peer_macs).route_layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                authenticate_peer,
            )),
        )
        .route("/v1/vis", get(list_vis))
        .route("/v1/vis/{id}", get(get_vi).put(put_vi).delete(delete_vi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Problem {
    Problem::new(status, detail)
}

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        let detail = r
            .errors
            .iter()
            .map(|(_, d)| d.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let mut p = problem(status, detail);
        p.errors = r
            .errors
            .into_iter()
            .map(|(pointer, detail)| FieldProblem { pointer, detail })
            .collect();
        p
    }
}

async fn not_found() -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        "no such route; the gateway serves /healthz, /v1/status, /metrics, POST /v1/peer/macs, \
         /v1/vis and /v1/vis/{id}",
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    let allowed = if uri.path() == "/v1/peer/macs" {
        "POST"
    } else if uri.path().starts_with("/v1/vis/") {
        "GET, PUT or DELETE"
    } else {
        "GET"
    };
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}; use {allowed}", uri.path()),
    )
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    name: String,
    kind: String,
}

async fn healthz(State(s): State<Arc<Shared>>) -> Json<Health> {
    let c = s.control();
    Json(Health {
        status: "ok",
        name: c.config().name.clone(),
        kind: c.config().kind.to_string(),
    })
}

#[derive(Debug, Serialize)]
struct StatusBody {
    #[serde(flatten)]
    control: Status,
    /// `null` until a datapath publishes its part.
    datapath: Option<serde_json::Value>,
}

async fn status(State(s): State<Arc<Shared>>) -> Json<StatusBody> {
    let control = s.control().status();
    let datapath = s.datapath.as_ref().map(|w| w.borrow().clone());
    Json(StatusBody { control, datapath })
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if let Some(d) = &s.datapath {
        s.metrics.set_wan_ports(&d.borrow());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Who sent a peer report, as its token says: `None` when the request
/// carried no token and the configuration allows that.
#[derive(Debug, Clone)]
struct Sender(Option<String>);

/// 401, with the challenge, nothing changed; counted.
fn unauthenticated(s: &Shared, detail: String) -> Response {
    s.control().refused_report("unauthenticated");
    let mut r = problem(StatusCode::UNAUTHORIZED, detail).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"iris-gateway\""),
    );
    r
}

/// Axum middleware of `POST /v1/peer/macs`: the peer whose `token_hash`
/// the bearer token matches goes into the request as its [`Sender`];
/// 401 before the body is read otherwise. An iaas gateway takes no
/// reports, which the control core says (403).
async fn authenticate_peer(State(s): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    // What the check needs, taken under the lock, which an await cannot
    // hold: the kind, the switch, and each peer with a hash.
    let (kind, allow_unauthenticated, peers) = {
        let control = s.control();
        let config = control.config();
        let peers: Vec<(String, PasswordHashString)> = config
            .peers
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.token_hash.clone()?)))
            .collect();
        (config.kind, config.allow_unauthenticated_peers, peers)
    };
    if kind == crate::config::Kind::Iaas {
        req.extensions_mut().insert(Sender(None));
        return next.run(req).await;
    }
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    let Some(value) = value else {
        if allow_unauthenticated {
            req.extensions_mut().insert(Sender(None));
            return next.run(req).await;
        }
        return unauthenticated(
            &s,
            "a peer report needs the sending peer's token: send `Authorization: Bearer \
             <token>`; nothing was changed"
                .into(),
        );
    };
    let Some(token) = bearer_token(&value) else {
        return unauthenticated(
            &s,
            "the Authorization header is not `Bearer <token>`; nothing was changed".into(),
        );
    };
    let (names, hashes): (Vec<String>, Vec<PasswordHashString>) = peers.into_iter().unzip();
    let matched = s.peer_tokens.all(token, &hashes).await;
    match matched.as_slice() {
        [one] => {
            req.extensions_mut()
                .insert(Sender(Some(names[*one].clone())));
            next.run(req).await
        }
        [] => {
            tracing::warn!("a peer report with a token no [[peer]] has was refused");
            unauthenticated(
                &s,
                "the bearer token matches no [[peer]]'s token_hash; nothing was changed".into(),
            )
        }
        several => {
            let names: Vec<&str> = several.iter().map(|&i| names[i].as_str()).collect();
            tracing::error!(
                "peers {} share one token, so a report cannot say which sent it; give each \
                 its own",
                names.join(", ")
            );
            unauthenticated(
                &s,
                "the bearer token is the token of several peers, so it does not say which one \
                 sent the report; nothing was changed"
                    .into(),
            )
        }
    }
}

async fn peer_macs(
    State(s): State<Arc<Shared>>,
    Extension(Sender(sender)): Extension<Sender>,
    Body(report): Body<PeerReport>,
) -> Result<Json<PeerAnswer>, Response> {
    let mut control = s.control();
    match &sender {
        Some(name) if *name != report.from => {
            control.refused_report("not_the_sender");
            let mut p = problem(
                StatusCode::FORBIDDEN,
                format!(
                    "the token is {name:?}'s, and a peer reports only for itself, not for {:?}; \
                     nothing was changed",
                    report.from
                ),
            );
            p.errors = vec![FieldProblem {
                pointer: "#/from".into(),
                detail: format!("not {name:?}"),
            }];
            return Err(p.into_response());
        }
        None if control
            .config()
            .peer(&report.from)
            .is_some_and(|p| p.token_hash.is_some()) =>
        {
            drop(control);
            return Err(unauthenticated(
                &s,
                format!(
                    "{:?} has a token_hash here: its reports need its token as `Authorization: \
                     Bearer <token>`; nothing was changed",
                    report.from
                ),
            ));
        }
        _ => {}
    }
    let answer = control
        .peer_report(Instant::now(), &report)
        .map_err(|r| Problem::from(r).into_response())?;
    drop(control);
    s.wake();
    Ok(Json(answer))
}

/// The `[vi_api]` of the gateway, if the request carries its token.
fn authorized(s: &Shared, headers: &HeaderMap) -> Result<ViApi, Box<Response>> {
    let Some(api) = s.control().config().vi_api.clone() else {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "this gateway takes no VIs at run time: its configuration has no [vi_api] (a haas \
             gateway's token_file and state_dir); nothing was changed",
        )
        .into_response()
        .into());
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let detail = match token {
        None => "send the [vi_api] token as `Authorization: Bearer <token>`; nothing was changed",
        Some(t) if same_secret(t, api.token.expose()) => return Ok(api),
        Some(_) => "the bearer token is not the [vi_api] token; nothing was changed",
    };
    let mut r = problem(StatusCode::UNAUTHORIZED, detail).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"iris-gateway\""),
    );
    Err(r.into())
}

/// Equality that takes as long whichever byte differs.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn vi_id(text: &str) -> Result<u32, Box<Response>> {
    text.parse().map_err(|_| {
        let mut p = problem(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a VI id; write a number, 1 to 16777215"),
        );
        p.errors = vec![FieldProblem {
            pointer: "path:id".into(),
            detail: "not a number".into(),
        }];
        p.into_response().into()
    })
}

/// A VI as `GET /v1/vis` shows it.
#[derive(Debug, Serialize)]
struct ViEntry {
    /// `configuration` (a `[[vi]]` of the file) or `api` (added at run time).
    origin: &'static str,
    #[serde(flatten)]
    vi: RuntimeVi,
}

fn entries(config: &Config) -> Vec<ViEntry> {
    let mut out: Vec<ViEntry> = config
        .file_vi_specs()
        .into_iter()
        .map(|vi| ViEntry {
            origin: "configuration",
            vi,
        })
        .chain(config.runtime.iter().map(|vi| ViEntry {
            origin: "api",
            vi: vi.clone(),
        }))
        .collect();
    out.sort_by_key(|e| e.vi.id);
    out
}

async fn list_vis(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let config = s.control().config().clone();
    Json(entries(&config)).into_response()
}

/// VI `id` as `GET /v1/vis` shows it, answered with `status`; 404 when
/// the gateway does not carry it.
fn one_vi(s: &Shared, id: u32, status: StatusCode) -> Response {
    let config = s.control().config().clone();
    match entries(&config).into_iter().find(|e| e.vi.id == id) {
        Some(e) => (status, Json(e)).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("this gateway carries no VI {id}"),
        )
        .into_response(),
    }
}

/// The `[vi_api]` and the VI id of the path, for a request with the token.
fn authorized_vi(s: &Shared, headers: &HeaderMap, id: &str) -> Result<(ViApi, u32), Box<Response>> {
    Ok((authorized(s, headers)?, vi_id(id)?))
}

async fn get_vi(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match authorized_vi(&s, &headers, &id) {
        Ok((_, id)) => one_vi(&s, id, StatusCode::OK),
        Err(r) => *r,
    }
}

fn refused(r: Refused) -> Response {
    match r {
        Refused::Invalid(errors) => {
            let detail = errors
                .iter()
                .map(|(at, d)| format!("{at}: {d}"))
                .collect::<Vec<_>>()
                .join("; ");
            let mut p = problem(StatusCode::UNPROCESSABLE_ENTITY, detail);
            p.errors = errors
                .into_iter()
                .map(|(pointer, detail)| FieldProblem { pointer, detail })
                .collect();
            p.into_response()
        }
        Refused::Conflict(errors) => {
            let detail = errors
                .iter()
                .map(|e| format!("{}: {}", e.key, e.problem))
                .collect::<Vec<_>>()
                .join("; ");
            problem(
                StatusCode::CONFLICT,
                format!("{detail}; nothing was changed"),
            )
            .into_response()
        }
        Refused::FileVi(id) => problem(
            StatusCode::CONFLICT,
            format!(
                "VI {id} is a [[vi]] of this gateway's configuration file; change it there, \
                 the API adds and removes only its own VIs"
            ),
        )
        .into_response(),
        Refused::State(e) => {
            tracing::error!("{e}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{e}; nothing was changed"),
            )
            .into_response()
        }
    }
}

async fn put_vi(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(spec): Body<ViSpec>,
) -> Response {
    let (api, id) = match authorized_vi(&s, &headers, &id) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let outcome = {
        let _writer = lock(&s.vis_writer);
        runtime_vis::put(&s, &api, id, spec)
    };
    let status = match outcome {
        Ok(Put::Created) => {
            tracing::info!("VI {id} added at run time");
            StatusCode::CREATED
        }
        Ok(Put::Replaced) => {
            tracing::info!("VI {id} changed at run time");
            StatusCode::OK
        }
        Ok(Put::Unchanged) => StatusCode::OK,
        Err(r) => return refused(r),
    };
    one_vi(&s, id, status)
}

async fn delete_vi(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (api, id) = match authorized_vi(&s, &headers, &id) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let outcome = {
        let _writer = lock(&s.vis_writer);
        runtime_vis::delete(&s, &api, id)
    };
    match outcome {
        Ok(was) => {
            if was {
                tracing::info!("VI {id} removed at run time");
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => refused(r),
    }
}
