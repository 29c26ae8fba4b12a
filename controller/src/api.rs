//! The northbound REST API (axum).
//!
//! | route | methods |
//! |---|---|
//! | `/healthz` | GET |
//! | `/metrics` | GET (Prometheus text) |
//! | `/v1/hosts`, `/v1/hosts/{name}` | GET; GET, PUT, DELETE |
//! | `/v1/vis`, `/v1/vis/{id}` | GET; GET, PUT, DELETE |
//! | `/v1/vis/{id}/seed` | POST (seed entries, checked whole) |
//! | `/v1/vm-ports?host=&vi=` | GET |
//! | `/v1/vm-ports/{host}/{name}` | GET |
//! | `/v1/registry?vi=` | GET |
//! | `/v1/registry/{vi}/{vlan}/{mac}` | GET, PUT, DELETE (`vlan`: 1-4094 or `untagged`) |
//! | `/v1/events` | GET (Server-Sent Events: registry changes, moves, switches) |
//!
//! Bodies are JSON with unknown fields refused, and so are unknown query
//! parameters. Every refusal is a 4xx with an `application/problem+json`
//! body (RFC 9457) whose `detail` says what is wrong and whose `errors`
//! point at where (`pointer`): `#/field` in the body, `path:name` for a
//! path parameter, `query:name` for a query parameter. A method a route
//! does not take gets 405 with the ones it does, in `Allow` and in
//! `detail`.

use crate::config::{ConfigError, HostSpec, HostSpecExt, SeedRow, SeedRowExt, ViSpec, ViSpecExt};
use crate::control::{CallError, ControlHandle, HostStatus, Refusal, Stopped};
use crate::model::{HostName, Location, MacKey, ViId, Vlan, VmPort};
use crate::registry::{EntrySpec, Registry, RegistryEntry, RegistryError};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use ofp::packet::MacAddr;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::convert::Infallible;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// The API's routes over the control loop.
pub fn router(control: ControlHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/hosts", get(list_hosts))
        .route(
            "/v1/hosts/{name}",
            get(get_host).put(put_host).delete(delete_host),
        )
        .route("/v1/vis", get(list_vis))
        .route("/v1/vis/{id}", get(get_vi).put(put_vi).delete(delete_vi))
        .route("/v1/vis/{id}/seed", post(seed_vi))
        .route("/v1/vm-ports", get(list_vm_ports))
        .route("/v1/vm-ports/{host}/{name}", get(get_vm_port))
        .route("/v1/registry", get(list_entries))
        .route(
            "/v1/registry/{vi}/{vlan}/{mac}",
            get(get_entry).put(put_entry).delete(delete_entry),
        )
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(control)
}

/// Every route with the methods [`router`] gives it, for the 405 answer.
/// (The API tests check both against what each route really takes.)
const ROUTES: &[(&str, &str)] = &[
    ("/healthz", "GET"),
    ("/metrics", "GET"),
    ("/v1/hosts", "GET"),
    ("/v1/hosts/{name}", "GET, PUT, DELETE"),
    ("/v1/vis", "GET"),
    ("/v1/vis/{id}", "GET, PUT, DELETE"),
    ("/v1/vis/{id}/seed", "POST"),
    ("/v1/vm-ports", "GET"),
    ("/v1/vm-ports/{host}/{name}", "GET"),
    ("/v1/registry", "GET"),
    ("/v1/registry/{vi}/{vlan}/{mac}", "GET, PUT, DELETE"),
    ("/v1/events", "GET"),
    ("/v1/openapi.json", "GET"),
];

async fn method_not_allowed(method: Method, route: Option<MatchedPath>) -> Problem {
    let route = route.as_ref().map_or("", MatchedPath::as_str);
    let allowed = ROUTES
        .iter()
        .find(|(r, _)| *r == route)
        .map_or("the methods in the Allow header", |(_, m)| m);
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{route} does not take {method}; use {allowed}"),
    )
}

type State = axum::extract::State<ControlHandle>;

pub use iris_schemas::northbound::FieldProblem;
use iris_schemas::northbound::{
    EntryBody, EntryInfo, Healthz, HostInfo, Lagged, LocationBody, SeedOutcome, VmPortInfo,
};

/// An RFC 9457 problem document ([`iris_schemas::northbound::Problem`])
/// that axum answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub iris_schemas::northbound::Problem);

