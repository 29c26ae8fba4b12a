//! Brokers sharing an etcd store: one is active, the others stand by.
//!
//! Each broker campaigns in the brokers' election (`<prefix>broker/leader`,
//! with an etcd lease of `[cluster] lease_ttl_secs`) for as long as it
//! runs. The winner reads the records from the store, resumes the
//! operations its predecessor left running (as after a crash), and serves
//! the API; every write it makes is fenced by its leadership
//! (`store/etcd.rs`). A standby holds no records: it answers every request
//! with 503 naming the active broker and its API, `/healthz` included, so
//! that a load balancer's health check sends clients to the active one.
//!
//! The active broker's term ends when its lease is lost (it was cut off
//! from etcd's quorum for the lease's life) or a write finds another
//! broker leading: it stops serving at once and the process exits, for
//! its service manager to restart it as a standby. A broker asked to stop
//! resigns, so that a standby takes over without waiting for the lease.

use crate::api::{config_secret::Admin, router};
use crate::config::{Cluster, Config};
use crate::records::Records;
use crate::store::etcd::{EtcdStore, ELECTION};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use iris_controller::api::Problem;
use iris_controller::election::{Candidate, Leadership};
use iris_controller::store::etcd::EtcdConfig;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{info, warn};

/// How often a standby asks who is active.
const WHO_LEADS: Duration = Duration::from_millis(250);
/// Wait before trying etcd again after it refused.
const RETRY: Duration = Duration::from_secs(1);
/// How long a request that comes before a starting broker has asked who
/// leads waits for that answer (etcd's answer normally takes milliseconds).
const FIRST_LOOK: Duration = Duration::from_secs(3);

/// What a broker's campaign carries: who it is and where its API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Candidacy {
    name: String,
    api: String,
}

/// What a standby knows of the brokers.
#[derive(Debug, Clone, Default)]
struct Standby {
    /// The active broker, if one is.
    active: Option<Candidacy>,
    /// Why this broker cannot even campaign (etcd out of reach).
    unavailable: Option<String>,
    /// Why the last broker to win could not serve: the records in etcd
    /// do not read (a damaged record), until one does.
    unreadable: Option<String>,
    /// Whether this broker has asked etcd who leads (or won) yet: until
    /// then it knows nothing to answer with.
    asked: bool,
}

#[derive(Clone)]
struct Dispatch {
    me: String,
    /// The active broker's API, once this broker is the active one.
    api: watch::Receiver<Option<Router>>,
    standby: watch::Receiver<Standby>,
}

/// The API of a broker that is one of several on `etcd`: a standby's
/// answers until it wins the election, then the broker's own. Campaigns
/// in the background until `shutdown` (the task ends once it resigned);
/// cancels `ended` when its term as the active broker ends.
pub fn replica(
    config: Config,
    etcd: EtcdConfig,
    cluster: Cluster,
    admin: Admin,
    shutdown: CancellationToken,
    ended: CancellationToken,
) -> (Router, tokio::task::JoinHandle<()>) {
    let (api_tx, api) = watch::channel(None);
    let (standby_tx, standby) = watch::channel(Standby::default());
    let me = cluster.name.clone();
    let campaigning = tokio::spawn(campaign(
        config, etcd, cluster, admin, api_tx, standby_tx, shutdown, ended,
    ));
    let app = Router::new()
        .fallback(dispatch)
        .with_state(Dispatch { me, api, standby });
    (app, campaigning)
}

