//! Printing matches and field names the way `ovs-ofctl` does.
//!
//! OVS prints a match in its own canonical field order (conntrack, protocol
//! shorthand, registers, tunnel, in_port, VLAN, Ethernet, L3, L4), not in wire
//! order, and folds `eth_type`/`ip_proto` into shorthands such as `arp` or
//! `tcp`. Following it lets an operator compare Iris logs with
//! `ovs-ofctl dump-flows` line by line.

use super::{FieldId, Match, OxmField, Style, CT_STATE_FLAGS, KNOWN_FIELDS, NX1, XXREG_FIELD};
use crate::print::{CHex, Port};
use core::fmt;

/// NXM_OF_* names (class 0x0000) and their widths, by field number.
const NXM0_FIELDS: [(&str, usize); 18] = [
    ("NXM_OF_IN_PORT", 2),
    ("NXM_OF_ETH_DST", 6),
    ("NXM_OF_ETH_SRC", 6),
    ("NXM_OF_ETH_TYPE", 2),
    ("NXM_OF_VLAN_TCI", 2),
    ("NXM_OF_IP_TOS", 1),
    ("NXM_OF_IP_PROTO", 1),
    ("NXM_OF_IP_SRC", 4),
    ("NXM_OF_IP_DST", 4),
    ("NXM_OF_TCP_SRC", 2),
    ("NXM_OF_TCP_DST", 2),
    ("NXM_OF_UDP_SRC", 2),
    ("NXM_OF_UDP_DST", 2),
    ("NXM_OF_ICMP_TYPE", 1),
    ("NXM_OF_ICMP_CODE", 1),
    ("NXM_OF_ARP_OP", 2),
    ("NXM_OF_ARP_SPA", 4),
    ("NXM_OF_ARP_TPA", 4),
];

/// NXM_NX_* fields (class 0x0001) this codec has no type for but that
/// appear as move/load operands, by field number.
const NXM1_NAMES: [(u8, &str, usize); 17] = [
    (17, "NXM_NX_ARP_SHA", 6),
    (18, "NXM_NX_ARP_THA", 6),
    (19, "NXM_NX_IPV6_SRC", 16),
    (20, "NXM_NX_IPV6_DST", 16),
    (21, "NXM_NX_ICMPV6_TYPE", 1),
    (22, "NXM_NX_ICMPV6_CODE", 1),
    (23, "NXM_NX_ND_TARGET", 16),
    (24, "NXM_NX_ND_SLL", 6),
    (25, "NXM_NX_ND_TLL", 6),
    (26, "NXM_NX_IP_FRAG", 1),
    (27, "NXM_NX_IPV6_LABEL", 4),
    (28, "NXM_NX_IP_ECN", 1),
    (29, "NXM_NX_IP_TTL", 1),
    (30, "NXM_NX_COOKIE", 8),
    (34, "NXM_NX_TCP_FLAGS", 2),
    (35, "NXM_NX_DP_HASH", 4),
    (36, "NXM_NX_RECIRC_ID", 4),
];

/// The field's width in bytes, when known.
pub(super) fn field_width(id: FieldId) -> Option<usize> {
    if let Some((_, w, _)) = KNOWN_FIELDS.iter().find(|(k, ..)| *k == id) {
        return Some(*w);
    }
    match (id.class, id.field) {
        (super::class::NXM_0, n) => NXM0_FIELDS.get(usize::from(n)).map(|(_, w)| *w),
        (NX1, 0..=15) => Some(4),
        (NX1, n) if (XXREG_FIELD..XXREG_FIELD + 4).contains(&n) => Some(16),
        (NX1, n) => NXM1_NAMES.iter().find(|(f, ..)| *f == n).map(|(.., w)| *w),
        (super::class::PACKET_REGS, 0..=7) => Some(8),
        _ => None,
    }
}

/// The width in bits OVS gives a field, which is less than its width in
/// bytes for a few fields (VLAN id, DSCP, MPLS label, ...). OVS writes `[]`
/// for a subfield covering exactly these bits.
pub(crate) fn field_bits(id: FieldId) -> Option<u32> {
    let bits = match (id.class, id.field) {
        (super::OFB, 6) => 13, // vlan_vid including OFPVID_PRESENT
        (super::OFB, 7) | (super::OFB, 35) => 3,
        (super::OFB, 8) => 6,
        (super::OFB, 9) => 2,
        (super::OFB, 28) | (super::OFB, 34) => 20,
        (super::OFB, 36) => 1,
        (super::OFB, 39) => 9,
        _ => return field_width(id).map(|w| (w * 8) as u32),
    };
    Some(bits)
}