impl std::ops::Deref for Problem {
    type Target = iris_schemas::northbound::Problem;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self(iris_schemas::northbound::Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        })
    }

    /// Adds where in the request the problem is.
    pub fn at(mut self, pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        self.errors.push(FieldProblem {
            pointer: pointer.into(),
            detail: detail.into(),
        });
        self
    }

    /// Points at `pointer` unless the problem already says where.
    fn or_at(self, pointer: &str) -> Self {
        if self.errors.is_empty() {
            let detail = self.detail.clone();
            self.at(pointer, detail)
        } else {
            self
        }
    }

    /// Validation errors of a body, each under its JSON pointer.
    fn invalid(errors: Vec<ConfigError>) -> Self {
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body has {} invalid field(s)", errors.len()),
        );
        for e in errors {
            // `gateways[1].name` points as `#/gateways/1/name`.
            let pointer = e.key.replace(['.', '['], "/").replace(']', "");
            p = p.at(format!("#/{pointer}"), e.problem);
        }
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<Stopped> for Problem {
    fn from(_: Stopped) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the controller is shutting down; retry against the restarted controller",
        )
    }
}

impl From<CallError> for Problem {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Stopped => Stopped.into(),
            // Reads answer from memory meanwhile; the client retries.
            CallError::StoreUnavailable(why) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{why}; the controller still answers reads and forwards traffic, and takes \
                     writes again once the store is back: retry later"
                ),
            ),
        }
    }
}

impl From<Refusal> for Problem {
    /// A clash in the body points at its field; a caller whose path names
    /// the thing adds that with [`Problem::or_at`].
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound(d) => Self::new(StatusCode::NOT_FOUND, d),
            Refusal::Conflict {
                field: Some(f),
                detail,
            } => Self::new(StatusCode::CONFLICT, detail.clone()).at(format!("#/{f}"), detail),
            Refusal::Conflict {
                field: None,
                detail,
            } => Self::new(StatusCode::CONFLICT, detail),
        }
    }
}

/// A refusal of a request whose path parameter `param` names the thing.
fn refused_at(param: &'static str) -> impl Fn(Refusal) -> Problem {
    move |r| Problem::from(r).or_at(&format!("path:{param}"))
}

impl From<RegistryError> for Problem {
    fn from(e: RegistryError) -> Self {
        let status = match e {
            RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
            RegistryError::IpHeld { .. } => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let pointer = match e {
            RegistryError::NotUnicast { .. } => Some("path:mac"),
            RegistryError::BadVlan(_) => Some("path:vlan"),
            RegistryError::UnknownVi { .. } => Some("path:vi"),
            RegistryError::UnknownHost { .. } | RegistryError::PortOfOtherVi { .. } => {
                Some("#/location/host")
            }
            RegistryError::NotAGateway { .. } => Some("#/location/gateway"),
            RegistryError::NotFound { .. } => Some("path:mac"),
            RegistryError::BadOfport { .. } => Some("#/location/ofport"),
            RegistryError::BadIp { .. }
            | RegistryError::TooManyIps { .. }
            | RegistryError::IpHeld { .. } => Some("#/ips"),
            RegistryError::SeedConflict { .. } => None,
        };
        let detail = e.to_string();
        match pointer {
            Some(p) => Self::new(status, detail.clone()).at(p, detail),
            None => Self::new(status, detail),
        }
    }
}

type ApiResult<T> = Result<T, Problem>;

/// A JSON body, refused with a problem document when it is not JSON, not
/// labelled as JSON, or not the expected shape (with a pointer to the field).
#[derive(Debug)]
pub struct Body<T>(pub T);

/// The JSON a body must be at its top: serde reads a struct from an array
/// of its fields as readily as from an object, so `[]` would otherwise
/// pass for a body with every field left out.
pub trait BodyShape {
    /// `{` for an object, `[` for an array.
    const OPENS_WITH: u8 = b'{';
}

impl BodyShape for HostSpec {}
impl BodyShape for ViSpec {}
impl BodyShape for EntryBody {}
impl<T> BodyShape for Vec<T> {
    const OPENS_WITH: u8 = b'[';
}

impl<S: Send + Sync, T: DeserializeOwned + BodyShape> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::new(e.status(), e.body_text()))?;
        let opens = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if matches!(opens, Some(b'{' | b'[')) && opens != Some(T::OPENS_WITH) {
            let (want, got) = match T::OPENS_WITH {
                b'{' => ("object", "an array"),
                _ => ("array", "an object"),
            };
            let problem = format!("the body must be a JSON {want}, not {got}");
            return Err(
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, problem.clone()).at("#", problem),
            );
        }
        parse_body(&bytes).map(Body)
    }
}

