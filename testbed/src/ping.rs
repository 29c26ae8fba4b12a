//! Running `ping` (iputils) inside a namespace and reading its summary into
//! numbers.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::command::{failure, output};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// How long [`crate::Vm::ping`] and [`crate::Pm::ping_underlay`] wait for each reply.
pub const PING_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `count` echo requests from inside `netns` to `dst`, `interval` apart,
/// waiting up to `reply_timeout` for each reply. Lost replies are not an
/// error; a ping that cannot run at all (no route, bad arguments) is.
pub(crate) fn ping_from(
    netns: &Netns,
    dst: Ipv4Addr,
    count: u32,
    interval: Duration,
    reply_timeout: Duration,
) -> Result<PingReport> {
    let mut command = netns.command("ping");
    command.args([
        "-n".to_owned(),
        "-q".to_owned(),
        "-c".to_owned(),
        count.to_string(),
        "-i".to_owned(),
        format!("{:.3}", interval.as_secs_f64()),
        "-W".to_owned(),
        format!("{:.3}", reply_timeout.as_secs_f64()),
        dst.to_string(),
    ]);
    let out = output(&mut command)?;
    // iputils: 0 = all replied, 1 = some lost, 2 = other error.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(failure(&command, &out));
    }
    PingReport::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Round-trip times over the replies received.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rtt {
    pub min: Duration,
    pub avg: Duration,
    pub max: Duration,
    pub mdev: Duration,
}

/// What one `ping` run saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingReport {
    pub transmitted: u32,
    pub received: u32,
    /// ICMP errors reported instead of replies (e.g. host unreachable).
    pub errors: u32,
    /// `None` when no reply came back.
    pub rtt: Option<Rtt>,
}

impl PingReport {
    /// Lost requests as a fraction of those sent, 0.0 to 1.0.
    pub fn loss(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        f64::from(self.transmitted.saturating_sub(self.received)) / f64::from(self.transmitted)
    }

    /// Every request got its reply.
    pub fn all_replied(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }

    /// Reads the statistics block at the end of ping's output:
    ///
    /// ```text
    /// 3 packets transmitted, 2 received, +1 errors, 33.3333% packet loss, time 2003ms
    /// rtt min/avg/max/mdev = 0.400/1.601/3.814/1.566 ms
    /// ```
    pub fn parse(output: &str) -> Result<Self> {
        let unexpected = |reason: &str| Error::UnexpectedOutput {
            command: "ping".into(),
            reason: reason.into(),
            output: output.to_owned(),
        };
        let counts = output
            .lines()
            .find(|line| line.contains("packets transmitted"))
            .ok_or_else(|| unexpected("no \"packets transmitted\" line"))?;
        let mut report = Self {
            transmitted: 0,
            received: 0,
            errors: 0,
            rtt: None,
        };
        for part in counts.split(',') {
            let mut words = part.split_whitespace();
            let (Some(number), Some(label)) = (words.next(), words.next()) else {
                continue;
            };
            let field = match label {
                "packets" => &mut report.transmitted,
                "received" => &mut report.received,
                "errors" => &mut report.errors,
                _ => continue,
            };
            *field = number
                .trim_start_matches('+')
                .parse()
                .map_err(|_| unexpected("a count is not a number"))?;
        }
        if let Some(line) = output
            .lines()
            .find(|l| l.starts_with("rtt ") || l.starts_with("round-trip "))
        {
            let values = line
                .split('=')
                .nth(1)
                .ok_or_else(|| unexpected("rtt line without '='"))?
                .trim()
                .trim_end_matches("ms")
                .trim();
            let ms: Vec<f64> = values
                .split('/')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| unexpected("an rtt value is not a number"))?;
            let [min, avg, max, mdev] = ms[..] else {
                return Err(unexpected("rtt line needs min/avg/max/mdev"));
            };
            let d = |ms: f64| Duration::from_secs_f64(ms / 1000.0);
            report.rtt = Some(Rtt {
                min: d(min),
                avg: d(avg),
                max: d(max),
                mdev: d(mdev),
            });
        }
        if report.received > report.transmitted {
            return Err(unexpected("more replies than requests"));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_replies() {
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n\
                   --- 10.0.0.2 ping statistics ---\n\
                   3 packets transmitted, 3 received, 0% packet loss, time 403ms\n\
                   rtt min/avg/max/mdev = 0.400/1.601/3.814/1.566 ms\n";
        let r = PingReport::parse(out).unwrap();
        assert_eq!((r.transmitted, r.received, r.errors), (3, 3, 0));
        assert!(r.all_replied());
        assert_eq!(r.loss(), 0.0);
        let rtt = r.rtt.unwrap();
        assert_eq!(rtt.min, Duration::from_micros(400));
        assert_eq!(rtt.avg, Duration::from_micros(1601));
        assert_eq!(rtt.max, Duration::from_micros(3814));
        assert_eq!(rtt.mdev, Duration::from_micros(1566));
    }

    #[test]
    fn total_loss_has_no_rtt() {
        let out = "--- 10.0.0.2 ping statistics ---\n\
                   2 packets transmitted, 0 received, 100% packet loss, time 1014ms\n";
        let r = PingReport::parse(out).unwrap();
        assert_eq!((r.transmitted, r.received), (2, 0));
        assert_eq!(r.loss(), 1.0);
        assert!(!r.all_replied());
        assert!(r.rtt.is_none());
    }

    #[test]
    fn errors_and_partial_loss() {
        let out =
            "3 packets transmitted, 1 received, +2 errors, 66.6667% packet loss, time 2040ms\n\
                   rtt min/avg/max/mdev = 0.051/0.051/0.051/0.000 ms\n";
        let r = PingReport::parse(out).unwrap();
        assert_eq!((r.transmitted, r.received, r.errors), (3, 1, 2));
        assert!((r.loss() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(PingReport::parse("ping: unknown host").is_err());
        assert!(PingReport::parse("1 packets transmitted, 2 received").is_err());
        assert!(PingReport::parse("x packets transmitted, 0 received").is_err());
        assert!(PingReport::parse(
            "1 packets transmitted, 1 received\nrtt min/avg/max/mdev = 1/2 ms"
        )
        .is_err());
    }
}
