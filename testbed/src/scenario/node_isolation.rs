//! The isolation step of `broker`: an L1 node reaches nothing of the
//! provider's own network, and reaches the operator's.
//!
//! From inside one node, given a default route onto its VI as a tenant
//! could add (every address then on-link, asked for by ARP on the VI),
//! each target of the provider is tried with one ping and TCP connections:
//! the PMs' underlay addresses (with listeners on a few ports there), the
//! PMs' management addresses and the OVSDB served there over SSL, the
//! controller's OpenFlow port on the management links' root ends, and the
//! loopback ports of the controller's and the broker's APIs. Each target is
//! first shown live from a place that should reach it (another PM, the
//! PM's management link, the root namespace); from the node it must get no
//! answer at all: a connection refused or an ICMP error from elsewhere is
//! an answer, and fails the step. The one exception is loopback: a node's
//! 127.0.0.0/8 is its own, so its own kernel refuses there (checked: the
//! node's route to it is `local`), while a connection would mean the node
//! shares the provider's namespace. Another node of the operator answers
//! both ping and TCP on the VI, so the step fails both ways.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::harness::{check, ms, Harness};
use super::ScenarioError;
use crate::{Error, PmId};

/// How long a probe waits for an answer: well under the 3 s a failed ARP
/// resolution takes, so an unanswered probe ends as a timeout and not as
/// the node's own "host unreachable".
const WAIT: Duration = Duration::from_secs(1);
/// Ports listened on at each PM's underlay address: SSH, OVSDB, OpenFlow.
const UNDERLAY_PORTS: [u16; 3] = [22, 6640, 6653];
/// Where the operator's peer node listens.
const PEER_PORT: u16 = 22;

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// An echo reply, or a TCP connection accepted.
    Answered,
    /// A TCP reset: someone is there.
    Refused,
    /// An ICMP error (ping's line naming who sent it), the kernel's
    /// unreachable, or a probe that could not run: never what the step
    /// wants, as it is either an answer or a probe that proved nothing.
    Unreachable { detail: String },
    /// Nothing within the wait.
    NoAnswer,
    /// Refused by the node's own kernel: the address is the node's own
    /// (its route to it is `local`).
    OwnLoopback,
}

impl Seen {
    /// Whether the target showed itself.
    fn reached(&self) -> bool {
        matches!(self, Seen::Answered | Seen::Refused)
    }
}

/// Where a probe is sent from.
#[derive(Debug, Clone)]
enum Vantage {
    /// The root namespace, where the controller and the broker run.
    Root,
    /// A namespace: its name.
    Netns(String),
}

impl Vantage {
    fn name(&self) -> String {
        match self {
            Vantage::Root => "root namespace".into(),
            Vantage::Netns(n) => n.clone(),
        }
    }
}

/// One target tried from the node.
#[derive(Debug, Serialize)]
pub struct Probe {
    /// What listens there, in the provider's words.
    pub what: String,
    /// `ping` or `tcp`.
    pub kind: &'static str,
    pub target: String,
    /// Where the target was first shown live, and what that saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<Seen>,
    /// What the node saw: `no_answer` for the provider's targets,
    /// `own_loopback` for its loopback, `answered` for the operator's.
    pub from_node: Seen,
}

/// What the isolation step saw.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The node's namespace every probe was sent from.
    pub node: String,
    /// The route the tenant added in the node before probing.
    pub route: &'static str,
    /// The provider's targets.
    pub provider: Vec<Probe>,
    /// The operator's own address on the VI.
    pub operator: Vec<Probe>,
    /// The step's wall time, controls and listeners included.
    pub took_ms: f64,
}

/// A target and where it is shown live from; `None` for the operator's.
struct Target {
    what: String,
    kind: &'static str,
    addr: SocketAddr,
    control: Option<Vantage>,
}

