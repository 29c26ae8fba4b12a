//! Keeping switches programmed: compile what a switch should hold, diff it
//! against what it holds, send the difference followed by a barrier, and
//! act once the barriers come back (move latency, packets held until the
//! flows they depend on are in).

use super::held_rarps::{Announcement, Held};
use super::inventory::Incomplete;
use super::{Control, NorthEvent, RegistryEvent, Switch};
use crate::compiler::{
    affected_hosts, compile_entries, compile_holding_back, compile_into_memo, TABLE_CLASSIFY,
    TABLE_FORWARD,
};
use crate::model::Topology;
use crate::model::{HostName, Location};
use crate::packet_in::{handle_packet_in, PacketInKind, PacketInMeta};
use crate::reconciler::{holds, reconcile, Diff, Foreign};
use crate::registry::RegistryChange;
use crate::server::{ConnId, SubmitError};
use crate::session::Batch;
use crate::switch_state::{Installed, SwitchState};
use ofp::message::{Message, PacketIn, PacketOut};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// A dump is asked for at most this often per switch, so a switch that
/// keeps refusing a flow is not dumped in a loop. It is also how long a
/// dump may take: one refused by the switch, or whose reply never comes,
/// is asked for again after this long. (Asking while a slow dump is still
/// being gathered is harmless: the session does not start a second one.)
pub(super) const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// What a connection's flow tables are known to hold.
#[derive(Debug, Default)]
pub(super) struct Sync {
    /// The last dump with every plan sent since applied; `None` when it is
    /// not known (before the handshake, or after a batch was lost) and a
    /// dump must come first.
    installed: Option<Installed>,
    /// When a dump was last asked for.
    last_dump: Option<Instant>,
}

/// How long a host's tables compiled ahead of its switch are kept for the
/// switch to come; then they are dropped, so that a host whose switch stays
/// away costs no memory.
pub(super) const PREPARED_TTL: Duration = Duration::from_secs(30);

/// What a host's switch should hold, compiled while the switch was away, and
/// what it was compiled from. After a restart Open vSwitch waits about a
/// second before it reconnects; compiling then, the switch's dump only has
/// to be compared once it comes.
#[derive(Debug)]
pub(super) struct Prepared {
    registry_version: u64,
    topology: Topology,
    tables: Installed,
    at: Instant,
}

/// How the reprogramming some work waited for ended; a later, worse
/// outcome wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Outcome {
    /// Every switch concerned took its batch without an error.
    #[default]
    Confirmed,
    /// A switch refused part of its batch (it is resynchronised).
    Refused,
    /// A switch disconnected before confirming.
    Abandoned,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Refused => "refused",
            Self::Abandoned => "abandoned",
        }
    }
}

/// What programming one switch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Programmed {
    /// A batch went out, confirmed by the barrier with this ticket.
    Sent(u64),
    /// The switch already holds what it should.
    InSync,
    /// The switch's tables are not known or its queue is full: it gets its
    /// flows after its next dump. Or its host's port inventory is not
    /// complete: it gets them once it is.
    Deferred,
    /// Not a switch of a host, or its connection is closing.
    Skipped,
}