/// A field's NXM/OXM name as OVS prints it in `move:` and `load:`
/// (`NXM_OF_ETH_SRC`, `NXM_NX_REG0`, `OXM_OF_METADATA`). OVS prefers the
/// Nicira name when a field has both, whichever header was on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubfieldName(pub FieldId);

impl fmt::Display for SubfieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.0;
        if let Some((.., name)) = KNOWN_FIELDS.iter().find(|(k, ..)| *k == id) {
            return f.write_str(name);
        }
        let nxm1 = NXM1_NAMES
            .iter()
            .find(|(k, ..)| id.class == NX1 && *k == id.field);
        match (id.class, id.field, nxm1) {
            (_, _, Some((_, name, _))) => f.write_str(name),
            (super::class::NXM_0, n, _) if usize::from(n) < NXM0_FIELDS.len() => {
                f.write_str(NXM0_FIELDS[usize::from(n)].0)
            }
            (NX1, n @ 0..=15, _) => write!(f, "NXM_NX_REG{n}"),
            (NX1, n, _) if (XXREG_FIELD..XXREG_FIELD + 4).contains(&n) => {
                write!(f, "NXM_NX_XXREG{}", n - XXREG_FIELD)
            }
            (super::class::PACKET_REGS, n @ 0..=7, _) => write!(f, "OXM_OF_PKT_REG{n}"),
            (class, field, _) => match id.experimenter {
                Some(e) => write!(f, "oxm_{class:#06x}_{field}_{e:#010x}"),
                None => write!(f, "oxm_{class:#06x}_{field}"),
            },
        }
    }
}

fn all_ones(len: usize) -> u128 {
    if len >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * len)) - 1
    }
}

/// Prints an integer field's value and mask. An all-ones mask is not shown;
/// masked decimal fields switch to hex, as OVS does (`tp_src=0x50/0xfff0`).
pub(super) fn fmt_int(
    v: u128,
    mask: Option<u128>,
    len: usize,
    style: Style,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let mask = mask.filter(|m| *m != all_ones(len));
    match (style, mask) {
        (Style::CtState, m) => fmt_ct_state(v, m, f),
        (Style::Port, None) => write!(f, "{}", Port(v as u32)),
        (Style::Dec | Style::Addr, None) => write!(f, "{v}"),
        (_, None) => write!(f, "{}", CHex(v)),
        (_, Some(m)) => write!(f, "{}/{}", CHex(v), CHex(m)),
    }
}

/// `ct_state` as OVS prints it: `trk|est` when exact, `+trk-new` when masked.
fn fmt_ct_state(v: u128, mask: Option<u128>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let name = |bit: u128| {
        CT_STATE_FLAGS
            .iter()
            .find(|(b, _)| u128::from(*b) == bit)
            .map(|(_, n)| *n)
    };
    let bits = |x: u128| {
        (0..128)
            .map(move |i| 1u128 << i)
            .filter(move |b| x & b != 0)
    };
    match mask {
        None if v == 0 => f.write_str("0"),
        None => {
            for (i, bit) in bits(v).enumerate() {
                if i > 0 {
                    f.write_str("|")?;
                }
                match name(bit) {
                    Some(n) => f.write_str(n)?,
                    None => write!(f, "{bit:#x}")?,
                }
            }
            Ok(())
        }
        Some(0) => f.write_str("0/0"),
        Some(m) => {
            for bit in bits(m) {
                f.write_str(if v & bit != 0 { "+" } else { "-" })?;
                match name(bit) {
                    Some(n) => f.write_str(n)?,
                    None => write!(f, "{bit:#x}")?,
                }
            }
            Ok(())
        }
    }
}

/// A value printer borrowed from the field itself.
struct Value<'a>(&'a OxmField);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_value(f)
    }
}

