//! The API's OpenAPI 3.1 document, generated (utoipa) from the route
//! annotations in [`super`] and the body types of `iris-schemas`, served at
//! `GET /v1/openapi.json` and checked in at `schemas/openapi/controller.json`.

use super::*;
use iris_schemas::northbound::{NorthEvent, Problem as ProblemDocument, SeedRow};
use std::sync::LazyLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Iris controller northbound API",
        description = "The controller's REST API: hosts, VIs, the registry of where every MAC \
                       lives, and its changes as Server-Sent Events. Every refusal is an RFC 9457 \
                       problem document. See docs/api.md."
    ),
    paths(
        healthz,
        metrics,
        openapi_json,
        list_hosts,
        get_host,
        put_host,
        delete_host,
        list_vis,
        get_vi,
        put_vi,
        delete_vi,
        seed_vi,
        list_vm_ports,
        get_vm_port,
        list_entries,
        get_entry,
        put_entry,
        delete_entry,
        events,
    ),
    components(schemas(ProblemDocument, NorthEvent, Lagged, SeedRow)),
    modifiers(&BearerToken),
    security(("bearer" = [])),
)]
struct ControllerApi;

/// The `bearer` scheme of `[api_auth]`: a token whose argon2 hash the
/// configuration holds.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The document, as served and checked in.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ControllerApi::openapi()).unwrap_or_default()
}

/// Generated once: it depends on nothing but the code.
static DOCUMENT: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&document()).unwrap_or_default());

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "health",
    summary = "This document",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the OpenAPI 3.1 document of this API", body = Object),
        (status = 401, description = "no token, or one that matches no hash (when the route is not open)", body = iris_schemas::northbound::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
}

#[cfg(test)]
pub(super) mod tests;
