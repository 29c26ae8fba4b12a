//! One OpenFlow 1.3 switch connection as a sans-IO state machine.
//!
//! The server task feeds it [`Event`]s (bytes that arrived, timer ticks,
//! batches from the control loop) together with the current time, and
//! carries out the [`Output`]s it returns: messages to send, log records,
//! upcalls to the control loop and, at most once, a close. It never reads a
//! clock or touches a socket, so every exchange below is tested as a script.
//!
//! The handshake: both sides send HELLO; a peer that cannot speak 1.3 gets
//! OFPET_HELLO_FAILED and the connection ends. Then, pipelined, FEATURES,
//! SET_CONFIG, PORT_DESC and the flow and group dumps the reconciler needs;
//! when all of them are answered the control loop gets [`Upcall::Ready`].
//! Nothing in the handshake modifies the switch's tables, so a reconnect
//! never disturbs forwarding.

use crate::switch_state::{FlowKey, Group, Installed};
use ofp::action::OFPCML_NO_BUFFER;
use ofp::framing::Framer;
use ofp::header::HeaderView;
use ofp::message::{
    ErrorCodeName, ErrorMsg, Hello, Message, PacketIn, PacketInView, PacketOutRef, Port,
    PortReason, PortStatus, RoleMsg, SwitchConfig, SwitchFeatures,
};
use ofp::multipart::{
    FlowStatsReplyView, FlowStatsRequest, GroupDesc, MultipartReply, MultipartReplyBody,
    MultipartRequest, MultipartRequestBody,
};
use ofp::{DecodeError, EncodeError, ErrorCode, MsgType, OfpMessage, OFP_VERSION};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};
use tracing::Level;

/// Timers and limits of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Silence after which the controller probes the switch with an echo.
    pub echo_interval: Duration,
    /// How long a probed switch may stay silent before it is declared dead.
    pub echo_timeout: Duration,
    /// How long the handshake (HELLO through the table dumps) may take.
    pub handshake_timeout: Duration,
    /// Bytes of a table-miss packet the switch sends up (SET_CONFIG).
    pub miss_send_len: u16,
    /// How many sent requests are remembered so that an OFPT_ERROR can name
    /// the request it refers to. Older ones are forgotten first.
    pub tracked_requests: usize,
    /// Upper bound on flow or group entries one dump may reassemble; a switch
    /// that sends more is misbehaving and the connection is closed.
    pub max_dump_entries: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            echo_interval: Duration::from_secs(5),
            echo_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(30),
            miss_send_len: OFPCML_NO_BUFFER,
            tracked_requests: 4096,
            max_dump_entries: 1_000_000,
        }
    }
}

/// Messages the control loop wants on the switch, optionally followed by a
/// barrier whose reply confirms that the switch has processed all of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub messages: Vec<Message>,
    /// Set to get [`Upcall::BarrierConfirmed`] with this ticket back.
    pub barrier: Option<u64>,
}

/// What happened to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// The transport is up: the session sends its HELLO.
    Connected,
    /// Bytes read from the stream, in any chunking.
    Received(&'a [u8]),
    /// Time passed; checks keepalive and handshake deadlines.
    Tick,
    /// Messages to send for the control loop.
    Submit(Batch),
    /// Dump the flow and group tables again (the control loop resyncs).
    Dump,
    /// The I/O layer could not encode the request sent as `xid` (it is
    /// longer than OpenFlow allows) and did not send it.
    NotSent { xid: u32, error: EncodeError },
    /// The transport is gone.
    Closed,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer's HELLO offered no OpenFlow 1.3.
    IncompatibleVersion { peer_version: u8 },
    /// The peer spoke before saying HELLO.
    NoHello { msg_type: MsgType },
    /// The stream cannot be cut into messages any more.
    FramingLost(DecodeError),
    /// Nothing arrived for `echo_interval + echo_timeout`.
    DeadPeer { silent_for: Duration },
    /// The handshake did not finish within `handshake_timeout`.
    HandshakeTimeout,
    /// The switch refused a request the handshake cannot do without.
    HandshakeRefused { request: MsgType, error: ErrorMsg },
    /// An auxiliary connection; Iris uses the main connection only.
    AuxiliaryConnection { auxiliary_id: u8 },
    /// A dump exceeded [`SessionConfig::max_dump_entries`], or its flows'
    /// matches took more than 1 GiB.
    DumpTooLarge,
    /// The switch kept sending requests (echoes, malformed messages) but
    /// did not read the answers: `bytes` of them were waiting.
    RepliesUnread { bytes: usize },
    /// The transport closed.
    PeerClosed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IncompatibleVersion { peer_version } => write!(
                f,
                "switch does not speak OpenFlow 1.3 (its HELLO offers version 0x{peer_version:02x} \
                 and no 0x04); set protocols=OpenFlow13 on its bridge"
            ),
            Self::NoHello { msg_type } => {
                write!(f, "switch sent {msg_type} before OFPT_HELLO")
            }
            Self::FramingLost(e) => write!(f, "stream out of sync: {e}"),
            Self::DeadPeer { silent_for } => write!(
                f,
                "switch silent for {:.1}s and did not answer an echo request",
                silent_for.as_secs_f64()
            ),
            Self::HandshakeTimeout => f.write_str("handshake did not complete in time"),
            Self::HandshakeRefused { request, error } => {
                write!(f, "switch refused {request}: {error}")
            }
            Self::AuxiliaryConnection { auxiliary_id } => write!(
                f,
                "auxiliary connection {auxiliary_id} refused; Iris uses only the main connection"
            ),
            Self::DumpTooLarge => {
                f.write_str("table dump exceeds the configured entry limit or 1 GiB of matches")
            }
            Self::RepliesUnread { bytes } => write!(
                f,
                "switch sends requests but does not read the answers ({bytes} bytes waiting)"
            ),
            Self::PeerClosed => f.write_str("connection closed"),
        }
    }
}

