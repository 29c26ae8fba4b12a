use super::*;
use crate::error::ErrorCode;

fn decode_one(bytes: &[u8]) -> Result<OxmField> {
    OxmField::parse(&mut Reader::new(bytes, "test"))
}

fn emitted(f: &OxmField) -> Vec<u8> {
    let mut buf = Vec::new();
    f.emit(&mut buf);
    buf
}

fn match_bytes(oxms: &[u8]) -> Vec<u8> {
    let len = 4 + oxms.len();
    let mut v = vec![0, 1, 0, len as u8];
    v.extend_from_slice(oxms);
    v.resize(len.div_ceil(8) * 8, 0);
    v
}

#[test]
fn basic_fields_decode_typed_and_reencode() {
    let cases: &[(&[u8], OxmField)] = &[
        (&[0x80, 0, 0, 4, 0, 0, 0, 1], OxmField::InPort(1)),
        (&[0x80, 0, 0x0a, 2, 0x08, 0x06], OxmField::EthType(0x0806)),
        (
            &[
                0x80, 0, 0x07, 12, 1, 2, 3, 4, 5, 6, 0xff, 0xff, 0xff, 0, 0, 0,
            ],
            OxmField::EthDst([1, 2, 3, 4, 5, 6], Some([0xff, 0xff, 0xff, 0, 0, 0])),
        ),
        (
            &[0x80, 0, 0x0c, 2, 0x10, 0x0a],
            OxmField::VlanVid(0x100a, None),
        ),
        (
            &[0x80, 0, 0x2e, 4, 10, 0, 0, 1],
            OxmField::ArpTpa(Ipv4Addr::new(10, 0, 0, 1), None),
        ),
        (
            &[0x80, 0, 0x4a, 3, 0xab, 0xcd, 0xef],
            OxmField::PbbIsid(U24::new(0xabcdef), None),
        ),
        (
            &[0x80, 0, 0x4c, 8, 0, 0, 0, 0, 0, 0, 0, 5],
            OxmField::TunnelId(5, None),
        ),
        (
            &[0, 1, 0x3e, 4, 192, 168, 2, 3],
            OxmField::TunIpv4Src(Ipv4Addr::new(192, 168, 2, 3), None),
        ),
        (
            &[0, 1, 0x0b, 8, 0, 0, 0xab, 0xcd, 0, 0, 0xff, 0xff],
            OxmField::Reg(5, 0xabcd, Some(0xffff)),
        ),
        (
            &[0, 1, 0x4a, 4, 0, 0xab, 0xcd, 0xef],
            OxmField::ConjId(0xabcdef),
        ),
        (
            &[0, 1, 0xd3, 8, 0, 0, 0, 0x20, 0, 0, 0, 0x20],
            OxmField::CtState(0x20, Some(0x20)),
        ),
        (&[0, 1, 0xd4, 2, 0, 5], OxmField::CtZone(5)),
        (
            &[0x80, 1, 0x06, 8, 0, 0, 0, 0, 0, 0, 0, 9],
            OxmField::XReg(3, 9, None),
        ),
    ];
    for (bytes, want) in cases {
        let got = decode_one(bytes).unwrap();
        assert_eq!(&got, want, "{bytes:02x?}");
        assert_eq!(emitted(&got), *bytes, "{want:?}");
        assert_eq!(got.has_mask(), bytes[2] & 1 == 1);
    }
}

#[test]
fn a_length_that_disagrees_with_the_width_is_bad_len() {
    for bytes in [
        &[0x80u8, 0, 0, 5, 0, 0, 0, 1, 0][..],
        &[0x80, 0, 0x0a, 1, 8],
        &[0, 1, 0, 2, 0, 1],
        &[0x80, 0, 0x07, 6, 1, 2, 3, 4, 5, 6],
    ] {
        let e = decode_one(bytes).unwrap_err();
        assert_eq!(e.ofp_error(), ErrorCode::MATCH_BAD_LEN, "{bytes:02x?}: {e}");
    }
}

#[test]
fn a_mask_on_an_unmaskable_field_is_bad_mask() {
    let e = decode_one(&[0x80, 0, 0x01, 8, 0, 0, 0, 1, 0, 0, 0, 1]).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::MATCH_BAD_MASK);
}

