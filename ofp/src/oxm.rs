//! OXM match fields (OpenFlow 1.3.5 §7.2.3) and the NXM fields OVS needs.
//!
//! Two layers:
//! - [`OxmIter`] walks the TLVs of a match without allocating and yields
//!   [`OxmTlv`] views (header, experimenter id, value and mask slices).
//! - [`OxmField`] is the typed form: all 40 OpenFlow-basic fields, the
//!   Nicira registers and tunnel/conntrack fields OVS uses, and a raw
//!   fallback ([`RawOxm`]) for anything else, so unknown fields round-trip.
//!
//! [`Match`] keeps its fields in wire order; re-encoding a decoded match gives
//! the same bytes back.

mod display;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode, Result};
use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) use display::field_bits;
pub use display::SubfieldName;

/// OXM classes (`ofp_oxm_class`) and the Nicira NXM classes.
pub mod class {
    /// NXM_OF_*: the OpenFlow 1.0 fields in Nicira's encoding.
    pub const NXM_0: u16 = 0x0000;
    /// NXM_NX_*: Nicira's own fields (registers, tunnel, conntrack).
    pub const NXM_1: u16 = 0x0001;
    /// OFPXMC_OPENFLOW_BASIC.
    pub const OPENFLOW_BASIC: u16 = 0x8000;
    /// OFPXMC_PACKET_REGS (OpenFlow 1.5), where OVS puts its 64-bit xregs.
    pub const PACKET_REGS: u16 = 0x8001;
    /// OFPXMC_EXPERIMENTER: a 4-byte experimenter id follows the header.
    pub const EXPERIMENTER: u16 = 0xffff;
}

const OFB: u16 = class::OPENFLOW_BASIC;
const NX1: u16 = class::NXM_1;

/// `ofp_match.type` for OXM matches (OFPMT_OXM).
pub const OFPMT_OXM: u16 = 1;

/// OFPVID_PRESENT: set in `vlan_vid` when a VLAN tag is present.
pub const OFPVID_PRESENT: u16 = 0x1000;
/// OFPVID_NONE: `vlan_vid` value matching untagged packets.
pub const OFPVID_NONE: u16 = 0x0000;

/// Builds a 32-bit OXM/NXM header: class (16) | field (7) | hasmask (1) | length (8).
pub const fn oxm_header(class: u16, field: u8, has_mask: bool, length: u8) -> u32 {
    ((class as u32) << 16)
        | (((field & 0x7f) as u32) << 9)
        | ((has_mask as u32) << 8)
        | length as u32
}

/// The identity of a match field: class, field number and, for the
/// experimenter class, the experimenter id. Length and mask bit are not part
/// of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId {
    pub class: u16,
    pub field: u8,
    pub experimenter: Option<u32>,
}

impl FieldId {
    pub const fn new(class: u16, field: u8) -> Self {
        Self {
            class,
            field,
            experimenter: None,
        }
    }

    pub const fn from_header(header: u32, experimenter: Option<u32>) -> Self {
        Self {
            class: (header >> 16) as u16,
            field: ((header >> 9) & 0x7f) as u8,
            experimenter,
        }
    }

    /// NXM_NX_REG`n` (32 bits). Only 0..=15 exist.
    pub const fn reg(n: u8) -> Self {
        Self::new(NX1, n)
    }

    /// OVS's 64-bit xreg`n` (OXM_OF_PKT_REG`n`). Only 0..=7 exist.
    pub const fn xreg(n: u8) -> Self {
        Self::new(class::PACKET_REGS, n)
    }

    /// OVS's 128-bit xxreg`n` (NXM_NX_XXREG`n`). Only 0..=3 exist.
    pub const fn xxreg(n: u8) -> Self {
        Self::new(NX1, XXREG_FIELD + n)
    }

    /// The field's width in bytes, when this codec knows the field.
    pub fn width(self) -> Option<usize> {
        display::field_width(self)
    }
}

/// NXM_NX_XXREG0's field number.
const XXREG_FIELD: u8 = 111;

/// A field's value type: its width on the wire and how it is read and written.
pub trait OxmValue: Copy + fmt::Debug + PartialEq + Eq {
    /// Width on the wire in bytes.
    const LEN: usize;
    /// Reads a value from exactly `LEN` bytes; `None` for any other length.
    fn from_bytes(b: &[u8]) -> Option<Self>;
    fn put(&self, buf: &mut Vec<u8>);
    /// The value as an unsigned integer, for integer fields.
    fn to_u128(&self) -> Option<u128> {
        None
    }
    /// Prints `self` (and `mask`, if any) in the given style.
    fn fmt_with(
        &self,
        mask: Option<&Self>,
        style: Style,
        f: &mut fmt::Formatter<'_>,
    ) -> fmt::Result;
}

/// How a field's value is printed, following OVS's per-field conventions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Dec,
    Hex,
    Port,
    CtState,
    Addr,
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl OxmValue for $t {
            const LEN: usize = core::mem::size_of::<$t>();
            fn from_bytes(b: &[u8]) -> Option<Self> {
                b.try_into().ok().map(<$t>::from_be_bytes)
            }
            fn put(&self, buf: &mut Vec<u8>) {
                buf.put_slice(&self.to_be_bytes());
            }
            fn to_u128(&self) -> Option<u128> {
                Some(u128::from(*self))
            }
            fn fmt_with(&self, mask: Option<&Self>, style: Style, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                display::fmt_int(u128::from(*self), mask.map(|m| u128::from(*m)), Self::LEN, style, f)
            }
        }
    )*};
}
int_value!(u8, u16, u32, u64, u128);

