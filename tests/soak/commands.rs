//! Astarte's side: the collector (an observer that records everything the device publishes)
//! and the remote-commands client, which publishes requests as the cloud would and sends a
//! request again when no final result came back for a while (docs/commands.md's advice after a
//! crash: its id makes that safe).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astarte_sandbox::{Observed, Observer};

use crate::common::DEVICE_PROPERTIES;
use bson::doc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const REQUESTS: &str = "org.astarte-platform.agent.Commands";
pub const RESULTS: &str = "org.astarte-platform.agent.CommandResults";
pub const COMMAND: &str = "record";
/// A request with no final result this long after it was last sent is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(30);
const SLEEPS: [&str; 4] = ["0", "0.2", "1", "3"];

/// The `[commands]` section that runs `tests/soak/record-command` as [`COMMAND`], which
/// records each run in `record`.
pub fn config(record: &std::path::Path) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/soak/record-command");
    format!(
        "[commands]\nenabled = true\nhandler_wait_seconds = 0\n\n\
         [commands.{COMMAND}]\nexec = [{script:?}, {record:?}]\nargs_pattern = \"[a-z0-9.]{{1,16}}\"\ntimeout_seconds = 30\n"
    )
}

/// One result message.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub status: String,
    pub at: Instant,
}

/// What the observer saw, by kind.
#[derive(Debug, Default)]
pub struct Collected {
    /// Sequence numbers of stored messages, per stream name, in arrival order.
    pub stored: BTreeMap<&'static str, Vec<i32>>,
    /// Results per command id, in arrival order.
    pub results: BTreeMap<String, Vec<CommandResult>>,
    /// Messages per topic suffix (after the device's base topic).
    pub per_topic: BTreeMap<String, u64>,
    /// Every message on a device property topic and on the producer purge list, in arrival
    /// order (topic suffix, payload): what Astarte knows of the device's properties.
    pub property_log: Vec<(String, Vec<u8>)>,
}

pub fn is_final(status: &str) -> bool {
    !matches!(status, "received" | "running")
}

impl Collected {
    pub fn final_status(&self, id: &str) -> Option<&str> {
        self.results
            .get(id)?
            .iter()
            .find(|r| is_final(&r.status))
            .map(|r| r.status.as_str())
    }
}

/// Topics of the device the checks look at.
#[derive(Debug, Clone)]
pub struct Topics {
    pub base: String,
    pub stored: String,
    pub stored_object: String,
    pub results: String,
    pub requests: String,
}

/// Records everything the observer receives until `stop`.
pub async fn collect(
    mut observer: Observer,
    topics: Topics,
    collected: Arc<Mutex<Collected>>,
    arrived: watch::Sender<u64>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            m = observer.next(Duration::from_secs(1)) => m,
            () = stop.cancelled() => return,
        };
        let Some(message) = message else { continue };
        record(&topics, &collected, &message);
        // After recording: whoever wakes up sees this message.
        arrived.send_modify(|n| *n += 1);
    }
}

fn record(topics: &Topics, collected: &Mutex<Collected>, message: &Observed) {
    let Some(suffix) = message.topic.strip_prefix(&topics.base) else {
        return;
    };
    let document = astarte_sandbox::decode_bson(&message.payload).ok();
    let mut collected = collected.lock().expect("collected");
    *collected.per_topic.entry(suffix.to_owned()).or_default() += 1;
    if suffix.starts_with(&format!("/{DEVICE_PROPERTIES}/"))
        || suffix == "/control/producer/properties"
    {
        collected
            .property_log
            .push((suffix.to_owned(), message.payload.clone()));
    }
    let Some(document) = document else { return };
    if message.topic == topics.stored {
        if let Ok(v) = document.get_i32("v") {
            collected.stored.entry("stored").or_default().push(v);
        }
    } else if message.topic == topics.stored_object {
        if let Ok(v) = document.get_document("v").and_then(|v| v.get_i32("seq")) {
            collected.stored.entry("stored object").or_default().push(v);
        }
    } else if message.topic == topics.results
        && let Ok(v) = document.get_document("v")
        && let (Ok(id), Ok(status)) = (v.get_str("id"), v.get_str("status"))
    {
        collected
            .results
            .entry(id.to_owned())
            .or_default()
            .push(CommandResult {
                status: status.to_owned(),
                at: Instant::now(),
            });
    }
}

/// One request the client made.
#[derive(Debug, Clone)]
pub struct Sent {
    pub first: Instant,
    pub last: Option<Instant>,
    pub sends: u32,
    pub failed_sends: u32,
    pub sleep: &'static str,
}

#[derive(Debug, Default)]
pub struct CommandStats {
    pub sent: BTreeMap<String, Sent>,
}

impl CommandStats {
    pub fn resends(&self) -> u32 {
        self.sent.values().map(|s| s.sends.saturating_sub(1)).sum()
    }
}

async fn publish(publisher: &Observer, topics: &Topics, id: &str, sent: &mut Sent) {
    let payload =
        doc! {"v": {"id": id, "command": COMMAND, "args": [id, sent.sleep], "timeoutSeconds": 0}};
    let bytes = payload.to_vec().expect("BSON encodes");
    match publisher.publish(&topics.requests, bytes, 1).await {
        Ok(()) => {
            sent.sends += 1;
            sent.last = Some(Instant::now());
        }
        // The broker is down or paused: try again at the next resend round.
        Err(_) => sent.failed_sends += 1,
    }
}

/// Resends every request that has no final result and was last sent long enough ago.
async fn resend_stale(
    publisher: &Observer,
    topics: &Topics,
    stats: &mut CommandStats,
    collected: &Mutex<Collected>,
    after: Duration,
) {
    let stale: Vec<String> = {
        let collected = collected.lock().expect("collected");
        stats
            .sent
            .iter()
            .filter(|(id, s)| {
                collected.final_status(id).is_none() && s.last.is_none_or(|t| t.elapsed() >= after)
            })
            .map(|(id, _)| id.clone())
            .collect()
    };
    for id in stale {
        if let Some(sent) = stats.sent.get_mut(&id) {
            publish(publisher, topics, &id, sent).await;
        }
    }
}

/// Sends a new request every 1–3 s until `stop`; then, until `drained` fires, keeps
/// sending again those with no final result.
pub async fn run(
    publisher: Observer,
    topics: Topics,
    collected: Arc<Mutex<Collected>>,
    seed: u64,
    stop: CancellationToken,
    drained: CancellationToken,
) -> CommandStats {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = CommandStats::default();
    let mut n = 0u32;
    while !stop.is_cancelled() {
        let pause = Duration::from_millis(rng.u64(1000..3000));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => break,
        }
        let id = format!("c{n:05}");
        n += 1;
        let mut sent = Sent {
            first: Instant::now(),
            last: None,
            sends: 0,
            failed_sends: 0,
            sleep: SLEEPS[rng.usize(0..SLEEPS.len())],
        };
        publish(&publisher, &topics, &id, &mut sent).await;
        stats.sent.insert(id, sent);
        resend_stale(&publisher, &topics, &mut stats, &collected, RESEND_AFTER).await;
    }
    // The drain: the agent is up and faults are over; resend sooner.
    while !drained.is_cancelled() {
        let done = {
            let collected = collected.lock().expect("collected");
            stats
                .sent
                .keys()
                .all(|id| collected.final_status(id).is_some())
        };
        if done {
            break;
        }
        resend_stale(
            &publisher,
            &topics,
            &mut stats,
            &collected,
            Duration::from_secs(10),
        )
        .await;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = drained.cancelled() => break,
        }
    }
    stats
}
