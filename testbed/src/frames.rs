//! Ethernet frames sent from, and captured on, an interface inside a
//! namespace: what a guest's own network stack would put on the wire (the
//! RARP QEMU sends after a live migration), and what arrives at a VM or
//! leaves a PM (isolation and VLAN checks).
//!
//! An `AF_PACKET` socket belongs to the network namespace of the thread that
//! opens it, so each send or capture runs on a thread of its own that first
//! enters the namespace (`setns`); the socket stays in that namespace for
//! its whole life. Nothing else of the process changes namespace.
//!
//! The decoders below ([`gre_payload`], [`contains`]) read captured bytes
//! without trusting them: every length is checked and a frame that does not
//! fit is simply not what the caller looked for.

use std::fmt;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use ofp::packet::{EtherType, EthernetFrame};
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// How often a capture thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);

/// Room for the largest frame on the testbed's underlay (MTU 9000).
const BUFFER: usize = 16 * 1024;

/// One frame seen by a [`Capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// When the capture read it.
    pub at: Instant,
    pub data: Vec<u8>,
}

/// Every frame crossing one interface (both directions) from [`Capture::start`]
/// to [`Capture::finish`].
#[derive(Debug)]
pub struct Capture {
    interface: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<Captured>>>>,
}

impl Capture {
    /// Starts capturing on `interface` inside `netns`; returns once the
    /// socket is open, so nothing sent afterwards is missed.
    pub fn start(netns: &Netns, interface: &str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let path = netns.path();
        let name = interface.to_owned();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("capture {interface}"))
            .spawn(move || {
                let opened = enter(&path).and_then(|()| open(&name));
                let (_tx, mut rx) = match opened {
                    Ok(channel) => {
                        let _ = ready_tx.send(Ok(()));
                        channel
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(Vec::new());
                    }
                };
                record(&mut *rx, &name, &flag)
            })
            .map_err(|e| Error::io(format!("starting the capture on {interface}"), e))?;
        let opened = ready_rx.recv().unwrap_or_else(|_| {
            Err(Error::Usage(format!(
                "the capture thread for {interface} ended before opening its socket"
            )))
        });
        let capture = Self {
            interface: interface.to_owned(),
            stop,
            thread: Some(thread),
        };
        opened.map(|()| capture)
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Stops capturing and returns what was seen, in order.
    pub fn finish(mut self) -> Result<Vec<Captured>> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Usage(format!(
                "the capture on {} panicked",
                self.interface
            ))),
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn record(
    rx: &mut dyn DataLinkReceiver,
    interface: &str,
    stop: &AtomicBool,
) -> Result<Vec<Captured>> {
    let mut frames = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match rx.next() {
            Ok(data) => frames.push(Captured {
                at: Instant::now(),
                data: data.to_vec(),
            }),
            Err(e) if is_idle(&e) => {}
            // The interface went away (a VM moved, a PM left): what was
            // seen until then is the capture.
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENETDOWN as i32) => break,
            Err(e) => return Err(Error::io(format!("capturing on {interface}"), e)),
        }
    }
    Ok(frames)
}

/// Sends `frames` out of `interface` inside `netns`, each after its pause
/// (the first pause counts from the moment the socket is open). Returns
/// when each frame left.
pub fn send_frames(
    netns: &Netns,
    interface: &str,
    frames: &[(Duration, Vec<u8>)],
) -> Result<Vec<Instant>> {
    FrameSender::open(netns, interface)?.send(frames)
}

/// A packet socket open on one interface of a namespace, for sending. The
/// socket stays in the namespace it was opened in, so any thread may send
/// on it: opening many first lets them all send at the same moment.
pub struct FrameSender {
    interface: String,
    tx: Box<dyn DataLinkSender>,
}

impl fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSender")
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

