//! One TCP measurement with `iperf3 -J`, read from its JSON report.
//!
//! iperf3 prints one JSON object even when the test fails (exit status 1,
//! an `error` member, an empty `end`), so the report is what decides: a
//! failed test is a [`Goodput`] of its own kind, not a tool fault, because
//! a data plane that stalls TCP is exactly what a benchmark must report.

use serde::Serialize;
use serde_json::Value;

use super::{round1, round3};

/// What one iperf3 client run reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Goodput {
    /// The transfer ran.
    Measured(Transfer),
    /// iperf3 gave up; its own words.
    Failed { error: String },
}

/// The totals of a completed transfer (iperf3's `end` object, without the
/// omitted warm-up seconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transfer {
    /// Payload bytes the receiver read, per second, in Gb/s: the goodput.
    pub received_gbps: f64,
    pub sent_gbps: f64,
    pub received_bytes: u64,
    pub seconds: f64,
    /// TCP retransmissions the sender counted: segments lost on the way.
    pub retransmits: Option<u64>,
    /// CPU busy on the sending and the receiving side, in percent of one
    /// core, as iperf3 measures it.
    pub sender_cpu_percent: Option<f64>,
    pub receiver_cpu_percent: Option<f64>,
}

impl Goodput {
    /// The goodput in Gb/s; 0 for a failed test.
    pub fn gbps(&self) -> f64 {
        match self {
            Self::Measured(t) => t.received_gbps,
            Self::Failed { .. } => 0.0,
        }
    }
}

/// Reads the output of `iperf3 -c … -J`. `Err` says why the text is not an
/// iperf3 report at all; a report of a failed test is `Ok(Failed)`.
pub fn parse(json: &str) -> Result<Goodput, String> {
    let report: Value =
        serde_json::from_str(json).map_err(|e| format!("iperf3 printed no JSON: {e}"))?;
    if let Some(error) = report.get("error").and_then(Value::as_str) {
        return Ok(Goodput::Failed {
            error: error.to_owned(),
        });
    }
    let end = report
        .get("end")
        .ok_or("the iperf3 report has neither `end` nor `error`")?;
    let sum = |side: &str| {
        end.get(side)
            .filter(|s| s.is_object())
            .ok_or_else(|| format!("the iperf3 report has no end.{side} (not a TCP test?)"))
    };
    let (sent, received) = (sum("sum_sent")?, sum("sum_received")?);
    let number = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("the iperf3 report has no number at {field}"))
    };
    let gbps = |bps: f64| round3(bps / 1e9);
    let cpu = end.get("cpu_utilization_percent");
    let cpu_of = |field: &str| cpu.and_then(|c| c.get(field)).and_then(Value::as_f64);
    Ok(Goodput::Measured(Transfer {
        received_gbps: gbps(number(received, "bits_per_second")?),
        sent_gbps: gbps(number(sent, "bits_per_second")?),
        received_bytes: received
            .get("bytes")
            .and_then(Value::as_u64)
            .ok_or("the iperf3 report has no end.sum_received.bytes")?,
        seconds: round3(number(received, "seconds")?),
        retransmits: sent.get("retransmits").and_then(Value::as_u64),
        sender_cpu_percent: cpu_of("host_total").map(round1),
        receiver_cpu_percent: cpu_of("remote_total").map(round1),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `iperf3 -c 127.0.0.1 -t 2 -O 1 -J` on the development host.
    const TCP: &str = include_str!("../../tests/data/iperf3-tcp.json");
    /// The same against a port nobody listens on.
    const REFUSED: &str = include_str!("../../tests/data/iperf3-refused.json");

    #[test]
    fn a_tcp_report_gives_the_receivers_rate_and_the_senders_retransmits() {
        let Goodput::Measured(t) = parse(TCP).unwrap() else {
            panic!("the sample is a completed test");
        };
        assert_eq!(t.received_gbps, 7.309);
        assert_eq!(t.sent_gbps, 7.321);
        assert_eq!(t.received_bytes, 1_827_667_968);
        assert_eq!(t.seconds, 2.0);
        assert_eq!(t.retransmits, Some(2));
        assert_eq!(t.sender_cpu_percent, Some(25.2));
        assert_eq!(t.receiver_cpu_percent, Some(24.1));
        assert_eq!(Goodput::Measured(t).gbps(), 7.309);
    }

    #[test]
    fn a_failed_test_is_reported_with_iperfs_reason() {
        let g = parse(REFUSED).unwrap();
        assert_eq!(
            g,
            Goodput::Failed {
                error: "unable to connect to server: Connection refused".into()
            }
        );
        assert_eq!(g.gbps(), 0.0);
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(json["outcome"], "failed");
    }

    #[test]
    fn what_is_not_an_iperf_report_is_an_error() {
        assert!(parse("iperf3: error - unable to connect").is_err());
        assert!(parse(r#"{"start": {}}"#).is_err());
        // A UDP test has no sum_sent/sum_received.
        assert!(parse(r#"{"end": {"sum": {"bits_per_second": 1.0}}}"#).is_err());
        let no_rate = r#"{"end": {"sum_sent": {"bytes": 1}, "sum_received": {"bytes": 1}}}"#;
        assert!(parse(no_rate).unwrap_err().contains("bits_per_second"));
    }
}
