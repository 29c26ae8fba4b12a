//! `iris-testbed bench scale`: how `iris-controller` grows with what it
//! manages.
//!
//! - [`registry`]: resident memory against registry size (MACs seeded
//!   through the API), and the flows each switch holds for them.
//! - [`restart`]: a `kill -9` and restart of the controller with many MACs
//!   on many real Open vSwitch bridges: how long until every switch is
//!   reconciled, and that nothing was deleted or re-sent.
//! - [`switches`]: many emulated switches connecting at once: handshake
//!   and initial dump times, and memory per switch.
//!
//! Memory is read from `/proc/PID/status` (`VmRSS`, `VmHWM`): what the
//! kernel charges the process, allocator slack included.

pub mod registry;
pub mod restart;
pub mod switches;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::controller::{ControllerProcess, HostRole, ViEntry};
use crate::scenario::{Harness, ScenarioError};
use crate::{Error, MacAddr, Pm, PmId, INTEGRATION_BRIDGE};

use super::report::{load_average, rfc3339};

/// A process's memory as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Memory {
    /// Resident set size now (`VmRSS`), MiB.
    pub rss_mib: f64,
    /// Peak resident set size so far (`VmHWM`), MiB.
    pub hwm_mib: f64,
}

impl Memory {
    /// Reads `VmRSS` and `VmHWM` out of a `/proc/PID/status` text.
    pub fn parse_status(text: &str) -> Option<Self> {
        let kib = |key: &str| -> Option<f64> {
            let line = text.lines().find(|l| l.starts_with(key))?;
            let mut words = line[key.len()..].split_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            (words.next() == Some("kB")).then_some(n as f64)
        };
        Some(Self {
            rss_mib: round3(kib("VmRSS:")? / 1024.0),
            hwm_mib: round3(kib("VmHWM:")? / 1024.0),
        })
    }

    /// The memory of process `pid` now.
    pub fn of(pid: u32) -> Result<Self, Error> {
        let path = format!("/proc/{pid}/status");
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {path}"), e))?;
        Self::parse_status(&text).ok_or_else(|| Error::UnexpectedOutput {
            command: format!("cat {path}"),
            reason: "no VmRSS or VmHWM line in kB".into(),
            output: text,
        })
    }
}

/// When a run happened and how loaded the machine was around it.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub started_at: String,
    /// 1, 5 and 15 minute load averages before and after.
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub seconds: f64,
}

/// Stamps a run: call [`Stamp::finish`] at its end.
#[derive(Debug)]
pub struct Stamp {
    started_at: SystemTime,
    start: Instant,
    load_before: Option<[f64; 3]>,
}

impl Stamp {
    pub fn now() -> Self {
        Self {
            started_at: SystemTime::now(),
            start: Instant::now(),
            load_before: load_average(),
        }
    }

    pub fn finish(&self) -> RunInfo {
        RunInfo {
            started_at: rfc3339(self.started_at),
            load_before: self.load_before,
            load_after: load_average(),
            seconds: round3(self.start.elapsed().as_secs_f64()),
        }
    }
}

/// The `i`-th seeded MAC: locally administered unicast, `52:54:` then
/// `i` in 32 bits, so sizes up to 4 G never repeat.
pub fn seeded_mac(i: u32) -> MacAddr {
    let [a, b, c, d] = i.to_be_bytes();
    MacAddr([0x52, 0x54, a, b, c, d])
}

/// The `i`-th seeded IP: counted up from 10.64.0.1, clear of the
/// scenarios' VM addresses (10.0.x.x).
pub fn seeded_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)).wrapping_add(i))
}

/// Seed rows `from..to` of `POST /v1/vis/{id}/seed`, untagged, each MAC
/// with one IP and living behind `gateway`.
pub fn seed_rows(from: u32, to: u32, gateway: &str) -> Value {
    Value::Array(
        (from..to)
            .map(|i| {
                json!({
                    "mac": seeded_mac(i).to_string(),
                    "ip": seeded_ip(i).to_string(),
                    "behind": gateway,
                })
            })
            .collect(),
    )
}

/// Seeds MACs `from..to` into `vi` through the API, `chunk` rows per
/// request (axum refuses bodies over 2 MiB; a row is about 70 bytes).
/// Returns the registry changes the controller reported.
pub fn seed(
    c: &ControllerProcess,
    vi: u32,
    from: u32,
    to: u32,
    chunk: u32,
    gateway: &str,
) -> Result<u64, ScenarioError> {
    let mut changes = 0;
    let mut at = from;
    while at < to {
        let end = to.min(at.saturating_add(chunk.max(1)));
        let body = seed_rows(at, end, gateway);
        let text = c.expect("POST", &format!("/v1/vis/{vi}/seed"), Some(&body), 200)?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| {
            ScenarioError::Failed(format!("the seed answer is not JSON ({e}): {text}"))
        })?;
        changes += answer["changes"].as_u64().ok_or_else(|| {
            ScenarioError::Failed(format!("the seed answer has no changes count: {text}"))
        })?;
        at = end;
    }
    Ok(changes)
}

/// How many flows `pm`'s integration bridge holds (`ovs-ofctl
/// dump-aggregate`: counted by the switch, cheap even for 100 000s).
pub fn flow_count(pm: &Pm) -> Result<u64, ScenarioError> {
    let text = pm.ofctl(&["dump-aggregate", INTEGRATION_BRIDGE])?;
    parse_flow_count(&text).ok_or_else(|| {
        ScenarioError::Testbed(Error::UnexpectedOutput {
            command: format!("ovs-ofctl dump-aggregate on {}", pm.name()),
            reason: "no flow_count".into(),
            output: text,
        })
    })
}

