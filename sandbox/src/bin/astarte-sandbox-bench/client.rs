//! The D-Bus load generator: `in_flight` tasks share one connection (or a few, with
//! `connections`) and call `Send` in a loop
//! until `count` calls were made. The value is the call's send time, so a subscriber can
//! measure end-to-end latency. Nothing else runs in this process: no timeouts, no observer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zbus::zvariant::Value;

use crate::{BoxResult, now_us, quantile, runtime};

const OBJECT_PATH: &str = "/org/astarte_platform/Agent1";
const INTERFACE: &str = "org.astarte_platform.Agent1.Device";

pub struct Options {
    pub dest: String,
    pub interface: String,
    pub path: String,
    pub count: u64,
    pub in_flight: u32,
    /// Bus connections the calls are spread over (1: one application's connection).
    pub connections: u32,
}

#[derive(Default)]
struct Outcome {
    /// Round-trip time of each successful call, µs.
    rtt_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

pub fn run(opts: Options) -> BoxResult<()> {
    runtime()?.block_on(drive(opts))
}

async fn drive(opts: Options) -> BoxResult<()> {
    let mut connections = Vec::new();
    for _ in 0..opts.connections.max(1) {
        connections.push(zbus::Connection::session().await?);
    }
    let opts = Arc::new(opts);
    let next = Arc::new(AtomicU64::new(0));
    let start_us = now_us();
    let workers: Vec<_> = (0..opts.in_flight.max(1) as usize)
        .map(|i| {
            let connection = connections[i % connections.len()].clone();
            tokio::spawn(worker(connection, opts.clone(), next.clone()))
        })
        .collect();
    let mut total = Outcome::default();
    for worker in workers {
        let outcome = worker.await?;
        total.rtt_us.extend(outcome.rtt_us);
        total.errors += outcome.errors;
        if total.first_error.is_none() {
            total.first_error = outcome.first_error;
        }
    }
    let end_us = now_us();
    total.rtt_us.sort_unstable();
    let summary = serde_json::json!({
        "sent": opts.count,
        "ok": total.rtt_us.len(),
        "errors": total.errors,
        "first_error": total.first_error,
        "start_us": start_us,
        "end_us": end_us,
        "rtt_p50_us": quantile(&total.rtt_us, 0.50),
        "rtt_p99_us": quantile(&total.rtt_us, 0.99),
        "rtt_max_us": total.rtt_us.last().copied().unwrap_or(0),
    });
    println!("{summary}");
    Ok(())
}

async fn worker(connection: zbus::Connection, opts: Arc<Options>, next: Arc<AtomicU64>) -> Outcome {
    let mut outcome = Outcome {
        rtt_us: Vec::with_capacity((opts.count / u64::from(opts.in_flight.max(1)) + 1) as usize),
        ..Outcome::default()
    };
    while next.fetch_add(1, Ordering::Relaxed) < opts.count {
        let sent_us = now_us();
        let body = (
            opts.interface.as_str(),
            opts.path.as_str(),
            Value::F64(sent_us as f64),
        );
        let reply = connection
            .call_method(
                Some(opts.dest.as_str()),
                OBJECT_PATH,
                Some(INTERFACE),
                "Send",
                &body,
            )
            .await;
        match reply {
            Ok(_) => outcome.rtt_us.push(now_us() - sent_us),
            Err(err) => {
                outcome.errors += 1;
                if outcome.first_error.is_none() {
                    outcome.first_error = Some(err.to_string());
                }
            }
        }
    }
    outcome
}

/// Polls the `State` property of `dest` every 100 ms until it is `state`.
pub fn wait_state(dest: &str, state: &str, timeout: Duration) -> BoxResult<()> {
    runtime()?.block_on(async {
        let connection = zbus::Connection::session().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let last = match current_state(&connection, dest).await {
                Ok(current) if current == state => return Ok(()),
                Ok(current) => format!("state {current:?}"),
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!("{dest} not {state:?} within {timeout:?}: {last}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn current_state(connection: &zbus::Connection, dest: &str) -> BoxResult<String> {
    let reply = connection
        .call_method(
            Some(dest),
            OBJECT_PATH,
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(INTERFACE, "State"),
        )
        .await?;
    let body = reply.body();
    match body.deserialize::<Value<'_>>()? {
        Value::Str(s) => Ok(s.as_str().to_owned()),
        other => Err(format!("State is {other:?}, not a string").into()),
    }
}
