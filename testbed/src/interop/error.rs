//! Why an interop run failed, split by who has to act: the host (via the
//! testbed's own errors), the OpenFlow socket, or Open vSwitch answering
//! differently from what OpenFlow 1.3 and the codec lead Iris to expect.

use std::fmt;
use std::io;
use std::time::Duration;

use ofp::codec::Hex;
use ofp::message::ErrorMsg;
use ofp::DecodeError;

/// Everything that can make the interop sequence fail.
#[derive(Debug)]
pub enum InteropError {
    /// Building or driving the testbed failed (not root, tools missing, a
    /// daemon that did not start): see the inner error's advice.
    Testbed(crate::Error),
    /// The listener's socket failed.
    Io { context: String, source: io::Error },
    /// Open vSwitch did not send what was awaited in time.
    Timeout {
        waiting_for: String,
        waited: Duration,
    },
    /// Open vSwitch closed the OpenFlow connection.
    Disconnected { during: String },
    /// The byte stream from Open vSwitch cannot be cut into messages (a
    /// length field under 8): the stream is out of sync.
    Framing { error: DecodeError, pending: usize },
    /// Open vSwitch sent a message the codec cannot decode: a codec bug, or
    /// a switch speaking something other than OpenFlow 1.3.
    Undecodable { error: DecodeError, bytes: Vec<u8> },
    /// Open vSwitch refused a message Iris considers valid.
    Refused { request: String, error: ErrorMsg },
    /// Open vSwitch answered, but its answer differs from what was sent or
    /// expected, beyond the normalisations this run knows about.
    Mismatch { step: String, detail: String },
}

impl InteropError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn mismatch(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Mismatch {
            step: step.into(),
            detail: detail.into(),
        }
    }
}

impl From<crate::Error> for InteropError {
    fn from(e: crate::Error) -> Self {
        Self::Testbed(e)
    }
}

impl fmt::Display for InteropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Testbed(e) => write!(f, "{e}"),
            Self::Io { context, source } => write!(f, "OpenFlow socket: {context}: {source}"),
            Self::Timeout {
                waiting_for,
                waited,
            } => write!(
                f,
                "waited {:.1}s for {waiting_for}; the vswitchd log above may say why",
                waited.as_secs_f64()
            ),
            Self::Disconnected { during } => write!(
                f,
                "ovs-vswitchd closed the OpenFlow connection while Iris waited for {during}; \
                 the vswitchd log above may say why"
            ),
            Self::Framing { error, pending } => write!(
                f,
                "the byte stream from ovs-vswitchd is out of sync ({pending} bytes pending): {error}"
            ),
            Self::Undecodable { error, bytes } => write!(
                f,
                "the codec cannot decode a message from ovs-vswitchd: {error}; message: {}; \
                 add it to the codec's tests",
                Hex(bytes)
            ),
            Self::Refused { request, error } => {
                write!(f, "ovs-vswitchd refused {request}: {error}")
            }
            Self::Mismatch { step, detail } => write!(f, "{step}: {detail}"),
        }
    }
}

impl std::error::Error for InteropError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Testbed(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
