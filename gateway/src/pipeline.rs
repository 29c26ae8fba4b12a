//! The flow table of an IaaS gateway's own bridge, as a pure function of
//! its plan: which port is the trunk to the data center's LAN, and for each
//! VI its WAN port and the operator's VLANs. No I/O.
//!
//! One table (table 0):
//!
//! | priority | match                                          | actions                 |
//! |----------|------------------------------------------------|-------------------------|
//! | 300      | trunk, VLAN of VI v, ARP or RARP               | WAN port of v, CONTROLLER |
//! | 200      | trunk, VLAN of VI v                            | WAN port of v           |
//! | 200      | WAN port of VI v, VLAN of v                    | trunk                   |
//! | 1        | trunk; each WAN port; the foreign-key port     | drop (counted per port) |
//! | 0        | anything                                       | drop                    |
//!
//! Frames keep their 802.1Q tag both ways: no flow pushes, pops or rewrites
//! one, so the VI, not the tag, tells two operators' equal VLAN ids apart.
//! No flow outputs to a WAN port what came from one (split horizon). ARP
//! and RARP from the trunk also go to the OpenFlow connection whole
//! (`max_len` = no buffer), tag included, for the gateway to snoop.
//!
//! A VLAN range is matched with masks, not one flow per VLAN id: a range
//! splits into at most 22 aligned blocks of `vlan_vid/mask` (1-4094 takes
//! 22), so a VI costs a few dozen flows where per-id matching would cost
//! up to 16 376 (4 094 ids, four flows each).
//!
//! Flows are the controller's [`Flow`]s: canonical match, and a cookie
//! hashed from the instructions with Iris's tag, so a table computed again
//! after a restart is the same table and the reconciler sends nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use iris_controller::switch_state::{Flow, SwitchState};
use ofp::action::Action;
use ofp::instruction::Instruction;
use ofp::oxm::{Match, OxmField, OFPVID_NONE, OFPVID_PRESENT};

/// Snooped frames: ARP and RARP from the trunk, forwarded and sent up.
pub const PRIORITY_SNOOP: u16 = 300;
/// A VI's frames between the trunk and its WAN port.
pub const PRIORITY_FORWARD: u16 = 200;
/// What a port sent outside every range it may carry; counted per port.
pub const PRIORITY_PORT_DROP: u16 = 1;
/// Everything else.
pub const PRIORITY_DROP: u16 = 0;

/// The table every flow is in.
pub const TABLE: u8 = 0;

const ETH_TYPE_ARP: u16 = 0x0806;
const ETH_TYPE_RARP: u16 = 0x8035;

/// Highest VLAN id a tag may carry (4095 is reserved).
pub const MAX_VID: u16 = 4094;

/// The VLANs of one VI on the trunk: untagged frames, and VLAN ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VlanSet {
    untagged: bool,
    /// Disjoint, sorted, non-adjacent inclusive ranges within 1..=4094.
    ranges: Vec<(u16, u16)>,
}

impl VlanSet {
    /// No VLAN at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set with untagged frames.
    pub fn with_untagged(mut self) -> Self {
        self.untagged = true;
        self
    }

    /// The set with VLAN ids `first..=last` added.
    pub fn with_range(mut self, first: u16, last: u16) -> Result<Self, VlanError> {
        if first == 0 || last > MAX_VID || first > last {
            return Err(VlanError(format!(
                "{first}-{last} is not a VLAN range: write FIRST-LAST with 1 <= FIRST <= LAST <= \
                 {MAX_VID}"
            )));
        }
        self.ranges.push((first, last));
        self.ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(self.ranges.len());
        for (a, b) in self.ranges.drain(..) {
            match merged.last_mut() {
                Some((_, end)) if a <= end.saturating_add(1) => *end = (*end).max(b),
                _ => merged.push((a, b)),
            }
        }
        self.ranges = merged;
        Ok(self)
    }

    /// Parses config entries such as `["100-199", "250", "untagged"]`.
    pub fn from_entries<S: AsRef<str>>(entries: &[S]) -> Result<Self, VlanError> {
        entries
            .iter()
            .try_fold(Self::new(), |set, e| set.with_entry(e.as_ref()))
    }