/// Tries every target of the provider from node namespace `node` and the
/// operator's peer node `peer` (namespace, its address on the VI) from the
/// same node, on the PMs `pms`; `apis` are the loopback ports of the
/// controller's and the broker's APIs. Fails on any answer from the
/// provider, or none from the operator.
pub fn check_node(
    h: &Harness,
    pms: &[PmId],
    node: &str,
    peer: (&str, Ipv4Addr),
    apis: &[(&str, u16)],
) -> Result<Report, ScenarioError> {
    let start = Instant::now();
    let route = "default dev cloudbr0";
    let added = Command::new("ip")
        .args(["-n", node, "route", "replace", "default", "dev", "cloudbr0"])
        .status()
        .map_err(|e| Error::io("adding the tenant's route", e))?;
    check(added.success(), || {
        format!("no default route could be added in {node}")
    })?;

    // The listeners live as long as this function: bound inside each PM's
    // namespace (a socket stays in the namespace it was made in), never
    // accepting, as the kernel completes a handshake into the backlog.
    let mut listeners = Vec::new();
    let mut targets = Vec::new();
    let openflow = openflow_port(h, pms)?;
    check(openflow.is_some(), || {
        "the controller's OpenFlow is on its unix socket: run the harness with TLS, so that the \
         port a node must not reach is a TCP one"
            .into()
    })?;
    for (i, &pm) in pms.iter().enumerate() {
        let p = h.tb.pm(pm);
        let ns = p.netns().name().to_owned();
        let neighbour = Vantage::Netns(h.tb.pm(pms[(i + 1) % pms.len()]).netns().name().to_owned());
        let underlay = p.underlay_addr().addr();
        targets.push(ping(
            format!("{}'s underlay address", p.name()),
            underlay,
            &neighbour,
        ));
        for port in UNDERLAY_PORTS {
            let at = SocketAddr::V4(SocketAddrV4::new(underlay, port));
            listeners.push(listen(&ns, at)?);
            targets.push(Target {
                what: format!("a listener on {}'s underlay address", p.name()),
                kind: "tcp",
                addr: at,
                control: Some(neighbour.clone()),
            });
        }
        if let Some(link) = p.management() {
            let own = Vantage::Netns(ns.clone());
            targets.push(ping(
                format!("{}'s management address", p.name()),
                link.pm.addr(),
                &Vantage::Root,
            ));
            targets.push(Target {
                what: format!("{}'s OVSDB (pssl) on its management address", p.name()),
                kind: "tcp",
                addr: SocketAddr::V4(SocketAddrV4::new(link.pm.addr(), 6640)),
                control: Some(Vantage::Root),
            });
            targets.push(ping(
                format!("the root end of {}'s management link", p.name()),
                link.root.addr(),
                &own,
            ));
            if let Some(port) = openflow {
                targets.push(Target {
                    what: format!(
                        "the controller's OpenFlow (TLS) on {}'s management link",
                        p.name()
                    ),
                    kind: "tcp",
                    addr: SocketAddr::V4(SocketAddrV4::new(link.root.addr(), port)),
                    control: Some(own.clone()),
                });
            }
            for &(name, port) in apis {
                targets.push(Target {
                    what: format!("{name} port on {}'s management link", p.name()),
                    kind: "tcp",
                    addr: SocketAddr::V4(SocketAddrV4::new(link.root.addr(), port)),
                    control: Some(own.clone()),
                });
            }
        }
    }
    let loopback = Ipv4Addr::LOCALHOST;
    for &(name, port) in apis.iter().chain(
        openflow
            .as_ref()
            .map(|p| ("the controller's OpenFlow (TLS)", *p))
            .as_slice(),
    ) {
        targets.push(Target {
            what: format!("{name} on loopback"),
            kind: "tcp",
            addr: SocketAddr::V4(SocketAddrV4::new(loopback, port)),
            control: Some(Vantage::Root),
        });
    }
    let (peer_ns, peer_ip) = peer;
    let peer_at = SocketAddr::V4(SocketAddrV4::new(peer_ip, PEER_PORT));
    listeners.push(listen(peer_ns, peer_at)?);
    let operator_targets = vec![
        Target {
            what: "the operator's peer node on the VI".into(),
            kind: "ping",
            addr: SocketAddr::V4(SocketAddrV4::new(peer_ip, 0)),
            control: None,
        },
        Target {
            what: "a listener on the operator's peer node".into(),
            kind: "tcp",
            addr: peer_at,
            control: None,
        },
    ];

    // Every control first, all at once: each target is live.
    let controls = in_parallel(
        targets
            .iter()
            .map(|t| (t.control.clone().unwrap_or(Vantage::Root), t.kind, t.addr)),
    );
    for (t, seen) in targets.iter().zip(&controls) {
        check(seen.reached(), || {
            format!(
                "{} ({} {}) is not live from {}: {seen:?}; the probe from the node would prove \
                 nothing",
                t.what,
                t.kind,
                t.addr,
                t.control.as_ref().map(Vantage::name).unwrap_or_default()
            )
        })?;
    }
    // Then every probe from the node, all at once.
    let from_node = Vantage::Netns(node.to_owned());
    let seen = in_parallel(
        targets
            .iter()
            .chain(&operator_targets)
            .map(|t| (from_node.clone(), t.kind, t.addr)),
    );
    let (provider_seen, operator_seen) = seen.split_at(targets.len());
    let mut provider = Vec::new();
    let mut leaks = Vec::new();
    for ((t, control), seen) in targets.iter().zip(controls).zip(provider_seen) {
        let mut seen = seen.clone();
        if seen == Seen::Refused && is_local(node, t.addr.ip())? {
            seen = Seen::OwnLoopback;
        }
        let wanted = if t.addr.ip().is_loopback() {
            Seen::OwnLoopback
        } else {
            Seen::NoAnswer
        };
        if seen != wanted {
            leaks.push(format!("{} {} ({}): {seen:?}", t.kind, shown(t), t.what));
        }
        provider.push(Probe {
            what: t.what.clone(),
            kind: t.kind,
            target: shown(t),
            control_from: t.control.as_ref().map(Vantage::name),
            control: Some(control),
            from_node: seen,
        });
    }
    let mut operator = Vec::new();
    for (t, seen) in operator_targets.iter().zip(operator_seen) {
        check(*seen == Seen::Answered, || {
            format!(
                "the node {node} does not reach {} ({} {}): {seen:?}",
                t.what,
                t.kind,
                shown(t)
            )
        })?;
        operator.push(Probe {
            what: t.what.clone(),
            kind: t.kind,
            target: shown(t),
            control_from: None,
            control: None,
            from_node: seen.clone(),
        });
    }
    check(leaks.is_empty(), || {
        format!(
            "the node {node} reached the provider's network: {}",
            leaks.join("; ")
        )
    })?;
    drop(listeners);
    Ok(Report {
        node: node.to_owned(),
        route,
        provider,
        operator,
        took_ms: ms(start.elapsed()),
    })
}