/// The `flow_count=N` of a `dump-aggregate` reply.
pub fn parse_flow_count(text: &str) -> Option<u64> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|w| w.strip_prefix("flow_count="))
        .and_then(|n| n.parse().ok())
}

/// Waits until the controller has stopped sending FLOW_MODs and every
/// bridge's flow count has stayed the same for `quiet`; returns the counts
/// (in the order of `pms`) and how long it took.
pub fn wait_flows_settled(
    c: &ControllerProcess,
    pms: &[&Pm],
    quiet: Duration,
    timeout: Duration,
) -> Result<(Vec<u64>, Duration), ScenarioError> {
    let start = Instant::now();
    let read = |c: &ControllerProcess| -> Result<(f64, Vec<u64>), ScenarioError> {
        let sent = c.metrics()?.value("iris_flow_mods_sent_total");
        let counts = pms
            .iter()
            .map(|pm| flow_count(pm))
            .collect::<Result<_, _>>()?;
        Ok((sent, counts))
    };
    let mut last = read(c)?;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        // A dead controller fails the metrics request.
        let now = read(c)?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            // Settled since `since`: that is when the last change was seen.
            return Ok((last.1, since.saturating_duration_since(start)));
        }
        if start.elapsed() > timeout {
            return Err(ScenarioError::Failed(format!(
                "the flows did not settle within {} s; last counts {:?}, {} FLOW_MODs sent",
                timeout.as_secs(),
                last.1,
                last.0
            )));
        }
    }
}

/// The VI every MAC is seeded into.
pub const VI: u32 = 1;
const GRE_KEY: u32 = 1001;
/// The gateway host's name.
pub const GATEWAY: &str = "gw";

/// A PM per name, the first one ([`GATEWAY`]) the gateway of VI [`VI`]
/// and every other a compute host with one VM of it; the controller
/// started on them and waited for until every switch, the GRE mesh and
/// every VM port's classification are in place.
pub fn bring_up(h: &mut Harness, computes: usize) -> Result<Vec<PmId>, ScenarioError> {
    let names: Vec<String> = std::iter::once(GATEWAY.to_owned())
        .chain((1..=computes).map(|i| format!("pm{i}")))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let pms = h.add_pms(&names)?;
    let mut vi = gateway_vi();
    let vms = h.add_vms(&mut vi, &pms[1..])?;
    let mut config = h.config(&pms, vec![vi])?;
    config.hosts[0].role = HostRole::Gateway;
    h.start_controller(&config)?;
    let n = pms.len() as u64;
    h.wait_ready(n, n)?;
    h.wait_full_mesh(&pms)?;
    h.wait_classified(&vms)?;
    Ok(pms)
}

/// VI [`VI`] with [`GATEWAY`] as its gateway.
pub fn gateway_vi() -> ViEntry {
    let mut vi = ViEntry::new(VI, "scale", GRE_KEY);
    vi.gateways.push(GATEWAY.into());
    vi
}

/// Refuses a chunk of no rows.
pub fn check_chunk(chunk: u32) -> Result<(), String> {
    if chunk == 0 {
        return Err("--chunk must be at least 1".into());
    }
    Ok(())
}

/// A measurement rounded to three decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// A duration in milliseconds, rounded to microseconds.
pub fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_memory_is_read_in_mib() {
        let text = "Name:\tiris-controller\nVmPeak:\t 2000000 kB\nVmHWM:\t   20480 kB\n\
                    VmRSS:\t   10240 kB\nThreads:\t3\n";
        let m = Memory::parse_status(text).unwrap();
        assert_eq!(m.rss_mib, 10.0);
        assert_eq!(m.hwm_mib, 20.0);
        assert_eq!(Memory::parse_status("VmRSS:\t1 MB\nVmHWM:\t1 kB\n"), None);
        assert_eq!(Memory::parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn my_own_memory_is_readable() {
        let m = Memory::of(std::process::id()).unwrap();
        assert!(m.rss_mib > 0.0 && m.hwm_mib >= m.rss_mib, "{m:?}");
    }

    #[test]
    fn seeded_addresses_are_distinct_unicast_and_clear_of_the_scenarios() {
        assert_eq!(seeded_mac(0).to_string(), "52:54:00:00:00:00");
        assert_eq!(seeded_mac(0x0102_0304).to_string(), "52:54:01:02:03:04");
        assert_eq!(seeded_ip(0), Ipv4Addr::new(10, 64, 0, 1));
        assert_eq!(seeded_ip(99_999), Ipv4Addr::new(10, 65, 134, 160));
        let rows = seed_rows(5, 8, "gw");
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["mac"], "52:54:00:00:00:05");
        assert_eq!(rows[2]["ip"], "10.64.0.8");
        assert_eq!(rows[1]["behind"], "gw");
    }

    #[test]
    fn aggregate_replies_give_their_flow_count() {
        let reply = "OFPST_AGGREGATE reply (OF1.3) (xid=0x2): packet_count=0 byte_count=0 \
                     flow_count=30017\n";
        assert_eq!(parse_flow_count(reply), Some(30017));
        assert_eq!(parse_flow_count("packet_count=0"), None);
    }
}
