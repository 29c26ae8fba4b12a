//! Scripted exchanges between a session and a switch that exists only as
//! the bytes it would send.

use super::*;
use ofp::action::Action;
use ofp::codec::Name;
use ofp::instruction::Instruction;
use ofp::message::{FlowMod, HelloElement, PacketInReason, NO_BUFFER};
use ofp::multipart::{FlowStats, MULTIPART_MORE};
use ofp::oxm::Match;
use ofp::packet::MacAddr;
use proptest::prelude::*;

const DPID: u64 = 0x0000_5254_0000_0001;

fn t0() -> Instant {
    Instant::now()
}

fn at(start: Instant, secs: f64) -> Instant {
    start + Duration::from_secs_f64(secs)
}

fn wire(xid: u32, m: Message) -> Vec<u8> {
    OfpMessage::new(xid, m).to_bytes()
}

fn sent(out: &[Output]) -> Vec<&OfpMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn upcalls(out: &[Output]) -> Vec<&Upcall> {
    out.iter()
        .filter_map(|o| match o {
            Output::Upcall(u) => Some(u),
            _ => None,
        })
        .collect()
}

fn closed(out: &[Output]) -> Option<&CloseReason> {
    out.iter().find_map(|o| match o {
        Output::Close(r) => Some(r),
        _ => None,
    })
}

