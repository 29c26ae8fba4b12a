//! A switch's flow and group tables as data: what the compiler wants, what a
//! flow dump says is there, what the simulated switch holds.
//!
//! A flow's identity is (table, priority, match). Matches are kept in one
//! canonical form (fields sorted, full masks dropped, Nicira `tun_id` spelled
//! as OXM `tunnel_id`) because Open vSwitch dumps a flow's fields in its own
//! order and encoding, not in the order they were sent. Instructions are not
//! compared: a flow's cookie is a hash of the instructions it was compiled
//! with, so identity plus cookie says whether a flow is what Iris wants.
//!
//! That is also all the controller keeps of what a switch holds
//! ([`Installed`]): each flow's identity, with its match as wire bytes, and
//! its cookie. A decoded [`Flow`] with its instructions costs about 1 KiB;
//! an installed entry about a tenth of that, which matters at hundreds of
//! thousands of flows per switch.

use ofp::action::Action;
use ofp::codec::Reader;
use ofp::instruction::{emit_instructions, Instruction};
use ofp::message::{group_no, port_no, Bucket, GroupType};
use ofp::multipart::{FlowStats, FlowStatsView, GroupDesc};
use ofp::oxm::{Match, OxmField};
use ofp::DecodeError;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

/// The top 16 bits of every cookie Iris writes ("IR"); the rest is the
/// instruction hash. A flow with other top bits is not Iris's.
pub const COOKIE_TAG: u64 = 0x4952_0000_0000_0000;
/// Which bits of a cookie hold [`COOKIE_TAG`].
pub const COOKIE_TAG_MASK: u64 = 0xffff_0000_0000_0000;

/// The cookie of a flow with these instructions: [`COOKIE_TAG`] and a 48-bit
/// FNV-1a hash of their wire encoding, stable across builds and restarts.
pub fn cookie_for(instructions: &[Instruction]) -> u64 {
    let mut wire = Vec::with_capacity(64);
    emit_instructions(instructions, &mut wire);
    let hash = wire.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    COOKIE_TAG | (hash & !COOKIE_TAG_MASK)
}

/// Whether a flow with this cookie was written by Iris.
pub fn is_iris_cookie(cookie: u64) -> bool {
    cookie & COOKIE_TAG_MASK == COOKIE_TAG
}

/// A match in canonical form: fields sorted by (class, field), Nicira
/// `tun_id` as OXM `tunnel_id`, all-ones masks dropped, all-zero masks
/// dropping their field, values cut to their mask. Two matches a switch
/// treats as the same flow have the same canonical form.
pub fn canonical_match(m: &Match) -> Match {
    let mut fields: Vec<OxmField> = m.fields.iter().filter_map(canonical_field).collect();
    fields.sort_by_key(OxmField::id);
    Match { fields }
}

/// Drops a full mask and masks the value; `None` for an all-zero mask.
fn masked<T: Copy + PartialEq>(
    (v, m): (T, Option<T>),
    full: T,
    zero: T,
    and: impl Fn(T, T) -> T,
) -> Option<(T, Option<T>)> {
    match m {
        None => Some((v, None)),
        Some(m) if m == full => Some((v, None)),
        Some(m) if m == zero => None,
        Some(m) => Some((and(v, m), Some(m))),
    }
}

fn mac(v: &[u8; 6], m: &Option<[u8; 6]>) -> Option<([u8; 6], Option<[u8; 6]>)> {
    masked((*v, *m), [0xff; 6], [0; 6], |v, m| {
        core::array::from_fn(|i| v[i] & m[i])
    })
}

fn ip(v: &Ipv4Addr, m: &Option<Ipv4Addr>) -> Option<(Ipv4Addr, Option<Ipv4Addr>)> {
    let and = |v: Ipv4Addr, m: Ipv4Addr| Ipv4Addr::from(u32::from(v) & u32::from(m));
    masked((*v, *m), Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED, and)
}

fn int<T>(v: &T, m: &Option<T>) -> Option<(T, Option<T>)>
where
    T: Copy + PartialEq + std::ops::BitAnd<Output = T> + std::ops::Not<Output = T> + Default,
{
    masked((*v, *m), !T::default(), T::default(), |v, m| v & m)
}

