//! The end of a run, once the clients stopped sending: the backlog drains. Every stored
//! message the agent accepted must arrive at Astarte, and every command sent must reach
//! its final result, within one deadline.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::{Collected, CommandStats};
use crate::data::{DataStats, Stream};

/// Waits at most `within` for every accepted stored message to arrive (`arrivals` ticks
/// with each arrival) and for the commands client to finish; at the deadline the client is
/// told to stop (`drained`) and reports what it saw until then.
pub async fn drain(
    within: Duration,
    data: &DataStats,
    collected: &Mutex<Collected>,
    arrivals: &mut watch::Receiver<u64>,
    commands_client: JoinHandle<CommandStats>,
    drained: &CancellationToken,
) -> CommandStats {
    let deadline = Instant::now() + within;
    let delivered = || {
        let collected = collected.lock().expect("collected");
        let has = |name: &str, stream: &Stream| {
            let seen: HashSet<i32> = collected
                .stored
                .get(name)
                .into_iter()
                .flatten()
                .copied()
                .collect();
            stream.accepted.iter().all(|value| seen.contains(value))
        };
        has("stored", &data.stored) && has("stored object", &data.stored_object)
    };
    let _ = tokio::time::timeout(within, async {
        while !delivered() && arrivals.changed().await.is_ok() {}
    })
    .await;
    let mut commands_client = commands_client;
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, &mut commands_client).await {
        Ok(stats) => stats,
        Err(_) => {
            drained.cancel();
            commands_client.await
        }
    }
    .expect("commands client")
}
