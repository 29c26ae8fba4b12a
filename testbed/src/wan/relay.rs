//! The userspace relay: frames read from one interface are written to the
//! other, in each direction, after the [`Model`] of that direction says when.
//!
//! Both packet sockets are opened inside the relay's namespace (see
//! [`crate::frames`] for why a thread enters it) and then used from four
//! threads: per direction, a reader that admits frames into the model and a
//! writer that sleeps until the head frame is due and sends it. The model
//! keeps frames in order, so the writer's queue is a FIFO of due times and
//! needs no timer wheel: it sleeps exactly until the next departure, and a
//! reader blocks in the kernel until a frame comes, so an idle relay uses
//! no CPU. Frames that are due at once with nothing queued before them (at
//! 0 ms, all of them) the reader sends itself, see [`Outlet`].
//!
//! Frames move in batches, up to [`BATCH`] per system call each way
//! (`recvmmsg`, `sendmmsg`): a reader that wakes finds every frame that
//! came meanwhile, and a burst costs two system calls rather than two per
//! frame, which is what kept a TCP flow at 0 ms well below a kernel
//! bridge's goodput on the same cables.
//!
//! A frame sent on a packet socket is not looped back to that same socket,
//! so the reader of one direction shares its socket with the writer of the
//! other: the relay never reads back what it wrote.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders};

use super::impairment::{Impairment, Model, Verdict};
use super::packet_stats;
use crate::error::{Error, Result};
use crate::frames::enter;
use crate::netns::Netns;

/// How often an idle reader or writer looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// Socket buffer each way: about 250 jumbo frames, 2 ms of 8 Gb/s.
const SOCKET_BUFFER: usize = 4 << 20;

/// Most frames one system call reads or writes.
pub const BATCH: usize = 64;

/// Room for one frame: the largest on the WAN's cables (MTU 9000, plus the
/// Ethernet header and a VLAN tag) with margin. A longer one arrives
/// truncated, is counted and dropped.
const FRAME_ROOM: usize = 16 * 1024;

/// How often a busy reader asks the kernel how many frames its full
/// socket turned away.
const DROPS_EVERY: Duration = Duration::from_millis(100);

/// Nice value of the relay's threads. On a machine shared with builds, a
/// thread of default priority that wakes for a due frame waits behind
/// every runnable task for a few milliseconds, which a 10-ms WAN cannot
/// hide; a higher weight gets it the CPU at once. Not real-time: a relay
/// flooded at 0 ms delay must not starve the rest of the machine.
const NICE: &str = "-10";

/// Gives threads `tids` the relay's [`NICE`] value.
pub(crate) fn raise_priority(tids: &[nix::unistd::Pid]) -> Result<()> {
    let mut renice = crate::command::program("renice", &["-n", NICE, "-p"]);
    renice.args(tids.iter().map(ToString::to_string));
    crate::command::run(&mut renice).map(drop)
}

/// What one direction did with the frames it read.
#[derive(Debug, Default)]
pub struct DirectionCounters {
    pub read: AtomicU64,
    pub forwarded: AtomicU64,
    pub lost: AtomicU64,
    pub overflowed: AtomicU64,
    pub send_failed: AtomicU64,
    pub truncated: AtomicU64,
    pub socket_full: AtomicU64,
}

/// A snapshot of [`DirectionCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectionStats {
    pub read: u64,
    pub forwarded: u64,
    pub lost: u64,
    pub overflowed: u64,
    pub send_failed: u64,
    /// Longer than [`FRAME_ROOM`]: dropped rather than sent cut short.
    pub truncated: u64,
    /// Turned away by the kernel before the reader saw them, its socket's
    /// receive buffer being full: the relay did not keep up.
    pub socket_full: u64,
}

impl DirectionStats {
    /// What happened between `earlier` and this snapshot of one relay.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            read: self.read.saturating_sub(earlier.read),
            forwarded: self.forwarded.saturating_sub(earlier.forwarded),
            lost: self.lost.saturating_sub(earlier.lost),
            overflowed: self.overflowed.saturating_sub(earlier.overflowed),
            send_failed: self.send_failed.saturating_sub(earlier.send_failed),
            truncated: self.truncated.saturating_sub(earlier.truncated),
            socket_full: self.socket_full.saturating_sub(earlier.socket_full),
        }
    }
}

