//! What leaves the gateway about MACs: the peer protocol's bodies, the
//! outbox that holds reports until they are delivered, and the HTTP clients
//! that deliver them (an iaas gateway to its haas peer's
//! `POST /v1/peer/macs`; a haas gateway to the controller's
//! `PUT /v1/registry/{vi}/{vlan}/{mac}`).
//!
//! The outbox is sans-IO: coalesced per key (a newer report of a MAC
//! replaces the one waiting), bounded ([`OUTBOX_CAPACITY`] distinct keys,
//! beyond which new keys are counted as dropped), sent in batches, and
//! after a failed batch retried with exponential backoff from
//! [`BACKOFF_MIN`] to [`BACKOFF_MAX`].

use crate::config::Token;
use iris_controller::model::{MacKey, Vlan};
use iris_schemas::northbound::{EntryBody, LocationBody};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Distinct keys (MACs) the outbox holds at most.
pub const OUTBOX_CAPACITY: usize = 65536;
/// Reports in one request at most.
pub const BATCH_MAX: usize = 256;
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The delay before the next attempt after failures: doubling from
/// [`BACKOFF_MIN`] to [`BACKOFF_MAX`], back to none after a success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    /// Another failure: how long to wait.
    pub fn failed(&mut self) -> Duration {
        let next = self.last.map_or(BACKOFF_MIN, |d| (d * 2).min(BACKOFF_MAX));
        self.last = Some(next);
        next
    }

    pub fn succeeded(&mut self) {
        self.last = None;
    }
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// A key not waiting yet.
    New,
    /// It replaced the report of the same key that was waiting.
    Coalesced,
    /// The outbox holds [`Outbox::capacity`] keys: this one is dropped.
    Dropped,
}

/// Reports waiting to leave, by key.
#[derive(Debug, Clone)]
pub struct Outbox<K, T> {
    waiting: HashMap<K, T>,
    /// Keys in the order they first waited; a key may be here although
    /// no longer waiting (sent since), and is then skipped.
    order: VecDeque<K>,
    in_flight: Vec<K>,
    not_before: Option<Instant>,
    backoff: Backoff,
    capacity: usize,
    dropped: u64,
}

impl<K: Hash + Eq + Clone, T> Default for Outbox<K, T> {
    fn default() -> Self {
        Self::with_capacity(OUTBOX_CAPACITY)
    }
}

impl<K: Hash + Eq + Clone, T> Outbox<K, T> {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            waiting: HashMap::new(),
            order: VecDeque::new(),
            in_flight: Vec::new(),
            not_before: None,
            backoff: Backoff::default(),
            capacity,
            dropped: 0,
        }
    }

    /// Keys waiting or in flight (a key in both counts twice, so the bound
    /// is never exceeded).
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Reports dropped because the outbox was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn push(&mut self, key: K, report: T) -> Queued {
        if let Some(slot) = self.waiting.get_mut(&key) {
            *slot = report;
            return Queued::Coalesced;
        }
        if self.len() >= self.capacity {
            self.dropped += 1;
            return Queued::Dropped;
        }
        self.order.push_back(key.clone());
        self.waiting.insert(key, report);
        Queued::New
    }

    /// When a batch may next be taken, if anything waits.
    pub fn next_attempt(&self) -> Option<Instant> {
        if self.waiting.is_empty() || !self.in_flight.is_empty() {
            return None;
        }
        self.not_before
    }

    /// Whether a batch may be taken at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        !self.waiting.is_empty()
            && self.in_flight.is_empty()
            && self.not_before.is_none_or(|t| now >= t)
    }

    /// Up to `max` reports, oldest first, unless a batch is in flight or
    /// the backoff has not run out.
    pub fn take_batch(&mut self, now: Instant, max: usize) -> Vec<(K, T)> {
        if !self.ready(now) {
            return Vec::new();
        }
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            if let Some(report) = self.waiting.remove(&key) {
                self.in_flight.push(key.clone());
                batch.push((key, report));
            }
        }
        batch
    }

    /// The batch in flight is done; `retry` are the reports of it that
    /// were not delivered and may be on a later attempt. Returns the
    /// backoff before that attempt, if any.
    pub fn finish(&mut self, now: Instant, retry: Vec<(K, T)>) -> Option<Duration> {
        self.in_flight.clear();
        if retry.is_empty() {
            self.backoff.succeeded();
            self.not_before = None;
            return None;
        }
        // Back to the front, unless a newer report of the key came in
        // meanwhile: that one wins.
        for (key, report) in retry.into_iter().rev() {
            if !self.waiting.contains_key(&key) {
                self.order.push_front(key.clone());
                self.waiting.insert(key, report);
            }
        }
        let delay = self.backoff.failed();
        self.not_before = Some(now + delay);
        Some(delay)
    }
}

