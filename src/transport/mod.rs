//! The Astarte MQTT v1 transport over rumqttc and rustls.

pub mod driver;
pub mod handshake;
pub mod receive;
pub mod session;
pub mod topic;
pub mod tracker;