/// Rebuilds a field from its canonical value and mask.
fn rebuild<T>(
    make: impl Fn(T, Option<T>) -> OxmField,
    vm: Option<(T, Option<T>)>,
) -> Option<OxmField> {
    vm.map(|(v, m)| make(v, m))
}

fn canonical_field(f: &OxmField) -> Option<OxmField> {
    use OxmField as F;
    match f {
        F::TunnelId(v, m) | F::NxTunId(v, m) => rebuild(F::TunnelId, int(v, m)),
        F::Metadata(v, m) => rebuild(F::Metadata, int(v, m)),
        F::Reg(n, v, m) => rebuild(|v, m| F::Reg(*n, v, m), int(v, m)),
        // The VLAN id field has 13 meaningful bits (OFPVID_PRESENT and the id).
        F::VlanVid(v, m) => rebuild(
            F::VlanVid,
            masked((v & 0x1fff, m.map(|m| m & 0x1fff)), 0x1fff, 0, |v, m| v & m),
        ),
        F::EthDst(v, m) => rebuild(F::EthDst, mac(v, m)),
        F::EthSrc(v, m) => rebuild(F::EthSrc, mac(v, m)),
        F::ArpSha(v, m) => rebuild(F::ArpSha, mac(v, m)),
        F::ArpTha(v, m) => rebuild(F::ArpTha, mac(v, m)),
        F::ArpSpa(v, m) => rebuild(F::ArpSpa, ip(v, m)),
        F::ArpTpa(v, m) => rebuild(F::ArpTpa, ip(v, m)),
        F::Ipv4Src(v, m) => rebuild(F::Ipv4Src, ip(v, m)),
        F::Ipv4Dst(v, m) => rebuild(F::Ipv4Dst, ip(v, m)),
        other => Some(other.clone()),
    }
}

/// The widths of the fields whose exact match is already canonical as
/// sent: every field of Iris's own flows, so that a dump of them is put in
/// canonical form without decoding it. `None` for any other field.
fn exact_width(class: u16, field: u8) -> Option<usize> {
    use ofp::oxm::class::{NXM_1, OPENFLOW_BASIC};
    match (class, field) {
        // in_port, metadata, eth_dst, eth_src, eth_type, vlan_vid.
        (OPENFLOW_BASIC, 0) => Some(4),
        (OPENFLOW_BASIC, 2) => Some(8),
        (OPENFLOW_BASIC, 3 | 4) => Some(6),
        (OPENFLOW_BASIC, 5 | 6) => Some(2),
        // arp_op, arp_spa, arp_tpa, arp_sha, arp_tha.
        (OPENFLOW_BASIC, 21) => Some(2),
        (OPENFLOW_BASIC, 22 | 23) => Some(4),
        (OPENFLOW_BASIC, 24 | 25) => Some(6),
        // NXM_NX_REG0..15.
        (NXM_1, 0..=15) => Some(4),
        _ => None,
    }
}

/// The canonical wire form of an `ofp_match` whose OXM TLVs (`oxms`) are
/// all exact matches of fields [`exact_width`] knows, at their width, each
/// once, with a VLAN id in range: those TLVs sorted, under a match header.
/// That is what decoding, [`canonical_match`] and encoding would give, at a
/// fraction of the cost. `None` for anything else, which takes that path.
fn canonical_wire_of_exact(oxms: &[u8]) -> Option<Box<[u8]>> {
    let mut tlvs: Vec<(u32, &[u8])> = Vec::with_capacity(8);
    let mut rest = oxms;
    while !rest.is_empty() {
        let header = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let (class, field, has_mask) = (
            (header >> 16) as u16,
            (header >> 9) as u8 & 0x7f,
            header & 0x100 != 0,
        );
        let len = (header & 0xff) as usize;
        if has_mask || exact_width(class, field) != Some(len) {
            return None;
        }
        let tlv = rest.get(..4 + len)?;
        // OFPVID_PRESENT and a 12-bit id: anything above is refused by the
        // decoder, and masked off by canonical_match.
        if (class, field) == (ofp::oxm::class::OPENFLOW_BASIC, 6) && tlv[4] & 0xe0 != 0 {
            return None;
        }
        tlvs.push((header >> 9, tlv));
        rest = &rest[4 + len..];
    }
    tlvs.sort_unstable_by_key(|(id, _)| *id);
    if tlvs.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let len = 4 + tlvs.iter().map(|(_, t)| t.len()).sum::<usize>();
    let mut wire = Vec::with_capacity(len.div_ceil(8) * 8);
    wire.extend_from_slice(&ofp::oxm::OFPMT_OXM.to_be_bytes());
    wire.extend_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    for (_, t) in &tlvs {
        wire.extend_from_slice(t);
    }
    wire.resize(len.div_ceil(8) * 8, 0);
    Some(wire.into_boxed_slice())
}

