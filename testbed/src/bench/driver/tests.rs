//! The generator scores only correct answers: small controllers in this
//! process, each answering PacketIns one way, serve the emulated switches
//! over loopback for a short run, and the run's `answered` count is read.

use super::*;
use crate::bench::switch::{PacketInProfile, SwitchSpec};
use crate::bench::traffic::{known_index, known_mac, FrameKind, Traffic};
use ofp::action::Action;
use ofp::instruction::Instruction;
use ofp::message::{
    port_no, FlowMod, Hello, HelloElement, PacketInReason, PacketInView, PacketOut, NO_BUFFER,
};
use ofp::oxm::Match;
use ofp::packet::{ArpOp, ArpRepr, EthernetFrame, MacAddr};
use std::collections::HashMap;
use tokio::net::TcpListener;

/// How a fake controller answers a PacketIn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// Sends the packet back out of the port it came in on.
    Echo,
    /// Floods it: a hub.
    Hub,
    /// A learning switch: learns the source; a known destination on
    /// another port gets a flow (in_port, eth_src, eth_dst → its port) and
    /// the packet; anything else is flooded.
    Learn,
    /// What a learner whose switch forwarded the packet owes: the flow to
    /// the source, out of the port it came in on.
    FlowToSource,
    /// A flow naming the source, but only as a source check (no output).
    SourceCheck,
    /// Answers ARP requests for the known addresses, from `known_mac`.
    ArpReply,
    /// The same, from another MAC than the registry's.
    ArpReplyFromWrongMac,
}

fn emit(out: &mut Vec<u8>, m: Message) {
    OfpMessage::new(0, m).emit(out);
}

fn packet_out(in_port: u32, port: u32, data: &[u8]) -> Message {
    Message::PacketOut(PacketOut {
        buffer_id: NO_BUFFER,
        in_port,
        actions: vec![Action::output(port)],
        data: data.to_vec(),
    })
}

fn flow_to(m: Match, port: u32) -> Message {
    Message::FlowMod(FlowMod {
        match_: m,
        instructions: vec![Instruction::ApplyActions(vec![Action::output(port)])],
        ..FlowMod::default()
    })
}

/// What `how` sends for one PacketIn; `macs` is the connection's MAC table.
fn answer(
    how: Answers,
    pi: &PacketInView<'_>,
    macs: &mut HashMap<MacAddr, u32>,
    out: &mut Vec<u8>,
) {
    let in_port = pi.in_port().expect("the emulated switch names the in_port");
    let data = pi.data();
    let eth = EthernetFrame::new_checked(data).expect("an Ethernet frame");
    let (src, dst) = (eth.src(), eth.dst());
    match how {
        Answers::Echo => emit(out, packet_out(in_port, port_no::IN_PORT, data)),
        Answers::Hub => emit(out, packet_out(in_port, port_no::FLOOD, data)),
        Answers::Learn => {
            macs.insert(src, in_port);
            match macs.get(&dst).copied().filter(|&p| p != in_port) {
                Some(port) => {
                    let m = Match::new().in_port(in_port).eth_src(src.0).eth_dst(dst.0);
                    emit(out, flow_to(m, port));
                    emit(out, packet_out(in_port, port, data));
                }
                None => emit(out, packet_out(in_port, port_no::FLOOD, data)),
            }
        }
        Answers::FlowToSource => emit(out, flow_to(Match::new().eth_dst(src.0), in_port)),
        Answers::SourceCheck => emit(
            out,
            Message::FlowMod(FlowMod {
                match_: Match::new().in_port(in_port).eth_src(src.0),
                instructions: vec![Instruction::GotoTable(2)],
                ..FlowMod::default()
            }),
        ),
        Answers::ArpReply | Answers::ArpReplyFromWrongMac => {
            let req = ArpRepr::parse_frame(data).expect("an ARP request");
            assert_eq!(req.op, ArpOp::Request);
            let key = known_index(req.tpa.octets()).expect("a known address");
            // The asker's MAC names its switch.
            let switch = u16::from_be_bytes([req.sha.0[1], req.sha.0[2]]);
            let mut mac = known_mac(switch, key);
            if how == Answers::ArpReplyFromWrongMac {
                mac = known_mac(switch, key + 1);
            }
            let mut frame = Vec::new();
            req.reply_from(mac).emit(&mut frame);
            emit(out, packet_out(in_port, port_no::IN_PORT, &frame));
        }
    }
}

