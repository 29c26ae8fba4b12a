//! RFC 9457 problem documents: every refusal of the API.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use utoipa::ToSchema;

/// One place in the request that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldProblem {
    /// A JSON pointer into the body (`#/location/ofport`), or the path or
    /// query parameter (`path:vlan`, `query:vi`).
    pub pointer: String,
    pub detail: String,
}

/// An RFC 9457 problem document, served as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: Cow<'static, str>,
    /// The status's reason phrase.
    #[schema(value_type = String)]
    pub title: Cow<'static, str>,
    pub status: u16,
    /// What is wrong and what to do instead.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}
