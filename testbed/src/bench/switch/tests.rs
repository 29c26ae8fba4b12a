use super::*;
use ofp::action::Action;
use ofp::instruction::Instruction;
use ofp::message::{FlowMod, FlowModCommand, PacketInView, PacketOut};
use ofp::multipart::MultipartRequest;
use ofp::packet::ArpRepr;

fn spec() -> SwitchSpec {
    SwitchSpec {
        index: 7,
        datapath_id: 0xabc,
        ports: 3,
        n_buffers: 0,
    }
}

fn switch() -> EmulatedSwitch {
    EmulatedSwitch::new(
        spec(),
        PacketInProfile {
            reason: PacketInReason::Action,
            table_id: 2,
            cookie: 0x4952,
            forwarded: false,
        },
    )
}

fn encode(xid: u32, m: Message) -> Vec<u8> {
    let mut b = Vec::new();
    OfpMessage::new(xid, m).emit(&mut b);
    b
}

/// Sends `m` to the switch; returns what it said and its one reply, if any.
fn ask(sw: &mut EmulatedSwitch, xid: u32, m: Message) -> (Inbound, Option<OfpMessage>) {
    let mut out = Vec::new();
    let inbound = sw.handle(&encode(xid, m), &mut out).unwrap();
    let reply = (!out.is_empty()).then(|| OfpMessage::parse(&out).unwrap());
    (inbound, reply)
}

#[test]
fn hello_offers_openflow_1_3_only() {
    let mut out = Vec::new();
    switch().hello(&mut out);
    let Message::Hello(h) = OfpMessage::parse(&out).unwrap().message else {
        panic!("not a hello")
    };
    assert!(h.accepts(4) && !h.accepts(1) && !h.accepts(5));
}

#[test]
fn hello_without_1_3_is_refused() {
    let mut sw = switch();
    let old = Message::Hello(Hello {
        version: 1,
        elements: vec![],
    });
    let mut bytes = encode(1, old);
    bytes[0] = 1;
    let mut out = Vec::new();
    sw.handle(&bytes, &mut out).unwrap();
    let m = OfpMessage::parse(&out).unwrap();
    assert!(matches!(
        m.message,
        Message::Error(ErrorMsg::Standard { code, .. }) if code == ErrorCode::HELLO_INCOMPATIBLE
    ));
}

#[test]
fn handshake_answers_carry_the_datapath_and_ports() {
    let mut sw = switch();
    assert!(!sw.features_replied());
    let (_, r) = ask(&mut sw, 9, Message::FeaturesRequest);
    let r = r.unwrap();
    assert_eq!(r.xid, 9);
    let Message::FeaturesReply(f) = r.message else {
        panic!("{r:?}")
    };
    assert_eq!(f.datapath_id, 0xabc);
    assert!(sw.features_replied());

    let req = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: MultipartRequestBody::PortDesc,
    });
    let Some(OfpMessage {
        message:
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::PortDesc(ports),
                ..
            }),
        ..
    }) = ask(&mut sw, 10, req).1
    else {
        panic!("no port desc")
    };
    let numbers: Vec<u32> = ports.iter().map(|p| p.port_no).collect();
    assert_eq!(numbers, vec![1, 2, 3, port_no::LOCAL]);
    assert!(ports.iter().all(|p| p.state == port_state::LIVE));
    let macs: std::collections::BTreeSet<_> = ports.iter().map(|p| p.hw_addr).collect();
    assert_eq!(macs.len(), 4, "every port has its own MAC");
}

#[test]
fn echo_barrier_config_and_role_are_answered() {
    let mut sw = switch();
    let (_, r) = ask(&mut sw, 3, Message::EchoRequest(vec![1, 2]));
    assert_eq!(r.unwrap().message, Message::EchoReply(vec![1, 2]));
    let (_, r) = ask(&mut sw, 4, Message::BarrierRequest);
    assert_eq!(r.unwrap(), OfpMessage::new(4, Message::BarrierReply));
    let set = SwitchConfig {
        flags: 0,
        miss_send_len: 0xffff,
    };
    assert_eq!(ask(&mut sw, 5, Message::SetConfig(set)).1, None);
    let (_, r) = ask(&mut sw, 6, Message::GetConfigRequest);
    assert_eq!(r.unwrap().message, Message::GetConfigReply(set));
    let (_, r) = ask(
        &mut sw,
        7,
        Message::RoleRequest(RoleMsg {
            role: ControllerRole::Master,
            generation_id: 5,
        }),
    );
    assert!(matches!(
        r.unwrap().message,
        Message::RoleReply(RoleMsg {
            role: ControllerRole::Master,
            generation_id: 5
        })
    ));
}

