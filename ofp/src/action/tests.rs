use super::*;
use crate::oxm::Match;
use std::net::Ipv4Addr;

fn emitted(a: &Action) -> Vec<u8> {
    let mut buf = Vec::new();
    a.emit(&mut buf);
    buf
}

fn decoded(bytes: &[u8]) -> Result<Action> {
    let mut r = Reader::new(bytes, "test");
    let a = Action::parse(&mut r)?;
    assert!(r.is_empty(), "action left {} bytes", r.remaining());
    Ok(a)
}

#[test]
fn openflow_actions_have_spec_layouts_and_ovs_names() {
    let cases: &[(&[u8], Action, &str)] = &[
        (
            &[0, 0, 0, 16, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0],
            Action::output(2),
            "output:2",
        ),
        (
            &[
                0, 0, 0, 16, 0xff, 0xff, 0xff, 0xfd, 0xff, 0xff, 0, 0, 0, 0, 0, 0,
            ],
            Action::to_controller(),
            "CONTROLLER:65535",
        ),
        (
            &[0, 0, 0, 16, 0xff, 0xff, 0xff, 0xf8, 0, 0, 0, 0, 0, 0, 0, 0],
            Action::output(port::IN_PORT),
            "IN_PORT",
        ),
        (
            &[0, 11, 0, 8, 0, 0, 0, 0],
            Action::CopyTtlOut,
            "copy_ttl_out",
        ),
        (&[0, 12, 0, 8, 0, 0, 0, 0], Action::CopyTtlIn, "copy_ttl_in"),
        (
            &[0, 15, 0, 8, 10, 0, 0, 0],
            Action::SetMplsTtl(10),
            "set_mpls_ttl(10)",
        ),
        (
            &[0, 16, 0, 8, 0, 0, 0, 0],
            Action::DecMplsTtl,
            "dec_mpls_ttl",
        ),
        (
            &[0, 17, 0, 8, 0x81, 0, 0, 0],
            Action::PushVlan(0x8100),
            "push_vlan:0x8100",
        ),
        (&[0, 18, 0, 8, 0, 0, 0, 0], Action::PopVlan, "pop_vlan"),
        (
            &[0, 19, 0, 8, 0x88, 0x47, 0, 0],
            Action::PushMpls(0x8847),
            "push_mpls:0x8847",
        ),
        (
            &[0, 20, 0, 8, 0x08, 0, 0, 0],
            Action::PopMpls(0x0800),
            "pop_mpls:0x0800",
        ),
        (
            &[0, 21, 0, 8, 0, 0, 0, 3],
            Action::SetQueue(3),
            "set_queue:3",
        ),
        (&[0, 22, 0, 8, 0, 0, 0, 1], Action::Group(1), "group:1"),
        (
            &[0, 23, 0, 8, 64, 0, 0, 0],
            Action::SetNwTtl(64),
            "mod_nw_ttl:64",
        ),
        (&[0, 24, 0, 8, 0, 0, 0, 0], Action::DecNwTtl, "dec_ttl"),
        (
            &[0, 26, 0, 8, 0x88, 0xe7, 0, 0],
            Action::PushPbb(0x88e7),
            "push_pbb:0x88e7",
        ),
        (&[0, 27, 0, 8, 0, 0, 0, 0], Action::PopPbb, "pop_pbb"),
        (
            &[0, 25, 0, 16, 0x80, 0, 0x2c, 4, 10, 0, 0, 1, 0, 0, 0, 0],
            Action::SetField(OxmField::ArpSpa(Ipv4Addr::new(10, 0, 0, 1), None)),
            "set_field:10.0.0.1->arp_spa",
        ),
        (
            &[0, 25, 0, 16, 0x80, 0, 0x4c, 8, 0, 0, 0, 0, 0, 0, 0, 1],
            Action::SetField(OxmField::TunnelId(1, None)),
            "set_field:0x1->tun_id",
        ),
        (
            &[0, 25, 0, 16, 0x80, 0, 0x0c, 2, 0x10, 0x0a, 0, 0, 0, 0, 0, 0],
            Action::SetField(OxmField::VlanVid(0x100a, None)),
            "set_field:4106->vlan_vid",
        ),
    ];
    for (bytes, action, text) in cases {
        assert_eq!(&decoded(bytes).unwrap(), action, "{text}");
        assert_eq!(emitted(action), *bytes, "{text}");
        assert_eq!(action.to_string(), *text);
    }
}

