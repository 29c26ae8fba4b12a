//! `monitor` requests and the `<table-updates>` they produce (RFC 7047 §4.1.5,
//! §4.1.6).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use crate::datum::{row_from_json, Row, Uuid};
use crate::error::ProtocolError;

/// Which columns of a table to monitor. All kinds of change (initial, insert,
/// delete, modify) are always selected: a replica needs every one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorRequest {
    /// `None` monitors every column.
    pub columns: Option<Vec<String>>,
}

impl MonitorRequest {
    pub fn columns(columns: &[&str]) -> Self {
        Self {
            columns: Some(columns.iter().map(|c| (*c).to_owned()).collect()),
        }
    }

    pub fn all_columns() -> Self {
        Self { columns: None }
    }
}

/// The `params` of a `monitor` request.
pub fn monitor_params(
    db: &str,
    monitor_id: &str,
    tables: &BTreeMap<String, MonitorRequest>,
) -> Json {
    let requests: Map<String, Json> = tables
        .iter()
        .map(|(table, req)| {
            let mut obj = Map::new();
            if let Some(columns) = &req.columns {
                obj.insert("columns".into(), json!(columns));
            }
            (table.clone(), Json::Object(obj))
        })
        .collect();
    json!([db, monitor_id, requests])
}

/// The change of one row. `old` alone is a delete, `new` alone an insert (or
/// the initial contents), both a modification; in a modification `old` holds
/// only the columns that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct RowUpdate {
    pub old: Option<Row>,
    pub new: Option<Row>,
}

/// Table name to row uuid to change.
pub type TableUpdates = BTreeMap<String, BTreeMap<Uuid, RowUpdate>>;

/// Reads a `<table-updates>` object.
pub fn parse_table_updates(json: &Json) -> Result<TableUpdates, ProtocolError> {
    let tables = json.as_object().ok_or_else(|| {
        ProtocolError::new("table-updates", format!("expected an object, got {json}"))
    })?;
    tables
        .iter()
        .map(|(table, rows)| {
            let ctx = || format!("table-updates: table {table}");
            let rows = rows
                .as_object()
                .ok_or_else(|| ProtocolError::new(ctx(), "expected an object of row updates"))?;
            let rows = rows
                .iter()
                .map(|(uuid, update)| {
                    let row_ctx = || format!("{}: row {uuid}", ctx());
                    let uuid: Uuid = uuid
                        .parse()
                        .map_err(|_| ProtocolError::new(row_ctx(), "row key is not a uuid"))?;
                    let field = |name| match update.get(name) {
                        None | Some(Json::Null) => Ok(None),
                        Some(row) => row_from_json(row)
                            .map(Some)
                            .map_err(|e| e.within(row_ctx())),
                    };
                    let (old, new) = (field("old")?, field("new")?);
                    if old.is_none() && new.is_none() {
                        return Err(ProtocolError::new(row_ctx(), "neither old nor new"));
                    }
                    Ok((uuid, RowUpdate { old, new }))
                })
                .collect::<Result<_, _>>()?;
            Ok((table.clone(), rows))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Datum;

    #[test]
    fn monitor_params_list_columns() {
        let mut tables = BTreeMap::new();
        tables.insert(
            "Interface".to_owned(),
            MonitorRequest::columns(&["name", "ofport"]),
        );
        tables.insert("Bridge".to_owned(), MonitorRequest::all_columns());
        assert_eq!(
            monitor_params("Open_vSwitch", "m1", &tables),
            json!(["Open_vSwitch", "m1", {"Bridge": {}, "Interface": {"columns": ["name", "ofport"]}}])
        );
    }

    #[test]
    fn parses_insert_modify_delete() {
        let a = "36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11";
        let b = "46bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11";
        let c = "56bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11";
        let got = parse_table_updates(&json!({"Interface": {
            a: {"new": {"name": "gre0", "ofport": ["set", []]}},
            b: {"old": {"ofport": ["set", []]}, "new": {"name": "gre1", "ofport": 3}},
            c: {"old": {"name": "vm1", "ofport": 4}},
        }}))
        .unwrap();
        let rows = &got["Interface"];
        let ua: Uuid = a.parse().unwrap();
        let ub: Uuid = b.parse().unwrap();
        let uc: Uuid = c.parse().unwrap();
        assert!(rows[&ua].old.is_none());
        assert_eq!(
            rows[&ub].new.as_ref().unwrap()["ofport"],
            Datum::from_json(&json!(3)).unwrap()
        );
        assert!(rows[&uc].new.is_none());
    }

    #[test]
    fn rejects_malformed_updates_with_their_location() {
        let e = parse_table_updates(&json!({"Bridge": {"not-a-uuid": {"new": {}}}})).unwrap_err();
        assert!(e.context.contains("table Bridge"), "{e}");
        let e =
            parse_table_updates(&json!({"Bridge": {"36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11": {}}}))
                .unwrap_err();
        assert!(e.detail.contains("neither old nor new"));
        let e = parse_table_updates(&json!({"Bridge": {"36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11":
            {"new": {"name": null}}}}))
        .unwrap_err();
        assert!(e.context.contains("column name"), "{e}");
    }
}