fn logs(out: &[Output]) -> String {
    out.iter()
        .filter_map(|o| match o {
            Output::Log(_, l) => Some(l.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn port(no: u32, name: &str) -> Port {
    Port {
        port_no: no,
        hw_addr: MacAddr([2, 0, 0, 0, 0, no as u8]),
        name: Name::new(name),
        ..Port::default()
    }
}

fn flow(priority: u16, cookie: u64) -> FlowStats {
    FlowStats {
        table_id: 3,
        duration_sec: 10,
        duration_nsec: 0,
        priority,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie,
        packet_count: 0,
        byte_count: 0,
        match_: Match::new().in_port(u32::from(priority)),
        instructions: vec![Instruction::ApplyActions(vec![Action::output(1)])],
    }
}

fn reply(xid: u32, more: bool, body: MultipartReplyBody) -> Vec<u8> {
    wire(
        xid,
        Message::MultipartReply(MultipartReply {
            flags: if more { MULTIPART_MORE } else { 0 },
            body,
        }),
    )
}

/// The xids of the handshake requests, by what they ask for.
#[derive(Debug, Default)]
struct HandshakeXids {
    features: u32,
    set_config: Option<SwitchConfig>,
    port_desc: u32,
    flows: u32,
    groups: u32,
}

fn handshake_xids(out: &[Output]) -> HandshakeXids {
    let mut x = HandshakeXids::default();
    for m in sent(out) {
        match &m.message {
            Message::FeaturesRequest => x.features = m.xid,
            Message::SetConfig(c) => x.set_config = Some(*c),
            Message::MultipartRequest(r) => match r.body {
                MultipartRequestBody::PortDesc => x.port_desc = m.xid,
                MultipartRequestBody::Flow(_) => x.flows = m.xid,
                MultipartRequestBody::GroupDesc => x.groups = m.xid,
                _ => panic!("unexpected request {m:?}"),
            },
            other => panic!("unexpected handshake message {other:?}"),
        }
    }
    x
}

fn hello_13() -> Vec<u8> {
    wire(1, Message::Hello(Hello::default()))
}

/// A session with `config` that connected and took the switch's HELLO at
/// `start`, and the xids of the handshake requests it sent.
fn negotiated(start: Instant, config: SessionConfig) -> (Session, HandshakeXids) {
    let mut s = Session::new(config);
    s.handle(start, Event::Connected);
    let x = handshake_xids(&s.handle(start, Event::Received(&hello_13())));
    (s, x)
}

/// A session brought to Ready at `start` with the given tables.
fn ready_session(start: Instant, flows: Vec<FlowStats>) -> Session {
    let (mut s, x) = negotiated(start, SessionConfig::default());
    let mut bytes = wire(
        x.features,
        Message::FeaturesReply(SwitchFeatures {
            datapath_id: DPID,
            n_tables: 254,
            ..SwitchFeatures::default()
        }),
    );
    bytes.extend(reply(
        x.port_desc,
        false,
        MultipartReplyBody::PortDesc(vec![port(1, "vm1"), port(2, "gre-b")]),
    ));
    bytes.extend(reply(x.flows, false, MultipartReplyBody::Flow(flows)));
    bytes.extend(reply(
        x.groups,
        false,
        MultipartReplyBody::GroupDesc(vec![]),
    ));
    let out = s.handle(start, Event::Received(&bytes));
    assert!(
        matches!(upcalls(&out)[..], [Upcall::Ready { .. }]),
        "{out:?}"
    );
    s
}

#[test]
fn handshake_reads_everything_and_changes_nothing() {
    let start = t0();
    let mut s = Session::new(SessionConfig {
        miss_send_len: 128,
        ..SessionConfig::default()
    });
    let out = s.handle(start, Event::Connected);
    let [hello] = &sent(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        hello.to_bytes()[..8],
        [4, 0, 0, 16, 0, 0, 0, hello.xid as u8]
    );

    let out = s.handle(start, Event::Received(&hello_13()));
    let x = handshake_xids(&out);
    assert_eq!(
        x.set_config,
        Some(SwitchConfig {
            flags: 0,
            miss_send_len: 128
        })
    );
    assert!(x.features != 0 && x.port_desc != 0 && x.flows != 0 && x.groups != 0);
    assert!(!s.is_ready());

    // Answers arrive in any order; Ready waits for all of them.
    let out = s.handle(
        start,
        Event::Received(&reply(
            x.groups,
            false,
            MultipartReplyBody::GroupDesc(vec![]),
        )),
    );
    assert!(upcalls(&out).is_empty());
    let out = s.handle(
        start,
        Event::Received(&wire(
            x.features,
            Message::FeaturesReply(SwitchFeatures {
                datapath_id: DPID,
                ..SwitchFeatures::default()
            }),
        )),
    );
    assert!(upcalls(&out).is_empty());
    assert_eq!(s.datapath_id(), Some(DPID));
    let out = s.handle(
        start,
        Event::Received(&reply(
            x.port_desc,
            false,
            MultipartReplyBody::PortDesc(vec![port(1, "vm1"), port(7, "gre-c")]),
        )),
    );
    assert!(upcalls(&out).is_empty());
    let out = s.handle(
        start,
        Event::Received(&reply(
            x.flows,
            false,
            MultipartReplyBody::Flow(vec![flow(100, 0xabc)]),
        )),
    );
    let [Upcall::Ready {
        features,
        ports,
        installed,
    }] = &upcalls(&out)[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(features.datapath_id, DPID);
    assert_eq!(
        ports.iter().map(|p| p.port_no).collect::<Vec<_>>(),
        vec![1, 7]
    );
    assert_eq!(installed, &Installed::from_dump(&[flow(100, 0xabc)], &[]));
    assert!(installed.groups.is_empty());
    assert!(s.is_ready());
    assert_eq!(s.ports().keys().copied().collect::<Vec<_>>(), vec![1, 7]);
    assert!(sent(&out).is_empty(), "nothing is sent once ready: {out:?}");
}

#[test]
fn openflow_1_0_peer_gets_hello_failed_and_a_clear_log_line() {
    let start = t0();
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    // An OpenFlow 1.0 switch's hello: version 1, no bitmap.
    let out = s.handle(start, Event::Received(&[1, 0, 0, 8, 0, 0, 0, 9]));
    let [err] = &sent(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(err.xid, 9);
    let Message::Error(ErrorMsg::Standard { code, data }) = &err.message else {
        panic!("{err:?}")
    };
    assert_eq!(*code, ErrorCode::HELLO_INCOMPATIBLE);
    assert!(String::from_utf8_lossy(data).contains("OpenFlow13"));
    assert_eq!(
        closed(&out),
        Some(&CloseReason::IncompatibleVersion { peer_version: 1 })
    );
    let log = logs(&out);
    assert!(
        log.contains("does not speak OpenFlow 1.3") && log.contains("protocols=OpenFlow13"),
        "{log}"
    );
    assert!(s.is_closed());
    // A closed session ignores whatever still arrives.
    assert!(s.handle(start, Event::Received(&hello_13())).is_empty());
}

#[test]
fn version_bitmap_decides_over_the_header_version() {
    let start = t0();
    // Header says 1.5, bitmap offers 1.0 and 1.5 only: refused.
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    let no13 = wire(
        3,
        Message::Hello(Hello {
            version: 6,
            elements: vec![HelloElement::VersionBitmap(vec![(1 << 1) | (1 << 6)])],
        }),
    );
    let out = s.handle(start, Event::Received(&no13));
    assert_eq!(
        closed(&out),
        Some(&CloseReason::IncompatibleVersion { peer_version: 6 })
    );
    // Header says 1.5, bitmap offers 1.3 too: accepted.
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    let with13 = wire(
        3,
        Message::Hello(Hello {
            version: 6,
            elements: vec![HelloElement::VersionBitmap(vec![(1 << 4) | (1 << 6)])],
        }),
    );
    let out = s.handle(start, Event::Received(&with13));
    assert!(closed(&out).is_none());
    assert!(handshake_xids(&out).set_config.is_some());
    // No bitmap and a header version above 1.3: negotiation settles on 1.3.
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    let out = s.handle(start, Event::Received(&[5, 0, 0, 8, 0, 0, 0, 1]));
    assert!(closed(&out).is_none(), "{out:?}");
}

#[test]
fn speaking_before_hello_ends_the_session() {
    let start = t0();
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    let out = s.handle(start, Event::Received(&wire(4, Message::BarrierReply)));
    assert_eq!(
        closed(&out),
        Some(&CloseReason::NoHello {
            msg_type: MsgType::BarrierReply
        })
    );
    assert!(matches!(
        &sent(&out)[0].message,
        Message::Error(ErrorMsg::Standard { code, .. }) if *code == ErrorCode::HELLO_INCOMPATIBLE
    ));
}

#[test]
fn silent_switch_is_probed_then_declared_dead() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    // The default: probe after 5 s of silence, give up 15 s after the probe.
    assert!(s.handle(at(start, 4.9), Event::Tick).is_empty());
    let out = s.handle(at(start, 5.0), Event::Tick);
    let [probe] = &sent(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(probe.message, Message::EchoRequest(vec![]));
    // One probe at a time.
    assert!(s.handle(at(start, 10.0), Event::Tick).is_empty());
    assert!(s.handle(at(start, 19.9), Event::Tick).is_empty());
    let out = s.handle(at(start, 20.0), Event::Tick);
    assert_eq!(
        closed(&out),
        Some(&CloseReason::DeadPeer {
            silent_for: Duration::from_secs(20)
        })
    );
    assert!(logs(&out).is_empty());
    assert!(s.is_closed());
}

#[test]
fn any_message_from_the_switch_proves_it_alive() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let out = s.handle(at(start, 5.0), Event::Tick);
    let probe = sent(&out)[0].xid;
    s.handle(
        at(start, 6.0),
        Event::Received(&wire(probe, Message::EchoReply(vec![]))),
    );
    // Silence is counted from the reply: the next probe is due at 11 s.
    assert!(s.handle(at(start, 10.9), Event::Tick).is_empty());
    assert_eq!(sent(&s.handle(at(start, 11.0), Event::Tick)).len(), 1);
    s.handle(
        at(start, 20.0),
        Event::Received(&wire(77, Message::EchoRequest(b"hi".to_vec()))),
    );
    assert!(s.handle(at(start, 25.0), Event::Tick).len() == 1);
    assert!(!s.is_closed());
}

#[test]
fn keepalive_timers_are_configurable() {
    let start = t0();
    let mut s = Session::new(SessionConfig {
        echo_interval: Duration::from_millis(100),
        echo_timeout: Duration::from_millis(50),
        ..SessionConfig::default()
    });
    s.handle(start, Event::Connected);
    s.handle(start, Event::Received(&hello_13()));
    assert_eq!(sent(&s.handle(at(start, 0.1), Event::Tick)).len(), 1);
    let out = s.handle(at(start, 0.15), Event::Tick);
    assert!(matches!(closed(&out), Some(CloseReason::DeadPeer { .. })));
}

#[test]
fn echo_requests_are_answered_with_their_data() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let out = s.handle(
        start,
        Event::Received(&wire(0x55, Message::EchoRequest(b"keepalive".to_vec()))),
    );
    assert_eq!(
        sent(&out),
        vec![&OfpMessage::new(
            0x55,
            Message::EchoReply(b"keepalive".to_vec())
        )]
    );
}

#[test]
fn handshake_that_never_finishes_times_out() {
    let start = t0();
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    s.handle(start, Event::Received(&hello_13()));
    // The switch keeps echoing, so it is alive, but never answers FEATURES.
    for i in 1..30 {
        let out = s.handle(
            at(start, f64::from(i)),
            Event::Received(&wire(100 + i as u32, Message::EchoRequest(vec![]))),
        );
        assert!(closed(&out).is_none());
    }
    let out = s.handle(at(start, 30.0), Event::Tick);
    assert_eq!(closed(&out), Some(&CloseReason::HandshakeTimeout));
}

#[test]
fn multipart_replies_are_reassembled_across_parts_and_reads() {
    let start = t0();
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    let out = s.handle(start, Event::Received(&hello_13()));
    let x = handshake_xids(&out);
    let mut stream = wire(
        x.features,
        Message::FeaturesReply(SwitchFeatures {
            datapath_id: DPID,
            ..SwitchFeatures::default()
        }),
    );
    stream.extend(reply(
        x.port_desc,
        true,
        MultipartReplyBody::PortDesc(vec![port(1, "a")]),
    ));
    // Flow parts interleave with the rest of the port description.
    stream.extend(reply(
        x.flows,
        true,
        MultipartReplyBody::Flow(vec![flow(1, 1), flow(2, 2)]),
    ));
    stream.extend(reply(
        x.port_desc,
        false,
        MultipartReplyBody::PortDesc(vec![port(2, "b")]),
    ));
    stream.extend(reply(x.flows, true, MultipartReplyBody::Flow(vec![])));
    stream.extend(reply(
        x.flows,
        false,
        MultipartReplyBody::Flow(vec![flow(3, 3)]),
    ));
    stream.extend(reply(
        x.groups,
        false,
        MultipartReplyBody::GroupDesc(vec![]),
    ));
    // Delivered in 7-byte reads, so messages straddle every boundary.
    let mut ups = Vec::new();
    for chunk in stream.chunks(7) {
        let out = s.handle(start, Event::Received(chunk));
        assert!(closed(&out).is_none(), "{out:?}");
        ups.extend(upcalls(&out).into_iter().cloned());
    }
    let [Upcall::Ready {
        ports, installed, ..
    }] = &ups[..]
    else {
        panic!("{ups:?}")
    };
    let mut cookies: Vec<u64> = installed.flows().map(|(_, c)| c).collect();
    cookies.sort_unstable();
    assert_eq!(cookies, vec![1, 2, 3]);
    assert_eq!(
        ports.iter().map(|p| p.port_no).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn dump_after_ready_yields_tables() {
    let start = t0();
    let mut s = ready_session(start, vec![flow(1, 1)]);
    let out = s.handle(start, Event::Dump);
    let reqs = sent(&out);
    assert_eq!(reqs.len(), 2);
    // A second dump while one is under way is not started.
    assert!(sent(&s.handle(start, Event::Dump)).is_empty());
    let mut bytes = reply(
        reqs[0].xid,
        false,
        MultipartReplyBody::Flow(vec![flow(5, 5)]),
    );
    bytes.extend(reply(
        reqs[1].xid,
        false,
        MultipartReplyBody::GroupDesc(vec![]),
    ));
    let out = s.handle(start, Event::Received(&bytes));
    assert_eq!(
        upcalls(&out),
        vec![&Upcall::Tables {
            installed: Installed::from_dump(&[flow(5, 5)], &[])
        }]
    );
}

#[test]
fn too_large_a_dump_closes_the_session() {
    let start = t0();
    let (mut s, x) = negotiated(
        start,
        SessionConfig {
            max_dump_entries: 2,
            ..SessionConfig::default()
        },
    );
    let out = s.handle(
        start,
        Event::Received(&reply(
            x.flows,
            true,
            MultipartReplyBody::Flow(vec![flow(1, 1), flow(2, 2), flow(3, 3)]),
        )),
    );
    assert_eq!(closed(&out), Some(&CloseReason::DumpTooLarge));
}

fn flow_mod(priority: u16) -> Message {
    Message::FlowMod(FlowMod {
        table_id: 3,
        priority,
        cookie: 0x77,
        match_: Match::new().in_port(4),
        instructions: vec![Instruction::ApplyActions(vec![Action::output(2)])],
        ..FlowMod::default()
    })
}

#[test]
fn barrier_confirms_a_batch_and_counts_its_refusals() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let out = s.handle(
        start,
        Event::Submit(Batch {
            messages: vec![flow_mod(10), flow_mod(20)],
            barrier: Some(42),
        }),
    );
    let msgs = sent(&out);
    assert_eq!(msgs.len(), 3);
    assert!(matches!(msgs[0].message, Message::FlowMod(_)));
    assert_eq!(msgs[2].message, Message::BarrierRequest);
    let (second, barrier) = (msgs[1].xid, msgs[2].xid);

    // The switch refuses the second FlowMod, quoting its first 64 bytes.
    let quoted = msgs[1].to_bytes()[..64].to_vec();
    let out = s.handle(
        start,
        Event::Received(&wire(
            second,
            Message::Error(ErrorMsg::Standard {
                code: ErrorCode::MATCH_BAD_PREREQ,
                data: quoted,
            }),
        )),
    );
    let [Upcall::SwitchError { error, request }] = &upcalls(&out)[..] else {
        panic!("{out:?}")
    };
    assert!(
        matches!(error, ErrorMsg::Standard { code, .. } if *code == ErrorCode::MATCH_BAD_PREREQ)
    );
    assert_eq!(
        request.as_deref(),
        Some(&OfpMessage::new(second, flow_mod(20)))
    );
    let log = logs(&out);
    assert!(
        log.contains("OFPT_FLOW_MOD (OF1.3)")
            && log.contains("ADD table:3 cookie:0x77 priority=20")
            && log.contains("in_port=4")
            && log.contains("actions=output:2")
            && log.contains("OFPBMC_BAD_PREREQ"),
        "{log}"
    );

    let out = s.handle(
        start,
        Event::Received(&wire(barrier, Message::BarrierReply)),
    );
    assert_eq!(
        upcalls(&out),
        vec![&Upcall::BarrierConfirmed {
            ticket: 42,
            errors: 1
        }]
    );
}

/// The switch's OFPT_ERROR refusing request `xid`, quoting `data`.
fn refusal(xid: u32, data: Vec<u8>) -> Vec<u8> {
    wire(
        xid,
        Message::Error(ErrorMsg::Standard {
            code: ErrorCode::FLOW_MOD_BAD_COMMAND,
            data,
        }),
    )
}

/// A negotiated session that remembers only `tracked` requests.
fn forgetful(start: Instant, tracked: usize) -> Session {
    let mut s = Session::new(SessionConfig {
        tracked_requests: tracked,
        ..SessionConfig::default()
    });
    s.handle(start, Event::Connected);
    s.handle(start, Event::Received(&hello_13()));
    s
}

#[test]
fn errors_for_forgotten_requests_are_still_reported() {
    let start = t0();
    let mut s = forgetful(start, 2);
    let out = s.handle(
        start,
        Event::Submit(Batch {
            messages: vec![flow_mod(1), flow_mod(2), flow_mod(3)],
            barrier: None,
        }),
    );
    let xids: Vec<u32> = sent(&out).iter().map(|m| m.xid).collect();
    let out = s.handle(start, Event::Received(&refusal(xids[0], vec![])));
    assert!(matches!(
        upcalls(&out)[..],
        [Upcall::SwitchError { request: None, .. }]
    ));
    assert!(logs(&out).contains("no longer tracked"));
    let out = s.handle(start, Event::Received(&refusal(xids[2], vec![])));
    assert!(matches!(
        upcalls(&out)[..],
        [Upcall::SwitchError {
            request: Some(_),
            ..
        }]
    ));
}

#[test]
fn an_error_for_a_forgotten_request_counts_against_its_own_barrier() {
    // A first sync may send more requests than the session remembers; a
    // refusal of one of the early ones must still make its barrier report
    // an error, or the control loop believes the switch holds that flow.
    let start = t0();
    let tracked = 4;
    let mut s = forgetful(start, tracked);
    let batch = |ticket| {
        Event::Submit(Batch {
            messages: (0..tracked + 2).map(|i| flow_mod(i as u16)).collect(),
            barrier: Some(ticket),
        })
    };
    let first = sent(&s.handle(start, batch(1)))
        .iter()
        .map(|m| (m.xid, m.message.msg_type()))
        .collect::<Vec<_>>();
    let second = sent(&s.handle(start, batch(2)))
        .iter()
        .map(|m| (m.xid, m.message.msg_type()))
        .collect::<Vec<_>>();
    let xid_of = |msgs: &[(u32, MsgType)], t: MsgType| {
        msgs.iter()
            .filter(|(_, m)| *m == t)
            .map(|(x, _)| *x)
            .collect::<Vec<_>>()
    };
    // The first FlowMod of the first batch was forgotten long ago.
    let out = s.handle(
        start,
        Event::Received(&refusal(xid_of(&first, MsgType::FlowMod)[0], vec![])),
    );
    assert!(matches!(
        upcalls(&out)[..],
        [Upcall::SwitchError { request: None, .. }]
    ));
    let mut replies = wire(
        xid_of(&first, MsgType::BarrierRequest)[0],
        Message::BarrierReply,
    );
    replies.extend(wire(
        xid_of(&second, MsgType::BarrierRequest)[0],
        Message::BarrierReply,
    ));
    let out = s.handle(start, Event::Received(&replies));
    assert_eq!(
        upcalls(&out),
        vec![
            &Upcall::BarrierConfirmed {
                ticket: 1,
                errors: 1
            },
            &Upcall::BarrierConfirmed {
                ticket: 2,
                errors: 0
            }
        ]
    );
}

#[test]
fn batches_submitted_before_negotiation_wait_for_it() {
    let start = t0();
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    let out = s.handle(
        start,
        Event::Submit(Batch {
            messages: vec![flow_mod(1)],
            barrier: Some(1),
        }),
    );
    assert!(sent(&out).is_empty());
    let out = s.handle(start, Event::Received(&hello_13()));
    let types: Vec<MsgType> = sent(&out).iter().map(|m| m.message.msg_type()).collect();
    assert_eq!(
        &types[types.len() - 2..],
        &[MsgType::FlowMod, MsgType::BarrierRequest]
    );
}

#[test]
fn refused_handshake_request_ends_the_session() {
    let start = t0();
    let (mut s, x) = negotiated(start, SessionConfig::default());
    let out = s.handle(
        start,
        Event::Received(&wire(
            x.groups,
            Message::Error(ErrorMsg::Standard {
                code: ErrorCode::BAD_MULTIPART,
                data: vec![],
            }),
        )),
    );
    assert_eq!(
        closed(&out),
        Some(&CloseReason::HandshakeRefused {
            request: MsgType::MultipartRequest,
            error: ErrorMsg::Standard {
                code: ErrorCode::BAD_MULTIPART,
                data: vec![]
            }
        })
    );
}

#[test]
fn port_status_keeps_the_port_map_current() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let status = |reason, p| wire(0, Message::PortStatus(PortStatus { reason, desc: p }));
    let out = s.handle(
        start,
        Event::Received(&status(PortReason::Add, port(9, "vm9"))),
    );
    assert!(matches!(upcalls(&out)[..], [Upcall::PortStatus(_)]));
    assert!(s.ports().contains_key(&9));
    let mut down = port(9, "vm9");
    down.config = ofp::message::port_config::PORT_DOWN;
    s.handle(start, Event::Received(&status(PortReason::Modify, down)));
    assert_eq!(s.ports()[&9].config, ofp::message::port_config::PORT_DOWN);
    s.handle(start, Event::Received(&status(PortReason::Delete, down)));
    assert!(!s.ports().contains_key(&9));
    assert_eq!(s.ports().len(), 2);
}

#[test]
fn packet_in_goes_up() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let pi = PacketIn {
        buffer_id: NO_BUFFER,
        total_len: 3,
        reason: PacketInReason::Action,
        table_id: 1,
        cookie: 9,
        match_: Match::new().in_port(1),
        data: vec![1, 2, 3],
    };
    let arrived = at(start, 2.5);
    let out = s.handle(
        arrived,
        Event::Received(&wire(0, Message::PacketIn(pi.clone()))),
    );
    assert_eq!(
        upcalls(&out),
        vec![&Upcall::PacketIn {
            packet_in: pi,
            received: arrived
        }]
    );
}

#[test]
fn malformed_message_is_answered_with_its_error_code_and_the_session_goes_on() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    // A PORT_STATUS with its body cut to 40 bytes (the header still agrees).
    let mut bad = wire(
        0x1234,
        Message::PortStatus(PortStatus {
            reason: PortReason::Add,
            desc: port(3, "x"),
        }),
    );
    bad.truncate(48);
    bad[2..4].copy_from_slice(&48u16.to_be_bytes());
    // A PACKET_IN whose match is not of type OXM.
    let mut bad_match = wire(
        0x99,
        Message::PacketIn(PacketIn {
            buffer_id: NO_BUFFER,
            total_len: 0,
            reason: PacketInReason::Action,
            table_id: 0,
            cookie: 0,
            match_: Match::new(),
            data: vec![],
        }),
    );
    bad_match[25] = 0;
    // An ECHO_REQUEST in the wrong version.
    let bad_version = [1u8, 2, 0, 8, 0, 0, 0, 0x31];
    // Then a good message: the session keeps going.
    let good = wire(5, Message::EchoRequest(vec![]));
    let mut stream = bad.clone();
    stream.extend(&bad_match);
    stream.extend(bad_version);
    stream.extend(&good);
    let out = s.handle(start, Event::Received(&stream));
    assert!(closed(&out).is_none());
    let replies = sent(&out);
    let codes: Vec<(u32, ErrorCode, usize)> = replies
        .iter()
        .filter_map(|m| match &m.message {
            Message::Error(ErrorMsg::Standard { code, data }) => Some((m.xid, *code, data.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (0x1234, ErrorCode::BAD_LEN, 48),
            (0x99, ErrorCode::MATCH_BAD_TYPE, bad_match.len().min(64)),
            (0x31, ErrorCode::BAD_VERSION, 8),
        ]
    );
    // The error quotes the start of the offending message.
    let Message::Error(ErrorMsg::Standard { data, .. }) = &replies[0].message else {
        panic!()
    };
    assert_eq!(data, &bad);
    assert_eq!(replies[3], &OfpMessage::new(5, Message::EchoReply(vec![])));
    assert!(logs(&out).contains("malformed OFPT_PORT_STATUS (xid=0x1234)"));
}

#[test]
fn long_malformed_message_is_quoted_to_64_bytes() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    // A flow-stats reply whose entry claims a length below its fixed part.
    let mut bad = reply(999, false, MultipartReplyBody::Flow(vec![flow(1, 1)]));
    bad[16..18].copy_from_slice(&4u16.to_be_bytes());
    assert!(bad.len() > 64);
    let out = s.handle(start, Event::Received(&bad));
    let [m] = &sent(&out)[..] else {
        panic!("{out:?}")
    };
    let Message::Error(ErrorMsg::Standard { code, data }) = &m.message else {
        panic!()
    };
    assert_eq!(*code, ErrorCode::BAD_LEN);
    assert_eq!(data[..], bad[..64]);
}

#[test]
fn unknown_message_type_is_answered_bad_type() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let out = s.handle(
        start,
        Event::Received(&[4, 0x30, 0, 12, 0, 0, 0, 7, 1, 2, 3, 4]),
    );
    assert!(matches!(
        &sent(&out)[0].message,
        Message::Error(ErrorMsg::Standard { code, .. }) if *code == ErrorCode::BAD_TYPE
    ));
    assert!(!s.is_closed());
}

#[test]
fn lost_framing_closes_the_connection() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let out = s.handle(start, Event::Received(&[4, 2, 0, 4, 0, 0, 0, 1]));
    assert!(matches!(
        closed(&out),
        Some(CloseReason::FramingLost(DecodeError::BadLength {
            length: 4,
            ..
        }))
    ));
    assert!(s.is_closed());
}

#[test]
fn transport_close_is_reported_once() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    assert_eq!(
        s.handle(start, Event::Closed),
        vec![Output::Close(CloseReason::PeerClosed)]
    );
    assert!(s.handle(start, Event::Closed).is_empty());
}

