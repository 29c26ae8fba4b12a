//! An in-memory stand-in for ovsdb-server, just big enough to run the
//! transactions the planners build (insert, update and mutate by uuid, name
//! indexes, garbage collection of unreferenced non-root rows) and to report
//! the monitor updates they cause. It lets the planners be tested for
//! convergence and idempotence without a server; the integration tests run
//! the same scenarios against the real one.

use std::collections::{BTreeMap, BTreeSet};

use crate::datum::{Atom, Datum, Row, Uuid};
use crate::ops::{Condition, Function, Mutator, Operation, Transaction};
use crate::update::{RowUpdate, TableUpdates};
use crate::vswitch::model::Replica;

const ROOT_TABLES: &[&str] = &["Open_vSwitch", "Bridge"];
const NAME_INDEXED: &[&str] = &["Bridge", "Port", "Interface"];

#[derive(Debug, Default)]
pub(crate) struct SimDb {
    pub(crate) tables: BTreeMap<String, BTreeMap<Uuid, Row>>,
    next: u128,
}

impl SimDb {
    /// A database after `ovs-vsctl init`: one Open_vSwitch row.
    pub(crate) fn initialised() -> Self {
        let mut db = Self::default();
        let root = db.fresh();
        db.table("Open_vSwitch")
            .insert(root, Row::from([("bridges".into(), Datum::empty_set())]));
        db
    }

    fn fresh(&mut self) -> Uuid {
        self.next += 1;
        Uuid::from_u128(self.next)
    }

    fn table(&mut self, name: &str) -> &mut BTreeMap<Uuid, Row> {
        self.tables.entry(name.to_owned()).or_default()
    }

    /// Everything, as a monitor's initial contents.
    pub(crate) fn contents(&self) -> TableUpdates {
        diff(&BTreeMap::new(), &self.tables)
    }

    /// Runs `txn` atomically; returns the monitor update it causes.
    pub(crate) fn execute(&mut self, txn: &Transaction) -> Result<TableUpdates, String> {
        let before = self.tables.clone();
        let result = self.execute_ops(txn.ops());
        if let Err(e) = result {
            self.tables = before;
            return Err(e);
        }
        self.collect_garbage();
        if let Err(e) = self.check() {
            self.tables = before;
            return Err(e);
        }
        Ok(diff(&before, &self.tables))
    }

    /// Changes a column behind the planners' back, as an operator with
    /// ovs-vsctl would; returns the update.
    pub(crate) fn edit(
        &mut self,
        table: &str,
        name: &str,
        column: &str,
        value: Datum,
    ) -> TableUpdates {
        let uuid = self
            .rows(table)
            .find(|(_, r)| r.get("name") == Some(&Datum::string(name)))
            .map(|(u, _)| *u)
            .expect("row to edit");
        self.edit_row(table, uuid, column, value)
    }

    /// Sets one column of the row `uuid` of `table`, as another client would.
    pub(crate) fn edit_row(
        &mut self,
        table: &str,
        uuid: Uuid,
        column: &str,
        value: Datum,
    ) -> TableUpdates {
        let before = self.tables.clone();
        let row = self.table(table).get_mut(&uuid).expect("row to edit");
        row.insert(column.to_owned(), value);
        diff(&before, &self.tables)
    }

    fn execute_ops(&mut self, ops: &[Operation]) -> Result<(), String> {
        let mut names: BTreeMap<String, Uuid> = BTreeMap::new();
        for op in ops {
            match op {
                Operation::Insert {
                    table,
                    row,
                    uuid_name,
                } => {
                    let uuid = self.fresh();
                    if let Some(name) = uuid_name {
                        names.insert(name.clone(), uuid);
                    }
                    let row = resolve_row(row, &names)?;
                    self.table(table).insert(uuid, row);
                }
                Operation::Update {
                    table,
                    conditions,
                    row,
                } => {
                    let row = resolve_row(row, &names)?;
                    for uuid in self.select(table, conditions)? {
                        self.table(table)
                            .entry(uuid)
                            .or_default()
                            .extend(row.clone());
                    }
                }
                Operation::Mutate {
                    table,
                    conditions,
                    mutations,
                } => {
                    for uuid in self.select(table, conditions)? {
                        for m in mutations {
                            let value = resolve(&m.value, &names)?;
                            let row = self.table(table).entry(uuid).or_default();
                            let current = row.remove(&m.column);
                            row.insert(m.column.clone(), mutate(current, m.mutator, &value)?);
                        }
                    }
                }
                other => return Err(format!("the simulator does not run {}", other.summary())),
            }
        }
        Ok(())
    }