// ---------------------------------------------------------------------
// The peer protocol: POST /v1/peer/macs

/// What an iaas gateway says about one MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// Seen in the reporter's data center.
    Presence,
    /// Moved into the reporter's data center, at `seq`.
    Move,
    /// No longer in the reporter's data center.
    Gone,
}

/// One MAC in a report, as the body carries it: MAC and IPs as text, so
/// that one bad entry is refused alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacReport {
    pub vi: u32,
    /// `null` for untagged frames.
    pub vlan: Option<u16>,
    pub mac: String,
    #[serde(default)]
    pub ips: Vec<String>,
    pub seq: u32,
    pub kind: ReportKind,
}

/// The body of `POST /v1/peer/macs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerReport {
    pub from: String,
    pub macs: Vec<MacReport>,
}

/// What became of one reported MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Followed,
    Stale,
    Flapping,
    Refused,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Followed,
        Outcome::Stale,
        Outcome::Flapping,
        Outcome::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Followed => "followed",
            Outcome::Stale => "stale",
            Outcome::Flapping => "flapping",
            Outcome::Refused => "refused",
        }
    }
}

/// The answer for one reported MAC: `seq` is the seq the haas side holds
/// after the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacResult {
    pub vi: u32,
    pub vlan: Option<u16>,
    pub mac: String,
    pub seq: u32,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The 200 answer of `POST /v1/peer/macs`, one result per MAC, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerAnswer {
    pub results: Vec<MacResult>,
}

/// A MAC report's wire form of a key.
pub fn wire_vlan(vlan: Vlan) -> Option<u16> {
    match vlan {
        Vlan::Untagged => None,
        Vlan::Tagged(v) => Some(v),
    }
}

/// What waits in an iaas gateway's outbox for one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerItem {
    pub kind: ReportKind,
    pub seq: u32,
    pub ips: Vec<Ipv4Addr>,
}

impl PeerItem {
    pub fn to_wire(&self, key: &MacKey) -> MacReport {
        MacReport {
            vi: key.vi.0,
            vlan: wire_vlan(key.vlan),
            mac: key.mac.to_string(),
            ips: self.ips.iter().map(ToString::to_string).collect(),
            seq: self.seq,
            kind: self.kind,
        }
    }
}

/// What waits in a haas gateway's outbox for one MAC: place it behind this
/// gateway in the controller's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryItem {
    pub ips: Vec<Ipv4Addr>,
    /// Take IPs another MAC holds (`?take_ips=true`) if the registry
    /// refuses them: for a followed move only.
    pub take_ips: bool,
}

// ---------------------------------------------------------------------
// The HTTP side.

/// Why a request did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Not reached, or a 5xx: worth retrying.
    #[error("{0}")]
    Unreachable(String),
    /// The registry refused an IP another MAC holds (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Refused for good (another 4xx): retrying would not help.
    #[error("refused ({status}): {detail}")]
    Refused { status: u16, detail: String },
}

impl From<reqwest::Error> for DeliveryError {
    fn from(e: reqwest::Error) -> Self {
        // The source chain says which connect or read failed.
        DeliveryError::Unreachable(iris_controller::http_client::error_text(&e))
    }
}

