//! Live interop of the `ofp` codec with a real `ovs-vswitchd`.
//!
//! [`run`] builds a one-PM testbed (userspace datapath, scratch run
//! directory, `br-int` with `fail_mode=secure` and `protocols=OpenFlow13`,
//! two VMs plugged in), lets its vswitchd connect to a minimal OpenFlow
//! listener built on the codec alone, and walks through a session:
//!
//! 1. HELLO both ways with the version bitmap element; FEATURES (the
//!    datapath id configured through OVSDB); PORT_DESC (the bridge's ports by
//!    name and number);
//! 2. an echo request from Iris;
//! 3. a three-table pipeline of FLOW_MODs with several OXM fields and Nicira
//!    move actions, confirmed by a BARRIER with no OFPT_ERROR before it;
//! 4. a FLOW_STATS dump whose entries are compared field by field with what
//!    was sent ([`compare`]), and with `ovs-ofctl dump-flows` line by line;
//! 5. two malformed messages, each refused with the OFPT_ERROR the codec
//!    itself would have sent, carrying the offending xid;
//! 6. an echo request from OVS (its inactivity probe), answered.
//!
//! Every step is reported to an observer as it happens ([`Event`]), which
//! is what `iris-testbed demo` prints; the test `tests/ofp_interop.rs` runs
//! the same sequence and checks the [`Report`]. The testbed is torn down
//! whatever happens.

mod connection;
mod error;
mod flows;

pub use crate::flow_dump::{parse_dump, DumpedFlow};
pub use connection::Wire;
pub use error::InteropError;
pub use flows::{compare, pipeline, Endpoint, Normalised, COOKIE_BASE, VI, VI_MASK, VLAN};

use std::fmt;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use ofp::action::port;
use ofp::header::HeaderView;
use ofp::message::{
    ErrorCodeName, ErrorMsg, FlowMod, Hello, Message, OfpMessage, Port, SwitchFeatures,
};
use ofp::multipart::{
    FlowStats, FlowStatsRequest, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
};
use ofp::oxm::OxmField;
use ofp::{ErrorCode, OFP_VERSION};

use crate::process::tail_of;
use crate::{
    Config, Inventory, Ipv4Cidr, MacAddr, Pm, PmSpec, Testbed, UnderlaySpec, VmSpec,
    INTEGRATION_BRIDGE,
};
use connection::{Connection, Incoming};

/// The datapath id given to `br-int` through OVSDB
/// (`other_config:datapath-id`), which FEATURES_REPLY must carry.
pub const DATAPATH_ID: u64 = 0x0000_1215_0000_0001;

/// The controller's `inactivity_probe`: after this much silence from Iris,
/// OVS sends an echo request. OVS rounds it to whole seconds and raises it
/// to at least 5, and sends no probes at all on unix socket connections,
/// which is why this run uses TCP.
pub const INACTIVITY_PROBE: Duration = Duration::from_secs(5);

/// How long a reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long vswitchd may take to connect once the controller is set.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The payload of Iris's echo request.
const ECHO_PAYLOAD: &[u8] = b"iris interop";

/// One thing that happened during the run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new step begins.
    Step(String),
    /// Context for a human: what was built, what is awaited.
    Info(String),
    /// A message Iris sent.
    Sent(Wire),
    /// A message Iris received and decoded.
    Received(OfpMessage),
    /// A check that held, in words.
    Verified(String),
    /// A command's output, verbatim.
    Output { command: String, text: String },
}

/// Writes `text` with `first` before its first line and `rest` before the
/// others.
fn write_indented(f: &mut fmt::Formatter<'_>, first: &str, rest: &str, text: &str) -> fmt::Result {
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            f.write_str("\n")?;
        }
        write!(f, "{}{line}", if i == 0 { first } else { rest })?;
    }
    Ok(())
}