/// What part of a switch to bring right.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Everything,
    /// The flows of the registry entries these changes touched: the rest
    /// is right already (the topology has not changed since the switch
    /// was last programmed), or the switch is compiled whole next.
    Entries(&'a [RegistryChange]),
    /// Everything, but the flows of the entries these changes touched as
    /// they were before them: the switch learns them in a later batch.
    HoldingBack(&'a [RegistryChange]),
}

/// What a switch holds once its batch is sent.
enum Next {
    Is(Installed),
    /// These flows (of what it held) replaced by those.
    Replaced(SwitchState, SwitchState),
}

/// What a change set in motion on the switches.
#[derive(Debug, Default)]
pub(super) struct Programming {
    /// The barrier tickets of the batches sent.
    tickets: BTreeSet<u64>,
    /// Switches that could not take their batch now.
    deferred: BTreeSet<ConnId>,
}

impl Programming {
    fn record(&mut self, conn: ConnId, done: Programmed) {
        match done {
            Programmed::Sent(t) => {
                self.tickets.insert(t);
            }
            Programmed::Deferred => {
                self.deferred.insert(conn);
            }
            Programmed::InSync | Programmed::Skipped => {}
        }
    }
}

/// Work that waits for barrier replies.
#[derive(Debug, Default)]
struct Waiting {
    tickets: BTreeSet<u64>,
    /// Switches that could not take their batch: the work waits for their
    /// resynchronisation, so a flood never overtakes their flows.
    held: BTreeSet<ConnId>,
    outcome: Outcome,
    /// Sent to the connection once every ticket is in.
    then: Vec<(ConnId, PacketOut)>,
    /// MACs a RARP moved, with when its PacketIn arrived: the latency is
    /// recorded when the tickets are in.
    moves: Vec<(Instant, RegistryEvent)>,
    /// Its burst's commit is still under way (`control/commit.rs`).
    uncommitted: bool,
    /// Switches to bring right once the tickets are in: those that send
    /// to MACs which moved, after the switches the MACs moved to.
    redirect: Option<Redirect>,
}

/// The part of a change set that waits for the switches MACs moved to: the
/// other switches of their VIs start sending to the new place only once it
/// holds the flows that take the frames in (make before break). Sent at
/// once, a frame could reach the new host before its batch and be dropped
/// there, which in a move costs a ping.
#[derive(Debug, Default)]
struct Redirect {
    /// Switches to compile the flows of these changes for.
    entries: BTreeMap<HostName, Vec<RegistryChange>>,
    /// Switches to compile whole.
    whole: BTreeSet<HostName>,
    /// A ticket no switch was sent yet that stands for these batches: what
    /// waits for the change set waits for it, and then for the batches.
    stand_in: u64,
}

/// Which waiting work.
pub(super) type WaitId = u64;

/// What a burst of switch events asks for, done once when it ends.
#[derive(Debug, Default)]
pub(super) struct Burst {
    /// Hosts whose switches must be compiled whole (the topology changed).
    hosts: BTreeSet<HostName>,
    /// The burst's registry changes that affect flows: the switches of the
    /// members of their VIs compile only the flows of the entries changed.
    changes: Vec<RegistryChange>,
    /// What waits for those switches to be reprogrammed.
    waiting: Waiting,
    /// PacketOuts that wait for nothing, by connection.
    outs: BTreeMap<ConnId, Vec<PacketOut>>,
    /// The registry changes to store, and to announce once stored.
    store: crate::store::Batch,
    events: Vec<RegistryEvent>,
    /// Connections whose PacketIns the burst took: acknowledged once its
    /// changes are stored.
    acks: BTreeSet<ConnId>,
}

impl Burst {
    pub(super) fn took_from(&mut self, conn: ConnId) {
        self.acks.insert(conn);
    }
}

/// Barrier tickets in flight and what waits on them.
#[derive(Debug, Default)]
pub(super) struct Tickets {
    next: u64,
    /// Ticket -> (connection, the waiting work that needs it); no
    /// connection for a [`Redirect`]'s stand-in.
    owner: HashMap<u64, (Option<ConnId>, Vec<u64>)>,
    /// The tickets in flight of batches that compiled a switch whole (its
    /// topology changed: a VI's pipeline, a new port).
    whole: HashSet<u64>,
    waiting: HashMap<u64, Waiting>,
    next_waiting: u64,
}

impl Control {
    /// Reprograms every switch serving one of `hosts`. During a burst the
    /// hosts are only marked (nothing is in motion yet): the burst
    /// reprograms each marked one once when it ends.
    pub(super) fn program_hosts(&mut self, hosts: &BTreeSet<HostName>) -> Programming {
        if let Some(b) = self.burst.as_mut() {
            b.hosts.extend(hosts.iter().cloned());
            return Programming::default();
        }
        let mut done = Programming::default();
        for c in self.conns_serving(hosts) {
            let programmed = self.program(c);
            done.record(c, programmed);
        }
        done
    }

    /// The connections of the switches that serve one of `hosts`.
    fn conns_serving(&self, hosts: &BTreeSet<HostName>) -> Vec<ConnId> {
        self.switches
            .iter()
            .filter(|(_, s)| s.host.as_ref().is_some_and(|h| hosts.contains(h)))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Reprograms every switch that belongs to a host.
    pub(super) fn program_all(&mut self) -> Programming {
        let hosts = self.topology.hosts.keys().cloned().collect();
        self.program_hosts(&hosts)
    }

    /// Brings one switch to what the compiler wants.
    fn program(&mut self, conn: ConnId) -> Programmed {
        self.program_scope(conn, Scope::Everything)
    }

    /// Brings one switch to what the compiler wants, looking at `scope`
    /// only: the rest of the switch is known to be right already.
    fn program_scope(&mut self, conn: ConnId, scope: Scope<'_>) -> Programmed {
        if !self.role.writes() {
            // A standby's switches are the leader's to program.
            return Programmed::Skipped;
        }
        let Some(sw) = self.switches.get(&conn) else {
            return Programmed::Skipped;
        };
        let Some(host) = sw.host.clone() else {
            return Programmed::Skipped;
        };
        let Some(installed) = sw.sync.installed.as_ref() else {
            self.request_dump(conn, Instant::now());
            return Programmed::Deferred;
        };
        let whole = matches!(scope, Scope::Everything | Scope::HoldingBack(_));
        if let Some(why) =
            self.inventory
                .incomplete(&self.topology, &host, &sw.ports, installed, whole)
        {
            self.hold_for_inventory(conn, &host, &why);
            return Programmed::Deferred;
        }
        if sw.held_for_inventory {
            info!(%conn, %host, "the port inventory is complete; programming the switch");
            if let Some(sw) = self.switches.get_mut(&conn) {
                sw.held_for_inventory = false;
            }
        }
        let Some(installed) = self
            .switches
            .get(&conn)
            .and_then(|s| s.sync.installed.as_ref())
        else {
            return Programmed::Skipped;
        };
        if whole {
            let prepared = self.prepared.remove(&host);
            let fresh = prepared.filter(|p| {
                p.registry_version == self.registry.version() && p.topology == self.topology
            });
            if fresh.is_some_and(|p| holds(&p.tables, installed, Foreign::Keep)) {
                debug!(%conn, %host, "switch holds the tables compiled ahead of it");
                self.metrics.switches_held_tables_ahead.inc();
                return Programmed::InSync;
            }
        }
        let (plan, next) = match scope {
            Scope::Everything | Scope::HoldingBack(_) => {
                let mut diff = Diff::new(installed);
                let (registry, topology, memo) = (&self.registry, &self.topology, &mut self.memo);
                match scope {
                    Scope::HoldingBack(held) => {
                        compile_holding_back(held, registry, topology, &host, &mut diff, memo);
                    }
                    _ => compile_into_memo(registry, topology, &host, &mut diff, memo),
                }
                let (plan, desired) = diff.finish(Foreign::Keep);
                (plan, Next::Is(desired))
            }
            Scope::Entries(changes) => {
                let flows = compile_entries(changes, &self.registry, &self.topology, &host);
                let missing_group = flows
                    .after
                    .flows
                    .values()
                    .flat_map(|f| f.groups())
                    .any(|g| !installed.groups.contains_key(&g));
                if missing_group {
                    // A group the topology just brought (a VI new on this
                    // switch): the flows must not reach the switch before
                    // it, so the switch is compiled whole.
                    return self.program_scope(conn, Scope::Everything);
                }
                let part = installed.flows_at(flows.before.flows.iter().chain(&flows.after.flows));
                let plan = reconcile(&flows.after, &part, Foreign::Keep);
                (plan, Next::Replaced(part, flows.after))
            }
        };
        if plan.summary.is_noop() {
            return Programmed::InSync;
        }
        let ticket = self.tickets.next;
        self.tickets.next += 1;
        let (flow_mods, group_mods) = plan.messages.iter().fold((0, 0), |(f, g), m| match m {
            Message::FlowMod(_) => (f + 1, g),
            Message::GroupMod(_) => (f, g + 1),
            _ => (f, g),
        });
        let Some(sw) = self.switches.get_mut(&conn) else {
            return Programmed::Skipped;
        };
        match sw.handle.try_submit(Batch {
            messages: plan.messages,
            barrier: Some(ticket),
        }) {
            Ok(()) => {
                debug!(%conn, %host, ?plan.summary, ticket, "sent");
                match (next, sw.sync.installed.as_mut()) {
                    (Next::Replaced(part, with), Some(installed)) => {
                        installed.replace_flows(&part, &with);
                    }
                    (Next::Replaced(..), None) => {}
                    (Next::Is(desired), _) => sw.sync.installed = Some(desired),
                }
                self.metrics.flow_mods_sent.inc_by(flow_mods);
                self.metrics.group_mods_sent.inc_by(group_mods);
                self.tickets.owner.insert(ticket, (Some(conn), Vec::new()));
                if whole {
                    self.tickets.whole.insert(ticket);
                }
                Programmed::Sent(ticket)
            }
            Err(SubmitError::Full) => {
                warn!(%conn, %host, "switch is not keeping up; it will be resynchronised");
                sw.sync.installed = None;
                Programmed::Deferred
            }
            Err(SubmitError::Closed) => Programmed::Skipped,
        }
    }

    /// Leaves a ready switch as it is until the inventory of ports its
    /// tables are compiled from is complete.
    fn hold_for_inventory(&mut self, conn: ConnId, host: &HostName, why: &Incomplete) {
        let Some(sw) = self.switches.get_mut(&conn) else {
            return;
        };
        if !sw.held_for_inventory {
            sw.held_for_inventory = true;
            self.metrics.switches_held_for_inventory.inc();
            info!(%conn, %host, "switch left as it is until the port inventory is complete: {why}");
        }
    }

    /// Programs the switches left waiting for their inventory whose
    /// inventory is now complete, and lets the work held for them go on.
    pub(super) fn resume_held_switches(&mut self) {
        let held: Vec<ConnId> = self
            .switches
            .iter()
            .filter(|(_, s)| s.held_for_inventory)
            .map(|(c, _)| *c)
            .collect();
        for conn in held {
            // Still held, without a word, when it is still incomplete.
            self.program_and_release(conn);
        }
    }

    /// Compiles, ahead of its switch, the tables of one host whose OVSDB is
    /// up while its switch is not connected.
    pub(super) fn prepare_next(&mut self, now: Instant) {
        let Some(host) = self.to_prepare.pop_first() else {
            return;
        };
        if self.hosts_with_a_switch().contains(&host)
            || !self.topology.hosts.contains_key(&host)
            || !self.inventory.complete_without_switch(&host)
        {
            return;
        }
        let mut tables = Installed::default();
        let (registry, topology) = (&self.registry, &self.topology);
        compile_into_memo(registry, topology, &host, &mut tables, &mut self.memo);
        debug!(%host, flows = tables.flow_count(), "compiled ahead of the switch");
        self.prepared.insert(
            host,
            Prepared {
                registry_version: self.registry.version(),
                topology: self.topology.clone(),
                tables,
                at: now,
            },
        );
    }

    /// Drops tables compiled ahead for switches that did not come.
    pub(super) fn expire_prepared(&mut self, now: Instant) {
        self.prepared
            .retain(|_, p| now.saturating_duration_since(p.at) < PREPARED_TTL);
        if self.prepared.is_empty() && self.to_prepare.is_empty() {
            // What hosts share is kept while tables are being compiled
            // for many of them (a restart), not for good.
            self.memo.clear();
        }
    }

    /// Queues for compiling ahead, after a host's ports changed or its
    /// OVSDB came up, every host with OVSDB up whose switch is away: a
    /// host's ports show in the other hosts' flows too.
    pub(super) fn want_prepared(&mut self) {
        let present = self.hosts_with_a_switch();
        let away: Vec<HostName> = self
            .ovsdb_up
            .iter()
            .filter(|h| !present.contains(h) && self.inventory.complete_without_switch(h))
            .cloned()
            .collect();
        self.to_prepare.extend(away);
    }

    /// The hosts whose switch is connected.
    fn hosts_with_a_switch(&self) -> BTreeSet<&HostName> {
        self.switches
            .values()
            .filter_map(|s| s.host.as_ref())
            .collect()
    }

    /// Asks a switch for its tables unless that was done recently.
    fn request_dump(&mut self, conn: ConnId, now: Instant) {
        let Some(sw) = self.switches.get_mut(&conn) else {
            return;
        };
        let recent = sw
            .sync
            .last_dump
            .is_some_and(|t| now.saturating_duration_since(t) < RESYNC_INTERVAL);
        if recent {
            return;
        }
        if sw.handle.try_dump().is_ok() {
            sw.sync.last_dump = Some(now);
        }
    }

    /// Periodic work: resynchronise switches whose tables are not known.
    pub(super) fn resync_stale(&mut self, now: Instant) {
        let stale: Vec<ConnId> = self
            .switches
            .iter()
            .filter(|(_, s)| s.host.is_some() && s.dpid.is_some() && s.sync.installed.is_none())
            .map(|(c, _)| *c)
            .collect();
        for c in stale {
            self.request_dump(c, now);
        }
    }

    /// The handshake's dump (or a later one) arrived: reconcile against it,
    /// and let the work held for this switch go on.
    pub(super) fn on_tables(&mut self, conn: ConnId, installed: Installed) {
        let Some(sw) = self.switches.get_mut(&conn) else {
            return;
        };
        sw.sync.installed = Some(installed);
        self.program_and_release(conn);
    }

    /// Programs one switch whose tables are known and lets the work held
    /// for it go on (or keeps it held, when the switch is still deferred).
    fn program_and_release(&mut self, conn: ConnId) {
        match self.program(conn) {
            // Still not keeping up: the work stays held for the next dump.
            Programmed::Deferred => {}
            Programmed::Sent(t) => self.release_held(conn, Some(t), Outcome::Confirmed),
            Programmed::InSync | Programmed::Skipped => {
                self.release_held(conn, None, Outcome::Confirmed);
            }
        }
    }

    /// A barrier came back: the batch before it is in.
    pub(super) fn on_barrier(&mut self, conn: ConnId, ticket: u64, errors: usize) {
        let outcome = if errors > 0 {
            // The switch holds less than assumed: learn what it does hold.
            warn!(%conn, errors, "switch refused part of a batch; resynchronising");
            if let Some(sw) = self.switches.get_mut(&conn) {
                sw.sync.installed = None;
            }
            self.request_dump(conn, Instant::now());
            Outcome::Refused
        } else {
            Outcome::Confirmed
        };
        self.ticket_done(ticket, outcome);
    }

    fn ticket_done(&mut self, ticket: u64, outcome: Outcome) {
        self.tickets.whole.remove(&ticket);
        let Some((_, waiters)) = self.tickets.owner.remove(&ticket) else {
            return;
        };
        for id in waiters {
            if let Some(w) = self.tickets.waiting.get_mut(&id) {
                w.tickets.remove(&ticket);
                w.outcome = w.outcome.max(outcome);
            }
            self.settle(id);
        }
    }

    /// Finishes waiting work `id` if nothing it waits for is left.
    fn settle(&mut self, id: u64) {
        let done = self
            .tickets
            .waiting
            .get(&id)
            .is_some_and(|w| w.tickets.is_empty() && w.held.is_empty() && !w.uncommitted);
        if done {
            if let Some(w) = self.tickets.waiting.remove(&id) {
                self.finish(w);
            }
        }
    }

    /// A connection went away: nothing it owed will arrive.
    pub(super) fn forget_tickets(&mut self, conn: ConnId) {
        let owed: Vec<u64> = self
            .tickets
            .owner
            .iter()
            .filter(|(_, (c, _))| *c == Some(conn))
            .map(|(t, _)| *t)
            .collect();
        for t in owed {
            self.ticket_done(t, Outcome::Abandoned);
        }
        self.release_held(conn, None, Outcome::Abandoned);
    }

    /// The work held for `conn`'s resynchronisation goes on: it waits for
    /// `ticket` instead when the resync sent a batch, and ends with at
    /// worst `outcome`.
    fn release_held(&mut self, conn: ConnId, ticket: Option<u64>, outcome: Outcome) {
        let held: Vec<u64> = self
            .tickets
            .waiting
            .iter()
            .filter(|(_, w)| w.held.contains(&conn))
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            if let Some(w) = self.tickets.waiting.get_mut(&id) {
                w.held.remove(&conn);
            }
            self.wait_also(id, ticket, &BTreeSet::new(), outcome);
        }
    }

    /// Waiting work `id` ends with at worst `outcome` and waits for
    /// `tickets` and the resynchronisation of `held` too; finished now if
    /// nothing is left to wait for.
    fn wait_also(
        &mut self,
        id: WaitId,
        tickets: impl IntoIterator<Item = u64>,
        held: &BTreeSet<ConnId>,
        outcome: Outcome,
    ) {
        if let Some(w) = self.tickets.waiting.get_mut(&id) {
            w.outcome = w.outcome.max(outcome);
            w.held.extend(held);
            for t in tickets {
                w.tickets.insert(t);
                if let Some(owner) = self.tickets.owner.get_mut(&t) {
                    owner.1.push(id);
                }
            }
        }
        self.settle(id);
    }

    /// Everything `w` waited for is in: reprogram what it held back,
    /// measure and announce its moves, and send what it held back.
    fn finish(&mut self, mut w: Waiting) {
        if let Some(r) = w.redirect.take() {
            self.redirect(r, w.outcome);
        }
        for (started, m) in w.moves {
            let latency = started.elapsed();
            let ms = latency.as_secs_f64() * 1e3;
            let to = m.location.as_deref().unwrap_or("nowhere");
            if w.outcome == Outcome::Confirmed {
                self.metrics.move_latency.observe(latency.as_secs_f64());
                info!("{} moved on vi{} to {to} in {ms:.1} ms", m.mac, m.vi);
                self.publish(NorthEvent::Move {
                    latency_ms: ms,
                    event: m,
                });
            } else {
                let why = w.outcome.label();
                warn!(
                    "{} moved on vi{} to {to}, but not every switch took the new flows ({why})",
                    m.mac, m.vi
                );
                self.metrics.move_incomplete(why);
                self.publish(NorthEvent::MoveIncomplete {
                    why: why.into(),
                    event: m,
                });
            }
        }
        let mut outs: BTreeMap<ConnId, Vec<PacketOut>> = BTreeMap::new();
        for (conn, out) in w.then {
            outs.entry(conn).or_default().push(out);
        }
        self.queue_packet_outs(outs);
    }

    /// Sends `outs` now, or with the burst's other PacketOuts when one is
    /// being taken.
    pub(super) fn queue_packet_outs(&mut self, outs: BTreeMap<ConnId, Vec<PacketOut>>) {
        match self.burst.as_mut() {
            Some(b) => {
                for (conn, mut o) in outs {
                    b.outs.entry(conn).or_default().append(&mut o);
                }
            }
            None => self.send_packet_outs(outs),
        }
    }

    /// From now until [`Control::end_burst`], registry and topology changes
    /// only mark switches for reprogramming and PacketOuts are held.
    pub(super) fn begin_burst(&mut self) {
        self.burst.get_or_insert_with(Burst::default);
    }

    /// Reprograms every switch the burst concerns (once each), lets what
    /// waits on that wait for its barriers, and sends each connection its
    /// other PacketOuts in one batch.
    pub(super) fn end_burst(&mut self) {
        let Some(b) = self.burst.take() else { return };
        if self.halted() {
            return;
        }
        // What a burst learned came from the data plane (a move, a learned
        // MAC), not from an API client: its flows are on their way while
        // the store commits it, and a crash in between costs at most a
        // move until the guest's next frame (`docs/controller.md`, Store).
        let programming = self.program_burst(&b);
        // Frames held for a guest go where it showed up at once: straight
        // out of its port, they need none of the flows on their way.
        self.release_parked();
        // A burst that stores nothing (barrier replies, port status) goes
        // behind the commits under way too, rather than wait for them: its
        // floods and moves still go out after theirs, and the loop takes
        // the next PacketIns meanwhile.
        if self.overlaps_commits() && (!b.store.is_empty() || self.committing.under_way()) {
            let mut w = b.waiting;
            w.tickets = programming.tickets;
            w.held = programming.deferred;
            let waiting = if !w.then.is_empty() || !w.moves.is_empty() {
                w.uncommitted = true;
                self.wait_for(w)
            } else {
                None
            };
            let acks = b
                .acks
                .iter()
                .filter_map(|c| Some((*c, self.switches.get(c)?.taken)))
                .collect();
            let then = super::commit::Committing {
                events: b.events,
                waiting,
                outs: b.outs,
                acks,
            };
            self.commit_behind(b.store, then);
            return;
        }
        // Whatever this burst sends goes after the commit under way.
        self.settle_commit(true);
        if self.halted() {
            return;
        }
        if !self.store_or_owe(b.store) {
            // Not durable: nothing else may act on what the burst learned,
            // not even the floods.
            return;
        }
        self.announce_registry(b.events);
        let mut w = b.waiting;
        w.tickets = programming.tickets;
        w.held = programming.deferred;
        if !w.then.is_empty() || !w.moves.is_empty() {
            self.wait_for(w);
        }
        self.send_packet_outs(b.outs);
        for conn in b.acks {
            self.ack_packet_ins(conn);
        }
    }

    /// The changes each host's switch must compile, in the order made: a
    /// change concerns the members of its VI (what [`affected_hosts`]
    /// says). Worked out once per burst, as
    /// one pass over the ports: per change it was a pass per PacketIn, and
    /// every switch then went through every change of the burst, those of
    /// VIs it does not serve included.
    fn changes_by_host(
        &self,
        changes: &[RegistryChange],
    ) -> BTreeMap<HostName, Vec<RegistryChange>> {
        let mut per_host: BTreeMap<HostName, Vec<RegistryChange>> = BTreeMap::new();
        if changes.is_empty() {
            return per_host;
        }
        let members = self.topology.vi_members();
        for c in changes {
            let hosts = members.get(&c.vi()).into_iter().flatten();
            for h in hosts {
                per_host.entry((*h).clone()).or_default().push(c.clone());
            }
        }
        per_host
    }

    /// Reprograms the switches `b` concerns: those MACs moved to first,
    /// the others once those confirmed ([`Redirect`]).
    fn program_burst(&mut self, b: &Burst) -> Programming {
        let entries = self.changes_by_host(&b.changes);
        self.program_arrivals_first(&b.changes, entries, b.hosts.clone())
    }

    /// Reprograms the switches of `hosts` whole and those of `entries` for
    /// the flows of their changes, where `changes` moved MACs first: the
    /// rest waits for them ([`Redirect`]); what waits for the returned
    /// programming waits for the rest too.
    fn program_arrivals_first(
        &mut self,
        changes: &[RegistryChange],
        mut entries: BTreeMap<HostName, Vec<RegistryChange>>,
        mut whole: BTreeSet<HostName>,
    ) -> Programming {
        let arrivals = arrivals(changes);
        if arrivals.is_empty() {
            return self.program_parts(entries, &whole, &BTreeMap::new());
        }
        // An arrival that also sends to a MAC which moved to another
        // arrival learns that move with the others, once its destination
        // confirmed: two guests crossing in one burst would otherwise send
        // each other's frames ahead of the flows that take them in.
        let mut first_entries: BTreeMap<HostName, Vec<RegistryChange>> = BTreeMap::new();
        for h in &arrivals {
            let Some(list) = entries.remove(h) else {
                continue;
            };
            let (later, now): (Vec<_>, Vec<_>) = list
                .into_iter()
                .partition(|c| moves_to_another(c, h, &arrivals));
            if !now.is_empty() {
                first_entries.insert(h.clone(), now);
            }
            if !later.is_empty() {
                entries.insert(h.clone(), later);
            }
        }
        let first_whole: BTreeSet<HostName> = arrivals
            .iter()
            .filter(|h| whole.remove(*h))
            .cloned()
            .collect();
        // An arrival compiled whole keeps the others' moves as they were
        // too, and learns them with its second round's changes.
        let held_back: BTreeMap<HostName, Vec<RegistryChange>> = first_whole
            .iter()
            .filter_map(|h| Some((h.clone(), entries.get(h)?.clone())))
            .collect();
        let mut programming = self.program_parts(first_entries, &first_whole, &held_back);
        if entries.is_empty() && whole.is_empty() {
            return programming;
        }
        // What takes the moved MACs' frames in on the arrivals' switches
        // must be in before the others send them anything: their
        // pipelines (every batch in flight that compiled one whole: the VI
        // a port report brought a moment ago, the new port in its flood
        // group). The MACs' own flows need not be: a switch delivers a
        // frame that came by tunnel for a MAC it does not know yet to the
        // VI's local ports. Waiting for every batch in flight instead made
        // 100 simultaneous moves queue behind each other's.
        let first_conns: BTreeSet<ConnId> = self
            .switches
            .iter()
            .filter(|(_, s)| s.host.as_ref().is_some_and(|h| arrivals.contains(h)))
            .map(|(c, _)| *c)
            .collect();
        let tickets: BTreeSet<u64> = self
            .tickets
            .owner
            .iter()
            .filter(|(t, (c, _))| {
                c.is_some_and(|c| first_conns.contains(&c)) && self.tickets.whole.contains(t)
            })
            .map(|(t, _)| *t)
            .collect();
        let held: BTreeSet<ConnId> = programming
            .deferred
            .iter()
            .filter(|c| first_conns.contains(c))
            .copied()
            .collect();
        if tickets.is_empty() && held.is_empty() {
            let rest = self.program_parts(entries, &whole, &BTreeMap::new());
            programming.tickets.extend(rest.tickets);
            programming.deferred.extend(rest.deferred);
            return programming;
        }
        let stand_in = self.tickets.next;
        self.tickets.next += 1;
        self.tickets.owner.insert(stand_in, (None, Vec::new()));
        programming.tickets.insert(stand_in);
        self.wait_for(Waiting {
            tickets,
            held,
            redirect: Some(Redirect {
                entries,
                whole,
                stand_in,
            }),
            ..Waiting::default()
        });
        programming
    }

    /// The flows of the registry entries changed go first, to every switch
    /// they concern (each only the changes of the VIs it serves): a move
    /// released by a port report reaches the switches that send to the
    /// moved MAC before any switch is compiled whole for the report. Then
    /// the switches of `whole` (whose topology changed) are compiled whole,
    /// which finds those entries done; those of `held_back` keep the
    /// entries of its changes as they were.
    fn program_parts(
        &mut self,
        entries: BTreeMap<HostName, Vec<RegistryChange>>,
        whole: &BTreeSet<HostName>,
        held_back: &BTreeMap<HostName, Vec<RegistryChange>>,
    ) -> Programming {
        let mut programming = Programming::default();
        let conns: Vec<(ConnId, HostName)> = self
            .switches
            .iter()
            .filter_map(|(c, s)| Some((*c, s.host.clone()?)))
            .filter(|(_, h)| entries.contains_key(h))
            .collect();
        for (c, host) in conns {
            let done = self.program_scope(c, Scope::Entries(&entries[&host]));
            programming.record(c, done);
        }
        for c in self.conns_serving(whole) {
            let held = self.switches[&c]
                .host
                .as_ref()
                .and_then(|h| held_back.get(h));
            let done = match held {
                Some(held) => self.program_scope(c, Scope::HoldingBack(held)),
                None => self.program(c),
            };
            programming.record(c, done);
        }
        programming
    }

    /// The switches MACs moved to have confirmed (or failed to, `outcome`):
    /// the others of `r` go now, and what waited for `r` waits for their
    /// batches.
    fn redirect(&mut self, r: Redirect, outcome: Outcome) {
        let sent = self.program_parts(r.entries, &r.whole, &BTreeMap::new());
        let Some((_, waiters)) = self.tickets.owner.remove(&r.stand_in) else {
            return;
        };
        for id in waiters {
            if let Some(w) = self.tickets.waiting.get_mut(&id) {
                w.tickets.remove(&r.stand_in);
            }
            self.wait_also(id, sent.tickets.iter().copied(), &sent.deferred, outcome);
        }
    }

    /// Sends each connection its PacketOuts in one batch.
    pub(super) fn send_packet_outs(&mut self, outs: BTreeMap<ConnId, Vec<PacketOut>>) {
        if !self.role.writes() {
            return;
        }
        for (conn, outs) in outs {
            let n = outs.len();
            let sent = match self.switches.get(&conn) {
                Some(sw) => sw.handle.try_submit(Batch {
                    messages: outs.into_iter().map(Message::PacketOut).collect(),
                    barrier: None,
                }),
                None => Err(SubmitError::Closed),
            };
            let why = match sent {
                Ok(()) => continue,
                Err(SubmitError::Closed) => "switch_gone",
                Err(SubmitError::Full) => "queue_full",
            };
            warn!(%conn, n, "PacketOuts not sent: {}", why.replace('_', " "));
            for _ in 0..n {
                self.metrics.packet_out_dropped(why);
            }
        }
    }

    /// Applies registry changes everywhere they matter: the store first,
    /// then subscribers, the metrics, and the switches of the VIs
    /// concerned.
    pub(super) fn registry_changed(&mut self, changes: &[RegistryChange]) -> Programming {
        self.registry_changed_with(crate::store::Batch::new(), changes)
    }

    /// [`Self::registry_changed`], committing `also` in the same batch,
    /// after the changes: a large batch may be stored in pieces, and a
    /// restart after the first pieces then finds what `also` describes
    /// (a VI being deleted) still there with part of its entries, never
    /// entries without it.
    pub(super) fn registry_changed_with(
        &mut self,
        also: crate::store::Batch,
        changes: &[RegistryChange],
    ) -> Programming {
        let mut batch = crate::store::Batch::from_changes(changes);
        batch.append(also);
        let also = batch;
        if !changes.is_empty() {
            self.answers_changed();
            self.note_moves(changes);
        }
        if let Some(b) = self.burst.as_mut() {
            // Committed together when the burst ends: one durable write
            // for the whole burst (`end_burst` says what waits for it).
            b.store.append(also);
            b.events.extend(changes.iter().map(super::registry_event));
            b.changes
                .extend(changes.iter().filter(|c| c.affects_flows()).cloned());
            return Programming::default();
        }
        if !self.store(also) {
            if self.was_refused() {
                // Not made: the registry goes back to what it was.
                self.registry.revert(changes);
            }
            return Programming::default();
        }
        if changes.is_empty() {
            return Programming::default();
        }
        self.announce_registry(changes.iter().map(super::registry_event));
        let hosts = affected_hosts(&self.topology, changes)
            .into_iter()
            .cloned()
            .collect();
        let programming = self.program_arrivals_first(changes, BTreeMap::new(), hosts);
        self.release_parked();
        programming
    }

    /// Stored registry changes reach the metrics and the subscribers.
    pub(super) fn announce_registry(&mut self, events: impl IntoIterator<Item = RegistryEvent>) {
        let mut events = events.into_iter().peekable();
        if events.peek().is_none() {
            return;
        }
        let (macs, ips) = self.registry.len();
        self.metrics.set_registry_size(macs, ips);
        for e in events {
            self.publish(NorthEvent::Registry(e));
        }
    }

    pub(super) fn switch_host(&self, conn: ConnId) -> Option<&HostName> {
        self.switches.get(&conn).and_then(|s| s.host.as_ref())
    }

    /// The connection of `host`'s switch, once it said which host it is.
    pub(super) fn conn_of(&self, host: &HostName) -> Option<ConnId> {
        self.switches
            .iter()
            .find(|(_, s)| s.host.as_ref() == Some(host) && !s.handle.is_closed())
            .map(|(c, _)| *c)
    }

    /// A PACKET_IN: learn, reprogram, and send what the decision says once
    /// the reprogramming is confirmed.
    pub(super) fn on_packet_in(&mut self, conn: ConnId, pi: &PacketIn, received: Instant) {
        if !self.role.writes() {
            // A SLAVE gets none; one sent before the role request took is
            // the leader's to act on.
            self.metrics.packet_in("standby");
            return;
        }
        if self.switch_host(conn).is_none() {
            self.metrics.packet_in("unknown_switch");
            return;
        }
        let Some(meta) = PacketInMeta::from_packet_in(pi) else {
            self.metrics.packet_in("invalid");
            return;
        };
        if meta.table_id == TABLE_FORWARD {
            // Only the flows of MACs that left this host send frames up
            // from the forwarding table.
            self.on_parked_frame(conn, &meta, &pi.data);
            return;
        }
        if meta.table_id == TABLE_CLASSIFY {
            if let Some(host) = self.switch_host(conn).cloned() {
                if self.hold_if_unclassified(conn, &host, &meta, pi, received) {
                    return;
                }
            }
        }
        // Borrowed, not cloned: this is the hot path of ARP and learning.
        let Some(host) = self.switches.get(&conn).and_then(|s| s.host.as_ref()) else {
            return;
        };
        let decision = handle_packet_in(
            super::now_ms(),
            &mut self.registry,
            &self.topology,
            host,
            &meta,
            &pi.data,
        );
        self.metrics.packet_in(decision.kind.label());
        if let PacketInKind::Invalid(e) = &decision.kind {
            debug!(%conn, "unparsable frame in a PACKET_IN: {e}");
        }
        let programming = self.registry_changed(&decision.changes);
        if self.halted() || self.was_refused() {
            // Not durable: nothing may act on it, not even the flood.
            return;
        }
        let moves: Vec<(Instant, RegistryEvent)> = if decision.kind == PacketInKind::Rarp {
            decision
                .changes
                .iter()
                .filter(|c| c.as_move().is_some())
                .map(|c| (received, super::registry_event(c)))
                .collect()
        } else {
            Vec::new()
        };
        let then = decision.packet_outs.into_iter().map(|p| (conn, p));
        if let Some(b) = self.burst.as_mut() {
            // What follows a change waits for the burst's reprogramming;
            // the rest goes out when the burst ends.
            if decision.changes.is_empty() {
                for (c, p) in then {
                    b.outs.entry(c).or_default().push(p);
                }
            } else {
                b.waiting.then.extend(then);
                b.waiting.moves.extend(moves);
            }
            return;
        }
        let w = Waiting {
            tickets: programming.tickets,
            held: programming.deferred,
            then: then.collect(),
            moves,
            ..Waiting::default()
        };
        self.wait_for(w);
    }

    /// Holds a RARP or GARP that table 0 sent up because its port has no
    /// classification flow yet, until OVSDB reports the port; whether it
    /// was held. Other ARP is not for holding (it goes on to be handled,
    /// and dropped when its port is unknown), nor is anything from a tunnel
    /// (with a key no VI here owns); an announcement from a port that
    /// became known in the meantime is handled at once.
    fn hold_if_unclassified(
        &mut self,
        conn: ConnId,
        host: &HostName,
        meta: &PacketInMeta,
        pi: &PacketIn,
        received: Instant,
    ) -> bool {
        let port = meta.in_port;
        let Some(what) = Announcement::of(&pi.data) else {
            return false;
        };
        let tunnel = self
            .topology
            .tunnels
            .iter()
            .any(|((h, _), &p)| h == host && p == port);
        if tunnel || self.topology.vm_port(host, port).is_some() {
            return false;
        }
        let pushed_out = self.held_rarps.hold(Held {
            what,
            conn,
            host: host.clone(),
            in_port: port,
            packet_in: pi.clone(),
            received,
        });
        if let Some(h) = pushed_out {
            self.give_up_rarp(&h, "too many announcements were waiting for their ports");
        }
        debug!(
            %host,
            "holding a {} from port {port} until OVSDB reports the port ({} waiting)",
            what.name(),
            self.held_rarps.len()
        );
        true
    }

    /// Runs `w` now if it waits for nothing, else when its tickets are in
    /// and the switches it is held for are resynchronised.
    fn wait_for(&mut self, w: Waiting) -> Option<WaitId> {
        if w.tickets.is_empty() && w.held.is_empty() && !w.uncommitted {
            self.finish(w);
            return None;
        }
        let id = self.tickets.next_waiting;
        self.tickets.next_waiting += 1;
        for t in &w.tickets {
            if let Some(owner) = self.tickets.owner.get_mut(t) {
                owner.1.push(id);
            }
        }
        self.tickets.waiting.insert(id, w);
        Some(id)
    }

    /// The commit waiting work `id` waited for (besides its tickets) is
    /// done.
    pub(super) fn committed(&mut self, id: WaitId) {
        if let Some(w) = self.tickets.waiting.get_mut(&id) {
            w.uncommitted = false;
        }
        self.settle(id);
    }
}

/// The hosts `changes` moved a MAC to from another host (or from
/// nowhere).
fn arrivals(changes: &[RegistryChange]) -> BTreeSet<HostName> {
    changes
        .iter()
        .filter_map(RegistryChange::as_move)
        .filter_map(|(_, from, to)| {
            let to = to.map(Location::host)?;
            (from.map(Location::host) != Some(to)).then(|| to.clone())
        })
        .collect()
}

/// Whether `change` moves a MAC to one of `arrivals` other than `host`.
fn moves_to_another(
    change: &RegistryChange,
    host: &HostName,
    arrivals: &BTreeSet<HostName>,
) -> bool {
    change
        .as_move()
        .and_then(|(_, _, to)| to)
        .map(Location::host)
        .is_some_and(|to| to != host && arrivals.contains(to))
}

impl Switch {
    /// Forgets what the switch was known to hold (a new connection).
    pub(super) fn reset_sync(&mut self) {
        self.sync = Sync::default();
    }
}
