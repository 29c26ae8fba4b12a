//! OVSDB values and their JSON notation (RFC 7047 §5.1): atoms, sets, maps and
//! rows.
//!
//! The server writes a one-element set as the bare atom, so readers go
//! through [`Datum::atoms`], which treats both the same way.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Value as Json};

use crate::error::ProtocolError;

pub use uuid::Uuid;

/// One scalar value.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    String(String),
    Uuid(Uuid),
    /// A `uuid-name` given to a row inserted earlier in the same transaction.
    NamedUuid(String),
}

impl Atom {
    pub fn string(s: impl Into<String>) -> Self {
        Self::String(s.into())
    }

    pub fn to_json(&self) -> Json {
        match self {
            Self::Integer(i) => json!(i),
            Self::Real(r) => json!(r),
            Self::Boolean(b) => json!(b),
            Self::String(s) => json!(s),
            Self::Uuid(u) => json!(["uuid", u.to_string()]),
            Self::NamedUuid(n) => json!(["named-uuid", n]),
        }
    }

    pub fn from_json(json: &Json) -> Result<Self, ProtocolError> {
        match json {
            Json::Bool(b) => Ok(Self::Boolean(*b)),
            Json::String(s) => Ok(Self::String(s.clone())),
            Json::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Self::Integer(i)),
                (None, Some(r)) => Ok(Self::Real(r)),
                (None, None) => Err(ProtocolError::new(
                    "atom",
                    format!("number {n} out of range"),
                )),
            },
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(tag), Json::String(v)] if tag == "uuid" => v
                    .parse()
                    .map(Self::Uuid)
                    .map_err(|_| ProtocolError::new("atom", format!("bad uuid {v:?}"))),
                [Json::String(tag), Json::String(v)] if tag == "named-uuid" => {
                    Ok(Self::NamedUuid(v.clone()))
                }
                _ => Err(ProtocolError::new(
                    "atom",
                    format!("unexpected array {json}"),
                )),
            },
            other => Err(ProtocolError::new("atom", format!("unexpected {other}"))),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Self::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Integer(_) => "integer",
            Self::Real(_) => "real",
            Self::Boolean(_) => "boolean",
            Self::String(_) => "string",
            Self::Uuid(_) => "uuid",
            Self::NamedUuid(_) => "named-uuid",
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_json().fmt(f)
    }
}

impl From<&str> for Atom {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for Atom {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<Uuid> for Atom {
    fn from(u: Uuid) -> Self {
        Self::Uuid(u)
    }
}

impl From<i64> for Atom {
    fn from(i: i64) -> Self {
        Self::Integer(i)
    }
}

impl From<bool> for Atom {
    fn from(b: bool) -> Self {
        Self::Boolean(b)
    }
}

/// A column value: an atom, a set or a map (RFC 7047 `<value>`).
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Atom(Atom),
    Set(Vec<Atom>),
    Map(Vec<(Atom, Atom)>),
}

/// A row: column name to value. Rows the server sends also carry `_uuid` and
/// `_version` when they were selected.
pub type Row = BTreeMap<String, Datum>;

impl Datum {
    pub fn empty_set() -> Self {
        Self::Set(Vec::new())
    }

    pub fn string(s: impl Into<String>) -> Self {
        Self::Atom(Atom::String(s.into()))
    }

    pub fn uuid(u: Uuid) -> Self {
        Self::Atom(Atom::Uuid(u))
    }

    pub fn named_uuid(name: impl Into<String>) -> Self {
        Self::Atom(Atom::NamedUuid(name.into()))
    }

    pub fn set<A: Into<Atom>>(atoms: impl IntoIterator<Item = A>) -> Self {
        Self::Set(atoms.into_iter().map(Into::into).collect())
    }

    /// `Some(x)` becomes the one-element set, `None` the empty set: how
    /// optional columns (`"min": 0, "max": 1`) are written.
    pub fn optional(atom: Option<Atom>) -> Self {
        Self::Set(atom.into_iter().collect())
    }

    pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        Self::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Atom::String(k.clone()), Atom::String(v.clone())))
                .collect(),
        )
    }

    pub fn to_json(&self) -> Json {
        match self {
            Self::Atom(a) => a.to_json(),
            Self::Set(atoms) => json!(["set", atoms.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Self::Map(pairs) => json!([
                "map",
                pairs
                    .iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    pub fn from_json(json: &Json) -> Result<Self, ProtocolError> {
        if let Json::Array(items) = json {
            match items.as_slice() {
                [Json::String(tag), Json::Array(elems)] if tag == "set" => {
                    return elems
                        .iter()
                        .map(Atom::from_json)
                        .collect::<Result<_, _>>()
                        .map(Self::Set);
                }
                [Json::String(tag), Json::Array(pairs)] if tag == "map" => {
                    return pairs
                        .iter()
                        .map(|pair| match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((Atom::from_json(k)?, Atom::from_json(v)?)),
                            _ => Err(ProtocolError::new("map", format!("bad pair {pair}"))),
                        })
                        .collect::<Result<_, _>>()
                        .map(Self::Map);
                }
                _ => {}
            }
        }
        Atom::from_json(json).map(Self::Atom)
    }

    /// The atoms of a set; a bare atom is a one-element set. A map has none.
    pub fn atoms(&self) -> &[Atom] {
        match self {
            Self::Atom(a) => std::slice::from_ref(a),
            Self::Set(atoms) => atoms,
            Self::Map(_) => &[],
        }
    }

    /// Reads a `string` column.
    pub fn to_string_value(&self) -> Result<String, ProtocolError> {
        match self {
            Self::Atom(Atom::String(s)) => Ok(s.clone()),
            other => Err(mismatch("a string", other)),
        }
    }

    /// Reads a boolean column.
    pub fn to_bool(&self) -> Result<bool, ProtocolError> {
        match self {
            Self::Atom(Atom::Boolean(b)) => Ok(*b),
            other => Err(mismatch("a boolean", other)),
        }
    }

    /// Reads an optional column (`"min": 0, "max": 1`).
    pub fn to_optional(&self) -> Result<Option<&Atom>, ProtocolError> {
        match self.atoms() {
            [] if !matches!(self, Self::Map(_)) => Ok(None),
            [a] => Ok(Some(a)),
            _ => Err(mismatch("an optional value", self)),
        }
    }

    pub fn to_optional_string(&self) -> Result<Option<String>, ProtocolError> {
        match self.to_optional()? {
            None => Ok(None),
            Some(Atom::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(mismatch("an optional string", self)),
        }
    }

    pub fn to_optional_integer(&self) -> Result<Option<i64>, ProtocolError> {
        match self.to_optional()? {
            None => Ok(None),
            Some(Atom::Integer(i)) => Ok(Some(*i)),
            Some(_) => Err(mismatch("an optional integer", self)),
        }
    }

    pub fn to_uuid_set(&self) -> Result<std::collections::BTreeSet<Uuid>, ProtocolError> {
        self.atoms()
            .iter()
            .map(|a| a.as_uuid().ok_or_else(|| mismatch("a set of uuids", self)))
            .collect()
    }

    pub fn to_string_set(&self) -> Result<std::collections::BTreeSet<String>, ProtocolError> {
        if matches!(self, Self::Map(_)) {
            return Err(mismatch("a set of strings", self));
        }
        self.atoms()
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| mismatch("a set of strings", self))
            })
            .collect()
    }

    /// Reads a `{"key": "string", "value": "string"}` map column.
    pub fn to_string_map(&self) -> Result<BTreeMap<String, String>, ProtocolError> {
        match self {
            Self::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| match (k, v) {
                    (Atom::String(k), Atom::String(v)) => Ok((k.clone(), v.clone())),
                    _ => Err(mismatch("a string-to-string map", self)),
                })
                .collect(),
            // An empty map may be written as an empty set by lenient peers.
            Self::Set(atoms) if atoms.is_empty() => Ok(BTreeMap::new()),
            other => Err(mismatch("a string-to-string map", other)),
        }
    }

    /// Reads a `{"key": "string", "value": "integer"}` map column (such as
    /// an Interface's `statistics`).
    pub fn to_integer_map(&self) -> Result<BTreeMap<String, i64>, ProtocolError> {
        match self {
            Self::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| match (k, v) {
                    (Atom::String(k), Atom::Integer(v)) => Ok((k.clone(), *v)),
                    _ => Err(mismatch("a string-to-integer map", self)),
                })
                .collect(),
            Self::Set(atoms) if atoms.is_empty() => Ok(BTreeMap::new()),
            other => Err(mismatch("a string-to-integer map", other)),
        }
    }
}

