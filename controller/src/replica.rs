//! This controller as one replica of a `[cluster]`: it campaigns in the
//! election (`election.rs`) for as long as it runs, and
//!
//! - on winning, fences the store with its leadership, reads the store
//!   afresh, claims MASTER on every switch with the leadership's
//!   generation, lets the OVSDB side write, and reconciles every switch
//!   from a fresh dump (`control/role.rs`);
//! - on losing its lease, stops writing at once (SLAVE, no OVSDB writes,
//!   no commits) and campaigns again;
//! - while a standby, follows who leads (for the API, `forward.rs`, and
//!   for the generation id of its SLAVE requests) and follows the
//!   leader's commits: one whole read of the store, then an etcd watch on
//!   the store's prefix from that read's revision, each commit applied
//!   entry by entry once its marker write comes (`store::etcd::follow`),
//!   so reads on a standby answer what the leader acknowledged, a few
//!   milliseconds behind it, however large the registry.

use crate::config::{ClusterConfig, Config};
use crate::control::ControlHandle;
use crate::election::{Candidate, Leadership};
use crate::store::etcd::follow::{Follow, Step};
use crate::store::etcd::EtcdConfig;
use crate::store::StoreError;
use etcd_client::{EventType, WatchOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Who leads, as this replica last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderView {
    /// This replica leads (and may write).
    pub me: bool,
    /// The leading replica's name, if there is a leader.
    pub leader: Option<String>,
    /// Why no replica can lead now, when etcd says (no quorum, no member
    /// in reach): this replica cannot even join the election.
    pub unavailable: Option<String>,
}

/// How often a standby asks who leads.
const WHO_LEADS: Duration = Duration::from_millis(250);
/// Wait before joining the election again after etcd refused.
const RETRY: Duration = Duration::from_secs(1);

/// Runs this replica's part until `shutdown`: `view` says who leads and
/// `writes` whether the OVSDB side may write.
pub async fn run(
    config: Arc<Config>,
    cluster: ClusterConfig,
    etcd: EtcdConfig,
    control: ControlHandle,
    view: watch::Sender<LeaderView>,
    writes: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let follower = tokio::spawn(follow_store(
        config.clone(),
        etcd.clone(),
        control.clone(),
        view.subscribe(),
        shutdown.clone(),
    ));
    let mut seen = 0u64;
    while !shutdown.is_cancelled() {
        let candidate = match Candidate::join(&etcd, &cluster.name, cluster.lease_ttl).await {
            Ok(c) => {
                if view.borrow().unavailable.is_some() {
                    info!("etcd takes writes again: joined the leader election");
                    view.send_replace(LeaderView::default());
                }
                c
            }
            Err(e) => {
                let why = match e {
                    StoreError::Unavailable { message, .. } => message,
                    e => e.to_string(),
                };
                // Said once per outage; retried every second.
                match view.borrow().unavailable.is_some() {
                    true => debug!("still cannot join the leader election: {why}"),
                    false => warn!(
                        "cannot join the leader election: {why}; standing by (SLAVE, reads \
                         answered, writes refused) and retrying every second"
                    ),
                }
                view.send_replace(LeaderView {
                    unavailable: Some(why),
                    ..LeaderView::default()
                });
                pause(&shutdown, RETRY).await;
                continue;
            }
        };
        let Some(won) = campaign(&candidate, &control, &view, &mut seen, &shutdown).await else {
            break;
        };
        let leadership = match won {
            Ok(l) => l,
            Err(e) => {
                warn!("the campaign failed: {e}; joining the election again");
                continue;
            }
        };
        let generation = u64::try_from(leadership.generation()).unwrap_or(0);
        let won_at = Instant::now();
        if let Err(e) = take_over(&config, &control, &leadership, generation).await {
            warn!("won the election but cannot take over: {e}; resigning");
            let _ = tokio::time::timeout(RETRY, candidate.resign(leadership)).await;
            stand_by(&control, generation).await;
            pause(&shutdown, RETRY).await;
            continue;
        }
        seen = seen.max(generation);
        writes.send_replace(true);
        view.send_replace(LeaderView {
            me: true,
            leader: Some(cluster.name.clone()),
            unavailable: None,
        });
        info!(
            generation,
            took_ms = won_at.elapsed().as_millis(),
            "leading the cluster: store fenced and read, MASTER claimed on every switch"
        );
        let mut alive = candidate.alive();
        let lost = async move {
            let _ = alive.wait_for(|a| !*a).await;
        };
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = lost => false,
        };
        if stopping {
            // Handed over at once rather than after the lease's ttl; not
            // waited for long when etcd is out of reach.
            let _ = tokio::time::timeout(RETRY, candidate.resign(leadership)).await;
            break;
        }
        // Nothing more is written, before anything else.
        writes.send_replace(false);
        view.send_replace(LeaderView::default());
        stand_by(&control, generation).await;
        warn!(
            generation,
            "the lease is lost (etcd out of reach or too slow): standing by and campaigning again"
        );
    }
    follower.abort();
}