async fn dispatch(State(mut d): State<Dispatch>, req: Request) -> Response {
    if d.api.borrow().is_none() && !d.standby.borrow().asked {
        // Just started: wait for the first answer to who leads rather
        // than say nobody does.
        let _ = tokio::time::timeout(FIRST_LOOK, d.standby.wait_for(|s| s.asked)).await;
    }
    let active = d.api.borrow().clone();
    if let Some(api) = active {
        return match api.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let standby = d.standby.borrow().clone();
    let detail = match (&standby.active, &standby.unavailable) {
        (Some(a), _) => format!(
            "broker {} is a standby; the active broker is {} at {}: send the request there",
            d.me, a.name, a.api
        ),
        (None, None) if standby.unreadable.is_some() => format!(
            "no broker is active: broker {} won the election but cannot read the records in \
             etcd ({}); fix or delete that record (etcdctl), and a broker leads again",
            d.me,
            standby.unreadable.as_deref().unwrap_or_default()
        ),
        (None, Some(why)) => format!(
            "broker {} cannot reach the etcd store its records live in ({why}); no broker is \
             active until etcd has a quorum again: retry later",
            d.me
        ),
        (None, None) => format!(
            "broker {} is a standby and no broker is active right now (an election is under \
             way): retry in a few seconds",
            d.me
        ),
    };
    let mut r = Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

#[allow(clippy::too_many_arguments)]
async fn campaign(
    config: Config,
    etcd: EtcdConfig,
    cluster: Cluster,
    admin: Admin,
    api: watch::Sender<Option<Router>>,
    standby: watch::Sender<Standby>,
    shutdown: CancellationToken,
    ended: CancellationToken,
) {
    let me = Candidacy {
        name: cluster.name.clone(),
        api: cluster.api.clone(),
    };
    let id = serde_json::to_string(&me).unwrap_or_default();
    while !shutdown.is_cancelled() {
        let candidate =
            match Candidate::join_election(&etcd, ELECTION, &id, cluster.lease_ttl).await {
                Ok(c) => c,
                Err(e) => {
                    let why = e.to_string();
                    if standby.borrow().unavailable.as_deref() != Some(why.as_str()) {
                        warn!("cannot join the brokers' election: {why}");
                    }
                    standby.send_replace(Standby {
                        active: None,
                        unavailable: Some(why),
                        unreadable: None,
                        asked: true,
                    });
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
        standby.send_modify(|s| {
            s.active = None;
            s.unavailable = None;
        });
        let leadership = tokio::select! {
            l = candidate.campaign() => l,
            () = follow_leader(&candidate, &standby) => unreachable_follow(),
            () = shutdown.cancelled() => return,
        };
        let leadership = match leadership {
            Ok(l) => l,
            Err(e) => {
                warn!("the campaign failed ({e}); joining again");
                candidate.abandon();
                continue;
            }
        };
        // Whoever led before is not the active broker any more.
        standby.send_modify(|s| {
            s.active = None;
            s.asked = true;
        });
        match lead(&config, &etcd, &candidate, &leadership, admin).await {
            Ok((broker_api, term, store)) => {
                info!(broker = %me.name, "this broker is the active one");
                standby.send_modify(|s| s.unreadable = None);
                api.send_replace(Some(broker_api));
                let mut alive = candidate.alive();
                let why = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => None,
                    _ = alive.changed() => Some("its etcd lease was lost (cut off from etcd's quorum for the lease's life)"),
                    () = term.cancelled() => Some("a write found another broker active"),
                };
                let Some(why) = why else {
                    // A write in doubt is put back now, not left to the
                    // next active broker to find.
                    let settled = tokio::task::spawn_blocking(move || store.settle_doubt()).await;
                    if let Ok(Err(e)) = settled {
                        warn!("a write in doubt could not be undone before stopping: {e}");
                    }
                    term.cancel();
                    // Let a standby take over at once.
                    if let Err(e) = candidate.resign(leadership).await {
                        warn!(
                            "could not resign ({e}); a standby takes over when the lease expires"
                        );
                    }
                    return;
                };
                warn!("this broker stops being the active one: {why}");
                term.cancel();
                api.send_replace(None);
                ended.cancel();
                candidate.abandon();
                return;
            }
            Err(NotLed { message, damaged }) => {
                if standby.borrow().unreadable.as_deref() != Some(message.as_str()) {
                    warn!("won the election but cannot serve ({message}); standing down");
                }
                standby.send_modify(|s| s.unreadable = damaged.then_some(message));
                let _ = candidate.resign(leadership).await;
                candidate.abandon();
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

fn unreachable_follow() -> Result<Leadership, iris_controller::store::StoreError> {
    Err(iris_controller::store::StoreError::Unavailable {
        backend: "etcd",
        message: "stopped following the election".to_owned(),
    })
}

/// While campaigning: keeps `standby` naming the active broker.
async fn follow_leader(candidate: &Candidate, standby: &watch::Sender<Standby>) {
    loop {
        let view = match candidate.leader().await {
            Ok(active) => Standby {
                active: active.and_then(|id| serde_json::from_str(&id).ok()),
                asked: true,
                ..Standby::default()
            },
            Err(e) => Standby {
                unavailable: Some(e.to_string()),
                asked: true,
                ..Standby::default()
            },
        };
        standby.send_if_modified(|s| {
            let changed = s.active != view.active || s.unavailable != view.unavailable || !s.asked;
            s.active = view.active;
            s.unavailable = view.unavailable;
            s.asked = true;
            changed
        });
        tokio::time::sleep(WHO_LEADS).await;
    }
}

/// Why a broker that won could not serve.
struct NotLed {
    message: String,
    /// The records do not read (a damaged record), rather than etcd being
    /// out of reach for a moment.
    damaged: bool,
}

/// Having won: the records read under `leadership`, the broker started on
/// them, its API, its term (cancelled when a write finds the leadership
/// gone) and its store.
async fn lead(
    config: &Config,
    etcd: &EtcdConfig,
    candidate: &Candidate,
    leadership: &Leadership,
    admin: Admin,
) -> Result<(Router, CancellationToken, Arc<EtcdStore>), NotLed> {
    let transient = |message: String| NotLed {
        message,
        damaged: false,
    };
    let term = CancellationToken::new();
    let (store, records) = tokio::task::spawn_blocking({
        let (etcd, leadership, term) = (etcd.clone(), leadership.clone(), term.clone());
        move || {
            let store = Arc::new(EtcdStore::open(etcd, &leadership, term)?);
            let records = Records::load(store.clone())?;
            Ok::<_, crate::store::StoreError>((store, records))
        }
    })
    .await
    .map_err(|e| transient(e.to_string()))?
    .map_err(|e| NotLed {
        damaged: !e.unavailable,
        message: e.to_string(),
    })?;
    if !*candidate.alive().borrow() {
        return Err(transient("the lease was lost while reading".to_owned()));
    }
    let broker = crate::run::activate(config, records, term.clone()).map_err(transient)?;
    Ok((router(broker, admin), term, store))
}
