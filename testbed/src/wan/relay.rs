//! The userspace relay: frames read from one interface are written to the
//! other, in each direction, after the [`Model`] of that direction says when.
//!
//! Both packet sockets are opened inside the relay's namespace (see
//! [`crate::frames`] for why a thread enters it) and then used from four
//! threads: per direction, a reader that admits frames into the model and a
//! writer that sleeps until the head frame is due and sends it. The model
//! keeps frames in order, so the writer's queue is a FIFO of due times and
//! needs no timer wheel: it sleeps exactly until the next departure, and a
//! reader blocks in `poll` until a frame comes, so an idle relay uses no CPU.
//! A frame that is due at once with nothing queued before it (at 0 ms, all
//! of them) the reader sends itself, see [`Outlet`].
//!
//! A frame sent on a packet socket is not looped back to that same socket,
//! so the reader of one direction shares its socket with the writer of the
//! other: the relay never reads back what it wrote.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pnet_datalink::{DataLinkReceiver, DataLinkSender};

use super::impairment::{Impairment, Model, Verdict};
use crate::error::{Error, Result};
use crate::frames::{enter, is_idle, open_buffered};
use crate::netns::Netns;

/// How often an idle writer looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// Socket buffer each way: about 250 jumbo frames, 2 ms of 8 Gb/s.
const SOCKET_BUFFER: usize = 4 << 20;

/// Nice value of the relay's threads. On a machine shared with builds, a
/// thread of default priority that wakes for a due frame waits behind
/// every runnable task for a few milliseconds, which a 10-ms WAN cannot
/// hide; a higher weight gets it the CPU at once. Not real-time: a relay
/// flooded at 0 ms delay must not starve the rest of the machine.
const NICE: &str = "-10";

/// What one direction did with the frames it read.
#[derive(Debug, Default)]
pub struct DirectionCounters {
    pub read: AtomicU64,
    pub forwarded: AtomicU64,
    pub lost: AtomicU64,
    pub overflowed: AtomicU64,
    pub send_failed: AtomicU64,
}

/// A snapshot of [`DirectionCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectionStats {
    pub read: u64,
    pub forwarded: u64,
    pub lost: u64,
    pub overflowed: u64,
    pub send_failed: u64,
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

type Channel = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>);

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
            .spawn(move || -> Result<(Channel, Channel)> {
                enter(&path)?;
                Ok((
                    open_buffered(&names.0, SOCKET_BUFFER)?,
                    open_buffered(&names.1, SOCKET_BUFFER)?,
                ))
            })
            .map_err(|e| Error::io("starting the relay", e))?
            .join()
            .map_err(|_| Error::Usage("the relay's opening thread panicked".into()))?;
        let ((tx_a, rx_a), (tx_b, rx_b)) = opened?;
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
            (rx_a, tx_b),
            impairment.clone(),
            a_to_b,
            &tid_tx,
        )?;
        let b_to_a = relay.b_to_a.clone();
        relay.direction(format!("{b}>{a}"), (rx_b, tx_a), reverse, b_to_a, &tid_tx)?;
        drop(tid_tx);
        let tids: Vec<String> = tid_rx.iter().map(|tid| tid.to_string()).collect();
        let mut renice = crate::command::program("renice", &["-n", NICE, "-p"]);
        renice.args(&tids);
        crate::command::run(&mut renice)?;
        Ok(relay)
    }

    fn direction(
        &mut self,
        label: String,
        (mut rx, tx): (Box<dyn DataLinkReceiver>, Box<dyn DataLinkSender>),
        impairment: Impairment,
        counters: Arc<DirectionCounters>,
        tids: &mpsc::Sender<nix::unistd::Pid>,
    ) -> Result<()> {
        let (queue_tx, queue_rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let outlet = Arc::new(Outlet {
            tx: Mutex::new(tx),
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
                    &mut *rx,
                    Model::new(impairment),
                    &queue_tx,
                    &stop,
                    &read_outlet,
                )
                .map_err(|e| Error::io(format!("relay {read_label}: reading"), e))
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

/// The sending side of one direction. The writer sends what is queued;
/// the reader sends a frame itself when it is due at once and nothing is
/// queued before it (at 0 ms delay, every frame), which saves waking the
/// writer, a context switch per frame on a machine with two cores.
struct Outlet {
    tx: Mutex<Box<dyn DataLinkSender>>,
    /// Frames handed to the writer and not yet sent; the writer counts one
    /// down only after sending it, so a reader that sees 0 cannot overtake.
    queued: AtomicUsize,
    counters: Arc<DirectionCounters>,
}

impl Outlet {
    fn send(&self, frame: &[u8]) {
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        // A full transmit queue or a vanished peer loses the frame, as a
        // congested or cut WAN would; the counter says so.
        match tx.send_to(frame, None) {
            Some(Ok(())) => self.counters.forwarded.fetch_add(1, Ordering::Relaxed),
            _ => self.counters.send_failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn read(
    rx: &mut dyn DataLinkReceiver,
    mut model: Model,
    queue: &mpsc::Sender<(Instant, Vec<u8>)>,
    stop: &AtomicBool,
    outlet: &Outlet,
) -> std::io::Result<()> {
    let counters = &outlet.counters;
    while !stop.load(Ordering::Relaxed) {
        let frame = match rx.next() {
            Ok(frame) => frame,
            Err(e) if is_idle(&e) => continue,
            // The interface went away with its namespace: nothing to relay.
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENETDOWN as i32) => break,
            Err(e) => return Err(e),
        };
        counters.read.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        match model.admit(now, frame.len()) {
            Verdict::Deliver(at) if at <= now && outlet.queued.load(Ordering::Acquire) == 0 => {
                outlet.send(frame);
            }
            Verdict::Deliver(at) => {
                outlet.queued.fetch_add(1, Ordering::AcqRel);
                if queue.send((at, frame.to_vec())).is_err() {
                    break;
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
    Ok(())
}

fn write(outlet: &Outlet, queue: &mpsc::Receiver<(Instant, Vec<u8>)>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let (due, frame) = match queue.recv_timeout(POLL) {
            Ok(next) => next,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        outlet.send(&frame);
        outlet.queued.fetch_sub(1, Ordering::AcqRel);
    }
}
