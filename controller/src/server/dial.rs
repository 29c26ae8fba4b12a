//! Connecting to switches that listen (passive controller targets,
//! `ptcp:PORT:IP`, `pssl:PORT:IP` and `punix:PATH`; over TCP, with TLS
//! when the server has it). A switch that connects to the
//! controller retries on Open vSwitch's schedule, about a second after it
//! saw the old connection drop; a switch that listens is reached by a
//! restarted controller as soon as it runs. Each connection runs the same
//! session as an accepted one ([`Conns::run`]), so the handshake, the dump
//! and the reconciling do not care which side opened it.

use super::{Conns, ListenAddr, Stream, SwitchEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Failing to reach a switch for this long is worth a warning; shorter
/// spells are the normal start (the bridge's socket appears only once
/// OVSDB has configured it).
const WARN_AFTER: Duration = Duration::from_secs(10);

/// Keeps one connection to every switch in `switches` until `shutdown`:
/// a switch added to the set is connected to at once, one removed from it
/// has its connection closed.
pub(super) async fn dial_all(
    mut switches: watch::Receiver<BTreeSet<ListenAddr>>,
    conns: Conns,
    events: mpsc::Sender<SwitchEvent>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut dialing: BTreeMap<ListenAddr, CancellationToken> = BTreeMap::new();
    loop {
        let wanted = switches.borrow_and_update().clone();
        dialing.retain(|addr, token| {
            let keep = wanted.contains(addr);
            if !keep {
                info!(switch = %addr, "no longer connecting to this switch");
                token.cancel();
            }
            keep
        });
        for addr in wanted {
            if let std::collections::btree_map::Entry::Vacant(e) = dialing.entry(addr) {
                let token = shutdown.child_token();
                tracker.spawn(dial_one(
                    e.key().clone(),
                    conns.clone(),
                    events.clone(),
                    token.clone(),
                ));
                e.insert(token);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = switches.changed() => if changed.is_err() {
                // No more changes: keep the connections there are.
                shutdown.cancelled().await;
                return;
            },
        }
    }
}

/// Connects to `addr`, runs the session, and connects again when it ends,
/// until `token` is cancelled. Waits between attempts double from
/// `dial_backoff_min` to `dial_backoff_max`; a session that lasted longer
/// than the wait before it starts the next wait from the shortest again, so
/// a switch that refuses every handshake is not hammered and one that was
/// up is reconnected at once.
async fn dial_one(
    addr: ListenAddr,
    conns: Conns,
    events: mpsc::Sender<SwitchEvent>,
    token: CancellationToken,
) {
    let min = conns.config.dial_backoff_min;
    let max = conns.config.dial_backoff_max.max(min);
    let mut backoff = min;
    let mut failing_since: Option<Instant> = None;
    let mut warned = false;
    loop {
        let attempt = tokio::select! {
            _ = token.cancelled() => return,
            r = tokio::time::timeout(conns.config.dial_timeout, connect(&addr)) => r
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"))),
        };
        match attempt {
            Ok(stream) => {
                if let (Some(since), true) = (failing_since.take(), warned) {
                    info!(
                        switch = %addr,
                        "connected after {:.1} s of failed attempts",
                        since.elapsed().as_secs_f64()
                    );
                }
                warned = false;
                let began = Instant::now();
                conns
                    .run(stream, addr.to_string(), events.clone(), token.clone())
                    .await;
                if events.is_closed() || token.is_cancelled() {
                    return;
                }
                if began.elapsed() > backoff {
                    backoff = min;
                }
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if !warned && since.elapsed() >= WARN_AFTER {
                    warn!(
                        switch = %addr,
                        "cannot connect to the switch for {:.0} s: {e}; is Open vSwitch running \
                         and its bridge listening there (a passive controller target)? Retrying \
                         every {max:?} at most",
                        since.elapsed().as_secs_f64()
                    );
                    warned = true;
                } else {
                    debug!(switch = %addr, "cannot connect to the switch: {e}");
                }
            }
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

async fn connect(addr: &ListenAddr) -> io::Result<Stream> {
    match addr {
        ListenAddr::Tcp(a) => TcpStream::connect(a).await.map(Stream::Dialled),
        ListenAddr::Unix(p) => UnixStream::connect(p).await.map(Stream::Unix),
    }
}

#[cfg(test)]
mod tests;