impl DirectionCounters {
    fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            read: get(&self.read),
            forwarded: get(&self.forwarded),
            lost: get(&self.lost),
            overflowed: get(&self.overflowed),
            send_failed: get(&self.send_failed),
            truncated: get(&self.truncated),
            socket_full: get(&self.socket_full),
        }
    }
}

/// A running relay between interfaces `a` and `b` of one namespace; stopped
/// when dropped.
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
    a_to_b: Arc<DirectionCounters>,
    b_to_a: Arc<DirectionCounters>,
}

impl Relay {
    /// Starts relaying between `a` and `b` inside `netns`, with the same
    /// impairment each way (each direction draws from its own seed).
    /// Returns once both sockets are open.
    pub fn start(netns: &Netns, a: &str, b: &str, impairment: &Impairment) -> Result<Self> {
        impairment
            .validate()
            .map_err(|e| Error::Usage(format!("WAN impairment: {e}")))?;
        let path = netns.path();
        let names = (a.to_owned(), b.to_owned());
        let opened = thread::Builder::new()
            .name(format!("relay open {a} {b}"))
            .spawn(move || -> Result<(Port, Port)> {
                enter(&path)?;
                Ok((Port::open(&names.0)?, Port::open(&names.1)?))
            })
            .map_err(|e| Error::io("starting the relay", e))?
            .join()
            .map_err(|_| Error::Usage("the relay's opening thread panicked".into()))?;
        let (port_a, port_b) = opened?;
        let (port_a, port_b) = (Arc::new(port_a), Arc::new(port_b));
        let mut relay = Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            a_to_b: Arc::default(),
            b_to_a: Arc::default(),
        };
        let reverse = Impairment {
            seed: impairment.seed.wrapping_add(1),
            ..impairment.clone()
        };
        let (tid_tx, tid_rx) = mpsc::channel();
        let a_to_b = relay.a_to_b.clone();
        relay.direction(
            format!("{a}>{b}"),
            (port_a.clone(), port_b.clone()),
            impairment.clone(),
            a_to_b,
            &tid_tx,
        )?;
        let b_to_a = relay.b_to_a.clone();
        relay.direction(
            format!("{b}>{a}"),
            (port_b, port_a),
            reverse,
            b_to_a,
            &tid_tx,
        )?;
        drop(tid_tx);
        let tids: Vec<nix::unistd::Pid> = tid_rx.iter().collect();
        raise_priority(&tids)?;
        Ok(relay)
    }

    fn direction(
        &mut self,
        label: String,
        (from, to): (Arc<Port>, Arc<Port>),
        impairment: Impairment,
        counters: Arc<DirectionCounters>,
        tids: &mpsc::Sender<nix::unistd::Pid>,
    ) -> Result<()> {
        let (queue_tx, queue_rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let outlet = Arc::new(Outlet {
            port: to,
            queued: AtomicUsize::new(0),
            counters,
        });
        let stop = self.stop.clone();
        let read_outlet = outlet.clone();
        let read_label = label.clone();
        let read_tid = tids.clone();
        let reader = thread::Builder::new()
            .name(format!("relay read {label}"))
            .spawn(move || {
                let _ = read_tid.send(nix::unistd::gettid());
                drop(read_tid);
                read(
                    &from,
                    Model::new(impairment),
                    &queue_tx,
                    &stop,
                    &read_outlet,
                )
                .map_err(|e| Error::io(format!("relay {read_label}: reading"), e.into()))
            })
            .map_err(|e| Error::io("starting the relay", e))?;
        self.threads.push(reader);
        let stop = self.stop.clone();
        let write_tid = tids.clone();
        let writer = thread::Builder::new()
            .name(format!("relay write {label}"))
            .spawn(move || {
                let _ = write_tid.send(nix::unistd::gettid());
                drop(write_tid);
                write(&outlet, &queue_rx, &stop);
                Ok(())
            })
            .map_err(|e| Error::io("starting the relay", e))?;
        self.threads.push(writer);
        Ok(())
    }

    pub fn a_to_b(&self) -> DirectionStats {
        self.a_to_b.snapshot()
    }

    pub fn b_to_a(&self) -> DirectionStats {
        self.b_to_a.snapshot()
    }

    /// Stops the threads; reports the first error one of them ended with.
    pub fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut first = Ok(());
        for thread in self.threads.drain(..) {
            let ended = thread
                .join()
                .unwrap_or_else(|_| Err(Error::Usage("a relay thread panicked".into())));
            if first.is_ok() {
                first = ended;
            }
        }
        first
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("iris-testbed: {e}");
        }
    }
}

