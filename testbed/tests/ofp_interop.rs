//! The `ofp` codec against a real ovs-vswitchd: the interop sequence of
//! `iris_testbed::interop` (the same one `iris-testbed demo` prints), with
//! its report checked here. Needs root and Open vSwitch.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use iris_testbed::interop::{self, Event, Wire, DATAPATH_ID};
use iris_testbed::stale::leftovers;
use iris_testbed::Config;
use ofp::message::{Message, OfpMessage};
use ofp::oxm::FieldId;
use ofp::{ErrorCode, MsgType, OFP_VERSION};

#[test]
fn ofp_codec_interoperates_with_ovs_vswitchd() {
    let mut transcript = Vec::new();
    let result = interop::run(Config::default(), &mut |e: &Event| {
        transcript.push(e.clone())
    });
    let text: String = transcript.iter().map(|e| format!("{e}\n")).collect();
    let report = result.unwrap_or_else(|e| panic!("{text}\ninterop failed: {e}"));

    // The testbed (underlay, PM, two VMs, the management link) is gone.
    assert_eq!(report.testbed.namespaces.len(), 4, "{:?}", report.testbed);
    assert_eq!(report.testbed.root_links.len(), 1, "{:?}", report.testbed);
    assert_eq!(leftovers(&report.testbed).unwrap(), Vec::<String>::new());

    // Handshake.
    let bitmap = report.switch_hello.version_bitmap().unwrap();
    assert_ne!(bitmap[0] & (1 << OFP_VERSION), 0, "{bitmap:x?}");
    assert_eq!(report.features.datapath_id, DATAPATH_ID);
    let ports: BTreeSet<(String, u32)> = report
        .ports
        .iter()
        .map(|p| (p.name.to_string_lossy(), p.port_no))
        .collect();
    assert_eq!(ports, report.ovsdb_ports.iter().cloned().collect());
    assert!(ports.contains(&("br-int".to_owned(), ofp::message::port_no::LOCAL)));
    assert_eq!(ports.len(), 3, "br-int and two VM ports: {ports:?}");

    // Both sides of HELLO carried the version bitmap element.
    let sent_hello = transcript.iter().find_map(|e| match e {
        Event::Sent(Wire::Message(OfpMessage {
            message: Message::Hello(h),
            ..
        })) => Some(h),
        _ => None,
    });
    assert!(sent_hello.unwrap().version_bitmap().is_some());

    // Echo, both directions.
    let (request, reply) = &report.echo;
    assert_eq!(request.xid, reply.xid);
    let (Message::EchoRequest(a), Message::EchoReply(b)) = (&request.message, &reply.message)
    else {
        panic!("{request} / {reply}")
    };
    assert_eq!(a, b);
    let (probe, _) = &report.switch_echo;
    assert_eq!(probe.message.msg_type(), MsgType::EchoRequest);
    assert!(transcript.iter().any(|e| matches!(e,
        Event::Sent(Wire::Message(m)) if m.xid == probe.xid && m.message.msg_type() == MsgType::EchoReply)));

    // The flows: three tables, the ARP responder with its Nicira moves.
    assert_eq!(report.flows.len(), 3);
    let tables: Vec<u8> = report.flows.iter().map(|f| f.reported.table_id).collect();
    assert_eq!(tables, [0, 1, 2]);
    for flow in &report.flows {
        let sent: BTreeSet<FieldId> = flow.sent.match_.fields.iter().map(|f| f.id()).collect();
        let got: BTreeSet<FieldId> = flow.reported.match_.fields.iter().map(|f| f.id()).collect();
        assert_eq!(sent, got, "table {}", flow.sent.table_id);
        for field in &flow.sent.match_.fields {
            assert_eq!(flow.reported.match_.get(field.id()), Some(field));
        }
        assert_eq!(
            interop::compare(&flow.sent, &flow.reported),
            Ok(flow.normalised.clone())
        );
        assert_eq!(flow.dumped.match_text, flow.reported.match_.to_string());
        assert_eq!(flow.dumped.match_text, flow.sent.match_.to_string());
    }
    let responder = &report.flows[1];
    assert!(responder.sent.match_.fields.len() >= 6);
    assert!(responder
        .dumped
        .actions_text
        .contains("move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]"));
    assert!(responder.dumped.actions_text.ends_with("goto_table:2"));

    // Malformed messages: refused with the offending xid and the codec's code.
    let codes: Vec<ErrorCode> = report.refusals.iter().map(|r| r.codec_verdict).collect();
    assert_eq!(codes, [ErrorCode::BAD_LEN, ErrorCode::MATCH_DUP_FIELD]);
    for refusal in &report.refusals {
        assert_eq!(refusal.error.xid, refusal.xid);
        let Message::Error(e) = &refusal.error.message else {
            panic!("{}", refusal.error)
        };
        assert!(refusal.bytes.starts_with(e.data()), "{}", refusal.what);
    }
}
