//! The reconciler: the fewest messages that turn what a switch holds into
//! what the compiler wants.
//!
//! A flow whose identity (table, priority, match) and cookie both match is
//! left alone, so its counters and duration keep running. A flow whose
//! identity matches but whose cookie differs is replaced with an ADD: an
//! OpenFlow 1.3 MODIFY_STRICT changes the instructions but not the cookie
//! (Open vSwitch follows the spec), so a modified flow would look stale at
//! the next dump forever; an ADD over the same identity replaces instructions
//! and cookie in one atomic step. Flows Iris owns (its cookie tag) that are
//! not wanted are deleted with DELETE_STRICT on their exact cookie; flows
//! somebody else put there are kept or deleted as [`Foreign`] says.
//!
//! Order matters to a switch in motion. Groups are added or modified first,
//! then a barrier, so no flow points to a missing group; flows are added from
//! the last table to the first, so a packet that enters a new path finds the
//! rest of it already there; unwanted flows go next, first table first; after
//! another barrier, unwanted groups go last (deleting a group deletes every
//! flow that still uses it).

use crate::compiler::{is_iris_group, FlowSink};
use crate::switch_state::{
    is_iris_cookie, Flow, FlowKey, FlowKeyRef, Group, Installed, SwitchState,
};
use ofp::message::{FlowMod, FlowModCommand, GroupMod, GroupModCommand, Message};
use std::collections::BTreeMap;

/// What to do with flows and groups Iris did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Foreign {
    /// Leave them (an operator's debugging flow survives a reconnect).
    #[default]
    Keep,
    /// Delete them: only Iris decides what the bridge does.
    Delete,
}

/// What a plan does, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanSummary {
    pub flows_added: usize,
    /// Same identity, other cookie: re-added.
    pub flows_replaced: usize,
    pub flows_deleted: usize,
    pub groups_added: usize,
    pub groups_modified: usize,
    pub groups_deleted: usize,
    /// Flows and groups Iris did not write and left alone.
    pub foreign_kept: usize,
}

impl PlanSummary {
    /// Whether the plan changes the switch at all.
    pub fn is_noop(&self) -> bool {
        self.flows_added
            + self.flows_replaced
            + self.flows_deleted
            + self.groups_added
            + self.groups_modified
            + self.groups_deleted
            == 0
    }
}

/// The messages to send, in order, and what they do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// FLOW_MODs, GROUP_MODs and the barriers between phases. Empty when the
    /// switch is already right. The caller numbers them (xids) and sends a
    /// final barrier to learn when the switch has applied them.
    pub messages: Vec<Message>,
    pub summary: PlanSummary,
}

/// Diffs `desired` (from the compiler) against `actual` (from a flow and
/// group dump, or the last state known to be installed).
pub fn reconcile(desired: &SwitchState, actual: &SwitchState, foreign: Foreign) -> Plan {
    let mut summary = PlanSummary::default();
    let groups = diff_groups(&desired.groups, &actual.groups, foreign, &mut summary);

    let mut adds: Vec<Flow> = Vec::new();
    for (key, f) in &desired.flows {
        match actual.flows.get(key) {
            None => {
                summary.flows_added += 1;
                adds.push(f.clone());
            }
            Some(a) if a.cookie != f.cookie => {
                summary.flows_replaced += 1;
                adds.push(f.clone());
            }
            Some(_) => {}
        }
    }
    let mut deletes = Vec::new();
    for (key, f) in &actual.flows {
        if desired.flows.contains_key(key) {
            continue;
        }
        if is_iris_cookie(f.cookie) || foreign == Foreign::Delete {
            summary.flows_deleted += 1;
            deletes.push(delete_strict(f));
        } else {
            summary.foreign_kept += 1;
        }
    }
    let messages = assemble(groups, adds, deletes);
    Plan { messages, summary }
}