#[test]
fn dumps_come_back_empty_and_unknown_multiparts_are_refused() {
    let mut sw = switch();
    for (body, empty) in [
        (
            MultipartRequestBody::GroupDesc,
            MultipartReplyBody::GroupDesc(vec![]),
        ),
        (
            MultipartRequestBody::Meter {
                meter_id: 0xffff_ffff,
            },
            MultipartReplyBody::Meter(vec![]),
        ),
    ] {
        let (_, r) = ask(
            &mut sw,
            1,
            Message::MultipartRequest(MultipartRequest { flags: 0, body }),
        );
        assert_eq!(
            r.unwrap().message,
            Message::MultipartReply(MultipartReply {
                flags: 0,
                body: empty
            })
        );
    }
    let (_, r) = ask(
        &mut sw,
        2,
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Unknown {
                mp_type: 0x7777,
                body: vec![],
            },
        }),
    );
    assert!(matches!(r.unwrap().message, Message::Error(_)));
}

#[test]
fn packet_in_carries_port_profile_buffer_and_frame() {
    let mut sw = switch();
    let frame = {
        let mut f = Vec::new();
        ArpRepr::gratuitous(MacAddr([2, 0, 7, 0, 0, 1]), "10.0.0.2".parse().unwrap()).emit(&mut f);
        f
    };
    let mut out = Vec::new();
    sw.packet_in(2, 77, &frame, &mut out);
    sw.packet_in(3, NO_BUFFER, &frame, &mut out);
    let first_len = usize::from(u16::from_be_bytes([out[2], out[3]]));
    let (a, b) = out.split_at(first_len);
    let va = PacketInView::new_checked(a).unwrap();
    assert_eq!(va.in_port(), Some(2));
    assert_eq!(
        (va.reason(), va.table_id(), va.cookie()),
        (PacketInReason::Action, 2, 0x4952)
    );
    let Message::PacketIn(pa) = OfpMessage::parse(a).unwrap().message else {
        panic!()
    };
    assert_eq!((pa.buffer_id, pa.total_len), (77, frame.len() as u16));
    assert_eq!(pa.data, frame);
    let pb = OfpMessage::parse(b).unwrap();
    assert_ne!(pb.xid, OfpMessage::parse(a).unwrap().xid, "fresh xid each");
    assert!(matches!(
        pb.message,
        Message::PacketIn(PacketIn {
            buffer_id: NO_BUFFER,
            ..
        })
    ));
}

