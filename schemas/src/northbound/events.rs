//! The `/v1/events` stream (Server-Sent Events): each event's name is its
//! `type`, its `data` one [`NorthEvent`] as JSON, or a [`Lagged`] under the
//! name `lagged`. [`SseParser`] reads the stream for every Rust client.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use utoipa::ToSchema;

/// What the northbound API is told as it happens (the SSE stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NorthEvent {
    /// A switch finished its handshake, or left.
    Switch {
        dpid: String,
        host: Option<String>,
        connected: bool,
    },
    /// The topology changed: a host, VI or port was added, changed or removed.
    Topology { what: String },
    /// A registry entry was added, moved, updated or removed.
    Registry(RegistryEvent),
    /// A RARP moved a MAC and every switch concerned confirmed its new
    /// flows: `latency_ms` runs from the RARP's PacketIn to the last barrier
    /// reply.
    Move {
        latency_ms: f64,
        #[serde(flatten)]
        event: RegistryEvent,
    },
    /// A RARP moved a MAC but not every switch concerned took its new
    /// flows: `why` is `refused` (a switch refused part of them; it is
    /// resynchronised) or `abandoned` (a switch disconnected first).
    MoveIncomplete {
        #[schema(value_type = String)]
        why: Cow<'static, str>,
        #[serde(flatten)]
        event: RegistryEvent,
    },
}

impl NorthEvent {
    /// The SSE event name this event is sent under: its `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Switch { .. } => "switch",
            Self::Topology { .. } => "topology",
            Self::Registry(_) => "registry",
            Self::Move { .. } => "move",
            Self::MoveIncomplete { .. } => "move_incomplete",
        }
    }
}

/// One registry change as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryEvent {
    /// `added`, `moved`, `updated` or `removed`.
    #[schema(value_type = String)]
    pub change: Cow<'static, str>,
    pub vi: u32,
    /// `None` for untagged.
    pub vlan: Option<u16>,
    /// The MAC whose location changed, or the MAC an IP now resolves to.
    pub mac: String,
    /// Set when the change is an IP binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Where the MAC lives after the change (MAC changes only): `HOST:OFPORT`
    /// or `behind GATEWAY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The data of a `lagged` event: a reader fell behind and missed events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lagged {
    pub missed: u64,
}

/// One event of a Server-Sent Events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Splits an SSE byte stream into events (sans-IO: bytes in, events out).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
}

/// A line longer than this is not the controller's; it is cut off so a
/// broken stream cannot grow the buffer without end.
const MAX_LINE: usize = 1 << 20;

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    out.push(SseEvent {
                        event: std::mem::take(&mut self.event),
                        data: std::mem::take(&mut self.data),
                    });
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        out
    }
}