/// A 24-bit value (PBB I-SID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct U24(u32);

impl U24 {
    /// The low 24 bits of `v`.
    pub const fn new(v: u32) -> Self {
        Self(v & 0x00ff_ffff)
    }
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl OxmValue for U24 {
    const LEN: usize = 3;
    fn from_bytes(b: &[u8]) -> Option<Self> {
        match b {
            [a, b, c] => Some(Self(u32::from_be_bytes([0, *a, *b, *c]))),
            _ => None,
        }
    }
    fn put(&self, buf: &mut Vec<u8>) {
        buf.put_slice(&self.0.to_be_bytes()[1..]);
    }
    fn to_u128(&self) -> Option<u128> {
        Some(u128::from(self.0))
    }
    fn fmt_with(
        &self,
        mask: Option<&Self>,
        style: Style,
        f: &mut fmt::Formatter<'_>,
    ) -> fmt::Result {
        display::fmt_int(
            u128::from(self.0),
            mask.map(|m| u128::from(m.0)),
            3,
            style,
            f,
        )
    }
}

impl OxmValue for [u8; 6] {
    const LEN: usize = 6;
    fn from_bytes(b: &[u8]) -> Option<Self> {
        b.try_into().ok()
    }
    fn put(&self, buf: &mut Vec<u8>) {
        buf.put_slice(self);
    }
    fn fmt_with(&self, mask: Option<&Self>, _: Style, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::print::fmt_mac(f, self, mask)
    }
}

impl OxmValue for Ipv4Addr {
    const LEN: usize = 4;
    fn from_bytes(b: &[u8]) -> Option<Self> {
        <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
    }
    fn put(&self, buf: &mut Vec<u8>) {
        buf.put_slice(&self.octets());
    }
    fn fmt_with(&self, mask: Option<&Self>, _: Style, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::print::fmt_ipv4(f, *self, mask.copied())
    }
}

impl OxmValue for Ipv6Addr {
    const LEN: usize = 16;
    fn from_bytes(b: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from)
    }
    fn put(&self, buf: &mut Vec<u8>) {
        buf.put_slice(&self.octets());
    }
    fn fmt_with(&self, mask: Option<&Self>, _: Style, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::print::fmt_ipv6(f, *self, mask.copied())
    }
}

/// A field this codec has no type for, kept as bytes so it re-encodes exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawOxm {
    pub class: u16,
    pub field: u8,
    /// Present exactly when `class` is [`class::EXPERIMENTER`].
    pub experimenter: Option<u32>,
    pub value: Vec<u8>,
    pub mask: Option<Vec<u8>>,
}

impl RawOxm {
    fn from_tlv(t: &OxmTlv<'_>) -> Self {
        Self {
            class: t.class(),
            field: t.field(),
            experimenter: t.experimenter,
            value: t.value.to_vec(),
            mask: t.mask.map(<[u8]>::to_vec),
        }
    }
}

/// A non-maskable field's value; a mask is BAD_MASK, a wrong width BAD_LEN.
fn exact<T: OxmValue>(t: &OxmTlv<'_>) -> Result<T> {
    if t.mask.is_some() {
        return Err(DecodeError::bad_value(
            "oxm",
            u64::from(t.header),
            ErrorCode::MATCH_BAD_MASK,
        ));
    }
    T::from_bytes(t.value).ok_or_else(|| bad_width(t))
}

/// A maskable field's value and optional mask; a wrong width is BAD_LEN.
fn masked<T: OxmValue>(t: &OxmTlv<'_>) -> Result<(T, Option<T>)> {
    let v = T::from_bytes(t.value).ok_or_else(|| bad_width(t))?;
    let m = match t.mask {
        Some(m) => Some(T::from_bytes(m).ok_or_else(|| bad_width(t))?),
        None => None,
    };
    Ok((v, m))
}

fn bad_width(t: &OxmTlv<'_>) -> DecodeError {
    DecodeError::bad_len_code("oxm", usize::from(t.header as u8), ErrorCode::MATCH_BAD_LEN)
}

fn put_exact<T: OxmValue>(buf: &mut Vec<u8>, class: u16, field: u8, v: &T) {
    buf.put_u32(oxm_header(class, field, false, T::LEN as u8));
    v.put(buf);
}

fn put_masked<T: OxmValue>(buf: &mut Vec<u8>, class: u16, field: u8, v: &T, m: Option<&T>) {
    match m {
        None => put_exact(buf, class, field, v),
        Some(m) => {
            buf.put_u32(oxm_header(class, field, true, (2 * T::LEN) as u8));
            v.put(buf);
            m.put(buf);
        }
    }
}

