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
//! its cookie, packed into a few flat allocations per switch. A decoded
//! [`Flow`] with its instructions costs about 1 KiB; an installed flow
//! about 60 bytes, which matters at hundreds of thousands of flows per
//! switch.

use hashbrown::hash_table::{self, HashTable};
use ofp::action::Action;
use ofp::codec::Reader;
use ofp::instruction::{emit_instructions, Instruction};
use ofp::message::{group_no, port_no, Bucket, GroupType};
use ofp::multipart::{FlowStats, FlowStatsView, GroupDesc};
use ofp::oxm::{Match, OxmField, OxmIter};
use ofp::DecodeError;
use std::cmp::Ordering;
use std::collections::BTreeMap;
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

/// The canonical fields of an `ofp_match` whose OXM TLVs (`oxms`) are all
/// exact matches of fields [`exact_width`] knows, at their width, each
/// once, with a VLAN id in range: those TLVs sorted. That is what decoding,
/// [`canonical_match`] and [`emit_fields`] would give, at a fraction of the
/// cost. `None` for anything else, which takes that path.
fn canonical_fields_of_exact(oxms: &[u8]) -> Option<Box<[u8]>> {
    let mut tlvs: Vec<(u32, &[u8])> = Vec::with_capacity(8);
    for t in OxmIter::new(oxms) {
        let t = t.ok()?;
        let (class, field) = (t.class(), t.field());
        if t.has_mask() || exact_width(class, field) != Some(t.value.len()) {
            return None;
        }
        // OFPVID_PRESENT and a 12-bit id: anything above is refused by the
        // decoder, and masked off by canonical_match.
        if (class, field) == (ofp::oxm::class::OPENFLOW_BASIC, 6) && t.value[0] & 0xe0 != 0 {
            return None;
        }
        tlvs.push((t.header, t.value));
    }
    // By class and field, the header's top 23 bits.
    tlvs.sort_unstable_by_key(|(header, _)| header >> 9);
    if tlvs.windows(2).any(|w| w[0].0 >> 9 == w[1].0 >> 9) {
        return None;
    }
    let mut fields = Vec::with_capacity(tlvs.iter().map(|(_, v)| 4 + v.len()).sum());
    for (header, value) in tlvs {
        fields.extend_from_slice(&header.to_be_bytes());
        fields.extend_from_slice(value);
    }
    Some(fields.into_boxed_slice())
}

/// A flow's identity: table, priority and canonical match (as the wire
/// bytes of its OXM fields, which give a total order). Orders by table,
/// then highest priority first. The owned form, for compiled flows; an
/// [`Installed`] lends its flows' identities as [`FlowKeyRef`]s.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub table: u8,
    pub priority: u16,
    /// Boxed rather than a `Vec`: no spare capacity in the keys kept.
    fields: Box<[u8]>,
}

impl FlowKey {
    fn new(table: u8, priority: u16, canonical: &Match) -> Self {
        let mut fields = Vec::with_capacity(64);
        emit_fields(canonical, &mut fields);
        Self {
            table,
            priority,
            fields: fields.into_boxed_slice(),
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
            .then(|| canonical_fields_of_exact(v.match_bytes()))
            .flatten();
        if let Some(fields) = exact {
            return Ok(Self {
                table: v.table_id(),
                priority: v.priority(),
                fields,
            });
        }
        Ok(Self::new(
            v.table_id(),
            v.priority(),
            &canonical_match(&v.match_()?),
        ))
    }

    /// The same identity, borrowed.
    pub fn key_ref(&self) -> FlowKeyRef<'_> {
        FlowKeyRef {
            table: self.table,
            priority: self.priority,
            fields: &self.fields,
        }
    }

    /// The canonical match back from its wire bytes; `None` only if they
    /// were not written from a decoded match.
    pub fn match_(&self) -> Option<Match> {
        self.key_ref().match_()
    }
}

/// The match's OXM TLVs without `ofp_match`'s type, length and padding:
/// the length is the slice's, the rest is the same for every flow.
fn emit_fields(canonical: &Match, buf: &mut Vec<u8>) {
    for f in &canonical.fields {
        f.emit(buf);
    }
}