/// An `AF_PACKET` socket bound to one interface: it reads every frame that
/// crosses the interface, except those it wrote itself, and writes frames
/// out of it.
#[derive(Debug)]
struct Port {
    socket: socket2::Socket,
}

impl Port {
    /// Opens the port on `interface` of the calling thread's namespace.
    fn open(interface: &str) -> Result<Self> {
        // ETH_P_ALL in network byte order, as packet(7) wants it.
        let all = i32::from(0x0003u16.to_be());
        let socket = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(all)),
        )
        .map_err(|e| Error::io(format!("opening a packet socket for {interface}"), e))?;
        // Buffers are capped by the host's net.core.rmem_max/wmem_max: the
        // default 208 KiB, some 13 jumbo frames, overflows whenever the
        // reader waits a moment for a core.
        socket
            .set_recv_buffer_size(SOCKET_BUFFER)
            .and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER))
            .and_then(|()| socket.set_read_timeout(Some(POLL)))
            .map_err(|e| Error::io(format!("setting up the packet socket of {interface}"), e))?;
        // The interface's link-layer address, as getifaddrs(3) gives it,
        // carries its index: binding to it picks the interface.
        let link = nix::ifaddrs::getifaddrs()
            .map_err(|e| Error::io("listing the interfaces", e.into()))?
            .filter(|i| i.interface_name == interface)
            .find_map(|i| i.address.filter(|a| a.as_link_addr().is_some()))
            .ok_or_else(|| Error::Usage(format!("no interface {interface} in this namespace")))?;
        nix::sys::socket::bind(socket.as_raw_fd(), &link)
            .map_err(|e| Error::io(format!("binding a packet socket to {interface}"), e.into()))?;
        Ok(Self { socket })
    }
}

/// The buffers and headers of one thread's batched reads or writes: the
/// headers hold pointers, so each thread keeps its own.
struct Batch {
    headers: MultiHeaders<()>,
    frames: Vec<Vec<u8>>,
    /// Length of each frame the last read filled, and whether it was cut.
    filled: Vec<(usize, bool)>,
}

impl Batch {
    fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, None),
            frames: vec![vec![0; FRAME_ROOM]; BATCH],
            filled: Vec::with_capacity(BATCH),
        }
    }

    /// Reads what `port` has, up to [`BATCH`] frames, waiting up to
    /// [`POLL`] for the first one.
    fn read(&mut self, port: &Port) -> nix::Result<()> {
        self.filled.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .frames
            .iter_mut()
            .map(|f| [IoSliceMut::new(f)])
            .collect();
        let got = recvmmsg(
            port.socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        self.filled
            .extend(got.map(|m| (m.bytes, m.flags.contains(MsgFlags::MSG_TRUNC))));
        Ok(())
    }
}

/// The sending side of one direction. The writer sends what is queued;
/// the reader sends frames itself when they are due at once and nothing
/// is queued before them (at 0 ms delay, every frame), which saves waking
/// the writer, a context switch per frame on a machine with two cores.
struct Outlet {
    port: Arc<Port>,
    /// Frames handed to the writer and not yet sent; the writer counts them
    /// down only after sending them, so a reader that sees 0 cannot
    /// overtake.
    queued: AtomicUsize,
    counters: Arc<DirectionCounters>,
}

impl Outlet {
    /// Sends `frames` in order, as few system calls as the socket takes.
    fn send(&self, headers: &mut MultiHeaders<()>, frames: &[&[u8]]) {
        const NO_ADDRESS: [Option<()>; BATCH] = [None; BATCH];
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let mut rest = frames;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(BATCH)];
            let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|f| [IoSlice::new(f)]).collect();
            let sent = sendmmsg(
                self.port.socket.as_raw_fd(),
                headers,
                &slices,
                &NO_ADDRESS[..chunk.len()],
                no_cmsgs,
                MsgFlags::empty(),
            )
            .map(Iterator::count);
            let done = match sent {
                Ok(n) => {
                    self.counters
                        .forwarded
                        .fetch_add(n as u64, Ordering::Relaxed);
                    n
                }
                Err(Errno::EINTR) => 0,
                // A vanished peer or a full transmit queue loses the frame
                // that failed, as a cut or congested WAN would; the counter
                // says so, and the rest go on.
                Err(_) => {
                    self.counters.send_failed.fetch_add(1, Ordering::Relaxed);
                    1
                }
            };
            rest = &rest[done..];
        }
    }
}