impl fmt::Display for Event {
    /// One line per event (messages that span lines in `ovs-ofctl`'s
    /// rendering continue indented): `->` sent, `<-` received, `ok` a check.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MORE: &str = "      ";
        match self {
            Self::Step(title) => write!(f, "\n== {title}"),
            Self::Info(text) => write_indented(f, "   ", "   ", text),
            Self::Sent(Wire::Message(m)) => write_indented(f, "  -> ", MORE, &m.to_string()),
            Self::Sent(Wire::Raw { bytes, what }) => {
                write!(f, "  -> {what}: {}", ofp::codec::Hex(bytes))
            }
            Self::Received(m) => write_indented(f, "  <- ", MORE, &m.to_string()),
            Self::Verified(text) => write_indented(f, "  ok ", MORE, text),
            Self::Output { command, text } => {
                write!(f, "   $ {command}")?;
                if !text.trim().is_empty() {
                    f.write_str("\n")?;
                    write_indented(f, MORE, MORE, text.trim_end())?;
                }
                Ok(())
            }
        }
    }
}

/// One installed flow, as sent and as reported back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowResult {
    pub sent: FlowMod,
    /// Its entry in the FLOW_STATS reply.
    pub reported: FlowStats,
    /// How OVS normalised it (empty when it came back as sent).
    pub normalised: Normalised,
    /// Its line in `ovs-ofctl dump-flows`.
    pub dumped: DumpedFlow,
}

/// A malformed message and the OFPT_ERROR OVS answered it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub what: String,
    pub bytes: Vec<u8>,
    pub xid: u32,
    /// The error the codec's own decoder finds in `bytes`.
    pub codec_verdict: ErrorCode,
    /// OVS's OFPT_ERROR, with its xid.
    pub error: OfpMessage,
}

/// What the run established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What the run built (namespaces, processes, links, state directory),
    /// all of it removed by the time [`run`] returns.
    pub testbed: Inventory,
    pub switch_hello: Hello,
    pub features: SwitchFeatures,
    /// The bridge's ports from PORT_DESC.
    pub ports: Vec<Port>,
    /// (name, OpenFlow port number) of every port OVSDB lists on the
    /// bridge, the local port included.
    pub ovsdb_ports: Vec<(String, u32)>,
    /// Iris's echo request and OVS's reply.
    pub echo: (OfpMessage, OfpMessage),
    pub flows: Vec<FlowResult>,
    pub refusals: Vec<Refusal>,
    /// OVS's inactivity probe, and how long Iris had been silent before it.
    pub switch_echo: (OfpMessage, Duration),
}

/// Runs the whole sequence in a fresh testbed built with `config`, telling
/// `observe` about every step. The testbed is torn down before returning,
/// on success and on failure.
pub fn run(config: Config, observe: &mut dyn FnMut(&Event)) -> Result<Report, InteropError> {
    let mut tb = Testbed::with_config("ofp-interop", config)?;
    let result = build(&mut tb, observe).and_then(|setup| {
        let pm = tb.pm(setup.pm);
        let inventory = tb.inventory();
        let outcome =
            Session::connect(pm, &setup, observe).and_then(|mut s| s.run(&setup, inventory));
        if outcome.is_err() {
            let log = pm.ovs().vswitchd_log();
            observe(&Event::Info(format!(
                "{} ends with:\n{}",
                log.display(),
                tail_of(&log, 15)
            )));
        }
        outcome
    });
    let teardown = tb.teardown();
    match (result, teardown) {
        (Ok(report), Ok(())) => Ok(report),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), teardown) => {
            if let Err(t) = teardown {
                observe(&Event::Info(format!("teardown: {t}")));
            }
            Err(e)
        }
    }
}

/// What [`build`] made.
struct Setup {
    pm: crate::PmId,
    /// vm1 asks, vm2 owns the address asked for.
    asker: Endpoint,
    owner: Endpoint,
    ovsdb_ports: Vec<(String, u32)>,
    listener: TcpListener,
}