    fn select(&mut self, table: &str, conditions: &[Condition]) -> Result<Vec<Uuid>, String> {
        match conditions {
            [] => Ok(self.table(table).keys().copied().collect()),
            [Condition {
                column,
                function: Function::Eq,
                value: Datum::Atom(Atom::Uuid(u)),
            }] if column == "_uuid" => Ok(self
                .table(table)
                .contains_key(u)
                .then_some(*u)
                .into_iter()
                .collect()),
            other => Err(format!("the simulator does not support where {other:?}")),
        }
    }

    /// Deletes rows of non-root tables that no root-reachable row references.
    fn collect_garbage(&mut self) {
        let mut reachable: BTreeSet<Uuid> = BTreeSet::new();
        let mut frontier: Vec<Uuid> = ROOT_TABLES
            .iter()
            .filter_map(|t| self.tables.get(*t))
            .flat_map(|rows| rows.keys().copied())
            .collect();
        while let Some(uuid) = frontier.pop() {
            if !reachable.insert(uuid) {
                continue;
            }
            let row = self.tables.values().find_map(|rows| rows.get(&uuid));
            frontier.extend(row.into_iter().flat_map(references));
        }
        for (table, rows) in &mut self.tables {
            if !ROOT_TABLES.contains(&table.as_str()) {
                rows.retain(|uuid, _| reachable.contains(uuid));
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        let all: BTreeSet<Uuid> = self
            .tables
            .values()
            .flat_map(|r| r.keys().copied())
            .collect();
        for (table, rows) in &self.tables {
            for row in rows.values() {
                if let Some(missing) = references(row).find(|u| !all.contains(u)) {
                    return Err(format!(
                        "referential integrity violation: {table} -> {missing}"
                    ));
                }
            }
            if NAME_INDEXED.contains(&table.as_str()) {
                let mut seen = BTreeSet::new();
                for name in rows.values().filter_map(|r| r.get("name")) {
                    if !seen.insert(name.to_string()) {
                        return Err(format!(
                            "constraint violation: duplicate {table} name {name}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn rows(&self, table: &str) -> impl Iterator<Item = (&Uuid, &Row)> {
        self.tables.get(table).into_iter().flatten()
    }

    pub(crate) fn uuid_of(&self, table: &str, name: &str) -> Option<Uuid> {
        self.rows(table)
            .find(|(_, r)| r.get("name") == Some(&Datum::string(name)))
            .map(|(u, _)| *u)
    }
}

fn references(row: &Row) -> impl Iterator<Item = Uuid> + '_ {
    row.values().flat_map(|d| {
        let atoms: Vec<&Atom> = match d {
            Datum::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            other => other.atoms().iter().collect(),
        };
        atoms
            .into_iter()
            .filter_map(Atom::as_uuid)
            .collect::<Vec<_>>()
    })
}

fn resolve_atom(atom: &Atom, names: &BTreeMap<String, Uuid>) -> Result<Atom, String> {
    match atom {
        Atom::NamedUuid(n) => names
            .get(n)
            .map(|u| Atom::Uuid(*u))
            .ok_or(format!("unknown uuid-name {n}")),
        other => Ok(other.clone()),
    }
}

fn resolve(datum: &Datum, names: &BTreeMap<String, Uuid>) -> Result<Datum, String> {
    Ok(match datum {
        Datum::Atom(a) => Datum::Atom(resolve_atom(a, names)?),
        Datum::Set(atoms) => Datum::Set(
            atoms
                .iter()
                .map(|a| resolve_atom(a, names))
                .collect::<Result<_, _>>()?,
        ),
        Datum::Map(pairs) => Datum::Map(
            pairs
                .iter()
                .map(|(k, v)| Ok((resolve_atom(k, names)?, resolve_atom(v, names)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn resolve_row(row: &Row, names: &BTreeMap<String, Uuid>) -> Result<Row, String> {
    row.iter()
        .map(|(k, v)| Ok((k.clone(), resolve(v, names)?)))
        .collect()
}

fn mutate(current: Option<Datum>, mutator: Mutator, value: &Datum) -> Result<Datum, String> {
    let unsupported = || format!("the simulator cannot apply {mutator:?} {value}");
    match (current, mutator) {
        (Some(Datum::Map(mut pairs)), Mutator::Insert) => {
            let Datum::Map(new) = value else {
                return Err(unsupported());
            };
            for (k, v) in new {
                if !pairs.iter().any(|(pk, _)| pk == k) {
                    pairs.push((k.clone(), v.clone()));
                }
            }
            Ok(Datum::Map(pairs))
        }
        (Some(Datum::Map(pairs)), Mutator::Delete) => {
            let keys = value.atoms();
            Ok(Datum::Map(
                pairs
                    .into_iter()
                    .filter(|(k, _)| !keys.contains(k))
                    .collect(),
            ))
        }
        (None, Mutator::Insert) if matches!(value, Datum::Map(_)) => Ok(value.clone()),
        (current, Mutator::Insert) => {
            let mut atoms = current.map(|c| c.atoms().to_vec()).unwrap_or_default();
            for a in value.atoms() {
                if !atoms.contains(a) {
                    atoms.push(a.clone());
                }
            }
            Ok(Datum::Set(atoms))
        }
        (current, Mutator::Delete) => {
            let atoms = current.map(|c| c.atoms().to_vec()).unwrap_or_default();
            Ok(Datum::Set(
                atoms
                    .into_iter()
                    .filter(|a| !value.atoms().contains(a))
                    .collect(),
            ))
        }
        _ => Err(unsupported()),
    }
}

fn diff(
    before: &BTreeMap<String, BTreeMap<Uuid, Row>>,
    after: &BTreeMap<String, BTreeMap<Uuid, Row>>,
) -> TableUpdates {
    let empty = BTreeMap::new();
    let tables: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut updates = TableUpdates::new();
    for table in tables {
        let (b, a) = (
            before.get(table).unwrap_or(&empty),
            after.get(table).unwrap_or(&empty),
        );
        let mut rows = BTreeMap::new();
        for (uuid, old) in b {
            match a.get(uuid) {
                None => {
                    rows.insert(
                        *uuid,
                        RowUpdate {
                            old: Some(old.clone()),
                            new: None,
                        },
                    );
                }
                Some(new) if new != old => {
                    let changed: Row = old
                        .iter()
                        .filter(|(k, v)| new.get(*k) != Some(*v))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    rows.insert(
                        *uuid,
                        RowUpdate {
                            old: Some(changed),
                            new: Some(new.clone()),
                        },
                    );
                }
                Some(_) => {}
            }
        }
        for (uuid, new) in a.iter().filter(|(u, _)| !b.contains_key(u)) {
            rows.insert(
                *uuid,
                RowUpdate {
                    old: None,
                    new: Some(new.clone()),
                },
            );
        }
        if !rows.is_empty() {
            updates.insert(table.clone(), rows);
        }
    }
    updates
}

/// A simulated switch and the replica a [`super::Vswitch`] would keep of it.
pub(crate) struct Harness {
    pub(crate) db: SimDb,
    pub(crate) replica: Replica,
}

impl Harness {
    pub(crate) fn new(db: SimDb) -> Self {
        let mut replica = Replica::default();
        replica.apply(&db.contents()).expect("initial contents");
        Self { db, replica }
    }

    /// Plans with `plan`, runs the transaction, feeds the update back; returns
    /// how many operations were sent.
    pub(crate) fn run(
        &mut self,
        plan: impl FnOnce(&Replica) -> Result<Transaction, super::PlanError>,
    ) -> Result<usize, String> {
        let txn = plan(&self.replica).map_err(|e| e.to_string())?;
        if txn.is_empty() {
            return Ok(0);
        }
        let update = self.db.execute(&txn)?;
        self.replica.apply(&update).map_err(|e| e.to_string())?;
        Ok(txn.len())
    }

    pub(crate) fn interface(&self, name: &str) -> Option<super::InterfaceInfo> {
        self.replica
            .interfaces()
            .into_iter()
            .find(|i| i.name == name)
    }

    pub(crate) fn edit(&mut self, table: &str, name: &str, column: &str, value: Datum) {
        let update = self.db.edit(table, name, column, value);
        self.replica.apply(&update).expect("edit applies");
    }

    pub(crate) fn edit_row(&mut self, table: &str, uuid: Uuid, column: &str, value: Datum) {
        let update = self.db.edit_row(table, uuid, column, value);
        self.replica.apply(&update).expect("edit applies");
    }
}