impl FrameSender {
    /// Opens the socket on a thread that enters `netns` for it.
    pub fn open(netns: &Netns, interface: &str) -> Result<Self> {
        let path = netns.path();
        let name = interface.to_owned();
        let tx = std::thread::Builder::new()
            .name(format!("open {interface}"))
            .spawn(move || {
                enter(&path)?;
                open(&name).map(|(tx, _rx)| tx)
            })
            .map_err(|e| Error::io(format!("starting the sender on {interface}"), e))?
            .join()
            .unwrap_or_else(|_| Err(Error::Usage(format!("opening {interface} panicked"))))?;
        Ok(Self {
            interface: interface.to_owned(),
            tx,
        })
    }

    /// Sends `frames`, each after its pause (the first counts from now).
    /// Returns when each frame left.
    pub fn send(&mut self, frames: &[(Duration, Vec<u8>)]) -> Result<Vec<Instant>> {
        let mut sent = Vec::with_capacity(frames.len());
        for (pause, frame) in frames {
            std::thread::sleep(*pause);
            send_one(&mut *self.tx, &self.interface, frame)?;
            sent.push(Instant::now());
        }
        Ok(sent)
    }
}

/// Frames, each sent after its pause (the first counts from the start).
pub type Paced = Vec<(Duration, Vec<u8>)>;

/// Sends the frames of many senders in rounds that share their pauses, as
/// guests that resume together announce themselves: after each pause,
/// every sender's frame of that round, one after the other from this
/// thread (about ten microseconds each). One thread per sender released by
/// a barrier spread 100 guests' first RARPs over 109–185 ms on two busy
/// cores. Returns when each frame left, per sender.
pub fn send_in_rounds(senders: &mut [(FrameSender, Paced)]) -> Result<Vec<Vec<Instant>>> {
    let pauses: Vec<Duration> = senders
        .first()
        .map(|(_, frames)| frames.iter().map(|(p, _)| *p).collect())
        .unwrap_or_default();
    if let Some((s, _)) = senders.iter().find(|(_, frames)| {
        frames.len() != pauses.len() || frames.iter().zip(&pauses).any(|((p, _), q)| p != q)
    }) {
        return Err(Error::Usage(format!(
            "{} does not announce in the same rounds as the others",
            s.interface
        )));
    }
    let mut sent = vec![Vec::with_capacity(pauses.len()); senders.len()];
    for (round, pause) in pauses.iter().enumerate() {
        std::thread::sleep(*pause);
        for ((sender, frames), at) in senders.iter_mut().zip(&mut sent) {
            send_one(&mut *sender.tx, &sender.interface, &frames[round].1)?;
            at.push(Instant::now());
        }
    }
    Ok(sent)
}

/// How [`round_trips`] paces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Requests sent, one at a time.
    pub count: u32,
    /// Between an answer (or a timeout) and the next request.
    pub pause: Duration,
    /// How long each request waits for its answer.
    pub timeout: Duration,
}

/// Sends `request` out of `interface` inside `netns` as `exchange` says,
/// each time waiting for a frame that `is_answer` accepts, and returns each
/// request's round trip (`None`: unanswered), timed in user space from just
/// before the send to just after the answer was read. The socket sees the
/// interface's outgoing frames too, so `is_answer` must tell the request
/// from its answer.
pub fn round_trips(
    netns: &Netns,
    interface: &str,
    request: &[u8],
    exchange: Exchange,
    is_answer: impl Fn(&[u8]) -> bool + Send + 'static,
) -> Result<Vec<Option<Duration>>> {
    let path = netns.path();
    let name = interface.to_owned();
    let request = request.to_vec();
    std::thread::Builder::new()
        .name(format!("exchange {interface}"))
        .spawn(move || {
            enter(&path)?;
            let (mut tx, mut rx) = open(&name)?;
            let mut times = Vec::with_capacity(exchange.count as usize);
            for _ in 0..exchange.count {
                let sent = Instant::now();
                send_one(&mut *tx, &name, &request)?;
                let answered = await_answer(&mut *rx, &name, sent + exchange.timeout, &is_answer)?;
                let time = answered.map(|at| at.saturating_duration_since(sent));
                if time.is_none() {
                    // A late answer must not pass for the next request's.
                    drain(&mut *rx, &name)?;
                }
                times.push(time);
                std::thread::sleep(exchange.pause);
            }
            Ok(times)
        })
        .map_err(|e| Error::io(format!("starting the exchange on {interface}"), e))?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Usage(format!(
                "the exchange on {interface} panicked"
            )))
        })
}

