//! The broker's REST API (axum) under `/v1`, and its OpenAPI document.
//!
//! Every request but `GET /healthz` and `GET /v1/openapi.json` needs
//! `Authorization: Bearer <token>`: the admin token of the configuration,
//! or one the API made (admin or one provider). Objects of one provider
//! (flavors, VIs, nodes, operations) are invisible to another's token: a
//! foreign id is answered 404, as if it did not exist. Refusals are
//! `application/problem+json` with a pointer to the field at fault (the
//! controller's problem documents and body checks).

use crate::auth::{self, Caller};
use crate::compute::MAX_SSH_KEY;
use crate::placement::{place, Ask};
use crate::records::{
    flavor_key, may_see, paginate, transition, NodeEvent, NodeRecord, OperationRecord, PmRecord,
    Pool, TokenRecord,
};
use crate::service::{now_ms, random_hex, Broker};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use iris_controller::api::{Body, BodyShape, PathArgs, Problem};
use iris_controller::config::{check_name, check_plain_ovsdb_remote};
use iris_schemas::broker::*;
use iris_schemas::northbound::Lagged;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::{Stream, StreamExt};
use utoipa::OpenApi;

type St = State<Arc<Broker>>;
type ApiResult<T> = Result<T, Problem>;

/// Most nodes one request may ask for.
pub const MAX_NODES_PER_REQUEST: u32 = 100;
/// Items a page holds unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A body object of type `T` (the controller's [`Body`] wants the JSON
/// shape a type opens with).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Obj<T>(pub T);

impl<T> BodyShape for Obj<T> {}

pub fn problem(status: StatusCode, detail: impl Into<String>) -> Problem {
    Problem::new(status, detail)
}

/// A problem pointing at `pointer`.
pub fn problem_at(
    status: StatusCode,
    pointer: impl Into<String>,
    detail: impl Into<String>,
) -> Problem {
    let detail = detail.into();
    Problem::new(status, detail.clone()).at(pointer, detail)
}

/// A write of the records that failed: 503 when the
/// store is out of reach or this broker no longer active (a retry, or the
/// active broker, may take it), 500 otherwise.
fn internal(e: crate::store::StoreError) -> Problem {
    if e.unavailable {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the broker could not write its records ({}); nothing more was done, and what \
                 the request had recorded before this write stays: read it back, then retry \
                 (with the same Idempotency-Key where the route takes one)",
                e.message
            ),
        );
    }
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "the broker could not write its records: {e}; nothing more was done, and what the \
             request had recorded before this write stays: read it back"
        ),
    )
}

fn invalid(pointer: &str, detail: impl Into<String>) -> Problem {
    problem_at(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("#/{pointer}"),
        detail,
    )
}

fn not_found(what: &str, id: &str, param: &str) -> Problem {
    problem_at(
        StatusCode::NOT_FOUND,
        format!("path:{param}"),
        format!("no {what} {id:?} (or not yours)"),
    )
}

/// Query parameters, refused when unknown or malformed.
#[derive(Debug)]
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

impl Params {
    fn only(self, known: &[&str]) -> ApiResult<Self> {
        for k in self.0.keys() {
            if !known.contains(&k.as_str()) {
                return Err(problem_at(
                    StatusCode::BAD_REQUEST,
                    format!("query:{k}"),
                    format!("unknown query parameter {k:?}; this route takes {known:?}"),
                ));
            }
        }
        Ok(self)
    }

    fn flag(&self, name: &str) -> ApiResult<bool> {
        match self.0.get(name).map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(problem_at(
                StatusCode::BAD_REQUEST,
                format!("query:{name}"),
                format!("{v:?} is not true or false"),
            )),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `limit` and `marker`.
    fn page(&self) -> ApiResult<(usize, Option<String>)> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    problem_at(
                        StatusCode::BAD_REQUEST,
                        "query:limit",
                        format!("{v:?} is not a limit; use 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        Ok((limit, self.get("marker").map(str::to_owned)))
    }
}

const LIST: &[&str] = &["limit", "marker"];

fn admin_only(caller: &Caller) -> ApiResult<()> {
    match caller.scope {
        Scope::Admin => Ok(()),
        Scope::Provider(_) => Err(problem(
            StatusCode::FORBIDDEN,
            "only an admin token may do this; nothing was changed",
        )),
    }
}

/// The provider a caller acts for when it makes something.
fn acting_provider(caller: &Caller) -> ApiResult<String> {
    match &caller.scope {
        Scope::Provider(p) => Ok(p.clone()),
        Scope::Admin => Err(problem(
            StatusCode::FORBIDDEN,
            "flavors, VIs and nodes belong to a provider: use a token of that provider \
             (POST /v1/providers/{id}/tokens makes one)",
        )),
    }
}

/// What a record belongs to: the provider whose tokens may see it.
trait Owned {
    fn owner(&self) -> &str;
}

impl Owned for Provider {
    fn owner(&self) -> &str {
        &self.id
    }
}

impl Owned for Flavor {
    fn owner(&self) -> &str {
        &self.provider
    }
}

impl Owned for Vi {
    fn owner(&self) -> &str {
        &self.provider
    }
}

impl Owned for NodeRecord {
    fn owner(&self) -> &str {
        &self.node.provider
    }
}

impl Owned for OperationRecord {
    fn owner(&self) -> &str {
        &self.op.provider
    }
}

/// Record `id` of `map` if `caller` may see it; else a 404 at `path:param`
/// that does not tell another provider's object from none.
fn visible<'a, T: Owned>(
    map: &'a BTreeMap<String, T>,
    caller: &Caller,
    id: &str,
    what: &str,
    param: &str,
) -> ApiResult<&'a T> {
    map.get(id)
        .filter(|t| may_see(&caller.scope, t.owner()))
        .ok_or_else(|| not_found(what, id, param))
}

/// A page (`limit`, `marker` of `q`) of the records of `map` that `caller`
/// may see and `keep` keeps, each shown by `show`.
fn visible_page<T: Owned, U: Clone>(
    map: &BTreeMap<String, T>,
    caller: &Caller,
    q: &Params,
    keep: impl Fn(&T) -> bool,
    show: impl Fn(&T) -> U,
) -> ApiResult<Page<U>> {
    let (limit, marker) = q.page()?;
    let all = map
        .iter()
        .filter(|(_, t)| may_see(&caller.scope, t.owner()) && keep(t))
        .map(|(k, t)| (k.clone(), show(t)));
    Ok(paginate(all, marker.as_deref(), limit))
}

