//! Whether the control loop knows enough of the ports to program a switch.
//!
//! A switch's tables are compiled from what OVSDB reports: its host's VM
//! ports (with their VI) and tunnels, and, through VI membership, the other
//! hosts' VM ports (its flood groups reach the VI's other members). A plan
//! made from less deletes live flows and adds them back once the report
//! comes: after a restart, a switch that reconnected before OVSDB's first
//! report lost every VM port's flows for a moment. So a host's switch is
//! programmed only when
//!
//! - its own ports were reported since its OVSDB session last connected
//!   (while the session is down, the last report stands);
//! - every host known when the controller started has reported its ports
//!   once, or [`FIRST_REPORT_WAIT`] has passed since the start (a host whose
//!   OVSDB stays away must not hold every other switch for ever);
//! - the switch does not report a port that carries its VM classification
//!   flow (a VM was served there) while the host's report lacks it; that
//!   report is behind the switch, and is trusted only [`CROSS_CHECK_WAIT`]
//!   after it came (the port may really have left its VI). Tunnels and the
//!   bridge's own port carry no such flow, and a freshly plugged port has
//!   none yet, so neither holds anything.
//!
//! Until then the switch is left exactly as it is; the checks are made
//! again as reports come, ports change and the loop's tick passes.

use crate::compiler::vm_port_classifier;
use crate::model::{HostName, Topology};
use crate::switch_state::Installed;
use ofp::message::Port;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

/// How long after the start every switch waits for the first report of
/// each host known then.
pub(super) const FIRST_REPORT_WAIT: Duration = Duration::from_secs(10);
/// How long a host's report is checked against its switch's ports.
pub(super) const CROSS_CHECK_WAIT: Duration = Duration::from_secs(3);

/// What is known of every host's ports, as far as programming goes.
#[derive(Debug)]
pub(super) struct Inventory {
    /// Hosts whose ports were reported since their OVSDB session connected.
    reported: BTreeSet<HostName>,
    /// Hosts known at the start that have not reported once yet, and until
    /// when they are waited for.
    first_awaited: BTreeSet<HostName>,
    first_deadline: Instant,
    /// Hosts whose last report is checked against their switch, until when.
    cross_checked: BTreeMap<HostName, Instant>,
}

/// Why a switch is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Incomplete {
    /// Its host's ports have not been reported since its OVSDB connected.
    OwnPorts,
    /// These hosts, known at the start, have not reported their ports yet.
    FirstReports(Vec<HostName>),
    /// The switch has these VM ports, with their flows, that the host's
    /// report does not name.
    UnreportedPorts(Vec<u32>),
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
        match self {
            Self::OwnPorts => f.write_str("OVSDB has not reported the host's ports yet"),
            Self::FirstReports(hosts) => write!(
                f,
                "OVSDB of {} has not reported its ports since the start (they show in this \
                 switch's floods; waited for at most {} s)",
                list(&mut hosts.iter().map(ToString::to_string)),
                FIRST_REPORT_WAIT.as_secs()
            ),
            Self::UnreportedPorts(ports) => write!(
                f,
                "the switch serves VM port(s) {} that OVSDB's report does not name (trusted \
                 after {} s)",
                list(&mut ports.iter().map(ToString::to_string)),
                CROSS_CHECK_WAIT.as_secs()
            ),
        }
    }
}

impl Inventory {
    /// Nothing reported yet; `hosts` (those known at the start) are waited
    /// for until [`FIRST_REPORT_WAIT`] after `now`.
    pub(super) fn new(hosts: impl IntoIterator<Item = HostName>, now: Instant) -> Self {
        Self {
            reported: BTreeSet::new(),
            first_awaited: hosts.into_iter().collect(),
            first_deadline: now + FIRST_REPORT_WAIT,
            cross_checked: BTreeMap::new(),
        }
    }

    /// `host`'s OVSDB session (re)connected: its ports may have changed
    /// meanwhile, and its next report says how.
    pub(super) fn session_up(&mut self, host: &HostName) {
        self.reported.remove(host);
    }

    /// `host`'s OVSDB reported its ports; whether that was the first report
    /// since its session connected.
    pub(super) fn reported(&mut self, host: &HostName, now: Instant) -> bool {
        self.first_awaited.remove(host);
        self.cross_checked
            .insert(host.clone(), now + CROSS_CHECK_WAIT);
        self.reported.insert(host.clone())
    }

    /// `host` is no longer managed.
    pub(super) fn forget(&mut self, host: &HostName) {
        self.reported.remove(host);
        self.first_awaited.remove(host);
        self.cross_checked.remove(host);
    }

    /// Ends the waits that are over at `now`; the hosts no longer waited
    /// for, whose first report never came, and whether anything changed.
    pub(super) fn tick(&mut self, now: Instant) -> (Vec<HostName>, bool) {
        let before = self.cross_checked.len();
        self.cross_checked.retain(|_, until| now < *until);
        let mut changed = self.cross_checked.len() != before;
        let given_up = if now >= self.first_deadline && !self.first_awaited.is_empty() {
            changed = true;
            std::mem::take(&mut self.first_awaited)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        (given_up, changed)
    }

    /// Why `host`'s switch, holding `installed` and reporting `ports`, must
    /// be left as it is; `None` when its tables may be planned. Only a
    /// whole plan (`whole`) can delete a port's classification, so only it
    /// is checked against the switch's ports.
    pub(super) fn incomplete(
        &self,
        topology: &Topology,
        host: &HostName,
        ports: &BTreeMap<u32, Port>,
        installed: &Installed,
        whole: bool,
    ) -> Option<Incomplete> {
        if !self.reported.contains(host) {
            return Some(Incomplete::OwnPorts);
        }
        let others: Vec<HostName> = self
            .first_awaited
            .iter()
            .filter(|h| *h != host)
            .cloned()
            .collect();
        if !others.is_empty() {
            return Some(Incomplete::FirstReports(others));
        }
        if !whole || !self.cross_checked.contains_key(host) {
            return None;
        }
        let unreported: Vec<u32> = ports
            .keys()
            .copied()
            .filter(|&p| topology.vm_port(host, p).is_none())
            .filter(|&p| installed.contains(vm_port_classifier(p).key_ref()))
            .collect();
        (!unreported.is_empty()).then_some(Incomplete::UnreportedPorts(unreported))
    }

    /// Whether `host`'s tables may be compiled ahead of its switch: what
    /// [`Self::incomplete`] asks that does not need the switch.
    pub(super) fn complete_without_switch(&self, host: &HostName) -> bool {
        self.reported.contains(host) && self.first_awaited.iter().all(|h| h == host)
    }
}