#[test]
fn an_error_for_a_forgotten_request_is_decoded_from_its_data() {
    // OVS quotes the whole offending message, so it can still be named.
    let start = t0();
    let mut s = forgetful(start, 1);
    let out = s.handle(
        start,
        Event::Submit(Batch {
            messages: vec![flow_mod(30), flow_mod(40)],
            barrier: None,
        }),
    );
    let first = sent(&out)[0];
    let out = s.handle(
        start,
        Event::Received(&refusal(first.xid, first.to_bytes())),
    );
    let log = logs(&out);
    assert!(
        log.contains("priority=30")
            && log.contains("in_port=4")
            && log.contains("no longer tracked"),
        "{log}"
    );
    // Only the start of it: the header and the bytes in hex.
    let out = s.handle(
        start,
        Event::Received(&refusal(first.xid, first.to_bytes()[..24].to_vec())),
    );
    let log = logs(&out);
    assert!(
        log.contains("OFPT_FLOW_MOD") && log.contains("xid=0x"),
        "{log}"
    );
}

#[test]
fn a_malformed_first_message_that_is_not_hello_gets_hello_failed() {
    let start = t0();
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    // A PORT_STATUS too short for its type, before any HELLO.
    let out = s.handle(start, Event::Received(&[4, 12, 0, 8, 0, 0, 0, 9]));
    assert_eq!(
        closed(&out),
        Some(&CloseReason::NoHello {
            msg_type: MsgType::PortStatus
        })
    );
    assert!(
        matches!(
            &sent(&out)[..],
            [m] if matches!(&m.message, Message::Error(ErrorMsg::Standard { code, .. }) if *code == ErrorCode::HELLO_INCOMPATIBLE)
        ),
        "{out:?}"
    );
}