/// OVS's protocol shorthand for an exact eth_type (and ip_proto), and
/// whether it also stands for the ip_proto.
fn shorthand(eth_type: u16, ip_proto: Option<u8>) -> Option<(&'static str, bool)> {
    Some(match (eth_type, ip_proto) {
        (0x0800, Some(1)) => ("icmp", true),
        (0x0800, Some(2)) => ("igmp", true),
        (0x0800, Some(6)) => ("tcp", true),
        (0x0800, Some(17)) => ("udp", true),
        (0x0800, Some(132)) => ("sctp", true),
        (0x0800, _) => ("ip", false),
        (0x86dd, Some(58)) => ("icmp6", true),
        (0x86dd, Some(6)) => ("tcp6", true),
        (0x86dd, Some(17)) => ("udp6", true),
        (0x86dd, Some(132)) => ("sctp6", true),
        (0x86dd, _) => ("ipv6", false),
        (0x0806, _) => ("arp", false),
        (0x8035, _) => ("rarp", false),
        (0x8847, _) => ("mpls", false),
        (0x8848, _) => ("mplsm", false),
        _ => return None,
    })
}

/// The VLAN part: OVS merges vlan_vid and vlan_pcp into one TCI and prints
/// `dl_vlan=`/`dl_vlan_pcp=` when that is exact, `vlan_tci=` otherwise.
fn vlan_parts(m: &Match, out: &mut Vec<(u32, String)>) {
    let vid = m.lookup().vlan_vid_raw();
    let pcp = m.lookup().vlan_pcp();
    if vid.is_none() && pcp.is_none() {
        return;
    }
    let (mut tci, mut mask) = (0u16, 0u16);
    if let Some((v, vm)) = vid {
        tci |= v & 0x1fff;
        mask |= vm.unwrap_or(0x1fff) & 0x1fff;
    }
    if let Some(p) = pcp {
        tci |= (u16::from(p & 7) << 13) | 0x1000;
        mask |= 0xf000;
    }
    let (vid_mask, pcp_mask) = (mask & 0x0fff, mask & 0xe000);
    if mask & tci & 0x1000 != 0
        && (vid_mask == 0 || vid_mask == 0x0fff)
        && (pcp_mask == 0 || pcp_mask == 0xe000)
        && (vid_mask | pcp_mask) != 0
    {
        if vid_mask != 0 {
            out.push((120, format!("dl_vlan={}", tci & 0x0fff)));
        }
        if pcp_mask != 0 {
            out.push((121, format!("dl_vlan_pcp={}", tci >> 13)));
        }
    } else if mask == 0xffff {
        out.push((120, format!("vlan_tci={tci:#06x}")));
    } else if mask != 0 {
        out.push((120, format!("vlan_tci={tci:#06x}/{mask:#06x}")));
    }
}

/// OVS has no xreg or xxreg of its own in a flow: they are views of 2 or 4
/// consecutive 32-bit registers, most significant first, and a match on one
/// prints as matches on the registers that are not wildcarded.
fn reg_parts(first: u32, count: u32, v: u128, mask: Option<u128>, out: &mut Vec<(u32, String)>) {
    for i in 0..count {
        let shift = 32 * (count - 1 - i);
        let part = |x: u128| (x >> shift) as u32;
        let m = mask.map_or(u32::MAX, part);
        if m == 0 {
            continue;
        }
        let reg = first + i;
        let text = if m == u32::MAX {
            format!("reg{reg}={}", CHex(u128::from(part(v))))
        } else {
            format!(
                "reg{reg}={}/{}",
                CHex(u128::from(part(v))),
                CHex(u128::from(m))
            )
        };
        out.push((50 + reg, text));
    }
}

impl fmt::Display for Match {
    /// The match as `ovs-ofctl` prints it, e.g.
    /// `arp,in_port=1,dl_vlan=10,arp_tpa=10.0.0.1`. An empty match prints
    /// nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use OxmField as F;
        let lookup = self.lookup();
        let proto = lookup.ip_proto();
        let short = lookup.eth_type().and_then(|t| shorthand(t, proto));
        let (skip_type, skip_proto) = (short.is_some(), short.is_some_and(|(_, p)| p));
        let is_icmp = matches!(
            (lookup.eth_type(), proto),
            (Some(0x0800), Some(1)) | (Some(0x86dd), Some(58))
        );

