//! The checked-in OpenAPI document is the one the code generates:
//! `IRIS_BLESS=1 cargo test -p iris-api --test openapi` rewrites it.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn the_checked_in_openapi_document_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi/broker.json");
    let generated = iris_api::api::openapi_text();
    if std::env::var_os("IRIS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} differs from what the code generates; run `IRIS_BLESS=1 cargo test -p iris-api \
         --test openapi` and commit the result",
        path.display()
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/nodes"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Node"].is_object());
}
