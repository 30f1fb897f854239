//! Astarte values: type checks and limits, BSON payloads, purge lists, D-Bus conversion.

pub mod dbus;
mod format;
pub mod payload;
pub mod purge;
pub mod value;

pub use dbus::{ConversionError, from_variant, signature_of, to_variant};
pub use payload::{
    PayloadError, Received, ReceivedObject, decode_individual, decode_object, encode_individual,
    encode_object,
};
pub use purge::{PurgeError, decode_purge_list, encode_purge_list};
pub use value::{AstarteValue, ValueError};