/// Something the control loop must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upcall {
    /// The handshake is complete: who the switch is, its ports, and what its
    /// tables hold right now.
    Ready {
        features: SwitchFeatures,
        ports: Vec<Port>,
        installed: Installed,
    },
    /// The answer to [`Event::Dump`].
    Tables {
        installed: Installed,
    },
    /// A PACKET_IN and when its bytes arrived, so that what it causes is
    /// timed from its arrival rather than from when it was handled.
    PacketIn {
        packet_in: PacketIn,
        received: Instant,
    },
    PortStatus(PortStatus),
    /// The switch's ROLE_REPLY: the role it now gives this controller.
    Role(RoleMsg),
    /// Every message submitted before the barrier has been processed;
    /// `errors` of them were refused (each also reported as
    /// [`Upcall::SwitchError`]).
    BarrierConfirmed {
        ticket: u64,
        errors: usize,
    },
    /// The switch refused a request; `request` is what was sent, when the
    /// session still remembers it.
    SwitchError {
        error: ErrorMsg,
        request: Option<Box<OfpMessage>>,
    },
}

/// One action for the I/O layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(OfpMessage),
    Log(Level, String),
    Upcall(Upcall),
    /// Flush what was sent, then close. Always the last output of a session.
    Close(CloseReason),
}

/// A flow dump as it arrives: straight into the compact form the control
/// loop keeps, so that no entry's instructions are ever decoded.
#[derive(Debug, Default)]
struct FlowDump {
    installed: Installed,
    /// Entries received, duplicates included (the dump-size limit counts
    /// what the switch sent).
    entries: usize,
}

/// A flow dump whose matches take more is refused: 1 GiB is a million
/// flows with 1 KiB matches (Iris's take about 30 bytes), and keeps an
/// [`Installed`] well inside the 4 GiB it can address (a part adds at most
/// 64 KiB before the check).
const MAX_DUMP_MATCH_BYTES: usize = 1 << 30;

/// What a multipart request in flight is collecting.
#[derive(Debug)]
enum Collecting {
    Ports(Vec<Port>),
    Flows(FlowDump),
    Groups(Vec<GroupDesc>),
}

impl Collecting {
    fn len(&self) -> usize {
        match self {
            Self::Ports(v) => v.len(),
            Self::Flows(d) => d.entries,
            Self::Groups(v) => v.len(),
        }
    }

    /// Whether what was collected passes a limit: `max_entries` entries,
    /// or [`MAX_DUMP_MATCH_BYTES`] of flow matches.
    fn exceeds(&self, max_entries: usize) -> bool {
        self.len() > max_entries
            || matches!(self, Self::Flows(d) if d.installed.match_bytes() > MAX_DUMP_MATCH_BYTES)
    }

