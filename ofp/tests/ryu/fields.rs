//! OXM/NXM fields as Ryu names and renders them (`OXMTlv`), from the field
//! identity our decoder gave each value.

use super::base64;
use ofp::action::ONF_VENDOR_ID;
use ofp::oxm::{class, FieldId, Match, OxmField, RawOxm};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, Ipv6Addr};

/// OpenFlow-basic fields 0..=39 in Ryu's spelling, indexed by field number.
const BASIC: [&str; 40] = [
    "in_port",
    "in_phy_port",
    "metadata",
    "eth_dst",
    "eth_src",
    "eth_type",
    "vlan_vid",
    "vlan_pcp",
    "ip_dscp",
    "ip_ecn",
    "ip_proto",
    "ipv4_src",
    "ipv4_dst",
    "tcp_src",
    "tcp_dst",
    "udp_src",
    "udp_dst",
    "sctp_src",
    "sctp_dst",
    "icmpv4_type",
    "icmpv4_code",
    "arp_op",
    "arp_spa",
    "arp_tpa",
    "arp_sha",
    "arp_tha",
    "ipv6_src",
    "ipv6_dst",
    "ipv6_flabel",
    "icmpv6_type",
    "icmpv6_code",
    "ipv6_nd_target",
    "ipv6_nd_sll",
    "ipv6_nd_tll",
    "mpls_label",
    "mpls_tc",
    "mpls_bos",
    "pbb_isid",
    "tunnel_id",
    "ipv6_exthdr",
];

/// How Ryu shows a field's value (its `type_desc`).
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Mac,
    Ipv4,
    Ipv6,
}

/// The NXM fields Ryu's `nicira_ext.oxm_types` names for OpenFlow 1.3. Ryu
/// suffixes `_nxm` where an OXM of the same meaning exists.
fn nxm_field(class_: u16, field: u8) -> Option<(String, Kind)> {
    let named = |n: &str, k| Some((n.to_owned(), k));
    match (class_, field) {
        (class::NXM_0, 1) => named("eth_dst_nxm", Kind::Mac),
        (class::NXM_0, 2) => named("eth_src_nxm", Kind::Mac),
        (class::NXM_0, 3) => named("eth_type_nxm", Kind::Int),
        (class::NXM_0, 6) => named("ip_proto_nxm", Kind::Int),
        (class::NXM_1, n @ 0..=7) => Some((format!("reg{n}"), Kind::Int)),
        (class::NXM_1, 16) => named("tunnel_id_nxm", Kind::Int),
        (class::NXM_1, 31) => named("tun_ipv4_src", Kind::Ipv4),
        (class::NXM_1, 32) => named("tun_ipv4_dst", Kind::Ipv4),
        (class::NXM_1, 33) => named("pkt_mark", Kind::Int),
        (class::NXM_1, 34) => named("tcp_flags_nxm", Kind::Int),
        (class::NXM_1, 37) => named("conj_id", Kind::Int),
        (class::NXM_1, 105) => named("ct_state", Kind::Int),
        (class::NXM_1, 106) => named("ct_zone", Kind::Int),
        (class::NXM_1, 107) => named("ct_mark", Kind::Int),
        (class::NXM_1, 108) => named("ct_label", Kind::Int),
        (class::NXM_1, 109) => named("tun_ipv6_src", Kind::Ipv6),
        (class::NXM_1, 110) => named("tun_ipv6_dst", Kind::Ipv6),
        _ => None,
    }
}

/// Ryu's name for a field, when Ryu knows it.
fn known_name(id: FieldId) -> Option<String> {
    match id.class {
        class::OPENFLOW_BASIC => BASIC.get(usize::from(id.field)).map(|s| (*s).to_owned()),
        class::NXM_0 | class::NXM_1 => nxm_field(id.class, id.field).map(|(n, _)| n),
        _ => None,
    }
}