#[test]
fn unknown_and_experimenter_fields_round_trip_raw() {
    // An ONF experimenter OXM (PBB UCA) and an NXM field with no type here.
    let exp = [
        0xff, 0xff, 0x00, 0x07, 0x4f, 0x4e, 0x46, 0x00, 0x0a, 0x00, 0x01,
    ];
    let f = decode_one(&exp).unwrap();
    let OxmField::Raw(raw) = &f else {
        panic!("{f:?}")
    };
    assert_eq!(
        (raw.class, raw.field, raw.experimenter),
        (0xffff, 0, Some(0x4f4e4600))
    );
    assert_eq!(raw.value, [0x0a, 0x00, 0x01]);
    assert_eq!(emitted(&f), exp);

    let ttl = [0, 1, 0x3a, 1, 64];
    let f = decode_one(&ttl).unwrap();
    assert!(matches!(f, OxmField::Raw(_)));
    assert_eq!(emitted(&f), ttl);
    assert_eq!(f.to_string(), "NXM_NX_IP_TTL=0x40");

    let masked = [0x80, 0, 0x55, 4, 1, 2, 3, 4];
    let f = decode_one(&masked).unwrap();
    assert_eq!(f.to_string(), "oxm_0x8000_42=0x0102/0x0304");
    assert_eq!(emitted(&f), masked);
}

#[test]
fn experimenter_oxm_without_room_for_its_id_is_bad_len() {
    let e = decode_one(&[0xff, 0xff, 0, 2, 0, 0]).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::MATCH_BAD_LEN);
}

#[test]
fn iterator_walks_tlvs_and_stops_after_an_error() {
    let bytes = [
        0x80, 0, 0, 4, 0, 0, 0, 7, 0x80, 0, 0x0a, 2, 8, 0, 0x80, 0, 0x0a, 9, 1,
    ];
    let mut it = OxmIter::new(&bytes);
    let t = it.next().unwrap().unwrap();
    assert_eq!(
        (t.class(), t.field(), t.value),
        (0x8000, 0, &[0, 0, 0, 7][..])
    );
    let t = it.next().unwrap().unwrap();
    assert_eq!((t.id(), t.has_mask()), (FieldId::ETH_TYPE, false));
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

#[test]
fn match_parse_consumes_padding_and_reencodes() {
    let wire = match_bytes(&[
        0x80, 0, 0, 4, 0, 0, 0, 6, 0x80, 0, 0x08, 6, 0xf2, 0x0b, 0xa4, 0x7d, 0xf8, 0xea,
    ]);
    assert_eq!(wire.len(), 24);
    let mut r = Reader::new(&wire, "test");
    let m = Match::parse(&mut r).unwrap();
    assert!(r.is_empty());
    assert_eq!(m.lookup().in_port(), Some(6));
    assert_eq!(
        m.lookup().eth_src(),
        Some(([0xf2, 0x0b, 0xa4, 0x7d, 0xf8, 0xea], None))
    );
    let mut out = Vec::new();
    m.emit(&mut out);
    assert_eq!(out, wire);
}

#[test]
fn empty_match_is_eight_bytes() {
    let mut out = Vec::new();
    Match::new().emit(&mut out);
    assert_eq!(out, [0, 1, 0, 4, 0, 0, 0, 0]);
    let m = Match::parse(&mut Reader::new(&out, "test")).unwrap();
    assert!(m.is_empty());
    assert_eq!(m.to_string(), "");
}

#[test]
fn match_rejects_bad_type_length_and_duplicates() {
    let e = Match::parse(&mut Reader::new(&[0, 0, 0, 4, 0, 0, 0, 0], "t")).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::MATCH_BAD_TYPE);
    let e = Match::parse(&mut Reader::new(&[0, 1, 0, 2, 0, 0, 0, 0], "t")).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::MATCH_BAD_LEN);
    let e = Match::parse(&mut Reader::new(&[0, 1, 0, 40, 0, 0, 0, 0], "t")).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::MATCH_BAD_LEN);
    let dup = match_bytes(&[0x80, 0, 0, 4, 0, 0, 0, 6, 0x80, 0, 0, 4, 0, 0, 0, 7]);
    let e = Match::parse(&mut Reader::new(&dup, "t")).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::MATCH_DUP_FIELD);
    // Missing padding after a well-formed match body.
    let short = &match_bytes(&[0x80, 0, 0x0a, 2, 8, 6])[..10];
    assert!(Match::parse(&mut Reader::new(short, "t")).is_err());
}

