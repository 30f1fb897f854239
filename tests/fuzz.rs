//! Structure-aware fuzzing of every input the agent takes from outside, on stable Rust.
//!
//! Each target generates valid inputs, checks they are accepted (and round-trip where an
//! encoder exists), then mutates them and checks the code under test never panics and
//! refuses with a typed error. `FUZZ_MINUTES=m` runs every target for m minutes instead of
//! the fixed CI case count; `FUZZ_SEED` (default: a fixed seed, so CI makes the same cases
//! every run) and `FUZZ_CASE` replay a run (a case). See
//! `scripts/fuzz` and docs/reliability.md, "Fuzzing".

#[path = "fuzz/config.rs"]
mod config;
#[path = "fuzz/credentials.rs"]
mod credentials;
#[path = "fuzz/dbus.rs"]
mod dbus;
#[path = "fuzz/driver.rs"]
mod driver;
#[path = "fuzz/interface.rs"]
mod interface;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/pairing.rs"]
mod pairing;
#[path = "fuzz/payload.rs"]
mod payload;
#[path = "fuzz/purge.rs"]
mod purge;
#[path = "fuzz/store.rs"]
mod store;
#[path = "fuzz/topics.rs"]
mod topics;
#[path = "fuzz/values.rs"]
mod values;
