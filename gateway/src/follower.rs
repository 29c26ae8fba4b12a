//! The haas gateway's view of the controller's registry: where the
//! controller puts the MACs of the gateway's VIs, so that a MAC that moved
//! into the HaaS data center (onto a port) bumps its seq, and the next
//! answer to the peer says so.
//!
//! At start, after every reconnection, and when a VI is added or removed
//! at run time, `GET /v1/registry?vi=N` for each VI, then the Server-Sent Events of `GET /v1/events` (opened first, so
//! nothing between the two is missed). A lost stream, or one that fell
//! behind (`lagged`), is reopened with the outbox's backoff (50 ms doubling
//! to 5 s) and the registry read again.

use crate::api::Shared;
use crate::control::RegistryPlace;
use crate::report::Backoff;
use futures_util::StreamExt;
use iris_controller::model::{MacKey, ViId, Vlan};
use iris_schemas::northbound::{EntryInfo, LocationBody, RegistryEvent};
pub use iris_schemas::northbound::{SseEvent, SseParser};
use ofp::packet::MacAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

fn key(vi: u32, vlan: Option<u16>, mac: &str) -> Option<MacKey> {
    Some(MacKey {
        vi: ViId(vi),
        vlan: Vlan::from_vid(vlan)?,
        mac: mac.parse::<MacAddr>().ok()?,
    })
}

/// What an event says of a MAC's place, if anything.
pub fn event_place(e: &SseEvent) -> Option<(MacKey, RegistryPlace)> {
    if !matches!(e.event.as_str(), "registry" | "move" | "move_incomplete") {
        return None;
    }
    let r: RegistryEvent = serde_json::from_str(&e.data).ok()?;
    if r.ip.is_some() {
        // An IP binding, not a place.
        return None;
    }
    let place = match (r.change.as_ref(), r.location.as_deref()) {
        ("removed", _) | (_, None) => RegistryPlace::Nowhere,
        // The controller prints a location as "behind GW" or "HOST:OFPORT".
        (_, Some(l)) => match l.strip_prefix("behind ") {
            Some(gw) => RegistryPlace::Gateway(gw.to_owned()),
            None => RegistryPlace::Port,
        },
    };
    Some((key(r.vi, r.vlan, &r.mac)?, place))
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("{}", iris_controller::http_client::error_text(.0))]
    Http(#[from] reqwest::Error),
    #[error("{0} answered {1}")]
    Status(String, reqwest::StatusCode),
    #[error("the event stream ended")]
    Ended,
    #[error("the event stream fell behind ({0}); reading the registry again")]
    Lagged(String),
}

async fn get_ok(http: &reqwest::Client, url: String) -> Result<reqwest::Response, FollowError> {
    let r = http.get(&url).send().await?;
    if !r.status().is_success() {
        return Err(FollowError::Status(url, r.status()));
    }
    Ok(r)
}

/// One pass: stream open, snapshot taken, events followed until the
/// stream ends (an error) or the gateway's VIs change (`Ok`: again at once).
async fn follow_once(
    shared: &Shared,
    http: &reqwest::Client,
    base: &str,
    backoff: &mut Backoff,
) -> Result<(), FollowError> {
    let events = get_ok(http, format!("{base}/v1/events")).await?;
    // Subscribed before the VIs are read: a VI added from here on makes
    // the pass end and the next one read its registry.
    let mut vis_changed = shared.vis_changes();
    let vis: Vec<ViId> = shared.control().config().vis.iter().map(|v| v.id).collect();
    for vi in vis {
        let rows: Vec<EntryInfo> = get_ok(http, format!("{base}/v1/registry?vi={}", vi.0))
            .await?
            .json()
            .await?;
        let now = Instant::now();
        let mut c = shared.control();
        for row in rows {
            let Some(k) = key(row.vi, row.vlan, &row.mac) else {
                continue;
            };
            let place = match row.location {
                Some(LocationBody::Port { .. }) => RegistryPlace::Port,
                Some(LocationBody::Gateway { gateway }) => RegistryPlace::Gateway(gateway),
                None => RegistryPlace::Nowhere,
            };
            c.registry_place(now, k, place);
        }
    }
    tracing::info!("following the controller's registry at {base}");
    backoff.succeeded();
    let mut parser = SseParser::default();
    let mut stream = events.bytes_stream();
    loop {
        let chunk = tokio::select! {
            c = stream.next() => c,
            changed = vis_changed.changed() => {
                if changed.is_ok() {
                    tracing::info!("the VIs changed; reading the registry again");
                    return Ok(());
                }
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk?;
        let events = parser.push(&chunk);
        if let Some(lagged) = events.iter().find(|e| e.event == "lagged") {
            // Events were lost: the registry is read again.
            return Err(FollowError::Lagged(lagged.data.clone()));
        }
        let places: Vec<_> = events.iter().filter_map(event_place).collect();
        if places.is_empty() {
            continue;
        }
        let now = Instant::now();
        let mut c = shared.control();
        for (k, place) in places {
            c.registry_place(now, k, place);
        }
    }
    Err(FollowError::Ended)
}

/// Follows the controller at `base` until `shutdown`.
pub async fn follow(
    shared: Arc<Shared>,
    http: reqwest::Client,
    base: String,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let result = tokio::select! {
            r = follow_once(&shared, &http, &base, &mut backoff) => r,
            () = shutdown.cancelled() => return,
        };
        if let Err(e) = result {
            shared.metrics.follower_reconnects.inc();
            let delay = backoff.failed();
            tracing::warn!("the controller's registry at {base}: {e}; again in {delay:?}");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let stream = b"event: registry\ndata: {\"type\":\"registry\",\"change\":\"moved\",\"vi\":1,\"vlan\":10,\"mac\":\"52:54:00:00:01:07\",\"location\":\"pm1:9\",\"from\":\"behind gw1\"}\n\n: keep-alive\n\nevent: lagged\r\ndata: {\"missed\":3}\r\n\r\n";
        let mut p = SseParser::default();
        let mut events = Vec::new();
        for chunk in stream.chunks(7) {
            events.extend(p.push(chunk));
        }
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[1].event, "lagged");
        assert_eq!(events[1].data, "{\"missed\":3}");
        let (k, place) = event_place(&events[0]).unwrap();
        assert_eq!(k.vlan, Vlan::Tagged(10));
        assert_eq!(place, RegistryPlace::Port);
        assert_eq!(event_place(&events[1]), None);
    }

    #[test]
    fn places_read_from_events_as_the_controller_writes_them() {
        let ev = |data: &str| SseEvent {
            event: "registry".into(),
            data: data.into(),
        };
        let behind = ev(
            r#"{"type":"registry","change":"added","vi":1,"vlan":null,"mac":"52:54:00:00:01:07","location":"behind gw-haas"}"#,
        );
        assert_eq!(
            event_place(&behind).map(|(k, p)| (k.vlan, p)),
            Some((Vlan::Untagged, RegistryPlace::Gateway("gw-haas".into())))
        );
        let removed = ev(
            r#"{"type":"registry","change":"removed","vi":1,"vlan":5,"mac":"52:54:00:00:01:07","from":"pm1:3"}"#,
        );
        assert_eq!(
            event_place(&removed).map(|(_, p)| p),
            Some(RegistryPlace::Nowhere)
        );
        let ip = ev(
            r#"{"type":"registry","change":"added","vi":1,"vlan":5,"mac":"52:54:00:00:01:07","ip":"10.0.0.1"}"#,
        );
        assert_eq!(event_place(&ip), None);
    }
}