fn ping(what: String, addr: Ipv4Addr, control: &Vantage) -> Target {
    Target {
        what,
        kind: "ping",
        addr: SocketAddr::V4(SocketAddrV4::new(addr, 0)),
        control: Some(control.clone()),
    }
}

fn shown(t: &Target) -> String {
    if t.kind == "ping" {
        t.addr.ip().to_string()
    } else {
        t.addr.to_string()
    }
}

/// The controller's OpenFlow port over TLS, read from the first PM's
/// target (`ssl:<root end>:<port>`); `None` when OpenFlow runs on the
/// unix socket, which no network reaches.
fn openflow_port(h: &Harness, pms: &[PmId]) -> Result<Option<u16>, ScenarioError> {
    let Some(&pm) = pms.first() else {
        return Ok(None);
    };
    let target = h.host(pm)?.controller;
    Ok(target
        .strip_prefix("ssl:")
        .and_then(|t| t.rsplit(':').next())
        .and_then(|p| p.parse().ok()))
}

/// Whether `addr` is an address of namespace `ns` itself.
fn is_local(ns: &str, addr: std::net::IpAddr) -> Result<bool, ScenarioError> {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "get", &addr.to_string()])
        .output()
        .map_err(|e| Error::io("asking the node's route", e))?;
    Ok(String::from_utf8_lossy(&out.stdout).starts_with("local "))
}

/// A listener on `at`, bound inside namespace `ns`.
fn listen(ns: &str, at: SocketAddr) -> Result<TcpListener, ScenarioError> {
    let path = PathBuf::from("/run/netns").join(ns);
    std::thread::spawn(move || {
        crate::frames::enter(&path)?;
        TcpListener::bind(at).map_err(|e| Error::io(format!("listening on {at}"), e))
    })
    .join()
    .map_err(|_| Error::Usage(format!("the thread listening in {ns} panicked")))?
    .map_err(Into::into)
}

/// Runs every probe at once, each on its own thread, in the given order.
fn in_parallel(probes: impl Iterator<Item = (Vantage, &'static str, SocketAddr)>) -> Vec<Seen> {
    let threads: Vec<_> = probes
        .map(|(from, kind, addr)| std::thread::spawn(move || probe(&from, kind, addr)))
        .collect();
    threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or(Seen::Unreachable {
                detail: "the probe's thread panicked".into(),
            })
        })
        .collect()
}

fn probe(from: &Vantage, kind: &str, addr: SocketAddr) -> Seen {
    if kind == "ping" {
        return ping_once(from, addr.ip());
    }
    if let Vantage::Netns(ns) = from {
        if let Err(e) = crate::frames::enter(&PathBuf::from("/run/netns").join(ns)) {
            return Seen::Unreachable {
                detail: format!("cannot enter {ns}: {e}"),
            };
        }
    }
    match TcpStream::connect_timeout(&addr, WAIT) {
        Ok(_) => Seen::Answered,
        Err(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Seen::Refused,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Seen::NoAnswer,
            _ => Seen::Unreachable {
                detail: format!("the kernel: {e}"),
            },
        },
    }
}

/// One echo request, its reply or ICMP error read from ping's output.
fn ping_once(from: &Vantage, addr: std::net::IpAddr) -> Seen {
    let mut command = match from {
        Vantage::Root => Command::new("ping"),
        Vantage::Netns(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ping"]);
            c
        }
    };
    let wait = WAIT.as_secs().to_string();
    let out = match command
        .args(["-n", "-c", "1", "-W", &wait, &addr.to_string()])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            return Seen::Unreachable {
                detail: format!("cannot run ping: {e}"),
            }
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains(" bytes from ") {
        return Seen::Answered;
    }
    // "From 10.88.0.1 icmp_seq=1 Destination Host Unreachable"
    if let Some(line) = text.lines().find(|l| l.starts_with("From ")) {
        return Seen::Unreachable {
            detail: line.to_owned(),
        };
    }
    Seen::NoAnswer
}