#[test]
fn builders_keep_order_replace_duplicates_and_print_like_ovs() {
    let m = Match::new()
        .in_port(1)
        .eth_type(0x0806)
        .vlan_vid(10)
        .arp_tpa(Ipv4Addr::new(10, 0, 0, 1))
        .in_port(2);
    assert_eq!(m.fields.len(), 4);
    assert_eq!(m.fields[0], OxmField::InPort(2));
    assert_eq!(m.lookup().vlan_vid(), Some(10));
    assert_eq!(m.to_string(), "arp,in_port=2,dl_vlan=10,arp_tpa=10.0.0.1");
    assert_eq!(
        m.get(FieldId::ARP_TPA),
        Some(&OxmField::ArpTpa(Ipv4Addr::new(10, 0, 0, 1), None))
    );
    assert_eq!(m.get(FieldId::ARP_SPA), None);
}

#[test]
fn protocol_shorthands_follow_ovs() {
    let ip = Match::new().eth_type(0x0800);
    assert_eq!(ip.clone().to_string(), "ip");
    assert_eq!(
        ip.clone().ip_proto(6).tcp_dst(80).to_string(),
        "tcp,tp_dst=80"
    );
    assert_eq!(ip.clone().ip_proto(17).to_string(), "udp");
    assert_eq!(
        ip.clone().ip_proto(1).icmpv4_type(8).to_string(),
        "icmp,icmp_type=8"
    );
    assert_eq!(ip.clone().ip_proto(47).to_string(), "ip,nw_proto=47");
    assert_eq!(Match::new().eth_type(0x86dd).to_string(), "ipv6");
    assert_eq!(Match::new().eth_type(0x8035).to_string(), "rarp");
    assert_eq!(Match::new().eth_type(0x88cc).to_string(), "dl_type=0x88cc");
}

#[test]
fn vlan_matches_print_as_ovs_folds_them_into_the_tci() {
    assert_eq!(
        Match::new().vlan_none().to_string(),
        "vlan_tci=0x0000/0x1fff"
    );
    assert_eq!(
        Match::new().vlan_any().to_string(),
        "vlan_tci=0x1000/0x1000"
    );
    assert_eq!(
        Match::new().vlan_vid(9).vlan_pcp(3).to_string(),
        "dl_vlan=9,dl_vlan_pcp=3"
    );
    assert_eq!(
        Match::new().vlan_vid_masked(0x1001, 0x1fff).to_string(),
        "dl_vlan=1"
    );
}

#[test]
fn nicira_fields_print_like_ovs() {
    let m = Match::new()
        .reg(0, 0x1234)
        .reg_masked(5, 0xabcd, 0xffff)
        .tunnel_id(0xc350)
        .tun_ipv4_src(Ipv4Addr::new(192, 168, 2, 3))
        .ct_state_masked(0x22, 0x22)
        .pkt_mark(0);
    assert_eq!(
        m.to_string(),
        "pkt_mark=0,ct_state=+est+trk,reg0=0x1234,reg5=0xabcd/0xffff,tun_id=0xc350,tun_src=192.168.2.3"
    );
    assert_eq!(m.lookup().reg(5), Some((0xabcd, Some(0xffff))));
    assert_eq!(m.lookup().tun_id(), Some((0xc350, None)));
    assert_eq!(Match::new().ct_state(0x21).to_string(), "ct_state=new|trk");
}

#[test]
fn masked_addresses_print_as_prefixes() {
    let m = Match::new()
        .eth_type(0x0800)
        .ipv4_src_masked(Ipv4Addr::new(10, 1, 0, 0), Ipv4Addr::new(255, 255, 0, 0))
        .eth_dst_masked([1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]);
    assert_eq!(
        m.to_string(),
        "ip,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,nw_src=10.1.0.0/16"
    );
}

#[test]
#[should_panic(expected = "registers 0..=15")]
fn reg_builder_rejects_registers_ovs_lacks() {
    let _ = Match::new().reg(16, 1);
}

#[test]
fn values_wider_than_their_field_are_bad_value() {
    for bytes in [
        &[0x80u8, 0, 0x0e, 1, 8][..],
        &[0x80, 0, 0x10, 1, 64],
        &[0x80, 0, 0x44, 4, 0, 0x10, 0, 0],
        &[0x80, 0, 0x0c, 2, 0x20, 0],
    ] {
        let e = decode_one(bytes).unwrap_err();
        assert_eq!(e.ofp_error(), ErrorCode::MATCH_BAD_VALUE, "{bytes:02x?}");
    }
    assert_eq!(
        decode_one(&[0x80, 0, 0x0e, 1, 7]).unwrap(),
        OxmField::VlanPcp(7)
    );
}
