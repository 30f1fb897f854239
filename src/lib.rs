#![doc = include_str!("../README.md")]

pub mod backoff;
pub mod credentials;
pub mod data;
pub mod interface;
pub mod pairing;
pub mod provisioning;
pub mod tls;
