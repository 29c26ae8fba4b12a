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

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
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
        for why in ["outbox_full", "refused"] {
            let _ = m.reports_dropped.get_or_create(&WhyLabel { why });
        }
        Self { registry: r, ..m }
    }
}

impl Metrics {
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
}