    fn with_entry(self, entry: &str) -> Result<Self, VlanError> {
        let entry = entry.trim();
        if entry == "untagged" {
            return Ok(self.with_untagged());
        }
        let number = |s: &str| {
            s.trim().parse::<u16>().map_err(|_| {
                VlanError(format!(
                    "{entry:?} is not a VLAN: write \"untagged\", an id (1-{MAX_VID}) or a \
                     range FIRST-LAST"
                ))
            })
        };
        let (first, last) = match entry.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(entry)?;
                (n, n)
            }
        };
        self.with_range(first, last)
    }

    pub fn untagged(&self) -> bool {
        self.untagged
    }

    /// The VLAN id ranges, sorted and merged.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        !self.untagged && self.ranges.is_empty()
    }

    /// Whether `vlan` (as the registry keys it) is in the set.
    pub fn contains_vlan(&self, vlan: iris_controller::model::Vlan) -> bool {
        match vlan {
            iris_controller::model::Vlan::Untagged => self.untagged,
            iris_controller::model::Vlan::Tagged(v) => self.contains(Some(v)),
        }
    }

    /// Whether a frame with this VLAN id (`None`: untagged) is in the set.
    pub fn contains(&self, vid: Option<u16>) -> bool {
        match vid {
            None => self.untagged,
            Some(v) => self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&v)),
        }
    }

    /// The `vlan_vid` matches (value, mask) that together match exactly
    /// this set: `OFPVID_NONE` for untagged frames, and each range as
    /// aligned blocks with `OFPVID_PRESENT` in value and mask.
    pub fn matches(&self) -> Vec<(u16, Option<u16>)> {
        let mut out = Vec::new();
        if self.untagged {
            out.push((OFPVID_NONE, None));
        }
        for &(first, last) in &self.ranges {
            for (base, mask) in aligned_blocks(first, last) {
                let mask = OFPVID_PRESENT | mask;
                let full = mask == 0x1fff;
                out.push((OFPVID_PRESENT | base, (!full).then_some(mask)));
            }
        }
        out
    }

    /// Some VLAN both sets hold, if any.
    fn overlap(&self, other: &Self) -> Option<Option<u16>> {
        if self.untagged && other.untagged {
            return Some(None);
        }
        self.ranges.iter().find_map(|&(a, b)| {
            other
                .ranges
                .iter()
                .find(|&&(c, d)| a <= d && c <= b)
                .map(|&(c, _)| Some(a.max(c)))
        })
    }
}

impl fmt::Display for VlanSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        if self.untagged {
            parts.push("untagged".into());
        }
        f.write_str(&parts.join(","))
    }
}

impl FromStr for VlanSet {
    type Err = VlanError;
    /// A comma-separated list of entries, as [`VlanSet::from_entries`] takes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_entries(&s.split(',').collect::<Vec<_>>())
    }
}

/// A VLAN entry that cannot be read; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanError(pub String);

impl fmt::Display for VlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VlanError {}

/// `first..=last` as the fewest (base, mask) blocks of 12-bit ids, each
/// `base` aligned to its size: the usual split of a range into prefixes.
fn aligned_blocks(first: u16, last: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut at, end) = (u32::from(first), u32::from(last) + 1);
    while at < end {
        // The largest block that starts at `at` (aligned) and fits.
        let mut size = if at == 0 {
            1 << 12
        } else {
            at & at.wrapping_neg()
        };
        while at + size > end {
            size /= 2;
        }
        let mask = 0x0fff & !(size - 1);
        out.push((at as u16, mask as u16));
        at += size;
    }
    out
}

/// One VI's path through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViPath {
    pub vi: u32,
    /// The OpenFlow port number of its WAN port.
    pub wan_ofport: u32,
    /// The operator's VLANs of this VI on the trunk.
    pub vlans: VlanSet,
}

/// What the bridge's flow table is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelinePlan {
    pub trunk_ofport: u32,
    pub vis: Vec<ViPath>,
    /// The port where GRE packets with a key of no VI arrive (a flow-based
    /// port, `key=flow`): only dropped, by a flow of its own that counts
    /// them.
    pub foreign_ofport: Option<u32>,
}

