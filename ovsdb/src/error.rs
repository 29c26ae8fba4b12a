//! Errors, split by who is at fault: the caller (a bad remote, a desired state
//! that cannot be met), the transport (the session ended), the server (it
//! rejected a request and said why), or the peer's bytes (malformed JSON-RPC
//! or OVSDB). Every message says what to do next.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::remote::Remote;

/// The server sent something RFC 7047 does not allow: the peer is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// Where in the message the problem was, outermost first.
    pub context: String,
    /// What was wrong.
    pub detail: String,
}

impl ProtocolError {
    pub fn new(context: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            detail: detail.into(),
        }
    }

    /// Prefixes the location, so a nested decode error names the whole path
    /// (`table Interface: row 1f..: column ofport: ...`).
    pub fn within(mut self, outer: impl fmt::Display) -> Self {
        self.context = if self.context.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.context)
        };
        self
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed message from the OVSDB server ({}): {}; \
             this is a server or version incompatibility, report it with the server's version",
            self.context, self.detail
        )
    }
}

impl std::error::Error for ProtocolError {}

/// The `error` strings of RFC 7047 §4.1.3 and §5.2, plus those Open vSwitch adds.
/// Unknown strings survive as [`ErrorKind::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    ReferentialIntegrityViolation,
    ConstraintViolation,
    ResourcesExhausted,
    IoError,
    DuplicateUuidName,
    DomainError,
    RangeError,
    TimedOut,
    NotSupported,
    Aborted,
    NotOwner,
    SyntaxError,
    UnknownDatabase,
    UnknownMethod,
    Unknown(String),
}

impl ErrorKind {
    pub fn parse(s: &str) -> Self {
        match s {
            "referential integrity violation" => Self::ReferentialIntegrityViolation,
            "constraint violation" => Self::ConstraintViolation,
            "resources exhausted" => Self::ResourcesExhausted,
            "I/O error" => Self::IoError,
            "duplicate uuid-name" => Self::DuplicateUuidName,
            "domain error" => Self::DomainError,
            "range error" => Self::RangeError,
            "timed out" => Self::TimedOut,
            "not supported" => Self::NotSupported,
            "aborted" => Self::Aborted,
            "not owner" => Self::NotOwner,
            "syntax error" => Self::SyntaxError,
            "unknown database" => Self::UnknownDatabase,
            "unknown method" => Self::UnknownMethod,
            other => Self::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::ReferentialIntegrityViolation => "referential integrity violation",
            Self::ConstraintViolation => "constraint violation",
            Self::ResourcesExhausted => "resources exhausted",
            Self::IoError => "I/O error",
            Self::DuplicateUuidName => "duplicate uuid-name",
            Self::DomainError => "domain error",
            Self::RangeError => "range error",
            Self::TimedOut => "timed out",
            Self::NotSupported => "not supported",
            Self::Aborted => "aborted",
            Self::NotOwner => "not owner",
            Self::SyntaxError => "syntax error",
            Self::UnknownDatabase => "unknown database",
            Self::UnknownMethod => "unknown method",
            Self::Unknown(s) => s,
        }
    }

    /// What the reader of a log line should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::ReferentialIntegrityViolation => {
                "a row is still referenced, or a reference points to a missing row; \
                 remove the reference first (e.g. take the port out of Bridge.ports) and retry"
            }
            Self::ConstraintViolation => {
                "a value breaks the schema, most often a duplicate name in an indexed column; \
                 check for a row of the same name (ovs-vsctl list <table>) and pick another name"
            }
            Self::ResourcesExhausted | Self::IoError => {
                "the server could not commit; check ovsdb-server's log and its disk, then retry"
            }
            Self::DuplicateUuidName => {
                "two inserts in one transaction used the same uuid-name; this is a bug in the caller"
            }
            Self::DomainError | Self::RangeError => {
                "a mutation would leave a value out of its column's range; check the mutation"
            }
            Self::TimedOut => {
                "a wait operation's condition was not met in time; the database differs from what \
                 the caller expected, so re-read it and retry"
            }
            Self::NotSupported => "the server does not support this operation or mutator",
            Self::Aborted => "the transaction contained an abort operation",
            Self::NotOwner => "the transaction needs a lock this session does not hold",
            Self::SyntaxError => {
                "the request does not match the schema (unknown table or column, wrong type); \
                 check the server's schema version against the one this client expects"
            }
            Self::UnknownDatabase => {
                "the server does not serve that database; check the database name and the \
                 file given to ovsdb-server"
            }
            Self::UnknownMethod => "the server does not implement that JSON-RPC method",
            Self::Unknown(_) => "see the details and ovsdb-server's log",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OVSDB error object (`{"error": ..., "details": ...}`), or a bare error