fn read(
    from: &Port,
    mut model: Model,
    queue: &mpsc::Sender<(Instant, Vec<u8>)>,
    stop: &AtomicBool,
    outlet: &Outlet,
) -> nix::Result<()> {
    let counters = &outlet.counters;
    let mut batch = Batch::new();
    let mut send_headers = MultiHeaders::preallocate(BATCH, None);
    // Indices into the batch of the frames to send at once, in order.
    let mut now_due: Vec<usize> = Vec::with_capacity(BATCH);
    let mut drops_taken = Instant::now();
    let take_drops = || -> nix::Result<()> {
        let dropped = packet_stats::take_drops(from.socket.as_fd())
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        counters.socket_full.fetch_add(dropped, Ordering::Relaxed);
        Ok(())
    };
    while !stop.load(Ordering::Relaxed) {
        if drops_taken.elapsed() >= DROPS_EVERY {
            take_drops()?;
            drops_taken = Instant::now();
        }
        match batch.read(from) {
            Ok(()) => {}
            // The read timed out or a signal came: look at the stop flag.
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            // The interface went away with its namespace: nothing to relay.
            Err(Errno::ENETDOWN) => break,
            Err(e) => return Err(e),
        }
        counters
            .read
            .fetch_add(batch.filled.len() as u64, Ordering::Relaxed);
        now_due.clear();
        for (index, &(len, truncated)) in batch.filled.iter().enumerate() {
            if truncated {
                counters.truncated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let now = Instant::now();
            match model.admit(now, len) {
                Verdict::Deliver(at) if at <= now && outlet.queued.load(Ordering::Acquire) == 0 => {
                    now_due.push(index);
                }
                Verdict::Deliver(at) => {
                    // What is due at once leaves before this frame does.
                    send_now(outlet, &mut send_headers, &batch, &mut now_due);
                    outlet.queued.fetch_add(1, Ordering::AcqRel);
                    if queue
                        .send((at, batch.frames[index][..len].to_vec()))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Verdict::Lost => {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Overflow => {
                    counters.overflowed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        send_now(outlet, &mut send_headers, &batch, &mut now_due);
    }
    take_drops()
}

/// Sends the frames of `batch` listed in `due`, and empties the list.
fn send_now(outlet: &Outlet, headers: &mut MultiHeaders<()>, batch: &Batch, due: &mut Vec<usize>) {
    if due.is_empty() {
        return;
    }
    let frames: Vec<&[u8]> = due
        .iter()
        .map(|&i| &batch.frames[i][..batch.filled[i].0])
        .collect();
    outlet.send(headers, &frames);
    due.clear();
}

fn write(outlet: &Outlet, queue: &mpsc::Receiver<(Instant, Vec<u8>)>, stop: &AtomicBool) {
    let mut headers = MultiHeaders::preallocate(BATCH, None);
    let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        if pending.is_empty() {
            match queue.recv_timeout(POLL) {
                Ok(next) => pending.push_back(next),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        pending.extend(queue.try_iter());
        let Some(&(head, _)) = pending.front() else {
            continue;
        };
        let now = Instant::now();
        if head > now {
            thread::sleep(head - now);
        }
        // The head is due, and with it whatever is due by now: one write.
        let now = Instant::now();
        let due = pending
            .iter()
            .take(BATCH)
            .take_while(|(at, _)| *at <= now)
            .count()
            .max(1);
        let frames: Vec<&[u8]> = pending
            .iter()
            .take(due)
            .map(|(_, f)| f.as_slice())
            .collect();
        outlet.send(&mut headers, &frames);
        pending.drain(..due);
        outlet.queued.fetch_sub(due, Ordering::AcqRel);
    }
}
