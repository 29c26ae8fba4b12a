//! The smallest OpenFlow endpoint that can face a real switch: a TCP
//! listener, [`ofp::framing::Framer`] to cut the byte stream into messages,
//! and the codec to decode and encode them. Blocking I/O with deadlines; no
//! controller logic beyond what every OpenFlow endpoint owes its peer
//! (answering echo requests).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ofp::framing::Framer;
use ofp::message::{Message, OfpMessage};

use super::error::InteropError;

/// How long one read may block before the deadline is looked at again.
const READ_SLICE: Duration = Duration::from_millis(200);

/// Pause between non-blocking accept attempts.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// One message as it crossed the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// A message decoded by the codec.
    Message(OfpMessage),
    /// Bytes sent as they are (a deliberately malformed message), with what
    /// they are meant to be.
    Raw { bytes: Vec<u8>, what: String },
}

/// What arrived from the switch.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// An OFPT_ECHO_REQUEST, already answered with `reply`.
    AnsweredEcho {
        request: OfpMessage,
        reply: OfpMessage,
    },
    Message(OfpMessage),
}

/// An accepted OpenFlow connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    framer: Framer,
    read_buf: Vec<u8>,
    send_buf: Vec<u8>,
    next_xid: u32,
}

impl Connection {
    /// Waits until a switch connects to `listener`, at most `timeout`.
    pub(crate) fn accept(listener: &TcpListener, timeout: Duration) -> Result<Self, InteropError> {
        listener
            .set_nonblocking(true)
            .map_err(|e| InteropError::io("making the listener non-blocking", e))?;
        let start = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if start.elapsed() >= timeout {
                        return Err(InteropError::Timeout {
                            waiting_for: "ovs-vswitchd to connect to the listener".into(),
                            waited: start.elapsed(),
                        });
                    }
                    thread::sleep(ACCEPT_POLL);
                }
                Err(e) => return Err(InteropError::io("accepting the switch's connection", e)),
            }
        };
        // The accepted socket may inherit non-blocking mode; reads use
        // timeouts instead.
        // Requests go out one by one and are waited for; Nagle's algorithm
        // would hold each back for the previous one's acknowledgement.
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_nodelay(true))
            .and_then(|()| stream.set_read_timeout(Some(READ_SLICE)))
            .map_err(|e| InteropError::io("configuring the accepted socket", e))?;
        Ok(Self {
            stream,
            framer: Framer::default(),
            read_buf: vec![0; 64 * 1024],
            send_buf: Vec::with_capacity(1024),
            // Small, recognisable xids; OVS's own requests count from 0.
            next_xid: 0x100,
        })
    }

    /// A fresh transaction id.
    pub(crate) fn xid(&mut self) -> u32 {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        xid
    }

    /// Encodes and sends `message` with a fresh xid; returns what was sent.
    pub(crate) fn send(&mut self, message: Message) -> Result<OfpMessage, InteropError> {
        let msg = OfpMessage::new(self.xid(), message);
        self.send_with_xid(&msg)?;
        Ok(msg)
    }

    /// Encodes and sends `msg` as it is (a reply carries the request's xid).
    pub(crate) fn send_with_xid(&mut self, msg: &OfpMessage) -> Result<(), InteropError> {
        self.send_buf.clear();
        msg.emit(&mut self.send_buf);
        let what = msg.message.msg_type().to_string();
        self.stream
            .write_all(&self.send_buf)
            .map_err(|e| InteropError::io(format!("sending {what}"), e))
    }

    /// Sends bytes the codec did not encode (a malformed message).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> Result<(), InteropError> {
        self.stream
            .write_all(bytes)
            .map_err(|e| InteropError::io("sending raw bytes", e))
    }

    /// The next message from the switch, waiting until `deadline`. An echo
    /// request is answered on the spot (the switch drops a controller that
    /// does not answer) and reported as such. `waiting_for` names what the
    /// caller waits for, for the timeout and disconnect errors.
    pub(crate) fn receive(
        &mut self,
        deadline: Instant,
        waiting_for: &str,
    ) -> Result<Incoming, InteropError> {
        let start = Instant::now();
        loop {
            let pending = self.framer.pending();
            let framed = self
                .framer
                .next_message()
                .map_err(|error| InteropError::Framing { error, pending })?
                .map(|bytes| {
                    OfpMessage::parse(bytes).map_err(|error| InteropError::Undecodable {
                        error,
                        bytes: bytes.to_vec(),
                    })
                });
            if let Some(msg) = framed {
                let msg = msg?;
                return match msg.message {
                    Message::EchoRequest(ref data) => {
                        let reply = OfpMessage::new(msg.xid, Message::EchoReply(data.clone()));
                        self.send_with_xid(&reply)?;
                        Ok(Incoming::AnsweredEcho {
                            request: msg,
                            reply,
                        })
                    }
                    _ => Ok(Incoming::Message(msg)),
                };
            }
            if Instant::now() >= deadline {
                return Err(InteropError::Timeout {
                    waiting_for: waiting_for.to_owned(),
                    waited: start.elapsed(),
                });
            }
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    return Err(InteropError::Disconnected {
                        during: waiting_for.to_owned(),
                    })
                }
                Ok(n) => self.framer.extend(&self.read_buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(InteropError::io(format!("reading ({waiting_for})"), e)),
            }
        }
    }
}
