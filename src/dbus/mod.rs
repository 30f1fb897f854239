//! The D-Bus face of the agent: `org.astarte_platform.Agent1` on the system (or session) bus.

pub mod client;
pub mod commands;
pub mod error;
pub mod service;
pub mod signals;

pub const BUS_NAME: &str = "org.astarte_platform.Agent1";
pub const OBJECT_PATH: &str = "/org/astarte_platform/Agent1";
pub const INTERFACE_NAME: &str = "org.astarte_platform.Agent1.Device";