fn check_name_at(field: &str, name: &str) -> ApiResult<()> {
    check_name(name).map_err(|p| invalid(field, p))
}

/// The routes, authenticated.
pub fn router(broker: Arc<Broker>, admin: config_secret::Admin) -> Router {
    Router::new()
        .route("/v1/providers", get(list_providers).post(create_provider))
        .route(
            "/v1/providers/{id}",
            get(get_provider).delete(delete_provider),
        )
        .route(
            "/v1/providers/{id}/tokens",
            get(list_tokens).post(create_token),
        )
        .route("/v1/tokens/{id}", axum::routing::delete(delete_token))
        .route("/v1/pms", get(list_pms).post(create_pm))
        .route("/v1/pms/{name}", get(get_pm).delete(delete_pm))
        .route("/v1/flavors", get(list_flavors).post(create_flavor))
        .route("/v1/flavors/{name}", get(get_flavor).delete(delete_flavor))
        .route("/v1/vis", get(list_vis).post(create_vi))
        .route("/v1/vis/{id}", get(get_vi).delete(delete_vi))
        .route("/v1/nodes", get(list_nodes).post(request_nodes))
        .route("/v1/nodes/{id}", get(get_node).delete(delete_node))
        .route("/v1/nodes/{id}/migrate", axum::routing::post(migrate_node))
        .route("/v1/operations", get(list_operations))
        .route("/v1/operations/{id}", get(get_operation))
        .route("/v1/events", get(events))
        .layer(axum::middleware::from_fn_with_state(
            auth::Auth::new(broker.clone(), admin),
            auth::authenticate,
        ))
        .route("/healthz", get(healthz))
        .route("/v1/openapi.json", get(openapi_json))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(broker)
}

/// The admin token as the router takes it.
pub mod config_secret {
    /// SHA-256 of the configured admin token.
    #[derive(Debug, Clone, Copy)]
    pub struct Admin(pub [u8; 32]);
}

async fn route_not_found() -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        "no such route; GET /v1/openapi.json lists them all",
    )
}

async fn method_not_allowed() -> Problem {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method; GET /v1/openapi.json lists what each takes",
    )
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_text()).into_response()
}

/// The OpenAPI document, as served and checked in.
pub fn openapi_text() -> String {
    let mut doc = ApiDoc::openapi();
    doc.openapi = utoipa::openapi::OpenApiVersion::Version31;
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    open_flattened(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// A record that flattens the body it was made from (`Pm` holds a
/// `PmCreate`) is described as `allOf` that body's schema and its own
/// fields; the body's schema refuses unknown fields, as the API does, so
/// no record could fit both. Inside every `allOf` (pages of records
/// included) the body's schema is inlined without that refusal.
fn open_flattened(doc: &mut serde_json::Value) {
    let schemas = doc["components"]["schemas"].clone();
    open_all_of(doc, &schemas);
}

fn open_all_of(v: &mut serde_json::Value, schemas: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(parts)) = o.get_mut("allOf") {
                for part in parts.iter_mut() {
                    let name = part["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"));
                    if let Some(mut open) = name.map(|n| schemas[n].clone()) {
                        if let Some(o) = open.as_object_mut() {
                            o.remove("additionalProperties");
                        }
                        *part = open;
                    }
                }
            }
            o.values_mut().for_each(|x| open_all_of(x, schemas));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| open_all_of(x, schemas)),
        _ => {}
    }
}

// --- providers and tokens ---------------------------------------------------

