//! Property tests: whatever the builders and typed values produce decodes
//! back to itself and re-encodes to the same bytes; arbitrary bytes never
//! make a decoder panic, and whatever they decode to re-encodes stably.

use ofp::action::{
    emit_actions, parse_actions, Action, ActionList, Controller2Prop, FieldMove, FieldRef,
    ResubmitKind, Subfield,
};
use ofp::codec::Reader;
use ofp::instruction::{emit_instructions, parse_instructions, Instruction, InstructionList};
use ofp::oxm::{FieldId, Match, OxmField, RawOxm, U24};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn mac() -> impl Strategy<Value = [u8; 6]> {
    any::<[u8; 6]>()
}
fn ip4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}
fn ip6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

/// Every typed field, with and without masks where the field takes one,
/// plus raw fields of classes this codec does not type.
fn field() -> impl Strategy<Value = OxmField> {
    use OxmField as F;
    let exact = prop_oneof![
        any::<u32>().prop_map(F::InPort),
        any::<u32>().prop_map(F::InPhyPort),
        any::<u16>().prop_map(F::EthType),
        (0u8..8).prop_map(F::VlanPcp),
        (0u8..64).prop_map(F::IpDscp),
        (0u8..4).prop_map(F::IpEcn),
        any::<u8>().prop_map(F::IpProto),
        any::<u8>().prop_map(F::Icmpv4Type),
        any::<u8>().prop_map(F::Icmpv4Code),
        any::<u16>().prop_map(F::ArpOp),
        any::<u8>().prop_map(F::Icmpv6Type),
        any::<u8>().prop_map(F::Icmpv6Code),
        (0u32..1 << 20).prop_map(F::MplsLabel),
        (0u8..8).prop_map(F::MplsTc),
        (0u8..2).prop_map(F::MplsBos),
        any::<u32>().prop_map(F::ConjId),
        any::<u16>().prop_map(F::CtZone),
    ];
    let masked_a = prop_oneof![
        (any::<u64>(), option::of(any::<u64>())).prop_map(|(v, m)| F::Metadata(v, m)),
        (mac(), option::of(mac())).prop_map(|(v, m)| F::EthDst(v, m)),
        (mac(), option::of(mac())).prop_map(|(v, m)| F::EthSrc(v, m)),
        (0u16..0x2000, option::of(0u16..0x2000)).prop_map(|(v, m)| F::VlanVid(v, m)),
        (ip4(), option::of(ip4())).prop_map(|(v, m)| F::Ipv4Src(v, m)),
        (ip4(), option::of(ip4())).prop_map(|(v, m)| F::Ipv4Dst(v, m)),
        (any::<u16>(), option::of(any::<u16>())).prop_map(|(v, m)| F::TcpSrc(v, m)),
        (any::<u16>(), option::of(any::<u16>())).prop_map(|(v, m)| F::TcpDst(v, m)),
        (any::<u16>(), option::of(any::<u16>())).prop_map(|(v, m)| F::UdpSrc(v, m)),
        (any::<u16>(), option::of(any::<u16>())).prop_map(|(v, m)| F::UdpDst(v, m)),
        (any::<u16>(), option::of(any::<u16>())).prop_map(|(v, m)| F::SctpSrc(v, m)),
        (any::<u16>(), option::of(any::<u16>())).prop_map(|(v, m)| F::SctpDst(v, m)),
        (ip4(), option::of(ip4())).prop_map(|(v, m)| F::ArpSpa(v, m)),
        (ip4(), option::of(ip4())).prop_map(|(v, m)| F::ArpTpa(v, m)),
        (mac(), option::of(mac())).prop_map(|(v, m)| F::ArpSha(v, m)),
        (mac(), option::of(mac())).prop_map(|(v, m)| F::ArpTha(v, m)),
    ];
    let masked_b = prop_oneof![
        (ip6(), option::of(ip6())).prop_map(|(v, m)| F::Ipv6Src(v, m)),
        (ip6(), option::of(ip6())).prop_map(|(v, m)| F::Ipv6Dst(v, m)),
        (0u32..1 << 20, option::of(0u32..1 << 20)).prop_map(|(v, m)| F::Ipv6Flabel(v, m)),
        (ip6(), option::of(ip6())).prop_map(|(v, m)| F::Ipv6NdTarget(v, m)),
        (mac(), option::of(mac())).prop_map(|(v, m)| F::Ipv6NdSll(v, m)),
        (mac(), option::of(mac())).prop_map(|(v, m)| F::Ipv6NdTll(v, m)),
        (any::<u32>(), option::of(any::<u32>()))
            .prop_map(|(v, m)| F::PbbIsid(U24::new(v), m.map(U24::new))),
        (any::<u64>(), option::of(any::<u64>())).prop_map(|(v, m)| F::TunnelId(v, m)),
        (any::<u16>(), option::of(any::<u16>())).prop_map(|(v, m)| F::Ipv6Exthdr(v, m)),
        (any::<u64>(), option::of(any::<u64>())).prop_map(|(v, m)| F::NxTunId(v, m)),
        (ip4(), option::of(ip4())).prop_map(|(v, m)| F::TunIpv4Src(v, m)),
        (ip4(), option::of(ip4())).prop_map(|(v, m)| F::TunIpv4Dst(v, m)),
        (any::<u32>(), option::of(any::<u32>())).prop_map(|(v, m)| F::PktMark(v, m)),
        (any::<u32>(), option::of(any::<u32>())).prop_map(|(v, m)| F::CtState(v, m)),
        (any::<u32>(), option::of(any::<u32>())).prop_map(|(v, m)| F::CtMark(v, m)),
        (any::<u128>(), option::of(any::<u128>())).prop_map(|(v, m)| F::CtLabel(v, m)),
    ];
    let indexed = prop_oneof![
        (0u8..16, any::<u32>(), option::of(any::<u32>())).prop_map(|(n, v, m)| F::Reg(n, v, m)),
        (0u8..8, any::<u64>(), option::of(any::<u64>())).prop_map(|(n, v, m)| F::XReg(n, v, m)),
        (0u8..4, any::<u128>(), option::of(any::<u128>())).prop_map(|(n, v, m)| F::XxReg(n, v, m)),
        raw_field().prop_map(F::Raw),
    ];
    prop_oneof![exact, masked_a, masked_b, indexed]
}