macro_rules! oxm_fields {
    (
        exact { $(
            $(#[$em:meta])*
            $ev:ident($et:ty) = ($ec:ident, $ef:literal), $eid:ident, $eb:ident,
                $ename:literal, $enxm:literal, $estyle:ident;
        )* }
        masked { $(
            $(#[$mm:meta])*
            $mv:ident($mt:ty) = ($mc:ident, $mf:literal), $mid:ident, $mb:ident / $mbm:ident,
                $mname:literal, $mnxm:literal, $mstyle:ident;
        )* }
    ) => {
        /// One match field with its typed value (and mask, for maskable fields).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum OxmField {
            $( $(#[$em])* $ev($et), )*
            $( $(#[$mm])* $mv($mt, Option<$mt>), )*
            /// NXM_NX_REG`n` (class 0x0001, field `n`, 0..=15).
            Reg(u8, u32, Option<u32>),
            /// OVS xreg`n` (class 0x8001, field `n`, 0..=7).
            XReg(u8, u64, Option<u64>),
            /// OVS xxreg`n` (NXM_NX_XXREG`n`, class 0x0001, field 111+`n`, 0..=3).
            XxReg(u8, u128, Option<u128>),
            /// Any other field, including experimenter-class ones.
            Raw(RawOxm),
        }

        impl FieldId {
            $( pub const $eid: FieldId = FieldId::new($ec, $ef); )*
            $( pub const $mid: FieldId = FieldId::new($mc, $mf); )*
        }

        impl OxmField {
            fn decode_known(t: &OxmTlv<'_>) -> Option<Result<Self>> {
                Some(match (t.class(), t.field()) {
                    $( ($ec, $ef) => exact(t).map(Self::$ev), )*
                    $( ($mc, $mf) => masked(t).map(|(v, m)| Self::$mv(v, m)), )*
                    _ => return None,
                })
            }

            fn emit_known(&self, buf: &mut Vec<u8>) -> bool {
                match self {
                    $( Self::$ev(v) => put_exact(buf, $ec, $ef, v), )*
                    $( Self::$mv(v, m) => put_masked(buf, $mc, $mf, v, m.as_ref()), )*
                    _ => return false,
                }
                true
            }

            fn known_id(&self) -> Option<FieldId> {
                Some(match self {
                    $( Self::$ev(_) => FieldId::$eid, )*
                    $( Self::$mv(..) => FieldId::$mid, )*
                    _ => return None,
                })
            }

            fn known_has_mask(&self) -> Option<bool> {
                Some(match self {
                    $( Self::$ev(_) => false, )*
                    $( Self::$mv(_, m) => m.is_some(), )*
                    _ => return None,
                })
            }

            fn known_name(&self) -> Option<&'static str> {
                Some(match self {
                    $( Self::$ev(_) => $ename, )*
                    $( Self::$mv(..) => $mname, )*
                    _ => return None,
                })
            }

            fn fmt_known(&self, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
                Some(match self {
                    $( Self::$ev(v) => v.fmt_with(None, Style::$estyle, f), )*
                    $( Self::$mv(v, m) => v.fmt_with(m.as_ref(), Style::$mstyle, f), )*
                    _ => return None,
                })
            }
        }

        /// (id, width in bytes, OVS's preferred NXM/OXM name) of every typed field.
        const KNOWN_FIELDS: &[(FieldId, usize, &str)] = &[
            $( (FieldId::$eid, <$et as OxmValue>::LEN, $enxm), )*
            $( (FieldId::$mid, <$mt as OxmValue>::LEN, $mnxm), )*
        ];

        impl Match {
            $(
                #[doc = concat!("Adds (or replaces) an exact `", $ename, "` match.")]
                pub fn $eb(self, v: $et) -> Self {
                    self.with(OxmField::$ev(v))
                }
            )*
            $(
                #[doc = concat!("Adds (or replaces) an exact `", $mname, "` match.")]
                pub fn $mb(self, v: $mt) -> Self {
                    self.with(OxmField::$mv(v, None))
                }
                #[doc = concat!("Adds (or replaces) a masked `", $mname, "` match.")]
                pub fn $mbm(self, v: $mt, mask: $mt) -> Self {
                    self.with(OxmField::$mv(v, Some(mask)))
                }
            )*
        }

        impl Lookup<'_> {
            $(
                #[doc = concat!("The `", $ename, "` value, if the match has one.")]
                pub fn $eb(&self) -> Option<$et> {
                    self.0.fields.iter().find_map(|f| match f {
                        OxmField::$ev(v) => Some(*v),
                        _ => None,
                    })
                }
            )*
            $(
                #[doc = concat!("The `", $mname, "` value and mask, if the match has one.")]
                pub fn $mb(&self) -> Option<($mt, Option<$mt>)> {
                    self.0.fields.iter().find_map(|f| match f {
                        OxmField::$mv(v, m) => Some((*v, *m)),
                        _ => None,
                    })
                }
            )*
        }
    };
}

oxm_fields! {
    exact {
        /// OXM_OF_IN_PORT: ingress port (may be a reserved port such as LOCAL).
        InPort(u32) = (OFB, 0), IN_PORT, in_port, "in_port", "OXM_OF_IN_PORT", Port;
        /// OXM_OF_IN_PHY_PORT.
        InPhyPort(u32) = (OFB, 1), IN_PHY_PORT, in_phy_port, "in_phy_port", "OXM_OF_IN_PHY_PORT", Port;
        /// OXM_OF_ETH_TYPE.
        EthType(u16) = (OFB, 5), ETH_TYPE, eth_type, "eth_type", "NXM_OF_ETH_TYPE", Hex;
        /// OXM_OF_VLAN_PCP (3 bits).
        VlanPcp(u8) = (OFB, 7), VLAN_PCP, vlan_pcp, "vlan_pcp", "OXM_OF_VLAN_PCP", Dec;
        /// OXM_OF_IP_DSCP (6 bits, the DSCP without the ECN bits).
        IpDscp(u8) = (OFB, 8), IP_DSCP, ip_dscp, "ip_dscp", "OXM_OF_IP_DSCP", Dec;
        /// OXM_OF_IP_ECN (2 bits).
        IpEcn(u8) = (OFB, 9), IP_ECN, ip_ecn, "nw_ecn", "NXM_NX_IP_ECN", Dec;
        /// OXM_OF_IP_PROTO.
        IpProto(u8) = (OFB, 10), IP_PROTO, ip_proto, "nw_proto", "NXM_OF_IP_PROTO", Dec;
        /// OXM_OF_ICMPV4_TYPE.
        Icmpv4Type(u8) = (OFB, 19), ICMPV4_TYPE, icmpv4_type, "icmp_type", "NXM_OF_ICMP_TYPE", Dec;
        /// OXM_OF_ICMPV4_CODE.
        Icmpv4Code(u8) = (OFB, 20), ICMPV4_CODE, icmpv4_code, "icmp_code", "NXM_OF_ICMP_CODE", Dec;
        /// OXM_OF_ARP_OP.
        ArpOp(u16) = (OFB, 21), ARP_OP, arp_op, "arp_op", "NXM_OF_ARP_OP", Dec;
        /// OXM_OF_ICMPV6_TYPE.
        Icmpv6Type(u8) = (OFB, 29), ICMPV6_TYPE, icmpv6_type, "icmpv6_type", "NXM_NX_ICMPV6_TYPE", Dec;
        /// OXM_OF_ICMPV6_CODE.
        Icmpv6Code(u8) = (OFB, 30), ICMPV6_CODE, icmpv6_code, "icmpv6_code", "NXM_NX_ICMPV6_CODE", Dec;
        /// OXM_OF_MPLS_LABEL (20 bits).
        MplsLabel(u32) = (OFB, 34), MPLS_LABEL, mpls_label, "mpls_label", "OXM_OF_MPLS_LABEL", Dec;
        /// OXM_OF_MPLS_TC (3 bits).
        MplsTc(u8) = (OFB, 35), MPLS_TC, mpls_tc, "mpls_tc", "OXM_OF_MPLS_TC", Dec;
        /// OXM_OF_MPLS_BOS (1 bit).
        MplsBos(u8) = (OFB, 36), MPLS_BOS, mpls_bos, "mpls_bos", "OXM_OF_MPLS_BOS", Dec;
        /// NXM_NX_CONJ_ID: the conjunction a packet matched.
        ConjId(u32) = (NX1, 37), CONJ_ID, conj_id, "conj_id", "NXM_NX_CONJ_ID", Dec;
        /// NXM_NX_CT_ZONE: the connection tracking zone.
        CtZone(u16) = (NX1, 106), CT_ZONE, ct_zone, "ct_zone", "NXM_NX_CT_ZONE", Dec;
    }
    masked {
        /// OXM_OF_METADATA: the pipeline's metadata register.
        Metadata(u64) = (OFB, 2), METADATA, metadata / metadata_masked,
            "metadata", "OXM_OF_METADATA", Hex;
        /// OXM_OF_ETH_DST.
        EthDst([u8; 6]) = (OFB, 3), ETH_DST, eth_dst / eth_dst_masked,
            "eth_dst", "NXM_OF_ETH_DST", Addr;
        /// OXM_OF_ETH_SRC.
        EthSrc([u8; 6]) = (OFB, 4), ETH_SRC, eth_src / eth_src_masked,
            "eth_src", "NXM_OF_ETH_SRC", Addr;
        /// OXM_OF_VLAN_VID: the VLAN id with [`OFPVID_PRESENT`] set, or
        /// [`OFPVID_NONE`]. The [`Match::vlan_vid`] builder sets the present bit.
        VlanVid(u16) = (OFB, 6), VLAN_VID, vlan_vid_raw / vlan_vid_masked,
            "vlan_vid", "OXM_OF_VLAN_VID", Dec;
        /// OXM_OF_IPV4_SRC.
        Ipv4Src(Ipv4Addr) = (OFB, 11), IPV4_SRC, ipv4_src / ipv4_src_masked,
            "ip_src", "NXM_OF_IP_SRC", Addr;
        /// OXM_OF_IPV4_DST.
        Ipv4Dst(Ipv4Addr) = (OFB, 12), IPV4_DST, ipv4_dst / ipv4_dst_masked,
            "ip_dst", "NXM_OF_IP_DST", Addr;
        /// OXM_OF_TCP_SRC (maskable in OVS, not in the 1.3 spec).
        TcpSrc(u16) = (OFB, 13), TCP_SRC, tcp_src / tcp_src_masked,
            "tcp_src", "NXM_OF_TCP_SRC", Dec;
        /// OXM_OF_TCP_DST.
        TcpDst(u16) = (OFB, 14), TCP_DST, tcp_dst / tcp_dst_masked,
            "tcp_dst", "NXM_OF_TCP_DST", Dec;
        /// OXM_OF_UDP_SRC.
        UdpSrc(u16) = (OFB, 15), UDP_SRC, udp_src / udp_src_masked,
            "udp_src", "NXM_OF_UDP_SRC", Dec;
        /// OXM_OF_UDP_DST.
        UdpDst(u16) = (OFB, 16), UDP_DST, udp_dst / udp_dst_masked,
            "udp_dst", "NXM_OF_UDP_DST", Dec;
        /// OXM_OF_SCTP_SRC.
        SctpSrc(u16) = (OFB, 17), SCTP_SRC, sctp_src / sctp_src_masked,
            "sctp_src", "OXM_OF_SCTP_SRC", Dec;
        /// OXM_OF_SCTP_DST.
        SctpDst(u16) = (OFB, 18), SCTP_DST, sctp_dst / sctp_dst_masked,
            "sctp_dst", "OXM_OF_SCTP_DST", Dec;
        /// OXM_OF_ARP_SPA.
        ArpSpa(Ipv4Addr) = (OFB, 22), ARP_SPA, arp_spa / arp_spa_masked,
            "arp_spa", "NXM_OF_ARP_SPA", Addr;
        /// OXM_OF_ARP_TPA.
        ArpTpa(Ipv4Addr) = (OFB, 23), ARP_TPA, arp_tpa / arp_tpa_masked,
            "arp_tpa", "NXM_OF_ARP_TPA", Addr;
        /// OXM_OF_ARP_SHA.
        ArpSha([u8; 6]) = (OFB, 24), ARP_SHA, arp_sha / arp_sha_masked,
            "arp_sha", "NXM_NX_ARP_SHA", Addr;
        /// OXM_OF_ARP_THA.
        ArpTha([u8; 6]) = (OFB, 25), ARP_THA, arp_tha / arp_tha_masked,
            "arp_tha", "NXM_NX_ARP_THA", Addr;
        /// OXM_OF_IPV6_SRC.
        Ipv6Src(Ipv6Addr) = (OFB, 26), IPV6_SRC, ipv6_src / ipv6_src_masked,
            "ipv6_src", "NXM_NX_IPV6_SRC", Addr;
        /// OXM_OF_IPV6_DST.
        Ipv6Dst(Ipv6Addr) = (OFB, 27), IPV6_DST, ipv6_dst / ipv6_dst_masked,
            "ipv6_dst", "NXM_NX_IPV6_DST", Addr;
        /// OXM_OF_IPV6_FLABEL (20 bits).
        Ipv6Flabel(u32) = (OFB, 28), IPV6_FLABEL, ipv6_flabel / ipv6_flabel_masked,
            "ipv6_label", "NXM_NX_IPV6_LABEL", Hex;
        /// OXM_OF_IPV6_ND_TARGET.
        Ipv6NdTarget(Ipv6Addr) = (OFB, 31), IPV6_ND_TARGET, ipv6_nd_target / ipv6_nd_target_masked,
            "nd_target", "NXM_NX_ND_TARGET", Addr;
        /// OXM_OF_IPV6_ND_SLL.
        Ipv6NdSll([u8; 6]) = (OFB, 32), IPV6_ND_SLL, ipv6_nd_sll / ipv6_nd_sll_masked,
            "nd_sll", "NXM_NX_ND_SLL", Addr;
        /// OXM_OF_IPV6_ND_TLL.
        Ipv6NdTll([u8; 6]) = (OFB, 33), IPV6_ND_TLL, ipv6_nd_tll / ipv6_nd_tll_masked,
            "nd_tll", "NXM_NX_ND_TLL", Addr;
        /// OXM_OF_PBB_ISID.
        PbbIsid(U24) = (OFB, 37), PBB_ISID, pbb_isid / pbb_isid_masked,
            "pbb_isid", "OXM_OF_PBB_ISID", Hex;
        /// OXM_OF_TUNNEL_ID (OVS's `tun_id`; the GRE key).
        TunnelId(u64) = (OFB, 38), TUNNEL_ID, tunnel_id / tunnel_id_masked,
            "tun_id", "NXM_NX_TUN_ID", Hex;
        /// OXM_OF_IPV6_EXTHDR.
        Ipv6Exthdr(u16) = (OFB, 39), IPV6_EXTHDR, ipv6_exthdr / ipv6_exthdr_masked,
            "ipv6_exthdr", "OXM_OF_IPV6_EXTHDR", Hex;
        /// NXM_NX_TUN_ID: the same field as [`OxmField::TunnelId`] in
        /// Nicira's encoding; kept apart so it re-encodes as it came.
        NxTunId(u64) = (NX1, 16), NX_TUN_ID, nx_tun_id / nx_tun_id_masked,
            "tun_id", "NXM_NX_TUN_ID", Hex;
        /// NXM_NX_TUN_IPV4_SRC: outer source address of the tunnel.
        TunIpv4Src(Ipv4Addr) = (NX1, 31), TUN_IPV4_SRC, tun_ipv4_src / tun_ipv4_src_masked,
            "tun_src", "NXM_NX_TUN_IPV4_SRC", Addr;
        /// NXM_NX_TUN_IPV4_DST: outer destination address of the tunnel.
        TunIpv4Dst(Ipv4Addr) = (NX1, 32), TUN_IPV4_DST, tun_ipv4_dst / tun_ipv4_dst_masked,
            "tun_dst", "NXM_NX_TUN_IPV4_DST", Addr;
        /// NXM_NX_PKT_MARK: the skb mark.
        PktMark(u32) = (NX1, 33), PKT_MARK, pkt_mark / pkt_mark_masked,
            "pkt_mark", "NXM_NX_PKT_MARK", Hex;
        /// NXM_NX_CT_STATE: connection tracking state flags (`CT_STATE_*`).
        CtState(u32) = (NX1, 105), CT_STATE, ct_state / ct_state_masked,
            "ct_state", "NXM_NX_CT_STATE", CtState;
        /// NXM_NX_CT_MARK.
        CtMark(u32) = (NX1, 107), CT_MARK, ct_mark / ct_mark_masked,
            "ct_mark", "NXM_NX_CT_MARK", Hex;
        /// NXM_NX_CT_LABEL.
        CtLabel(u128) = (NX1, 108), CT_LABEL, ct_label / ct_label_masked,
            "ct_label", "NXM_NX_CT_LABEL", Hex;
    }
}

/// `ct_state` flag bits, in the order OVS prints them.
pub const CT_STATE_FLAGS: [(u32, &str); 8] = [
    (0x01, "new"),
    (0x02, "est"),
    (0x04, "rel"),
    (0x08, "rpl"),
    (0x10, "inv"),
    (0x20, "trk"),
    (0x40, "snat"),
    (0x80, "dnat"),
];

impl OxmField {
    /// Reads one TLV (as inside a set-field action) and types it.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self> {
        Self::from_tlv(&read_tlv(r)?)
    }

    /// Types a TLV. A known field whose length disagrees with its width is
    /// BAD_LEN; a mask on a field that cannot be masked is BAD_MASK.
    pub fn from_tlv(t: &OxmTlv<'_>) -> Result<Self> {
        if let Some(r) = Self::decode_known(t) {
            let f = r?;
            return match f.out_of_range() {
                Some(v) => Err(DecodeError::bad_value("oxm", v, ErrorCode::MATCH_BAD_VALUE)),
                None => Ok(f),
            };
        }
        let field = t.field();
        match t.class() {
            NX1 if field < 16 => masked(t).map(|(v, m)| Self::Reg(field, v, m)),
            NX1 if (XXREG_FIELD..XXREG_FIELD + 4).contains(&field) => {
                masked(t).map(|(v, m)| Self::XxReg(field - XXREG_FIELD, v, m))
            }
            class::PACKET_REGS if field < 8 => masked(t).map(|(v, m)| Self::XReg(field, v, m)),
            _ => Ok(Self::Raw(RawOxm::from_tlv(t))),
        }
    }

    /// The value, if it has bits set beyond the field's width (a 3-bit PCP
    /// of 9, a 20-bit label of 2^20): OVS answers those with BAD_VALUE.
    fn out_of_range(&self) -> Option<u64> {
        let (v, bits) = match self {
            Self::VlanVid(v, _) => (u64::from(*v), 13),
            Self::VlanPcp(v) | Self::MplsTc(v) => (u64::from(*v), 3),
            Self::IpDscp(v) => (u64::from(*v), 6),
            Self::IpEcn(v) => (u64::from(*v), 2),
            Self::MplsBos(v) => (u64::from(*v), 1),
            Self::MplsLabel(v) | Self::Ipv6Flabel(v, _) => (u64::from(*v), 20),
            _ => return None,
        };
        (v >> bits != 0).then_some(v)
    }

    pub fn id(&self) -> FieldId {
        if let Some(id) = self.known_id() {
            return id;
        }
        match self {
            Self::Reg(n, ..) => FieldId::reg(*n),
            Self::XReg(n, ..) => FieldId::xreg(*n),
            Self::XxReg(n, ..) => FieldId::xxreg(*n),
            Self::Raw(r) => FieldId {
                class: r.class,
                field: r.field,
                experimenter: r.experimenter,
            },
            _ => unreachable!("every typed field has an id in the table"),
        }
    }

    /// Whether the field carries a mask on the wire.
    pub fn has_mask(&self) -> bool {
        match (self.known_has_mask(), self) {
            (Some(m), _) => m,
            (None, Self::Reg(_, _, m)) => m.is_some(),
            (None, Self::XReg(_, _, m)) => m.is_some(),
            (None, Self::XxReg(_, _, m)) => m.is_some(),
            (None, Self::Raw(r)) => r.mask.is_some(),
            (None, _) => unreachable!("every typed field is in the table"),
        }
    }

    /// The name OVS gives the field (`eth_src`, `tun_id`, `reg3`, ...), as
    /// used in `set_field:...->NAME`.
    pub fn name(&self) -> String {
        match (self.known_name(), self) {
            (Some(n), _) => n.to_owned(),
            (None, Self::Reg(n, ..)) => format!("reg{n}"),
            (None, Self::XReg(n, ..)) => format!("xreg{n}"),
            (None, Self::XxReg(n, ..)) => format!("xxreg{n}"),
            (None, _) => SubfieldName(self.id()).to_string(),
        }
    }

    /// Writes the TLV (header, experimenter id, value, mask).
    pub fn emit(&self, buf: &mut Vec<u8>) {
        if self.emit_known(buf) {
            return;
        }
        match self {
            Self::Reg(n, v, m) => put_masked(buf, NX1, *n, v, m.as_ref()),
            Self::XReg(n, v, m) => put_masked(buf, class::PACKET_REGS, *n, v, m.as_ref()),
            Self::XxReg(n, v, m) => put_masked(buf, NX1, XXREG_FIELD + n, v, m.as_ref()),
            Self::Raw(r) => {
                let exp_len = if r.experimenter.is_some() { 4 } else { 0 };
                let len = exp_len + r.value.len() + r.mask.as_ref().map_or(0, Vec::len);
                let len = u8::try_from(len).unwrap_or(u8::MAX);
                buf.put_u32(oxm_header(r.class, r.field, r.mask.is_some(), len));
                if let Some(e) = r.experimenter {
                    buf.put_u32(e);
                }
                buf.put_slice(&r.value);
                if let Some(m) = &r.mask {
                    buf.put_slice(m);
                }
            }
            _ => unreachable!("every typed field is emitted by the table"),
        }
    }

    /// Prints the value (and `/mask`) the way OVS prints this field's values
    /// in actions, e.g. `10.0.0.1`, `0x1f`, `00:11:22:33:44:55`.
    pub fn fmt_value(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = self.fmt_known(f) {
            return r;
        }
        match self {
            Self::Reg(_, v, m) => v.fmt_with(m.as_ref(), Style::Hex, f),
            Self::XReg(_, v, m) => v.fmt_with(m.as_ref(), Style::Hex, f),
            Self::XxReg(_, v, m) => v.fmt_with(m.as_ref(), Style::Hex, f),
            Self::Raw(r) => {
                write!(f, "0x{}", crate::codec::Hex(&r.value))?;
                match &r.mask {
                    Some(m) => write!(f, "/0x{}", crate::codec::Hex(m)),
                    None => Ok(()),
                }
            }
            _ => unreachable!("every typed field is printed by the table"),
        }
    }
}

impl fmt::Display for OxmField {
    /// `name=value[/mask]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.name())?;
        self.fmt_value(f)
    }
}

/// A zero-copy view of one OXM TLV inside a match's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxmTlv<'a> {
    /// The 32-bit OXM header: class (16) | field (7) | hasmask (1) | length (8).
    pub header: u32,
    /// For experimenter-class OXMs, the experimenter id that follows the header.
    pub experimenter: Option<u32>,
    pub value: &'a [u8],
    pub mask: Option<&'a [u8]>,
}

