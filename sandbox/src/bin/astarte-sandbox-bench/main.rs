//! `astarte-sandbox-bench`: the processes `scripts/bench` runs, each lean and single-purpose so
//! that none of them becomes the bottleneck it is meant to measure.
//!
//! | subcommand | what it is |
//! |---|---|
//! | `sandbox` | the sandbox (Pairing, CA, mosquitto) without an observer, plus a publisher identity for `mosquitto_pub` |
//! | `client` | the D-Bus load generator: `Send(s, s, v)` with N calls in flight |
//! | `wait-state` | waits for the agent's `State` property (e.g. `connected`) |
//! | `null-service` | a do-nothing D-Bus service whose `Send(s, s, v)` returns at once |
//! | `subscribe` | an MQTT subscriber (observer identity) that timestamps every arrival |
//! | `feed` | lines for `mosquitto_pub -l`, each carrying its send time |
//!
//! Times are microseconds of `CLOCK_MONOTONIC`, which every process on the machine shares: a
//! value carries its send time, and the subscriber subtracts it from its arrival time.
//! Every subcommand prints its result as one JSON line on stdout.

mod client;
mod feed;
mod null_service;
mod sandbox;
mod subscribe;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "Load generator, null service, subscriber and feeder for scripts/bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the sandbox in DIR with a quiet broker log; print one JSON line describing it and
    /// the publisher identity, then run until SIGINT/SIGTERM.
    Sandbox {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "test")]
        realm: String,
    },
    /// Call Send(interface, path, <double: send time>) COUNT times with IN_FLIGHT calls in
    /// flight, on the bus of DBUS_SESSION_BUS_ADDRESS.
    Client {
        #[arg(long, default_value = "org.astarte_platform.Agent1")]
        dest: String,
        #[arg(long)]
        interface: String,
        #[arg(long)]
        path: String,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 32)]
        in_flight: u32,
        /// Bus connections to spread the calls over.
        #[arg(long, default_value_t = 1)]
        connections: u32,
    },
    /// Wait until the agent's `State` property is STATE (e.g. `connected`).
    WaitState {
        #[arg(long, default_value = "org.astarte_platform.Agent1")]
        dest: String,
        #[arg(long, default_value = "connected")]
        state: String,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Own NAME on the bus of DBUS_SESSION_BUS_ADDRESS and answer Send(s, s, v) at once, until
    /// SIGINT/SIGTERM.
    NullService {
        #[arg(long)]
        name: String,
    },
    /// Subscribe to TOPIC on the sandbox broker in DIR as the observer; print `ready` once
    /// subscribed, then a JSON summary after COUNT messages (or IDLE_SECS without one).
    Subscribe {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u64,
        #[arg(long, value_enum)]
        format: Format,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        #[arg(long, default_value_t = 20)]
        idle_secs: u64,
    },
    /// Write COUNT lines of WIDTH digits (the send time, zero-padded) to stdout.
    Feed {
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 16)]
        width: usize,
    },
}

/// How a message carries its send time.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// A BSON document `{"v": <double>}`, as the agent publishes an individual double.
    Bson,
    /// Decimal digits, as `feed` writes them.
    Text,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Sandbox { dir, realm } => sandbox::run(dir, realm),
        Command::Client {
            dest,
            interface,
            path,
            count,
            in_flight,
            connections,
        } => client::run(client::Options {
            dest,
            interface,
            path,
            count,
            in_flight,
            connections,
        }),
        Command::WaitState {
            dest,
            state,
            timeout_secs,
        } => client::wait_state(&dest, &state, Duration::from_secs(timeout_secs)),
        Command::NullService { name } => null_service::run(name),
        Command::Subscribe {
            dir,
            topic,
            count,
            format,
            qos,
            idle_secs,
        } => subscribe::run(subscribe::Options {
            dir,
            topic,
            count,
            format,
            qos,
            idle_secs,
        }),
        Command::Feed { count, width } => feed::run(count, width),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = format!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Microseconds of `CLOCK_MONOTONIC` (shared by all processes; exact in an f64 for centuries).
fn now_us() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
    let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let micros = u64::try_from(ts.tv_nsec()).unwrap_or(0) / 1000;
    secs * 1_000_000 + micros
}

/// A single-threaded runtime, like the agent's: the measured processes use one core each.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Value at quantile `q` (0..=1) of sorted `values`, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits for SIGINT or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