#[test]
fn flow_mod_keys_are_its_buffer_and_exact_macs_and_where_it_outputs() {
    let mut sw = switch();
    let fm = FlowMod {
        buffer_id: 12,
        match_: Match::new()
            .in_port(1)
            .eth_dst([2, 0, 7, 0, 0, 2])
            .eth_src([2, 0, 7, 0, 0, 3])
            .arp_sha_masked([2, 0, 7, 0, 0, 4], [0xff; 6])
            .arp_tpa("10.128.0.5".parse().unwrap()),
        instructions: vec![
            Instruction::WriteMetadata {
                metadata: 1,
                mask: 1,
            },
            Instruction::ApplyActions(vec![Action::PopVlan, Action::output(3)]),
        ],
        ..FlowMod::default()
    };
    let (inbound, reply) = ask(&mut sw, 1, Message::FlowMod(fm.clone()));
    assert_eq!(reply, None);
    let expected = Answer {
        kind: AnswerKind::FlowMod,
        buffer_id: Some(12),
        macs: [
            Some([2, 0, 7, 0, 0, 3]),
            Some([2, 0, 7, 0, 0, 2]),
            None,
            None,
        ],
        ips: [None, Some([10, 128, 0, 5])],
        adds: true,
        out_port: Some(3),
        arp_op: None,
    };
    assert_eq!(inbound, Inbound::Answer(expected));

    // OFPP_IN_PORT is the match's in_port; a second port or a group is
    // not one port; a DELETE adds nothing.
    for (instructions, command, out_port) in [
        (
            vec![Instruction::WriteActions(vec![Action::output(
                port_no::IN_PORT,
            )])],
            FlowModCommand::Add,
            Some(1),
        ),
        (
            vec![Instruction::ApplyActions(vec![
                Action::output(3),
                Action::output(2),
            ])],
            FlowModCommand::Add,
            None,
        ),
        (
            vec![Instruction::ApplyActions(vec![
                Action::output(3),
                Action::Group(4),
            ])],
            FlowModCommand::Add,
            None,
        ),
        (
            vec![Instruction::GotoTable(3)],
            FlowModCommand::DeleteStrict,
            None,
        ),
    ] {
        let fm = FlowMod {
            instructions,
            command,
            ..fm.clone()
        };
        let (inbound, _) = ask(&mut sw, 2, Message::FlowMod(fm));
        assert_eq!(
            inbound,
            Inbound::Answer(Answer {
                adds: command == FlowModCommand::Add,
                out_port,
                ..expected
            })
        );
    }
}

#[test]
fn packet_out_keys_are_its_frame_macs() {
    let mut sw = switch();
    let req = ArpRepr::request(
        MacAddr([2, 0, 7, 0, 0, 9]),
        "10.0.0.10".parse().unwrap(),
        "10.128.0.10".parse().unwrap(),
    );
    let mut data = Vec::new();
    req.reply_from(MacAddr([6, 0, 7, 0, 0, 9])).emit(&mut data);
    let po = PacketOut {
        buffer_id: NO_BUFFER,
        in_port: port_no::CONTROLLER,
        actions: vec![Action::output(1)],
        data,
    };
    let (inbound, _) = ask(&mut sw, 1, Message::PacketOut(po.clone()));
    let expected = Answer {
        kind: AnswerKind::PacketOut,
        buffer_id: None,
        macs: [
            Some([6, 0, 7, 0, 0, 9]),
            Some([2, 0, 7, 0, 0, 9]),
            Some([6, 0, 7, 0, 0, 9]),
            Some([2, 0, 7, 0, 0, 9]),
        ],
        ips: [Some([10, 128, 0, 10]), Some([10, 0, 0, 10])],
        adds: false,
        out_port: Some(1),
        arp_op: Some(2),
    };
    assert_eq!(inbound, Inbound::Answer(expected));
    // Sent back where it came from: OFPP_IN_PORT is the PACKET_OUT's
    // in_port. A flood is no one port.
    for (in_port, port, out_port) in [
        (2, port_no::IN_PORT, Some(2)),
        (2, port_no::FLOOD, Some(port_no::FLOOD)),
    ] {
        let po = PacketOut {
            in_port,
            actions: vec![Action::output(port)],
            ..po.clone()
        };
        let (inbound, _) = ask(&mut sw, 1, Message::PacketOut(po));
        assert_eq!(
            inbound,
            Inbound::Answer(Answer {
                out_port,
                ..expected
            })
        );
    }
}

#[test]
fn truncated_answers_are_decode_errors_not_panics() {
    let mut sw = switch();
    let mut po = encode(
        1,
        Message::PacketOut(PacketOut {
            buffer_id: 1,
            in_port: 1,
            actions: vec![Action::output(1)],
            data: vec![],
        }),
    );
    // actions_len claims more than the message holds.
    po[16] = 0x7f;
    assert!(sw.handle(&po, &mut Vec::new()).is_err());
    let mut fm = encode(1, Message::FlowMod(FlowMod::default()));
    fm[50] = 0x7f;
    assert!(sw.handle(&fm, &mut Vec::new()).is_err());
    for len in 0..fm.len() {
        let _ = sw.handle(&fm[..len], &mut Vec::new());
    }
}