fn build(tb: &mut Testbed, observe: &mut dyn FnMut(&Event)) -> Result<Setup, InteropError> {
    observe(&Event::Step(
        "Testbed: one PM running a private Open vSwitch".into(),
    ));
    let dc = tb.add_underlay(UnderlaySpec::new("dc", "192.168.50.0/24".parse()?))?;
    let (root, pm_side) = crate::pm::free_management_net(tb.prefix(), 0)?;
    let pm = tb.add_pm(
        PmSpec::new("pm1", dc)
            .datapath_id(DATAPATH_ID)
            .management(root, pm_side),
    )?;
    let mut endpoints = Vec::new();
    let mut ovsdb_ports = vec![(INTEGRATION_BRIDGE.to_owned(), port::LOCAL)];
    for n in [1u8, 2] {
        let ip: Ipv4Cidr = format!("10.0.0.{n}/24").parse()?;
        let mac = MacAddr::local(n.into());
        let vm = tb.add_vm(VmSpec::new(&format!("vm{n}"), pm, VI, mac, ip))?;
        let name = tb.vm(vm).port().to_owned();
        let ofport = tb.pm(pm).ofport(&name)?;
        ovsdb_ports.push((name, ofport));
        endpoints.push(Endpoint {
            port: ofport,
            mac: mac.0,
            ip: ip.addr(),
        });
    }
    let (asker, owner) = (endpoints[0], endpoints[1]);

    // Bound to the root end of the management link only, on a port the
    // kernel picks, so concurrent runs never compete for 6653.
    let listener = TcpListener::bind((root.addr(), 0))
        .map_err(|e| InteropError::io(format!("binding a listener on {}", root.addr()), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| InteropError::io("reading the listener's address", e))?;
    let target = format!("tcp:{local}");
    let p = tb.pm(pm);
    // One transaction, so that vswitchd's first connection already has the
    // probe interval the echo step relies on.
    p.vsctl(&[
        "--",
        "--id=@c",
        "create",
        "Controller",
        &format!("target=\"{target}\""),
        &format!("inactivity_probe={}", INACTIVITY_PROBE.as_millis()),
        "--",
        "set",
        "Bridge",
        INTEGRATION_BRIDGE,
        "controller=@c",
    ])?;
    let ports = ovsdb_ports
        .iter()
        .map(|(name, n)| format!("{name} ({})", ofp_port_name(*n)))
        .collect::<Vec<_>>()
        .join(", ");
    observe(&Event::Info(format!(
        "{}: ovsdb-server + ovs-vswitchd in namespace {}, run directory {}\n\
         {INTEGRATION_BRIDGE}: datapath_type=netdev fail_mode=secure protocols=OpenFlow13 \
         datapath-id={DATAPATH_ID:016x}\n\
         ports: {ports}\n\
         controller: {target}, on a management link {root} (root namespace) <-> {pm_side} (PM), \
         inactivity_probe={}ms",
        p.name(),
        p.netns().name(),
        p.ovs().dir().display(),
        INACTIVITY_PROBE.as_millis()
    )));
    Ok(Setup {
        pm,
        asker,
        owner,
        ovsdb_ports,
        listener,
    })
}

/// The two ends of the management link: a /30 of 198.18.0.0/15 (set aside
/// for network tests), picked from the testbed's random prefix so that
/// concurrent runs pick different ones, skipping addresses the root
/// namespace already has.
/// A port number as OVS prints it (`LOCAL`, `1`).
fn ofp_port_name(n: u32) -> String {
    match n {
        port::LOCAL => "LOCAL".to_owned(),
        n => n.to_string(),
    }
}

/// The OpenFlow session with the switch, and everything it has logged.
struct Session<'a> {
    conn: Connection,
    pm: &'a Pm,
    observe: &'a mut dyn FnMut(&Event),
    /// What each sent xid was, for naming the request an error refers to.
    sent: Vec<(u32, String)>,
    /// Echo requests OVS sent (each already answered).
    switch_echoes: Vec<OfpMessage>,
    /// When Iris last sent something, for measuring OVS's inactivity probe.
    last_sent: Instant,
}