impl OxmTlv<'_> {
    pub fn class(&self) -> u16 {
        (self.header >> 16) as u16
    }
    pub fn field(&self) -> u8 {
        ((self.header >> 9) & 0x7f) as u8
    }
    pub fn has_mask(&self) -> bool {
        self.header & 0x100 != 0
    }
    pub fn id(&self) -> FieldId {
        FieldId::from_header(self.header, self.experimenter)
    }
}

/// Reads one TLV. Every failure is a BAD_MATCH/BAD_LEN: the TLV's own length
/// does not fit the bytes that are there.
fn read_tlv<'a>(r: &mut Reader<'a>) -> Result<OxmTlv<'a>> {
    let bad = |len: usize| DecodeError::bad_len_code("oxm", len, ErrorCode::MATCH_BAD_LEN);
    let header = r.u32().map_err(|_| bad(r.remaining()))?;
    let len = usize::from(header as u8);
    let mut body = r.sub(len, "oxm").map_err(|_| bad(len))?;
    let experimenter = if (header >> 16) as u16 == class::EXPERIMENTER {
        Some(body.u32().map_err(|_| bad(len))?)
    } else {
        None
    };
    let payload = body.take_rest();
    let (value, mask) = if header & 0x100 != 0 {
        if payload.len() % 2 != 0 {
            return Err(bad(len));
        }
        let (v, m) = payload.split_at(payload.len() / 2);
        (v, Some(m))
    } else {
        (payload, None)
    };
    Ok(OxmTlv {
        header,
        experimenter,
        value,
        mask,
    })
}

