//! The document is checked against the code it describes: the checked-in
//! copies against what is generated, its routes against what the router
//! serves, and (through [`check_exchange`], which every API test's request
//! goes through) every answer of the API tests against its schema.

use super::*;
use axum::body::Body as HttpBody;
use iris_schemas::northbound::generated::check_or_bless;
use std::path::{Path, PathBuf};
use tower::ServiceExt;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn the_checked_in_documents_are_what_the_code_generates() {
    let mut failed = Vec::new();
    for (path, generated) in [
        ("schemas/openapi/controller.json", document()),
        (
            "schemas/config/controller.schema.json",
            crate::config::json_schema(),
        ),
    ] {
        if let Err(e) = check_or_bless(&repo_file(path), &generated) {
            failed.push(e);
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A control loop with nothing configured, running on its own task.
fn running_control() -> ControlHandle {
    let parts = crate::control::Control::start(
        Vec::new(),
        Vec::new(),
        Registry::new(),
        std::sync::Arc::new(crate::metrics::Metrics::default()),
    );
    let (control, inputs, senders) = (parts.control, parts.inputs, parts.senders);
    tokio::spawn(async move {
        let _senders = senders;
        let _ = control
            .run(inputs, tokio_util::sync::CancellationToken::new())
            .await;
    });
    parts.handle
}

/// `(path template, method)` of every operation in the document.
fn documented() -> Vec<(String, String)> {
    let doc = document();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.push((path.clone(), method.to_ascii_uppercase()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn every_route_served_is_documented_and_every_documented_one_is_served() {
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .split(", ")
                .map(|m| ((*path).to_owned(), m.to_owned()))
        })
        .collect();
    served.sort();
    assert_eq!(documented(), served);
    // ROUTES is held to the router by the 405 test; here each documented
    // operation is also asked of the router itself, which must route it
    // (not answer with its fallback 404 or a 405).
    let app = router(running_control());
    for (path, method) in documented() {
        if path == "/v1/events" {
            continue; // a stream that does not end
        }
        let uri = path
            .replace("{name}", "pm9")
            .replace("{host}", "pm9")
            .replace("{id}", "9")
            .replace("{vi}", "9")
            .replace("{vlan}", "10")
            .replace("{mac}", "02:00:00:00:00:09");
        let req = axum::http::Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .body(HttpBody::empty())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && !text.contains("no such route"),
            "{method} {uri}: {status} {text}"
        );
    }
}

#[tokio::test]
async fn the_served_document_is_the_generated_one_and_open_by_default() {
    let hash = crate::api_auth::parse_hash(
        &crate::api_auth::hash_token("t0ken-for-the-openapi-test").expect("hash"),
    )
    .expect("parse");
    let app = crate::api_auth::guarded(
        router(running_control()),
        crate::api_auth::ApiAuth::new(vec![hash], crate::api_auth::default_open_routes()),
    );
    let req = axum::http::Request::get("/v1/openapi.json")
        .body(HttpBody::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let served: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(served, document());
    assert_eq!(served["openapi"], "3.1.0");
}

/// The schema of what `method path` answers with `status` as `media`,
/// with the document's components beside it so that its references
/// resolve; an error when the document does not say the API may answer so.
fn response_schema(
    method: &str,
    path: &str,
    status: u16,
    media: &str,
) -> Result<serde_json::Value, String> {
    static DOC: LazyLock<serde_json::Value> = LazyLock::new(document);
    let doc = &*DOC;
    let segments: Vec<&str> = path.split('/').collect();
    let item = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(template, _)| {
            let t: Vec<&str> = template.split('/').collect();
            t.len() == segments.len()
                && t.iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
        })
        .map(|(_, item)| item);
    let operation = item.and_then(|i| i.get(method.to_ascii_lowercase()));
    let content = match operation {
        Some(op) => op["responses"]
            .get(status.to_string())
            .ok_or_else(|| format!("the document gives {method} {path} no {status} answer"))?
            .get("content"),
        // Routing refusals (no such route, a method it does not take) and
        // refusals ahead of routing are problem documents.
        None => {
            return Ok(problem_schema(doc));
        }
    };
    let Some(content) = content else {
        return Err(format!(
            "the document gives {method} {path}'s {status} no body, but it has one ({media})"
        ));
    };
    let (_, body) = content
        .as_object()
        .into_iter()
        .flatten()
        .find(|(m, _)| m.split(';').next().map(str::trim) == Some(media))
        .ok_or_else(|| {
            format!("the document gives {method} {path}'s {status} no {media} body: {content}")
        })?;
    let mut schema = body["schema"].clone();
    if let Some(s) = schema.as_object_mut() {
        s.insert("components".into(), doc["components"].clone());
    }
    Ok(schema)
}

fn problem_schema(doc: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "$ref": "#/components/schemas/Problem",
        "components": doc["components"].clone(),
    })
}

/// Whether an answer of the API is one its document allows: its status
/// listed for the route, its content type given, its JSON body valid
/// against the schema. Every request of the API tests is checked so.
pub(crate) fn check_exchange(
    method: &str,
    uri: &str,
    status: u16,
    content_type: &str,
    body: &str,
) -> Result<(), String> {
    if method == "HEAD" {
        return Ok(());
    }
    let path = uri.split('?').next().unwrap_or(uri);
    let media = content_type.split(';').next().unwrap_or("").trim();
    if body.is_empty() {
        // A 204, or a stream cut short: the status is checked.
        return response_schema(method, path, status, media)
            .map(drop)
            .or_else(|e| {
                if e.contains("no body") {
                    Ok(())
                } else {
                    Err(e)
                }
            });
    }
    let schema = response_schema(method, path, status, media)?;
    if !media.ends_with("json") {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("{method} {uri}: {status} with a body that is not JSON: {e}"))?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| format!("{method} {path}: the document's schema does not compile: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {uri} answered {status} with a body its schema refuses: {}\nbody: {body}",
            problems.join("; ")
        ))
    }
}