/// string as Open vSwitch sends for some JSON-RPC failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsdbError {
    pub kind: ErrorKind,
    pub details: Option<String>,
}

impl OvsdbError {
    /// Reads an error as it appears in a JSON-RPC `error` member or an
    /// operation result.
    pub fn from_json(json: &serde_json::Value) -> Self {
        match json {
            serde_json::Value::String(s) => Self {
                kind: ErrorKind::parse(s),
                details: None,
            },
            serde_json::Value::Object(obj) => {
                let kind = match obj.get("error") {
                    Some(serde_json::Value::String(s)) => ErrorKind::parse(s),
                    other => ErrorKind::Unknown(
                        other.map_or_else(|| "(no error member)".to_owned(), ToString::to_string),
                    ),
                };
                let details = obj.get("details").and_then(|d| match d {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                });
                Self { kind, details }
            }
            other => Self {
                kind: ErrorKind::Unknown(other.to_string()),
                details: None,
            },
        }
    }
}

impl fmt::Display for OvsdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(details) = &self.details {
            write!(f, " ({details})")?;
        }
        write!(f, "; {}", self.kind.hint())
    }
}

/// Where a rejected transaction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedAt {
    /// Operation `index` (0-based) of the request, summarised as e.g. `insert into Port`.
    Operation { index: usize, summary: String },
    /// Every operation succeeded but the commit did not (RFC 7047 §4.1.3: the
    /// result array has one element more than the request).
    Commit,
}

/// The server rejected a transaction. Transactions are atomic: nothing of it
/// was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionError {
    pub failed_at: FailedAt,
    pub error: OvsdbError,
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failed_at {
            FailedAt::Operation { index, summary } => write!(
                f,
                "OVSDB transaction rejected at operation {index} ({summary}), nothing was \
                 committed: {}",
                self.error
            ),
            FailedAt::Commit => {
                write!(
                    f,
                    "OVSDB transaction failed to commit, nothing was committed: {}",
                    self.error
                )
            }
        }
    }
}

impl std::error::Error for TransactionError {}

/// Why a session ended. Cloneable so that every waiter learns the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// The server closed the connection.
    ClosedByServer,
    /// Every [`crate::Client`] handle was dropped, or the session was closed on purpose.
    ClosedByClient,
    /// Reading or writing the socket failed.
    Io {
        kind: io::ErrorKind,
        message: String,
    },
    /// Nothing arrived for a whole probe interval, not even the answer to our echo.
    ProbeTimeout { interval: Duration },
    /// The server sent bytes that are not RFC 7047 JSON-RPC.
    Protocol(ProtocolError),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClosedByServer => f.write_str(
                "the OVSDB server closed the connection; check that ovsdb-server is running \
                 and reconnect",
            ),
            Self::ClosedByClient => f.write_str("the session was closed by this client"),
            Self::Io { message, .. } => {
                write!(f, "the OVSDB connection failed ({message}); reconnect")
            }
            Self::ProbeTimeout { interval } => write!(
                f,
                "the OVSDB server did not answer for {:?} (not even an echo); it is hung or \
                 unreachable, reconnect",
                *interval * 2
            ),
            Self::Protocol(e) => write!(f, "{e}; the session was closed"),
        }
    }
}