/// Path parameters, refused with a problem document pointing at the one
/// that does not decode (bad percent-encoding, say).
#[derive(Debug)]
pub struct PathArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(Self(t)),
            Err(e) => Err(path_problem(&e)),
        }
    }
}

fn path_problem(e: &PathRejection) -> Problem {
    use axum::extract::path::ErrorKind;
    let p = Problem::new(e.status(), e.body_text());
    let PathRejection::FailedToDeserializePathParams(f) = e else {
        return p;
    };
    match f.kind() {
        ErrorKind::InvalidUtf8InPathParam { key }
        | ErrorKind::ParseErrorAtKey { key, .. }
        | ErrorKind::DeserializeError { key, .. } => {
            let detail = p.detail.clone();
            p.at(format!("path:{key}"), detail)
        }
        _ => p,
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
        })
}

fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let pointer = json_pointer(e.path());
        let inner = e.into_inner();
        let (status, what) = match inner.classify() {
            serde_json::error::Category::Data => {
                (StatusCode::UNPROCESSABLE_ENTITY, "does not fit the schema")
            }
            _ => (StatusCode::BAD_REQUEST, "is not valid JSON"),
        };
        Problem::new(status, format!("the body {what}: {inner}")).at(pointer, inner.to_string())
    })
}

/// RFC 6901 pointer (as a URI fragment) to where deserialization stopped.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("#");
    for seg in path.iter() {
        out.push('/');
        match seg {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => out.push_str(variant),
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no such route; see the controller's API guide for /v1/hosts, /v1/vis, /v1/vm-ports, \
         /v1/registry and /v1/events",
    )
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Whether the control loop answers, and what is connected",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "alive", body = Healthz),
        (status = 401, description = "no token, or one that matches no hash (when the route is not open)", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn healthz(s: State) -> ApiResult<Json<Healthz>> {
    let health = s.call(|c| c.health()).await?;
    Ok(Json(Healthz {
        status: "ok".into(),
        health,
    }))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics (OpenMetrics text)",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "every metric", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "no token, or one that matches no hash (when the route is not open)", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn metrics(s: State) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics().render(),
    )
}

impl From<HostStatus> for HostInfo {
    fn from(h: HostStatus) -> Self {
        let HostSpec {
            name,
            underlay_ip,
            role,
            ovsdb,
            datapath_id,
            controller,
        } = HostSpec::from_host(&h.host);
        Self {
            name,
            underlay_ip,
            role,
            ovsdb,
            datapath_id,
            controller,
            openflow_connected: h.openflow_peer.is_some(),
            openflow_peer: h.openflow_peer,
            openflow_ports: h.openflow_ports,
            ovsdb_connected: h.ovsdb_connected,
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/hosts",
    tag = "hosts",
    summary = "Every host with its connections",
    responses(
        (status = 200, description = "the hosts", body = Vec<HostInfo>),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn list_hosts(s: State, q: RawParams) -> ApiResult<Json<Vec<HostInfo>>> {
    Params::of(q, &[])?;
    let hosts = s.call(|c| c.hosts()).await?;
    Ok(Json(hosts.into_iter().map(HostInfo::from).collect()))
}

#[utoipa::path(
    get,
    path = "/v1/hosts/{name}",
    tag = "hosts",
    summary = "One host",
    params(
        ("name" = String, Path, description = "the host's name"),
    ),
    responses(
        (status = 200, description = "the host", body = HostInfo),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn get_host(
    s: State,
    PathArgs(name): PathArgs<String>,
    q: RawParams,
) -> ApiResult<Json<HostInfo>> {
    Params::of(q, &[])?;
    let key = HostName(name.clone());
    match s.call(move |c| c.host(&key)).await? {
        Some(h) => Ok(Json(h.into())),
        None => Err(
            Problem::new(StatusCode::NOT_FOUND, format!("no host named {name:?}"))
                .or_at("path:name"),
        ),
    }
}

/// The body's name must be the path's: a PUT never renames.
fn name_matches(path: &str, body: &str) -> ApiResult<()> {
    if path == body {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("the body names {body:?} but the path names {path:?}; they must agree"),
    )
    .at("#/name", format!("write {path:?}")))
}

/// 201 with the stored form when new, 200 when replaced.
fn stored<T: Serialize>(created: bool, body: T) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(
    put,
    path = "/v1/hosts/{name}",
    tag = "hosts",
    summary = "Adds or replaces a host",
    params(
        ("name" = String, Path, description = "the host's name"),
    ),
    request_body(content = HostSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = HostInfo),
        (status = 201, description = "added", body = HostInfo),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it clashes with what exists, or something still uses it", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not labelled as JSON", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not the JSON the route takes, or a field is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down, or its store cannot commit now (an etcd cluster without quorum): nothing changed, retry later", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn put_host(
    s: State,
    PathArgs(name): PathArgs<String>,
    q: RawParams,
    Body(spec): Body<HostSpec>,
) -> ApiResult<Response> {
    Params::of(q, &[])?;
    name_matches(&name, &spec.name)?;
    let mut host = spec
        .to_host("")
        .map_err(|errors| Problem::invalid(strip_root(errors)));
    if let (Ok(_), Err(p)) = (&host, s.ovsdb_transport().check(&spec.ovsdb)) {
        host = Err(Problem::invalid(vec![ConfigError::new("ovsdb", p)]));
    }
    let tls = s.ovsdb_transport().tls;
    if let (Ok(_), Some(Err(p))) = (
        &host,
        spec.controller
            .as_deref()
            .map(|t| crate::config::check_passive_transport(t, tls)),
    ) {
        host = Err(Problem::invalid(vec![ConfigError::new("controller", p)]));
    }
    let host = host?;
    let created = s
        .call(move |c| c.put_host(host))
        .await?
        .map_err(refused_at("name"))?;
    let key = HostName(name);
    let now = s.call(move |c| c.host(&key)).await?;
    Ok(stored(created, now.map(HostInfo::from)))
}

/// The spec checkers prefix keys with the name they were given; the API
/// gives an empty one.
fn strip_root(errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|e| ConfigError::new(e.key.trim_start_matches('.'), e.problem))
        .collect()
}

#[utoipa::path(
    delete,
    path = "/v1/hosts/{name}",
    tag = "hosts",
    summary = "Removes a host added through the API",
    params(
        ("name" = String, Path, description = "the host's name"),
        ("cascade" = Option<bool>, Query, description = "remove what depends on it too"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it clashes with what exists, or something still uses it", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down, or its store cannot commit now (an etcd cluster without quorum): nothing changed, retry later", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_host(
    s: State,
    PathArgs(name): PathArgs<String>,
    q: RawParams,
) -> ApiResult<StatusCode> {
    let cascade = Params::of(q, &["cascade"])?.flag("cascade")?;
    let key = HostName(name);
    s.call(move |c| c.delete_host(&key, cascade))
        .await?
        .map_err(refused_at("name"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/vis",
    tag = "vis",
    summary = "Every VI",
    responses(
        (status = 200, description = "the VIs", body = Vec<ViSpec>),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn list_vis(s: State, q: RawParams) -> ApiResult<Json<Vec<ViSpec>>> {
    Params::of(q, &[])?;
    let vis = s.call(|c| c.vis()).await?;
    Ok(Json(vis.iter().map(ViSpec::from_vi).collect()))
}

/// A VI id from path parameter `param`.
fn vi_id(text: &str, param: &str) -> ApiResult<ViId> {
    text.parse::<u32>().map(ViId).map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, format!("{text:?} is not a VI id"))
            .at(format!("path:{param}"), "write the VI's numeric id, like 1")
    })
}

#[utoipa::path(
    get,
    path = "/v1/vis/{id}",
    tag = "vis",
    summary = "One VI",
    params(
        ("id" = u32, Path, description = "the VI's id"),
    ),
    responses(
        (status = 200, description = "the VI", body = ViSpec),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn get_vi(s: State, PathArgs(id): PathArgs<String>, q: RawParams) -> ApiResult<Json<ViSpec>> {
    Params::of(q, &[])?;
    let id = vi_id(&id, "id")?;
    match s.call(move |c| c.vi(id)).await? {
        Some(v) => Ok(Json(ViSpec::from_vi(&v))),
        None => Err(
            Problem::new(StatusCode::NOT_FOUND, format!("no VI with id {}", id.0)).or_at("path:id"),
        ),
    }
}

#[utoipa::path(
    put,
    path = "/v1/vis/{id}",
    tag = "vis",
    summary = "Launches or changes a VI",
    params(
        ("id" = u32, Path, description = "the VI's id"),
        ("cascade" = Option<bool>, Query, description = "remove what depends on it too"),
    ),
    request_body(content = ViSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = ViSpec),
        (status = 201, description = "added", body = ViSpec),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it clashes with what exists, or something still uses it", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not labelled as JSON", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not the JSON the route takes, or a field is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down, or its store cannot commit now (an etcd cluster without quorum): nothing changed, retry later", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn put_vi(
    s: State,
    PathArgs(id): PathArgs<String>,
    q: RawParams,
    Body(spec): Body<ViSpec>,
) -> ApiResult<Response> {
    let cascade = Params::of(q, &["cascade"])?.flag("cascade")?;
    let id = vi_id(&id, "id")?;
    if spec.id != id.0 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the body's id {} differs from the path's {}; they must agree",
                spec.id, id.0
            ),
        )
        .at("#/id", format!("write {}", id.0)));
    }
    if spec.seed.is_some() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "seed files are read from the configuration; POST the entries to \
             /v1/vis/{id}/seed instead",
        )
        .at("#/seed", "leave seed out"));
    }
    let vi = spec
        .to_vi("")
        .map_err(|errors| Problem::invalid(strip_root(errors)))?;
    let created = s
        .call(move |c| c.put_vi(vi, cascade))
        .await?
        .map_err(refused_at("id"))?;
    Ok(stored(created, spec))
}