/// Campaigns until this candidate leads (`Some`), following meanwhile who
/// does; `None` on shutdown.
async fn campaign(
    candidate: &Candidate,
    control: &ControlHandle,
    view: &watch::Sender<LeaderView>,
    seen: &mut u64,
    shutdown: &CancellationToken,
) -> Option<Result<Leadership, StoreError>> {
    let won = candidate.campaign();
    tokio::pin!(won);
    let mut poll = tokio::time::interval(WHO_LEADS);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = &mut won => return Some(r),
            _ = poll.tick() => match candidate.leading().await {
                Ok(leading) => {
                    let generation = leading
                        .as_ref()
                        .map_or(0, |(_, g)| u64::try_from(*g).unwrap_or(0));
                    let now = LeaderView {
                        me: false,
                        leader: leading.map(|(name, _)| name),
                        unavailable: None,
                    };
                    view.send_if_modified(|v| {
                        let changed = *v != now;
                        *v = now;
                        changed
                    });
                    // SLAVE requests carry the newest generation: an older
                    // one is refused as stale by a switch that saw it.
                    if generation > *seen {
                        *seen = generation;
                        stand_by(control, *seen).await;
                    }
                }
                Err(e) => debug!("cannot tell who leads: {e}"),
            },
        }
    }
}

/// Fences the store, reads it unless the followed view holds every commit
/// already, and leads: all in the control loop, so nothing comes between.
async fn take_over(
    config: &Arc<Config>,
    control: &ControlHandle,
    leadership: &Leadership,
    generation: u64,
) -> Result<(), String> {
    let (config, leadership) = (config.clone(), leadership.clone());
    let done = control
        .call(move |c| -> Result<(), StoreError> {
            c.fence_store(&leadership)?;
            // A standby that followed every commit up to the fenced marker
            // holds the store already; reading it whole took seconds at
            // 100 000 MACs.
            if c.view_is_current() {
                debug!("taking over with the followed view: it holds every commit");
            } else if let Some(snapshot) = c.load_store()? {
                let (hosts, vis, _) = crate::run::with_stored(&config, &snapshot);
                c.reload(hosts, vis, snapshot.registry());
            }
            c.lead(generation);
            // The configuration's seeds, which a standby cannot commit.
            for (vi, entries) in &config.seeds {
                if let Err(problems) = c.seed(*vi, entries) {
                    warn!("the seed of {vi} is left out: {problems:?}");
                }
            }
            match c.take_refusal() {
                Some(why) => Err(StoreError::Unavailable {
                    backend: "etcd",
                    message: why,
                }),
                None => Ok(()),
            }
        })
        .await;
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("{e:?}")),
    }
}

