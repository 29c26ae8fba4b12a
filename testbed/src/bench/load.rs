//! The load one emulated switch offers, without I/O: which PacketIn to send
//! next, how many may be unanswered at once, which answer belongs to which
//! PacketIn, whether it is a correct one, and what was counted while
//! measuring.
//!
//! A FLOW_MOD or PACKET_OUT is *about* the waiting PacketIn whose buffer it
//! releases, else the one whose key it names first (see
//! [`super::traffic`]). A PacketIn is *answered* only once what it is owed
//! has come, correct in every part:
//! - an ARP request: a PACKET_OUT of an ARP reply (op 2) whose sender is
//!   the registry's MAC and IP for the asked address, addressed to the
//!   asker (Ethernet destination, target MAC and IP), out of the asking
//!   port alone;
//! - a learning frame: a FLOW_MOD ADD matching `eth_dst` of the host a
//!   learning switch knows where to send it to, whose actions output to
//!   that host's port alone: the frame's sender at its ingress port when
//!   the switch forwarded the packet itself (the flow answers what was
//!   learned from it), else the frame's destination at the port it was
//!   last seen on; plus, when the packet stopped at the controller, the
//!   packet sent out of that port (a PACKET_OUT of the frame or of its
//!   buffer, or the FLOW_MOD releasing its buffer).
//!
//! A flood, an echo back out of the ingress port, or a flow that leads
//! elsewhere is counted as `not_answers` and answers nothing. Once answered,
//! further messages about a PacketIn are counted as `unattributed`. A
//! PacketIn nobody answers within the timeout is given up, so a controller
//! that ignores some cannot stall the window for ever. A frame no learning
//! switch can forward to one port (its destination not seen yet, or seen
//! on the ingress port) is sent but not waited for (`unanswerable`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ofp::message::NO_BUFFER;

use super::switch::{Answer, AnswerKind, EmulatedSwitch};
use super::traffic::{
    host_index, host_ip, host_mac, known_index, known_ip, known_mac, FrameKind, Sent, Traffic,
};

/// What one switch counted while measuring.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub packet_ins: u64,
    /// PacketIns whose whole, correct answer arrived.
    pub answered: u64,
    /// PacketIns given up after the timeout.
    pub expired: u64,
    /// PacketIns sent that no controller can answer correctly (see the
    /// module), not waited for.
    pub unanswerable: u64,
    pub flow_mods: u64,
    pub packet_outs: u64,
    /// FLOW_MODs and PACKET_OUTs about a waiting PacketIn that are no part
    /// of its answer: floods, echoes, flows that do not lead to the host.
    pub not_answers: u64,
    /// FLOW_MODs and PACKET_OUTs that named no waiting PacketIn (the later
    /// messages about an answered one, or messages about nothing we sent).
    pub unattributed: u64,
    /// OFPT_ERRORs from the controller.
    pub errors: u64,
    /// Messages from the controller that did not decode.
    pub malformed: u64,
    /// Every other message from the controller.
    pub other: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.packet_ins += o.packet_ins;
        self.answered += o.answered;
        self.expired += o.expired;
        self.unanswerable += o.unanswerable;
        self.flow_mods += o.flow_mods;
        self.packet_outs += o.packet_outs;
        self.not_answers += o.not_answers;
        self.unattributed += o.unattributed;
        self.errors += o.errors;
        self.malformed += o.malformed;
        self.other += o.other;
    }
}

/// Response times are kept in nanoseconds, from 1 ns to a minute, to three
/// significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

type Mac = [u8; 6];
type Ip = [u8; 4];

/// What answers one PacketIn (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    ArpReply {
        sender: Mac,
        sender_ip: Ip,
        asker: Mac,
        asker_ip: Ip,
        port: u32,
    },
    /// A flow to `mac` out of `port`; with `packet`, the frame (to `mac`)
    /// sent out of `port` too.
    Forward { mac: Mac, port: u32, packet: bool },
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    seq: u64,
    sent: Instant,
    buffer_id: Option<u32>,
    owed: Owed,
    flow_came: bool,
    packet_came: bool,
}

