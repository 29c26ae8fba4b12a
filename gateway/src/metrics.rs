//! The gateway's Prometheus metrics (`iris_gateway_*`), updated where the
//! gateway decides and rendered at `/metrics`.

use iris_controller::metrics::{ReasonLabel, WhyLabel};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};
use std::fmt;

/// Label of [`Metrics::peer_reports`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Why a peer report is refused whole: the `why` of
/// `iris_gateway_peer_reports_refused`.
pub const PEER_REFUSALS: [&str; 4] = [
    "unauthenticated",
    "not_the_sender",
    "unknown_peer",
    "foreign_vi",
];

/// Labels of the WAN port metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WanLabel {
    pub port: String,
    pub vi: u32,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Per WAN port (one per VI and peer): 1 while BFD says the tunnel
    /// forwards, else 0.
    pub wan_up: Family<WanLabel, Gauge>,
    /// Per WAN port, Open vSwitch's Interface statistics as last read
    /// (they only grow, but are Open vSwitch's counters, copied).
    pub wan_rx_packets: Family<WanLabel, Gauge>,
    pub wan_rx_bytes: Family<WanLabel, Gauge>,
    pub wan_tx_packets: Family<WanLabel, Gauge>,
    pub wan_tx_bytes: Family<WanLabel, Gauge>,
    /// Reports (iaas: to the peer; haas: registry writes) waiting to leave.
    pub reports_queued: Gauge,
    /// Reports delivered.
    pub reports_sent: Counter,
    /// Reports dropped, by why: `outbox_full` (the bound of distinct MACs
    /// was reached), `refused` (the other side refused them for good).
    pub reports_dropped: Family<WhyLabel, Counter>,
    /// Failed delivery attempts (each is retried with backoff).
    pub report_failures: Counter,
    /// MACs reported by peers, by outcome.
    pub peer_reports: Family<OutcomeLabel, Counter>,
    /// Peer reports refused whole, by why ([`PEER_REFUSALS`]).
    pub peer_reports_refused: Family<WhyLabel, Counter>,
    /// Trunk frames that said nothing usable, by reason.
    pub malformed_frames: Family<ReasonLabel, Counter>,
    /// Frames whose VLAN no VI carries.
    pub frames_outside_vis: Counter,
    /// MACs flapping now.
    pub flapping_macs: Gauge,
    /// MACs the mobility table holds.
    pub macs: Gauge,
    /// Moves followed (into this data center or out of it).
    pub moves: Counter,
    /// Times the connection to the controller's event stream was lost.
    pub follower_reconnects: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn registered<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    let m = M::default();
    r.register(name, help, m.clone());
    m
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("iris_gateway");
        let reg = &mut r;
        let m = Self {
            reports_queued: registered(reg, "reports_queued", "MAC reports waiting to leave"),
            reports_sent: registered(reg, "reports_sent", "MAC reports delivered"),
            reports_dropped: registered(
                reg,
                "reports_dropped",
                "MAC reports dropped: outbox_full (beyond its bound of distinct MACs) or refused \
                 (for good by the other side)",
            ),
            report_failures: registered(
                reg,
                "report_failures",
                "Failed delivery attempts, each retried with backoff",
            ),
            peer_reports: registered(reg, "peer_reports", "MACs reported by peers, by outcome"),
            peer_reports_refused: registered(
                reg,
                "peer_reports_refused",
                "Peer reports refused whole, nothing changed: unauthenticated (no or a wrong \
                 token, 401), not_the_sender (a peer's token, another peer's name in from, 403), \
                 unknown_peer (from names no peer, 403), foreign_vi (a VI this gateway does not \
                 carry with the peer, 403)",
            ),
            malformed_frames: registered(
                reg,
                "malformed_frames",
                "Trunk frames that said nothing usable, by reason",
            ),
            frames_outside_vis: registered(
                reg,
                "frames_outside_vis",
                "Trunk ARP/RARP frames on a VLAN no VI carries",
            ),
            flapping_macs: registered(reg, "flapping_macs", "MACs flapping now (not followed)"),
            macs: registered(reg, "macs", "MACs in the mobility table"),
            moves: registered(reg, "moves", "MAC moves followed"),
            follower_reconnects: registered(
                reg,
                "follower_reconnects",
                "Times the controller's event stream was lost and reopened",
            ),
            wan_up: registered(
                reg,
                "wan_up",
                "1 while BFD says the WAN port's tunnel forwards, by port and VI",
            ),
            wan_rx_packets: registered(
                reg,
                "wan_rx_packets",
                "Packets the WAN port received (Open vSwitch's count)",
            ),
            wan_rx_bytes: registered(reg, "wan_rx_bytes", "Bytes the WAN port received"),
            wan_tx_packets: registered(reg, "wan_tx_packets", "Packets the WAN port sent"),
            wan_tx_bytes: registered(reg, "wan_tx_bytes", "Bytes the WAN port sent"),
            registry: Registry::default(),
        };
        for reason in crate::snoop::SnoopError::REASONS {
            let _ = m.malformed_frames.get_or_create(&ReasonLabel { reason });
        }
        for outcome in crate::report::Outcome::ALL {
            let _ = m.peer_reports.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            });
        }
        for why in PEER_REFUSALS {
            let _ = m.peer_reports_refused.get_or_create(&WhyLabel { why });
        }
        for why in ["outbox_full", "refused"] {
            let _ = m.reports_dropped.get_or_create(&WhyLabel { why });
        }
        Self { registry: r, ..m }
    }
}

