//! An OVSDB client (RFC 7047) for Iris, and the management of Open vSwitch
//! built on it.
//!
//! Layers, bottom up:
//! - [`datum`], [`ops`], [`update`], [`jsonrpc`], [`session`]: the protocol
//!   without I/O — values, typed `transact` operations and results, monitor
//!   updates, framing, and the session state machine (request ids, echo,
//!   inactivity probe).
//! - [`client`]: the async tokio client over `unix:`, `tcp:` and `ssl:`
//!   remotes ([`remote`]; TLS through rustls): `transact`, `monitor` as a stream, a clean disconnect signal.
//! - [`vswitch`]: desired state for one host's switch — the integration
//!   bridge, the GRE tunnel mesh, VM ports tagged with their VI — planned
//!   against a local replica and applied as one transaction per step, plus a
//!   watch of interfaces and their ofports.
//!
//! Errors ([`error`]) are split by fault, and each message says what to do.

pub mod client;
pub mod datum;
pub mod error;
pub mod jsonrpc;
pub mod ops;
pub mod remote;
pub mod session;
pub mod update;
pub mod vswitch;

pub use client::{Client, Monitor, Options, Tls};
pub use datum::{Atom, Datum, Row, Uuid};
pub use error::{Disconnect, Error, ErrorKind, OvsdbError, ProtocolError, TransactionError};
pub use ops::{Condition, Mutation, Mutator, Operation, OperationResult, Transaction};
pub use remote::Remote;
pub use vswitch::{BridgeSpec, InterfaceEvent, Outcome, TunnelSpec, VmPortSpec, Vswitch};