/// The compiled flows compared one by one, as the compiler emits them,
/// against what a switch holds, keeping whole only the flows that differ:
/// what [`reconcile`] decides, without holding the whole compiled table.
/// The flows the switch already holds as compiled are only recorded, by
/// identity and cookie, for [`Diff::finish`] to return as the switch's new
/// [`Installed`] state.
#[derive(Debug)]
pub struct Diff<'a> {
    actual: &'a Installed,
    desired: Installed,
    /// The compiled flows the switch does not hold with their cookie, and
    /// every compiled group.
    changed: SwitchState,
    /// The identity of the flow being compared, written here rather than
    /// into an allocation per flow.
    key: Vec<u8>,
}

impl<'a> Diff<'a> {
    pub fn new(actual: &'a Installed) -> Self {
        Self {
            actual,
            desired: Installed::with_capacity(actual.flow_count(), actual.match_bytes()),
            changed: SwitchState::default(),
            key: Vec::new(),
        }
    }

    /// The plan, and what the switch holds once it is applied.
    pub fn finish(self, foreign: Foreign) -> (Plan, Installed) {
        let Self {
            actual,
            mut desired,
            changed,
            ..
        } = self;
        let mut summary = PlanSummary::default();
        let groups = diff_groups(&changed.groups, &actual.groups, foreign, &mut summary);
        desired.groups = changed.groups;

        // Moved into their FLOW_MODs: a plan for a switch that holds none
        // of its flows yet would otherwise have each one twice at once.
        let mut adds: Vec<Flow> = Vec::with_capacity(changed.flows.len());
        for (key, f) in changed.flows {
            if actual.contains(&key) {
                summary.flows_replaced += 1;
            } else {
                summary.flows_added += 1;
            }
            adds.push(f);
        }
        // In identity order, as `reconcile` sends them.
        let mut gone: Vec<(FlowKeyRef<'_>, u64)> = Vec::new();
        for (key, cookie) in actual.flows() {
            if desired.contains(key) {
                continue;
            }
            if is_iris_cookie(cookie) || foreign == Foreign::Delete {
                gone.push((key, cookie));
            } else {
                summary.foreign_kept += 1;
            }
        }
        gone.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut deletes = Vec::with_capacity(gone.len());
        for (key, cookie) in gone {
            // Every key was written from a decoded match, so it decodes.
            if let Some(match_) = key.match_() {
                summary.flows_deleted += 1;
                deletes.push(delete_strict(&Flow {
                    table: key.table,
                    priority: key.priority,
                    match_,
                    instructions: Vec::new(),
                    cookie,
                }));
            }
        }
        let messages = assemble(groups, adds, deletes);
        (Plan { messages, summary }, desired)
    }
}

impl FlowSink for Diff<'_> {
    fn flow(&mut self, flow: Flow) {
        let mut buf = std::mem::take(&mut self.key);
        let key = flow.key_in(&mut buf);
        let cookie = flow.cookie;
        let mut flow = Some(flow);
        self.known_flow(key, cookie, &mut || {
            flow.take().expect("a flow is wanted whole at most once")
        });
        self.key = buf;
    }

    fn group(&mut self, group: Group) {
        self.changed.insert_group(group);
    }

    fn known_flow(&mut self, key: FlowKeyRef<'_>, cookie: u64, make: &mut dyn FnMut() -> Flow) {
        self.desired.insert_flow(key, cookie);
        if self.actual.cookie(key) == Some(cookie) {
            // A later flow with an earlier one's identity replaces it.
            if !self.changed.flows.is_empty() {
                self.changed.flows.remove(&FlowKey::from(key));
            }
        } else {
            self.changed.flows.insert(FlowKey::from(key), make());
        }
    }
}