/// A value the codec keeps raw but Ryu types (the NXM_0 duplicates of
/// OpenFlow-basic fields, tcp_flags, the IPv6 tunnel addresses).
fn raw_value(id: FieldId, bytes: &[u8]) -> Option<Value> {
    let (_, kind) = nxm_field(id.class, id.field)?;
    Some(match kind {
        Kind::Int if bytes.len() <= 8 => {
            json!(bytes.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
        }
        Kind::Mac => mac(&<[u8; 6]>::try_from(bytes).ok()?),
        Kind::Ipv4 => ip4(&Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        Kind::Ipv6 => ip6(&Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        Kind::Int => return None,
    })
}

/// Ryu's name for a field: a field Ryu does not know is `field_<class:field>`
/// (the header's top 23 bits), and its value is then shown as base64.
pub fn name(id: FieldId) -> String {
    known_name(id)
        .unwrap_or_else(|| format!("field_{}", (u32::from(id.class) << 7) | u32::from(id.field)))
}

/// Ryu's name for the field an NXM/OXM header (as NX actions carry) names.
pub fn header_name(header: u32) -> String {
    name(FieldId::from_header(header, None))
}

pub fn mac(m: &[u8; 6]) -> Value {
    json!(ofp::packet::MacAddr(*m).to_string())
}

fn ip4(a: &Ipv4Addr) -> Value {
    json!(a.to_string())
}

fn ip6(a: &Ipv6Addr) -> Value {
    json!(a.to_string())
}

/// A 128-bit integer as JSON; Ryu writes a plain integer, which JSON readers
/// without big numbers cannot hold above 2^64, so those stay visibly apart.
pub fn u128_value(v: u128) -> Value {
    u64::try_from(v).map_or_else(|_| json!(v.to_string()), |v| json!(v))
}

fn masked<T>(v: &T, m: &Option<T>, show: impl Fn(&T) -> Value) -> (Value, Value) {
    (show(v), m.as_ref().map_or(Value::Null, show))
}

fn int<T: Copy + Into<u64>>(v: &T) -> Value {
    json!((*v).into())
}

/// The value and mask of a field the codec types, in Ryu's rendering.
fn typed_value(f: &OxmField) -> Option<(Value, Value)> {
    use OxmField as F;
    let none = |v: Value| (v, Value::Null);
    Some(match f {
        F::InPort(v) | F::InPhyPort(v) | F::MplsLabel(v) | F::ConjId(v) => none(int(v)),
        F::EthType(v) | F::ArpOp(v) | F::CtZone(v) => none(int(v)),
        F::VlanPcp(v)
        | F::IpDscp(v)
        | F::IpEcn(v)
        | F::IpProto(v)
        | F::Icmpv4Type(v)
        | F::Icmpv4Code(v)
        | F::Icmpv6Type(v)
        | F::Icmpv6Code(v)
        | F::MplsTc(v)
        | F::MplsBos(v) => none(int(v)),
        F::Metadata(v, m) | F::TunnelId(v, m) | F::NxTunId(v, m) => masked(v, m, int),
        F::EthDst(v, m)
        | F::EthSrc(v, m)
        | F::ArpSha(v, m)
        | F::ArpTha(v, m)
        | F::Ipv6NdSll(v, m)
        | F::Ipv6NdTll(v, m) => masked(v, m, mac),
        F::VlanVid(v, m)
        | F::TcpSrc(v, m)
        | F::TcpDst(v, m)
        | F::UdpSrc(v, m)
        | F::UdpDst(v, m)
        | F::SctpSrc(v, m)
        | F::SctpDst(v, m)
        | F::Ipv6Exthdr(v, m) => masked(v, m, int),
        F::Ipv4Src(v, m)
        | F::Ipv4Dst(v, m)
        | F::ArpSpa(v, m)
        | F::ArpTpa(v, m)
        | F::TunIpv4Src(v, m)
        | F::TunIpv4Dst(v, m) => masked(v, m, ip4),
        F::Ipv6Src(v, m) | F::Ipv6Dst(v, m) | F::Ipv6NdTarget(v, m) => masked(v, m, ip6),
        F::Ipv6Flabel(v, m) | F::PktMark(v, m) | F::CtState(v, m) | F::CtMark(v, m) => {
            masked(v, m, int)
        }
        F::Reg(_, v, m) => masked(v, m, int),
        F::XReg(_, v, m) => masked(v, m, int),
        F::PbbIsid(v, m) => masked(v, m, |x| json!(x.get())),
        F::CtLabel(v, m) | F::XxReg(_, v, m) => masked(v, m, |x| u128_value(*x)),
        F::Raw(_) => return None,
    })
}

/// The ONF experimenter fields Ryu's OpenFlow 1.3 table knows, by the
/// `exp_type` that leads their value (ONF EXT-256 layout).
fn onf_field(exp_type: u16) -> Option<&'static str> {
    match exp_type {
        2560 => Some("pbb_uca"),
        _ => None,
    }
}

/// The value and mask bytes of a field as it goes on the wire, without its
/// header (and experimenter id).
fn wire_value(f: &OxmField) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut b = Vec::new();
    f.emit(&mut b);
    let header = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let skip = if (header >> 16) as u16 == class::EXPERIMENTER {
        8
    } else {
        4
    };
    let payload = b.split_off(skip);
    if f.has_mask() {
        let (v, m) = payload.split_at(payload.len() / 2);
        (v.to_vec(), Some(m.to_vec()))
    } else {
        (payload, None)
    }
}

/// `{"OXMTlv": {"field", "value", "mask"}}` for one decoded field.
pub fn oxm_tlv(f: &OxmField) -> Value {
    let (field, value, mask) = match f {
        // pbb_uca: the codec keeps ONF experimenter fields raw; Ryu reads the
        // exp_type after the experimenter id and names the field by it.
        OxmField::Raw(RawOxm {
            experimenter: Some(ONF_VENDOR_ID),
            value,
            mask,
            ..
        }) if value.len() > 2 && onf_field(u16::from_be_bytes([value[0], value[1]])).is_some() => {
            let name = onf_field(u16::from_be_bytes([value[0], value[1]])).unwrap_or_default();
            let int = |b: &[u8]| json!(b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)));
            let mask = mask.as_deref().map_or(Value::Null, |m| int(&m[2..]));
            (name.to_owned(), int(&value[2..]), mask)
        }
        _ => {
            let id = f.id();
            let (v, m) = wire_value(f);
            let raw = || {
                Some((
                    raw_value(id, &v)?,
                    m.as_deref()
                        .map_or(Some(Value::Null), |m| raw_value(id, m))?,
                ))
            };
            match (known_name(id), typed_value(f).or_else(raw)) {
                (Some(name), Some((value, mask))) => (name, value, mask),
                // Unknown to Ryu: Ryu's UnknownType, shown as base64.
                _ => {
                    let b64 = |b: &[u8]| json!(base64::encode(b));
                    (name(id), b64(&v), m.as_deref().map_or(Value::Null, b64))
                }
            }
        }
    };
    json!({"OXMTlv": {"field": field, "value": value, "mask": mask}})
}

/// Length of a match as its `length` field gives it: header and fields,
/// without the padding. The codec derives it on encode instead of storing it.
pub fn match_len(m: &Match) -> usize {
    let mut b = Vec::new();
    for f in &m.fields {
        f.emit(&mut b);
    }
    4 + b.len()
}

/// `{"OFPMatch": ...}`. `type` is 1 because the codec accepts only
/// OFPMT_OXM matches.
pub fn match_(m: &Match) -> Value {
    json!({"OFPMatch": {
        "type": 1,
        "length": match_len(m),
        "oxm_fields": m.fields.iter().map(oxm_tlv).collect::<Vec<_>>(),
    }})
}
