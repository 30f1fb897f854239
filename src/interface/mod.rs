//! Astarte interfaces: the model, schema validation, endpoint matching and the registry.

pub mod endpoint;
pub mod error;
pub mod lookup;
pub mod model;
pub mod path;
pub mod registry;
pub mod runtime;
pub mod schema;
#[cfg(test)]
mod test_support;
pub mod validate;
mod validate_mapping;
mod validate_set;

pub use endpoint::{Endpoint, EndpointError, Level};
pub use error::{InterfaceError, Location};
pub use lookup::PathError;
pub use model::*;
pub use path::{ConcretePath, PathSyntaxError};
pub use registry::{LoadProblem, Registry, RegistryError};