impl Ord for FlowKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key_ref().cmp(&other.key_ref())
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A flow's identity borrowed from where its match bytes are kept (an
/// [`Installed`], a [`FlowKey`], a scratch buffer). Equal to a [`FlowKey`]
/// when they name the same flow, and ordered the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKeyRef<'a> {
    pub table: u8,
    pub priority: u16,
    fields: &'a [u8],
}

impl FlowKeyRef<'_> {
    /// The canonical match back from its wire bytes; `None` only if they
    /// were not written from a decoded match.
    pub fn match_(&self) -> Option<Match> {
        let mut r = Reader::new(self.fields, "flow key");
        let mut fields = Vec::new();
        while !r.is_empty() {
            fields.push(OxmField::parse(&mut r).ok()?);
        }
        Some(Match { fields })
    }

    /// The hash an [`Installed`] files this identity under.
    fn hash_code(&self) -> u64 {
        let mut h = KeyHasher(0);
        // The length keeps a key whose fields end in zero bytes apart from
        // the shorter one the chunking pads to the same words.
        h.add(
            u64::from(self.table)
                | u64::from(self.priority) << 8
                | (self.fields.len() as u64) << 24,
        );
        h.write(self.fields);
        h.finish()
    }
}

impl Ord for FlowKeyRef<'_> {
    /// Table, highest priority first, then the match as `ofp_match` would
    /// order it on the wire: by length (its header's length field) first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.table
            .cmp(&other.table)
            .then(other.priority.cmp(&self.priority))
            .then(self.fields.len().cmp(&other.fields.len()))
            .then_with(|| self.fields.cmp(other.fields))
    }
}

impl PartialOrd for FlowKeyRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<'a> From<&'a FlowKey> for FlowKeyRef<'a> {
    fn from(k: &'a FlowKey) -> Self {
        k.key_ref()
    }
}

impl From<FlowKeyRef<'_>> for FlowKey {
    fn from(k: FlowKeyRef<'_>) -> Self {
        Self {
            table: k.table,
            priority: k.priority,
            fields: k.fields.into(),
        }
    }
}

impl PartialEq<FlowKey> for FlowKeyRef<'_> {
    fn eq(&self, other: &FlowKey) -> bool {
        *self == other.key_ref()
    }
}

impl PartialEq<FlowKeyRef<'_>> for FlowKey {
    fn eq(&self, other: &FlowKeyRef<'_>) -> bool {
        self.key_ref() == *other
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

    /// This flow's identity written into `buf` (its previous contents
    /// dropped): [`Flow::key`] without an allocation per flow.
    pub fn key_in<'b>(&self, buf: &'b mut Vec<u8>) -> FlowKeyRef<'b> {
        buf.clear();
        emit_fields(&self.match_, buf);
        FlowKeyRef {
            table: self.table,
            priority: self.priority,
            fields: buf,
        }
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
#[derive(Clone, Default)]
pub struct Installed {
    flows: FlowStore,
    pub groups: BTreeMap<u32, Group>,
}

/// Every flow of an [`Installed`], packed: the match bytes back to back
/// in an arena, a fixed-size slot per flow, and a hash table of slot
/// numbers compared by reading the arena. By their sizes about 65 bytes a
/// flow (a typical match's 30, the slot's 20, the index's 9 per bucket at
/// its load), where a hash map of boxed keys took about 100 (33 per
/// bucket, and an allocation of the 40-byte `ofp_match`).
///
/// The index keeps each flow's hash beside its slot number: growing the
/// table then moves entries without reading the arena and hashing every
/// match again, which took a seventh of a restart's CPU (the dumps of a
/// switch grow their store from nothing, 30 000 flows at a time).
///
/// The arena and the slots are chunks that are filled, never moved. One
/// allocation grown by doubling would free a copy of itself at each step,
/// and programming a switch whole builds a new store beside the old one:
/// blocks of ever larger sizes, which the allocator keeps resident for a
/// while and cannot reuse for the next, larger store. Chunks of one size
/// it can.
///
/// Removing a flow frees its slot for the next insert and leaves its bytes
/// dead in the arena; once the dead bytes (or free slots) outnumber the
/// live ones the store is rebuilt, so churn costs amortised constant time
/// and at most twice the live size.
#[derive(Clone, Default)]
struct FlowStore {
    /// Chunks of at most [`CHUNK_BYTES`]; a match never spans two.
    arena: Vec<Vec<u8>>,
    /// Chunks of [`CHUNK_SLOTS`], all full but the last.
    slots: Vec<Vec<Slot>>,
    /// Slot numbers of the live flows, each with its [`short_hash`].
    index: HashTable<(u32, u32)>,
    /// The first free slot; each free slot's `start` names the next.
    free: Option<u32>,
    free_slots: usize,
    /// Bytes in the arena's chunks, live or dead.
    bytes: usize,
    dead_bytes: usize,
}