#[test]
fn an_answer_the_document_does_not_allow_is_caught() {
    let entry = r#"{"vi":1,"vlan":null,"mac":"02:00:00:00:00:01","location":null,"origin":"api","since_ms":1,"ips":[]}"#;
    check_exchange(
        "GET",
        "/v1/registry/1/untagged/02:00:00:00:00:01",
        200,
        "application/json",
        entry,
    )
    .expect("a real entry");
    for (status, body) in [
        (200, entry.replace("\"since_ms\":1", "\"since_ms\":\"1\"")),
        (200, entry.replace("\"vi\":1,", "")),
        (
            200,
            entry.replace("null,\"origin\"", "{\"kind\":\"moon\"},\"origin\""),
        ),
        (418, entry.to_owned()),
    ] {
        assert!(
            check_exchange(
                "GET",
                "/v1/registry/1/untagged/02:00:00:00:00:01",
                status,
                "application/json",
                &body,
            )
            .is_err(),
            "{status} {body}"
        );
    }
    // A refusal must be a problem document.
    assert!(check_exchange(
        "PATCH",
        "/v1/hosts",
        405,
        "application/problem+json",
        r#"{"type":"about:blank","title":"Method Not Allowed","status":405}"#,
    )
    .is_err());
}

/// The configuration files Iris ships or writes (the CLI tests' file, the
/// testbed's) are valid under the checked-in schema, and a misspelt key is
/// not.
#[test]
fn the_configuration_schema_takes_real_files_and_refuses_unknown_keys() {
    let schema = crate::config::json_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let as_json = |text: &str| -> serde_json::Value { toml::from_str(text).expect("TOML") };
    let shipped = std::fs::read_to_string(repo_file("controller/tests/data/check-config.toml"))
        .expect("the CLI tests' configuration");
    let mut testbed = iris_testbed::controller::ControllerConfig::new(
        "/run/x/of.sock".into(),
        "/run/x/store".into(),
    );
    testbed
        .vis
        .push(iris_testbed::controller::ViEntry::new(1, "acme", 1001));
    for text in [shipped.clone(), testbed.to_toml()] {
        let errors: Vec<String> = validator
            .iter_errors(&as_json(&text))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{text}");
        // The controller may refuse what the schema cannot see (a seed
        // file that is not there), never a key or a type.
        let parsed = crate::config::Config::parse(&text, Path::new("/nonexistent"));
        assert!(
            !matches!(parsed, Err(crate::config::ParseError::Syntax(_))),
            "{parsed:?}"
        );
    }
    for bad in [
        shipped.replace("gre_key = 1001", "gre_kee = 1001"),
        shipped.replace("plain_openflow = true", "plain_openflow = \"yes\""),
        shipped.replace("role = \"compute\"", "role = \"storage\""),
    ] {
        assert!(!validator.is_valid(&as_json(&bad)), "{bad}");
        let parsed = crate::config::Config::parse(&bad, Path::new("/nonexistent"));
        assert!(
            matches!(parsed, Err(crate::config::ParseError::Syntax(_))),
            "the controller refuses it too: {parsed:?}"
        );
    }
}

