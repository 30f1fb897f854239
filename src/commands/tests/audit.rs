//! The audit trail: every request and every result is one log event whose fields become
//! journal fields (tracing-journald upper-cases field names: `command_id` is `COMMAND_ID`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

use super::*;

type Events = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// Keeps every event's fields (the message under `message`).
struct Keep(Events);

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S: Subscriber> Layer<S> for Keep {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_request_and_result_is_logged_with_id_name_status_and_exit_code() {
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(Keep(events.clone())));
    // tracing-core asks only the *calling thread's* subscriber about a new call site while
    // a single scoped subscriber exists: engine tests running beside this one would mark
    // the engine's call sites "never". A second live dispatcher makes it ask all of them;
    // the rebuild fixes call sites registered before.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    tracing::callsite::rebuild_interest_cache();
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![("hello", shell("exit 0"))])).await;
    engine.send(request("1", "hello", &[])).await;
    engine.until_final("1").await;
    engine.stop().await;

    let events = events.lock().unwrap();
    let with = |message: &str| -> Vec<&BTreeMap<String, String>> {
        events
            .iter()
            .filter(|fields| fields.get("message").map(String::as_str) == Some(message))
            .collect()
    };
    let requests = with("command request");
    assert_eq!(requests.len(), 1, "{events:?}");
    assert_eq!(requests[0]["command_id"], "1");
    assert_eq!(requests[0]["command_name"], "hello");
    let results = with("command result");
    let logged: Vec<(&str, &str, &str, &str)> = results
        .iter()
        .map(|fields| {
            (
                fields["command_id"].as_str(),
                fields["command_name"].as_str(),
                fields["status"].as_str(),
                fields["exit_code"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        logged,
        [
            ("1", "hello", "received", "-1"),
            ("1", "hello", "running", "-1"),
            ("1", "hello", "completed", "0")
        ]
    );
}