    /// Appends one reply part; `false` if the part's type does not match
    /// what was asked for. Flow replies come here only if they arrived
    /// decoded (see [`Session::on_flow_reply`]).
    fn absorb(&mut self, body: MultipartReplyBody) -> bool {
        match (self, body) {
            (Self::Ports(v), MultipartReplyBody::PortDesc(p)) => v.extend(p),
            (Self::Flows(d), MultipartReplyBody::Flow(f)) => {
                d.entries += f.len();
                for s in &f {
                    d.installed.insert_flow(&FlowKey::of_stats(s), s.cookie);
                }
            }
            (Self::Groups(v), MultipartReplyBody::GroupDesc(g)) => v.extend(g),
            _ => return false,
        }
        true
    }
}

/// The handshake or a later dump, collecting its answers.
#[derive(Debug, Default)]
struct Gathering {
    /// False for a later [`Event::Dump`], which needs no features or ports.
    handshake: bool,
    features: Option<SwitchFeatures>,
    ports: Option<Vec<Port>>,
    flows: Option<FlowDump>,
    groups: Option<Vec<GroupDesc>>,
}

impl Gathering {
    /// What the dumps say the switch holds, and how many flow entries it
    /// sent.
    fn installed(&mut self) -> (Installed, usize) {
        let FlowDump {
            mut installed,
            entries,
        } = self.flows.take().unwrap_or_default();
        for g in self.groups.take().unwrap_or_default() {
            installed.groups.insert(g.group_id, Group::from_desc(&g));
        }
        (installed, entries)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Created; nothing sent yet.
    Idle,
    /// Our HELLO is out; waiting for the peer's.
    AwaitHello,
    /// Negotiated; the handshake requests are out.
    Handshake,
    Ready,
    Closed,
}

/// A barrier in flight.
#[derive(Debug)]
struct PendingBarrier {
    ticket: u64,
    errors: usize,
    /// The xids of the requests it confirms, first and last: an error for
    /// a request the session no longer remembers is still counted here.
    requests: Option<(u32, u32)>,
}

/// A sent request remembered for error reports: encoded, into a buffer the
/// slot keeps, so remembering costs no allocation once the ring is warm.
#[derive(Debug, Default)]
struct Sent {
    xid: u32,
    /// Whether the slot holds the request `xid` (not yet answered by an
    /// error or forgotten).
    live: bool,
    bytes: Vec<u8>,
}

impl PendingBarrier {
    fn confirms(&self, xid: u32) -> bool {
        // Xids wrap (skipping zero), so the range is measured from its start.
        self.requests
            .is_some_and(|(first, last)| xid.wrapping_sub(first) <= last.wrapping_sub(first))
    }
}

/// The state of one switch connection. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    framer: Framer,
    next_xid: u32,
    connected_at: Option<Instant>,
    last_rx: Option<Instant>,
    /// When the outstanding echo probe was sent.
    probe_sent: Option<Instant>,
    features: Option<SwitchFeatures>,
    ports: BTreeMap<u32, Port>,
    /// Multipart requests in flight by xid.
    multiparts: HashMap<u32, Collecting>,
    /// One flow dump part's entries, read before any is kept; reused.
    dump_part: Vec<(FlowKey, u64)>,
    gathering: Option<Gathering>,
    /// Handshake requests by xid; an error for one of them ends the session.
    handshake_xids: HashMap<u32, MsgType>,
    barriers: HashMap<u32, PendingBarrier>,
    /// The last `tracked_requests` requests, at their xid modulo its length:
    /// xids are handed out in sequence, so each request takes the place of
    /// the oldest. Grown as xids are used, up to that length.
    sent: Vec<Sent>,
    /// Batches submitted before negotiation finished.
    held: Vec<Batch>,
}

