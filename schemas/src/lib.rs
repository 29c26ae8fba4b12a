//! The Iris shared data model and its generated JSON Schemas.

pub mod broker;
pub mod northbound;
