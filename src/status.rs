//! `astarte-agent status`: the one-command health view. Reads the running daemon over D-Bus
//! (the bus the configuration names) and prints what an operator checks first. The exit
//! status says healthy (0: connected), degraded (1: running, not connected) or not running
//! (2: no daemon on the bus, or the bus or configuration cannot be read).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use crate::config::{BusKind, Config};
use crate::dbus::client::DeviceProxy;
use crate::error_chain::error_chain;

const HEALTHY: u8 = 0;
const DEGRADED: u8 = 1;
const NOT_RUNNING: u8 = 2;
/// A daemon that does not answer within this time counts as not running.
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
    let bus = match Config::load(config) {
        Ok(config) => config.bus,
        Err(error) => {
            eprintln!("{}", error_chain(&error));
            return ExitCode::from(NOT_RUNNING);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("couldn't start: {error}");
            return ExitCode::from(NOT_RUNNING);
        }
    };
    let report = runtime.block_on(async {
        tokio::time::timeout(CALL_TIMEOUT, read(bus))
            .await
            .unwrap_or_else(|_| Err(zbus::Error::Failure("the agent did not answer".into())))
    });
    match report {
        Ok(report) => {
            if as_json {
                print_json(&report);
            } else {
                print_text(&report);
            }
            ExitCode::from(if report.state == "connected" {
                HEALTHY
            } else {
                DEGRADED
            })
        }
        Err(error) => {
            if as_json {
                println!(
                    "{}",
                    json!({ "running": false, "error": error.to_string() })
                );
            } else {
                println!("astarte-agent is not running ({error})");
            }
            ExitCode::from(NOT_RUNNING)
        }
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

fn print_json(report: &Report) {
    let (at, line) = &report.last_error;
    let value = json!({
        "running": true,
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
