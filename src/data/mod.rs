//! Astarte values: type checks and limits, BSON payloads, purge lists.

pub mod value;

pub use value::AstarteValue;
