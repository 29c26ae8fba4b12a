//! Generated files checked in beside the code (the OpenAPI documents, the
//! configuration files' JSON Schemas): a test compares each with what the
//! code generates now, and rewrites it when run with `IRIS_BLESS=1`.

use std::path::Path;
use utoipa::ToSchema;

/// The JSON Schema (2020-12) of `T` as a document of its own: `T`'s schema
/// at the root, every type it refers to under `$defs`. What a configuration
/// file's schema is made from, with the same derive as the API's bodies.
pub fn json_schema<T: ToSchema>(title: &str) -> serde_json::Value {
    let mut defs = Vec::new();
    T::schemas(&mut defs);
    let mut doc = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
    });
    if let (Some(doc), Ok(serde_json::Value::Object(root))) =
        (doc.as_object_mut(), serde_json::to_value(T::schema()))
    {
        doc.extend(root);
        let defs: serde_json::Map<String, serde_json::Value> = defs
            .into_iter()
            .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
            .collect();
        if !defs.is_empty() {
            doc.insert("$defs".into(), defs.into());
        }
    }
    // utoipa points at OpenAPI's components; a lone schema keeps them in $defs.
    let text = doc
        .to_string()
        .replace("\"#/components/schemas/", "\"#/$defs/");
    serde_json::from_str(&text).unwrap_or(doc)
}

/// `Ok` when `path` holds `generated` (pretty JSON and a final newline),
/// or was rewritten to it under `IRIS_BLESS=1`; otherwise what differs and
/// how to refresh it.
pub fn check_or_bless(path: &Path, generated: &serde_json::Value) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(generated).map_err(|e| e.to_string())?;
    text.push('\n');
    if std::env::var_os("IRIS_BLESS").is_some_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        return std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    if stored == text {
        return Ok(());
    }
    let line = stored
        .lines()
        .zip(text.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| stored.lines().count().min(text.lines().count()));
    Err(format!(
        "{} differs from what the code generates (first at line {}: checked in {:?}, generated \
         {:?}); if the change is meant, run the test again with IRIS_BLESS=1 and commit the file",
        path.display(),
        line + 1,
        stored.lines().nth(line).unwrap_or("<end of file>"),
        text.lines().nth(line).unwrap_or("<end of file>"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_differs_is_refused_and_one_that_matches_passes() {
        let dir = std::env::temp_dir().join(format!("iris-drift-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("doc.json");
        let doc = serde_json::json!({"a": 1, "b": [true]});
        std::fs::write(&path, "{\n  \"a\": 2,\n  \"b\": [\n    true\n  ]\n}\n").unwrap();
        let e = check_or_bless(&path, &doc).unwrap_err();
        assert!(e.contains("line 2") && e.contains("IRIS_BLESS=1"), "{e}");
        std::fs::write(&path, "{\n  \"a\": 1,\n  \"b\": [\n    true\n  ]\n}\n").unwrap();
        check_or_bless(&path, &doc).unwrap();
        let e = check_or_bless(&dir.join("missing.json"), &doc).unwrap_err();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