/// Seeds a VI launched through the API, as a seed file seeds one from the
/// configuration: the entries are checked whole (every one at fault is
/// pointed at) and then all seeded, or none. A large seed cut short by the
/// store (the controller then stops, see [`crate::store::Store::commit`])
/// may be stored in part; seeding it again completes it.
#[utoipa::path(
    post,
    path = "/v1/vis/{id}/seed",
    tag = "vis",
    summary = "Seeds a VI's registry, all entries or none",
    params(
        ("id" = u32, Path, description = "the VI's id"),
    ),
    request_body(content = Vec<SeedRow>, content_type = "application/json"),
    responses(
        (status = 200, description = "seeded", body = SeedOutcome),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not labelled as JSON", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not the JSON the route takes, or a field is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down, or its store cannot commit now (an etcd cluster without quorum): nothing changed, retry later", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn seed_vi(
    s: State,
    PathArgs(id): PathArgs<String>,
    q: RawParams,
    Body(rows): Body<Vec<SeedRow>>,
) -> ApiResult<Json<SeedOutcome>> {
    Params::of(q, &[])?;
    let id = vi_id(&id, "id")?;
    // Rows that read are checked by the registry even when others do not,
    // so one answer names every entry at fault.
    let mut at = Vec::new();
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match row.to_entry() {
            Ok(e) => {
                at.push(i);
                entries.push(e);
            }
            Err(es) => unreadable.extend(
                es.into_iter()
                    .map(|e| ConfigError::new(format!("{i}.{}", e.key), e.problem)),
            ),
        }
    }
    let check_only = !unreadable.is_empty();
    let seeded = s
        .call(move |c| {
            if check_only {
                Err(Registry::check_seed(c.topology(), id, &entries))
            } else {
                c.seed_from_api(id, &entries)
            }
        })
        .await?;
    let problems = match seeded {
        Ok(changes) => return Ok(Json(SeedOutcome { changes })),
        Err(problems) => problems,
    };
    if let Some((_, e @ RegistryError::UnknownVi { .. })) = problems.first() {
        return Err(Problem::new(StatusCode::NOT_FOUND, e.to_string()).or_at("path:id"));
    }
    for (i, e) in problems {
        let row = at.get(i).copied().unwrap_or(i);
        let key = match e {
            RegistryError::NotUnicast { .. } => format!("{row}.mac"),
            RegistryError::BadVlan(_) => format!("{row}.vlan"),
            RegistryError::BadIp { .. } => format!("{row}.ip"),
            RegistryError::NotAGateway { .. } | RegistryError::UnknownHost { .. } => {
                format!("{row}.behind")
            }
            _ => row.to_string(),
        };
        unreadable.push(ConfigError::new(key, e.to_string()));
    }
    let mut p = Problem::invalid(unreadable);
    p.detail = format!("{} seed entries are wrong; none was seeded", p.errors.len());
    Err(p)
}

