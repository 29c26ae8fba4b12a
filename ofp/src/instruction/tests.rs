use super::*;
use crate::action::Action;

fn round_trip(i: &Instruction) -> Vec<u8> {
    let mut buf = Vec::new();
    i.emit(&mut buf);
    let mut r = Reader::new(&buf, "t");
    assert_eq!(&Instruction::parse(&mut r).unwrap(), i);
    assert!(r.is_empty());
    buf
}

#[test]
fn instructions_have_spec_layouts() {
    assert_eq!(
        round_trip(&Instruction::GotoTable(100)),
        [0, 1, 0, 8, 100, 0, 0, 0]
    );
    assert_eq!(round_trip(&Instruction::Meter(1)), [0, 6, 0, 8, 0, 0, 0, 1]);
    assert_eq!(
        round_trip(&Instruction::ClearActions),
        [0, 5, 0, 8, 0, 0, 0, 0]
    );
    let wm = round_trip(&Instruction::WriteMetadata {
        metadata: 1,
        mask: 0xff,
    });
    assert_eq!(wm.len(), 24);
    assert_eq!(&wm[..4], [0, 2, 0, 24]);
    let apply = round_trip(&Instruction::ApplyActions(vec![Action::PopVlan]));
    assert_eq!(apply, [0, 4, 0, 16, 0, 0, 0, 0, 0, 18, 0, 8, 0, 0, 0, 0]);
    let exp = Instruction::Experimenter {
        experimenter: 0x2320,
        data: vec![1, 2, 3, 4, 5, 6, 7, 8],
    };
    assert_eq!(
        round_trip(&exp),
        [0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 1, 2, 3, 4, 5, 6, 7, 8]
    );
    let unknown = Instruction::Unknown {
        instruction_type: 7,
        data: vec![0; 4],
    };
    assert_eq!(round_trip(&unknown), [0, 7, 0, 8, 0, 0, 0, 0]);
}

#[test]
fn bad_lengths_are_bad_instruction_len() {
    for bytes in [
        &[0u8, 1, 0, 16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        &[0, 1, 0, 4, 1, 0, 0, 0],
        &[0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0, 4, 0, 16, 0, 0, 0, 0],
        &[0, 2, 0],
    ] {
        let e = Instruction::parse(&mut Reader::new(bytes, "t")).unwrap_err();
        assert_eq!(
            e.ofp_error(),
            ErrorCode::INSTRUCTION_BAD_LEN,
            "{bytes:02x?}"
        );
    }
    // A bad action inside apply-actions reports the action's fault.
    let bad_action = [0, 4, 0, 16, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0];
    let e = Instruction::parse(&mut Reader::new(&bad_action, "t")).unwrap_err();
    assert_eq!(e.ofp_error(), ErrorCode::ACTION_BAD_LEN);
}

#[test]
fn instruction_lists_print_in_ovs_order() {
    let ins = [
        Instruction::GotoTable(3),
        Instruction::WriteActions(vec![Action::Group(1)]),
        Instruction::ApplyActions(vec![Action::output(2)]),
        Instruction::WriteMetadata {
            metadata: 1,
            mask: 0xff,
        },
        Instruction::ClearActions,
        Instruction::Meter(1),
    ];
    assert_eq!(
        InstructionList(&ins).to_string(),
        "actions=meter:1,output:2,clear_actions,write_actions(group:1),write_metadata:0x1/0xff,goto_table:3"
    );
    assert_eq!(InstructionList(&[]).to_string(), "actions=drop");
    assert_eq!(
        InstructionList(&[Instruction::ApplyActions(vec![])]).to_string(),
        "actions=drop"
    );
    assert_eq!(
        Instruction::WriteMetadata {
            metadata: 0x10,
            mask: u64::MAX
        }
        .to_string(),
        "write_metadata:0x10"
    );
}