fn mismatch(expected: &str, got: &Datum) -> ProtocolError {
    let got = match got {
        Datum::Atom(a) => a.kind().to_owned(),
        Datum::Set(s) => format!("a set of {}", s.len()),
        Datum::Map(m) => format!("a map of {}", m.len()),
    };
    ProtocolError::new("", format!("expected {expected}, got {got}"))
}

impl fmt::Display for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_json().fmt(f)
    }
}

impl From<Atom> for Datum {
    fn from(a: Atom) -> Self {
        Self::Atom(a)
    }
}

/// Writes a row as the JSON object an operation carries.
pub fn row_to_json(row: &Row) -> Json {
    Json::Object(row.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// Reads a row object from the server.
pub fn row_from_json(json: &Json) -> Result<Row, ProtocolError> {
    let obj = json
        .as_object()
        .ok_or_else(|| ProtocolError::new("row", format!("expected an object, got {json}")))?;
    obj.iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                Datum::from_json(v).map_err(|e| e.within(format!("column {k}")))?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let u: Uuid = "36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11".parse().unwrap();
        let cases = [
            json!(5),
            json!(-1),
            json!(1.5),
            json!(true),
            json!("br-int"),
            json!(["uuid", u.to_string()]),
            json!(["named-uuid", "row0"]),
            json!(["set", []]),
            json!(["set", ["OpenFlow13", "OpenFlow10"]]),
            json!(["map", [["key", "flow"], ["remote_ip", "192.0.2.1"]]]),
        ];
        for case in cases {
            assert_eq!(Datum::from_json(&case).unwrap().to_json(), case, "{case}");
        }
    }

    #[test]
    fn single_atom_reads_as_one_element_set() {
        let u: Uuid = "36bd1d1a-1b6c-4d2f-9f56-0a5a8b0e8c11".parse().unwrap();
        let bare = Datum::from_json(&json!(["uuid", u.to_string()])).unwrap();
        assert_eq!(
            bare.to_uuid_set().unwrap().into_iter().collect::<Vec<_>>(),
            vec![u]
        );
        let one = Datum::from_json(&json!("OpenFlow13")).unwrap();
        assert_eq!(one.to_string_set().unwrap().len(), 1);
        assert_eq!(
            Datum::from_json(&json!(["set", []]))
                .unwrap()
                .to_optional_integer()
                .unwrap(),
            None
        );
        assert_eq!(
            Datum::from_json(&json!(7))
                .unwrap()
                .to_optional_integer()
                .unwrap(),
            Some(7)
        );
    }

    #[test]
    fn malformed_values_are_protocol_errors() {
        for bad in [
            json!(null),
            json!({"a": 1}),
            json!(["uuid", "not-a-uuid"]),
            json!(["map", [["k"]]]),
            json!(["set", [null]]),
            json!(["bogus", 1]),
        ] {
            assert!(Datum::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn type_mismatch_names_both_sides() {
        let e = Datum::from_json(&json!(["set", [1, 2]]))
            .unwrap()
            .to_optional_integer()
            .unwrap_err();
        assert!(
            e.detail
                .contains("expected an optional value, got a set of 2"),
            "{e}"
        );
        let e = Datum::string("x").to_string_map().unwrap_err();
        assert!(
            e.detail
                .contains("expected a string-to-string map, got string"),
            "{e}"
        );
    }
}