/// Iterates the OXM TLVs of a match body (the bytes after `ofp_match`'s type
/// and length, without padding) without allocating. After the first error it
/// yields nothing more.
#[derive(Debug, Clone)]
pub struct OxmIter<'a> {
    r: Reader<'a>,
}

impl<'a> OxmIter<'a> {
    pub fn new(oxm_bytes: &'a [u8]) -> Self {
        Self {
            r: Reader::new(oxm_bytes, "oxm"),
        }
    }
}

impl<'a> Iterator for OxmIter<'a> {
    type Item = Result<OxmTlv<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        let t = read_tlv(&mut self.r);
        if t.is_err() {
            self.r.take_rest();
        }
        Some(t)
    }
}

/// `ofp_match` of type OFPMT_OXM. Fields stay in the order they were added
/// or decoded, so a decoded match re-encodes to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Match {
    pub fields: Vec<OxmField>,
}

/// Typed read access to a [`Match`]'s fields, from [`Match::lookup`].
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a>(&'a Match);

impl Lookup<'_> {
    /// The VLAN id matched exactly (without [`OFPVID_PRESENT`]), if any.
    pub fn vlan_vid(&self) -> Option<u16> {
        match self.vlan_vid_raw() {
            Some((v, None)) if v & OFPVID_PRESENT != 0 => Some(v & 0x0fff),
            _ => None,
        }
    }

    /// The tunnel id in either encoding (OXM `tunnel_id` or NXM `tun_id`).
    pub fn tun_id(&self) -> Option<(u64, Option<u64>)> {
        self.tunnel_id().or_else(|| self.nx_tun_id())
    }

    /// NXM_NX_REG`n`'s value and mask.
    pub fn reg(&self, n: u8) -> Option<(u32, Option<u32>)> {
        self.0.fields.iter().find_map(|f| match f {
            OxmField::Reg(i, v, m) if *i == n => Some((*v, *m)),
            _ => None,
        })
    }
}

