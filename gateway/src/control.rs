//! The gateway's decisions, without I/O: trunk frames, peer reports and
//! the controller's registry in; reports and registry writes queued out.
//!
//! The tokio tasks of [`crate::run`] and the handlers of [`crate::api`]
//! lock one [`Control`], call it with the time, and move bytes; everything
//! that decides is here and in [`crate::mobility`], tested as data.

use crate::config::{Config, Kind};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::mobility::{Decision, Place, Table};
use crate::report::{
    wire_vlan, MacResult, Outbox, Outcome, PeerAnswer, PeerItem, PeerReport, Queued, RegistryItem,
    ReportKind, BATCH_MAX,
};
use crate::snoop::{observe, SnoopError};
use iris_controller::metrics::{ReasonLabel, WhyLabel};
use iris_controller::model::{host_address_problem, MacKey, ViId, Vlan};
use ofp::packet::MacAddr;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

/// Why a peer's report was refused whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 403: not a configured peer, or a VI this gateway does not carry with
    /// the peer.
    pub status: u16,
    /// `(JSON pointer, detail)` for each field at fault.
    pub errors: Vec<(String, String)>,
}

/// Where the controller's registry puts a MAC, as the haas side follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPlace {
    /// On a port of a host in the HaaS data center.
    Port,
    /// Behind a gateway host, by name.
    Gateway(String),
    /// Known, without a location yet, or removed.
    Nowhere,
}

/// The gateway's state: the mobility table and what waits to leave.
#[derive(Debug)]
pub struct Control {
    config: Arc<Config>,
    table: Table,
    /// iaas: a report outbox per peer.
    to_peers: BTreeMap<String, Outbox<MacKey, PeerItem>>,
    /// haas: registry writes.
    to_registry: Outbox<MacKey, RegistryItem>,
    metrics: Arc<Metrics>,
}

