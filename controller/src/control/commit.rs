//! Committing a burst while the next one is taken.
//!
//! A burst of learned MACs is one store commit (sled's tree inserts, a
//! flush, the witness), about a third of the control loop's time per
//! learned MAC. Inside [`Control::run`] the commit goes to a thread of its
//! own that lives as long as the loop, and the loop takes the next burst
//! meanwhile: compiles it and sends its flows, as it sends a burst's flows
//! before its own commit anyway. Everything that waits for a commit still
//! waits for it: the registry events, the moves and the PacketOuts held
//! for the burst's flows, the other PacketOuts (floods) and the
//! acknowledgements to the connections go out once the commit returned,
//! in the order of the bursts. One commit at most is under way: the bursts
//! that end meanwhile wait, and are committed together as one batch when
//! it returns (a group commit), so the loop never waits for a commit to
//! hand over the next burst's and the store syncs once for all of them.
//! Anything else that commits, reads the store or acts on what is not
//! durable (an API call, a port report, the tick, the ARP snapshot)
//! waits for all of them first.

use super::program::WaitId;
use super::Control;
use crate::server::ConnId;
use crate::store::{Batch, Store, StoreError};
use iris_schemas::northbound::RegistryEvent;
use ofp::message::PacketOut;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::Notify;

/// The store, shared with the committer's thread.
pub(super) type SharedStore = Arc<Mutex<Box<dyn Store + Send>>>;

/// Runs `f` on the store once no commit holds it.
pub(super) fn with_store<T>(
    store: &SharedStore,
    f: impl FnOnce(&mut (dyn Store + Send)) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match store.lock() {
        Ok(mut s) => f(s.as_mut()),
        Err(_) => Err(StoreError::Backend {
            backend: "store",
            message: "an earlier commit panicked".into(),
        }),
    }
}

/// A thread that commits to the store and says when it is done.
#[derive(Debug)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Batch>,
    done: mpsc::Receiver<(Batch, Result<(), StoreError>)>,
}

impl Committer {
    /// A committer for `store` that wakes `ready` after each commit; its
    /// thread ends when the committer is dropped.
    pub(super) fn start(store: SharedStore, ready: Arc<Notify>) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Batch>();
        let (tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("iris-store".into())
            .spawn(move || {
                // Whether the store has tidying left: then the next
                // batch is taken only if one is waiting, and a step of the
                // tidying is done otherwise.
                let mut tidying = false;
                loop {
                    let batch = if tidying {
                        match rx.try_recv() {
                            Ok(batch) => batch,
                            Err(mpsc::TryRecvError::Empty) => {
                                tidying = tidy(&store);
                                continue;
                            }
                            Err(mpsc::TryRecvError::Disconnected) => break,
                        }
                    } else {
                        match rx.recv() {
                            Ok(batch) => batch,
                            Err(_) => break,
                        }
                    };
                    let result = with_store(&store, |s| s.commit(&batch));
                    if tx.send((batch, result)).is_err() {
                        break;
                    }
                    ready.notify_one();
                    // After the answer: what waited for the commit goes
                    // out while the store tidies, a step at a time.
                    tidying = tidy(&store);
                }
            })?;
        Ok(Self { jobs, done })
    }
}

/// One step of the store's tidying; whether more is left. A step that
/// fails is logged and left for later: the commit that needs it fails
/// if it still cannot be done.
fn tidy(store: &SharedStore) -> bool {
    match with_store(store, |s| s.tidy()) {
        Ok(more) => more,
        Err(e) => {
            tracing::warn!("the store could not tidy up ({e}); it tries again later");
            false
        }
    }
}

/// Writes waiting for the commit under way at most, before the loop waits
/// for it rather than let the next batch grow: as many as the sled store
/// journals in one commit (65,536, some 13 MB), so that a step of the
/// journal's fold does not hold up the loop.
const MAX_WAITING_OPS: usize = 1 << 16;

/// The bursts whose commit is under way, and those waiting for the next.
#[derive(Debug, Default)]
pub(super) struct Pipeline {
    under_way: Vec<Committing>,
    waiting: Option<(Batch, Vec<Committing>)>,
}

impl Pipeline {
    /// Whether a commit is under way (or bursts wait for one).
    pub(super) fn under_way(&self) -> bool {
        !self.under_way.is_empty() || self.waiting.is_some()
    }
}

/// A burst whose commit is under way, and what waits for it.
#[derive(Debug, Default)]
pub(super) struct Committing {
    pub(super) events: Vec<RegistryEvent>,
    /// The moves and PacketOuts that also wait for the burst's barriers.
    pub(super) waiting: Option<WaitId>,
    pub(super) outs: BTreeMap<ConnId, Vec<PacketOut>>,
    /// Each connection's count of PacketIns taken when the burst ended:
    /// what the commit acknowledges (later bursts' are not committed yet).
    pub(super) acks: Vec<(ConnId, u64)>,
}