impl Waiting {
    /// Takes `a` as part of the answer if it is one; `None` if it is no
    /// part of it, else whether the answer is now whole.
    fn take(&mut self, a: &Answer) -> Option<bool> {
        match self.owed {
            Owed::ArpReply {
                sender,
                sender_ip,
                asker,
                asker_ip,
                port,
            } => {
                // Ethernet destination, ARP sender and target MACs; the
                // Ethernet source is the responder's business.
                let reply = a.kind == AnswerKind::PacketOut
                    && a.arp_op == Some(2)
                    && a.macs[1..] == [Some(asker), Some(sender), Some(asker)]
                    && a.ips == [Some(sender_ip), Some(asker_ip)]
                    && a.out_port == Some(port);
                reply.then_some(true)
            }
            Owed::Forward { mac, port, packet } => {
                let to_port = a.out_port == Some(port);
                let releases = a.buffer_id.is_some() && a.buffer_id == self.buffer_id;
                let part = match a.kind {
                    AnswerKind::FlowMod if a.adds && to_port && a.macs[1] == Some(mac) => {
                        self.flow_came = true;
                        self.packet_came |= releases;
                        true
                    }
                    AnswerKind::PacketOut
                        if packet && to_port && (releases || a.macs[1] == Some(mac)) =>
                    {
                        self.packet_came = true;
                        true
                    }
                    _ => false,
                };
                part.then_some(self.flow_came && (self.packet_came || !packet))
            }
        }
    }
}

/// One switch's offered load and what came of it.
#[derive(Debug)]
pub struct Load {
    traffic: Traffic,
    window: u32,
    buffered: bool,
    /// Whether the switch forwarded each packet itself as it sent it up.
    forwarded: bool,
    timeout: Duration,
    seq: u64,
    /// By key: the PacketIn about that key still waiting for an answer.
    waiting: Vec<Option<Waiting>>,
    /// (key, seq) in the order sent, to find the oldest for the timeout.
    sent_order: VecDeque<(u32, u64)>,
    /// By host: the port its last frame came in on (0: none yet), what a
    /// learning switch has learned from the frames sent so far.
    last_port: Vec<u32>,
    in_flight: u32,
    frame: Vec<u8>,
    pub counts: Counts,
    pub latency: Histogram<u64>,
}