impl Match {
    /// An empty match (matches every packet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `ofp_match` (type, length, OXM TLVs) and its padding to 8 bytes.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let kind = r.u16()?;
        if kind != OFPMT_OXM {
            return Err(DecodeError::bad_value(
                "ofp_match",
                u64::from(kind),
                ErrorCode::MATCH_BAD_TYPE,
            ));
        }
        let length = usize::from(r.u16()?);
        if length < 4 {
            return Err(DecodeError::bad_len_code(
                "ofp_match",
                length,
                ErrorCode::MATCH_BAD_LEN,
            ));
        }
        let body = r.take(length - 4).map_err(|_| {
            DecodeError::bad_len_code("ofp_match", length, ErrorCode::MATCH_BAD_LEN)
        })?;
        r.skip(padding(length))?;
        let mut fields: Vec<OxmField> = Vec::new();
        for t in OxmIter::new(body) {
            let f = OxmField::from_tlv(&t?)?;
            if fields.iter().any(|g| g.id() == f.id()) {
                return Err(DecodeError::bad_value(
                    "ofp_match",
                    u64::from(oxm_header(f.id().class, f.id().field, false, 0)),
                    ErrorCode::MATCH_DUP_FIELD,
                ));
            }
            fields.push(f);
        }
        Ok(Self { fields })
    }

    /// Writes `ofp_match` including padding to a multiple of 8.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.put_u16(OFPMT_OXM);
        let len_at = buf.reserve_len16();
        for f in &self.fields {
            f.emit(buf);
        }
        buf.patch_len16(len_at, start);
        buf.pad_to_8(start);
    }

    /// Adds `field`, replacing a field with the same id if there is one.
    pub fn with(mut self, field: OxmField) -> Self {
        self.set(field);
        self
    }

    /// Sets `field` in place, replacing a field with the same id.
    pub fn set(&mut self, field: OxmField) {
        let id = field.id();
        match self.fields.iter_mut().find(|f| f.id() == id) {
            Some(slot) => *slot = field,
            None => self.fields.push(field),
        }
    }

    /// The field with this id, if present.
    pub fn get(&self, id: FieldId) -> Option<&OxmField> {
        self.fields.iter().find(|f| f.id() == id)
    }

    /// Typed getters: `m.lookup().in_port()`, `m.lookup().reg(3)`.
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup(self)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Matches VLAN `vid` (0..4095): sets [`OFPVID_PRESENT`] for the caller.
    pub fn vlan_vid(self, vid: u16) -> Self {
        self.vlan_vid_raw(OFPVID_PRESENT | (vid & 0x0fff))
    }

    /// Matches only packets without a VLAN tag.
    pub fn vlan_none(self) -> Self {
        self.vlan_vid_raw(OFPVID_NONE)
    }

    /// Matches any VLAN-tagged packet, whatever its id.
    pub fn vlan_any(self) -> Self {
        self.vlan_vid_masked(OFPVID_PRESENT, OFPVID_PRESENT)
    }

    /// Matches NXM_NX_REG`n` exactly.
    ///
    /// # Panics
    /// If `n` is not a register OVS has (0..=15): that is a programming error.
    pub fn reg(self, n: u8, v: u32) -> Self {
        assert!(n < 16, "OVS has registers 0..=15, not {n}");
        self.with(OxmField::Reg(n, v, None))
    }

    /// Matches the bits of NXM_NX_REG`n` selected by `mask`.
    ///
    /// # Panics
    /// If `n` is not a register OVS has (0..=15).
    pub fn reg_masked(self, n: u8, v: u32, mask: u32) -> Self {
        assert!(n < 16, "OVS has registers 0..=15, not {n}");
        self.with(OxmField::Reg(n, v, Some(mask)))
    }
}

/// Padding after an `ofp_match` of `length` bytes.
fn padding(length: usize) -> usize {
    (8 - length % 8) % 8
}

#[cfg(test)]
mod tests;