/// Fields of classes and numbers no typed variant claims.
fn raw_field() -> impl Strategy<Value = RawOxm> {
    let plain =
        (40u8..128, vec(any::<u8>(), 0..12), any::<bool>()).prop_map(|(field, v, masked)| RawOxm {
            class: 0x8000,
            field,
            experimenter: None,
            mask: masked.then(|| v.iter().map(|b| !b).collect()),
            value: v,
        });
    let nxm0 = (0u8..18, vec(any::<u8>(), 1..8)).prop_map(|(field, value)| RawOxm {
        class: 0,
        field,
        experimenter: None,
        value,
        mask: None,
    });
    let exp =
        (any::<u8>(), any::<u32>(), vec(any::<u8>(), 0..8)).prop_map(|(f, e, value)| RawOxm {
            class: 0xffff,
            field: f & 0x7f,
            experimenter: Some(e),
            value,
            mask: None,
        });
    prop_oneof![plain, nxm0, exp]
}

fn a_match() -> impl Strategy<Value = Match> {
    vec(field(), 0..12).prop_map(|fields| fields.into_iter().fold(Match::new(), Match::with))
}

fn known(id: FieldId) -> FieldRef {
    FieldRef::new(id).expect("a field with a known width")
}

/// A field header that move/load/stack actions can carry (no experimenter class).
fn field_ref() -> impl Strategy<Value = FieldRef> {
    prop_oneof![
        (0u8..16).prop_map(FieldId::reg).prop_map(known),
        Just(known(FieldId::ETH_SRC)),
        Just(known(FieldId::ARP_SPA)),
        Just(known(FieldId::TUNNEL_ID)),
        (0u16..0xffff, any::<u8>(), any::<u8>()).prop_map(|(c, f, l)| FieldRef(
            u32::from(c) << 16 | u32::from(f & 0x7f) << 9 | u32::from(l)
        )),
    ]
}

fn field_move() -> impl Strategy<Value = FieldMove> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        field_ref(),
        field_ref(),
    )
        .prop_map(|(n_bits, src_ofs, dst_ofs, src, dst)| FieldMove {
            n_bits,
            src_ofs,
            dst_ofs,
            src,
            dst,
        })
}