impl Load {
    /// `window` PacketIns may wait for an answer at once (at most one per
    /// key, so at most `traffic.macs`). `forwarded`: the switch sends each
    /// packet on as it sends it up (see
    /// [`super::switch::PacketInProfile::forwarded`]).
    pub fn new(
        traffic: Traffic,
        window: u32,
        buffered: bool,
        forwarded: bool,
        timeout: Duration,
    ) -> Self {
        let hosts = traffic.macs as usize;
        Self {
            window: window.clamp(1, traffic.macs),
            traffic,
            buffered,
            forwarded,
            timeout,
            seq: 0,
            waiting: vec![None; hosts],
            sent_order: VecDeque::new(),
            last_port: vec![0; hosts],
            in_flight: 0,
            frame: Vec::with_capacity(128),
            counts: Counts::default(),
            latency: new_histogram(),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// What a correct controller owes for the frame just built, given what
    /// the frames before it taught; `None` when no answer can be correct.
    fn owed(&self, sent: &Sent) -> Option<Owed> {
        let sw = self.traffic.switch;
        match (self.traffic.kind, sent.dst) {
            (FrameKind::ArpRequest, _) => Some(Owed::ArpReply {
                sender: known_mac(sw, sent.key).0,
                sender_ip: known_ip(sent.key).octets(),
                asker: host_mac(sw, sent.src).0,
                asker_ip: host_ip(sent.src).octets(),
                port: sent.in_port,
            }),
            // Held at the controller: it goes to where its destination was
            // last seen, if that is another port.
            (FrameKind::Unicast, Some(dst)) if !self.forwarded => {
                let port = self.last_port[dst as usize];
                (port != 0 && port != sent.in_port).then_some(Owed::Forward {
                    mac: host_mac(sw, dst).0,
                    port,
                    packet: true,
                })
            }
            // Forwarded already (or a broadcast announcement): the flow to
            // the sender where it was just seen.
            _ => Some(Owed::Forward {
                mac: host_mac(sw, sent.src).0,
                port: sent.in_port,
                packet: false,
            }),
        }
    }

    /// Appends PacketIns to `out` until the window is full. Stops early
    /// when the next key's previous PacketIn is still waiting, so keys are
    /// answered and reused in order.
    pub fn fill(
        &mut self,
        switch: &mut EmulatedSwitch,
        now: Instant,
        measuring: bool,
        out: &mut Vec<u8>,
    ) {
        while self.in_flight < self.window {
            let key = (self.seq % u64::from(self.traffic.macs)) as usize;
            if self.waiting[key].is_some() {
                break;
            }
            self.frame.clear();
            let sent = self.traffic.frame(self.seq, &mut self.frame);
            let buffer_id = if self.buffered { sent.key } else { NO_BUFFER };
            switch.packet_in(sent.in_port, buffer_id, &self.frame, out);
            let owed = self.owed(&sent);
            self.last_port[sent.src as usize] = sent.in_port;
            if measuring {
                self.counts.packet_ins += 1;
            }
            self.seq += 1;
            let Some(owed) = owed else {
                if measuring {
                    self.counts.unanswerable += 1;
                }
                continue;
            };
            self.waiting[key] = Some(Waiting {
                seq: self.seq - 1,
                sent: now,
                buffer_id: self.buffered.then_some(buffer_id),
                owed,
                flow_came: false,
                packet_came: false,
            });
            self.sent_order.push_back((sent.key, self.seq - 1));
            self.in_flight += 1;
        }
    }

    /// Takes a FLOW_MOD or PACKET_OUT into account.
    pub fn on_answer(&mut self, answer: &Answer, now: Instant, measuring: bool) {
        if measuring {
            match answer.kind {
                AnswerKind::FlowMod => self.counts.flow_mods += 1,
                AnswerKind::PacketOut => self.counts.packet_outs += 1,
            }
        }
        let Some(key) = self.answered_key(answer) else {
            if measuring {
                self.counts.unattributed += 1;
            }
            return;
        };
        let slot = &mut self.waiting[key as usize];
        let Some(w) = slot.as_mut() else {
            return;
        };
        match w.take(answer) {
            None => {
                if measuring {
                    self.counts.not_answers += 1;
                }
            }
            Some(false) => {}
            Some(true) => {
                let sent = w.sent;
                *slot = None;
                self.in_flight -= 1;
                if measuring {
                    self.counts.answered += 1;
                    let ns = now.saturating_duration_since(sent).as_nanos();
                    self.latency
                        .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                }
            }
        }
    }

    /// The waiting key the answer is about: the one whose buffer it
    /// releases, else the first key it names: a host's MAC (a flow for
    /// traffic from host A to host B is about A, even while B waits too),
    /// or for ARP requests a known IP.
    fn answered_key(&self, answer: &Answer) -> Option<u32> {
        let is_waiting = |k: u32| self.waiting.get(k as usize).is_some_and(Option::is_some);
        if self.buffered {
            if let Some(b) = answer.buffer_id.filter(|&b| is_waiting(b)) {
                return Some(b);
            }
        }
        let named = match self.traffic.kind {
            FrameKind::ArpRequest => answer.ips.iter().flatten().find_map(|ip| known_index(*ip)),
            FrameKind::Unicast | FrameKind::Garp => answer
                .macs
                .iter()
                .flatten()
                .find_map(|m| host_index(self.traffic.switch, m)),
        };
        named.filter(|&k| is_waiting(k))
    }

    /// Gives up PacketIns older than the timeout.
    pub fn expire(&mut self, now: Instant, measuring: bool) {
        while let Some(&(key, seq)) = self.sent_order.front() {
            let slot = &mut self.waiting[key as usize];
            match slot {
                Some(w) if w.seq == seq => {
                    if now.saturating_duration_since(w.sent) < self.timeout {
                        return;
                    }
                    *slot = None;
                    self.in_flight -= 1;
                    if measuring {
                        self.counts.expired += 1;
                    }
                }
                // Answered already.
                _ => {}
            }
            self.sent_order.pop_front();
        }
    }

    /// When the oldest waiting PacketIn times out, if any is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sent_order.iter().find_map(|&(key, seq)| {
            self.waiting[key as usize]
                .filter(|w| w.seq == seq)
                .map(|w| w.sent + self.timeout)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::switch::{PacketInProfile, SwitchSpec};
    use ofp::message::PacketInReason;

    const SWITCH: u16 = 3;

    fn switch() -> EmulatedSwitch {
        EmulatedSwitch::new(
            SwitchSpec {
                index: SWITCH,
                datapath_id: 4,
                ports: 2,
                n_buffers: 0,
            },
            PacketInProfile {
                reason: PacketInReason::NoMatch,
                table_id: 0,
                cookie: 0,
                forwarded: false,
            },
        )
    }

    /// 4 hosts on 2 ports: host `i` is on port `1 + (i + pass) % 2`.
    fn traffic(kind: FrameKind) -> Traffic {
        Traffic {
            kind,
            switch: SWITCH,
            macs: 4,
            ports: 2,
            vlan: None,
        }
    }

    fn load(kind: FrameKind, window: u32, buffered: bool, forwarded: bool) -> Load {
        Load::new(
            traffic(kind),
            window,
            buffered,
            forwarded,
            Duration::from_millis(100),
        )
    }

    fn mac(host: u32) -> Option<[u8; 6]> {
        Some(host_mac(SWITCH, host).0)
    }

    /// A FLOW_MOD ADD of `eth_src=src,eth_dst=dst` (either may be absent)
    /// that outputs to `port`.
    fn flow(src: Option<u32>, dst: u32, port: u32) -> Answer {
        Answer {
            kind: AnswerKind::FlowMod,
            buffer_id: None,
            macs: [src.and_then(mac), mac(dst), None, None],
            ips: [None; 2],
            adds: true,
            out_port: Some(port),
            arp_op: None,
        }
    }

    /// A PACKET_OUT of host `src`'s frame to `dst` out of `port`.
    fn packet(src: u32, dst: u32, port: u32) -> Answer {
        Answer {
            kind: AnswerKind::PacketOut,
            macs: [mac(src), mac(dst), None, None],
            ..flow(None, dst, port)
        }
    }

    #[test]
    fn window_bounds_what_is_in_flight_and_answers_free_it() {
        let (mut sw, mut l, mut out) =
            (switch(), load(FrameKind::Garp, 3, false, true), Vec::new());
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!((l.in_flight(), l.counts.packet_ins), (3, 3));
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!(l.counts.packet_ins, 3, "window full");

        // Forwarded by the switch: the flow to host 1 where it is.
        l.on_answer(&flow(None, 1, 2), t0 + Duration::from_micros(20), true);
        assert_eq!((l.in_flight(), l.counts.answered), (2, 1));
        // A second message about host 1 answers nothing more.
        l.on_answer(&flow(None, 1, 2), t0, true);
        assert_eq!((l.counts.answered, l.counts.unattributed), (1, 1));
        assert_eq!(l.counts.flow_mods, 2);
        assert_eq!(l.latency.len(), 1);
        assert!(l.latency.value_at_quantile(0.5) >= 19_000);
    }

    #[test]
    fn flows_that_do_not_lead_to_the_host_where_it_is_answer_nothing() {
        let (mut sw, mut l, mut out) =
            (switch(), load(FrameKind::Garp, 4, false, true), Vec::new());
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        // Host 2 came in on port 1: a flow to port 2, a flow that outputs
        // nowhere (a source check), a DELETE, a flood of its frame.
        let source_check = Answer {
            out_port: None,
            macs: [mac(2), None, None, None],
            ..flow(None, 2, 1)
        };
        let delete = Answer {
            adds: false,
            ..flow(None, 2, 1)
        };
        for a in [
            flow(None, 2, 2),
            source_check,
            delete,
            packet(2, 2, port_no_flood()),
        ] {
            l.on_answer(&a, t0, true);
        }
        assert_eq!((l.counts.answered, l.counts.not_answers), (0, 4));
        l.on_answer(&flow(None, 2, 1), t0, true);
        assert_eq!(l.counts.answered, 1);
    }

    fn port_no_flood() -> u32 {
        ofp::message::port_no::FLOOD
    }

    #[test]
    fn a_held_frame_needs_the_flow_to_its_destination_and_the_packet() {
        let (mut sw, mut l, mut out) = (
            switch(),
            load(FrameKind::Unicast, 4, false, false),
            Vec::new(),
        );
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        // Host 0's frame goes to host 3, not seen yet, then (next pass, on
        // port 2) to host 3 seen on port 2: nobody can answer either, and
        // neither takes a place in the window.
        assert_eq!((l.counts.packet_ins, l.counts.unanswerable), (5, 2));
        assert_eq!(l.in_flight(), 3);
        // Host 2's frame goes to host 1, seen on port 2.
        l.on_answer(&flow(Some(2), 1, 2), t0, true);
        assert_eq!(l.counts.answered, 0, "the packet is still owed");
        // Sent back where it came from (port 1), or flooded: no answer.
        l.on_answer(&packet(2, 1, 1), t0, true);
        l.on_answer(&packet(2, 1, port_no_flood()), t0, true);
        assert_eq!((l.counts.answered, l.counts.not_answers), (0, 2));
        l.on_answer(&packet(2, 1, 2), t0, true);
        assert_eq!(l.counts.answered, 1);
        // The packet first, then the flow, does as well.
        l.on_answer(&packet(3, 2, 1), t0, true);
        l.on_answer(&flow(Some(3), 2, 1), t0, true);
        assert_eq!(l.counts.answered, 2);
    }

    #[test]
    fn a_buffered_frame_is_released_by_its_flow() {
        let (mut sw, mut l, mut out) = (
            switch(),
            load(FrameKind::Unicast, 2, true, false),
            Vec::new(),
        );
        let t0 = Instant::now();
        l.fill(&mut sw, t0, false, &mut out);
        assert!(
            l.waiting[0].is_none(),
            "host 0's destination is not known yet"
        );
        // Host 1's frame (buffer 1) goes to host 0, on port 1.
        let release = Answer {
            buffer_id: Some(1),
            ..flow(Some(1), 0, 1)
        };
        l.on_answer(&release, t0, false);
        assert!(l.waiting[1].is_none());
        assert_eq!(
            l.counts,
            Counts::default(),
            "not measuring: nothing counted"
        );
    }

    #[test]
    fn arp_requests_are_answered_by_the_registry_s_reply_to_the_asker() {
        let (mut sw, mut l, mut out) = (
            switch(),
            load(FrameKind::ArpRequest, 4, false, false),
            Vec::new(),
        );
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        // Key 1 is asked by the requester on port 2 (host 1).
        let reply = Answer {
            kind: AnswerKind::PacketOut,
            buffer_id: None,
            macs: [
                Some(known_mac(SWITCH, 1).0),
                mac(1),
                Some(known_mac(SWITCH, 1).0),
                mac(1),
            ],
            ips: [Some(known_ip(1).octets()), Some(host_ip(1).octets())],
            adds: false,
            out_port: Some(2),
            arp_op: Some(2),
        };
        let wrong = [
            // The request sent on (flooded): its target names the key.
            Answer {
                macs: [mac(1), Some([0xff; 6]), mac(1), Some([0; 6])],
                ips: [Some(host_ip(1).octets()), Some(known_ip(1).octets())],
                arp_op: Some(1),
                out_port: Some(port_no_flood()),
                ..reply
            },
            // Out of another port.
            Answer {
                out_port: Some(1),
                ..reply
            },
            // From another MAC than the registry's.
            Answer {
                macs: [
                    Some(known_mac(SWITCH, 2).0),
                    mac(1),
                    Some(known_mac(SWITCH, 2).0),
                    mac(1),
                ],
                ..reply
            },
            // To someone else.
            Answer {
                macs: [
                    Some(known_mac(SWITCH, 1).0),
                    mac(3),
                    Some(known_mac(SWITCH, 1).0),
                    mac(3),
                ],
                ..reply
            },
        ];
        for a in wrong {
            l.on_answer(&a, t0, true);
        }
        assert_eq!((l.counts.answered, l.counts.not_answers), (0, 4));
        l.on_answer(&reply, t0, true);
        assert!(l.waiting[1].is_none() && l.waiting[3].is_some());
        assert_eq!(l.counts.answered, 1);
    }

    #[test]
    fn unanswered_packet_ins_expire_in_order_and_free_the_window() {
        let (mut sw, mut l, mut out) =
            (switch(), load(FrameKind::Garp, 2, false, true), Vec::new());
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        l.on_answer(&flow(None, 0, 1), t0, true);
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_millis(100)));
        l.expire(t0 + Duration::from_millis(50), true);
        assert_eq!(l.in_flight(), 1);
        l.expire(t0 + Duration::from_millis(100), true);
        assert_eq!((l.in_flight(), l.counts.expired), (0, 1));
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn a_host_is_not_reused_while_its_packet_in_waits() {
        let (mut sw, mut l, mut out) =
            (switch(), load(FrameKind::Garp, 4, false, true), Vec::new());
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        // Hosts 1..3 answered, host 0 not: the next PacketIn would be host
        // 0's again, so nothing is sent.
        for h in 1..4 {
            l.on_answer(&flow(None, h, 1 + (h % 2)), t0, true);
        }
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!(l.counts.packet_ins, 4);
        l.on_answer(&flow(None, 0, 1), t0, true);
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!(l.counts.packet_ins, 8);
    }
}
