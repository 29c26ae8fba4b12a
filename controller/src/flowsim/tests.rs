use super::*;
use ofp::message::Bucket;
use ofp::oxm::Match;
use ofp::packet::{ArpRepr, MacAddr, VlanTag};
use std::net::Ipv4Addr;

fn add(table: u8, priority: u16, m: Match, i: Vec<Instruction>) -> Message {
    add_cookie(table, priority, m, i, 0x1)
}

fn add_cookie(table: u8, priority: u16, m: Match, i: Vec<Instruction>, cookie: u64) -> Message {
    Message::FlowMod(FlowMod {
        cookie,
        table_id: table,
        priority,
        match_: m,
        instructions: i,
        ..FlowMod::default()
    })
}

fn actions(a: Vec<Action>) -> Vec<Instruction> {
    vec![Instruction::ApplyActions(a)]
}

fn group(command: GroupModCommand, id: u32, buckets: Vec<Vec<Action>>) -> Message {
    Message::GroupMod(GroupMod {
        command,
        group_type: GroupType::All,
        group_id: id,
        buckets: buckets
            .into_iter()
            .map(|actions| Bucket {
                weight: 0,
                watch_port: port::ANY,
                watch_group: ofp::message::group_no::ANY,
                actions,
            })
            .collect(),
    })
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn frame(a: &ArpRepr) -> Vec<u8> {
    let mut b = Vec::new();
    a.emit(&mut b);
    b
}

fn request(vid: Option<u16>) -> Vec<u8> {
    let mut a = ArpRepr::request(
        mac("52:54:00:00:00:01"),
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
    );
    if let Some(v) = vid {
        a.tags.push(VlanTag {
            tpid: 0x8100,
            tci: v,
        });
    }
    frame(&a)
}

fn ports(o: &Outcome) -> Vec<u32> {
    o.outputs.iter().map(|o| o.port).collect()
}

#[test]
fn add_replaces_the_cookie_but_modify_strict_keeps_it() {
    let mut sw = Switch::new();
    let m = Match::new().in_port(1);
    sw.apply(&add_cookie(
        0,
        10,
        m.clone(),
        actions(vec![Action::output(2)]),
        5,
    ))
    .unwrap();
    let mut modify = FlowMod {
        command: FlowModCommand::ModifyStrict,
        cookie: 6,
        priority: 10,
        match_: m.clone(),
        instructions: actions(vec![Action::output(3)]),
        ..FlowMod::default()
    };
    sw.apply(&Message::FlowMod(modify.clone())).unwrap();
    let f = sw.state().flows.values().next().unwrap();
    // What OVS 3.1 does with an OpenFlow 1.3 MODIFY_STRICT: new actions,
    // old cookie. A reconciler that modifies to change cookies never
    // converges.
    assert_eq!(
        (f.cookie, f.instructions.clone()),
        (5, actions(vec![Action::output(3)]))
    );
    // With a cookie mask that does not match, nothing changes.
    modify.cookie_mask = u64::MAX;
    modify.instructions = actions(vec![Action::output(4)]);
    sw.apply(&Message::FlowMod(modify)).unwrap();
    assert_eq!(ports(&sw.process(1, 0, &request(None)).unwrap()), [3]);
    sw.apply(&add_cookie(0, 10, m, actions(vec![Action::output(4)]), 7))
        .unwrap();
    let f = sw.state().flows.values().next().unwrap();
    assert_eq!(f.cookie, 7);
    assert_eq!(sw.state().flows.len(), 1);
}

#[test]
fn delete_strict_honours_the_cookie_mask() {
    let mut sw = Switch::new();
    let m = Match::new().in_port(1);
    sw.apply(&add_cookie(0, 10, m.clone(), vec![], 5)).unwrap();
    let mut del = FlowMod {
        command: FlowModCommand::DeleteStrict,
        cookie: 6,
        cookie_mask: u64::MAX,
        priority: 10,
        match_: m,
        ..FlowMod::default()
    };
    sw.apply(&Message::FlowMod(del.clone())).unwrap();
    assert_eq!(sw.state().flows.len(), 1);
    del.cookie = 5;
    sw.apply(&Message::FlowMod(del)).unwrap();
    assert!(sw.state().flows.is_empty());
}

#[test]
fn flows_are_checked_as_ovs_checks_them() {
    let mut sw = Switch::new();
    let no_prereq = add(0, 1, Match::new().arp_op(1), vec![]);
    assert!(matches!(
        sw.apply(&no_prereq),
        Err(SimError::BadPrerequisite {
            field: "arp_op",
            ..
        })
    ));
    let set_without = add(
        0,
        1,
        Match::new(),
        actions(vec![Action::SetField(OxmField::ArpOp(2))]),
    );
    assert!(matches!(
        sw.apply(&set_without),
        Err(SimError::BadPrerequisite { .. })
    ));
    let backward = add(2, 1, Match::new(), vec![Instruction::GotoTable(1)]);
    assert!(matches!(
        sw.apply(&backward),
        Err(SimError::GotoBackward { table: 2, to: 1 })
    ));
    let no_group = add(0, 1, Match::new(), actions(vec![Action::Group(9)]));
    assert_eq!(sw.apply(&no_group), Err(SimError::UnknownGroup(9)));
    let pbb = add(
        0,
        1,
        Match::new()
            .eth_type(0x88e7)
            .pbb_isid(ofp::oxm::U24::new(1)),
        vec![],
    );
    assert!(matches!(sw.apply(&pbb), Err(SimError::Unsupported(_))));
    assert!(sw.state().flows.is_empty());
    assert_eq!(
        sw.apply(&group(GroupModCommand::Modify, 3, vec![])),
        Err(SimError::UnknownGroup(3))
    );
    sw.apply(&group(GroupModCommand::Add, 3, vec![])).unwrap();
    assert_eq!(
        sw.apply(&group(GroupModCommand::Add, 3, vec![])),
        Err(SimError::GroupExists(3))
    );
}

#[test]
fn deleting_a_group_deletes_the_flows_that_use_it() {
    let mut sw = Switch::new();
    sw.apply(&group(
        GroupModCommand::Add,
        3,
        vec![vec![Action::output(2)]],
    ))
    .unwrap();
    sw.apply(&add(
        0,
        5,
        Match::new().in_port(1),
        actions(vec![Action::Group(3)]),
    ))
    .unwrap();
    sw.apply(&add(
        0,
        5,
        Match::new().in_port(2),
        actions(vec![Action::output(1)]),
    ))
    .unwrap();
    sw.apply(&group(GroupModCommand::Delete, 3, vec![]))
        .unwrap();
    assert_eq!(sw.state().flows.len(), 1);
    assert!(sw.state().groups.is_empty());
}

#[test]
fn vlan_matches_tell_tagged_from_untagged() {
    let mut sw = Switch::new();
    sw.apply(&add(
        0,
        10,
        Match::new().vlan_none(),
        actions(vec![Action::output(10)]),
    ))
    .unwrap();
    sw.apply(&add(
        0,
        10,
        Match::new().vlan_vid(7),
        actions(vec![Action::output(17)]),
    ))
    .unwrap();
    sw.apply(&add(
        0,
        5,
        Match::new().vlan_any(),
        actions(vec![Action::output(99)]),
    ))
    .unwrap();
    assert_eq!(ports(&sw.process(1, 0, &request(None)).unwrap()), [10]);
    assert_eq!(ports(&sw.process(1, 0, &request(Some(7))).unwrap()), [17]);
    // The priority bits of the TCI are not the VLAN id.
    assert_eq!(
        ports(&sw.process(1, 0, &request(Some(0xe007))).unwrap()),
        [17]
    );
    assert_eq!(ports(&sw.process(1, 0, &request(Some(8))).unwrap()), [99]);
}

#[test]
fn metadata_and_registers_carry_state_between_tables() {
    let mut sw = Switch::new();
    let enter = vec![
        Instruction::ApplyActions(vec![Action::SetField(OxmField::Reg(6, 1, None))]),
        Instruction::WriteMetadata {
            metadata: 0x30,
            mask: 0xf0,
        },
        Instruction::GotoTable(3),
    ];
    sw.apply(&add(0, 1, Match::new(), enter)).unwrap();
    let m = Match::new().reg(6, 1).metadata_masked(0x30, 0xf0);
    sw.apply(&add(3, 1, m, actions(vec![Action::output(4)])))
        .unwrap();
    let out = sw.process(1, 0, &request(None)).unwrap();
    assert_eq!(ports(&out), [4]);
    assert_eq!(out.path.iter().map(|h| h.table).collect::<Vec<_>>(), [0, 3]);
    // A miss in table 3 (nothing else there) drops.
    sw.apply(&add(
        0,
        2,
        Match::new().in_port(9),
        vec![Instruction::GotoTable(3)],
    ))
    .unwrap();
    assert_eq!(
        sw.process(9, 0, &request(None)).unwrap(),
        Outcome {
            path: vec![Hit {
                table: 0,
                priority: 2,
                cookie: 1
            }],
            ..Outcome::default()
        }
    );
}

#[test]
fn output_to_the_ingress_port_needs_in_port() {
    let mut sw = Switch::new();
    sw.apply(&group(
        GroupModCommand::Add,
        1,
        vec![
            vec![Action::output(1)],
            vec![
                Action::SetField(OxmField::TunnelId(0x42, None)),
                Action::output(2),
            ],
            vec![Action::output(3)],
        ],
    ))
    .unwrap();
    sw.apply(&add(
        0,
        1,
        Match::new().in_port(1),
        actions(vec![Action::Group(1)]),
    ))
    .unwrap();
    sw.apply(&add(
        0,
        1,
        Match::new().in_port(5),
        actions(vec![Action::output(port::IN_PORT)]),
    ))
    .unwrap();
    let out = sw.process(1, 0, &request(None)).unwrap();
    assert_eq!(ports(&out), [2, 3], "the copy back to port 1 is dropped");
    assert_eq!(
        (out.outputs[0].tun_id, out.outputs[1].tun_id),
        (0x42, 0),
        "buckets act on copies"
    );
    assert_eq!(ports(&sw.process(5, 0, &request(None)).unwrap()), [5]);
}

#[test]
fn moves_and_set_fields_rewrite_the_frame() {
    let mut sw = Switch::new();
    let m = Match::new().eth_type(0x0806);
    let swap = vec![
        Action::move_field(FieldId::ETH_SRC, FieldId::ETH_DST).unwrap(),
        Action::SetField(OxmField::EthSrc([2, 0, 0, 0, 0, 9], None)),
        Action::move_field(FieldId::ARP_SPA, FieldId::ARP_TPA).unwrap(),
        Action::output(port::CONTROLLER),
    ];
    sw.apply(&add_cookie(1, 1, m, actions(swap), 77)).unwrap();
    sw.apply(&add(0, 0, Match::new(), vec![Instruction::GotoTable(1)]))
        .unwrap();
    let tagged = request(Some(5));
    let out = sw.process(4, 9, &tagged).unwrap();
    let pi = &out.to_controller[0];
    assert_eq!(
        (pi.table_id, pi.cookie, pi.in_port, pi.tun_id),
        (1, 77, 4, 9)
    );
    let got = ArpRepr::parse_frame(&pi.frame).unwrap();
    let want = ArpRepr::parse_frame(&tagged).unwrap();
    assert_eq!(got.eth_dst, want.eth_src);
    assert_eq!(got.eth_src, mac("02:00:00:00:00:09"));
    assert_eq!((got.tpa, got.spa), (want.spa, want.spa));
    assert_eq!(got.tags, want.tags, "VLAN tags untouched");
}

#[test]
fn equal_priority_overlaps_are_reported() {
    let mut sw = Switch::new();
    sw.apply(&add(0, 10, Match::new().in_port(1), vec![]))
        .unwrap();
    sw.apply(&add(0, 10, Match::new().eth_type(0x0806), vec![]))
        .unwrap();
    assert_eq!(
        sw.process(1, 0, &request(None)),
        Err(SimError::Ambiguous {
            table: 0,
            priority: 10,
            count: 2
        })
    );
    assert!(sw.process(2, 0, &request(None)).is_ok());
    assert_eq!(sw.process(1, 0, &[0; 13]), Err(SimError::ShortFrame(13)));
}
