//! The load one emulated switch offers, without I/O: which PacketIn to send
//! next, how many may be unanswered at once, which answer belongs to which
//! PacketIn, and what was counted while measuring.
//!
//! A PacketIn is *answered* by the first FLOW_MOD or PACKET_OUT that names
//! it: by the buffer it was sent with, or by its key (see
//! [`super::traffic`]). Further messages about the same PacketIn are
//! counted by kind but answer nothing. A PacketIn nobody answers within the
//! timeout is given up, so a controller that ignores some cannot stall the
//! window for ever.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ofp::message::NO_BUFFER;

use super::switch::{Answer, AnswerKind, EmulatedSwitch};
use super::traffic::{host_index, known_index, FrameKind, Traffic};

/// What one switch counted while measuring.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub packet_ins: u64,
    /// PacketIns whose first answer arrived.
    pub answered: u64,
    /// PacketIns given up after the timeout.
    pub expired: u64,
    pub flow_mods: u64,
    pub packet_outs: u64,
    /// FLOW_MODs and PACKET_OUTs that named no waiting PacketIn (the second
    /// and later messages about one, or messages about nothing we sent).
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
        self.flow_mods += o.flow_mods;
        self.packet_outs += o.packet_outs;
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

#[derive(Debug, Clone, Copy)]
struct Waiting {
    seq: u64,
    sent: Instant,
}

/// One switch's offered load and what came of it.
#[derive(Debug)]
pub struct Load {
    traffic: Traffic,
    window: u32,
    buffered: bool,
    timeout: Duration,
    seq: u64,
    /// By key: the PacketIn about that key still waiting for an answer.
    waiting: Vec<Option<Waiting>>,
    /// (key, seq) in the order sent, to find the oldest for the timeout.
    sent_order: VecDeque<(u32, u64)>,
    in_flight: u32,
    frame: Vec<u8>,
    pub counts: Counts,
    pub latency: Histogram<u64>,
}