impl Control {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        Self::with_parts(
            config,
            metrics,
            Table::default(),
            crate::report::OUTBOX_CAPACITY,
        )
    }

    /// With a table and outbox bound of the caller's, for tests.
    pub fn with_parts(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        table: Table,
        outbox_capacity: usize,
    ) -> Self {
        let to_peers = config
            .peers
            .iter()
            .map(|p| (p.name.clone(), Outbox::with_capacity(outbox_capacity)))
            .collect();
        Self {
            config,
            table,
            to_peers,
            to_registry: Outbox::with_capacity(outbox_capacity),
            metrics,
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The configuration with VIs added or removed at run time: the MACs
    /// of a VI no longer carried are forgotten, a new peer gets its outbox.
    pub fn set_config(&mut self, config: Arc<Config>) {
        for old in &self.config.vis {
            if config.vi(old.id).is_none() {
                self.table.forget_vi(old.id);
            }
        }
        for p in &config.peers {
            self.to_peers
                .entry(p.name.clone())
                .or_insert_with(|| Outbox::with_capacity(crate::report::OUTBOX_CAPACITY));
        }
        self.config = config;
        self.refresh_gauges();
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    fn refresh_gauges(&self) {
        let queued: usize =
            self.to_peers.values().map(Outbox::len).sum::<usize>() + self.to_registry.len();
        self.metrics.reports_queued.set(gauge(queued));
        self.metrics
            .flapping_macs
            .set(gauge(self.table.flapping().count()));
        self.metrics.macs.set(gauge(self.table.len()));
    }

    fn note(&self, key: &MacKey, d: &Decision, source: &str) {
        match d {
            Decision::Moved { from, to, seq } => {
                self.metrics.moves.inc();
                tracing::info!(
                    "{} {} {}: moved {from:?} -> {to:?} at seq {seq} ({source})",
                    key.vi,
                    key.vlan,
                    key.mac
                );
            }
            Decision::Flapping { seq, newly: true } => tracing::warn!(
                "{} {} {}: moved more than {} times in {:?}: flapping, its moves are not \
                 followed until it stays put for as long (seq {seq}, {source})",
                key.vi,
                key.vlan,
                key.mac,
                crate::mobility::FLAP_MOVES,
                crate::mobility::FLAP_WINDOW
            ),
            Decision::Full => {
                self.drop_report("table_full");
                tracing::debug!("{} {} {}: mobility table full", key.vi, key.vlan, key.mac);
            }
            _ => {}
        }
    }

    fn drop_report(&self, why: &'static str) {
        self.metrics
            .reports_dropped
            .get_or_create(&WhyLabel { why })
            .inc();
    }

    fn queued(&self, q: Queued, key: &MacKey) {
        if q == Queued::Dropped {
            self.drop_report("outbox_full");
            tracing::warn!(
                "{} {} {}: report dropped, {} MACs already wait to be delivered",
                key.vi,
                key.vlan,
                key.mac,
                crate::report::OUTBOX_CAPACITY
            );
        }
    }

    fn queue_to_peer(&mut self, key: MacKey, kind: ReportKind, seq: u32) {
        let Some(peer) = self.config.vi(key.vi).map(|v| v.peer.clone()) else {
            return;
        };
        let ips = self.table.get(&key).map(|v| v.ips).unwrap_or_default();
        if let Some(outbox) = self.to_peers.get_mut(&peer) {
            let q = outbox.push(key, PeerItem { kind, seq, ips });
            self.queued(q, &key);
        }
    }

    fn queue_to_registry(&mut self, key: MacKey, take_ips: bool) {
        let ips = self.table.get(&key).map(|v| v.ips).unwrap_or_default();
        let q = self.to_registry.push(key, RegistryItem { ips, take_ips });
        self.queued(q, &key);
    }

    /// An ARP or RARP frame from the trunk (iaas).
    pub fn frame(&mut self, now: Instant, frame: &[u8]) -> Result<Decision, SnoopError> {
        let o = observe(frame).inspect_err(|e| {
            self.metrics
                .malformed_frames
                .get_or_create(&ReasonLabel { reason: e.reason() })
                .inc();
        })?;
        let Some(vi) = self.config.vi_of_vlan(o.vlan).map(|v| v.id) else {
            self.metrics.frames_outside_vis.inc();
            return Ok(Decision::Unchanged { seq: 0 });
        };
        let key = MacKey {
            vi,
            vlan: o.vlan,
            mac: o.mac,
        };
        let d = self
            .table
            .local(now, key, &o.ip.into_iter().collect::<Vec<_>>());
        self.note(&key, &d, o.kind.as_str());
        match d {
            Decision::Present { seq, .. } => self.queue_to_peer(key, ReportKind::Presence, seq),
            Decision::Moved { seq, .. } => self.queue_to_peer(key, ReportKind::Move, seq),
            // A MAC believed here announces itself again: it may have been
            // away meanwhile (moved into the peer's data center and back),
            // which only the peer knows. Its answer says so (stale, with
            // the peer's seq), the table learns it, and the next
            // announcement (QEMU repeats its RARP) is a move past it.
            Decision::Unchanged { seq } if o.kind.is_announcement() => {
                self.queue_to_peer(key, ReportKind::Presence, seq);
            }
            _ => {}
        }
        self.refresh_gauges();
        Ok(d)
    }

    /// The next batch for `peer`, in wire form, if one may leave now.
    pub fn peer_batch(&mut self, now: Instant, peer: &str) -> Vec<(MacKey, PeerItem)> {
        let batch = self
            .to_peers
            .get_mut(peer)
            .map(|o| o.take_batch(now, BATCH_MAX))
            .unwrap_or_default();
        self.refresh_gauges();
        batch
    }

    /// The peer answered `batch` (iaas): a stale answer with a higher seq
    /// says the MAC moved into the peer's data center since; the table
    /// learns it, so the next announcement here is a move past it.
    pub fn peer_answered(
        &mut self,
        now: Instant,
        peer: &str,
        batch: &[(MacKey, PeerItem)],
        answer: &PeerAnswer,
    ) {
        for ((key, item), result) in batch.iter().zip(&answer.results) {
            match result.outcome {
                Outcome::Stale if result.seq > item.seq => {
                    let d = self.table.remote(now, *key, result.seq, &[]);
                    self.note(key, &d, "peer's answer");
                }
                Outcome::Refused => {
                    self.drop_report("refused");
                    tracing::warn!(
                        "{} {} {}: {peer} refused the report: {}",
                        key.vi,
                        key.vlan,
                        key.mac,
                        result.detail
                    );
                }
                _ => {}
            }
        }
        self.metrics.reports_sent.inc_by(batch.len() as u64);
        if let Some(o) = self.to_peers.get_mut(peer) {
            o.finish(now, Vec::new());
        }
        self.refresh_gauges();
    }

    /// A batch for `peer` was not delivered (iaas): back to the outbox
    /// with backoff, or, refused for good (the peer does not know this
    /// gateway or a VI), counted and dropped.
    pub fn peer_failed(
        &mut self,
        now: Instant,
        peer: &str,
        batch: Vec<(MacKey, PeerItem)>,
        for_good: bool,
    ) {
        let retry = if for_good {
            for _ in &batch {
                self.drop_report("refused");
            }
            Vec::new()
        } else {
            self.metrics.report_failures.inc();
            batch
        };
        if let Some(o) = self.to_peers.get_mut(peer) {
            o.finish(now, retry);
        }
        self.refresh_gauges();
    }

    /// A report from a peer (haas): every MAC decided, or the whole report
    /// refused when it comes from no peer of ours or names a VI that peer
    /// does not carry.
    pub fn peer_report(
        &mut self,
        now: Instant,
        report: &PeerReport,
    ) -> Result<PeerAnswer, Refusal> {
        if self.config.kind != Kind::Haas {
            return Err(Refusal {
                status: 403,
                errors: vec![(
                    "#/from".into(),
                    "this is an iaas gateway; report to the haas gateway".into(),
                )],
            });
        }
        if self.config.peer(&report.from).is_none() {
            self.refused_report("unknown_peer");
            return Err(Refusal {
                status: 403,
                errors: vec![(
                    "#/from".into(),
                    format!(
                        "{:?} is not a [[peer]] of this gateway; add it to the configuration",
                        report.from
                    ),
                )],
            });
        }
        let foreign: Vec<(String, String)> = report
            .macs
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                ViId(m.vi)
                    .is_valid()
                    .then(|| self.config.vi(ViId(m.vi)))
                    .flatten()
                    .is_none_or(|v| v.peer != report.from)
            })
            .map(|(i, m)| {
                (
                    format!("#/macs/{i}/vi"),
                    format!(
                        "vi {} is not carried between this gateway and {}",
                        m.vi, report.from
                    ),
                )
            })
            .collect();
        if !foreign.is_empty() {
            self.refused_report("foreign_vi");
            return Err(Refusal {
                status: 403,
                errors: foreign,
            });
        }
        let results = report
            .macs
            .iter()
            .map(|m| {
                let (outcome, seq, detail) = match self.check_entry(m) {
                    Err(detail) => (Outcome::Refused, 0, detail),
                    Ok((key, ips)) => {
                        let d = match m.kind {
                            ReportKind::Gone => self.table.gone(key, m.seq),
                            _ => self.table.remote(now, key, m.seq, &ips),
                        };
                        self.note(&key, &d, &report.from);
                        let (outcome, detail) = match d {
                            Decision::Present { .. } => {
                                // New here (say, after a restart): a move
                                // still takes its IPs, a presence does not.
                                self.queue_to_registry(key, m.kind == ReportKind::Move);
                                (Outcome::Followed, "")
                            }
                            Decision::Moved {
                                to: Place::Remote, ..
                            } => {
                                self.queue_to_registry(key, true);
                                (Outcome::Followed, "")
                            }
                            Decision::Moved { .. } | Decision::Settled { .. } => {
                                (Outcome::Followed, "")
                            }
                            Decision::Unchanged { .. } => (Outcome::Followed, "already followed"),
                            Decision::Withdrawn { .. } => (Outcome::Followed, "withdrawn"),
                            Decision::Stale { .. } => {
                                (Outcome::Stale, "this side holds the MAC at a seq as high")
                            }
                            Decision::Flapping { .. } => (
                                Outcome::Flapping,
                                "moving too often; followed once it stays put for 180 s",
                            ),
                            Decision::Full => (Outcome::Refused, "the mobility table is full"),
                        };
                        (outcome, self.table.seq(&key), detail.to_owned())
                    }
                };
                self.metrics
                    .peer_reports
                    .get_or_create(&OutcomeLabel {
                        outcome: outcome.as_str(),
                    })
                    .inc();
                MacResult {
                    vi: m.vi,
                    vlan: m.vlan,
                    mac: m.mac.clone(),
                    seq,
                    outcome,
                    detail,
                }
            })
            .collect();
        self.refresh_gauges();
        Ok(PeerAnswer { results })
    }

    /// Counts a peer report refused whole, by `why` (one of
    /// [`crate::metrics::PEER_REFUSALS`]).
    pub fn refused_report(&self, why: &'static str) {
        self.metrics
            .peer_reports_refused
            .get_or_create(&WhyLabel { why })
            .inc();
    }

    /// One reported MAC's key and IPs, or why it is refused.
    fn check_entry(&self, m: &crate::report::MacReport) -> Result<(MacKey, Vec<Ipv4Addr>), String> {
        let vlan = match m.vlan {
            None => Vlan::Untagged,
            Some(v @ 1..=4094) => Vlan::Tagged(v),
            Some(v) => return Err(format!("{v} is not a VLAN id (1-4094, or null)")),
        };
        let vi = ViId(m.vi);
        if !self
            .config
            .vi(vi)
            .is_some_and(|v| v.vlans.contains_vlan(vlan))
        {
            return Err(format!("{vlan} is outside {vi}'s VLANs"));
        }
        let mac: MacAddr = m.mac.parse().map_err(|e| format!("{e}"))?;
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return Err(format!("{mac} is not a unicast MAC"));
        }
        if m.ips.len() > crate::mobility::MAX_IPS {
            return Err(format!(
                "{} IPs; a MAC answers for at most {}",
                m.ips.len(),
                crate::mobility::MAX_IPS
            ));
        }
        let mut ips = Vec::new();
        for text in &m.ips {
            let ip: Ipv4Addr = text
                .parse()
                .map_err(|_| format!("{text:?} is not an IPv4 address"))?;
            if let Some(why) = host_address_problem(ip) {
                return Err(format!("{ip} is {why}"));
            }
            ips.push(ip);
        }
        Ok((MacKey { vi, vlan, mac }, ips))
    }

    /// The next registry writes, if they may leave now (haas).
    pub fn registry_batch(&mut self, now: Instant) -> Vec<(MacKey, RegistryItem)> {
        let batch = self.to_registry.take_batch(now, BATCH_MAX);
        self.refresh_gauges();
        batch
    }

    /// The registry writes of the batch were done, but for `retry`;
    /// `refused` were refused for good.
    pub fn registry_done(
        &mut self,
        now: Instant,
        delivered: usize,
        refused: usize,
        retry: Vec<(MacKey, RegistryItem)>,
    ) {
        self.metrics.reports_sent.inc_by(delivered as u64);
        for _ in 0..refused {
            self.drop_report("refused");
        }
        if !retry.is_empty() {
            self.metrics.report_failures.inc();
        }
        self.to_registry.finish(now, retry);
        self.refresh_gauges();
    }

    /// The controller's registry puts `key` at `place` (haas): a MAC of
    /// ours on a port of the HaaS data center moved here when it was
    /// believed behind the peer, which bumps its seq.
    pub fn registry_place(&mut self, now: Instant, key: MacKey, place: RegistryPlace) {
        if self.config.vi(key.vi).is_none() {
            return;
        }
        match place {
            RegistryPlace::Port => {
                let d = self.table.local(now, key, &[]);
                self.note(&key, &d, "controller");
            }
            RegistryPlace::Gateway(g) if g == self.config.name => {
                // Our own write, or one from before a restart: behind the
                // peer, at a seq the peer's next report sets.
                if self.table.get(&key).is_none() {
                    let _ = self.table.remote(now, key, 0, &[]);
                }
            }
            RegistryPlace::Gateway(_) | RegistryPlace::Nowhere => {}
        }
        self.refresh_gauges();
    }

    /// Flapping MACs that settled: their last claimed place is taken.
    pub fn poll(&mut self, now: Instant) {
        for (key, d) in self.table.poll(now) {
            self.note(&key, &d, "settled");
            if let Decision::Moved { to, seq, .. } = d {
                match (self.config.kind, to) {
                    (Kind::Iaas, Place::Local) => self.queue_to_peer(key, ReportKind::Move, seq),
                    (Kind::Haas, Place::Remote) => self.queue_to_registry(key, true),
                    _ => {}
                }
            }
        }
        self.refresh_gauges();
    }

    /// When something is next due: a settling MAC or a backed-off retry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.to_peers
            .values()
            .filter_map(Outbox::next_attempt)
            .chain(self.to_registry.next_attempt())
            .chain(self.table.next_deadline())
            .min()
    }

    /// What `/v1/status` shows of the control plane.
    pub fn status(&self) -> Status {
        let c = &self.config;
        Status {
            name: c.name.clone(),
            kind: c.kind.to_string(),
            dc: c.dc.clone(),
            wan_ip: c.wan_ip,
            mtu: c.mtu_statement(),
            peers: c
                .peers
                .iter()
                .map(|p| PeerStatus {
                    name: p.name.clone(),
                    wan_ip: p.wan_ip,
                    api: p.api.clone(),
                    queued: self.to_peers.get(&p.name).map_or(0, Outbox::len),
                })
                .collect(),
            vis: c
                .vis
                .iter()
                .map(|v| ViStatus {
                    id: v.id.0,
                    gre_key: v.gre_key,
                    peer: v.peer.clone(),
                    vlans: v.vlans.to_string(),
                })
                .collect(),
            outbox: OutboxStatus {
                queued: self.to_peers.values().map(Outbox::len).sum::<usize>()
                    + self.to_registry.len(),
                capacity: crate::report::OUTBOX_CAPACITY,
                dropped: self.to_peers.values().map(Outbox::dropped).sum::<u64>()
                    + self.to_registry.dropped(),
            },
            macs: self.table.len(),
            flapping: self
                .table
                .flapping()
                .filter_map(|k| {
                    let v = self.table.get(k)?;
                    Some(FlappingMac {
                        vi: k.vi.0,
                        vlan: wire_vlan(k.vlan),
                        mac: k.mac.to_string(),
                        seq: v.seq,
                        place: v.place,
                    })
                })
                .collect(),
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub kind: String,
    pub dc: String,
    pub wan_ip: Ipv4Addr,
    pub mtu: String,
    pub peers: Vec<PeerStatus>,
    pub vis: Vec<ViStatus>,
    pub outbox: OutboxStatus,
    pub macs: usize,
    pub flapping: Vec<FlappingMac>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub wan_ip: Ipv4Addr,
    pub api: String,
    /// Reports waiting for this peer (iaas).
    pub queued: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViStatus {
    pub id: u32,
    pub gre_key: u32,
    pub peer: String,
    pub vlans: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxStatus {
    pub queued: usize,
    pub capacity: usize,
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlappingMac {
    pub vi: u32,
    pub vlan: Option<u16>,
    pub mac: String,
    pub seq: u32,
    pub place: Place,
}

#[cfg(test)]
mod tests;