/// Everything the client can fail with.
#[derive(Debug)]
pub enum Error {
    /// The remote string could not be parsed: the caller's configuration is wrong.
    Remote(crate::remote::RemoteError),
    /// Opening the socket failed.
    Connect { remote: Remote, source: io::Error },
    /// Opening the socket (and, for `ssl:`, the TLS handshake) did not
    /// finish in time.
    ConnectTimeout { remote: Remote, after: Duration },
    /// An `ssl:` remote without TLS settings in the options.
    NoTls { remote: Remote },
    /// The TLS handshake failed: most often a certificate that does not
    /// chain to the CA or does not name the server, on either side.
    Tls { remote: Remote, source: io::Error },
    /// The session ended before the answer arrived. Whether a transaction in
    /// flight was committed is unknown: re-read the database before retrying.
    Disconnected(Disconnect),
    /// The server answered a request with a JSON-RPC error.
    Rpc { method: String, error: OvsdbError },
    /// The server rejected a transaction.
    Transaction(TransactionError),
    /// The server's answer did not have the shape RFC 7047 gives it.
    Protocol(ProtocolError),
    /// The desired state cannot be reached from the current one (see [`crate::vswitch::PlanError`]).
    Plan(crate::vswitch::PlanError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Remote(e) => e.fmt(f),
            Self::Connect { remote, source } => {
                write!(f, "cannot connect to OVSDB at {remote}: {source}; ")?;
                f.write_str(match remote {
                    Remote::Unix(_) => {
                        "check that ovsdb-server runs with --remote=punix:<that path> \
                         and that this process may open the socket"
                    }
                    Remote::Tcp(_) => {
                        "check that ovsdb-server runs with --remote=ptcp:<port>:<ip> (or \
                         `ovs-vsctl set-manager ptcp:<port>`) and that no firewall is in the way"
                    }
                    Remote::Ssl(_) => {
                        "check that ovsdb-server runs with --remote=pssl:<port>:<ip> (or \
                         `ovs-vsctl set-manager pssl:<port>`) and that no firewall is in the way"
                    }
                })
            }
            Self::NoTls { remote } => write!(
                f,
                "{remote} needs a private key, certificate and CA certificate to speak TLS \
                 with; none were given"
            ),
            Self::Tls { remote, source } => write!(
                f,
                "TLS with OVSDB at {remote} failed: {source}; check that the server's \
                 certificate chains to our CA and names the host, and that ours chains to the \
                 CA the server trusts (`ovs-vsctl get-ssl` on the host)"
            ),
            Self::ConnectTimeout { remote, after } => write!(
                f,
                "connecting to OVSDB at {remote} took longer than {after:?}; check that the \
                 host is reachable"
            ),
            Self::Disconnected(d) => write!(
                f,
                "{d} (a transaction in flight may or may not have been committed; re-read before \
                 retrying)"
            ),
            Self::Rpc { method, error } => {
                write!(
                    f,
                    "the OVSDB server rejected the {method:?} request: {error}"
                )
            }
            Self::Transaction(e) => e.fmt(f),
            Self::Protocol(e) => e.fmt(f),
            Self::Plan(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Remote(e) => Some(e),
            Self::Connect { source, .. } | Self::Tls { source, .. } => Some(source),
            Self::Transaction(e) => Some(e),
            Self::Protocol(e) => Some(e),
            Self::Plan(e) => Some(e),
            Self::ConnectTimeout { .. }
            | Self::NoTls { .. }
            | Self::Disconnected(_)
            | Self::Rpc { .. } => None,
        }
    }
}

impl From<crate::remote::RemoteError> for Error {
    fn from(e: crate::remote::RemoteError) -> Self {
        Self::Remote(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<TransactionError> for Error {
    fn from(e: TransactionError) -> Self {
        Self::Transaction(e)
    }
}

impl From<crate::vswitch::PlanError> for Error {
    fn from(e: crate::vswitch::PlanError) -> Self {
        Self::Plan(e)
    }
}
