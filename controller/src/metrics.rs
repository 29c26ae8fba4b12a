//! The controller's Prometheus metrics, shared by the control loop (which
//! updates them) and the API (which renders them at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::fmt;

/// Label of [`Metrics::packet_ins`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    // Static, so counting a PacketIn allocates nothing.
    pub reason: &'static str,
}

/// Label of [`Metrics::registry_entries`]: `mac` or `ip`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Label of the counters that say why something did not happen.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhyLabel {
    pub why: &'static str,
}

/// Label of [`Metrics::parked_frames`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    /// Switches of configured hosts whose handshake completed and that are
    /// still connected.
    pub switches_connected: Gauge,
    /// Connected switches whose datapath id no host has: held apart, their
    /// tables never touched.
    pub switches_unknown: Gauge,
    /// Switches with an unknown datapath id disconnected because
    /// [`crate::control::MAX_UNKNOWN_SWITCHES`] were already held apart.
    pub switches_unknown_refused: Counter,
    /// Connections refused as the host they claimed to be, by why
    /// (`dpid_in_use`: another live connection has that datapath id).
    pub switches_refused: Family<WhyLabel, Counter>,
    /// Times a ready switch was left as it was because the port inventory
    /// its tables are compiled from was not complete yet.
    pub switches_held_for_inventory: Counter,
    /// PacketIns received, by what the controller made of them.
    pub packet_ins: Family<ReasonLabel, Counter>,
    /// PacketIns dropped because the control loop was behind.
    pub packet_ins_dropped: Counter,
    pub flow_mods_sent: Counter,
    pub group_mods_sent: Counter,
    /// Switches that came holding exactly the tables compiled for them
    /// while they were away, so nothing had to be compiled when they came.
    pub switches_held_tables_ahead: Counter,
    /// OFPT_ERRORs received from switches.
    pub switch_errors: Counter,
    /// Commits the store could not take because it was unavailable (etcd
    /// without a quorum): API writes refused with 503, learned changes
    /// kept to commit later.
    pub store_unavailable: Counter,
    /// 1 while this controller may write (it leads its cluster, or runs
    /// alone), 0 while it is a standby.
    pub leader: Gauge,
    /// The generation id of the leadership this controller last held or
    /// saw (the MASTER role requests carry it).
    pub leader_generation: Gauge,
    /// Switches that confirmed this controller's role request as MASTER.
    pub switches_master: Gauge,
    /// Switches that confirmed this controller's role request as SLAVE.
    pub switches_slave: Gauge,
    /// Times this controller won the election.
    pub leaderships: Counter,
    /// Times a standby read the etcd store whole: at its start, and where
    /// a commit could not be applied entry by entry (a host or VI changed,
    /// its watch cut).
    pub store_whole_reads: Counter,
    /// The etcd revision up to which a standby's view holds every commit;
    /// 0 while it leads or before its first read.
    pub store_followed_revision: Gauge,
    /// Registry entries, by kind.
    pub registry_entries: Family<KindLabel, Gauge>,
    /// From a RARP's PacketIn to the last barrier reply confirming the
    /// reprogramming it caused, in seconds.
    pub move_latency: Histogram,
    /// Moves that not every switch concerned confirmed, by why
    /// (`refused`, `abandoned`); they are not in `move_latency`.
    pub moves_incomplete: Family<WhyLabel, Counter>,
    /// PacketOuts (a RARP's flood, a forwarded ARP) that could not be sent,
    /// by why (`switch_gone`, `queue_full`).
    pub packet_outs_dropped: Family<WhyLabel, Counter>,
    /// Frames sent up for a guest that had just left their host, by what
    /// became of them: `forwarded` to where it is now, or dropped because
    /// too many were held (`full`), it did not reappear in time
    /// (`expired`), or the switch to send them from was gone
    /// (`switch_gone`).
    pub parked_frames: Family<OutcomeLabel, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("iris");
        let switches_connected = Gauge::default();
        registry.register(
            "switches_connected",
            "Switches of configured hosts connected with a completed OpenFlow handshake",
            switches_connected.clone(),
        );
        let switches_unknown = Gauge::default();
        registry.register(
            "switches_unknown",
            "Connected switches whose datapath id matches no configured host (left alone)",
            switches_unknown.clone(),
        );
        let switches_unknown_refused = Counter::default();
        registry.register(
            "switches_unknown_refused",
            "Switches with an unknown datapath id disconnected because as many as the bound were already held apart",
            switches_unknown_refused.clone(),
        );
        let switches_refused = Family::<WhyLabel, Counter>::default();
        registry.register(
            "switches_refused",
            "OpenFlow connections refused as the host they claimed to be, by why",
            switches_refused.clone(),
        );
        let switches_held_for_inventory = Counter::default();
        registry.register(
            "switches_held_for_inventory",
            "Times a ready switch was left as it was until its host's port inventory was complete",
            switches_held_for_inventory.clone(),
        );
        let packet_ins = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "packet_ins",
            "PacketIns received, by what the controller made of them",
            packet_ins.clone(),
        );
        let packet_ins_dropped = Counter::default();
        registry.register(
            "packet_ins_dropped",
            "PacketIns dropped because the control loop was behind",
            packet_ins_dropped.clone(),
        );
        let flow_mods_sent = Counter::default();
        registry.register(
            "flow_mods_sent",
            "FLOW_MOD messages sent to switches",
            flow_mods_sent.clone(),
        );
        let group_mods_sent = Counter::default();
        registry.register(
            "group_mods_sent",
            "GROUP_MOD messages sent to switches",
            group_mods_sent.clone(),
        );
        let switches_held_tables_ahead = Counter::default();
        registry.register(
            "switches_held_tables_ahead",
            "Switches that connected holding exactly the tables compiled while they were away",
            switches_held_tables_ahead.clone(),
        );
        let switch_errors = Counter::default();
        registry.register(
            "switch_errors",
            "OFPT_ERROR messages received from switches",
            switch_errors.clone(),
        );
        let store_unavailable = Counter::default();
        registry.register(
            "store_unavailable",
            "Commits the store could not take because it was unavailable",
            store_unavailable.clone(),
        );
        let registry_entries = Family::<KindLabel, Gauge>::default();
        registry.register(
            "registry_entries",
            "Registry entries: kind=mac for (VI, VLAN, MAC) locations, kind=ip for ARP bindings",
            registry_entries.clone(),
        );
        // 0.5 ms .. ~16 s: a move on a quiet testbed takes milliseconds, one
        // across a loaded WAN seconds.
        let move_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "move_latency_seconds",
            "Time from a RARP PacketIn to the last barrier reply of the reprogramming it caused",
            move_latency.clone(),
        );
        let moves_incomplete = Family::<WhyLabel, Counter>::default();
        registry.register(
            "moves_incomplete",
            "RARP moves that a switch concerned refused (refused) or left before confirming \
             (abandoned); not counted in move_latency_seconds",
            moves_incomplete.clone(),
        );
        let packet_outs_dropped = Family::<WhyLabel, Counter>::default();
        registry.register(
            "packet_outs_dropped",
            "PacketOuts not sent because their switch was gone or not keeping up",
            packet_outs_dropped.clone(),
        );
        let parked_frames = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "parked_frames",
            "Frames sent up by the host a guest had just left, by outcome (forwarded to where it is now, or dropped: full, expired, switch_gone)",
            parked_frames.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this controller may write to switches and the store (it leads, or runs alone), 0 as a standby",
            leader.clone(),
        );
        let leader_generation = Gauge::default();
        registry.register(
            "leader_generation",
            "Generation id of the leadership this controller last held or saw",
            leader_generation.clone(),
        );
        let switches_master = Gauge::default();
        registry.register(
            "switches_master",
            "Switches that confirmed this controller as MASTER",
            switches_master.clone(),
        );
        let switches_slave = Gauge::default();
        registry.register(
            "switches_slave",
            "Switches that confirmed this controller as SLAVE",
            switches_slave.clone(),
        );
        let leaderships = Counter::default();
        registry.register(
            "leaderships",
            "Times this controller won the leader election",
            leaderships.clone(),
        );
        let store_whole_reads = Counter::default();
        registry.register(
            "store_whole_reads",
            "Times this standby read the etcd store whole instead of following its commits",
            store_whole_reads.clone(),
        );
        let store_followed_revision = Gauge::default();
        registry.register(
            "store_followed_revision",
            "The etcd revision up to which this standby's view holds every commit (0 leading)",
            store_followed_revision.clone(),
        );
        Self {
            registry,
            store_whole_reads,
            store_followed_revision,
            leader,
            leader_generation,
            switches_master,
            switches_slave,
            leaderships,
            switches_connected,
            switches_unknown,
            switches_unknown_refused,
            switches_refused,
            switches_held_for_inventory,
            packet_ins,
            packet_ins_dropped,
            flow_mods_sent,
            group_mods_sent,
            switches_held_tables_ahead,
            switch_errors,
            store_unavailable,
            registry_entries,
            move_latency,
            moves_incomplete,
            packet_outs_dropped,
            parked_frames,
        }
    }
}