/// One flow: where its match bytes are, the rest of its identity, its
/// cookie. The cookie in two halves keeps the alignment at 4, so a slot
/// is 20 bytes rather than 24.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Position in the arena (chunk number times [`CHUNK_BYTES`] plus
    /// offset); of the next free slot (`u32::MAX`: none) when this one is
    /// free.
    start: u32,
    cookie: [u32; 2],
    /// [`FREE`] when the slot holds no flow.
    len: u16,
    priority: u16,
    table: u8,
}

const _: () = assert!(size_of::<Slot>() == 20);

/// The `len` of a free slot: no match is that long, since a whole flow
/// stats entry, match included, has a 16-bit length.
const FREE: u16 = u16::MAX;

/// An arena chunk holds the longest match (`FREE - 1` bytes).
const CHUNK_BYTES: usize = 1 << 16;
/// Slots per chunk: 80 KiB, as large as an arena chunk or so.
const CHUNK_SLOTS: usize = 1 << 12;

/// Dead bytes and free slots below these never trigger a rebuild, so a
/// small store does not rebuild at every removal.
const MIN_DEAD_BYTES: usize = 1024;
const MIN_FREE_SLOTS: usize = 64;

impl Slot {
    fn cookie(&self) -> u64 {
        u64::from(self.cookie[0]) << 32 | u64::from(self.cookie[1])
    }

    fn set_cookie(&mut self, cookie: u64) {
        // Truncations: the two halves.
        self.cookie = [(cookie >> 32) as u32, cookie as u32];
    }

    fn is_free(&self) -> bool {
        self.len == FREE
    }
}

/// Appends `items` to the last chunk, or to a new one if they do not fit in
/// `chunk` items, and says where they start (chunk number times `chunk`
/// plus offset). A chunk grows by doubling up to `chunk` and no further, so
/// a small store stays small.
fn append<T: Copy>(chunks: &mut Vec<Vec<T>>, items: &[T], chunk: usize) -> usize {
    if chunks.last().is_none_or(|c| c.len() + items.len() > chunk) {
        chunks.push(Vec::new());
    }
    let n = chunks.len() - 1;
    let c = &mut chunks[n];
    let need = c.len() + items.len();
    if need > c.capacity() {
        let room = (2 * c.capacity()).clamp(need, chunk.max(need));
        c.reserve_exact(room - c.len());
    }
    let at = n * chunk + c.len();
    c.extend_from_slice(items);
    at
}

fn slot(slots: &[Vec<Slot>], at: u32) -> &Slot {
    let at = at as usize;
    &slots[at / CHUNK_SLOTS][at % CHUNK_SLOTS]
}

fn slot_mut(slots: &mut [Vec<Slot>], at: u32) -> &mut Slot {
    let at = at as usize;
    &mut slots[at / CHUNK_SLOTS][at % CHUNK_SLOTS]
}

/// The identity in a live slot.
fn key_of<'a>(s: &Slot, arena: &'a [Vec<u8>]) -> FlowKeyRef<'a> {
    let start = s.start as usize;
    let (chunk, from) = (start / CHUNK_BYTES, start % CHUNK_BYTES);
    FlowKeyRef {
        table: s.table,
        priority: s.priority,
        fields: &arena[chunk][from..from + usize::from(s.len)],
    }
}

/// A key's [`FlowKeyRef::hash_code`] folded to the 32 bits the index
/// keeps of it.
fn short_hash(key: FlowKeyRef<'_>) -> u32 {
    let h = key.hash_code();
    (h ^ h >> 32) as u32
}

/// What the index files a short hash under: its bits both in the high
/// half, whose top seven the table keeps as each bucket's tag, and in the
/// low half, which picks the bucket.
fn table_hash(short: u32) -> u64 {
    u64::from(short) << 32 | u64::from(short)
}

/// The identity in slot `at`.
fn key_at<'a>(slots: &[Vec<Slot>], arena: &'a [Vec<u8>], at: u32) -> FlowKeyRef<'a> {
    key_of(slot(slots, at), arena)
}