/// A flow's identity: table, priority and canonical match (as wire bytes,
/// which gives a total order). Orders by table, then highest priority first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub table: u8,
    pub priority: u16,
    /// Boxed rather than a `Vec`: no spare capacity in the many keys kept.
    match_wire: Box<[u8]>,
}

impl FlowKey {
    fn new(table: u8, priority: u16, canonical: &Match) -> Self {
        let mut match_wire = Vec::with_capacity(64);
        canonical.emit(&mut match_wire);
        Self {
            table,
            priority,
            match_wire: match_wire.into_boxed_slice(),
        }
    }

    /// The identity of a flow a flow dump reports.
    pub fn of_stats(s: &FlowStats) -> Self {
        Self::new(s.table_id, s.priority, &canonical_match(&s.match_))
    }

    /// The identity of a flow a flow dump reports, read from the wire
    /// (the match decoded, the instructions not).
    pub fn of_view(v: &FlowStatsView<'_>) -> Result<Self, DecodeError> {
        let exact = (v.match_type() == ofp::oxm::OFPMT_OXM)
            .then(|| canonical_wire_of_exact(v.match_bytes()))
            .flatten();
        if let Some(match_wire) = exact {
            return Ok(Self {
                table: v.table_id(),
                priority: v.priority(),
                match_wire,
            });
        }
        Ok(Self::new(
            v.table_id(),
            v.priority(),
            &canonical_match(&v.match_()?),
        ))
    }

    /// The canonical match back from its wire bytes; `None` only if they
    /// were not written by [`FlowKey::new`].
    pub fn match_(&self) -> Option<Match> {
        Match::parse(&mut Reader::new(&self.match_wire, "flow key")).ok()
    }
}

impl Ord for FlowKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.table
            .cmp(&other.table)
            .then(other.priority.cmp(&self.priority))
            .then_with(|| self.match_wire.cmp(&other.match_wire))
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One flow entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub table: u8,
    pub priority: u16,
    /// Always canonical ([`canonical_match`]).
    pub match_: Match,
    pub instructions: Vec<Instruction>,
    pub cookie: u64,
}

impl Flow {
    /// A flow as Iris compiles it: canonical match, cookie from the
    /// instructions.
    pub fn new(table: u8, priority: u16, match_: Match, instructions: Vec<Instruction>) -> Self {
        Self {
            table,
            priority,
            match_: canonical_match(&match_),
            cookie: cookie_for(&instructions),
            instructions,
        }
    }

    /// A flow as a flow dump reports it.
    pub fn from_stats(s: &FlowStats) -> Self {
        Self {
            table: s.table_id,
            priority: s.priority,
            match_: canonical_match(&s.match_),
            instructions: s.instructions.clone(),
            cookie: s.cookie,
        }
    }

    pub fn key(&self) -> FlowKey {
        FlowKey::new(self.table, self.priority, &self.match_)
    }

    /// Group ids this flow's apply-actions send to.
    pub fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.instructions
            .iter()
            .flat_map(|i| match i {
                Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.as_slice(),
                _ => &[],
            })
            .filter_map(|a| match a {
                Action::Group(g) => Some(*g),
                _ => None,
            })
    }
}