#[utoipa::path(
    delete,
    path = "/v1/vis/{id}",
    tag = "vis",
    summary = "Removes a VI launched through the API",
    params(
        ("id" = u32, Path, description = "the VI's id"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it clashes with what exists, or something still uses it", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down, or its store cannot commit now (an etcd cluster without quorum): nothing changed, retry later", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_vi(
    s: State,
    PathArgs(id): PathArgs<String>,
    q: RawParams,
) -> ApiResult<StatusCode> {
    Params::of(q, &[])?;
    let id = vi_id(&id, "id")?;
    s.call(move |c| c.delete_vi(id))
        .await?
        .map_err(refused_at("id"))?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<VmPort> for VmPortInfo {
    fn from(p: VmPort) -> Self {
        Self {
            host: p.host.0,
            name: p.name,
            ofport: p.ofport,
            vi: p.vi.0,
        }
    }
}

/// A query string checked like a body: each parameter known, given once,
/// and of its type, or refused pointing at it (`query:vi`).
#[derive(Debug)]
struct Params(Vec<(String, String)>);

type RawParams = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

impl Params {
    /// The parameters of `q`, all of them among `known`.
    fn of(q: RawParams, known: &[&str]) -> ApiResult<Self> {
        let Query(pairs) = q.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        let expected = || {
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (i, (name, _)) in pairs.iter().enumerate() {
            let problem = if known.is_empty() {
                format!("unknown parameter `{name}`; this route takes none")
            } else if !known.contains(&name.as_str()) {
                format!(
                    "unknown parameter `{name}`; this route takes {}",
                    expected()
                )
            } else if pairs[..i].iter().any(|(n, _)| n == name) {
                format!("`{name}` is given more than once; give it once")
            } else {
                continue;
            };
            return Err(Problem::new(StatusCode::BAD_REQUEST, problem.clone())
                .at(format!("query:{name}"), problem));
        }
        Ok(Self(pairs))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `true` or `false` parameter; absent is `false`.
    fn flag(&self, name: &str) -> ApiResult<bool> {
        match self.text(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(text) => {
                let problem =
                    format!("{text:?} is not a flag; write `{name}=true` or leave it out");
                Err(Problem::new(StatusCode::BAD_REQUEST, problem.clone())
                    .at(format!("query:{name}"), problem))
            }
        }
    }

    /// A VI id, when given.
    fn vi(&self) -> ApiResult<Option<ViId>> {
        let Some(text) = self.text("vi") else {
            return Ok(None);
        };
        text.parse::<u32>().map(|v| Some(ViId(v))).map_err(|_| {
            let problem = format!("{text:?} is not a VI id; write the VI's numeric id, like 1");
            Problem::new(StatusCode::BAD_REQUEST, problem.clone()).at("query:vi", problem)
        })
    }
}

#[utoipa::path(
    get,
    path = "/v1/vm-ports",
    tag = "vm-ports",
    summary = "The VM ports OVSDB reports",
    params(
        ("host" = Option<String>, Query, description = "only this host's"),
        ("vi" = Option<u32>, Query, description = "only this VI's"),
    ),
    responses(
        (status = 200, description = "the ports", body = Vec<VmPortInfo>),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn list_vm_ports(s: State, q: RawParams) -> ApiResult<Json<Vec<VmPortInfo>>> {
    let q = Params::of(q, &["host", "vi"])?;
    let host = q.text("host").map(|h| HostName(h.to_owned()));
    let vi = q.vi()?;
    let ports = s.call(move |c| c.vm_ports(host.as_ref(), vi)).await?;
    Ok(Json(ports.into_iter().map(VmPortInfo::from).collect()))
}

#[utoipa::path(
    get,
    path = "/v1/vm-ports/{host}/{name}",
    tag = "vm-ports",
    summary = "One VM port",
    params(
        ("host" = String, Path, description = "the host's name"),
        ("name" = String, Path, description = "the port's name"),
    ),
    responses(
        (status = 200, description = "the port", body = VmPortInfo),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn get_vm_port(
    s: State,
    PathArgs((host, name)): PathArgs<(String, String)>,
    q: RawParams,
) -> ApiResult<Json<VmPortInfo>> {
    Params::of(q, &[])?;
    let key = HostName(host.clone());
    let port_name = name.clone();
    let found = s
        .call(move |c| {
            c.vm_ports(Some(&key), None)
                .into_iter()
                .find(|p| p.name == port_name)
        })
        .await?;
    found.map(|p| Json(p.into())).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            format!("{host} has no VM port named {name:?} (a port with external_ids:iris-vi)"),
        )
        .or_at("path:name")
    })
}

impl From<LocationBody> for Location {
    fn from(l: LocationBody) -> Self {
        match l {
            LocationBody::Port { host, ofport } => Location::Port {
                host: HostName(host),
                ofport,
            },
            LocationBody::Gateway { gateway } => Location::BehindGateway {
                gateway: HostName(gateway),
            },
        }
    }
}

impl From<Location> for LocationBody {
    fn from(l: Location) -> Self {
        match l {
            Location::Port { host, ofport } => LocationBody::Port {
                host: host.0,
                ofport,
            },
            Location::BehindGateway { gateway } => LocationBody::Gateway { gateway: gateway.0 },
        }
    }
}

impl From<RegistryEntry> for EntryInfo {
    fn from(e: RegistryEntry) -> Self {
        Self {
            vi: e.key.vi.0,
            vlan: match e.key.vlan {
                Vlan::Untagged => None,
                Vlan::Tagged(v) => Some(v),
            },
            mac: e.key.mac.to_string(),
            location: e.entry.location.map(LocationBody::from),
            origin: e.entry.origin.as_str().into(),
            since_ms: e.entry.since.0,
            ips: e.ips,
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/registry",
    tag = "registry",
    summary = "Every registry entry",
    params(
        ("vi" = Option<u32>, Query, description = "only this VI's"),
    ),
    responses(
        (status = 200, description = "the entries", body = Vec<EntryInfo>),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn list_entries(s: State, q: RawParams) -> ApiResult<Json<Vec<EntryInfo>>> {
    let vi = Params::of(q, &["vi"])?.vi()?;
    let entries = s.call(move |c| c.registry_entries(vi)).await?;
    Ok(Json(entries.into_iter().map(EntryInfo::from).collect()))
}

/// `{vi}/{vlan}/{mac}` from the path, each part checked.
fn mac_key(vi: &str, vlan: &str, mac: &str) -> ApiResult<MacKey> {
    let vi = vi_id(vi, "vi")?;
    let vlan = match vlan {
        "untagged" => Vlan::Untagged,
        v => match v.parse::<u16>() {
            Ok(n @ 1..=4094) => Vlan::Tagged(n),
            _ => {
                return Err(
                    Problem::new(StatusCode::BAD_REQUEST, format!("{v:?} is not a VLAN"))
                        .at("path:vlan", "write 1-4094, or untagged"),
                )
            }
        },
    };
    let mac = mac.parse::<MacAddr>().map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, e.to_string()).at("path:mac", e.to_string())
    })?;
    Ok(MacKey { vi, vlan, mac })
}

#[utoipa::path(
    get,
    path = "/v1/registry/{vi}/{vlan}/{mac}",
    tag = "registry",
    summary = "One registry entry",
    params(
        ("vi" = u32, Path, description = "the VI's id"),
        ("vlan" = String, Path, description = "1-4094, or `untagged`"),
        ("mac" = String, Path, description = "the MAC, like 52:54:00:00:01:07"),
    ),
    responses(
        (status = 200, description = "the entry", body = EntryInfo),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not the JSON the route takes, or a field is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn get_entry(
    s: State,
    PathArgs((vi, vlan, mac)): PathArgs<(String, String, String)>,
    q: RawParams,
) -> ApiResult<Json<EntryInfo>> {
    Params::of(q, &[])?;
    let key = mac_key(&vi, &vlan, &mac)?;
    match s.call(move |c| c.registry_entry(&key)).await? {
        Some(e) => Ok(Json(e.into())),
        None => Err(Problem::from(RegistryError::NotFound {
            vi: key.vi,
            vlan: key.vlan,
            mac: key.mac,
        })),
    }
}

#[utoipa::path(
    put,
    path = "/v1/registry/{vi}/{vlan}/{mac}",
    tag = "registry",
    summary = "Places, moves or changes a MAC",
    params(
        ("vi" = u32, Path, description = "the VI's id"),
        ("vlan" = String, Path, description = "1-4094, or `untagged`"),
        ("mac" = String, Path, description = "the MAC, like 52:54:00:00:01:07"),
        ("take_ips" = Option<bool>, Query, description = "take IPs another MAC answers for"),
    ),
    request_body(content = EntryBody, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = EntryInfo),
        (status = 201, description = "added", body = EntryInfo),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it clashes with what exists, or something still uses it", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not labelled as JSON", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not the JSON the route takes, or a field is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down, or its store cannot commit now (an etcd cluster without quorum): nothing changed, retry later", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn put_entry(
    s: State,
    PathArgs((vi, vlan, mac)): PathArgs<(String, String, String)>,
    q: RawParams,
    Body(body): Body<EntryBody>,
) -> ApiResult<Response> {
    let take_ips = Params::of(q, &["take_ips"])?.flag("take_ips")?;
    let key = mac_key(&vi, &vlan, &mac)?;
    let spec = EntrySpec {
        key,
        location: body.location.map(Location::from),
        ips: body.ips,
    };
    let ips = spec.ips.clone();
    let created = s
        .call(move |c| c.put_registry_entry(&spec, take_ips))
        .await?
        .map_err(|e| {
            // Point at the IP at fault, not only at the list.
            let at = match &e {
                RegistryError::BadIp { ip, .. } | RegistryError::IpHeld { ip, .. } => {
                    ips.iter().position(|i| i == ip)
                }
                _ => None,
            };
            let mut p = Problem::from(e);
            if let (Some(i), Some(f)) = (at, p.errors.first_mut()) {
                f.pointer = format!("#/ips/{i}");
            }
            p
        })?;
    let now = s.call(move |c| c.registry_entry(&key)).await?;
    Ok(stored(created, now.map(EntryInfo::from)))
}

#[utoipa::path(
    delete,
    path = "/v1/registry/{vi}/{vlan}/{mac}",
    tag = "registry",
    summary = "Removes a MAC",
    params(
        ("vi" = u32, Path, description = "the VI's id"),
        ("vlan" = String, Path, description = "1-4094, or `untagged`"),
        ("mac" = String, Path, description = "the MAC, like 52:54:00:00:01:07"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such thing", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not the JSON the route takes, or a field is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down, or its store cannot commit now (an etcd cluster without quorum): nothing changed, retry later", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_entry(
    s: State,
    PathArgs((vi, vlan, mac)): PathArgs<(String, String, String)>,
    q: RawParams,
) -> ApiResult<StatusCode> {
    Params::of(q, &[])?;
    let key = mac_key(&vi, &vlan, &mac)?;
    s.call(move |c| c.delete_registry_entry(&key)).await??;
    Ok(StatusCode::NO_CONTENT)
}

/// Registry changes, moves and switch arrivals as they happen. A client
/// that falls behind is told how many events it missed (`lagged`).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    summary = "Registry changes, moves and switches as Server-Sent Events",
    responses(
        (status = 200, description = "a stream of events, each named for its `type`, its data one JSON object (`lagged` events carry a Lagged)", body = iris_schemas::northbound::NorthEvent, content_type = "text/event-stream"),
        (status = 400, description = "a path or query parameter is wrong", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no token, or one that matches no hash", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the controller is shutting down", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
async fn events(
    s: State,
    q: RawParams,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    Params::of(q, &[])?;
    let stream = BroadcastStream::new(s.subscribe()).map(|item| {
        Ok(match item {
            Ok(e) => Event::default()
                .event(e.name())
                .data(serde_json::to_string(&e).unwrap_or_default()),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(serde_json::to_string(&Lagged { missed: n }).unwrap_or_default()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub mod openapi;

#[cfg(test)]
mod tests;