async fn stand_by(control: &ControlHandle, generation: u64) {
    let _ = control.call(move |c| c.stand_by(generation)).await;
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// While this replica stands by, keeps its view up with the leader's
/// commits: a whole read of the store, then an etcd watch on the store's
/// prefix from that read's revision on, whose commits are applied entry by
/// entry (`store::etcd::follow`); what cannot be (a host or VI changed,
/// a staged batch not seen whole, a watch cut or compacted away) is
/// followed by another whole read.
async fn follow_store(
    config: Arc<Config>,
    etcd: EtcdConfig,
    control: ControlHandle,
    mut view: watch::Receiver<LeaderView>,
    shutdown: CancellationToken,
) {
    // Said once per outage: a standby that cannot watch answers reads from
    // an old view.
    let mut warned = false;
    // The start's own read of the store: followed on from, not read again.
    let mut started = control
        .call(|c| c.viewed_whole_store())
        .await
        .ok()
        .flatten();
    while !shutdown.is_cancelled() {
        if view.borrow_and_update().me {
            // Leading: the view is the store's. Read whole again once this
            // replica stands by (its view may hold what the store refused).
            started = None;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = view.changed() => if r.is_err() { return },
            }
            continue;
        }
        let read = match started.take() {
            Some(revision) => Ok(Some(revision)),
            None => reload(&config, &control).await,
        };
        let followed = match read {
            Ok(Some(revision)) => watch_prefix(&etcd, revision + 1)
                .await
                .map(|s| (s, revision)),
            Ok(None) => {
                // Leading by now, or no store to follow.
                pause(&shutdown, RETRY).await;
                continue;
            }
            Err(e) => Err(e),
        };
        let (mut stream, revision) = match followed {
            Ok(f) => f,
            Err(e) => {
                if warned {
                    debug!("cannot follow the store: {e}; retrying");
                } else {
                    warn!("cannot follow the store, reads here may lag the leader: {e}; retrying");
                    warned = true;
                }
                pause(&shutdown, RETRY).await;
                continue;
            }
        };
        if warned {
            info!("following the store again");
            warned = false;
        }
        debug!(
            revision,
            "standby: following the store's commits from its last whole read"
        );
        let mut follow = Follow::new(&etcd.prefix);
        'watch: loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = view.changed() => {
                    if r.is_err() || view.borrow().me {
                        break 'watch;
                    }
                    continue;
                }
                m = stream.message() => m,
            };
            let response = match message {
                Ok(Some(r)) if !r.canceled() && r.compact_revision() == 0 => r,
                // Cut, or the revision to follow from compacted away.
                Ok(_) | Err(_) => break,
            };
            let mut records = Vec::new();
            // The last whole commit's marker write.
            let mut whole_to = None;
            let mut topology = false;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let value = (event.event_type() == EventType::Put).then(|| kv.value());
                let before = event.prev_kv().map(|p| p.value());
                match follow.on_event(kv.key(), value, before) {
                    Step::Wait => {}
                    Step::Apply(r) => {
                        records.extend(r);
                        whole_to = Some(kv.mod_revision());
                    }
                    Step::Topology(r) => {
                        records.extend(r);
                        whole_to = Some(kv.mod_revision());
                        topology = true;
                    }
                    Step::Reload => break 'watch,
                }
            }
            if let Some(revision) = whole_to {
                let config = config.clone();
                let applied = control
                    .call(move |c| apply_followed(c, &config, records, topology, revision))
                    .await;
                match applied {
                    Ok(Ok(true)) => {}
                    Ok(Err(e)) => {
                        debug!("cannot read the hosts and VIs a commit changed: {e}; reading the store whole");
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Applies a followed commit's entries, and with `topology` the hosts and
/// VIs as the store held them at its `revision` (merged with the
/// configuration as a whole read's are); `false` once this replica writes.
fn apply_followed(
    c: &mut crate::control::Control,
    config: &Config,
    records: Vec<crate::store::RegistryRecord>,
    topology: bool,
    revision: i64,
) -> Result<bool, StoreError> {
    let stored = if topology && !c.role().writes() {
        c.load_store_topology(revision)?
    } else {
        None
    };
    if !c.apply_stored(records, revision) {
        return Ok(false);
    }
    if let Some(stored) = stored {
        let (hosts, vis, _) = crate::run::with_stored(config, &stored);
        c.reload_topology(hosts, vis);
    }
    Ok(true)
}

/// A watch on every key of the store's prefix from `revision` on, with
/// each deleted key's last value, over the same TLS as the store's.
async fn watch_prefix(
    etcd: &EtcdConfig,
    revision: i64,
) -> Result<etcd_client::WatchStream, String> {
    let options = etcd.connect_options().map_err(|e| e.to_string())?;
    let mut client = etcd_client::Client::connect(etcd.endpoints.clone(), Some(options))
        .await
        .map_err(|e| e.to_string())?;
    let watch = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision)
        .with_prev_key();
    client
        .watch(etcd.prefix.as_str(), Some(watch))
        .await
        .map_err(|e| e.to_string())
}

/// Reads the store whole into the control loop's view, unless this
/// replica writes (its view is then the store's, and newer than any
/// read); the revision it read at.
async fn reload(config: &Arc<Config>, control: &ControlHandle) -> Result<Option<i64>, String> {
    let config = config.clone();
    let done = control
        .call(move |c| -> Result<Option<i64>, StoreError> {
            if c.role().writes() {
                return Ok(None);
            }
            let Some(snapshot) = c.load_store()? else {
                return Ok(None);
            };
            let (hosts, vis, _) = crate::run::with_stored(&config, &snapshot);
            c.reload(hosts, vis, snapshot.registry());
            Ok(c.viewed_whole_store())
        })
        .await;
    match done {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:?}")),
    }
}
