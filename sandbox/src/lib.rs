//! A local Astarte stand-in for astarte-agent's end-to-end tests and demo (never shipped).
//!
//! [`Sandbox::start`] brings up, on free loopback ports and in its own folder:
//! a test CA ([`ca`]), mosquitto configured like Astarte's broker ([`broker`]), a Pairing API
//! server answering like Astarte 1.3/1.4 ([`pairing`]) and, on demand, an [`Observer`] that sees
//! every message of the realm. Dropping the sandbox kills mosquitto and stops the server.
//!
//! | Concern | File |
//! |---|---|
//! | CA, certificate issuing and verification | `ca.rs` |
//! | mosquitto process and config | `broker.rs` |
//! | reading mosquitto's log | `events.rs` |
//! | Pairing API | `pairing/` |
//! | Pairing API alone, without a broker (unit tests) | `stand_in.rs` |
//! | agent JWTs | `token.rs` |
//! | observer: `mosquitto_sub` receives, a rumqttc client publishes | `observer/`, `tls.rs` |
//! | payload decoding | `payload.rs` |
//! | `sandbox.env` | `env.rs` |
//! | software TPM (swtpm) for the TPM backend's tests | `tpm.rs` |
//! | power cuts: a FUSE filesystem that loses what was not fsynced | `lazyfs/` |

mod broker;
mod ca;
mod env;
mod events;
mod lazyfs;
mod observer;
mod pairing;
mod payload;
mod sandbox;
mod stand_in;
mod tls;
mod token;
mod tpm;

pub use broker::BrokerError;
pub use ca::{CaError, Identity, TestCa, Verification};
pub use env::{ENV_FILE, EnvError, TOKEN_FILE, observer_config_from_dir};
pub use events::{BrokerEvent, LoggedPublish, parse_events};
pub use lazyfs::{LazyFs, LazyStats};
pub use observer::{Observed, Observer, ObserverConfig, ObserverError};
pub use pairing::{DeviceStatus, PairingError, PairingState, RequestRecord, StateError};
pub use payload::{PayloadError, decode_bson, decode_purge_list, describe, encode_purge_list};
pub use sandbox::{Sandbox, SandboxError, SandboxOptions};
pub use stand_in::{PairingOptions, PairingStandIn, STAND_IN_BROKER_URL};
pub use tls::{TlsError, client_config};
pub use token::TokenError;
pub use tpm::Swtpm;