        let mut parts: Vec<(u32, String)> = Vec::with_capacity(self.fields.len() + 1);
        if let Some((s, _)) = short {
            parts.push((40, s.to_owned()));
        }
        vlan_parts(self, &mut parts);
        for (i, field) in self.fields.iter().enumerate() {
            let v = Value(field);
            let part = match field {
                F::PktMark(..) => (10, format!("pkt_mark={v}")),
                F::ConjId(..) => (20, format!("conj_id={v}")),
                F::CtState(..) => (30, format!("ct_state={v}")),
                F::CtZone(..) => (31, format!("ct_zone={v}")),
                F::CtMark(..) => (32, format!("ct_mark={v}")),
                F::CtLabel(..) => (33, format!("ct_label={v}")),
                F::Reg(n, v, m) => {
                    reg_parts(
                        u32::from(*n),
                        1,
                        u128::from(*v),
                        m.map(u128::from),
                        &mut parts,
                    );
                    continue;
                }
                F::XReg(n, v, m) => {
                    reg_parts(
                        u32::from(*n) * 2,
                        2,
                        u128::from(*v),
                        m.map(u128::from),
                        &mut parts,
                    );
                    continue;
                }
                F::XxReg(n, v, m) => {
                    reg_parts(u32::from(*n) * 4, 4, *v, *m, &mut parts);
                    continue;
                }
                F::TunnelId(..) | F::NxTunId(..) => (90, format!("tun_id={v}")),
                F::TunIpv4Src(..) => (91, format!("tun_src={v}")),
                F::TunIpv4Dst(..) => (92, format!("tun_dst={v}")),
                F::Metadata(..) => (100, format!("metadata={v}")),
                F::InPort(..) => (110, format!("in_port={v}")),
                F::InPhyPort(..) => (111, format!("in_phy_port={v}")),
                F::VlanVid(..) | F::VlanPcp(..) => continue,
                F::EthSrc(..) => (130, format!("dl_src={v}")),
                F::EthDst(..) => (131, format!("dl_dst={v}")),
                F::EthType(t) if !skip_type => (140, format!("dl_type={t:#06x}")),
                F::EthType(_) => continue,
                F::Ipv6Src(..) => (150, format!("ipv6_src={v}")),
                F::Ipv6Dst(..) => (151, format!("ipv6_dst={v}")),
                F::Ipv6Flabel(..) => (152, format!("ipv6_label={v}")),
                F::Ipv4Src(..) => (150, format!("nw_src={v}")),
                F::Ipv4Dst(..) => (151, format!("nw_dst={v}")),
                F::ArpSpa(..) => (150, format!("arp_spa={v}")),
                F::ArpTpa(..) => (151, format!("arp_tpa={v}")),
                F::IpProto(p) if !skip_proto => (160, format!("nw_proto={p}")),
                F::IpProto(_) => continue,
                F::ArpOp(..) => (160, format!("arp_op={v}")),
                F::ArpSha(..) => (170, format!("arp_sha={v}")),
                F::ArpTha(..) => (171, format!("arp_tha={v}")),
                F::IpDscp(d) => (180, format!("nw_tos={}", u16::from(*d) << 2)),
                F::IpEcn(..) => (181, format!("nw_ecn={v}")),
                F::MplsLabel(..) => (190, format!("mpls_label={v}")),
                F::MplsTc(..) => (191, format!("mpls_tc={v}")),
                F::MplsBos(..) => (192, format!("mpls_bos={v}")),
                F::Icmpv4Type(..) | F::Icmpv6Type(..) => (200, format!("icmp_type={v}")),
                F::Icmpv4Code(..) | F::Icmpv6Code(..) => (201, format!("icmp_code={v}")),
                F::Ipv6NdTarget(..) => (202, format!("nd_target={v}")),
                F::Ipv6NdSll(..) => (203, format!("nd_sll={v}")),
                F::Ipv6NdTll(..) => (204, format!("nd_tll={v}")),
                F::TcpSrc(..) | F::UdpSrc(..) | F::SctpSrc(..) if !is_icmp => {
                    (200, format!("tp_src={v}"))
                }
                F::TcpDst(..) | F::UdpDst(..) | F::SctpDst(..) if !is_icmp => {
                    (201, format!("tp_dst={v}"))
                }
                F::TcpSrc(..) | F::UdpSrc(..) | F::SctpSrc(..) => (205, field.to_string()),
                F::TcpDst(..) | F::UdpDst(..) | F::SctpDst(..) => (206, field.to_string()),
                F::PbbIsid(..) => (210, format!("pbb_isid={v}")),
                F::Ipv6Exthdr(..) => (211, format!("ipv6_exthdr={v}")),
                F::Raw(_) => (300 + i as u32, field.to_string()),
            };
            parts.push(part);
        }
        parts.sort_by_key(|(rank, _)| *rank);
        crate::print::write_comma_list(f, parts.iter().map(|(_, p)| p))
    }
}
