//! Typed `transact` operations (RFC 7047 §5.2) and their results.

use serde_json::{json, Map, Value as Json};

use crate::datum::{row_from_json, row_to_json, Atom, Datum, Row, Uuid};
use crate::error::{FailedAt, OvsdbError, ProtocolError, TransactionError};

/// A comparison function of a `where` clause (RFC 7047 §5.1 `<function>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
    Includes,
    Excludes,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Ge => ">=",
            Self::Gt => ">",
            Self::Includes => "includes",
            Self::Excludes => "excludes",
        }
    }
}

/// One `[column, function, value]` of a `where` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub function: Function,
    pub value: Datum,
}

impl Condition {
    pub fn new(column: impl Into<String>, function: Function, value: Datum) -> Self {
        Self {
            column: column.into(),
            function,
            value,
        }
    }

    /// The row with this uuid.
    pub fn uuid(uuid: Uuid) -> Self {
        Self::new("_uuid", Function::Eq, Datum::uuid(uuid))
    }

    pub fn eq(column: impl Into<String>, value: impl Into<Datum>) -> Self {
        Self::new(column, Function::Eq, value.into())
    }

    fn to_json(&self) -> Json {
        json!([self.column, self.function.as_str(), self.value.to_json()])
    }
}

/// A mutator (RFC 7047 §5.1 `<mutator>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutator {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Insert,
    Delete,
}

impl Mutator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "+=",
            Self::Sub => "-=",
            Self::Mul => "*=",
            Self::Div => "/=",
            Self::Mod => "%=",
            Self::Insert => "insert",
            Self::Delete => "delete",
        }
    }
}

/// One `[column, mutator, value]` of a `mutate` operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub column: String,
    pub mutator: Mutator,
    pub value: Datum,
}

impl Mutation {
    pub fn new(column: impl Into<String>, mutator: Mutator, value: Datum) -> Self {
        Self {
            column: column.into(),
            mutator,
            value,
        }
    }

    fn to_json(&self) -> Json {
        json!([self.column, self.mutator.as_str(), self.value.to_json()])
    }
}

/// `"until"` of a `wait` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitUntil {
    Equal,
    NotEqual,
}

/// One operation of a `transact` request.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Insert {
        table: String,
        row: Row,
        uuid_name: Option<String>,
    },
    Select {
        table: String,
        conditions: Vec<Condition>,
        columns: Option<Vec<String>>,
    },
    Update {
        table: String,
        conditions: Vec<Condition>,
        row: Row,
    },
    Mutate {
        table: String,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    },
    Delete {
        table: String,
        conditions: Vec<Condition>,
    },
    /// Blocks (up to `timeout_ms`) until the selected rows' `columns` are
    /// (or are not) exactly `rows`; fails the transaction with `timed out`
    /// otherwise.
    Wait {
        table: String,
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until: WaitUntil,
        rows: Vec<Row>,
        timeout_ms: Option<u64>,
    },
    Comment(String),
}

fn conditions_json(conditions: &[Condition]) -> Json {
    Json::Array(conditions.iter().map(Condition::to_json).collect())
}

impl Operation {
    pub fn to_json(&self) -> Json {
        match self {
            Self::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut obj = Map::new();
                obj.insert("op".into(), json!("insert"));
                obj.insert("table".into(), json!(table));
                obj.insert("row".into(), row_to_json(row));
                if let Some(name) = uuid_name {
                    obj.insert("uuid-name".into(), json!(name));
                }
                Json::Object(obj)
            }
            Self::Select {
                table,
                conditions,
                columns,
            } => {
                let mut obj = Map::new();
                obj.insert("op".into(), json!("select"));
                obj.insert("table".into(), json!(table));
                obj.insert("where".into(), conditions_json(conditions));
                if let Some(columns) = columns {
                    obj.insert("columns".into(), json!(columns));
                }
                Json::Object(obj)
            }
            Self::Update {
                table,
                conditions,
                row,
            } => json!({
                "op": "update", "table": table, "where": conditions_json(conditions),
                "row": row_to_json(row),
            }),
            Self::Mutate {
                table,
                conditions,
                mutations,
            } => json!({
                "op": "mutate", "table": table, "where": conditions_json(conditions),
                "mutations": mutations.iter().map(Mutation::to_json).collect::<Vec<_>>(),
            }),
            Self::Delete { table, conditions } => {
                json!({"op": "delete", "table": table, "where": conditions_json(conditions)})
            }
            Self::Wait {
                table,
                conditions,
                columns,
                until,
                rows,
                timeout_ms,
            } => {
                let mut obj = Map::new();
                obj.insert("op".into(), json!("wait"));
                obj.insert("table".into(), json!(table));
                obj.insert("where".into(), conditions_json(conditions));
                obj.insert("columns".into(), json!(columns));
                obj.insert(
                    "until".into(),
                    json!(match until {
                        WaitUntil::Equal => "==",
                        WaitUntil::NotEqual => "!=",
                    }),
                );
                obj.insert(
                    "rows".into(),
                    Json::Array(rows.iter().map(row_to_json).collect()),
                );
                if let Some(ms) = timeout_ms {
                    obj.insert("timeout".into(), json!(ms));
                }
                Json::Object(obj)
            }
            Self::Comment(text) => json!({"op": "comment", "comment": text}),
        }
    }

    /// `insert into Port`, for error messages.
    pub fn summary(&self) -> String {
        match self {
            Self::Insert { table, .. } => format!("insert into {table}"),
            Self::Select { table, .. } => format!("select from {table}"),
            Self::Update { table, .. } => format!("update {table}"),
            Self::Mutate { table, .. } => format!("mutate {table}"),
            Self::Delete { table, .. } => format!("delete from {table}"),
            Self::Wait { table, .. } => format!("wait on {table}"),
            Self::Comment(_) => "comment".to_owned(),
        }
    }
}

