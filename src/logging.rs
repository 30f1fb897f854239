//! Logging: journald with structured fields under systemd, human-readable stderr otherwise.
//! The filter comes from `ASTARTE_AGENT_LOG`, default [`DEFAULT_FILTER`] (`info`, less the
//! per-call spans of zbus's object server): comma-separated directives, each a level
//! (`debug`), a target (`rumqttc`: every level) or both (`astarte_agent=debug`); a target
//! matches the module paths it prefixes. That is `tracing_subscriber`'s `Targets` syntax, the
//! `EnvFilter` one without span and field-value filters: `EnvFilter` would link a regex engine,
//! a twentieth of the binary. A value that doesn't parse means the default.
//! The last warning or error is also kept for the `LastError` D-Bus property.

use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

pub const LOG_ENV: &str = "ASTARTE_AGENT_LOG";

/// `info`, less zbus's object server: it opens an info span for every D-Bus call it
/// dispatches, and the log layer formats the whole message into it (a large share of the
/// CPU time of a `Send` call), for no line of its own.
const DEFAULT_FILTER: &str = "info,zbus::object_server=warn";

static LAST_PROBLEM: Mutex<Option<(i64, String)>> = Mutex::new(None);

pub fn init() {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|spec| parse_filter(&spec))
        .or_else(|| parse_filter(DEFAULT_FILTER))
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(LastProblem);
    // systemd sets JOURNAL_STREAM when stderr goes to the journal: then write native entries,
    // with the fields of events and spans as journal fields (`INTERFACE`, `DEVICE_ID`, ...).
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        registry
            .with(
                journald
                    .with_syslog_identifier("astarte-agent".into())
                    .with_field_prefix(None),
            )
            .init();
        return;
    }
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .init();
}

/// `ASTARTE_AGENT_LOG`'s directives; `None` if one doesn't parse. Empty directives are skipped
/// (`info,` is `info`) and no directive at all logs nothing, as `EnvFilter` did.
fn parse_filter(spec: &str) -> Option<Targets> {
    let directives: Vec<&str> = spec.split(',').filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Some(Targets::new());
    }
    directives.join(",").parse().ok()
}

/// The last warning or error logged: when (ms since the epoch) and what.
pub fn last_problem() -> Option<(i64, String)> {
    LAST_PROBLEM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Keeps the last warning or error, as one line: the message, then its fields.
struct LastProblem;

impl<S: Subscriber> Layer<S> for LastProblem {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let text = if line.fields.is_empty() {
            line.message
        } else {
            format!("{}:{}", line.message, line.fields)
        };
        *LAST_PROBLEM
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((crate::clock::now_ms(), text));
    }
}

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn filters_take_levels_and_targets() {
        let all_debug = parse_filter("debug").unwrap();
        assert!(all_debug.would_enable("rumqttc::state", &Level::DEBUG));
        assert!(!all_debug.would_enable("rumqttc::state", &Level::TRACE));

        let split = parse_filter("astarte_agent=debug,rumqttc=warn,").unwrap();
        assert!(split.would_enable("astarte_agent::transport", &Level::DEBUG));
        assert!(!split.would_enable("rumqttc::state", &Level::INFO));
        assert!(split.would_enable("rumqttc::state", &Level::WARN));
        assert!(!split.would_enable("zbus", &Level::ERROR));

        assert!(
            !parse_filter("")
                .unwrap()
                .would_enable("zbus", &Level::ERROR)
        );
        assert!(parse_filter("astarte_agent=loud").is_none());
        assert!(parse_filter("a=info=debug").is_none());
    }
}