impl Metrics {
    /// Copies the WAN ports' BFD state and counters from the datapath's
    /// status (`datapath.wan_ports` of `/v1/status`).
    pub fn set_wan_ports(&self, datapath: &serde_json::Value) {
        let Some(ports) = datapath["wan_ports"].as_array() else {
            return;
        };
        for p in ports {
            let (Some(port), Some(vi)) = (p["name"].as_str(), p["vi"].as_u64()) else {
                continue;
            };
            let Ok(vi) = u32::try_from(vi) else {
                continue;
            };
            let l = WanLabel {
                port: port.to_owned(),
                vi,
            };
            let up = p["bfd_forwarding"].as_bool() == Some(true);
            self.wan_up.get_or_create(&l).set(i64::from(up));
            for (family, key) in [
                (&self.wan_rx_packets, "rx_packets"),
                (&self.wan_rx_bytes, "rx_bytes"),
                (&self.wan_tx_packets, "tx_packets"),
                (&self.wan_tx_bytes, "tx_bytes"),
            ] {
                if let Some(v) = p[key].as_u64().and_then(|v| i64::try_from(v).ok()) {
                    family.get_or_create(&l).set(v);
                }
            }
        }
    }

    /// OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_zeroed_labels() {
        let m = Metrics::default();
        m.reports_sent.inc();
        let text = m.render();
        for line in [
            "iris_gateway_reports_sent_total 1",
            "iris_gateway_reports_queued 0",
            "iris_gateway_reports_dropped_total{why=\"outbox_full\"} 0",
            "iris_gateway_peer_reports_total{outcome=\"flapping\"} 0",
            "iris_gateway_malformed_frames_total{reason=\"double_tagged\"} 0",
            "iris_gateway_flapping_macs 0",
            "iris_gateway_follower_reconnects_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn the_wan_ports_come_from_the_datapath_status() {
        let m = Metrics::default();
        let status = serde_json::json!({"wan_ports": [
            {"name": "w1-p0", "vi": 1, "bfd_forwarding": true, "rx_packets": 31,
             "rx_bytes": 2726, "tx_packets": 66, "tx_bytes": 7110},
            {"name": "w2-p1", "vi": 2, "bfd_forwarding": false, "rx_packets": null},
        ]});
        m.set_wan_ports(&status);
        let text = m.render();
        for line in [
            "iris_gateway_wan_up{port=\"w1-p0\",vi=\"1\"} 1",
            "iris_gateway_wan_up{port=\"w2-p1\",vi=\"2\"} 0",
            "iris_gateway_wan_rx_bytes{port=\"w1-p0\",vi=\"1\"} 2726",
            "iris_gateway_wan_tx_packets{port=\"w1-p0\",vi=\"1\"} 66",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("iris_gateway_wan_rx_packets{port=\"w2-p1\""));
    }
}
