//! The Astarte MQTT v1 transport over rumqttc and rustls.

pub mod driver;
mod feed;
pub mod handshake;
mod incoming;
mod phase;
mod poison;
pub mod receive;
mod replay;
pub mod resume;
pub mod session;
#[cfg(test)]
mod tests;
pub mod tracker;