fn action() -> impl Strategy<Value = Action> {
    use Action as A;
    let openflow = prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(port, max_len)| A::Output { port, max_len }),
        Just(A::CopyTtlOut),
        Just(A::CopyTtlIn),
        any::<u8>().prop_map(A::SetMplsTtl),
        Just(A::DecMplsTtl),
        any::<u16>().prop_map(A::PushVlan),
        Just(A::PopVlan),
        any::<u16>().prop_map(A::PushMpls),
        any::<u16>().prop_map(A::PopMpls),
        any::<u32>().prop_map(A::SetQueue),
        any::<u32>().prop_map(A::Group),
        any::<u8>().prop_map(A::SetNwTtl),
        Just(A::DecNwTtl),
        field().prop_map(A::SetField),
        any::<u16>().prop_map(A::PushPbb),
        Just(A::PopPbb),
    ];
    let nicira = prop_oneof![
        field_move().prop_map(A::RegMove),
        field_move().prop_map(A::CopyField),
        (field_ref(), 0u16..1024, 1u16..=64, any::<u64>()).prop_map(
            |(field, ofs, n_bits, value)| {
                A::RegLoad {
                    dst: Subfield { field, ofs, n_bits },
                    value,
                }
            }
        ),
        field().prop_map(A::RegLoad2),
        any::<u16>().prop_map(|in_port| A::Resubmit {
            in_port,
            table: 255,
            kind: ResubmitKind::Port
        }),
        (any::<u16>(), any::<u8>(), any::<bool>()).prop_map(|(in_port, table, ct)| A::Resubmit {
            in_port,
            table,
            kind: if ct {
                ResubmitKind::TableCt
            } else {
                ResubmitKind::Table
            },
        }),
        any::<u32>().prop_map(A::SetTunnel),
        any::<u64>().prop_map(A::SetTunnel64),
        Just(A::PopQueue),
        // Notes fill their action exactly when 6 more than a multiple of 8.
        (0usize..3)
            .prop_flat_map(|n| vec(any::<u8>(), 6 + 8 * n))
            .prop_map(A::Note),
        Just(A::Exit),
        Just(A::NxDecTtl),
        vec(any::<u16>(), 0..10).prop_map(A::DecTtlCntIds),
        (any::<u16>(), any::<u16>()).prop_map(|(idle_timeout, hard_timeout)| A::FinTimeout {
            idle_timeout,
            hard_timeout
        }),
        (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(max_len, controller_id, reason)| {
            A::Controller {
                max_len,
                controller_id,
                reason,
            }
        }),
        (any::<u32>(), any::<u8>(), any::<u8>()).prop_map(|(id, clause, n_clauses)| {
            A::Conjunction {
                id,
                clause,
                n_clauses,
            }
        }),
        (any::<u16>(), any::<u32>()).prop_map(|(port, max_len)| A::OutputTrunc { port, max_len }),
        (field_ref(), any::<u16>(), any::<u16>())
            .prop_map(|(field, ofs, n_bits)| A::StackPush(Subfield { field, ofs, n_bits })),
        (field_ref(), any::<u16>(), any::<u16>())
            .prop_map(|(field, ofs, n_bits)| A::StackPop(Subfield { field, ofs, n_bits })),
        Just(A::CtClear),
        vec((any::<u16>(), vec(any::<u8>(), 0..12)), 0..5).prop_map(|props| A::Controller2(
            props
                .into_iter()
                .map(|(kind, value)| Controller2Prop { kind, value })
                .collect()
        )),
    ];
    let raw = prop_oneof![
        (any::<u32>(), 0usize..4)
            .prop_filter("typed experimenters", |(e, _)| *e != 0x2320
                && *e != 0x4f4e_4600)
            .prop_flat_map(|(e, n)| (Just(e), vec(any::<u8>(), 8 * n)))
            .prop_map(|(experimenter, data)| A::Experimenter { experimenter, data }),
        (28u16..0xffff, 0usize..3)
            .prop_flat_map(|(t, n)| (Just(t), vec(any::<u8>(), 4 + 8 * n)))
            .prop_map(|(action_type, data)| A::Unknown { action_type, data }),
    ];
    prop_oneof![openflow, nicira, raw]
}

fn instruction() -> impl Strategy<Value = Instruction> {
    use Instruction as I;
    prop_oneof![
        any::<u8>().prop_map(I::GotoTable),
        (any::<u64>(), any::<u64>())
            .prop_map(|(metadata, mask)| I::WriteMetadata { metadata, mask }),
        vec(action(), 0..5).prop_map(I::WriteActions),
        vec(action(), 0..5).prop_map(I::ApplyActions),
        Just(I::ClearActions),
        any::<u32>().prop_map(I::Meter),
        (any::<u32>(), 0usize..3)
            .prop_flat_map(|(e, n)| (Just(e), vec(any::<u8>(), 8 * n)))
            .prop_map(|(experimenter, data)| I::Experimenter { experimenter, data }),
        (7u16..0xffff, 0usize..3)
            .prop_flat_map(|(t, n)| (Just(t), vec(any::<u8>(), 4 + 8 * n)))
            .prop_map(|(instruction_type, data)| I::Unknown {
                instruction_type,
                data
            }),
    ]
}

fn emit_match(m: &Match, buf: &mut Vec<u8>) {
    m.emit(buf);
}

fn parse_match(b: &[u8]) -> Result<Match, String> {
    let mut r = Reader::new(b, "t");
    let m = Match::parse(&mut r).map_err(|e| e.to_string())?;
    match r.remaining() {
        0 => Ok(m),
        n => Err(format!("{n} bytes left after the match")),
    }
}