/// Whether a switch holding `actual` already holds `desired` (every
/// compiled flow's identity and cookie, and the compiled groups): whether
/// [`Diff`] would plan nothing, decided without compiling whole flows.
pub fn holds(desired: &Installed, actual: &Installed, foreign: Foreign) -> bool {
    let mut groups = PlanSummary::default();
    diff_groups(&desired.groups, &actual.groups, foreign, &mut groups);
    if !groups.is_noop() {
        return false;
    }
    if !desired.flows().all(|(k, c)| actual.cookie(k) == Some(c)) {
        return false;
    }
    // Every wanted flow is there, so the rest of `actual` is what a plan
    // would delete or keep.
    actual.flow_count() == desired.flow_count()
        || actual
            .flows()
            .all(|(k, c)| desired.contains(k) || !(is_iris_cookie(c) || foreign == Foreign::Delete))
}

/// The GROUP_MODs that set groups up (before any flow) and those that
/// delete them (after every flow), counted into `summary`.
fn diff_groups(
    desired: &BTreeMap<u32, Group>,
    actual: &BTreeMap<u32, Group>,
    foreign: Foreign,
    summary: &mut PlanSummary,
) -> (Vec<Message>, Vec<Message>) {
    let mut sets = Vec::new();
    for (id, g) in desired {
        match actual.get(id) {
            None => {
                summary.groups_added += 1;
                sets.push(group_mod(GroupModCommand::Add, g));
            }
            Some(a) if a != g => {
                summary.groups_modified += 1;
                sets.push(group_mod(GroupModCommand::Modify, g));
            }
            Some(_) => {}
        }
    }
    let mut deletes = Vec::new();
    for (id, g) in actual {
        if desired.contains_key(id) {
            continue;
        }
        if is_iris_group(*id) || foreign == Foreign::Delete {
            summary.groups_deleted += 1;
            deletes.push(group_mod(GroupModCommand::Delete, g));
        } else {
            summary.foreign_kept += 1;
        }
    }
    (sets, deletes)
}

/// The phases in their safe order (see the module's documentation):
/// `adds` in identity order, `deletes` already written.
fn assemble(
    (group_sets, group_deletes): (Vec<Message>, Vec<Message>),
    mut adds: Vec<Flow>,
    deletes: Vec<Message>,
) -> Vec<Message> {
    // Later tables first; within a table the compiler's order.
    adds.sort_by_key(|f| std::cmp::Reverse(f.table));
    let mut messages = group_sets;
    let flow_mods = adds.len() + deletes.len();
    if !messages.is_empty() && flow_mods > 0 {
        messages.push(Message::BarrierRequest);
    }
    messages.extend(adds.into_iter().map(add));
    messages.extend(deletes);
    if !group_deletes.is_empty() && flow_mods > 0 {
        messages.push(Message::BarrierRequest);
    }
    messages.extend(group_deletes);
    messages
}

fn add(f: Flow) -> Message {
    Message::FlowMod(FlowMod {
        cookie: f.cookie,
        table_id: f.table,
        command: FlowModCommand::Add,
        priority: f.priority,
        match_: f.match_,
        instructions: f.instructions,
        ..FlowMod::default()
    })
}

fn delete_strict(f: &Flow) -> Message {
    Message::FlowMod(FlowMod {
        cookie: f.cookie,
        cookie_mask: u64::MAX,
        table_id: f.table,
        command: FlowModCommand::DeleteStrict,
        priority: f.priority,
        match_: f.match_.clone(),
        ..FlowMod::default()
    })
}

