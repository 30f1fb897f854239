//! The client apps use, from the library.

pub use astarte_agent::dbus::client::{DataReceivedStream, DeviceProxy};