/// A plan the table cannot be built from: the configuration (or the
/// ports' numbering) is wrong; nothing is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineError {
    /// Two VIs claim one VLAN of the trunk: whose frame it is would be a
    /// guess.
    Overlap { a: u32, b: u32, vlan: Option<u16> },
    /// Two VIs, or a VI and the trunk, on one port.
    SharedPort { ofport: u32, what: String },
    /// A VI with no VLAN would carry nothing.
    NoVlans { vi: u32 },
    /// An OpenFlow port number that names no real port.
    BadPort { ofport: u32 },
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overlap { a, b, vlan } => {
                let vlan = vlan.map_or_else(|| "untagged frames".into(), |v| format!("VLAN {v}"));
                write!(
                    f,
                    "VIs {a} and {b} both claim {vlan} on the trunk; give each VI its own VLANs"
                )
            }
            Self::SharedPort { ofport, what } => {
                write!(
                    f,
                    "OpenFlow port {ofport} is {what}; each needs its own port"
                )
            }
            Self::NoVlans { vi } => write!(
                f,
                "VI {vi} has no VLAN on the trunk; list its VLANs (\"100-199\", \"untagged\")"
            ),
            Self::BadPort { ofport } => write!(
                f,
                "OpenFlow port number {ofport} is not a port (1-{})",
                ofp::message::port_no::MAX
            ),
        }
    }
}

impl std::error::Error for PipelineError {}

fn check(plan: &PipelinePlan) -> Result<(), PipelineError> {
    let mut ports: BTreeMap<u32, String> = BTreeMap::new();
    let mut claim = |ofport: u32, what: String| {
        if ofport == 0 || ofport > ofp::message::port_no::MAX {
            return Err(PipelineError::BadPort { ofport });
        }
        match ports.insert(ofport, what.clone()) {
            Some(before) => Err(PipelineError::SharedPort {
                ofport,
                what: format!("both {before} and {what}"),
            }),
            None => Ok(()),
        }
    };
    claim(plan.trunk_ofport, "the trunk".into())?;
    if let Some(port) = plan.foreign_ofport {
        claim(port, "the foreign-key port".into())?;
    }
    for (i, p) in plan.vis.iter().enumerate() {
        claim(p.wan_ofport, format!("the WAN port of VI {}", p.vi))?;
        if p.vlans.is_empty() {
            return Err(PipelineError::NoVlans { vi: p.vi });
        }
        for q in &plan.vis[..i] {
            if let Some(vlan) = q.vlans.overlap(&p.vlans) {
                return Err(PipelineError::Overlap {
                    a: q.vi,
                    b: p.vi,
                    vlan,
                });
            }
        }
    }
    Ok(())
}

fn apply(actions: Vec<Action>) -> Vec<Instruction> {
    if actions.is_empty() {
        Vec::new()
    } else {
        vec![Instruction::ApplyActions(actions)]
    }
}

fn flow(priority: u16, fields: Vec<OxmField>, actions: Vec<Action>) -> Flow {
    Flow::new(TABLE, priority, Match { fields }, apply(actions))
}

/// The bridge's whole flow table for `plan`.
pub fn table(plan: &PipelinePlan) -> Result<SwitchState, PipelineError> {
    check(plan)?;
    let trunk = plan.trunk_ofport;
    let mut state = SwitchState::default();
    let mut add = |f: Flow| {
        state.insert_flow(f);
    };
    for p in &plan.vis {
        let wan = p.wan_ofport;
        for (vid, mask) in p.vlans.matches() {
            let vlan = OxmField::VlanVid(vid, mask);
            for eth_type in [ETH_TYPE_ARP, ETH_TYPE_RARP] {
                add(flow(
                    PRIORITY_SNOOP,
                    vec![
                        OxmField::InPort(trunk),
                        vlan.clone(),
                        OxmField::EthType(eth_type),
                    ],
                    vec![Action::output(wan), Action::to_controller()],
                ));
            }
            add(flow(
                PRIORITY_FORWARD,
                vec![OxmField::InPort(trunk), vlan.clone()],
                vec![Action::output(wan)],
            ));
            add(flow(
                PRIORITY_FORWARD,
                vec![OxmField::InPort(wan), vlan],
                vec![Action::output(trunk)],
            ));
        }
        add(flow(
            PRIORITY_PORT_DROP,
            vec![OxmField::InPort(wan)],
            Vec::new(),
        ));
    }
    for port in std::iter::once(trunk).chain(plan.foreign_ofport) {
        add(flow(
            PRIORITY_PORT_DROP,
            vec![OxmField::InPort(port)],
            Vec::new(),
        ));
    }
    add(flow(PRIORITY_DROP, Vec::new(), Vec::new()));
    Ok(state)
}

#[cfg(test)]
mod tests;
