//! The JSON-RPC session as a state machine, without I/O or a clock: request
//! ids, answering the server's `echo`, routing `update` notifications, and
//! our own inactivity probe. The caller passes `now` in and moves the bytes.

use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::error::Disconnect;
use crate::jsonrpc::Message;

/// What a received message means for the session's owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The answer to the request with this id.
    Reply { id: u64, result: Result<Json, Json> },
    /// A monitor's `update` notification (RFC 7047 §4.1.6).
    Update { monitor: String, updates: Json },
    /// Send this back (the answer to the server's `echo`).
    Send(Message),
    /// Nothing to do (our probe's answer, a notification we do not use).
    Nothing,
}

/// Session state; see the module documentation.
#[derive(Debug)]
pub struct Session {
    next_id: u64,
    probe_interval: Option<Duration>,
    last_rx: Instant,
    /// When our echo went out, if nothing has arrived since.
    probe_sent: Option<Instant>,
    /// The id of our last echo, so that its answer is not taken for a reply.
    probe_id: Option<u64>,
}

impl Session {
    /// `probe_interval`: after this long without receiving anything, send an
    /// echo; after as long again, give up. `None` never probes (then only the
    /// operating system notices a dead peer).
    pub fn new(now: Instant, probe_interval: Option<Duration>) -> Self {
        Self {
            next_id: 1,
            probe_interval,
            last_rx: now,
            probe_sent: None,
            probe_id: None,
        }
    }

    /// A new request with a fresh id.
    pub fn request(&mut self, method: &str, params: Json) -> (u64, Message) {
        let id = self.next_id;
        self.next_id += 1;
        (
            id,
            Message::Request {
                id: json!(id),
                method: method.to_owned(),
                params,
            },
        )
    }

    /// Bytes arrived: the peer is alive, even if the message is not complete yet.
    pub fn activity(&mut self, now: Instant) {
        self.last_rx = now;
        self.probe_sent = None;
    }

    pub fn received(&mut self, now: Instant, msg: Message) -> Inbound {
        self.activity(now);
        match msg {
            Message::Request { id, method, params } => {
                let result = if method == "echo" {
                    Ok(params)
                } else {
                    Err(json!({"error": "unknown method", "details": method}))
                };
                Inbound::Send(Message::Response { id, result })
            }
            Message::Notification { method, params } if method == "update" => {
                match params.as_array().map(Vec::as_slice) {
                    Some([Json::String(monitor), updates]) => Inbound::Update {
                        monitor: monitor.clone(),
                        updates: updates.clone(),
                    },
                    _ => Inbound::Nothing,
                }
            }
            Message::Notification { .. } => Inbound::Nothing,
            Message::Response { id, result } => match id.as_u64() {
                Some(id) if self.probe_id == Some(id) => Inbound::Nothing,
                Some(id) => Inbound::Reply { id, result },
                None => Inbound::Nothing,
            },
        }
    }

    /// When [`Session::on_timer`] must be called next, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        let interval = self.probe_interval?;
        Some(self.probe_sent.unwrap_or(self.last_rx) + interval)
    }

    /// Sends the probe when the line went quiet, or ends the session when the
    /// probe went unanswered.
    pub fn on_timer(&mut self, now: Instant) -> Result<Option<Message>, Disconnect> {
        let Some(interval) = self.probe_interval else {
            return Ok(None);
        };
        match self.probe_sent {
            None if now >= self.last_rx + interval => {
                let (id, msg) = self.request("echo", json!([]));
                self.probe_sent = Some(now);
                self.probe_id = Some(id);
                Ok(Some(msg))
            }
            Some(at) if now >= at + interval => Err(Disconnect::ProbeTimeout { interval }),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn answers_echo_with_the_same_id_and_params() {
        let now = Instant::now();
        let mut s = Session::new(now, None);
        let echo = Message::Request {
            id: json!("echo"),
            method: "echo".into(),
            params: json!([1]),
        };
        assert_eq!(
            s.received(now, echo),
            Inbound::Send(Message::Response {
                id: json!("echo"),
                result: Ok(json!([1]))
            })
        );
    }

    #[test]
    fn routes_replies_and_updates() {
        let now = Instant::now();
        let mut s = Session::new(now, None);
        let (id, _) = s.request("transact", json!(["Open_vSwitch"]));
        let (id2, _) = s.request("transact", json!(["Open_vSwitch"]));
        assert_ne!(id, id2);
        assert_eq!(
            s.received(
                now,
                Message::Response {
                    id: json!(id),
                    result: Ok(json!([]))
                }
            ),
            Inbound::Reply {
                id,
                result: Ok(json!([]))
            }
        );
        let update = Message::Notification {
            method: "update".into(),
            params: json!(["m1", {"Bridge": {}}]),
        };
        assert_eq!(
            s.received(now, update),
            Inbound::Update {
                monitor: "m1".into(),
                updates: json!({"Bridge": {}})
            }
        );
    }

    #[test]
    fn probes_after_silence_and_gives_up_after_a_second_interval() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, Some(5 * SEC));
        assert_eq!(s.deadline(), Some(t0 + 5 * SEC));
        assert_eq!(s.on_timer(t0 + 4 * SEC), Ok(None));
        let Ok(Some(Message::Request { method, .. })) = s.on_timer(t0 + 5 * SEC) else {
            panic!("expected an echo request");
        };
        assert_eq!(method, "echo");
        assert_eq!(s.deadline(), Some(t0 + 10 * SEC));
        assert_eq!(
            s.on_timer(t0 + 10 * SEC),
            Err(Disconnect::ProbeTimeout { interval: 5 * SEC })
        );

        // The answer to the probe revives the session and is not a reply to anyone.
        let mut s = Session::new(t0, Some(5 * SEC));
        let Ok(Some(Message::Request { id: probe_id, .. })) = s.on_timer(t0 + 5 * SEC) else {
            panic!("expected an echo request");
        };
        let answer = Message::Response {
            id: probe_id,
            result: Ok(json!([])),
        };
        assert_eq!(s.received(t0 + 6 * SEC, answer), Inbound::Nothing);
        assert_eq!(s.on_timer(t0 + 10 * SEC), Ok(None));
        assert_eq!(s.deadline(), Some(t0 + 11 * SEC));
    }

    #[test]
    fn any_bytes_count_as_life() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, Some(SEC));
        assert!(matches!(s.on_timer(t0 + SEC), Ok(Some(_))));
        s.activity(t0 + SEC + SEC / 2);
        assert_eq!(s.on_timer(t0 + 2 * SEC), Ok(None));
    }
}