/// The result of one successful operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationResult {
    /// `insert`: the new row's uuid.
    Inserted(Uuid),
    /// `update`, `mutate`, `delete`: how many rows matched.
    Count(u64),
    /// `select`: the rows.
    Rows(Vec<Row>),
    /// `wait`, `comment`.
    Empty,
}

/// Builds a transaction: operations in order, with fresh `uuid-name`s for
/// rows inserted and referenced in the same transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transaction {
    ops: Vec<Operation>,
    names: usize,
}

impl Transaction {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, op: Operation) {
        self.ops.push(op);
    }

    /// Inserts `row` into `table` and returns the atom that refers to the new
    /// row elsewhere in this transaction.
    pub fn insert(&mut self, table: &str, row: Row) -> Atom {
        let name = format!("row{}", self.names);
        self.names += 1;
        self.ops.push(Operation::Insert {
            table: table.to_owned(),
            row,
            uuid_name: Some(name.clone()),
        });
        Atom::NamedUuid(name)
    }

    pub fn update(&mut self, table: &str, uuid: Uuid, row: Row) {
        self.ops.push(Operation::Update {
            table: table.to_owned(),
            conditions: vec![Condition::uuid(uuid)],
            row,
        });
    }

    pub fn mutate(&mut self, table: &str, conditions: Vec<Condition>, mutations: Vec<Mutation>) {
        self.ops.push(Operation::Mutate {
            table: table.to_owned(),
            conditions,
            mutations,
        });
    }

    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The `params` of a `transact` request against database `db`.
    pub fn params(db: &str, ops: &[Operation]) -> Json {
        let mut params = Vec::with_capacity(ops.len() + 1);
        params.push(json!(db));
        params.extend(ops.iter().map(Operation::to_json));
        Json::Array(params)
    }
}