#[utoipa::path(post, path = "/v1/providers", request_body = ProviderCreate,
    responses((status = 201, body = Provider), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn create_provider(
    s: St,
    Extension(caller): Extension<Caller>,
    Body(Obj(body)): Body<Obj<ProviderCreate>>,
) -> ApiResult<(StatusCode, Json<Provider>)> {
    admin_only(&caller)?;
    check_name_at("name", &body.name)?;
    let mut r = s.records.lock().await;
    if r.providers.values().any(|p| p.name == body.name) {
        return Err(problem_at(
            StatusCode::CONFLICT,
            "#/name",
            format!("a provider named {:?} exists", body.name),
        ));
    }
    let p = Provider {
        id: format!("pr-{}", random_hex(6)),
        name: body.name,
        created_ms: now_ms(),
    };
    r.put_provider(p.clone()).map_err(internal)?;
    Ok((StatusCode::CREATED, Json(p)))
}

#[utoipa::path(get, path = "/v1/providers", params(("limit" = Option<u32>, Query), ("marker" = Option<String>, Query)),
    responses((status = 200, body = Page<Provider>), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_providers(
    s: St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Page<Provider>>> {
    let q = q.only(LIST)?;
    let r = s.records.lock().await;
    visible_page(&r.providers, &caller, &q, |_| true, Provider::clone).map(Json)
}

#[utoipa::path(get, path = "/v1/providers/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Provider), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_provider(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<Json<Provider>> {
    q.only(&[])?;
    let r = s.records.lock().await;
    visible(&r.providers, &caller, &id, "provider", "id").map(|p| Json(p.clone()))
}

#[utoipa::path(delete, path = "/v1/providers/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn delete_provider(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<StatusCode> {
    q.only(&[])?;
    admin_only(&caller)?;
    let mut r = s.records.lock().await;
    if !r.providers.contains_key(&id) {
        return Err(not_found("provider", &id, "id"));
    }
    let vis: Vec<&String> = r
        .vis
        .values()
        .filter(|v| v.provider == id)
        .map(|v| &v.id)
        .collect();
    if !vis.is_empty() {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("the provider still has the VIs {vis:?}; delete them first"),
        ));
    }
    let owned: Vec<String> = r
        .tokens
        .values()
        .filter(|t| t.info.scope == Scope::Provider(id.clone()))
        .map(|t| t.info.id.clone())
        .chain(
            r.flavors
                .iter()
                .filter(|(_, f)| f.provider == id)
                .map(|(k, _)| k.clone()),
        )
        .collect();
    for k in owned {
        if r.tokens.contains_key(&k) {
            r.delete_token(&k).map_err(internal)?;
        } else {
            r.delete_flavor(&k).map_err(internal)?;
        }
    }
    r.delete_provider(&id).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/providers/{id}/tokens", params(("id" = String, Path)),
    responses((status = 201, body = TokenCreated), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn create_token(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let q = q.only(&["admin"])?;
    admin_only(&caller)?;
    let admin = q.flag("admin")?;
    if !s.records.lock().await.providers.contains_key(&id) && !admin {
        return Err(not_found("provider", &id, "id"));
    }
    let scope = if admin {
        Scope::Admin
    } else {
        Scope::Provider(id)
    };
    let token_id = format!("tk-{}", random_hex(6));
    let secret = auth::token_text(&token_id);
    let hash = auth::hash(&secret).await?;
    let info = TokenInfo {
        id: token_id,
        scope,
        created_ms: now_ms(),
    };
    s.records
        .lock()
        .await
        .put_token(TokenRecord {
            info: info.clone(),
            hash,
        })
        .map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            info,
            token: secret,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/providers/{id}/tokens", params(("id" = String, Path)),
    responses((status = 200, body = Page<TokenInfo>), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_tokens(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<Json<Page<TokenInfo>>> {
    let (limit, marker) = q.only(LIST)?.page()?;
    admin_only(&caller)?;
    let r = s.records.lock().await;
    if !r.providers.contains_key(&id) {
        return Err(not_found("provider", &id, "id"));
    }
    let all = r
        .tokens
        .values()
        .filter(|t| t.info.scope == Scope::Provider(id.clone()))
        .map(|t| (t.info.id.clone(), t.info.clone()));
    Ok(Json(paginate(all, marker.as_deref(), limit)))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn delete_token(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<StatusCode> {
    q.only(&[])?;
    admin_only(&caller)?;
    let mut r = s.records.lock().await;
    if !r.tokens.contains_key(&id) {
        return Err(not_found("token", &id, "id"));
    }
    r.delete_token(&id).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}

// --- PMs ----------------------------------------------------------------------

fn pm_out(r: &crate::records::Records, p: &PmRecord) -> Pm {
    Pm {
        spec: p.spec.clone(),
        used: r.used_on(&p.spec.name),
        nodes: u32::try_from(r.nodes_on_pm(&p.spec.name).len()).unwrap_or(u32::MAX),
        draining: p.draining,
    }
}

#[utoipa::path(post, path = "/v1/pms", request_body = PmCreate,
    responses((status = 201, body = Pm), (status = 200, description = "The same Pm exists already", body = Pm), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn create_pm(
    s: St,
    Extension(caller): Extension<Caller>,
    Body(Obj(spec)): Body<Obj<PmCreate>>,
) -> ApiResult<(StatusCode, Json<Pm>)> {
    admin_only(&caller)?;
    check_name_at("name", &spec.name)?;
    if spec.capacity.vcpus == 0 || spec.capacity.memory_mib == 0 {
        return Err(invalid(
            "capacity",
            "a PM needs at least one vCPU and some memory",
        ));
    }
    spec.underlay_ip.parse::<Ipv4Addr>().map_err(|_| {
        invalid(
            "underlay_ip",
            format!("{:?} is not an IPv4 address", spec.underlay_ip),
        )
    })?;
    check_plain_ovsdb_remote(&spec.ovsdb, "the broker's compute drivers")
        .map_err(|p| invalid("ovsdb", p))?;
    check_name_at("bridge", &spec.bridge)?;
    if !s.drivers.contains_key(spec.driver.as_str()) {
        let mut known: Vec<&str> = s.drivers.keys().copied().collect();
        known.sort_unstable();
        let why = match spec.driver.as_str() {
            "libvirt" if cfg!(feature = "libvirt") => {
                " (its configuration has no [libvirt] table: docs/libvirt.md)"
            }
            "libvirt" => " (it is built without the `libvirt` feature)",
            _ => "",
        };
        return Err(invalid(
            "driver",
            format!(
                "no compute driver {:?} in this broker{why}; use one of {known:?}",
                spec.driver
            ),
        ));
    }
    if let Some(e) = &spec.endpoint {
        if e.is_empty() || e.contains(char::is_whitespace) {
            return Err(invalid(
                "endpoint",
                "an endpoint is a namespace name or a URI, without spaces",
            ));
        }
    }
    let mut r = s.records.lock().await;
    if let Some(old) = r.pms.get(&spec.name) {
        if old.spec == spec {
            let out = pm_out(&r, old);
            return Ok((StatusCode::OK, Json(out)));
        }
        return Err(problem_at(
            StatusCode::CONFLICT,
            "#/name",
            format!(
                "a PM named {:?} is registered differently; deregister it first",
                spec.name
            ),
        ));
    }
    let rec = PmRecord {
        spec,
        draining: false,
    };
    r.put_pm(rec.clone()).map_err(internal)?;
    Ok((StatusCode::CREATED, Json(pm_out(&r, &rec))))
}

#[utoipa::path(get, path = "/v1/pms", params(("limit" = Option<u32>, Query), ("marker" = Option<String>, Query)),
    responses((status = 200, body = Page<Pm>), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_pms(
    s: St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Page<Pm>>> {
    let (limit, marker) = q.only(LIST)?.page()?;
    admin_only(&caller)?;
    let r = s.records.lock().await;
    let all = r.pms.values().map(|p| (p.spec.name.clone(), pm_out(&r, p)));
    Ok(Json(paginate(all, marker.as_deref(), limit)))
}

#[utoipa::path(get, path = "/v1/pms/{name}", params(("name" = String, Path)),
    responses((status = 200, body = Pm), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_pm(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(name): PathArgs<String>,
    q: Params,
) -> ApiResult<Json<Pm>> {
    q.only(&[])?;
    admin_only(&caller)?;
    let r = s.records.lock().await;
    r.pms
        .get(&name)
        .map(|p| Json(pm_out(&r, p)))
        .ok_or_else(|| not_found("PM", &name, "name"))
}

#[utoipa::path(delete, path = "/v1/pms/{name}", params(("name" = String, Path), ("drain" = Option<bool>, Query)),
    responses((status = 204), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn delete_pm(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(name): PathArgs<String>,
    q: Params,
) -> ApiResult<StatusCode> {
    let drain = q.only(&["drain"])?.flag("drain")?;
    admin_only(&caller)?;
    let mut r = s.records.lock().await;
    let Some(mut pm) = r.pms.get(&name).cloned() else {
        return Err(not_found("PM", &name, "name"));
    };
    let nodes = r.nodes_on_pm(&name);
    if nodes.is_empty() {
        r.delete_pm(&name).map_err(internal)?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if drain && !pm.draining {
        pm.draining = true;
        r.put_pm(pm).map_err(internal)?;
    }
    Err(problem_at(
        StatusCode::CONFLICT,
        "path:name",
        format!(
            "PM {name:?} holds the nodes {nodes:?}; {}",
            if drain {
                "it is draining now (no new node goes there): migrate or delete its nodes, then \
                 deregister it"
            } else {
                "migrate or delete them first, or pass ?drain=true to stop placing nodes there"
            }
        ),
    ))
}

// --- flavors ----------------------------------------------------------------

#[utoipa::path(post, path = "/v1/flavors", request_body = FlavorCreate,
    responses((status = 201, body = Flavor), (status = 200, description = "The same Flavor exists already", body = Flavor), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn create_flavor(
    s: St,
    Extension(caller): Extension<Caller>,
    Body(Obj(spec)): Body<Obj<FlavorCreate>>,
) -> ApiResult<(StatusCode, Json<Flavor>)> {
    let provider = acting_provider(&caller)?;
    check_name_at("name", &spec.name)?;
    if spec.vcpus == 0 {
        return Err(invalid("vcpus", "a node needs at least one vCPU"));
    }
    if spec.memory_mib == 0 {
        return Err(invalid("memory_mib", "a node needs some memory"));
    }
    let mut r = s.records.lock().await;
    let f = Flavor { spec, provider };
    if let Some(old) = r.flavors.get(&flavor_key(&f.provider, &f.spec.name)) {
        if *old == f {
            return Ok((StatusCode::OK, Json(f)));
        }
        return Err(problem_at(
            StatusCode::CONFLICT,
            "#/name",
            format!(
                "you have a flavor {:?} of another size; pick another name",
                f.spec.name
            ),
        ));
    }
    r.put_flavor(f.clone()).map_err(internal)?;
    Ok((StatusCode::CREATED, Json(f)))
}

#[utoipa::path(get, path = "/v1/flavors", params(("limit" = Option<u32>, Query), ("marker" = Option<String>, Query)),
    responses((status = 200, body = Page<Flavor>), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_flavors(
    s: St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Page<Flavor>>> {
    let q = q.only(LIST)?;
    let r = s.records.lock().await;
    visible_page(&r.flavors, &caller, &q, |_| true, Flavor::clone).map(Json)
}

fn own_flavor(r: &crate::records::Records, caller: &Caller, name: &str) -> ApiResult<Flavor> {
    let provider = acting_provider(caller)?;
    r.flavors
        .get(&flavor_key(&provider, name))
        .cloned()
        .ok_or_else(|| not_found("flavor", name, "name"))
}

#[utoipa::path(get, path = "/v1/flavors/{name}", params(("name" = String, Path)),
    responses((status = 200, body = Flavor), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_flavor(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(name): PathArgs<String>,
    q: Params,
) -> ApiResult<Json<Flavor>> {
    q.only(&[])?;
    let r = s.records.lock().await;
    own_flavor(&r, &caller, &name).map(Json)
}

#[utoipa::path(delete, path = "/v1/flavors/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn delete_flavor(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(name): PathArgs<String>,
    q: Params,
) -> ApiResult<StatusCode> {
    q.only(&[])?;
    let mut r = s.records.lock().await;
    let f = own_flavor(&r, &caller, &name)?;
    r.delete_flavor(&flavor_key(&f.provider, &name))
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}

// --- VIs --------------------------------------------------------------------

fn check_vi(spec: &ViCreate) -> ApiResult<()> {
    check_name_at("name", &spec.name)?;
    if let Some(n) = &spec.gateway_name {
        // The HaaS gateway's own check of a peer's name.
        check_name(n).map_err(|p| invalid("gateway_name", p))?;
    }
    if let Some(h) = &spec.gateway_token_hash {
        // The HaaS gateway's own check of a peer's token_hash.
        iris_controller::api_auth::parse_hash(h).map_err(|p| {
            invalid(
                "gateway_token_hash",
                p.replace("iris-controller hash-token", "iris-gateway hash-token"),
            )
        })?;
    }
    let gw = spec.gateway.as_str();
    let ok = gw.parse::<Ipv4Addr>().is_ok() || gw.parse::<std::net::SocketAddrV4>().is_ok();
    if !ok {
        return Err(invalid(
            "gateway",
            format!("{gw:?} is not the operator gateway's IP or IP:PORT"),
        ));
    }
    let VlanRange { first, last } = spec.vlans;
    if !(1..=4094).contains(&first) || !(1..=4094).contains(&last) || first > last {
        return Err(invalid(
            "vlans",
            format!("{first}-{last} is not a VLAN range; use first <= last, both in 1..=4094"),
        ));
    }
    Pool::of(&spec.addressing).map_err(|(f, d)| invalid(&f, d))?;
    if let Some(k) = &spec.ssh_public_key {
        let ok = k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-");
        if !ok || k.trim().chars().any(char::is_control) || k.split_whitespace().count() < 2 {
            return Err(invalid(
                "ssh_public_key",
                "not an OpenSSH public key line (e.g. \"ssh-ed25519 AAAA... you@host\")",
            ));
        }
        // Refused here rather than when a node lands on a libvirt PM: the
        // VI's nodes may go to any PM, and every driver must take the key.
        if k.trim().len() > MAX_SSH_KEY {
            return Err(invalid(
                "ssh_public_key",
                format!(
                    "{} bytes; at most {MAX_SSH_KEY} (a libvirt node takes the key on its \
                     kernel command line; an ed25519 or RSA-4096 key fits)",
                    k.trim().len()
                ),
            ));
        }
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/vis", request_body = ViCreate,
    responses((status = 201, body = Vi), (status = 200, description = "The same Vi exists already", body = Vi), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json"), (status = 502, body = ProblemDoc, content_type = "application/problem+json")))]
async fn create_vi(
    s: St,
    Extension(caller): Extension<Caller>,
    Body(Obj(spec)): Body<Obj<ViCreate>>,
) -> ApiResult<(StatusCode, Json<Vi>)> {
    let provider = acting_provider(&caller)?;
    check_vi(&spec)?;
    // Keys the controller already has (its own [[vi]], another broker's)
    // are never taken over.
    let elsewhere = s.controller.vi_ids().await.map_err(|e| {
        problem(
            StatusCode::BAD_GATEWAY,
            format!("cannot ask the controller which VIs it has, so no VI was made: {e}"),
        )
    })?;
    let vi = {
        let mut r = s.records.lock().await;
        if let Some(old) = r
            .vis
            .values()
            .find(|v| v.provider == provider && v.spec.name == spec.name)
        {
            if old.spec == spec {
                return Ok((StatusCode::OK, Json(r.vi_out(old))));
            }
            return Err(problem_at(
                StatusCode::CONFLICT,
                "#/name",
                format!(
                    "you have a VI named {:?} already, set up differently",
                    spec.name
                ),
            ));
        }
        let Some(key) = r.free_tunnel_key(s.first_tunnel_key, &elsewhere) else {
            return Err(problem(StatusCode::CONFLICT, "every tunnel key is taken"));
        };
        let mut vi = Vi {
            id: format!("vi-{}", random_hex(6)),
            provider,
            spec,
            tunnel_key: key,
            nodes: 0,
            haas_gateways: Vec::new(),
        };
        vi.haas_gateways = s.gateways.ends(&vi);
        // Recorded first, so the key is not handed out twice; taken back
        // if the controller refuses.
        r.put_vi(vi.clone()).map_err(internal)?;
        vi
    };
    if let Err(e) = s.controller.put_vi(vi.tunnel_key, &vi.id).await {
        let _ = s.records.lock().await.delete_vi(&vi.id);
        return Err(problem(
            StatusCode::BAD_GATEWAY,
            format!("the controller did not create the VI, so neither did the broker: {e}"),
        ));
    }
    if let Err(e) = s.gateways.put_vi(&vi).await {
        // Taken back in the order it was made; what fails to go is the
        // broker's reconciliation's to remove.
        if let Err(undo) = s.controller.delete_vi(vi.tunnel_key).await {
            tracing::warn!("{undo}");
        }
        let _ = s.records.lock().await.delete_vi(&vi.id);
        let status = match e.status {
            Some(409) => StatusCode::CONFLICT,
            Some(422) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_GATEWAY,
        };
        return Err(problem(
            status,
            format!("the HaaS gateway did not take the VI, so neither did the broker: {e}"),
        ));
    }
    Ok((StatusCode::CREATED, Json(vi)))
}

#[utoipa::path(get, path = "/v1/vis", params(("limit" = Option<u32>, Query), ("marker" = Option<String>, Query)),
    responses((status = 200, body = Page<Vi>), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_vis(
    s: St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Page<Vi>>> {
    let q = q.only(LIST)?;
    let r = s.records.lock().await;
    visible_page(&r.vis, &caller, &q, |_| true, |v| r.vi_out(v)).map(Json)
}

fn visible_vi(r: &crate::records::Records, caller: &Caller, id: &str, at: &str) -> ApiResult<Vi> {
    match visible(&r.vis, caller, id, "VI", at) {
        Ok(v) => Ok(r.vi_out(v)),
        // In a body, the field is at fault, not the route.
        Err(_) if at.starts_with('#') => Err(problem_at(
            StatusCode::UNPROCESSABLE_ENTITY,
            at,
            format!("no VI {id:?} (or not yours)"),
        )),
        Err(e) => Err(e),
    }
}

#[utoipa::path(get, path = "/v1/vis/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Vi), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_vi(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<Json<Vi>> {
    q.only(&[])?;
    let r = s.records.lock().await;
    visible_vi(&r, &caller, &id, "id").map(Json)
}

#[utoipa::path(delete, path = "/v1/vis/{id}", params(("id" = String, Path), ("force" = Option<bool>, Query)),
    responses((status = 204), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json"), (status = 502, body = ProblemDoc, content_type = "application/problem+json")))]
async fn delete_vi(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<StatusCode> {
    let force = q.only(&["force"])?.flag("force")?;
    let (vi, nodes) = {
        let r = s.records.lock().await;
        let vi = visible_vi(&r, &caller, &id, "id")?;
        (vi, r.nodes_of_vi(&id))
    };
    if !nodes.is_empty() {
        if !force {
            return Err(problem_at(
                StatusCode::CONFLICT,
                "path:id",
                format!(
                    "VI {id:?} still has the nodes {nodes:?}; delete them first, or pass \
                     ?force=true to delete them with it"
                ),
            ));
        }
        let op = start_delete(&s, &vi.provider, nodes, None, None, None).await?;
        s.0.clone().run_operation(op.op.id.clone()).await;
        let r = s.records.lock().await;
        let left = r.nodes_of_vi(&id);
        if !left.is_empty() {
            return Err(problem(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the nodes {left:?} could not be deleted (see operation {}); the VI stays",
                    op.op.id
                ),
            ));
        }
    }
    s.gateways.delete_vi(vi.tunnel_key).await.map_err(|e| {
        problem(
            StatusCode::BAD_GATEWAY,
            format!("the HaaS gateway did not remove the VI, so it stays: {e}"),
        )
    })?;
    s.controller.delete_vi(vi.tunnel_key).await.map_err(|e| {
        problem(
            StatusCode::BAD_GATEWAY,
            format!("the controller did not delete the VI, so it stays: {e}"),
        )
    })?;
    s.records.lock().await.delete_vi(&id).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}

// --- nodes and operations ----------------------------------------------------

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            problem_at(
                StatusCode::BAD_REQUEST,
                "header:Idempotency-Key",
                "an Idempotency-Key is 1-255 visible ASCII characters",
            )
        })?;
    Ok(Some(k.to_owned()))
}

/// The operation an `Idempotency-Key` already answered, if the request is
/// the same one; a key sent with another request is refused.
fn replayed(
    r: &crate::records::Records,
    provider: &str,
    key: Option<&str>,
    request: &str,
) -> ApiResult<Option<Response>> {
    let Some(o) = key.and_then(|k| r.operation_by_key(provider, k)) else {
        return Ok(None);
    };
    if o.request.as_deref().is_some_and(|q| q != request) {
        return Err(problem_at(
            StatusCode::UNPROCESSABLE_ENTITY,
            "header:Idempotency-Key",
            format!(
                "this key was sent with another request (operation {}); use a new key for a new \
                 request",
                o.op.id
            ),
        ));
    }
    Ok(Some(accepted(o.op.clone())))
}

fn accepted(op: Operation) -> Response {
    let location = format!("/v1/operations/{}", op.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(op),
    )
        .into_response()
}

fn random_mac() -> String {
    let b = random_hex(5);
    // Locally administered, unicast.
    let mut out = String::from("0a");
    for i in 0..5 {
        out.push(':');
        out.push_str(&b[2 * i..2 * i + 2]);
    }
    out
}

#[utoipa::path(post, path = "/v1/nodes", request_body = NodeRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = Operation, headers(("Location" = String))), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn request_nodes(
    s: St,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Body(Obj(req)): Body<Obj<NodeRequest>>,
) -> ApiResult<Response> {
    let provider = acting_provider(&caller)?;
    let key = idempotency_key(&headers)?;
    if req.count == 0 || req.count > MAX_NODES_PER_REQUEST {
        return Err(invalid(
            "count",
            format!("ask for 1 to {MAX_NODES_PER_REQUEST} nodes"),
        ));
    }
    if let Some(g) = &req.placement.group {
        check_name_at("placement/group", g)?;
    }
    if req.placement.policy.is_some() && req.placement.group.is_none() {
        return Err(invalid(
            "placement/policy",
            "a policy applies to a group: name one in placement.group",
        ));
    }
    let fingerprint = format!(
        "POST /v1/nodes {}",
        serde_json::to_string(&req).unwrap_or_default()
    );
    let op = {
        let mut r = s.records.lock().await;
        if let Some(done) = replayed(&r, &provider, key.as_deref(), &fingerprint)? {
            return Ok(done);
        }
        let vi = visible_vi(&r, &caller, &req.vi, "#/vi")?;
        let flavor = r
            .flavors
            .get(&flavor_key(&provider, &req.flavor))
            .cloned()
            .ok_or_else(|| invalid("flavor", format!("you have no flavor {:?}", req.flavor)))?;
        let size = Capacity {
            vcpus: flavor.spec.vcpus,
            memory_mib: flavor.spec.memory_mib,
            disk_gib: flavor.spec.disk_gib,
        };
        let group_pms = req
            .placement
            .group
            .as_deref()
            .map(|g| r.group_pms(&provider, g, None))
            .unwrap_or_default();
        let ask = Ask {
            size,
            count: req.count,
            pm: req.placement.pm.clone(),
            policy: req.placement.policy,
            group_pms,
        };
        let pms = place(&r.pm_views(), &ask).map_err(|e| match e {
            crate::placement::PlacementError::UnknownPm(_) => {
                invalid("placement/pm", e.to_string())
            }
            crate::placement::PlacementError::NoRoom { .. } => {
                problem_at(StatusCode::CONFLICT, "#/count", e.to_string())
            }
        })?;
        let (mut macs, taken) = r.vi_addresses(&vi.id);
        let pool = Pool::of(&vi.spec.addressing).map_err(|(f, d)| invalid(&f, d))?;
        let ips = match &pool {
            None => vec![None; pms.len()],
            Some(p) => p
                .allocate(&taken, pms.len())
                .ok_or_else(|| {
                    problem_at(
                        StatusCode::CONFLICT,
                        "#/count",
                        format!("the VI's pool has fewer than {} free addresses", pms.len()),
                    )
                })?
                .into_iter()
                .map(|ip| Some(format!("{ip}/{}", p.prefix)))
                .collect(),
        };
        let op_id = new_operation_id();
        let mut ids = Vec::new();
        let mut nodes = Vec::new();
        for (pm, ip) in pms.into_iter().zip(ips) {
            let mut mac = random_mac();
            while !macs.insert(mac.clone()) {
                mac = random_mac();
            }
            let id = random_hex(6);
            ids.push(id.clone());
            nodes.push(NodeRecord {
                node: Node {
                    id,
                    provider: provider.clone(),
                    vi: vi.id.clone(),
                    flavor: req.flavor.clone(),
                    state: NodeState::Building,
                    last_error: None,
                    pm,
                    group: req.placement.group.clone(),
                    mac,
                    management_address: ip
                        .as_deref()
                        .and_then(|c| c.split('/').next())
                        .map(str::to_owned),
                    ip,
                    ssh_user: "iris".into(),
                    nested_virtualization: false,
                    bridge: crate::compute::netns::NODE_BRIDGE.into(),
                    vlan_trunk: vi.spec.vlans,
                    mtu: s.node_mtu,
                },
                size,
                operation: op_id.clone(),
                policy: req.placement.policy,
                migrating_to: None,
            });
        }
        let op = running(
            op_id,
            &provider,
            OperationKind::CreateNodes,
            ids,
            key,
            Some(fingerprint),
        );
        // The operation first: a crash after it finds the nodes to make.
        r.put_operation(op.clone()).map_err(internal)?;
        for n in nodes {
            r.put_node(n).map_err(internal)?;
        }
        op
    };
    tokio::spawn(s.0.clone().run_operation(op.op.id.clone()));
    Ok(accepted(op.op))
}

fn new_operation_id() -> String {
    format!("op-{}", random_hex(6))
}

/// A new operation of `kind` on `nodes`, running, none done yet.
fn running(
    id: String,
    provider: &str,
    kind: OperationKind,
    nodes: Vec<String>,
    idempotency_key: Option<String>,
    request: Option<String>,
) -> OperationRecord {
    let now = now_ms();
    OperationRecord {
        op: Operation {
            id,
            provider: provider.to_owned(),
            kind,
            status: OperationStatus::Running,
            done: 0,
            total: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
            nodes,
            error: None,
            drain: None,
            created_ms: now,
            updated_ms: now,
        },
        idempotency_key,
        request,
    }
}

/// Records a delete operation for `nodes` (marked deleting, or draining
/// when `drain` says how long their guests have to leave).
async fn start_delete(
    s: &Broker,
    provider: &str,
    nodes: Vec<String>,
    key: Option<String>,
    request: Option<String>,
    drain: Option<Drain>,
) -> ApiResult<OperationRecord> {
    let mut r = s.records.lock().await;
    let mut op = running(
        new_operation_id(),
        provider,
        OperationKind::DeleteNodes,
        nodes.clone(),
        key,
        request,
    );
    let (event, fallback) = match drain {
        Some(_) => (NodeEvent::DrainAsked, NodeState::Draining),
        None => (NodeEvent::DeleteAsked, NodeState::Deleting),
    };
    op.op.drain = drain;
    r.put_operation(op.clone()).map_err(internal)?;
    for id in &nodes {
        if let Some(mut n) = r.nodes.get(id).cloned() {
            n.node.state = transition(n.node.state, event).unwrap_or(fallback);
            n.operation = op.op.id.clone();
            r.put_node(n).map_err(internal)?;
        }
    }
    Ok(op)
}

#[utoipa::path(get, path = "/v1/nodes", params(("vi" = Option<String>, Query), ("limit" = Option<u32>, Query), ("marker" = Option<String>, Query)),
    responses((status = 200, body = Page<Node>), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_nodes(
    s: St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Page<Node>>> {
    let q = q.only(&["limit", "marker", "vi"])?;
    let vi = q.get("vi").map(str::to_owned);
    let r = s.records.lock().await;
    let keep = |n: &NodeRecord| vi.as_ref().is_none_or(|v| &n.node.vi == v);
    visible_page(&r.nodes, &caller, &q, keep, |n| n.node.clone()).map(Json)
}

#[utoipa::path(get, path = "/v1/nodes/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Node), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_node(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<Json<Node>> {
    q.only(&[])?;
    let r = s.records.lock().await;
    visible(&r.nodes, &caller, &id, "node", "id").map(|n| Json(n.node.clone()))
}

/// How long a draining delete waits for the node's guests unless
/// `drain_timeout_secs` says otherwise, and at most.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u32 = 600;
pub const MAX_DRAIN_TIMEOUT_SECS: u32 = 86_400;

/// `drain` and `drain_timeout_secs` of a node's delete: how long its
/// guests have to leave, or `None` for a plain delete.
fn drain_asked(q: &Params) -> ApiResult<Option<u32>> {
    let drain = q.flag("drain")?;
    let Some(v) = q.get("drain_timeout_secs") else {
        return Ok(drain.then_some(DEFAULT_DRAIN_TIMEOUT_SECS));
    };
    let at = "query:drain_timeout_secs";
    let secs = v.parse::<u32>().map_err(|_| {
        problem_at(
            StatusCode::BAD_REQUEST,
            at,
            format!("{v:?} is not a number of seconds"),
        )
    })?;
    if !(1..=MAX_DRAIN_TIMEOUT_SECS).contains(&secs) {
        return Err(problem_at(
            StatusCode::UNPROCESSABLE_ENTITY,
            at,
            format!("{secs} is out of range; a drain waits 1 to {MAX_DRAIN_TIMEOUT_SECS} seconds"),
        ));
    }
    if !drain {
        return Err(problem_at(
            StatusCode::UNPROCESSABLE_ENTITY,
            at,
            "drain_timeout_secs goes with drain=true; a plain delete does not wait",
        ));
    }
    Ok(Some(secs))
}

/// Deletes a node; with `drain=true`, first waits (`draining`) until the
/// controller places no guest MAC on the node's port, for at most
/// `drain_timeout_secs`, after which the node is active again and the
/// operation fails naming the MACs left.
#[utoipa::path(delete, path = "/v1/nodes/{id}", params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header),
        ("drain" = Option<bool>, Query, description = "wait until the operator's cloud has moved the node's guests away"),
        ("drain_timeout_secs" = Option<u32>, Query, minimum = 1, maximum = 86400, description = "how long a drain waits (600 unless given)")),
    responses((status = 202, body = Operation, headers(("Location" = String))), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn delete_node(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    headers: HeaderMap,
    q: Params,
) -> ApiResult<Response> {
    let q = q.only(&["drain", "drain_timeout_secs"])?;
    let drain_secs = drain_asked(&q)?;
    let key = idempotency_key(&headers)?;
    let fingerprint = match drain_secs {
        None => format!("DELETE /v1/nodes/{id}"),
        Some(secs) => format!("DELETE /v1/nodes/{id}?drain=true&drain_timeout_secs={secs}"),
    };
    let provider = {
        let r = s.records.lock().await;
        let n = visible(&r.nodes, &caller, &id, "node", "id")?;
        if let Some(done) = replayed(&r, &n.node.provider, key.as_deref(), &fingerprint)? {
            return Ok(done);
        }
        // Already being deleted, or draining to be: the operation doing it
        // is the answer.
        if matches!(n.node.state, NodeState::Deleting | NodeState::Draining) {
            if let Some(o) = r.operations.get(&n.operation) {
                return Ok(accepted(o.op.clone()));
            }
        }
        let event = match drain_secs {
            Some(_) => NodeEvent::DrainAsked,
            None => NodeEvent::DeleteAsked,
        };
        if let Err(why) = transition(n.node.state, event) {
            return Err(problem_at(
                StatusCode::CONFLICT,
                "path:id",
                format!("node {id}: {why} ({})", n.operation),
            ));
        }
        n.node.provider.clone()
    };
    let drain = drain_secs.map(|secs| Drain {
        timeout_secs: secs,
        deadline_ms: now_ms() + u64::from(secs) * 1000,
        guest_macs_remaining: 0,
        guest_macs: Vec::new(),
    });
    let op = start_delete(&s, &provider, vec![id], key, Some(fingerprint), drain).await?;
    tokio::spawn(s.0.clone().run_operation(op.op.id.clone()));
    Ok(accepted(op.op))
}

#[utoipa::path(post, path = "/v1/nodes/{id}/migrate", request_body = NodeMigrate,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = Operation, headers(("Location" = String))),
        (status = 200, description = "The node is on that PM already", body = Node),
        (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn migrate_node(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    headers: HeaderMap,
    q: Params,
    Body(Obj(req)): Body<Obj<NodeMigrate>>,
) -> ApiResult<Response> {
    q.only(&[])?;
    let key = idempotency_key(&headers)?;
    let fingerprint = format!(
        "POST /v1/nodes/{id}/migrate {}",
        serde_json::to_string(&req).unwrap_or_default()
    );
    let mut r = s.records.lock().await;
    let n = visible(&r.nodes, &caller, &id, "node", "id")?.clone();
    if let Some(done) = replayed(&r, &n.node.provider, key.as_deref(), &fingerprint)? {
        return Ok(done);
    }
    if req.pm.as_deref() == Some(n.node.pm.as_str()) {
        return Ok(Json(n.node).into_response());
    }
    // Already moving: the operation doing it is the answer, if it goes
    // where this request asks.
    if n.node.state == NodeState::Migrating
        && req
            .pm
            .as_ref()
            .is_none_or(|p| n.migrating_to.as_ref() == Some(p))
    {
        if let Some(o) = r.operations.get(&n.operation) {
            return Ok(accepted(o.op.clone()));
        }
    }
    let conflict = |why: String| problem_at(StatusCode::CONFLICT, "path:id", why);
    if n.node.state != NodeState::Active {
        let why = transition(n.node.state, NodeEvent::MigrateAsked)
            .err()
            .unwrap_or("the node is migrating elsewhere");
        return Err(conflict(format!("node {id}: {why} ({})", n.operation)));
    }
    let driver_kind = r
        .pms
        .get(&n.node.pm)
        .map(|p| p.spec.driver.clone())
        .unwrap_or_default();
    let driver = s
        .drivers
        .get(driver_kind.as_str())
        .ok_or_else(|| conflict(format!("node {id}: no compute driver {driver_kind:?}")))?;
    driver
        .can_migrate()
        .map_err(|why| conflict(format!("node {id} cannot migrate: {why}")))?;
    if let Some(p) = &req.pm {
        match r.pms.get(p) {
            None => return Err(invalid("pm", format!("no PM named {p:?}"))),
            Some(pm) if pm.spec.driver != driver_kind => {
                return Err(invalid(
                    "pm",
                    format!(
                        "PM {p:?} runs the {} driver and the node's PM the {driver_kind} driver;                          a node moves only between PMs of one driver",
                        pm.spec.driver
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    // The node's own PM and PMs of another driver are no candidates; its
    // group's other nodes keep their policy.
    let candidates: Vec<_> = r
        .pm_views()
        .into_iter()
        .filter(|v| v.name != n.node.pm)
        .filter(|v| {
            r.pms
                .get(&v.name)
                .is_some_and(|p| p.spec.driver == driver_kind)
        })
        .collect();
    let ask = Ask {
        size: n.size,
        count: 1,
        pm: req.pm.clone(),
        policy: n.policy,
        group_pms: n
            .node
            .group
            .as_deref()
            .map(|g| r.group_pms(&n.node.provider, g, Some(&id)))
            .unwrap_or_default(),
    };
    let to = place(&candidates, &ask)
        .map_err(|e| problem_at(StatusCode::CONFLICT, "#/pm", e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| conflict(format!("node {id}: placement found no PM")))?;
    let op = running(
        new_operation_id(),
        &n.node.provider,
        OperationKind::MigrateNode,
        vec![id.clone()],
        key,
        Some(fingerprint),
    );
    r.put_operation(op.clone()).map_err(internal)?;
    let mut moving = n;
    moving.node.state = NodeState::Migrating;
    moving.node.last_error = None;
    moving.migrating_to = Some(to);
    moving.operation = op.op.id.clone();
    r.put_node(moving).map_err(internal)?;
    drop(r);
    tokio::spawn(s.0.clone().run_operation(op.op.id.clone()));
    Ok(accepted(op.op))
}

#[utoipa::path(get, path = "/v1/operations", params(("limit" = Option<u32>, Query), ("marker" = Option<String>, Query)),
    responses((status = 200, body = Page<Operation>), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_operations(
    s: St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Json<Page<Operation>>> {
    let q = q.only(LIST)?;
    let r = s.records.lock().await;
    visible_page(&r.operations, &caller, &q, |_| true, |o| o.op.clone()).map(Json)
}

#[utoipa::path(get, path = "/v1/operations/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Operation), (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_operation(
    s: St,
    Extension(caller): Extension<Caller>,
    PathArgs(id): PathArgs<String>,
    q: Params,
) -> ApiResult<Json<Operation>> {
    q.only(&[])?;
    let r = s.records.lock().await;
    visible(&r.operations, &caller, &id, "operation", "id").map(|o| Json(o.op.clone()))
}

/// Every change of a node, VI or operation the caller may see (all of
/// them for an admin), as Server-Sent Events named for their `type`, from
/// the moment of the request on. A reader that falls behind is told how
/// many events it missed (`lagged`).
#[utoipa::path(get, path = "/v1/events",
    responses((status = 200, description = "a stream of events, each named for its `type`, its data one JSON object (`lagged` events carry a Lagged)", body = BrokerEvent, content_type = "text/event-stream"),
        (status = "4XX", body = ProblemDoc, content_type = "application/problem+json")))]
async fn events(
    s: St,
    Extension(caller): Extension<Caller>,
    q: Params,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    q.only(&[])?;
    let rx = s.records.lock().await.subscribe();
    let scope = caller.scope;
    let stream = BroadcastStream::new(rx).filter_map(move |item| match item {
        Ok(e) => may_see(&scope, e.provider()).then(|| {
            Ok(Event::default()
                .event(e.name())
                .data(serde_json::to_string(&e).unwrap_or_default()))
        }),
        Err(BroadcastStreamRecvError::Lagged(n)) => Some(Ok(Event::default()
            .event("lagged")
            .data(serde_json::to_string(&Lagged { missed: n }).unwrap_or_default()))),
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Iris HaaS broker", description = "iris-api: providers, PMs, flavors, VIs, L1 nodes and operations (docs/broker.md)."),
    paths(
        healthz, create_provider, list_providers, get_provider, delete_provider,
        create_token, list_tokens, delete_token,
        create_pm, list_pms, get_pm, delete_pm,
        create_flavor, list_flavors, get_flavor, delete_flavor,
        create_vi, list_vis, get_vi, delete_vi,
        request_nodes, list_nodes, get_node, delete_node, migrate_node,
        list_operations, get_operation, events,
    ),
    components(schemas(ProblemDoc, FieldProblemDoc, Scope, Lagged)),
    modifiers(&BearerAuth, &Standby),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Every route may answer 503 where brokers share an etcd store: a
/// standby refuses everything (`active.rs`), and the active broker a write
/// its store cannot take now.
struct Standby;

impl utoipa::Modify for Standby {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let unavailable = ResponseBuilder::new()
            .description(
                "With an etcd store ([cluster]): this broker is a standby (the detail names the \
                 active broker and its API; Retry-After: 1; nothing was changed), or the store \
                 cannot take a write now (no quorum): the detail says what the request had \
                 recorded and whether the last write's outcome is unknown; read back before \
                 retrying.",
            )
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemDoc")))
                    .build(),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(|| unavailable.clone().into());
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