fn group_mod(command: GroupModCommand, g: &Group) -> Message {
    Message::GroupMod(GroupMod {
        command,
        group_type: g.group_type,
        group_id: g.group_id,
        buckets: if command == GroupModCommand::Delete {
            Vec::new()
        } else {
            g.buckets.clone()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flowsim::Switch;
    use ofp::action::Action;
    use ofp::instruction::Instruction;
    use ofp::oxm::Match;

    fn flow(table: u8, port: u32, out: u32) -> Flow {
        Flow::new(
            table,
            100,
            Match::new().in_port(port),
            vec![Instruction::ApplyActions(vec![Action::output(out)])],
        )
    }

    fn state(flows: Vec<Flow>, groups: Vec<Group>) -> SwitchState {
        let mut s = SwitchState::default();
        flows.into_iter().for_each(|f| {
            s.insert_flow(f);
        });
        groups.into_iter().for_each(|g| {
            s.insert_group(g);
        });
        s
    }

    fn commands(p: &Plan) -> Vec<String> {
        p.messages
            .iter()
            .map(|m| match m {
                Message::FlowMod(f) => format!("flow {} t{} {}", f.command, f.table_id, f.match_),
                Message::GroupMod(g) => format!("group {} {}", g.command, g.group_id),
                other => format!("{}", other.msg_type()),
            })
            .collect()
    }

    #[test]
    fn a_switch_that_is_right_gets_nothing() {
        let s = state(
            vec![flow(0, 1, 2), flow(3, 1, 2)],
            vec![Group::all(2, vec![])],
        );
        let p = reconcile(&s, &s.clone(), Foreign::Delete);
        assert!(p.messages.is_empty() && p.summary.is_noop());
    }

    #[test]
    fn phases_come_in_a_safe_order() {
        let old = state(
            vec![flow(0, 9, 1), flow(2, 9, 1), flow(1, 1, 2)],
            vec![Group::all(4, vec![])],
        );
        let new = state(
            vec![flow(0, 1, 2), flow(3, 1, 2), flow(1, 1, 3)],
            vec![Group::all(2, vec![vec![Action::output(1)]])],
        );
        let p = reconcile(&new, &old, Foreign::Keep);
        assert_eq!(
            commands(&p),
            [
                "group ADD 2",
                "OFPT_BARRIER_REQUEST",
                "flow ADD t3 in_port=1",
                "flow ADD t1 in_port=1",
                "flow ADD t0 in_port=1",
                "flow DEL_STRICT t0 in_port=9",
                "flow DEL_STRICT t2 in_port=9",
                "OFPT_BARRIER_REQUEST",
                "group DEL 4",
            ]
        );
        assert_eq!(
            p.summary,
            PlanSummary {
                flows_added: 2,
                flows_replaced: 1,
                flows_deleted: 2,
                groups_added: 1,
                groups_deleted: 1,
                ..PlanSummary::default()
            }
        );
        // Applied to a switch holding `old`, the plan leaves exactly `new`.
        let mut sw = Switch::new();
        sw.apply_all(&reconcile(&old, &SwitchState::default(), Foreign::Keep).messages)
            .unwrap();
        sw.apply_all(&p.messages).unwrap();
        assert_eq!(sw.state(), &new);
    }

    #[test]
    fn foreign_flows_are_kept_or_deleted_as_asked() {
        let mut theirs = flow(0, 7, 7);
        theirs.cookie = 0x1234;
        let ours = flow(0, 1, 2);
        let actual = state(
            vec![theirs.clone(), ours.clone()],
            vec![Group::all(0x4000_0000, vec![])],
        );
        let desired = state(vec![ours], vec![]);
        let keep = reconcile(&desired, &actual, Foreign::Keep);
        assert!(keep.messages.is_empty());
        assert_eq!(keep.summary.foreign_kept, 2);
        let delete = reconcile(&desired, &actual, Foreign::Delete);
        assert_eq!(
            commands(&delete),
            [
                "flow DEL_STRICT t0 in_port=7",
                "OFPT_BARRIER_REQUEST",
                "group DEL 1073741824"
            ]
        );
        // A foreign flow where Iris wants one of its own is replaced either way.
        let mut squatter = flow(0, 1, 9);
        squatter.cookie = 0x1234;
        let p = reconcile(&desired, &state(vec![squatter], vec![]), Foreign::Keep);
        assert_eq!(p.summary.flows_replaced, 1);
    }

    #[test]
    fn a_changed_group_is_modified_in_place() {
        let old = state(vec![], vec![Group::all(2, vec![vec![Action::output(1)]])]);
        let new = state(vec![], vec![Group::all(2, vec![vec![Action::output(5)]])]);
        let p = reconcile(&new, &old, Foreign::Keep);
        assert_eq!(commands(&p), ["group MOD 2"]);
    }
}
