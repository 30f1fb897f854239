//! Astarte interfaces: the model, schema validation, endpoint matching and the registry.

pub mod endpoint;
pub mod model;

pub use endpoint::Endpoint;
pub use model::*;