#[test]
fn nicira_actions_decode_and_print_like_ovs() {
    let cases: &[(&[u8], &str)] = &[
        // From ovs-ofctl: move:NXM_NX_REG0[10..15]->NXM_NX_REG1[0..5]
        (
            &[
                0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 6, 0, 6, 0, 10, 0, 0, 0, 1, 0, 4, 0, 1, 2,
                4,
            ],
            "move:NXM_NX_REG0[10..15]->NXM_NX_REG1[0..5]",
        ),
        (
            &[
                0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 7, 0x01, 0x1b, 0, 1, 0, 4, 0, 0, 0, 0,
                0x0d, 0xea, 0xdb, 0xee,
            ],
            "load:0xdeadbee->NXM_NX_REG0[4..31]",
        ),
        (
            &[
                0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 14, 0xff, 0xf8, 3, 0, 0, 0,
            ],
            "resubmit(,3)",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 44, 0, 5, 3, 0, 0, 0],
            "resubmit(5,3,ct)",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 1, 0, 7, 0, 0, 0, 0],
            "resubmit:7",
        ),
        (
            &[
                0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 2, 0, 0, 0, 0, 0, 0x2a,
            ],
            "set_tunnel:0x2a",
        ),
        (
            &[
                0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0x2a,
            ],
            "set_tunnel64:0x2a",
        ),
        (
            &[
                0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 34, 0, 2, 0, 0xab, 0xcd, 0xef,
            ],
            "conjunction(11259375,1/2)",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 20, 4, 0, 0, 1, 5, 0],
            "controller(reason=packet_out,max_len=1024,id=1)",
        ),
        (
            &[
                0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 20, 0xff, 0xff, 0, 0, 1, 0,
            ],
            "CONTROLLER:65535",
        ),
        (
            &[
                0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 19, 0, 30, 0, 60, 0, 0,
            ],
            "fin_timeout(idle_timeout=30,hard_timeout=60)",
        ),
        (
            &[
                0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 39, 0x1f, 0x90, 0, 0, 4, 0,
            ],
            "output(port=8080,max_len=1024)",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 8, 4, 5, 6, 7, 0, 0],
            "note:04.05.06.07.00.00",
        ),
        (
            &[
                0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 21, 0, 2, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0,
                0,
            ],
            "dec_ttl(1,2)",
        ),
        (
            &[
                0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 27, 0, 1, 0, 1, 4, 4, 0, 5, 0, 0, 0, 0, 0,
                0,
            ],
            "push:NXM_NX_REG2[1..5]",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 43, 0, 0, 0, 0, 0, 0],
            "ct_clear",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 18, 0, 0, 0, 0, 0, 0],
            "dec_ttl",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 17, 0, 0, 0, 0, 0, 0],
            "exit",
        ),
        (
            &[0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 5, 0, 0, 0, 0, 0, 0],
            "pop_queue",
        ),
        (
            &[
                0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 33, 0, 1, 0x0b, 8, 0, 0, 0, 5, 0, 0, 0,
                0xff, 0, 0,
            ],
            "set_field:0x5/0xff->reg5",
        ),
        (
            &[
                0xff, 0xff, 0, 32, 0x4f, 0x4e, 0x46, 0, 0x0c, 0x80, 0, 0, 0, 48, 0, 0, 0, 0, 0, 0,
                0x80, 0, 0x08, 6, 0x80, 0, 0x06, 6, 0, 0, 0, 0,
            ],
            "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",
        ),
    ];
    for (bytes, text) in cases {
        let a = decoded(bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(
            !matches!(a, Action::Experimenter { .. }),
            "{text} stayed raw"
        );
        assert_eq!(a.to_string(), *text);
        assert_eq!(emitted(&a), *bytes, "{text}");
    }
}