impl<'a> Session<'a> {
    fn connect(
        pm: &'a Pm,
        setup: &Setup,
        observe: &'a mut dyn FnMut(&Event),
    ) -> Result<Self, InteropError> {
        observe(&Event::Step("Handshake: HELLO, FEATURES, PORT_DESC".into()));
        let conn = Connection::accept(&setup.listener, CONNECT_TIMEOUT)?;
        observe(&Event::Info(format!(
            "{} connected to the listener",
            pm.ovs().name()
        )));
        Ok(Self {
            conn,
            pm,
            observe,
            sent: Vec::new(),
            switch_echoes: Vec::new(),
            last_sent: Instant::now(),
        })
    }

    fn emit(&mut self, event: Event) {
        (self.observe)(&event);
    }

    fn note_sent(&mut self, xid: u32, what: String, wire: Wire) {
        self.sent.push((xid, what));
        self.last_sent = Instant::now();
        self.emit(Event::Sent(wire));
    }

    fn send(&mut self, message: Message) -> Result<OfpMessage, InteropError> {
        let msg = self.conn.send(message)?;
        self.note_sent(msg.xid, msg.to_string(), Wire::Message(msg.clone()));
        Ok(msg)
    }

    fn send_raw(&mut self, xid: u32, bytes: Vec<u8>, what: String) -> Result<(), InteropError> {
        self.conn.send_raw(&bytes)?;
        self.note_sent(xid, what.clone(), Wire::Raw { bytes, what });
        Ok(())
    }

    /// The next message or answered echo request, logged.
    fn incoming(&mut self, deadline: Instant, waiting_for: &str) -> Result<Incoming, InteropError> {
        let incoming = self.conn.receive(deadline, waiting_for)?;
        match &incoming {
            Incoming::AnsweredEcho { request, reply } => {
                self.emit(Event::Received(request.clone()));
                self.emit(Event::Sent(Wire::Message(reply.clone())));
                self.switch_echoes.push(request.clone());
                self.last_sent = Instant::now();
            }
            Incoming::Message(m) => self.emit(Event::Received(m.clone())),
        }
        Ok(incoming)
    }

    /// The next message that is not an echo request (those are answered).
    fn next_message(
        &mut self,
        deadline: Instant,
        waiting_for: &str,
    ) -> Result<OfpMessage, InteropError> {
        loop {
            if let Incoming::Message(m) = self.incoming(deadline, waiting_for)? {
                return Ok(m);
            }
        }
    }

    /// What Iris sent with `xid`.
    fn describe(&self, xid: u32) -> String {
        self.sent.iter().rev().find(|(x, _)| *x == xid).map_or_else(
            || format!("a message with xid {xid:#x}"),
            |(_, w)| w.clone(),
        )
    }