/// Reads until a frame `is_answer` accepts (when it was read) or until
/// `deadline` (`None`).
fn await_answer(
    rx: &mut dyn DataLinkReceiver,
    interface: &str,
    deadline: Instant,
    is_answer: &dyn Fn(&[u8]) -> bool,
) -> Result<Option<Instant>> {
    while Instant::now() < deadline {
        match rx.next() {
            Ok(data) if is_answer(data) => return Ok(Some(Instant::now())),
            Ok(_) => {}
            Err(e) if is_idle(&e) => {}
            Err(e) => return Err(Error::io(format!("receiving on {interface}"), e)),
        }
    }
    Ok(None)
}

/// Reads and forgets frames until the interface is quiet for a poll period.
fn drain(rx: &mut dyn DataLinkReceiver, interface: &str) -> Result<()> {
    loop {
        match rx.next() {
            Ok(_) => {}
            Err(e) if is_idle(&e) => return Ok(()),
            Err(e) => return Err(Error::io(format!("receiving on {interface}"), e)),
        }
    }
}

/// A read that returned for want of a frame, not for a fault.
pub(crate) fn is_idle(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
    )
}

fn send_one(tx: &mut dyn DataLinkSender, interface: &str, frame: &[u8]) -> Result<()> {
    match tx.send_to(frame, None) {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Error::io(format!("sending a frame on {interface}"), e)),
        None => Err(Error::Usage(format!(
            "a {}-byte frame does not fit the sender's buffer on {interface}",
            frame.len()
        ))),
    }
}

/// Moves the calling thread into the namespace mounted at `path`.
pub fn enter(path: &std::path::Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io_at("opening", path, e))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::io(
            format!("entering the namespace {}", path.display()),
            e.into(),
        )
    })
}

/// An `AF_PACKET` channel on `interface` of the calling thread's namespace.
pub(crate) fn open(
    interface: &str,
) -> Result<(Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>)> {
    let found = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| Error::Usage(format!("no interface {interface} in this namespace")))?;
    let config = pnet_datalink::Config {
        read_buffer_size: BUFFER,
        write_buffer_size: BUFFER,
        read_timeout: Some(POLL),
        // A veth hands every frame to its peer; the interface needs no
        // promiscuous mode for a packet socket to see them all.
        promiscuous: false,
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(&found, config) {
        Ok(Channel::Ethernet(tx, rx)) => Ok((tx, rx)),
        Ok(_) => Err(Error::Usage(format!(
            "{interface} gave a channel that is not Ethernet"
        ))),
        Err(e) => Err(Error::io(
            format!("opening a packet socket on {interface}"),
            e,
        )),
    }
}

/// The GRE payload of an Ethernet/IPv4/GRE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrePayload<'a> {
    /// The key (Iris: the VI's `gre_key`), when the K bit is set.
    pub key: Option<u32>,
    /// The encapsulated protocol; 0x6558 for Ethernet frames.
    pub protocol: u16,
    pub payload: &'a [u8],
}

/// GRE's protocol number in IPv4.
const IPPROTO_GRE: u8 = 47;
/// GRE protocol type of an encapsulated Ethernet frame (transparent
/// Ethernet bridging).
pub const GRE_ETHERNET: u16 = 0x6558;