#[test]
fn an_experimenter_error_on_a_handshake_request_ends_the_handshake() {
    let start = t0();
    let (mut s, x) = negotiated(start, SessionConfig::default());
    let error = ErrorMsg::Experimenter {
        exp_type: 7,
        experimenter: 0x0000_2320,
        data: vec![],
    };
    let out = s.handle(
        start,
        Event::Received(&wire(x.features, Message::Error(error.clone()))),
    );
    assert_eq!(
        closed(&out),
        Some(&CloseReason::HandshakeRefused {
            request: MsgType::FeaturesRequest,
            error
        })
    );
}

#[test]
fn barriers_inside_a_batch_are_not_unsolicited() {
    // The reconciler separates its phases with barriers of its own.
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let out = s.handle(
        start,
        Event::Submit(Batch {
            messages: vec![flow_mod(1), Message::BarrierRequest, flow_mod(2)],
            barrier: Some(3),
        }),
    );
    let mut replies = Vec::new();
    for m in sent(&out) {
        if m.message == Message::BarrierRequest {
            replies.extend(wire(m.xid, Message::BarrierReply));
        }
    }
    let out = s.handle(start, Event::Received(&replies));
    assert!(!logs(&out).contains("unsolicited"), "{}", logs(&out));
    assert_eq!(
        upcalls(&out),
        vec![&Upcall::BarrierConfirmed {
            ticket: 3,
            errors: 0
        }]
    );
}