/// Answers some PacketIns where they arrive, so that they never reach the
/// control loop (see [`Session::receive`]).
pub trait Shortcut {
    /// The answer to `packet_in`, or `None` to hand it to the control loop
    /// as an [`Upcall::PacketIn`].
    fn answer(&mut self, packet_in: &PacketInView<'_>) -> Option<PacketOutRef<'_>>;
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            framer: Framer::default(),
            next_xid: 1,
            connected_at: None,
            last_rx: None,
            probe_sent: None,
            features: None,
            ports: BTreeMap::new(),
            multiparts: HashMap::new(),
            dump_part: Vec::new(),
            gathering: None,
            handshake_xids: HashMap::new(),
            barriers: HashMap::new(),
            sent: Vec::new(),
            held: Vec::new(),
        }
    }

    /// The switch's datapath id, once FEATURES_REPLY arrived.
    pub fn datapath_id(&self) -> Option<u64> {
        self.features.map(|f| f.datapath_id)
    }

    /// The switch's ports as last reported (PORT_DESC, then PORT_STATUS).
    pub fn ports(&self) -> &BTreeMap<u32, Port> {
        &self.ports
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Processes bytes from the switch like [`Event::Received`], except that
    /// once the handshake is done `shortcut` sees every PacketIn first: what
    /// it answers is sent at once, encoded onto the end of `wire`, under a
    /// request xid of this session's like any PacketOut the control loop
    /// sends. The returned outputs come after those answers.
    pub fn receive(
        &mut self,
        now: Instant,
        bytes: &[u8],
        shortcut: &mut dyn Shortcut,
        wire: &mut Vec<u8>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state != State::Closed {
            self.on_bytes(now, bytes, Some((shortcut, wire)), &mut out);
        }
        out
    }

    /// Processes one event at time `now`.
    pub fn handle(&mut self, now: Instant, event: Event<'_>) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state == State::Closed {
            return out;
        }
        match event {
            Event::Connected => self.on_connected(now, &mut out),
            Event::Received(bytes) => self.on_bytes(now, bytes, None, &mut out),
            Event::Tick => self.on_tick(now, &mut out),
            Event::Submit(batch) => {
                if matches!(self.state, State::Idle | State::AwaitHello) {
                    self.held.push(batch);
                } else {
                    self.submit(batch, &mut out);
                }
            }
            Event::Dump => {
                if self.gathering.is_some() {
                    // The handshake's dump, or an earlier one, will answer.
                    out.push(Output::Log(
                        Level::DEBUG,
                        "table dump already under way; not starting another".into(),
                    ));
                } else if self.state != State::Ready {
                    out.push(Output::Log(
                        Level::DEBUG,
                        "no table dump before the handshake".into(),
                    ));
                } else {
                    self.gathering = Some(Gathering::default());
                    self.request_tables(&mut out);
                }
            }
            Event::NotSent { xid, error } => self.on_not_sent(xid, &error, &mut out),
            Event::Closed => {
                self.state = State::Closed;
                out.push(Output::Close(CloseReason::PeerClosed));
            }
        }
        out
    }

    fn xid(&mut self) -> u32 {
        let x = self.next_xid;
        // Zero is left out so that a bare header of zeros never matches.
        self.next_xid = self.next_xid.checked_add(1).unwrap_or(1);
        x
    }

    /// Sends a request and remembers it for error reports.
    fn request(&mut self, message: Message, out: &mut Vec<Output>) -> u32 {
        let xid = self.xid();
        let msg = OfpMessage::new(xid, message);
        if let Some(slot) = self.slot_for(xid) {
            // One too long to encode is reported by the writer (NotSent);
            // there is nothing to remember.
            slot.live = msg.try_emit(&mut slot.bytes).is_ok();
        }
        out.push(Output::Send(msg));
        xid
    }

    /// The ring slot that remembers request `xid` from now on, emptied;
    /// `None` when no request is remembered.
    fn slot_for(&mut self, xid: u32) -> Option<&mut Sent> {
        let n = self.config.tracked_requests;
        if n == 0 {
            return None;
        }
        let at = xid as usize % n;
        // Grown only as far as xids have gone: an idle switch (most of a
        // thousand) costs a few slots, not `n`.
        if at >= self.sent.len() {
            self.sent.resize_with(at + 1, Sent::default);
        }
        let slot = &mut self.sent[at];
        slot.xid = xid;
        slot.bytes.clear();
        Some(slot)
    }

    /// The request sent with `xid`, if it is still remembered; forgotten
    /// from then on.
    fn take_sent(&mut self, xid: u32) -> Option<OfpMessage> {
        let slot = self.sent_slot(xid)?;
        slot.live = false;
        // It was encoded by this codec, so it decodes.
        OfpMessage::parse(&slot.bytes).ok()
    }

    /// The ring slot remembering request `xid`, if it still does.
    fn sent_slot(&mut self, xid: u32) -> Option<&mut Sent> {
        let n = self.config.tracked_requests;
        if n == 0 {
            return None;
        }
        let slot = self.sent.get_mut(xid as usize % n)?;
        (slot.live && slot.xid == xid).then_some(slot)
    }

    /// Forgets the request sent with `xid` without decoding it.
    fn forget(&mut self, xid: u32) {
        if let Some(slot) = self.sent_slot(xid) {
            slot.live = false;
        }
    }

    fn close(&mut self, reason: CloseReason, out: &mut Vec<Output>) {
        self.state = State::Closed;
        out.push(Output::Close(reason));
    }

    fn on_connected(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Idle {
            return;
        }
        self.connected_at = Some(now);
        self.last_rx = Some(now);
        self.state = State::AwaitHello;
        let xid = self.xid();
        out.push(Output::Send(OfpMessage::new(
            xid,
            Message::Hello(Hello::default()),
        )));
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Ready {
            if let Some(t) = self.connected_at {
                if now.saturating_duration_since(t) >= self.config.handshake_timeout {
                    self.close(CloseReason::HandshakeTimeout, out);
                    return;
                }
            }
        }
        let Some(last) = self.last_rx else { return };
        let silent = now.saturating_duration_since(last);
        match self.probe_sent {
            Some(sent) if now.saturating_duration_since(sent) >= self.config.echo_timeout => {
                self.close(CloseReason::DeadPeer { silent_for: silent }, out);
            }
            Some(_) => {}
            None if silent >= self.config.echo_interval => {
                self.probe_sent = Some(now);
                let xid = self.xid();
                out.push(Output::Send(OfpMessage::new(
                    xid,
                    Message::EchoRequest(Vec::new()),
                )));
            }
            None => {}
        }
    }

    fn on_bytes(
        &mut self,
        now: Instant,
        bytes: &[u8],
        mut fast: Option<(&mut dyn Shortcut, &mut Vec<u8>)>,
        out: &mut Vec<Output>,
    ) {
        self.last_rx = Some(now);
        self.probe_sent = None;
        self.framer.extend(bytes);
        loop {
            let raw = match self.framer.next_message() {
                Ok(Some(m)) => {
                    if let Some((shortcut, wire)) = fast.as_mut() {
                        let answer = match self.state {
                            State::Ready => PacketInView::new_checked(m)
                                .ok()
                                .and_then(|v| shortcut.answer(&v)),
                            _ => None,
                        };
                        if let Some(po) = answer {
                            let xid = self.xid();
                            let at = wire.len();
                            po.encode(xid, wire);
                            if let Some(slot) = self.slot_for(xid) {
                                slot.bytes.extend_from_slice(&wire[at..]);
                                slot.live = true;
                            }
                            continue;
                        }
                    }
                    m.to_vec()
                }
                Ok(None) => return,
                Err(e) => {
                    out.push(Output::Log(
                        Level::WARN,
                        format!("malformed stream from switch, closing: {e}"),
                    ));
                    self.close(CloseReason::FramingLost(e), out);
                    return;
                }
            };
            self.on_message(now, &raw, out);
            if self.state == State::Closed {
                return;
            }
        }
    }

    fn on_message(&mut self, now: Instant, raw: &[u8], out: &mut Vec<Output>) {
        if FlowStatsReplyView::is_flow_reply(raw) && self.state != State::AwaitHello {
            if let Some(xid) = HeaderView::new_checked(raw).ok().map(|h| h.xid()) {
                if matches!(self.multiparts.get(&xid), Some(Collecting::Flows(_))) {
                    return self.on_flow_reply(xid, raw, out);
                }
            }
        }
        let msg = match OfpMessage::parse(raw) {
            Ok(m) => m,
            Err(e) => return self.on_malformed(raw, &e, out),
        };
        if self.state == State::AwaitHello {
            return self.on_first_message(msg, out);
        }
        match msg.message {
            Message::EchoRequest(data) => {
                out.push(Output::Send(OfpMessage::new(
                    msg.xid,
                    Message::EchoReply(data),
                )));
            }
            Message::EchoReply(_) | Message::Hello(_) => {}
            Message::Error(e) => self.on_error(msg.xid, e, out),
            Message::FeaturesReply(f) => self.on_features(msg.xid, f, out),
            Message::MultipartReply(r) => self.on_multipart(msg.xid, r, out),
            Message::BarrierReply => self.on_barrier(msg.xid, out),
            Message::PacketIn(packet_in) => out.push(Output::Upcall(Upcall::PacketIn {
                packet_in,
                received: now,
            })),
            Message::PortStatus(s) => self.on_port_status(s, out),
            Message::RoleReply(r) => out.push(Output::Upcall(Upcall::Role(r))),
            Message::Unknown { msg_type, .. } => {
                out.push(Output::Log(
                    Level::WARN,
                    format!("switch sent unknown message type {msg_type}; answered BAD_TYPE"),
                ));
                out.push(Output::Send(OfpMessage::new(
                    msg.xid,
                    Message::Error(ErrorMsg::Standard {
                        code: ErrorCode::BAD_TYPE,
                        data: error_data(raw),
                    }),
                )));
            }
            other => out.push(Output::Log(
                Level::DEBUG,
                format!("ignoring {} from switch", other.msg_type()),
            )),
        }
    }

    /// A message that framed correctly but does not decode: the switch is at
    /// fault, is told so with the matching OFPT_ERROR, and the session goes on.
    fn on_malformed(&mut self, raw: &[u8], err: &DecodeError, out: &mut Vec<Output>) {
        let (msg_type, xid) = match HeaderView::new_checked(raw) {
            Ok(h) => (h.msg_type(), h.xid()),
            Err(_) => (MsgType::Unknown(0xff), 0),
        };
        if self.state == State::AwaitHello && msg_type != MsgType::Hello {
            return self.no_hello(xid, msg_type, out);
        }
        if self.state == State::AwaitHello {
            // A HELLO we cannot read leaves nothing to negotiate with.
            out.push(Output::Log(
                Level::WARN,
                format!("malformed HELLO from switch: {err}"),
            ));
            out.push(Output::Send(OfpMessage::new(
                xid,
                Message::Error(ErrorMsg::hello_failed(&format!("malformed hello: {err}"))),
            )));
            self.close(
                CloseReason::IncompatibleVersion {
                    peer_version: raw.first().copied().unwrap_or(0),
                },
                out,
            );
            return;
        }
        let reply = ErrorMsg::for_decode_error(err, raw);
        out.push(Output::Log(
            Level::WARN,
            format!(
                "malformed {msg_type} (xid=0x{xid:x}) from switch: {err}; answered {}",
                ErrorCodeName(err.ofp_error())
            ),
        ));
        out.push(Output::Send(OfpMessage::new(xid, Message::Error(reply))));
    }

    /// The peer's first message was not a HELLO, well-formed or not.
    fn no_hello(&mut self, xid: u32, msg_type: MsgType, out: &mut Vec<Output>) {
        out.push(Output::Send(OfpMessage::new(
            xid,
            Message::Error(ErrorMsg::hello_failed("expected OFPT_HELLO first")),
        )));
        out.push(Output::Log(
            Level::WARN,
            format!("switch sent {msg_type} before HELLO; closing"),
        ));
        self.close(CloseReason::NoHello { msg_type }, out);
    }

    fn on_first_message(&mut self, msg: OfpMessage, out: &mut Vec<Output>) {
        let hello = match msg.message {
            Message::Hello(h) => h,
            other => return self.no_hello(msg.xid, other.msg_type(), out),
        };
        if !hello.accepts(OFP_VERSION) {
            let reason = CloseReason::IncompatibleVersion {
                peer_version: hello.version,
            };
            out.push(Output::Send(OfpMessage::new(
                msg.xid,
                Message::Error(ErrorMsg::hello_failed(
                    "Iris speaks OpenFlow 1.3 only (wire version 0x04); \
                     set protocols=OpenFlow13 on the bridge",
                )),
            )));
            out.push(Output::Log(Level::ERROR, format!("{reason} ({hello})")));
            self.close(reason, out);
            return;
        }
        self.state = State::Handshake;
        let x = self.request(Message::FeaturesRequest, out);
        self.handshake_xids.insert(x, MsgType::FeaturesRequest);
        let x = self.request(
            Message::SetConfig(SwitchConfig {
                flags: 0,
                miss_send_len: self.config.miss_send_len,
            }),
            out,
        );
        self.handshake_xids.insert(x, MsgType::SetConfig);
        let x = self.multipart(
            MultipartRequestBody::PortDesc,
            Collecting::Ports(Vec::new()),
            out,
        );
        self.handshake_xids.insert(x, MsgType::MultipartRequest);
        self.gathering = Some(Gathering {
            handshake: true,
            ..Gathering::default()
        });
        self.request_tables(out);
        for batch in std::mem::take(&mut self.held) {
            self.submit(batch, out);
        }
    }

    fn multipart(
        &mut self,
        body: MultipartRequestBody,
        collect: Collecting,
        out: &mut Vec<Output>,
    ) -> u32 {
        let xid = self.request(Message::MultipartRequest(MultipartRequest::new(body)), out);
        self.multiparts.insert(xid, collect);
        xid
    }

    fn request_tables(&mut self, out: &mut Vec<Output>) {
        let handshake = self.state == State::Handshake;
        let x = self.multipart(
            MultipartRequestBody::Flow(FlowStatsRequest::default()),
            Collecting::Flows(FlowDump::default()),
            out,
        );
        let y = self.multipart(
            MultipartRequestBody::GroupDesc,
            Collecting::Groups(Vec::new()),
            out,
        );
        if handshake {
            self.handshake_xids.insert(x, MsgType::MultipartRequest);
            self.handshake_xids.insert(y, MsgType::MultipartRequest);
        }
    }

    fn submit(&mut self, batch: Batch, out: &mut Vec<Output>) {
        let mut requests: Option<(u32, u32)> = None;
        for m in batch.messages {
            let x = self.request(m, out);
            requests = Some((requests.map_or(x, |(first, _)| first), x));
        }
        if let Some(ticket) = batch.barrier {
            let xid = self.xid();
            self.barriers.insert(
                xid,
                PendingBarrier {
                    ticket,
                    errors: 0,
                    requests,
                },
            );
            out.push(Output::Send(OfpMessage::new(xid, Message::BarrierRequest)));
        }
    }

    fn on_features(&mut self, xid: u32, f: SwitchFeatures, out: &mut Vec<Output>) {
        self.handshake_xids.remove(&xid);
        if f.auxiliary_id != 0 {
            self.close(
                CloseReason::AuxiliaryConnection {
                    auxiliary_id: f.auxiliary_id,
                },
                out,
            );
            return;
        }
        self.features = Some(f);
        if let Some(g) = self.gathering.as_mut() {
            g.features = Some(f);
        }
        out.push(Output::Log(
            Level::INFO,
            format!(
                "switch dpid {:016x}: {} tables, {} buffers",
                f.datapath_id, f.n_tables, f.n_buffers
            ),
        ));
        self.maybe_ready(out);
    }

    fn on_multipart(&mut self, xid: u32, reply: MultipartReply, out: &mut Vec<Output>) {
        let more = reply.more();
        let Some(collect) = self.multiparts.get_mut(&xid) else {
            out.push(Output::Log(
                Level::DEBUG,
                format!(
                    "unsolicited {} reply (xid=0x{xid:x}) ignored",
                    reply.body.mp_type()
                ),
            ));
            return;
        };
        let mp_type = reply.body.mp_type();
        if !collect.absorb(reply.body) {
            out.push(Output::Log(
                Level::WARN,
                format!("switch answered a multipart request (xid=0x{xid:x}) with {mp_type}"),
            ));
            return;
        }
        self.on_part(xid, more, out);
    }

    /// A part of a flow dump, read from the wire: each entry's identity and
    /// cookie go into the dump, its instructions are only checked for
    /// framing. A malformed part is refused whole, as a decoded one is.
    fn on_flow_reply(&mut self, xid: u32, raw: &[u8], out: &mut Vec<Output>) {
        let part = FlowStatsReplyView::new_checked(raw).and_then(|view| {
            self.dump_part.clear();
            for entry in view.entries() {
                let entry = entry?;
                self.dump_part
                    .push((FlowKey::of_view(&entry)?, entry.cookie()));
            }
            Ok(view.more())
        });
        let more = match part {
            Ok(more) => more,
            Err(e) => return self.on_malformed(raw, &e, out),
        };
        let Some(Collecting::Flows(dump)) = self.multiparts.get_mut(&xid) else {
            return;
        };
        dump.entries += self.dump_part.len();
        for (key, cookie) in self.dump_part.drain(..) {
            dump.installed.insert_flow(&key, cookie);
        }
        self.on_part(xid, more, out);
    }

    /// A part of the multipart reply `xid` was collected.
    fn on_part(&mut self, xid: u32, more: bool, out: &mut Vec<Output>) {
        let Some(collect) = self.multiparts.get(&xid) else {
            return;
        };
        if collect.exceeds(self.config.max_dump_entries) {
            self.close(CloseReason::DumpTooLarge, out);
            return;
        }
        if more {
            return;
        }
        let Some(done) = self.multiparts.remove(&xid) else {
            return;
        };
        self.handshake_xids.remove(&xid);
        self.forget(xid);
        match done {
            Collecting::Ports(ports) => {
                self.ports = ports.iter().map(|p| (p.port_no, *p)).collect();
                if let Some(g) = self.gathering.as_mut() {
                    g.ports = Some(ports);
                }
            }
            Collecting::Flows(flows) => {
                if let Some(g) = self.gathering.as_mut() {
                    g.flows = Some(flows);
                }
            }
            Collecting::Groups(groups) => {
                if let Some(g) = self.gathering.as_mut() {
                    g.groups = Some(groups);
                }
            }
        }
        self.maybe_ready(out);
    }

    /// Emits `Ready` or `Tables` once everything gathered has arrived.
    fn maybe_ready(&mut self, out: &mut Vec<Output>) {
        let Some(g) = self.gathering.as_mut() else {
            return;
        };
        if g.flows.is_none() || g.groups.is_none() {
            return;
        }
        if g.handshake {
            let (Some(features), Some(_)) = (g.features, g.ports.as_ref()) else {
                return;
            };
            let ports = g.ports.take().unwrap_or_default();
            let (installed, entries) = g.installed();
            self.gathering = None;
            self.state = State::Ready;
            out.push(Output::Log(
                Level::INFO,
                format!(
                    "switch ready: {} ports, {entries} flows, {} groups",
                    ports.len(),
                    installed.groups.len()
                ),
            ));
            out.push(Output::Upcall(Upcall::Ready {
                features,
                ports,
                installed,
            }));
        } else {
            let (installed, _) = g.installed();
            self.gathering = None;
            out.push(Output::Upcall(Upcall::Tables { installed }));
        }
    }

    fn on_barrier(&mut self, xid: u32, out: &mut Vec<Output>) {
        match self.barriers.remove(&xid) {
            Some(b) => out.push(Output::Upcall(Upcall::BarrierConfirmed {
                ticket: b.ticket,
                errors: b.errors,
            })),
            // A barrier a batch carried between its phases.
            None if self.sent_slot(xid).is_some() => self.forget(xid),
            None => out.push(Output::Log(
                Level::DEBUG,
                format!("unsolicited barrier reply (xid=0x{xid:x})"),
            )),
        }
    }

    fn on_port_status(&mut self, s: PortStatus, out: &mut Vec<Output>) {
        match s.reason {
            PortReason::Delete => {
                self.ports.remove(&s.desc.port_no);
            }
            _ => {
                self.ports.insert(s.desc.port_no, s.desc);
            }
        }
        out.push(Output::Log(
            Level::DEBUG,
            format!("port {} {} ({})", s.desc.port_no, s.reason, s.desc.name),
        ));
        out.push(Output::Upcall(Upcall::PortStatus(s)));
    }

    /// Counts request `xid` as refused against the barrier confirming it.
    /// Tracked or not, the xid ranges say which batch it was in.
    fn count_refusal(&mut self, xid: u32) {
        if let Some(b) = self.barriers.values_mut().find(|b| b.confirms(xid)) {
            b.errors += 1;
        }
    }

    /// A request that never left: like a refusal for its barrier, so the
    /// control loop does not take it as installed.
    fn on_not_sent(&mut self, xid: u32, error: &EncodeError, out: &mut Vec<Output>) {
        self.forget(xid);
        self.count_refusal(xid);
        out.push(Output::Log(
            Level::ERROR,
            format!("request xid=0x{xid:x} not sent: {error}"),
        ));
    }

    fn on_error(&mut self, xid: u32, error: ErrorMsg, out: &mut Vec<Output>) {
        let request = self.take_sent(xid).map(Box::new);
        self.count_refusal(xid);
        let described = match &request {
            Some(r) => r.to_string(),
            None => untracked(xid, &error),
        };
        out.push(Output::Log(
            Level::WARN,
            format!("switch refused {described}: {error}"),
        ));
        if let Some(req_type) = self.handshake_xids.remove(&xid) {
            self.close(
                CloseReason::HandshakeRefused {
                    request: req_type,
                    error,
                },
                out,
            );
            return;
        }
        if self.multiparts.remove(&xid).is_some() {
            // A refused dump would leave the gathering waiting forever.
            self.gathering = None;
        }
        out.push(Output::Upcall(Upcall::SwitchError { error, request }));
    }
}

/// A refused request the session no longer remembers, as well as the
/// error names it: OVS quotes the whole request, which then decodes; else
/// the error's own text names the part it quotes.
fn untracked(xid: u32, error: &ErrorMsg) -> String {
    if let ErrorMsg::Standard { data, .. } = error {
        if let Ok(m) = OfpMessage::parse(data) {
            return format!("{m} (no longer tracked; decoded from the error)");
        }
    }
    format!("a request no longer tracked (xid=0x{xid:x})")
}

/// The start of an offending message, as OFPT_ERROR carries it.
fn error_data(raw: &[u8]) -> Vec<u8> {
    raw[..raw.len().min(ofp::message::ERROR_DATA_LEN)].to_vec()
}

#[cfg(test)]
mod tests;
