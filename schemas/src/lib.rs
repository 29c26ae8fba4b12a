//! The Iris shared data model and its generated JSON Schemas.

pub mod northbound;