/// Serves every connection to `listener` the way `how` says.
async fn fake_controller(listener: TcpListener, how: Answers) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            let mut out = Vec::new();
            emit(
                &mut out,
                Message::Hello(Hello {
                    version: ofp::OFP_VERSION,
                    elements: vec![HelloElement::VersionBitmap(vec![1 << ofp::OFP_VERSION])],
                }),
            );
            emit(&mut out, Message::FeaturesRequest);
            let mut framer = Framer::default();
            let mut macs = HashMap::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                if !out.is_empty() && wr.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                framer.extend(&buf[..n]);
                while let Ok(Some(msg)) = framer.next_message() {
                    if let Ok(pi) = PacketInView::new_checked(msg) {
                        answer(how, &pi, &mut macs, &mut out);
                    }
                }
            }
        });
    }
}

/// Nothing to watch: the controller runs in this process.
struct InProcess;

impl Watch for InProcess {
    fn alive(&mut self) -> Result<(), BenchError> {
        Ok(())
    }
    fn ready(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn mark(&mut self) {}
}

/// Runs 2 switches of `kind` frames against a controller answering `how`
/// for a short measurement; the summed counts.
async fn score(how: Answers, kind: FrameKind, forwarded: bool) -> Counts {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(fake_controller(listener, how));
    let switches = (0..2u16)
        .map(|index| {
            let spec = SwitchSpec {
                index,
                datapath_id: u64::from(index) + 1,
                ports: 4,
                n_buffers: 0,
            };
            let profile = PacketInProfile {
                reason: PacketInReason::Action,
                table_id: 0,
                cookie: 0,
                forwarded,
            };
            let traffic = Traffic {
                kind,
                switch: index,
                macs: 50,
                ports: 4,
                vlan: None,
            };
            (
                EmulatedSwitch::new(spec, profile),
                Load::new(traffic, 8, false, forwarded, Duration::from_millis(100)),
            )
        })
        .collect();
    let plan = Plan {
        addr,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        setup_timeout: Duration::from_secs(10),
        settle: Duration::from_millis(20),
        warm_until_no_flow_mods: false,
    };
    let (results, _) = drive(&plan, switches, &mut InProcess).await.unwrap();
    server.abort();
    let mut c = Counts::default();
    for r in &results {
        c.add(&r.counts);
    }
    c
}

/// Whether the controller sent a message about every PacketIn (but for
/// the window's worth sent as the measurement ended): a bad answerer that
/// answers all of them still scores nothing.
fn answered_every_one(c: &Counts) -> bool {
    const WINDOWS: u64 = 2 * 8;
    c.packet_ins > 0 && c.flow_mods + c.packet_outs + WINDOWS >= c.packet_ins
}

#[tokio::test]
async fn echoes_and_floods_of_learning_frames_score_nothing() {
    for how in [Answers::Echo, Answers::Hub] {
        let c = score(how, FrameKind::Unicast, false).await;
        assert!(answered_every_one(&c), "{how:?}: {c:?}");
        assert_eq!(c.answered, 0, "{how:?}: {c:?}");
        assert!(c.not_answers > 0, "{how:?}: {c:?}");
    }
}

#[tokio::test]
async fn a_learning_switch_scores_its_flows_and_packets() {
    let c = score(Answers::Learn, FrameKind::Unicast, false).await;
    assert!(c.answered > 100, "{c:?}");
    // Every answer is a FLOW_MOD and a PACKET_OUT.
    assert!(
        c.flow_mods >= c.answered && c.packet_outs >= c.answered,
        "{c:?}"
    );
    assert_eq!(c.expired, 0, "{c:?}");
}

#[tokio::test]
async fn a_forwarded_frame_is_answered_by_the_flow_to_its_source_only() {
    let c = score(Answers::FlowToSource, FrameKind::Garp, true).await;
    assert!(c.answered > 100, "{c:?}");
    // A flow that only checks the source, or an echo, answers nothing.
    for how in [Answers::SourceCheck, Answers::Echo] {
        let c = score(how, FrameKind::Garp, true).await;
        assert!(answered_every_one(&c), "{how:?}: {c:?}");
        assert_eq!(c.answered, 0, "{how:?}: {c:?}");
    }
    // Held at the controller, the same flow is not enough.
    let c = score(Answers::FlowToSource, FrameKind::Unicast, false).await;
    assert_eq!(c.answered, 0, "{c:?}");
}

#[tokio::test]
async fn arp_requests_are_answered_only_by_the_registry_s_reply() {
    let c = score(Answers::ArpReply, FrameKind::ArpRequest, false).await;
    assert!(c.answered > 100, "{c:?}");
    assert_eq!(c.answered, c.packet_outs, "one reply per request: {c:?}");
    for how in [Answers::Echo, Answers::Hub, Answers::ArpReplyFromWrongMac] {
        let c = score(how, FrameKind::ArpRequest, false).await;
        assert!(answered_every_one(&c), "{how:?}: {c:?}");
        assert_eq!(c.answered, 0, "{how:?}: {c:?}");
    }
}
