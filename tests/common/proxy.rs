//! The client apps use, from the library.

#[allow(unused_imports)] // each test binary uses a different part
pub use astarte_agent::dbus::client::{CommandsProxy, DataReceivedStream, DeviceProxy};
