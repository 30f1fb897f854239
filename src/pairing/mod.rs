//! Pairing API v1 client: registration, device info (status and broker URL), and MQTT client
//! certificates from a CSR. See ASTARTE-PROTOCOL.md section 2.

mod client;
pub mod csr;
mod error;
mod types;
mod web;

pub use client::PairingClient;
pub use error::PairingError;
pub use types::{BrokerUrl, DeviceInfo, DeviceStatus, InvalidBrokerUrl};
