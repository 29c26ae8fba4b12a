//! The bodies of the controller's northbound API (`docs/api.md`): what
//! `iris-controller` serves and takes, and what its callers (the gateway,
//! the testbed, the broker) read and send. Plain data: the checks that need
//! the controller's topology and registry stay in the controller.
//!
//! Every type derives `ToSchema`, so the OpenAPI document the controller
//! serves at `/v1/openapi.json` is generated from the same definitions the
//! wire uses.

mod events;
pub mod generated;
mod hosts;
mod problem;
mod registry;
mod vis;

pub use events::{Lagged, NorthEvent, RegistryEvent, SseEvent, SseParser};
pub use hosts::{Health, Healthz, HostInfo, HostSpec, RoleSpec, SwitchPort};
pub use problem::{FieldProblem, Problem};
pub use registry::{EntryBody, EntryInfo, LocationBody, VmPortInfo};
pub use vis::{SeedOutcome, SeedRow, ViSpec};