impl Control {
    /// Whether a burst's commit may go to the committer: inside the loop,
    /// with a store, nothing owed to it and nothing refused.
    pub(super) fn overlaps_commits(&self) -> bool {
        self.overlap_commits
            && self.store.is_some()
            && self.owed.is_empty()
            && self.role.writes()
            && !self.halted()
    }

    /// Hands `batch` to the committer; `then` waits for it. While a commit
    /// is under way the batch waits and is committed with the others that
    /// end meanwhile. Commits synchronously (what
    /// [`Control::store_or_owe`] does) when the thread cannot be had.
    pub(super) fn commit_behind(&mut self, batch: Batch, then: Committing) {
        self.settle_commit(false);
        if self.halted() {
            return;
        }
        if !self.committing.under_way.is_empty() {
            let queued = self.committing.waiting.as_ref().map_or(0, |(b, _)| b.len());
            if queued + batch.len() > MAX_WAITING_OPS {
                self.settle_commit(true);
                if self.halted() {
                    return;
                }
            }
        }
        if !self.committing.under_way.is_empty() {
            let (b, thens) = self
                .committing
                .waiting
                .get_or_insert_with(|| (Batch::new(), Vec::new()));
            b.append(batch);
            thens.push(then);
            return;
        }
        self.start_commit(batch, vec![then]);
    }

    /// Commits `batch`, which `thens` wait for, with nothing under way:
    /// on the committer's thread while commits may overlap, else in turn
    /// (after what the store is owed); with nothing to write, what waited
    /// goes out at once.
    fn start_commit(&mut self, batch: Batch, thens: Vec<Committing>) {
        if batch.is_empty() {
            self.after_commits(thens);
        } else if self.overlaps_commits() {
            self.hand_over(batch, thens);
        } else if self.store_or_owe(batch) {
            self.after_commits(thens);
        }
    }

    /// Starts the commit of `batch`, which `thens` wait for, on the
    /// committer's thread (started when there is none).
    fn hand_over(&mut self, batch: Batch, thens: Vec<Committing>) {
        if self.committer.is_none() {
            let Some(store) = self.store.clone() else {
                return;
            };
            match Committer::start(store, Arc::clone(&self.commit_ready)) {
                Ok(c) => self.committer = Some(c),
                Err(e) => {
                    tracing::warn!("cannot start the store's thread ({e}); committing in turn");
                    self.overlap_commits = false;
                }
            }
        }
        let sent = match &self.committer {
            Some(c) => c.jobs.send(batch).map_err(|e| e.0),
            None => Err(batch),
        };
        match sent {
            Ok(()) => self.committing.under_way = thens,
            Err(batch) => {
                self.committer = None;
                if self.store_or_owe(batch) {
                    self.after_commits(thens);
                }
            }
        }
    }

    /// Finishes the commit under way, if there is one and it is done or
    /// `wait`: what waited for it goes out, or the controller stops when
    /// the store refused it. Then the bursts that waited for it are handed
    /// over together; with `wait`, until every one is committed.
    pub(super) fn settle_commit(&mut self, wait: bool) {
        loop {
            let Some(committer) = &self.committer else {
                return;
            };
            if self.committing.under_way.is_empty() {
                return;
            }
            let done = if wait {
                super::blocking(|| committer.done.recv().ok())
            } else {
                committer.done.try_recv().ok()
            };
            let Some((batch, result)) = done else {
                if wait {
                    // The thread is gone (it panicked): nothing was committed.
                    self.committer = None;
                    self.committing = Pipeline::default();
                    self.failed = Some(StoreError::Backend {
                        backend: "store",
                        message: "the store's thread stopped".into(),
                    });
                    self.stop.cancel();
                }
                return;
            };
            let thens = std::mem::take(&mut self.committing.under_way);
            if self.took_commit(&batch, 0, result) || self.owe_refused(batch) {
                self.after_commits(thens);
            }
            let waiting = self.committing.waiting.take();
            if self.halted() {
                return;
            }
            if let Some((batch, thens)) = waiting {
                self.start_commit(batch, thens);
            }
            if !wait {
                return;
            }
        }
    }

    /// What the bursts' commit held back goes out, burst by burst.
    fn after_commits(&mut self, thens: Vec<Committing>) {
        for then in thens {
            self.after_commit(then);
        }
    }

    /// What a burst's commit held back goes out, in the order it would
    /// have without the committer.
    pub(super) fn after_commit(&mut self, then: Committing) {
        self.announce_registry(then.events);
        if let Some(id) = then.waiting {
            self.committed(id);
        }
        self.send_packet_outs(then.outs);
        for (conn, taken) in then.acks {
            if let Some(sw) = self.switches.get(&conn) {
                sw.handle.ack(taken);
            }
        }
    }
}
