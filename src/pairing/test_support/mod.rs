//! Test doubles shared by the pairing, TLS and provisioning tests: a tiny CA and a minimal
//! HTTP/1.1 server.

mod ca;
mod server;

pub(crate) use ca::TestCa;
pub(crate) use server::{Recorded, Reply, StubServer};