/// Turns an answer's status into the delivery outcome; the body of a
/// refusal is its detail.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, DeliveryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let detail = response.text().await.unwrap_or_default();
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        return Err(DeliveryError::Unreachable(format!("{status}: {detail}")));
    }
    if status.as_u16() == 409 {
        return Err(DeliveryError::Conflict(detail));
    }
    Err(DeliveryError::Refused {
        status: status.as_u16(),
        detail,
    })
}

/// The client for the controller's event stream (and the registry reads
/// that go with it): a stream has no end to time out at, so it is bounded
/// per read instead; the controller sends a keep-alive every 15 s, so three
/// missed ones mean the controller is gone. Sends `token` as the bearer;
/// trusts `ca` alone for an `https://` controller.
pub fn stream_client(token: Option<&Token>, ca: Option<&Path>) -> Result<reqwest::Client, String> {
    with_token(
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(Duration::from_secs(45)),
        token,
        ca,
    )
}

/// An HTTP client with the gateway's timeouts: a peer or controller that
/// does not answer is a failure to retry, not a hang. Sends `token` as the
/// bearer: give each client only the token of the one it talks to (the
/// controller's, or one peer's); trusts `ca` alone for an `https://` URL
/// (the controller's).
pub fn http_client(token: Option<&Token>, ca: Option<&Path>) -> Result<reqwest::Client, String> {
    with_token(
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10)),
        token,
        ca,
    )
}

fn with_token(
    builder: reqwest::ClientBuilder,
    token: Option<&Token>,
    ca: Option<&Path>,
) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose()))
        {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
    }
    iris_controller::http_client::trusting(builder.default_headers(headers), ca)?
        .build()
        .map_err(|e| iris_controller::http_client::error_text(&e))
}

/// An iaas gateway's link to its haas peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    url: String,
    from: String,
}

impl PeerClient {
    /// `api` is the peer's base URL; `from` this gateway's name.
    pub fn new(http: reqwest::Client, api: &str, from: &str) -> Self {
        Self {
            http,
            url: format!("{api}/v1/peer/macs"),
            from: from.to_owned(),
        }
    }

    pub async fn send(&self, macs: Vec<MacReport>) -> Result<PeerAnswer, DeliveryError> {
        let body = PeerReport {
            from: self.from.clone(),
            macs,
        };
        let response = check(self.http.post(&self.url).json(&body).send().await?).await?;
        Ok(response.json::<PeerAnswer>().await?)
    }
}

/// A haas gateway's link to the controller's registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    gateway: String,
}

impl RegistryClient {
    /// `base` is the controller's URL; `gateway` the host name the
    /// controller knows this gateway node by.
    pub fn new(http: reqwest::Client, base: &str, gateway: &str) -> Self {
        Self {
            http,
            base: base.to_owned(),
            gateway: gateway.to_owned(),
        }
    }

    pub fn entry_url(&self, key: &MacKey) -> String {
        let vlan = match key.vlan {
            Vlan::Untagged => "untagged".to_owned(),
            Vlan::Tagged(v) => v.to_string(),
        };
        format!("{}/v1/registry/{}/{vlan}/{}", self.base, key.vi.0, key.mac)
    }

    /// Places `key` behind this gateway with `ips`.
    pub async fn place(
        &self,
        key: &MacKey,
        ips: &[Ipv4Addr],
        take_ips: bool,
    ) -> Result<(), DeliveryError> {
        let mut url = self.entry_url(key);
        if take_ips {
            url.push_str("?take_ips=true");
        }
        let body = EntryBody {
            location: Some(LocationBody::Gateway {
                gateway: self.gateway.clone(),
            }),
            ips: ips.to_vec(),
        };
        check(self.http.put(url).json(&body).send().await?).await?;
        Ok(())
    }

    /// Delivers one registry item: a 409 over an IP is retried taking the
    /// IPs when the item allows it (a followed move), and refused
    /// otherwise.
    pub async fn deliver(&self, key: &MacKey, item: &RegistryItem) -> Result<(), DeliveryError> {
        match self.place(key, &item.ips, false).await {
            Err(DeliveryError::Conflict(_)) if item.take_ips => {
                self.place(key, &item.ips, true).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