/// Every event of the stream is named for its `type` and its data is
/// valid against the schema the document gives `/v1/events`.
#[tokio::test]
async fn every_event_streamed_fits_the_documented_schema() {
    let app = router(running_control());
    let send = |method: &'static str, uri: &'static str, body: &'static str| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(HttpBody::from(body))
                .expect("request");
            let status = app.oneshot(req).await.expect("answer").status();
            assert!(status.is_success(), "{method} {uri}: {status}");
        }
    };
    let req = axum::http::Request::get("/v1/events")
        .body(HttpBody::empty())
        .expect("request");
    let mut stream = app.clone().oneshot(req).await.expect("answer").into_body();
    send(
        "PUT",
        "/v1/hosts/pm1",
        r#"{"name":"pm1","underlay_ip":"10.0.0.1","role":"compute","ovsdb":"unix:/run/pm1.sock"}"#,
    )
    .await;
    send(
        "PUT",
        "/v1/vis/1",
        r#"{"id":1,"name":"acme","gre_key":1001,"gateways":[]}"#,
    )
    .await;
    let entry = "/v1/registry/1/10/02:00:00:00:00:07";
    send("PUT", entry, r#"{"ips":["10.9.9.9"]}"#).await;
    send(
        "PUT",
        entry,
        r#"{"location":{"kind":"port","host":"pm1","ofport":7},"ips":["10.9.9.9"]}"#,
    )
    .await;
    send("DELETE", entry, "").await;
    let schema =
        response_schema("GET", "/v1/events", 200, "text/event-stream").expect("documented");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut parser = iris_schemas::northbound::SseParser::default();
    let mut names = Vec::new();
    while !names
        .iter()
        .any(|(_, data): &(String, String)| data.contains("removed"))
    {
        let frame = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            http_body_util::BodyExt::frame(&mut stream),
        )
        .await
        .expect("an event arrives")
        .expect("a frame")
        .expect("data");
        if let Ok(data) = frame.into_data() {
            names.extend(parser.push(&data).into_iter().map(|e| (e.event, e.data)));
        }
    }
    let kinds: std::collections::BTreeSet<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        kinds.contains("topology") && kinds.contains("registry"),
        "{names:?}"
    );
    for (name, data) in &names {
        let value: serde_json::Value = serde_json::from_str(data).expect("JSON");
        assert_eq!(value["type"], name.as_str(), "{data}");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {data}: {errors:?}");
    }
    // And the schema is not one that takes anything.
    for bad in [
        r#"{"type":"registry","change":"added","vi":"1","vlan":10,"mac":"x"}"#,
        r#"{"type":"move","change":"moved","vi":1,"vlan":10,"mac":"x"}"#,
        r#"{"type":"comet"}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(bad).expect("JSON");
        assert!(!validator.is_valid(&value), "{bad}");
    }
}