impl FlowStore {
    fn with_capacity(flows: usize, match_bytes: usize) -> Self {
        Self {
            arena: Vec::with_capacity(match_bytes.div_ceil(CHUNK_BYTES)),
            slots: Vec::with_capacity(flows.div_ceil(CHUNK_SLOTS)),
            index: HashTable::with_capacity(flows),
            ..Self::default()
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn live_bytes(&self) -> usize {
        self.bytes - self.dead_bytes
    }

    fn find(&self, key: FlowKeyRef<'_>) -> Option<&Slot> {
        let (slots, arena) = (&self.slots, &self.arena);
        let h = short_hash(key);
        let (at, _) = self.index.find(table_hash(h), |&(at, kh)| {
            kh == h && key_at(slots, arena, at) == key
        })?;
        Some(slot(slots, *at))
    }

    /// Records a flow, replacing the cookie of one with the same identity.
    ///
    /// # Panics
    ///
    /// If the arena would pass 4 GiB: the session refuses a dump long
    /// before (`MAX_DUMP_MATCH_BYTES`), and compiled flows are tens of
    /// bytes each.
    fn insert(&mut self, key: FlowKeyRef<'_>, cookie: u64) {
        let Self {
            arena,
            slots,
            index,
            free,
            free_slots,
            bytes,
            ..
        } = self;
        let h = short_hash(key);
        let entry = index.entry(
            table_hash(h),
            |&(at, kh)| kh == h && key_at(slots, arena, at) == key,
            |&(_, kh)| table_hash(kh),
        );
        let vacant = match entry {
            hash_table::Entry::Occupied(o) => {
                slot_mut(slots, o.get().0).set_cookie(cookie);
                return;
            }
            hash_table::Entry::Vacant(v) => v,
        };
        let len = u16::try_from(key.fields.len())
            .ok()
            .filter(|&n| n != FREE)
            .expect("a match shorter than a flow stats entry");
        let start = append(arena, key.fields, CHUNK_BYTES);
        *bytes += key.fields.len();
        let mut new = Slot {
            start: u32::try_from(start).expect("flow store arena under 4 GiB"),
            cookie: [0; 2],
            len,
            priority: key.priority,
            table: key.table,
        };
        new.set_cookie(cookie);
        let at = match *free {
            Some(at) => {
                let s = slot_mut(slots, at);
                *free = (s.start != u32::MAX).then_some(s.start);
                *free_slots -= 1;
                *s = new;
                at
            }
            None => {
                let at = append(slots, &[new], CHUNK_SLOTS);
                u32::try_from(at).expect("fewer than 4 G flows")
            }
        };
        vacant.insert((at, h));
    }

    /// Forgets the flow with this identity, if there is one.
    fn remove(&mut self, key: FlowKeyRef<'_>) {
        let (slots, arena) = (&self.slots, &self.arena);
        let h = short_hash(key);
        let Ok(found) = self.index.find_entry(table_hash(h), |&(at, kh)| {
            kh == h && key_at(slots, arena, at) == key
        }) else {
            return;
        };
        let ((at, _), _) = found.remove();
        let s = slot_mut(&mut self.slots, at);
        self.dead_bytes += usize::from(s.len);
        s.len = FREE;
        s.start = self.free.unwrap_or(u32::MAX);
        self.free = Some(at);
        self.free_slots += 1;
        if self.dead_bytes > self.live_bytes().max(MIN_DEAD_BYTES)
            || self.free_slots > self.len().max(MIN_FREE_SLOTS)
        {
            self.rebuild();
        }
    }

    /// The same flows without dead bytes or free slots.
    fn rebuild(&mut self) {
        let mut packed = Self::with_capacity(self.len(), self.live_bytes());
        for (key, cookie) in self.iter() {
            packed.insert(key, cookie);
        }
        *self = packed;
    }

    fn iter(&self) -> impl Iterator<Item = (FlowKeyRef<'_>, u64)> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| !s.is_free())
            .map(|s| (key_of(s, &self.arena), s.cookie()))
    }
}

impl Installed {
    /// Room for `flows` flows whose matches take `match_bytes` without
    /// growing (see [`Installed::match_bytes`]).
    pub fn with_capacity(flows: usize, match_bytes: usize) -> Self {
        Self {
            flows: FlowStore::with_capacity(flows, match_bytes),
            groups: BTreeMap::new(),
        }
    }

    /// What a switch holds, from its decoded FLOW_STATS and GROUP_DESC
    /// replies. A session builds the same from the wire, entry by entry
    /// ([`FlowKey::of_view`]), without decoding instructions.
    pub fn from_dump(flows: &[FlowStats], groups: &[GroupDesc]) -> Self {
        let mut s = Self::default();
        for f in flows {
            s.insert_flow(&FlowKey::of_stats(f), f.cookie);
        }
        for g in groups {
            s.groups.insert(g.group_id, Group::from_desc(g));
        }
        s
    }

    /// The compact form of `state`.
    pub fn of(state: &SwitchState) -> Self {
        let bytes = state.flows.keys().map(|k| k.fields.len()).sum();
        let mut s = Self::with_capacity(state.flows.len(), bytes);
        for (k, f) in &state.flows {
            s.insert_flow(k, f.cookie);
        }
        s.groups = state.groups.clone();
        s
    }

    /// Records a flow, replacing one with the same identity.
    pub fn insert_flow<'k>(&mut self, key: impl Into<FlowKeyRef<'k>>, cookie: u64) {
        self.flows.insert(key.into(), cookie);
    }

    /// The cookie of the flow with this identity, if there is one.
    pub fn cookie<'k>(&self, key: impl Into<FlowKeyRef<'k>>) -> Option<u64> {
        self.flows.find(key.into()).map(Slot::cookie)
    }