/// Reads the `result` of a `transact` request (RFC 7047 §4.1.3): one result
/// per operation, the first error (an operation's, or the commit's in an
/// extra element) as a [`TransactionError`].
pub fn parse_transact_result(
    ops: &[Operation],
    result: &Json,
) -> Result<Result<Vec<OperationResult>, TransactionError>, ProtocolError> {
    let ctx = "transact result";
    let items = result
        .as_array()
        .ok_or_else(|| ProtocolError::new(ctx, format!("expected an array, got {result}")))?;
    // Errors come first: after a failed operation the server leaves the rest `null`.
    for (index, item) in items.iter().enumerate() {
        if let Some(err) = item.get("error").filter(|e| !e.is_null()) {
            let failed_at = match ops.get(index) {
                Some(op) => FailedAt::Operation {
                    index,
                    summary: op.summary(),
                },
                None => FailedAt::Commit,
            };
            let error = OvsdbError::from_json(&json!({
                "error": err, "details": item.get("details").cloned().unwrap_or(Json::Null)
            }));
            return Ok(Err(TransactionError { failed_at, error }));
        }
    }
    if items.len() < ops.len() {
        return Err(ProtocolError::new(
            ctx,
            format!(
                "{} results for {} operations and no error",
                items.len(),
                ops.len()
            ),
        ));
    }
    ops.iter()
        .zip(items)
        .enumerate()
        .map(|(i, (op, item))| {
            parse_one(op, item)
                .map_err(|e| e.within(format!("{ctx}: operation {i} ({})", op.summary())))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Ok)
}

fn parse_one(op: &Operation, item: &Json) -> Result<OperationResult, ProtocolError> {
    match op {
        Operation::Insert { .. } => match Datum::from_json(item.get("uuid").unwrap_or(&Json::Null))
        {
            Ok(Datum::Atom(Atom::Uuid(u))) => Ok(OperationResult::Inserted(u)),
            _ => Err(ProtocolError::new(
                "",
                format!("expected {{\"uuid\": [\"uuid\", ..]}}, got {item}"),
            )),
        },
        Operation::Update { .. } | Operation::Mutate { .. } | Operation::Delete { .. } => item
            .get("count")
            .and_then(Json::as_u64)
            .map(OperationResult::Count)
            .ok_or_else(|| {
                ProtocolError::new("", format!("expected {{\"count\": n}}, got {item}"))
            }),
        Operation::Select { .. } => match item.get("rows") {
            Some(Json::Array(rows)) => rows
                .iter()
                .map(row_from_json)
                .collect::<Result<_, _>>()
                .map(OperationResult::Rows),
            _ => Err(ProtocolError::new(
                "",
                format!("expected {{\"rows\": [..]}}, got {item}"),
            )),
        },
        Operation::Wait { .. } | Operation::Comment(_) => Ok(OperationResult::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn bridge_insert() -> (Transaction, Atom) {
        let mut txn = Transaction::new();
        let mut row = Row::new();
        row.insert("name".into(), Datum::string("br0"));
        let bridge = txn.insert("Bridge", row);
        txn.mutate(
            "Open_vSwitch",
            vec![],
            vec![Mutation::new(
                "bridges",
                Mutator::Insert,
                Datum::Set(vec![bridge.clone()]),
            )],
        );
        (txn, bridge)
    }

    #[test]
    fn encodes_operations_as_rfc7047_json() {
        let (txn, _) = bridge_insert();
        assert_eq!(
            Transaction::params("Open_vSwitch", txn.ops()),
            json!([
                "Open_vSwitch",
                {"op": "insert", "table": "Bridge", "row": {"name": "br0"}, "uuid-name": "row0"},
                {"op": "mutate", "table": "Open_vSwitch", "where": [],
                 "mutations": [["bridges", "insert", ["set", [["named-uuid", "row0"]]]]]}
            ])
        );
        let wait = Operation::Wait {
            table: "Bridge".into(),
            conditions: vec![Condition::eq("name", Datum::string("br0"))],
            columns: vec!["fail_mode".into()],
            until: WaitUntil::Equal,
            rows: vec![],
            timeout_ms: Some(0),
        };
        assert_eq!(
            wait.to_json(),
            json!({"op": "wait", "table": "Bridge", "where": [["name", "==", "br0"]],
                   "columns": ["fail_mode"], "until": "==", "rows": [], "timeout": 0})
        );
    }

    #[test]
    fn parses_results_by_operation() {
        let (txn, _) = bridge_insert();
        let u = "36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11";
        let got = parse_transact_result(txn.ops(), &json!([{"uuid": ["uuid", u]}, {"count": 1}]))
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            vec![
                OperationResult::Inserted(u.parse().unwrap()),
                OperationResult::Count(1)
            ]
        );
    }

    #[test]
    fn operation_error_names_the_operation() {
        let (txn, _) = bridge_insert();
        let reply = json!([
            {"uuid": ["uuid", "36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11"]},
            {"error": "referential integrity violation", "details": "cannot delete"},
        ]);
        let err = parse_transact_result(txn.ops(), &reply)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.failed_at,
            FailedAt::Operation {
                index: 1,
                summary: "mutate Open_vSwitch".into()
            }
        );
        assert_eq!(err.error.kind, ErrorKind::ReferentialIntegrityViolation);
        assert!(
            err.to_string()
                .contains("take the port out of Bridge.ports"),
            "{err}"
        );
    }

    #[test]
    fn commit_error_is_the_extra_element() {
        let (txn, _) = bridge_insert();
        let reply = json!([
            {"uuid": ["uuid", "36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11"]},
            {"count": 1},
            {"error": "constraint violation", "details": "duplicate name br0"},
        ]);
        let err = parse_transact_result(txn.ops(), &reply)
            .unwrap()
            .unwrap_err();
        assert_eq!(err.failed_at, FailedAt::Commit);
        assert_eq!(err.error.kind, ErrorKind::ConstraintViolation);
        assert_eq!(err.error.details.as_deref(), Some("duplicate name br0"));
    }

    #[test]
    fn malformed_results_are_protocol_errors() {
        let (txn, _) = bridge_insert();
        for bad in [
            json!({}),
            json!([{"count": 1}]),
            json!([{"uuid": "x"}, {"count": 1}]),
        ] {
            assert!(parse_transact_result(txn.ops(), &bad).is_err(), "{bad}");
        }
    }
}