impl Load {
    /// `window` PacketIns may wait for an answer at once (at most one per
    /// key, so at most `traffic.macs`).
    pub fn new(traffic: Traffic, window: u32, buffered: bool, timeout: Duration) -> Self {
        let hosts = traffic.macs as usize;
        Self {
            window: window.clamp(1, traffic.macs),
            traffic,
            buffered,
            timeout,
            seq: 0,
            waiting: vec![None; hosts],
            sent_order: VecDeque::new(),
            in_flight: 0,
            frame: Vec::with_capacity(128),
            counts: Counts::default(),
            latency: new_histogram(),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
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
            self.waiting[key] = Some(Waiting {
                seq: self.seq,
                sent: now,
            });
            self.sent_order.push_back((sent.key, self.seq));
            self.in_flight += 1;
            self.seq += 1;
            if measuring {
                self.counts.packet_ins += 1;
            }
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
        let key = self.answered_key(answer);
        let waited = key.and_then(|k| self.waiting[k as usize].take());
        match waited {
            Some(w) => {
                self.in_flight -= 1;
                if measuring {
                    self.counts.answered += 1;
                    let ns = now.saturating_duration_since(w.sent).as_nanos();
                    self.latency
                        .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                }
            }
            None if measuring => self.counts.unattributed += 1,
            None => {}
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
    use crate::bench::traffic::{host_ip, host_mac, known_ip, known_mac};
    use ofp::message::PacketInReason;

    fn switch() -> EmulatedSwitch {
        EmulatedSwitch::new(
            SwitchSpec {
                index: 3,
                datapath_id: 4,
                ports: 2,
                n_buffers: 0,
            },
            PacketInProfile {
                reason: PacketInReason::NoMatch,
                table_id: 0,
                cookie: 0,
            },
        )
    }

    fn load_of(kind: FrameKind, window: u32, buffered: bool) -> Load {
        let traffic = Traffic {
            kind,
            switch: 3,
            macs: 4,
            ports: 2,
            vlan: None,
        };
        Load::new(traffic, window, buffered, Duration::from_millis(100))
    }

    fn load(window: u32, buffered: bool) -> Load {
        load_of(FrameKind::Unicast, window, buffered)
    }

    fn flow_mod_for(host: u32) -> Answer {
        Answer {
            kind: AnswerKind::FlowMod,
            buffer_id: None,
            macs: [
                Some(host_mac(3, host).0),
                Some(host_mac(3, 0).0),
                None,
                None,
            ],
            ips: [None; 2],
        }
    }

    #[test]
    fn window_bounds_what_is_in_flight_and_answers_free_it() {
        let (mut sw, mut l, mut out) = (switch(), load(3, false), Vec::new());
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!((l.in_flight(), l.counts.packet_ins), (3, 3));
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!(l.counts.packet_ins, 3, "window full");

        l.on_answer(&flow_mod_for(1), t0 + Duration::from_micros(20), true);
        assert_eq!((l.in_flight(), l.counts.answered), (2, 1));
        // A second message about host 1 answers nothing more.
        l.on_answer(&flow_mod_for(1), t0, true);
        assert_eq!((l.counts.answered, l.counts.unattributed), (1, 1));
        assert_eq!(l.counts.flow_mods, 2);
        assert_eq!(l.latency.len(), 1);
        assert!(l.latency.value_at_quantile(0.5) >= 19_000);
    }

    #[test]
    fn an_answer_is_about_its_first_host_mac_only() {
        let (mut sw, mut l, mut out) = (switch(), load(4, false), Vec::new());
        l.fill(&mut sw, Instant::now(), true, &mut out);
        // Host 2's frame goes to host 1; both wait. The answer names host 2
        // as source and host 1 as destination.
        let a = Answer {
            kind: AnswerKind::PacketOut,
            buffer_id: None,
            macs: [Some(host_mac(3, 2).0), Some(host_mac(3, 1).0), None, None],
            ips: [None; 2],
        };
        l.on_answer(&a, Instant::now(), true);
        assert!(l.waiting[2].is_none() && l.waiting[1].is_some());
        // Another message about host 2 does not answer host 1.
        l.on_answer(&a, Instant::now(), true);
        assert!(l.waiting[1].is_some());
    }

    #[test]
    fn arp_answers_are_tied_by_the_known_ip_either_way_round() {
        let (mut sw, mut l, mut out) = (
            switch(),
            load_of(FrameKind::ArpRequest, 4, false),
            Vec::new(),
        );
        l.fill(&mut sw, Instant::now(), true, &mut out);
        // A reply from known address 1 to the requester (host 1 asks for
        // keys 1 and 3): about key 1, whatever the MACs say.
        let reply = Answer {
            kind: AnswerKind::PacketOut,
            buffer_id: None,
            macs: [Some(known_mac(3, 1).0), Some(host_mac(3, 1).0), None, None],
            ips: [Some(known_ip(1).octets()), Some(host_ip(1).octets())],
        };
        l.on_answer(&reply, Instant::now(), true);
        assert!(l.waiting[1].is_none() && l.waiting[3].is_some());
        // The request for key 3 sent on (flooded): its target names it.
        let flood = Answer {
            ips: [Some(host_ip(1).octets()), Some(known_ip(3).octets())],
            ..reply
        };
        l.on_answer(&flood, Instant::now(), true);
        assert!(l.waiting[3].is_none());
        assert_eq!(l.counts.answered, 2);
    }

    #[test]
    fn buffered_answers_are_tied_by_buffer_id() {
        let (mut sw, mut l, mut out) = (switch(), load(2, true), Vec::new());
        l.fill(&mut sw, Instant::now(), false, &mut out);
        let a = Answer {
            kind: AnswerKind::FlowMod,
            buffer_id: Some(1),
            macs: [None; 4],
            ips: [None; 2],
        };
        l.on_answer(&a, Instant::now(), false);
        assert!(l.waiting[1].is_none() && l.waiting[0].is_some());
        assert_eq!(
            l.counts,
            Counts::default(),
            "not measuring: nothing counted"
        );
    }

    #[test]
    fn unanswered_packet_ins_expire_in_order_and_free_the_window() {
        let (mut sw, mut l, mut out) = (switch(), load(2, false), Vec::new());
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        l.on_answer(&flow_mod_for(0), t0, true);
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_millis(100)));
        l.expire(t0 + Duration::from_millis(50), true);
        assert_eq!(l.in_flight(), 1);
        l.expire(t0 + Duration::from_millis(100), true);
        assert_eq!((l.in_flight(), l.counts.expired), (0, 1));
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn a_host_is_not_reused_while_its_packet_in_waits() {
        let (mut sw, mut l, mut out) = (switch(), load(4, false), Vec::new());
        let t0 = Instant::now();
        l.fill(&mut sw, t0, true, &mut out);
        // Hosts 1..3 answered, host 0 not: the next PacketIn would be host
        // 0's again, so nothing is sent.
        for h in 1..4 {
            l.on_answer(&flow_mod_for(h), t0, true);
        }
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!(l.counts.packet_ins, 4);
        l.on_answer(&flow_mod_for(0), t0, true);
        l.fill(&mut sw, t0, true, &mut out);
        assert_eq!(l.counts.packet_ins, 8);
    }
}