// The round-trip helper is generic over the decoded type, which is a Vec here.
#[allow(clippy::ptr_arg)]
fn emit_action_list(a: &Vec<Action>, buf: &mut Vec<u8>) {
    emit_actions(a, buf);
}

fn parse_action_list(b: &[u8]) -> Result<Vec<Action>, String> {
    parse_actions(Reader::new(b, "t")).map_err(|e| e.to_string())
}

#[allow(clippy::ptr_arg)]
fn emit_instruction_list(i: &Vec<Instruction>, buf: &mut Vec<u8>) {
    emit_instructions(i, buf);
}

fn parse_instruction_list(b: &[u8]) -> Result<Vec<Instruction>, String> {
    parse_instructions(Reader::new(b, "t")).map_err(|e| e.to_string())
}

/// Encodes `v`, checks it decodes back to `v` with every byte used and
/// re-encodes to the same bytes; returns the bytes.
fn assert_round_trip<T: PartialEq + std::fmt::Debug>(
    v: &T,
    emit: fn(&T, &mut Vec<u8>),
    parse: fn(&[u8]) -> Result<T, String>,
) -> Result<Vec<u8>, TestCaseError> {
    let mut wire = Vec::new();
    emit(v, &mut wire);
    prop_assert_eq!(wire.len() % 8, 0);
    let back = parse(&wire).map_err(|e| TestCaseError::fail(format!("{e}: {wire:02x?}")))?;
    prop_assert_eq!(&back, v);
    let mut again = Vec::new();
    emit(&back, &mut again);
    prop_assert_eq!(&again, &wire);
    Ok(wire)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_round_trip(m in a_match()) {
        assert_round_trip(&m, emit_match, parse_match)?;
        let _ = m.to_string();
    }

    #[test]
    fn builder_matches_round_trip(
        port in any::<u32>(), vid in 0u16..4096, ip in ip4(), reg in 0u8..16, v in any::<u32>(),
        tun in any::<u64>(), src in mac(),
    ) {
        let m = Match::new()
            .in_port(port)
            .eth_type(0x0806)
            .vlan_vid(vid)
            .arp_tpa(ip)
            .eth_src(src)
            .reg(reg, v)
            .tunnel_id(tun)
            .tun_ipv4_dst(ip);
        let wire = assert_round_trip(&m, emit_match, parse_match)?;
        let back = parse_match(&wire).unwrap();
        prop_assert_eq!(back.lookup().vlan_vid(), Some(vid));
        prop_assert_eq!(back.lookup().reg(reg), Some((v, None)));
        prop_assert_eq!(back.lookup().in_port(), Some(port));
        prop_assert!(m.to_string().starts_with("arp,"));
    }

    #[test]
    fn actions_round_trip(actions in vec(action(), 0..8)) {
        assert_round_trip(&actions, emit_action_list, parse_action_list)?;
        let _ = ActionList(&actions).to_string();
    }

    #[test]
    fn instructions_round_trip(ins in vec(instruction(), 0..5)) {
        assert_round_trip(&ins, emit_instruction_list, parse_instruction_list)?;
        let _ = InstructionList(&ins).to_string();
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_stably(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok(m) = Match::parse(&mut Reader::new(&bytes, "t")) {
            assert_round_trip(&m, emit_match, parse_match)?;
            let _ = m.to_string();
        }
        if let Ok(a) = parse_action_list(&bytes) {
            assert_round_trip(&a, emit_action_list, parse_action_list)?;
            let _ = ActionList(&a).to_string();
        }
        if let Ok(i) = parse_instruction_list(&bytes) {
            assert_round_trip(&i, emit_instruction_list, parse_instruction_list)?;
            let _ = InstructionList(&i).to_string();
        }
    }

    /// Bytes shaped like actions (plausible type and length) reach deeper
    /// into the decoders than uniform noise does.
    #[test]
    fn action_shaped_bytes_never_panic(
        kind in prop_oneof![0u16..30, Just(0xffff)],
        len8 in 1u16..6,
        vendor in prop_oneof![Just(0x2320u32), Just(0x4f4e_4600), any::<u32>()],
        subtype in 0u16..50,
        tail in vec(any::<u8>(), 40),
    ) {
        let len = usize::from(len8) * 8;
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&(len as u16).to_be_bytes());
        b.extend_from_slice(&vendor.to_be_bytes());
        b.extend_from_slice(&subtype.to_be_bytes());
        b.extend_from_slice(&tail);
        b.truncate(len);
        if let Ok(a) = Action::parse(&mut Reader::new(&b, "t")) {
            assert_round_trip(&vec![a.clone()], emit_action_list, parse_action_list)?;
            let _ = a.to_string();
        }
    }
}
