//! The gateway's HTTP API (axum), on `listen`.
//!
//! | route | method | |
//! |---|---|---|
//! | `/healthz` | GET | `{"status":"ok","kind","name"}` |
//! | `/v1/status` | GET | peers, VIs, MTU policy, outbox, flapping MACs |
//! | `/metrics` | GET | OpenMetrics text, `iris_gateway_*` |
//! | `/v1/peer/macs` | POST | a peer's MAC report (haas kind) |
//!
//! Bodies are read as the controller's API reads them (its `Body`
//! extractor): 415 when not JSON, 400 when not valid JSON, 422 when not the
//! schema, each an `application/problem+json` document pointing at the
//! field. A report from a name that is no `[[peer]]` is 403; one naming a
//! VI its peer does not carry is 422 at `#/macs/N/vi`. Within a good
//! report, each MAC is decided alone (`refused` with a detail for a VLAN
//! outside its VI, a bad MAC or IP).

use crate::control::{Control, Refusal, Status};
use crate::metrics::Metrics;
use crate::report::{PeerAnswer, PeerReport};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use iris_controller::api::{Body, BodyShape, FieldProblem, Problem};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{watch, Notify};

impl BodyShape for PeerReport {}

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
        })
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
        self.control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/peer/macs", post(peer_macs))
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
        "no such route; the gateway serves /healthz, /v1/status, /metrics and POST /v1/peer/macs",
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    let allowed = if uri.path() == "/v1/peer/macs" {
        "POST"
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

async fn peer_macs(
    State(s): State<Arc<Shared>>,
    Body(report): Body<PeerReport>,
) -> Result<Json<PeerAnswer>, Problem> {
    let answer = s.control().peer_report(Instant::now(), &report)?;
    s.wake();
    Ok(Json(answer))
}