impl fmt::Display for Flow {
    /// `ovs-ofctl dump-flows` style, for logs and test failures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cookie={:#x}, table={}, priority={}",
            self.cookie, self.table, self.priority
        )?;
        if !self.match_.is_empty() {
            write!(f, ",{}", self.match_)?;
        }
        write!(
            f,
            " {}",
            ofp::instruction::InstructionList(&self.instructions)
        )
    }
}

/// One group entry. Buckets of ALL groups are kept with weight 0 and no
/// watch port/group, which is how a switch reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub group_id: u32,
    pub group_type: GroupType,
    pub buckets: Vec<Bucket>,
}

impl Group {
    /// An ALL group whose buckets run these action lists.
    pub fn all(group_id: u32, buckets: Vec<Vec<Action>>) -> Self {
        Self {
            group_id,
            group_type: GroupType::All,
            buckets: buckets.into_iter().map(bucket).collect(),
        }
    }

    /// A group as a GROUP_DESC reply reports it, normalised like
    /// [`Group::all`] builds them.
    pub fn from_desc(d: &GroupDesc) -> Self {
        Self::normalised(d.group_id, d.group_type, &d.buckets)
    }

    /// Weight and liveness only mean something for select and fast-failover
    /// groups; elsewhere a switch may report anything there.
    pub fn normalised(group_id: u32, group_type: GroupType, buckets: &[Bucket]) -> Self {
        let buckets = buckets
            .iter()
            .map(|b| match group_type {
                GroupType::All | GroupType::Indirect => bucket(b.actions.clone()),
                _ => b.clone(),
            })
            .collect();
        Self {
            group_id,
            group_type,
            buckets,
        }
    }
}

fn bucket(actions: Vec<Action>) -> Bucket {
    Bucket {
        weight: 0,
        watch_port: port_no::ANY,
        watch_group: group_no::ANY,
        actions,
    }
}

/// What a switch is known to hold, compactly: per flow its identity and
/// cookie (which stands for its instructions), and its groups whole (a
/// switch has a few). Enough to decide what to add, replace and delete,
/// and to write the deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    flows: HashMap<FlowKey, u64, BuildKeyHasher>,
    pub groups: BTreeMap<u32, Group>,
}

/// Hashes flow keys eight bytes at a time (the multiply-rotate step of
/// rustc's FxHash). SipHash took a tenth of a restart's reconciliation;
/// its resistance to chosen collisions buys nothing here, where keys are
/// the controller's own flows and the ones its switches report.
#[derive(Debug, Clone, Copy, Default)]
struct BuildKeyHasher;

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

#[derive(Debug)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    /// The multiply step leaves a word's high bytes out of the product's
    /// low bits, which pick the bucket: a MAC that lands in the high bytes
    /// of a key's last word would put every key of a table on one probe
    /// sequence. A finaliser (MurmurHash3's fmix64) spreads every bit.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl Installed {
    /// Room for `flows` flows without growing.
    pub fn with_capacity(flows: usize) -> Self {
        Self {
            flows: HashMap::with_capacity_and_hasher(flows, BuildKeyHasher),
            groups: BTreeMap::new(),
        }
    }

    /// What a switch holds, from its decoded FLOW_STATS and GROUP_DESC
    /// replies. A session builds the same from the wire, entry by entry
    /// ([`FlowKey::of_view`]), without decoding instructions.
    pub fn from_dump(flows: &[FlowStats], groups: &[GroupDesc]) -> Self {
        let mut s = Self::with_capacity(flows.len());
        for f in flows {
            s.insert_flow(FlowKey::of_stats(f), f.cookie);
        }
        for g in groups {
            s.groups.insert(g.group_id, Group::from_desc(g));
        }
        s
    }

    /// The compact form of `state`.
    pub fn of(state: &SwitchState) -> Self {
        Self {
            flows: state
                .flows
                .iter()
                .map(|(k, f)| (k.clone(), f.cookie))
                .collect(),
            groups: state.groups.clone(),
        }
    }

    /// Records a flow, replacing one with the same identity.
    pub fn insert_flow(&mut self, key: FlowKey, cookie: u64) {
        self.flows.insert(key, cookie);
    }

    /// The cookie of the flow with this identity, if there is one.
    pub fn cookie(&self, key: &FlowKey) -> Option<u64> {
        self.flows.get(key).copied()
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        self.flows.contains_key(key)
    }

    /// Every flow's identity and cookie, in no particular order.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, u64)> {
        self.flows.iter().map(|(k, c)| (k, *c))
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The held flows at the identities of `like` (compiled flows), each
    /// as compiled but with the cookie the switch holds: what
    /// [`crate::reconciler::reconcile`] needs of them, which compares
    /// cookies, not instructions.
    pub fn flows_at<'a>(&self, like: impl IntoIterator<Item = &'a Flow>) -> SwitchState {
        let mut part = SwitchState::default();
        for f in like {
            let key = f.key();
            if let Some(cookie) = self.cookie(&key) {
                part.flows.insert(
                    key,
                    Flow {
                        cookie,
                        ..f.clone()
                    },
                );
            }
        }
        part
    }

    /// What reconciling `part` (flows of this state) to `with` leaves: the
    /// flows of `part` replaced by those of `with`.
    pub fn replace_flows(&mut self, part: &SwitchState, with: &SwitchState) {
        for k in part.flows.keys() {
            self.flows.remove(k);
        }
        for (k, f) in &with.flows {
            self.flows.insert(k.clone(), f.cookie);
        }
    }
}