/// Answers the PacketIns of table 2 with an empty PacketOut to their port.
struct TableTwo([Action; 1]);

impl Shortcut for TableTwo {
    fn answer(&mut self, pi: &PacketInView<'_>) -> Option<PacketOutRef<'_>> {
        if pi.table_id() != 2 {
            return None;
        }
        self.0 = [Action::output(pi.in_port()?)];
        Some(PacketOutRef {
            buffer_id: NO_BUFFER,
            in_port: ofp::action::port::CONTROLLER,
            actions: &self.0,
            data: &[],
        })
    }
}

fn packet_in_from(table_id: u8, in_port: u32) -> Vec<u8> {
    wire(
        9,
        Message::PacketIn(PacketIn {
            buffer_id: NO_BUFFER,
            total_len: 0,
            reason: PacketInReason::Action,
            table_id,
            cookie: 0,
            match_: Match::new().in_port(in_port),
            data: vec![],
        }),
    )
}

#[test]
fn a_shortcut_answers_packet_ins_under_the_sessions_own_xids() {
    let start = t0();
    let mut s = ready_session(start, vec![]);
    let mut shortcut = TableTwo([Action::output(0)]);
    let mut answers = Vec::new();
    let mut bytes = packet_in_from(2, 5);
    bytes.extend(packet_in_from(0, 6));
    let out = s.receive(start, &bytes, &mut shortcut, &mut answers);
    // Table 0's goes up; table 2's was answered onto the wire.
    assert!(matches!(
        upcalls(&out)[..],
        [Upcall::PacketIn { packet_in, .. }] if packet_in.table_id == 0
    ));
    let answer = OfpMessage::parse(&answers).unwrap();
    let Message::PacketOut(po) = &answer.message else {
        panic!("{answer}");
    };
    assert_eq!(po.actions, [Action::output(5)]);
    // The next request gets the next xid, and a refusal of the answer
    // names it like any request the session sent.
    let next = s.handle(
        start,
        Event::Submit(Batch {
            messages: vec![flow_mod(1)],
            barrier: None,
        }),
    );
    assert_eq!(sent(&next)[0].xid, answer.xid + 1);
    let out = s.handle(start, Event::Received(&refusal(answer.xid, vec![])));
    assert!(matches!(
        &upcalls(&out)[..],
        [Upcall::SwitchError { request: Some(r), .. }] if **r == answer
    ));
}

#[test]
fn no_shortcut_before_the_handshake_is_done() {
    let start = t0();
    let mut s = Session::new(SessionConfig::default());
    s.handle(start, Event::Connected);
    s.handle(start, Event::Received(&hello_13()));
    let mut answers = Vec::new();
    let out = s.receive(
        start,
        &packet_in_from(2, 5),
        &mut TableTwo([Action::output(0)]),
        &mut answers,
    );
    assert!(answers.is_empty());
    assert!(matches!(upcalls(&out)[..], [Upcall::PacketIn { .. }]));
}

/// A dumped flow as Open vSwitch might report it: fields in any order,
/// `tun_id` in either encoding, masks that are full or empty.
fn dumped_flow() -> impl Strategy<Value = FlowStats> {
    (
        (0u8..3, 0u16..4, any::<u64>()),
        (proptest::option::of(0u32..4), proptest::option::of(0u64..3)),
        (any::<bool>(), proptest::option::of((0u64..3, any::<u64>()))),
        proptest::option::of((0u8..3, prop_oneof![Just(0u8), Just(0xff), Just(1)])),
        (any::<bool>(), proptest::collection::vec(1u32..5, 0..3)),
    )
        .prop_map(
            |((table_id, priority, cookie), (in_port, tun), (nx, metadata), eth, (rev, outs))| {
                let mut m = Match::new();
                if let Some(p) = in_port {
                    m = m.in_port(p);
                }
                if let Some(t) = tun {
                    m = if nx { m.nx_tun_id(t) } else { m.tunnel_id(t) };
                }
                if let Some((v, mask)) = metadata {
                    m = m.metadata_masked(v, mask);
                }
                if let Some((v, mask)) = eth {
                    m = m.eth_dst_masked([v, 0, 0, 0, 0, 1], [mask, 0xff, 0xff, 0xff, 0xff, mask]);
                }
                if rev {
                    m.fields.reverse();
                }
                FlowStats {
                    table_id,
                    match_: m,
                    instructions: vec![Instruction::ApplyActions(
                        outs.into_iter().map(Action::output).collect(),
                    )],
                    ..flow(priority, cookie)
                }
            },
        )
}

proptest! {
    /// The handshake's flow dump is read from the wire without decoding
    /// instructions; what the session hands over must be what decoding
    /// every entry and building the compact state from them gives,
    /// whatever the parts and however the bytes are cut.
    #[test]
    fn a_dump_read_from_the_wire_holds_what_the_decoded_dump_holds(
        flows in proptest::collection::vec(dumped_flow(), 0..40),
        parts in 1usize..4,
        chunk in 1usize..200,
    ) {
        let start = t0();
        let (mut s, x) = negotiated(start, SessionConfig::default());
        let mut stream = wire(x.features, Message::FeaturesReply(SwitchFeatures::default()));
        stream.extend(reply(x.port_desc, false, MultipartReplyBody::PortDesc(vec![])));
        let per_part = flows.len().div_ceil(parts).max(1);
        let mut chunks: Vec<&[FlowStats]> = flows.chunks(per_part).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for (i, part) in chunks.iter().enumerate() {
            let more = i + 1 < chunks.len();
            stream.extend(reply(x.flows, more, MultipartReplyBody::Flow(part.to_vec())));
        }
        stream.extend(reply(x.groups, false, MultipartReplyBody::GroupDesc(vec![])));
        let mut ups = Vec::new();
        for c in stream.chunks(chunk) {
            let out = s.handle(start, Event::Received(c));
            prop_assert!(closed(&out).is_none(), "{:?}", out);
            ups.extend(upcalls(&out).into_iter().cloned());
        }
        let [Upcall::Ready { installed, .. }] = &ups[..] else {
            return Err(TestCaseError::fail(format!("{ups:?}")));
        };
        prop_assert_eq!(installed, &Installed::from_dump(&flows, &[]));
    }
}

#[test]
fn a_flow_dump_part_with_a_malformed_entry_is_refused_whole() {
    let start = t0();
    let (mut s, x) = negotiated(start, SessionConfig::default());
    let mut bad = reply(
        x.flows,
        true,
        MultipartReplyBody::Flow(vec![flow(1, 1), flow(2, 2)]),
    );
    // The second entry's instruction (apply-actions with one 16-byte
    // output) claims more bytes than there are.
    let last_instruction_len = bad.len() - 24 + 2;
    bad[last_instruction_len..last_instruction_len + 2].copy_from_slice(&0x0400u16.to_be_bytes());
    let out = s.handle(start, Event::Received(&bad));
    assert!(
        sent(&out)
            .iter()
            .any(|m| matches!(m.message, Message::Error(_))),
        "{out:?}"
    );
    let mut rest = reply(x.flows, false, MultipartReplyBody::Flow(vec![flow(3, 3)]));
    rest.extend(wire(
        x.features,
        Message::FeaturesReply(SwitchFeatures::default()),
    ));
    rest.extend(reply(
        x.port_desc,
        false,
        MultipartReplyBody::PortDesc(vec![]),
    ));
    rest.extend(reply(
        x.groups,
        false,
        MultipartReplyBody::GroupDesc(vec![]),
    ));
    let out = s.handle(start, Event::Received(&rest));
    let [Upcall::Ready { installed, .. }] = &upcalls(&out)[..] else {
        panic!("{out:?}")
    };
    // Nothing of the refused part was kept.
    assert_eq!(installed, &Installed::from_dump(&[flow(3, 3)], &[]));
}