    pub fn contains<'k>(&self, key: impl Into<FlowKeyRef<'k>>) -> bool {
        self.flows.find(key.into()).is_some()
    }

    /// Every flow's identity and cookie, in no particular order.
    pub fn flows(&self) -> impl Iterator<Item = (FlowKeyRef<'_>, u64)> {
        self.flows.iter()
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// How many bytes the flows' matches take: with [`Installed::flow_count`],
    /// the room a state like this one needs.
    pub fn match_bytes(&self) -> usize {
        self.flows.live_bytes()
    }

    /// The held flows at the identities of `like` (compiled flows), each
    /// as compiled but with the cookie the switch holds: what
    /// [`crate::reconciler::reconcile`] needs of them, which compares
    /// cookies, not instructions. Taken with their keys, as a
    /// [`SwitchState`] files them: writing a key again per flow was a
    /// tenth of this on the learning path.
    pub fn flows_at<'a>(
        &self,
        like: impl IntoIterator<Item = (&'a FlowKey, &'a Flow)>,
    ) -> SwitchState {
        let mut part = SwitchState::default();
        for (key, f) in like {
            if let Some(cookie) = self.cookie(key) {
                part.flows.insert(
                    key.clone(),
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
            self.flows.remove(k.key_ref());
        }
        for (k, f) in &with.flows {
            self.flows.insert(k.key_ref(), f.cookie);
        }
    }
}

#[cfg(test)]
impl Installed {
    /// The bytes in the arena and the number of slots, live or free;
    /// checks that no chunk grew past its size.
    fn footprint(&self) -> (usize, usize) {
        let s = &self.flows;
        assert!(s.arena.iter().all(|c| c.capacity() <= CHUNK_BYTES));
        assert!(s.slots.iter().all(|c| c.capacity() <= CHUNK_SLOTS));
        let bytes = s.arena.iter().map(Vec::len).sum();
        assert_eq!(bytes, s.bytes);
        (bytes, s.slots.iter().map(Vec::len).sum())
    }
}

impl PartialEq for Installed {
    /// The same flows with the same cookies, and the same groups, wherever
    /// the flows sit in the stores.
    fn eq(&self, other: &Self) -> bool {
        self.groups == other.groups
            && self.flow_count() == other.flow_count()
            && self.flows().all(|(k, c)| other.cookie(k) == Some(c))
    }
}

impl Eq for Installed {}

impl fmt::Debug for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flows: Vec<_> = self.flows().collect();
        flows.sort_unstable();
        f.debug_struct("Installed")
            .field("flows", &flows)
            .field("groups", &self.groups)
            .finish()
    }
}

