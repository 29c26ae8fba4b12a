//! Keeping switches programmed: compile what a switch should hold, diff it
//! against what it holds, send the difference followed by a barrier, and
//! act once the barriers come back (move latency, packets held until the
//! flows they depend on are in).

use super::{Control, NorthEvent, RegistryEvent, Switch};
use crate::compiler::{affected_hosts, compile};
use crate::model::HostName;
use crate::packet_in::{handle_packet_in, PacketInKind, PacketInMeta};
use crate::reconciler::{reconcile, Foreign};
use crate::registry::RegistryChange;
use crate::server::{ConnId, SubmitError};
use crate::session::Batch;
use crate::switch_state::SwitchState;
use ofp::message::{Message, PacketIn, PacketOut};
use ofp::multipart::{FlowStats, GroupDesc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// A dump is asked for at most this often per switch, so a switch that
/// keeps refusing a flow is not dumped in a loop.
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// What a connection's flow tables are known to hold.
#[derive(Debug, Default)]
pub(super) struct Sync {
    /// The last dump with every plan sent since applied; `None` when it is
    /// not known (before the handshake, or after a batch was lost) and a
    /// dump must come first.
    installed: Option<SwitchState>,
    dump_requested: bool,
    last_dump: Option<Instant>,
}

/// Work that waits for barrier replies.
#[derive(Debug, Default)]
struct Waiting {
    tickets: BTreeSet<u64>,
    /// Sent to the connection once every ticket is confirmed.
    then: Vec<(ConnId, PacketOut)>,
    /// MACs a RARP moved, with when its PacketIn arrived: the latency is
    /// recorded when the tickets are in.
    moves: Vec<(Instant, RegistryEvent)>,
}

/// What a burst of switch events asks for, done once when it ends.
#[derive(Debug, Default)]
pub(super) struct Burst {
    /// Hosts whose switches the burst's registry changes concern.
    hosts: BTreeSet<HostName>,
    /// What waits for those switches to be reprogrammed.
    waiting: Waiting,
    /// PacketOuts ready to go, by connection.
    outs: BTreeMap<ConnId, Vec<PacketOut>>,
}

/// Barrier tickets in flight and what waits on them.
#[derive(Debug, Default)]
pub(super) struct Tickets {
    next: u64,
    /// Ticket -> (connection, waiting work it belongs to).
    owner: HashMap<u64, (ConnId, Option<u64>)>,
    waiting: HashMap<u64, Waiting>,
    next_waiting: u64,
}

impl Control {
    /// Reprograms every switch serving one of `hosts`; the tickets of the
    /// batches sent. During a burst the hosts are only marked (no tickets
    /// yet): the burst reprograms each marked one once when it ends.
    pub(super) fn program_hosts(&mut self, hosts: &BTreeSet<HostName>) -> BTreeSet<u64> {
        if let Some(b) = self.burst.as_mut() {
            b.hosts.extend(hosts.iter().cloned());
            return BTreeSet::new();
        }
        let conns: Vec<ConnId> = self
            .switches
            .iter()
            .filter(|(_, s)| s.host.as_ref().is_some_and(|h| hosts.contains(h)))
            .map(|(c, _)| *c)
            .collect();
        conns.into_iter().filter_map(|c| self.program(c)).collect()
    }

    /// Reprograms every switch that belongs to a host.
    pub(super) fn program_all(&mut self) -> BTreeSet<u64> {
        let hosts = self.topology.hosts.keys().cloned().collect();
        self.program_hosts(&hosts)
    }

    /// Brings one switch to what the compiler wants; the barrier ticket if
    /// anything was sent.
    fn program(&mut self, conn: ConnId) -> Option<u64> {
        let sw = self.switches.get(&conn)?;
        let host = sw.host.clone()?;
        let Some(installed) = sw.sync.installed.as_ref() else {
            self.request_dump(conn);
            return None;
        };
        let desired = compile(&self.registry, &self.topology, &host);
        let plan = reconcile(&desired, installed, Foreign::Keep);
        if plan.summary.is_noop() {
            return None;
        }
        let ticket = self.tickets.next;
        self.tickets.next += 1;
        let (flow_mods, group_mods) = plan.messages.iter().fold((0, 0), |(f, g), m| match m {
            Message::FlowMod(_) => (f + 1, g),
            Message::GroupMod(_) => (f, g + 1),
            _ => (f, g),
        });
        let sw = self.switches.get_mut(&conn)?;
        match sw.handle.try_submit(Batch {
            messages: plan.messages,
            barrier: Some(ticket),
        }) {
            Ok(()) => {
                debug!(%conn, %host, ?plan.summary, ticket, "sent");
                sw.sync.installed = Some(desired);
                self.metrics.flow_mods_sent.inc_by(flow_mods);
                self.metrics.group_mods_sent.inc_by(group_mods);
                self.tickets.owner.insert(ticket, (conn, None));
                Some(ticket)
            }
            Err(SubmitError::Full) => {
                warn!(%conn, %host, "switch is not keeping up; it will be resynchronised");
                sw.sync.installed = None;
                None
            }
            Err(SubmitError::Closed) => None,
        }
    }

    /// Asks a switch for its tables unless that was done recently.
    fn request_dump(&mut self, conn: ConnId) {
        let Some(sw) = self.switches.get_mut(&conn) else {
            return;
        };
        let now = Instant::now();
        let recent = sw
            .sync
            .last_dump
            .is_some_and(|t| now.duration_since(t) < RESYNC_INTERVAL);
        if sw.sync.dump_requested || recent {
            return;
        }
        if sw.handle.try_dump().is_ok() {
            sw.sync.dump_requested = true;
            sw.sync.last_dump = Some(now);
        }
    }

    /// Periodic work: resynchronise switches whose tables are not known.
    pub(super) fn resync_stale(&mut self) {
        let stale: Vec<ConnId> = self
            .switches
            .iter()
            .filter(|(_, s)| s.host.is_some() && s.dpid.is_some() && s.sync.installed.is_none())
            .map(|(c, _)| *c)
            .collect();
        for c in stale {
            self.request_dump(c);
        }
    }

    /// The handshake's dump (or a later one) arrived: reconcile against it.
    pub(super) fn on_tables(&mut self, conn: ConnId, flows: &[FlowStats], groups: &[GroupDesc]) {
        let Some(sw) = self.switches.get_mut(&conn) else {
            return;
        };
        sw.sync.dump_requested = false;
        sw.sync.installed = Some(SwitchState::from_dump(flows, groups));
        self.program(conn);
    }

    /// A barrier came back: the batch before it is in.
    pub(super) fn on_barrier(&mut self, conn: ConnId, ticket: u64, errors: usize) {
        if errors > 0 {
            // The switch holds less than assumed: learn what it does hold.
            warn!(%conn, errors, "switch refused part of a batch; resynchronising");
            if let Some(sw) = self.switches.get_mut(&conn) {
                sw.sync.installed = None;
            }
            self.request_dump(conn);
        }
        self.ticket_done(ticket);
    }

    fn ticket_done(&mut self, ticket: u64) {
        let Some((_, waiting_id)) = self.tickets.owner.remove(&ticket) else {
            return;
        };
        let Some(id) = waiting_id else { return };
        let done = match self.tickets.waiting.get_mut(&id) {
            Some(w) => {
                w.tickets.remove(&ticket);
                w.tickets.is_empty()
            }
            None => false,
        };
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
            .filter(|(_, (c, _))| *c == conn)
            .map(|(t, _)| *t)
            .collect();
        for t in owed {
            self.ticket_done(t);
        }
    }

    /// Everything `w` waited for is confirmed.
    fn finish(&mut self, w: Waiting) {
        for (started, m) in w.moves {
            let latency = started.elapsed();
            self.metrics.move_latency.observe(latency.as_secs_f64());
            info!(
                "{} moved on vi{} to {} in {:.1} ms",
                m.mac,
                m.vi,
                m.location.as_deref().unwrap_or("nowhere"),
                latency.as_secs_f64() * 1e3
            );
            self.publish(NorthEvent::Move {
                latency_ms: latency.as_secs_f64() * 1e3,
                event: m,
            });
        }
        let mut outs: BTreeMap<ConnId, Vec<PacketOut>> = BTreeMap::new();
        for (conn, out) in w.then {
            outs.entry(conn).or_default().push(out);
        }
        match self.burst.as_mut() {
            Some(b) => {
                for (conn, mut o) in outs {
                    b.outs.entry(conn).or_default().append(&mut o);
                }
            }
            None => self.send_packet_outs(outs),
        }
    }

    /// Applies registry changes everywhere they matter: subscribers, the
    /// metrics, and the switches of the VIs concerned. The tickets of the
    /// batches sent.
    pub(super) fn registry_changed(&mut self, changes: &[RegistryChange]) -> BTreeSet<u64> {
        if changes.is_empty() {
            return BTreeSet::new();
        }
        let (macs, ips) = self.registry.len();
        self.metrics.set_registry_size(macs, ips);
        self.store(crate::store::Batch::from_changes(changes));
        for c in changes {
            self.publish(NorthEvent::Registry(RegistryEvent::of(c)));
        }
        let hosts: BTreeSet<HostName> = affected_hosts(&self.topology, changes)
            .into_iter()
            .cloned()
            .collect();
        self.program_hosts(&hosts)
    }

    /// From now until [`Control::end_burst`], registry and topology changes
    /// only mark switches for reprogramming and PacketOuts are held.
    pub(super) fn begin_burst(&mut self) {
        self.burst.get_or_insert_with(Burst::default);
    }

    /// Reprograms every switch the burst concerns (once each), lets what
    /// waits on that wait for its barriers, and sends each connection its
    /// PacketOuts in one batch.
    pub(super) fn end_burst(&mut self) {
        let Some(b) = self.burst.take() else { return };
        let mut w = b.waiting;
        w.tickets = self.program_hosts(&b.hosts);
        if !w.then.is_empty() || !w.moves.is_empty() {
            self.wait_for(w);
        }
        self.send_packet_outs(b.outs);
    }

    fn send_packet_outs(&mut self, outs: BTreeMap<ConnId, Vec<PacketOut>>) {
        for (conn, outs) in outs {
            if let Some(sw) = self.switches.get(&conn) {
                let _ = sw.handle.try_submit(Batch {
                    messages: outs.into_iter().map(Message::PacketOut).collect(),
                    barrier: None,
                });
            }
        }
    }

    /// A PACKET_IN: learn, reprogram, and send what the decision says once
    /// the reprogramming is confirmed.
    pub(super) fn on_packet_in(&mut self, conn: ConnId, pi: &PacketIn) {
        let started = Instant::now();
        let Some(host) = self.switches.get(&conn).and_then(|s| s.host.clone()) else {
            self.metrics.packet_in("unknown_switch");
            return;
        };
        let Some(meta) = PacketInMeta::from_packet_in(pi) else {
            self.metrics.packet_in("invalid");
            return;
        };
        let decision = handle_packet_in(
            super::now_ms(),
            &mut self.registry,
            &self.topology,
            &host,
            &meta,
            &pi.data,
        );
        self.metrics.packet_in(decision.kind.label());
        if let PacketInKind::Invalid(e) = &decision.kind {
            debug!(%conn, "unparsable frame in a PACKET_IN: {e}");
        }
        let tickets = self.registry_changed(&decision.changes);
        let moves: Vec<(Instant, RegistryEvent)> = if decision.kind == PacketInKind::Rarp {
            decision
                .changes
                .iter()
                .filter(|c| c.as_move().is_some())
                .map(|c| (started, RegistryEvent::of(c)))
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
            tickets,
            then: then.collect(),
            moves,
        };
        self.wait_for(w);
    }

    /// Runs `w` now if it waits for nothing, else when its tickets are in.
    fn wait_for(&mut self, w: Waiting) {
        if w.tickets.is_empty() {
            self.finish(w);
            return;
        }
        let id = self.tickets.next_waiting;
        self.tickets.next_waiting += 1;
        for t in &w.tickets {
            if let Some(owner) = self.tickets.owner.get_mut(t) {
                owner.1 = Some(id);
            }
        }
        self.tickets.waiting.insert(id, w);
    }
}

impl Switch {
    /// Forgets what the switch was known to hold (a new connection).
    pub(super) fn reset_sync(&mut self) {
        self.sync = Sync::default();
    }
}