    /// The message OVS sends with `xid`, skipping asynchronous messages. Any
    /// OFPT_ERROR on the way fails the run: it refuses something Iris sent.
    fn await_reply(&mut self, xid: u32, what: &str) -> Result<OfpMessage, InteropError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let waiting_for = format!("the reply to {what}");
        loop {
            let msg = self.next_message(deadline, &waiting_for)?;
            match msg.message {
                Message::Error(error) => {
                    return Err(InteropError::Refused {
                        request: self.describe(msg.xid),
                        error,
                    })
                }
                _ if msg.xid == xid => return Ok(msg),
                _ if is_async(&msg.message) => {}
                _ => {
                    return Err(InteropError::mismatch(
                        waiting_for,
                        format!("OVS sent {msg} instead"),
                    ))
                }
            }
        }
    }

    /// The items of every part of the multipart reply to a request with
    /// `body`; `pick` takes them out of a part, or hands back a part of
    /// another kind.
    fn multipart<T>(
        &mut self,
        body: MultipartRequestBody,
        pick: fn(MultipartReplyBody) -> Result<Vec<T>, MultipartReplyBody>,
    ) -> Result<Vec<T>, InteropError> {
        let request = self.send(Message::MultipartRequest(MultipartRequest::new(body)))?;
        let what = request.to_string();
        let mut items = Vec::new();
        loop {
            let reply = self.await_reply(request.xid, &what)?;
            let Message::MultipartReply(part) = reply.message else {
                return Err(InteropError::mismatch(
                    what,
                    format!("OVS answered with {reply}"),
                ));
            };
            let more = part.more();
            items.extend(pick(part.body).map_err(|other| {
                InteropError::mismatch(&what, format!("a {} reply part", other.mp_type()))
            })?);
            if !more {
                return Ok(items);
            }
        }
    }

    fn verified(&mut self, text: String) {
        self.emit(Event::Verified(text));
    }

    fn run(&mut self, setup: &Setup, testbed: Inventory) -> Result<Report, InteropError> {
        let switch_hello = self.hello()?;
        let features = self.features()?;
        let ports = self.port_desc(&setup.ovsdb_ports)?;
        let echo = self.echo()?;
        let flows = self.install_and_read_back(setup)?;
        let refusals = self.malformed(setup)?;
        let switch_echo = self.switch_echo()?;
        Ok(Report {
            testbed,
            switch_hello,
            features,
            ports,
            ovsdb_ports: setup.ovsdb_ports.clone(),
            echo,
            flows,
            refusals,
            switch_echo,
        })
    }

    fn hello(&mut self) -> Result<Hello, InteropError> {
        self.send(Message::Hello(Hello::default()))?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let first = self.next_message(deadline, "OVS's HELLO")?;
        let Message::Hello(hello) = first.message else {
            return Err(InteropError::mismatch(
                "handshake",
                format!("OVS's first message is {first}, not OFPT_HELLO"),
            ));
        };
        if hello.version_bitmap().is_none() {
            return Err(InteropError::mismatch(
                "handshake",
                format!("OVS's HELLO has no version bitmap element: {hello}"),
            ));
        }
        if !hello.accepts(OFP_VERSION) {
            return Err(InteropError::mismatch(
                "handshake",
                format!("OVS's version bitmap leaves out OpenFlow 1.3: {hello}"),
            ));
        }
        self.verified(format!(
            "OVS's HELLO carries a version bitmap element that includes 0x04 ({hello}): \
             both sides speak OpenFlow 1.3"
        ));
        Ok(hello)
    }

    fn features(&mut self) -> Result<SwitchFeatures, InteropError> {
        let request = self.send(Message::FeaturesRequest)?;
        let reply = self.await_reply(request.xid, "OFPT_FEATURES_REQUEST")?;
        let Message::FeaturesReply(features) = reply.message else {
            return Err(InteropError::mismatch(
                "FEATURES",
                format!("OVS answered with {reply}"),
            ));
        };
        if features.datapath_id != DATAPATH_ID {
            return Err(InteropError::mismatch(
                "FEATURES",
                format!(
                    "datapath id {:016x}, but {DATAPATH_ID:016x} was configured through OVSDB",
                    features.datapath_id
                ),
            ));
        }
        self.verified(format!(
            "datapath id {DATAPATH_ID:016x} is the one set in OVSDB \
             (Bridge:other_config:datapath-id); {} tables",
            features.n_tables
        ));
        Ok(features)
    }

    fn port_desc(&mut self, expected: &[(String, u32)]) -> Result<Vec<Port>, InteropError> {
        let ports = self.multipart(MultipartRequestBody::PortDesc, |part| match part {
            MultipartReplyBody::PortDesc(ports) => Ok(ports),
            other => Err(other),
        })?;
        let mut found: Vec<(String, u32)> = ports
            .iter()
            .map(|p| (p.name.to_string_lossy(), p.port_no))
            .collect();
        found.sort();
        let mut want = expected.to_vec();
        want.sort();
        if found != want {
            return Err(InteropError::mismatch(
                "PORT_DESC",
                format!("ports {found:?}, but OVSDB lists {want:?}"),
            ));
        }
        let names = want
            .iter()
            .map(|(name, n)| format!("{name}={}", ofp_port_name(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        self.verified(format!(
            "PORT_DESC names every port of {INTEGRATION_BRIDGE} with the number OVSDB gave it: {names}"
        ));
        Ok(ports)
    }

    fn echo(&mut self) -> Result<(OfpMessage, OfpMessage), InteropError> {
        self.emit(Event::Step("Echo, Iris -> OVS".into()));
        let request = self.send(Message::EchoRequest(ECHO_PAYLOAD.to_vec()))?;
        let reply = self.await_reply(request.xid, "OFPT_ECHO_REQUEST")?;
        if reply.message != Message::EchoReply(ECHO_PAYLOAD.to_vec()) {
            return Err(InteropError::mismatch(
                "echo",
                format!("OVS answered {reply}, not the payload sent"),
            ));
        }
        self.verified(format!(
            "ECHO_REPLY carries the request's xid ({:#x}) and its {}-byte payload",
            request.xid,
            ECHO_PAYLOAD.len()
        ));
        Ok((request, reply))
    }

    fn install_and_read_back(&mut self, setup: &Setup) -> Result<Vec<FlowResult>, InteropError> {
        self.emit(Event::Step(
            "Flows: a three-table pipeline, confirmed by a BARRIER".into(),
        ));
        let flows = pipeline(setup.asker, setup.owner);
        for flow in &flows {
            self.send(Message::FlowMod(flow.clone()))?;
        }
        let barrier = self.send(Message::BarrierRequest)?;
        let reply = self.await_reply(barrier.xid, "OFPT_BARRIER_REQUEST")?;
        if reply.message != Message::BarrierReply {
            return Err(InteropError::mismatch(
                "BARRIER",
                format!("OVS answered with {reply}"),
            ));
        }
        self.verified(format!(
            "BARRIER_REPLY (xid={:#x}) came with no OFPT_ERROR before it: OVS accepted all {} FLOW_MODs",
            reply.xid,
            flows.len()
        ));

        self.emit(Event::Step(
            "FLOW_STATS: the flows as OVS reports them, against what was sent".into(),
        ));
        let everything = MultipartRequestBody::Flow(FlowStatsRequest::default());
        let stats = self.multipart(everything, |part| match part {
            MultipartReplyBody::Flow(stats) => Ok(stats),
            other => Err(other),
        })?;
        if stats.len() != flows.len() {
            return Err(InteropError::mismatch(
                "FLOW_STATS",
                format!("{} flows reported, {} installed", stats.len(), flows.len()),
            ));
        }
        let mut paired = Vec::new();
        for sent in flows {
            let same_flow = |s: &&FlowStats| {
                (s.table_id, s.priority, s.cookie) == (sent.table_id, sent.priority, sent.cookie)
            };
            let reported = stats.iter().find(same_flow).cloned().ok_or_else(|| {
                InteropError::mismatch(
                    "FLOW_STATS",
                    format!("no entry for the flow sent as {sent}"),
                )
            })?;
            let normalised = compare(&sent, &reported).map_err(|diffs| {
                InteropError::mismatch(
                    format!("FLOW_STATS, table {}", sent.table_id),
                    diffs.join("; "),
                )
            })?;
            let mut text = format!(
                "table {}: every header field, match field and instruction as sent",
                sent.table_id
            );
            for note in &normalised.notes {
                text.push_str(&format!("\n(normalised: {note})"));
            }
            self.verified(text);
            paired.push((sent, reported, normalised));
        }

        self.emit(Event::Step(
            "ovs-ofctl: the same flows as Open vSwitch's own tool prints them".into(),
        ));
        let args = ["--no-names", "dump-flows", INTEGRATION_BRIDGE];
        let text = self.pm.ofctl(&args)?;
        self.emit(Event::Output {
            command: format!("ovs-ofctl -O OpenFlow13 {}", args.join(" ")),
            text: text.clone(),
        });
        let dumped = parse_dump(&text);
        if dumped.len() != paired.len() {
            return Err(InteropError::mismatch(
                "dump-flows",
                format!(
                    "{} flow lines, {} flows installed",
                    dumped.len(),
                    paired.len()
                ),
            ));
        }
        let mut results = Vec::new();
        for (sent, reported, normalised) in paired {
            let from_stats = DumpedFlow::of_stats(&reported);
            let from_sent = DumpedFlow::of_flow_mod(&sent);
            let line = dumped
                .iter()
                .find(|d| {
                    (d.table, d.priority, d.cookie)
                        == (from_stats.table, from_stats.priority, from_stats.cookie)
                })
                .cloned()
                .ok_or_else(|| {
                    InteropError::mismatch("dump-flows", format!("no line for {from_stats}"))
                })?;
            for (whose, ours) in [("FLOW_STATS entry", &from_stats), ("FLOW_MOD", &from_sent)] {
                if ours != &line {
                    return Err(InteropError::mismatch(
                        "dump-flows",
                        format!(
                            "ovs-ofctl prints\n  {line}\nthe codec prints the {whose} as\n  {ours}"
                        ),
                    ));
                }
            }
            self.verified(format!(
                "table {}: ovs-ofctl prints the match and actions the codec prints\n\
                 FLOW_STATS  {reported}\n\
                 dump-flows  {line}",
                line.table
            ));
            results.push(FlowResult {
                sent,
                reported,
                normalised,
                dumped: line,
            });
        }
        Ok(results)
    }

    fn malformed(&mut self, setup: &Setup) -> Result<Vec<Refusal>, InteropError> {
        self.emit(Event::Step(
            "Malformed messages: OVS must refuse them as the codec does".into(),
        ));
        // A BARRIER_REQUEST has no body; this one carries four bytes.
        let xid = self.conn.xid();
        let mut long_barrier = OfpMessage::new(xid, Message::BarrierRequest).to_bytes();
        long_barrier.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        set_length(&mut long_barrier);
        let mut refusals = vec![self.refuse(
            xid,
            long_barrier,
            "OFPT_BARRIER_REQUEST with a 4-byte body".into(),
        )?];

        // A FLOW_MOD whose match names in_port twice.
        let xid = self.conn.xid();
        let mut flow = pipeline(setup.asker, setup.owner).remove(0);
        flow.match_.fields.push(OxmField::InPort(setup.owner.port));
        let mut dup = Vec::new();
        flow.encode(xid, &mut dup);
        refusals.push(self.refuse(xid, dup, "OFPT_FLOW_MOD matching in_port twice".into())?);
        Ok(refusals)
    }

    /// Sends `bytes` (xid `xid`), which the codec must reject, and expects
    /// OVS's OFPT_ERROR for that xid with the code the codec finds.
    fn refuse(&mut self, xid: u32, bytes: Vec<u8>, what: String) -> Result<Refusal, InteropError> {
        let codec_verdict = match OfpMessage::parse(&bytes) {
            Err(e) => e.ofp_error(),
            Ok(m) => {
                return Err(InteropError::mismatch(
                    what,
                    format!("the codec accepts it as {m}; nothing to compare OVS with"),
                ))
            }
        };
        self.send_raw(xid, bytes.clone(), what.clone())?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let waiting_for = format!("OVS's OFPT_ERROR for the {what}");
        let error = loop {
            let msg = self.next_message(deadline, &waiting_for)?;
            match &msg.message {
                Message::Error(_) if msg.xid == xid => break msg,
                _ if msg.xid != xid && is_async(&msg.message) => {}
                _ => {
                    return Err(InteropError::mismatch(
                        waiting_for,
                        format!("OVS sent {msg} instead"),
                    ))
                }
            }
        };
        let Message::Error(ErrorMsg::Standard { code, data }) = &error.message else {
            return Err(InteropError::mismatch(
                waiting_for,
                format!("OVS sent an experimenter error: {error}"),
            ));
        };
        if *code != codec_verdict {
            return Err(InteropError::mismatch(
                what,
                format!(
                    "OVS answers {}, the codec would answer {}",
                    ErrorCodeName(*code),
                    ErrorCodeName(codec_verdict)
                ),
            ));
        }
        let echoed = bytes.len().min(ofp::message::ERROR_DATA_LEN);
        let offending = HeaderView::new_checked(data.as_slice()).map(|h| h.xid());
        if data.len() < echoed || !bytes.starts_with(data) || offending != Ok(xid) {
            return Err(InteropError::mismatch(
                what,
                format!(
                    "the error's data ({} bytes) does not start with the offending message",
                    data.len()
                ),
            ));
        }
        self.verified(format!(
            "OFPT_ERROR {} (xid={xid:#x}), the code the codec's decoder gives these bytes; \
             its data holds the first {} bytes of the offending message, xid {xid:#x}",
            ErrorCodeName(*code),
            data.len()
        ));
        Ok(Refusal {
            what,
            bytes,
            xid,
            codec_verdict,
            error,
        })
    }

    fn switch_echo(&mut self) -> Result<(OfpMessage, Duration), InteropError> {
        self.emit(Event::Step("Echo, OVS -> Iris".into()));
        self.emit(Event::Info(format!(
            "Iris stays silent until OVS's inactivity probe ({}ms) sends an echo request",
            INACTIVITY_PROBE.as_millis()
        )));
        let seen = self.switch_echoes.len();
        let silent_since = self.last_sent;
        // OVS counts silence from the last message it received; a probe it
        // sent earlier and Iris answered restarts the count.
        let deadline = Instant::now() + 2 * INACTIVITY_PROBE + REPLY_TIMEOUT;
        let waiting_for = "OVS's ECHO_REQUEST";
        while self.switch_echoes.len() == seen {
            if let Incoming::Message(m) = self.incoming(deadline, waiting_for)? {
                if !is_async(&m.message) {
                    return Err(InteropError::mismatch(
                        waiting_for,
                        format!("OVS sent {m} instead"),
                    ));
                }
            }
        }
        let request = self.switch_echoes[seen].clone();
        let silence = self.last_sent.duration_since(silent_since);
        self.verified(format!(
            "OVS probed after {:.1}s of silence; the ECHO_REPLY repeats its xid ({:#x}) and payload",
            silence.as_secs_f64(),
            request.xid
        ));
        let barrier = self.send(Message::BarrierRequest)?;
        self.await_reply(barrier.xid, "OFPT_BARRIER_REQUEST")?;
        self.verified("the session is still up after the exchange".into());
        Ok((request, silence))
    }
}

/// Messages a switch sends on its own; a controller logs them and carries on.
fn is_async(m: &Message) -> bool {
    matches!(
        m,
        Message::PacketIn(_) | Message::PortStatus(_) | Message::FlowRemoved(_)
    )
}

/// Rewrites the header's length field to the buffer's length.
fn set_length(bytes: &mut [u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_one_message_per_arrow_with_continuations_indented() {
        let hello = OfpMessage::new(1, Message::Hello(Hello::default()));
        assert_eq!(
            Event::Sent(Wire::Message(hello)).to_string(),
            "  -> OFPT_HELLO (OF1.3) (xid=0x1):\n       version bitmap: 0x04"
        );
        let barrier = OfpMessage::new(2, Message::BarrierReply);
        assert_eq!(
            Event::Received(barrier).to_string(),
            "  <- OFPT_BARRIER_REPLY (OF1.3) (xid=0x2):"
        );
        let raw = Wire::Raw {
            bytes: vec![4, 20, 0, 8, 0, 0, 0, 3],
            what: "a barrier".into(),
        };
        assert_eq!(
            Event::Sent(raw).to_string(),
            "  -> a barrier: 0414000800000003"
        );
        assert_eq!(
            Event::Output {
                command: "ovs-ofctl dump-flows br-int".into(),
                text: " cookie=0x0, table=0\n".into(),
            }
            .to_string(),
            "   $ ovs-ofctl dump-flows br-int\n       cookie=0x0, table=0"
        );
        assert_eq!(Event::Step("Flows".into()).to_string(), "\n== Flows");
    }

    #[test]
    fn set_length_patches_the_header() {
        let mut bytes = vec![4, 20, 0, 8, 0, 0, 0, 3, 0xde, 0xad];
        set_length(&mut bytes);
        assert_eq!(&bytes[2..4], &[0, 10]);
    }
}