impl Metrics {
    /// Counts one PacketIn under `reason`.
    pub fn packet_in(&self, reason: &'static str) {
        self.packet_ins.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts one incomplete move under `why`.
    pub fn move_incomplete(&self, why: &'static str) {
        self.moves_incomplete.get_or_create(&WhyLabel { why }).inc();
    }

    /// Counts one switch connection refused, under `why`.
    pub fn switch_refused(&self, why: &'static str) {
        self.switches_refused.get_or_create(&WhyLabel { why }).inc();
    }

    /// Counts one commit the store could not take (unavailable).
    pub fn store_refused(&self) {
        self.store_unavailable.inc();
    }

    /// Counts one PacketOut not sent, under `why`.
    pub fn packet_out_dropped(&self, why: &'static str) {
        self.packet_outs_dropped
            .get_or_create(&WhyLabel { why })
            .inc();
    }

    /// Counts `n` frames held for a departed guest under `outcome`.
    pub fn parked_frames(&self, outcome: &'static str, n: usize) {
        self.parked_frames
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(n as u64);
    }

    /// Sets the registry size gauges.
    pub fn set_registry_size(&self, macs: usize, ips: usize) {
        for (kind, n) in [("mac", macs), ("ip", ips)] {
            self.registry_entries
                .get_or_create(&KindLabel { kind })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_labels() {
        let m = Metrics::default();
        m.switches_connected.set(3);
        m.packet_in("rarp");
        m.packet_in("rarp");
        m.flow_mods_sent.inc_by(7);
        m.set_registry_size(5, 4);
        m.move_latency.observe(0.003);
        m.move_incomplete("refused");
        m.packet_out_dropped("queue_full");
        m.switch_refused("dpid_in_use");
        let text = m.render();
        for line in [
            "iris_switches_connected 3",
            "iris_packet_ins_total{reason=\"rarp\"} 2",
            "iris_flow_mods_sent_total 7",
            "iris_registry_entries{kind=\"mac\"} 5",
            "iris_registry_entries{kind=\"ip\"} 4",
            "iris_move_latency_seconds_count 1",
            "iris_move_latency_seconds_bucket{le=\"0.004\"} 1",
            "iris_moves_incomplete_total{why=\"refused\"} 1",
            "iris_packet_outs_dropped_total{why=\"queue_full\"} 1",
            "iris_switches_refused_total{why=\"dpid_in_use\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