#[test]
fn arp_responder_builders_encode_as_ovs_does_for_openflow13() {
    // OVS encodes move/load in OpenFlow 1.3 with OXM headers where a field
    // has one, and prints the NXM names.
    let mv = Action::move_field(FieldId::ETH_SRC, FieldId::ETH_DST).unwrap();
    assert_eq!(mv.to_string(), "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]");
    assert_eq!(
        emitted(&mv),
        [
            0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 6, 0, 48, 0, 0, 0, 0, 0x80, 0, 0x08, 6, 0x80,
            0, 0x06, 6
        ]
    );
    let load = Action::load(FieldId::ARP_OP, 2).unwrap();
    assert_eq!(load.to_string(), "load:0x2->NXM_OF_ARP_OP[]");
    assert_eq!(decoded(&emitted(&load)).unwrap(), load);
    let vid = Action::move_field(FieldId::VLAN_VID, FieldId::reg(0)).unwrap();
    assert_eq!(
        vid.to_string(),
        "move:OXM_OF_VLAN_VID[]->NXM_NX_REG0[0..12]"
    );
    assert_eq!(Action::resubmit_table(3).to_string(), "resubmit(,3)");
    assert!(Action::load(FieldId::IPV6_SRC, 1).is_none());
}

#[test]
fn other_experimenter_actions_and_unknown_types_stay_raw() {
    let learnish = [0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 16, 1, 2, 3, 4, 5, 6];
    let a = decoded(&learnish).unwrap();
    assert_eq!(
        a,
        Action::Experimenter {
            experimenter: 0x2320,
            data: vec![0, 16, 1, 2, 3, 4, 5, 6]
        }
    );
    assert_eq!(emitted(&a), learnish);
    let other = [0xff, 0xff, 0, 16, 0, 0, 0, 0x65, 0, 1, 2, 3, 4, 5, 6, 7];
    assert_eq!(emitted(&decoded(&other).unwrap()), other);
    let unknown = [0, 0x42, 0, 8, 9, 9, 9, 9];
    let a = decoded(&unknown).unwrap();
    assert_eq!(
        a,
        Action::Unknown {
            action_type: 0x42,
            data: vec![9, 9, 9, 9]
        }
    );
    assert_eq!(a.to_string(), "action(0x42,0x09090909)");
    assert_eq!(emitted(&a), unknown);
}

#[test]
fn bad_lengths_are_bad_action_len() {
    let cases: &[&[u8]] = &[
        &[0, 0, 0, 4, 0, 0, 0, 0],
        &[0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0],
        &[0, 0, 0, 24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0, 0, 0, 8, 0, 0, 0, 1],
        &[0, 22],
        &[
            0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 34, 0, 2, 0, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
    ];
    for bytes in cases {
        let e = decoded(bytes).unwrap_err();
        assert_eq!(
            e.ofp_error(),
            ErrorCode::ACTION_BAD_LEN,
            "{bytes:02x?}: {e}"
        );
    }
    let long_set_field = [
        0, 25, 0, 24, 0x80, 0, 0x0a, 2, 8, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let e = decoded(&long_set_field).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::ACTION_BAD_SET_LEN);
    let pcp_of_9 = [0, 25, 0, 16, 0x80, 0, 0x0e, 1, 9, 0, 0, 0, 0, 0, 0, 0];
    let e = decoded(&pcp_of_9).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::ACTION_BAD_SET_ARGUMENT);
}

#[test]
fn action_lists_print_with_their_prefix() {
    let acts = [Action::PopVlan, Action::output(3)];
    assert_eq!(ActionList(&acts).to_string(), "actions=pop_vlan,output:3");
    assert_eq!(ActionList(&[]).to_string(), "actions=drop");
    let mut buf = Vec::new();
    emit_actions(&acts, &mut buf);
    assert_eq!(parse_actions(Reader::new(&buf, "t")).unwrap(), acts);
    // A match is untouched by action printing; keep the import honest.
    assert_eq!(Match::new().in_port(1).to_string(), "in_port=1");
}