/// Hashes flow keys eight bytes at a time (the multiply-rotate step of
/// rustc's FxHash). SipHash took a tenth of a restart's reconciliation;
/// its resistance to chosen collisions buys nothing here, where keys are
/// the controller's own flows and the ones its switches report.
#[derive(Debug)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

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
    use std::collections::HashMap;

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
                table_hash(short_hash(key.key_ref())) & 0xfff
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

    /// Flows with small random matches: few enough distinct identities
    /// that a pool of them repeats some.
    fn arb_flow() -> impl Strategy<Value = Flow> {
        (
            0u8..3,
            prop::sample::select(vec![0u16, 100, 0x8000, u16::MAX]),
            prop::option::of(0u32..4),
            prop::option::of(0u64..3),
            prop::option::of(prop::array::uniform6(0u8..2)),
            any::<u64>(),
        )
            .prop_map(|(table, priority, port, meta, mac, cookie)| {
                let mut m = Match::new();
                if let Some(p) = port {
                    m = m.in_port(p);
                }
                if let Some(v) = meta {
                    m = m.metadata(v);
                }
                if let Some(a) = mac {
                    m = m.eth_dst(a);
                }
                Flow {
                    cookie,
                    ..Flow::new(table, priority, m, vec![])
                }
            })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, u64),
        Remove(usize),
        /// Those flows replaced by these, as incremental programming does.
        Replace(Vec<usize>, Vec<usize>),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let some = || prop::collection::vec(any::<usize>(), 0..6);
        prop_oneof![
            (any::<usize>(), any::<u64>()).prop_map(|(i, c)| Op::Insert(i, c)),
            any::<usize>().prop_map(Op::Remove),
            (some(), some()).prop_map(|(a, b)| Op::Replace(a, b)),
        ]
    }

    fn state_of<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> SwitchState {
        let mut s = SwitchState::default();
        for f in flows {
            s.insert_flow(f.clone());
        }
        s
    }

    /// `held` has exactly `model`'s flows and cookies, and its arena and
    /// slots stay within twice what the live flows need.
    fn holds(held: &Installed, model: &HashMap<FlowKey, u64>) -> Result<(), TestCaseError> {
        prop_assert_eq!(held.flow_count(), model.len());
        for (k, c) in model {
            prop_assert_eq!(held.cookie(k), Some(*c), "{:?}", k);
        }
        let listed: HashMap<FlowKey, u64> =
            held.flows().map(|(k, c)| (FlowKey::from(k), c)).collect();
        prop_assert_eq!(&listed, model);
        let live: usize = model.keys().map(|k| k.fields.len()).sum();
        prop_assert_eq!(held.match_bytes(), live);
        let (arena, slots) = held.footprint();
        prop_assert!(
            arena <= live + live.max(MIN_DEAD_BYTES),
            "{} of {}",
            arena,
            live
        );
        prop_assert!(slots <= model.len() + model.len().max(MIN_FREE_SLOTS));
        Ok(())
    }

    proptest! {
        #[test]
        fn the_store_holds_what_a_hash_map_holds(
            pool in prop::collection::vec(arb_flow(), 1..100),
            ops in prop::collection::vec(arb_op(), 0..800),
        ) {
            let mut held = Installed::default();
            let mut model: HashMap<FlowKey, u64> = HashMap::new();
            let at = |i: usize| &pool[i % pool.len()];
            for op in ops {
                match op {
                    Op::Insert(i, cookie) => {
                        held.insert_flow(&at(i).key(), cookie);
                        model.insert(at(i).key(), cookie);
                    }
                    Op::Remove(i) => {
                        let gone = state_of([at(i)]);
                        held.replace_flows(&gone, &SwitchState::default());
                        model.remove(&at(i).key());
                    }
                    Op::Replace(part, with) => {
                        let part = state_of(part.into_iter().map(at));
                        let with = state_of(with.into_iter().map(at));
                        held.replace_flows(&part, &with);
                        for k in part.flows.keys() {
                            model.remove(k);
                        }
                        for (k, f) in &with.flows {
                            model.insert(k.clone(), f.cookie);
                        }
                    }
                }
                holds(&held, &model)?;
            }
            let mut want = SwitchState::default();
            for (k, c) in &model {
                let f = pool.iter().find(|f| f.key() == *k).unwrap();
                want.insert_flow(Flow { cookie: *c, ..f.clone() });
            }
            prop_assert_eq!(held, Installed::of(&want));
        }

        #[test]
        fn keys_order_as_their_ofp_match_does_on_the_wire(a in arb_flow(), b in arb_flow()) {
            // Plans send deletes in key order: dropping the match header
            // from the kept bytes must not change it.
            let wire = |f: &Flow| {
                let mut w = Vec::new();
                f.match_.emit(&mut w);
                (f.table, std::cmp::Reverse(f.priority), w)
            };
            prop_assert_eq!(a.key().cmp(&b.key()), wire(&a).cmp(&wire(&b)));
            let mut buf = Vec::new();
            let borrowed = a.key_in(&mut buf);
            prop_assert_eq!(borrowed, a.key());
            prop_assert_eq!(FlowKey::from(borrowed), a.key());
            prop_assert_eq!(borrowed.match_(), Some(a.match_.clone()));
            prop_assert_eq!(borrowed.cmp(&b.key().key_ref()), a.key().cmp(&b.key()));
        }
    }

    #[test]
    fn moves_that_go_on_and_on_keep_the_store_at_its_live_size() {
        // Each move takes one flow out and puts another in, as a MAC moving
        // between ports does; over many moves the removed flows' bytes
        // must be reclaimed and their slots reused.
        let flow = |i: u32| {
            let [_, a, b, c] = i.to_be_bytes();
            Flow::new(
                3,
                100,
                Match::new().reg(6, 1).eth_dst([2, 0, a, b, c, 1]),
                vec![],
            )
        };
        let live = 500u32;
        let mut held = Installed::default();
        let mut model = HashMap::new();
        for i in 0..live {
            held.insert_flow(&flow(i).key(), u64::from(i));
            model.insert(flow(i).key(), u64::from(i));
        }
        let one_flow = held.match_bytes() / model.len();
        let mut shrank = false;
        for i in live..live * 40 {
            let (old, new) = (state_of([&flow(i - live)]), state_of([&flow(i)]));
            let arena_before = held.footprint().0;
            held.replace_flows(&old, &new);
            shrank |= held.footprint().0 < arena_before;
            model.remove(&flow(i - live).key());
            model.insert(flow(i).key(), flow(i).cookie);
        }
        holds(&held, &model).unwrap();
        assert!(shrank, "the arena was never compacted");
        let (arena, slots) = held.footprint();
        assert_eq!(slots, live as usize, "freed slots are reused");
        assert!(arena <= 2 * live as usize * one_flow, "{arena} bytes");

        // Most flows gone: the slots and the arena shrink with them.
        let gone = state_of(
            (live * 39 + 10..live * 40)
                .map(flow)
                .collect::<Vec<_>>()
                .iter(),
        );
        held.replace_flows(&gone, &SwitchState::default());
        for k in gone.flows.keys() {
            model.remove(k);
        }
        holds(&held, &model).unwrap();
        assert!(held.footprint().1 <= 10 + MIN_FREE_SLOTS);
    }

    #[test]
    fn a_large_store_spans_chunks_and_finds_every_flow() {
        let flow = |i: u32| {
            let [_, a, b, c] = i.to_be_bytes();
            let m = Match::new()
                .metadata(u64::from(i % 7))
                .eth_dst([2, 0, a, b, c, 1]);
            Flow::new(3, 100, m, vec![])
        };
        let mut held = Installed::default();
        let mut model = HashMap::new();
        for i in 0..30_000 {
            held.insert_flow(&flow(i).key(), u64::from(i));
            model.insert(flow(i).key(), u64::from(i));
        }
        holds(&held, &model).unwrap();
        let (bytes, slots) = held.footprint();
        assert!(bytes > 4 * CHUNK_BYTES && slots > 4 * CHUNK_SLOTS);
        // Two flows in three out, then back with other cookies: the store
        // is rebuilt on the way, and grows again.
        let odd = (0..30_000)
            .filter(|i| i % 3 != 0)
            .map(flow)
            .collect::<Vec<_>>();
        let odd = state_of(odd.iter());
        held.replace_flows(&odd, &SwitchState::default());
        for k in odd.flows.keys() {
            model.remove(k);
        }
        holds(&held, &model).unwrap();
        assert!(held.footprint().1 < 20_000, "rebuilt");
        held.replace_flows(&SwitchState::default(), &odd);
        for (k, f) in &odd.flows {
            model.insert(k.clone(), f.cookie);
        }
        holds(&held, &model).unwrap();
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
