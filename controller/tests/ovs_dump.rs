//! A flow dump from real Open vSwitch reconciles to nothing against the
//! flows that were sent to it, although OVS reports each match's fields in
//! its own order and encoding.

use iris_controller::flowsim::Switch;
use iris_controller::reconciler::{reconcile, Foreign};
use iris_controller::switch_state::SwitchState;
use ofp::message::{Message, OfpMessage};
use ofp::multipart::{MultipartReply, MultipartReplyBody};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn an_ovs_dump_of_installed_flows_reconciles_to_nothing() {
    let text = include_str!("data/ovs-3.1-dump.txt");
    let (mut sent, mut flows, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (dir, hex) = line.split_at(2);
        let m = OfpMessage::parse(&unhex(hex)).unwrap().message;
        match (dir, m) {
            ("> ", m) => sent.push(m),
            ("< ", Message::MultipartReply(MultipartReply { body, .. })) => match body {
                MultipartReplyBody::Flow(f) => flows.extend(f),
                MultipartReplyBody::GroupDesc(g) => groups.extend(g),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    let mut sw = Switch::new();
    sw.apply_all(&sent).unwrap();
    let dumped = SwitchState::from_dump(&flows, &groups);
    assert_eq!(dumped.flows.len(), 62);
    assert_eq!(dumped.groups, sw.state().groups);
    for (key, f) in &sw.state().flows {
        assert_eq!(
            dumped.flows.get(key).map(|d| d.cookie),
            Some(f.cookie),
            "{f}"
        );
    }
    assert!(reconcile(sw.state(), &dumped, Foreign::Delete)
        .messages
        .is_empty());

    // The canonical form is what makes this work: OVS sent some matches
    // back in another field order than they went out.
    let reordered = flows.iter().filter(|fs| {
        sent.iter().any(|m| match m {
            Message::FlowMod(fm) => {
                fm.table_id == fs.table_id
                    && fm.priority == fs.priority
                    && fm.match_ != fs.match_
                    && iris_controller::switch_state::canonical_match(&fm.match_)
                        == iris_controller::switch_state::canonical_match(&fs.match_)
            }
            _ => false,
        })
    });
    assert!(reordered.count() > 0);
}