/// A switch's flows and groups, each keyed by identity, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchState {
    pub flows: BTreeMap<FlowKey, Flow>,
    pub groups: BTreeMap<u32, Group>,
}

impl SwitchState {
    /// What a switch holds, from its FLOW_STATS and GROUP_DESC replies.
    pub fn from_dump(flows: &[FlowStats], groups: &[GroupDesc]) -> Self {
        let mut s = Self::default();
        for f in flows {
            s.insert_flow(Flow::from_stats(f));
        }
        for g in groups {
            s.insert_group(Group::from_desc(g));
        }
        s
    }

    /// Adds a flow, replacing one with the same identity (as an OpenFlow
    /// ADD does).
    pub fn insert_flow(&mut self, flow: Flow) -> Option<Flow> {
        self.flows.insert(flow.key(), flow)
    }

    pub fn insert_group(&mut self, group: Group) -> Option<Group> {
        self.groups.insert(group.group_id, group)
    }

    /// The flows of this state that have one of `keys` (no groups).
    pub fn flows_at<'a>(&self, keys: impl IntoIterator<Item = &'a FlowKey>) -> SwitchState {
        let flows = keys
            .into_iter()
            .filter_map(|k| Some((k.clone(), self.flows.get(k)?.clone())))
            .collect();
        SwitchState {
            flows,
            groups: BTreeMap::new(),
        }
    }

    /// What reconciling `part` (flows of this state) to `with` leaves: the
    /// flows of `part` replaced by those of `with`.
    pub fn replace_flows(&mut self, part: &SwitchState, with: &SwitchState) {
        for k in part.flows.keys() {
            self.flows.remove(k);
        }
        for (k, f) in &with.flows {
            self.flows.insert(k.clone(), f.clone());
        }
    }

    /// The flows of one table, highest priority first.
    pub fn table(&self, table: u8) -> impl Iterator<Item = &Flow> {
        self.flows
            .iter()
            .skip_while(move |(k, _)| k.table < table)
            .take_while(move |(k, _)| k.table == table)
            .map(|(_, f)| f)
    }
}

