//! `astarte-agent status`: the one-command health view. Reads the running daemon over D-Bus
//! (the bus the configuration names) and prints what an operator checks first. The exit
//! status follows the LSB convention that `systemctl status` uses, so scripts can rely on it:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | running and connected |
//! | 150 | running but not connected (degraded); in the LSB range reserved for applications |
//! | 3 | not running: no agent owns its name on the bus |
//! | 4 | status unknown: the configuration or the bus cannot be read, or the agent did not answer |
//!
//! `--json` exits with the same codes and always prints one JSON object.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use crate::config::{BusKind, Config};
use crate::dbus::client::DeviceProxy;
use crate::error_chain::error_chain;

/// What `status` found, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Connected,
    Degraded,
    NotRunning,
    Unknown,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Connected => 0,
            Verdict::Degraded => 150,
            Verdict::NotRunning => 3,
            Verdict::Unknown => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verdict::Connected => "connected",
            Verdict::Degraded => "degraded",
            Verdict::NotRunning => "not-running",
            Verdict::Unknown => "unknown",
        }
    }
}

/// A daemon that does not answer within this time leaves the status unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What `status` shows.
struct Report {
    state: String,
    device_id: String,
    realm: String,
    broker: String,
    certificate_expiry_ms: i64,
    queued_messages: u64,
    last_error: (i64, String),
    interfaces: Vec<String>,
    store_bytes: u64,
}

pub fn run(config: &Path, as_json: bool) -> ExitCode {
    let verdict = match Config::load(config) {
        Ok(config) => report(config.bus, as_json),
        Err(error) => {
            let message = format!("status unknown: {}", error_chain(&error));
            print_failure(Verdict::Unknown, &message, as_json);
            Verdict::Unknown
        }
    };
    ExitCode::from(verdict.exit_code())
}

fn report(bus: BusKind, as_json: bool) -> Verdict {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            print_failure(
                Verdict::Unknown,
                &format!("couldn't start: {error}"),
                as_json,
            );
            return Verdict::Unknown;
        }
    };
    let report = runtime.block_on(async {
        tokio::time::timeout(CALL_TIMEOUT, read(bus))
            .await
            .unwrap_or_else(|_| Err(zbus::Error::Failure("the agent did not answer".into())))
    });
    match report {
        Ok(report) => {
            let verdict = if report.state == "connected" {
                Verdict::Connected
            } else {
                Verdict::Degraded
            };
            if as_json {
                print_json(&report, verdict);
            } else {
                print_text(&report);
            }
            verdict
        }
        Err(error) => {
            let verdict = classify(&error);
            let message = match verdict {
                Verdict::NotRunning => format!("astarte-agent is not running ({error})"),
                _ => format!("status unknown: {}", error_chain(&error)),
            };
            print_failure(verdict, &message, as_json);
            verdict
        }
    }
}

/// Nobody owns the agent's name: not running. Anything else (no bus, access denied, no
/// answer in time) leaves it unknown.
fn classify(error: &zbus::Error) -> Verdict {
    match error {
        zbus::Error::FDO(fdo) => match **fdo {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                Verdict::NotRunning
            }
            _ => Verdict::Unknown,
        },
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            Verdict::NotRunning
        }
        _ => Verdict::Unknown,
    }
}

/// Not running or unknown: one line on stdout, or one JSON object with `--json`.
fn print_failure(verdict: Verdict, message: &str, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({ "running": false, "status": verdict.name(), "error": message })
        );
    } else {
        println!("{message}");
    }
}

async fn read(bus: BusKind) -> zbus::Result<Report> {
    let connection = match bus {
        BusKind::System => zbus::Connection::system().await?,
        BusKind::Session => zbus::Connection::session().await?,
    };
    let agent = DeviceProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    Ok(Report {
        state: agent.state().await?,
        device_id: agent.device_id().await?,
        realm: agent.realm().await?,
        broker: agent.broker().await?,
        certificate_expiry_ms: agent.certificate_expiry().await?,
        queued_messages: agent.queued_messages().await?,
        last_error: agent.last_error().await?,
        interfaces: agent.interfaces().await?,
        store_bytes: agent.store_bytes().await?,
    })
}

fn print_text(report: &Report) {
    let or_none = |text: &str| {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.to_owned()
        }
    };
    println!("state:               {}", report.state);
    println!("device:              {}", report.device_id);
    println!("realm:               {}", report.realm);
    println!("broker:              {}", or_none(&report.broker));
    println!(
        "certificate expires: {}",
        or_none(&format_time(report.certificate_expiry_ms))
    );
    println!("queued messages:     {}", report.queued_messages);
    let (at, line) = &report.last_error;
    if *at > 0 {
        println!("last error:          {} {line}", format_time(*at));
    } else {
        println!("last error:          -");
    }
    println!("store size:          {} bytes", report.store_bytes);
    println!("interfaces:          {}", report.interfaces.len());
    for interface in &report.interfaces {
        println!("  {interface}");
    }
}

fn print_json(report: &Report, verdict: Verdict) {
    let (at, line) = &report.last_error;
    let value = json!({
        "running": true,
        "status": verdict.name(),
        "state": report.state,
        "device_id": report.device_id,
        "realm": report.realm,
        "broker": report.broker,
        "certificate_expiry_ms": report.certificate_expiry_ms,
        "queued_messages": report.queued_messages,
        "last_error": if *at > 0 { json!({ "at_ms": at, "message": line }) } else { json!(null) },
        "store_bytes": report.store_bytes,
        "interfaces": report.interfaces,
    });
    println!("{value}");
}

/// `YYYY-MM-DD hh:mm:ss UTC` from ms since the epoch; empty for 0.
fn format_time(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn times_are_printed_as_utc_calendar_dates() {
        assert_eq!(format_time(0), "");
        assert_eq!(format_time(1_000), "1970-01-01 00:00:01 UTC");
        assert_eq!(format_time(1_803_865_611_000), "2027-03-01 01:46:51 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