/// The GRE header and payload of `frame` (RFC 2784 with the key and
/// sequence extensions of RFC 2890); `None` when it is anything else.
pub fn gre_payload(frame: &[u8]) -> Option<GrePayload<'_>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    // The payload's own slice of `frame`, so that what is returned borrows
    // the frame rather than the view.
    let ip = frame.get(frame.len() - eth.payload().len()..)?;
    let version_ihl = *ip.first()?;
    let header = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header < 20 || *ip.get(9)? != IPPROTO_GRE {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let gre = ip.get(header..total.min(ip.len()))?;
    let flags = u16::from_be_bytes([*gre.first()?, *gre.get(1)?]);
    let protocol = u16::from_be_bytes([*gre.get(2)?, *gre.get(3)?]);
    let (checksum, key, sequence) = (
        flags & 0x8000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    let mut offset = 4;
    if checksum {
        offset += 4;
    }
    let key = if key {
        let k = gre.get(offset..offset + 4)?;
        offset += 4;
        Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    } else {
        None
    };
    if sequence {
        offset += 4;
    }
    Some(GrePayload {
        key,
        protocol,
        payload: gre.get(offset..)?,
    })
}

/// Whether `needle` occurs in `haystack` (a marker in a payload).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GRE packet as OVS's userspace datapath sends one: key present,
    /// Ethernet inside, the inner frame tagged with VLAN 10.
    fn gre_frame(flags: u16, extra: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut gre = flags.to_be_bytes().to_vec();
        gre.extend(GRE_ETHERNET.to_be_bytes());
        gre.extend(extra);
        gre.extend(inner);
        let total = u16::try_from(20 + gre.len()).unwrap();
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, IPPROTO_GRE, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend([192, 168, 60, 1, 192, 168, 60, 2]);
        ip.extend(gre);
        let mut frame = vec![0xaa; 6];
        frame.extend([0xbb; 6]);
        frame.extend([0x08, 0x00]);
        frame.extend(ip);
        frame
    }

    fn inner() -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend([0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
        f.extend(b"payload with a marker in it");
        f
    }

    #[test]
    fn the_key_and_the_inner_frame_come_out() {
        let frame = gre_frame(0x2000, &1001u32.to_be_bytes(), &inner());
        let gre = gre_payload(&frame).unwrap();
        assert_eq!(gre.key, Some(1001));
        assert_eq!(gre.protocol, GRE_ETHERNET);
        assert_eq!(gre.payload, &inner()[..]);
        let eth = EthernetFrame::new_checked(gre.payload).unwrap();
        assert_eq!(eth.vlan(), Some(10));
        assert!(contains(gre.payload, b"marker"));
    }

    #[test]
    fn checksum_and_sequence_fields_are_skipped() {
        let mut extra = vec![0, 0, 0, 0];
        extra.extend(7u32.to_be_bytes());
        extra.extend([0, 0, 0, 9]);
        let frame = gre_frame(0x8000 | 0x2000 | 0x1000, &extra, &inner());
        let gre = gre_payload(&frame).unwrap();
        assert_eq!(gre.key, Some(7));
        assert_eq!(gre.payload, &inner()[..]);
        let keyless = gre_frame(0, &[], &inner());
        assert_eq!(gre_payload(&keyless).unwrap().key, None);
    }

    #[test]
    fn what_is_not_gre_or_is_cut_short_is_none() {
        let frame = gre_frame(0x2000, &5u32.to_be_bytes(), &inner());
        let mut udp = frame.clone();
        udp[14 + 9] = 17;
        assert_eq!(gre_payload(&udp), None);
        for cut in [10, 20, 14 + 20 + 2, 14 + 20 + 6] {
            assert_eq!(gre_payload(&frame[..cut]), None, "cut at {cut}");
        }
        let mut bad_ihl = frame;
        bad_ihl[14] = 0x41;
        assert_eq!(gre_payload(&bad_ihl), None);
    }

    #[test]
    fn markers_are_found_anywhere_and_never_when_empty() {
        assert!(contains(b"abcdef", b"cde"));
        assert!(!contains(b"abcdef", b"xyz"));
        assert!(!contains(b"ab", b"abc"));
        assert!(!contains(b"abc", b""));
    }
}