impl fmt::Display for SwitchState {
    /// One flow per line, then one group per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for flow in self.flows.values() {
            writeln!(f, "{flow}")?;
        }
        for g in self.groups.values() {
            write!(f, "group_id={},type={}", g.group_id, g.group_type)?;
            for b in &g.buckets {
                write!(f, ",bucket=actions={}", ofp::action::ActionList(&b.actions))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ofp::multipart::FlowStatsReplyView;
    use ofp::oxm::OFPVID_PRESENT;
    use proptest::prelude::*;
    use std::hash::BuildHasher;

    /// One OXM TLV: Iris's usual fields at their width, some with a mask, a
    /// wrong width, an out-of-range VLAN id or a field the fast path leaves
    /// to the decoder (Nicira tun_id, ip_proto).
    fn tlv() -> impl Strategy<Value = Vec<u8>> {
        let fields = prop_oneof![
            Just((0x8000u16, 0u8, 4usize)),
            Just((0x8000, 2, 8)),
            Just((0x8000, 3, 6)),
            Just((0x8000, 4, 6)),
            Just((0x8000, 5, 2)),
            Just((0x8000, 6, 2)),
            Just((0x8000, 21, 2)),
            Just((0x8000, 23, 4)),
            Just((0x0001, 6, 4)),
            Just((0x0001, 16, 8)),
            Just((0x8000, 10, 1)),
        ];
        (
            fields,
            prop::bool::weighted(0.15),
            0u8..8,
            any::<[u8; 16]>(),
        )
            .prop_map(|((class, field, width), masked, oddity, bytes)| {
                let width = if oddity == 0 { width + 1 } else { width };
                // A mask bit on a TLV only as long as the value (oddity 2).
                let len = if masked && oddity != 2 {
                    2 * width
                } else {
                    width
                };
                let header = u32::from(class) << 16
                    | u32::from(field) << 9
                    | u32::from(masked) << 8
                    | len as u32;
                let mut t = header.to_be_bytes().to_vec();
                t.extend(bytes.iter().cycle().take(len));
                if (class, field) == (0x8000, 6) {
                    // A VLAN id in range, as a switch sends it, or not.
                    t[4] = if oddity == 1 {
                        t[4] | 0x80
                    } else {
                        t[4] & 0x1f
                    };
                }
                t
            })
    }

    /// A one-entry OFPMP_FLOW reply whose match holds `oxms`.
    fn reply_with_match(match_type: u16, oxms: &[u8]) -> Vec<u8> {
        let match_len = 4 + oxms.len();
        let padded = match_len.div_ceil(8) * 8;
        let mut entry = Vec::new();
        entry.extend(((48 + padded) as u16).to_be_bytes());
        entry.extend([3, 0]); // table, pad
        entry.extend([0u8; 8]); // duration
        entry.extend(100u16.to_be_bytes()); // priority
        entry.extend([0u8; 10]); // timeouts, flags, pad
        entry.extend(COOKIE_TAG.to_be_bytes());
        entry.extend([0u8; 16]); // counters
        entry.extend(match_type.to_be_bytes());
        entry.extend((match_len as u16).to_be_bytes());
        entry.extend(oxms);
        entry.resize(48 + padded, 0);
        let mut msg = vec![4, 19, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend(entry);
        let len = msg.len() as u16;
        msg[2..4].copy_from_slice(&len.to_be_bytes());
        msg
    }

    proptest! {
        // Cheap cases, and the odd TLVs are rare: many of them.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn a_dumped_match_read_from_its_tlvs_has_the_identity_decoding_gives(
            tlvs in proptest::collection::vec(tlv(), 0..6),
            oxm_type in any::<bool>(),
        ) {
            let oxms = tlvs.concat();
            let msg = reply_with_match(if oxm_type { 1 } else { 0 }, &oxms);
            let view = FlowStatsReplyView::new_checked(&msg).unwrap();
            let entry = view.entries().next().unwrap().unwrap();
            let decoded = entry
                .match_()
                .map(|m| FlowKey::new(entry.table_id(), entry.priority(), &canonical_match(&m)));
            match (FlowKey::of_view(&entry), decoded) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{:?} against {:?}", a, b),
            }
        }
    }

    #[test]
    fn keys_that_differ_in_a_words_high_bytes_spread_over_buckets() {
        // Table-3 keys (reg6, metadata, eth_dst) whose MACs differ only in
        // their middle bytes: without a finaliser, where those bytes fall in
        // a word decides whether the bucket bits see them at all.
        let buckets: std::collections::BTreeSet<u64> = (0..4096u32)
            .map(|i| {
                let [_, _, a, b] = i.to_be_bytes();
                let m = Match::new()
                    .reg(6, 0)
                    .metadata(1)
                    .eth_dst([2, 0, a, b, 0, 1]);
                let key = FlowKey::new(3, 100, &canonical_match(&m));
                BuildKeyHasher.hash_one(&key) & 0xfff
            })
            .collect();
        assert!(buckets.len() > 2048, "{} buckets of 4096", buckets.len());
    }

    #[test]
    fn canonical_form_ignores_order_encoding_and_full_masks() {
        let a = Match::new()
            .nx_tun_id(0x42)
            .in_port(7)
            .reg(6, 1)
            .metadata_masked(3, u64::MAX)
            .eth_dst_masked([1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]);
        let b = Match::new()
            .eth_dst_masked([1, 2, 3, 4, 5, 6], [1, 0, 0, 0, 0, 0])
            .metadata(3)
            .in_port(7)
            .tunnel_id(0x42)
            .reg_masked(6, 1, u32::MAX)
            .vlan_vid_masked(0x1234, 0);
        assert_eq!(canonical_match(&a), canonical_match(&b));
        let key = |m: &Match| FlowKey::new(3, 50, &canonical_match(m));
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&a.clone().metadata(4)));
        // A VLAN mask over all 13 bits is an exact match.
        assert_eq!(
            canonical_match(&Match::new().vlan_vid_masked(OFPVID_PRESENT | 10, 0xffff)),
            Match::new().vlan_vid(10)
        );
    }

    #[test]
    fn keys_order_by_table_then_highest_priority() {
        let m = Match::new();
        let mut keys = [
            FlowKey::new(1, 10, &m),
            FlowKey::new(0, 0, &m),
            FlowKey::new(1, 300, &m),
            FlowKey::new(0, 100, &m),
        ];
        keys.sort();
        let order: Vec<(u8, u16)> = keys.iter().map(|k| (k.table, k.priority)).collect();
        assert_eq!(order, [(0, 100), (0, 0), (1, 300), (1, 10)]);
    }

    #[test]
    fn cookies_follow_instructions_and_carry_the_tag() {
        let out = |p| vec![Instruction::ApplyActions(vec![Action::output(p)])];
        let (a, b) = (cookie_for(&out(1)), cookie_for(&out(2)));
        assert_ne!(a, b);
        assert_eq!(a, cookie_for(&out(1)));
        assert!(is_iris_cookie(a) && is_iris_cookie(b));
        assert!(!is_iris_cookie(0) && !is_iris_cookie(0x5));
        // The hash is fixed: a cookie written by an earlier run must still
        // be recognised after an upgrade.
        assert_eq!(
            cookie_for(&[]),
            COOKIE_TAG | (0xcbf2_9ce4_8422_2325 & !COOKIE_TAG_MASK)
        );
    }

    #[test]
    fn a_dumped_flow_is_found_by_its_compiled_identity() {
        let out = vec![Instruction::ApplyActions(vec![Action::output(2)])];
        let compiled = Flow::new(0, 100, Match::new().in_port(7).tunnel_id(0x42), out.clone());
        // Open vSwitch reports the fields in its own order and encoding.
        let dumped = FlowStats {
            table_id: 0,
            duration_sec: 5,
            duration_nsec: 0,
            priority: 100,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            cookie: compiled.cookie,
            packet_count: 3,
            byte_count: 180,
            match_: Match::new()
                .nx_tun_id(0x42)
                .in_port(7)
                .metadata_masked(0, 0),
            instructions: out,
        };
        let held = Installed::from_dump(&[dumped], &[]);
        assert_eq!(held.cookie(&compiled.key()), Some(compiled.cookie));
        assert_eq!(held, Installed::of(&compiled_state(compiled.clone())));
        // The kept match is the canonical one, for deleting the flow.
        let (key, _) = held.flows().next().unwrap();
        assert_eq!(key.match_(), Some(compiled.match_));
    }

    fn compiled_state(flow: Flow) -> SwitchState {
        let mut s = SwitchState::default();
        s.insert_flow(flow);
        s
    }

    #[test]
    fn dumped_groups_compare_equal_whatever_the_weights() {
        let g = Group::all(6, vec![vec![Action::output(1)]]);
        let dumped = GroupDesc {
            group_type: GroupType::All,
            group_id: 6,
            buckets: vec![Bucket {
                weight: 1,
                watch_port: 3,
                watch_group: 4,
                actions: vec![Action::output(1)],
            }],
        };
        assert_eq!(Group::from_desc(&dumped), g);
    }
}
