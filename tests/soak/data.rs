//! The D-Bus client: a mixed stream of every retention, properties set and unset, and
//! object-aggregated datastreams, one call after the other, whatever the agent is going
//! through. Stored values carry a sequence number; each call's outcome is recorded so the
//! checks know which ones the agent accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zbus::zvariant::Value;

use crate::common::{DEVICE_DATASTREAM, DEVICE_OBJECT, DEVICE_PROPERTIES, DeviceProxy};

pub const STORED_PATH: &str = "/stored/value";
pub const STORED_OBJECT: &str = "org.astarte-platform.soak.StoredObject";
pub const STORED_OBJECT_PATH: &str = "/g1";
/// One call every this long: about 25 calls a second.
const PACE: Duration = Duration::from_millis(40);
/// A call without an answer this long is counted as uncertain.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// What became of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// A typed refusal of the agent (e.g. `Storage` while the disk is full), or no agent on
    /// the bus: not accepted, never to be delivered.
    Refused(String),
    /// No answer (the agent died during the call): it may or may not have been accepted.
    Uncertain(String),
}

/// Outcomes of one sequence-numbered stream.
#[derive(Debug, Default)]
pub struct Stream {
    pub accepted: Vec<i32>,
    pub refused: Vec<i32>,
    pub uncertain: Vec<i32>,
}

/// A device property's value as the client asked for it: `None` is an unset.
pub type PropertyValue = Option<i64>;

#[derive(Debug, Default)]
pub struct DataStats {
    pub stored: Stream,
    pub stored_object: Stream,
    /// Per property path, every call that set or unset it and may have been applied, in
    /// order: the value, and whether the agent accepted it (else: no answer, uncertain).
    pub properties: BTreeMap<&'static str, Vec<(PropertyValue, bool)>>,
    /// Per kind of call: (calls, accepted, refused, uncertain).
    pub calls: BTreeMap<&'static str, [u64; 4]>,
    /// Refusals by D-Bus error name.
    pub refusals: BTreeMap<String, u64>,
}

impl DataStats {
    fn count(&mut self, kind: &'static str, outcome: &Outcome) {
        let row = self.calls.entry(kind).or_default();
        row[0] += 1;
        match outcome {
            Outcome::Accepted => row[1] += 1,
            Outcome::Refused(name) => {
                row[2] += 1;
                *self.refusals.entry(name.clone()).or_default() += 1;
            }
            Outcome::Uncertain(_) => row[3] += 1,
        }
    }
}

impl DataStats {
    fn property(&mut self, path: &'static str, value: PropertyValue, outcome: &Outcome) {
        let certain = match outcome {
            Outcome::Accepted => true,
            Outcome::Uncertain(_) => false,
            Outcome::Refused(_) => return,
        };
        self.properties
            .entry(path)
            .or_default()
            .push((value, certain));
    }
}

fn record(stream: &mut Stream, value: i32, outcome: &Outcome) {
    match outcome {
        Outcome::Accepted => stream.accepted.push(value),
        Outcome::Refused(_) => stream.refused.push(value),
        Outcome::Uncertain(_) => stream.uncertain.push(value),
    }
}

async fn outcome(call: impl std::future::Future<Output = zbus::Result<()>>) -> Outcome {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(zbus::Error::MethodError(name, _, _)))
            if name.starts_with("org.astarte_platform.Agent1.Error.")
                || name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            Outcome::Refused(name.to_string())
        }
        Ok(Err(other)) => Outcome::Uncertain(other.to_string()),
        Err(_) => Outcome::Uncertain("no answer".to_owned()),
    }
}

/// Sends until `stop`, then returns what happened to every call.
pub async fn run(proxy: DeviceProxy<'static>, seed: u64, stop: CancellationToken) -> DataStats {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = DataStats::default();
    let (mut stored_seq, mut object_seq, mut n) = (0i32, 0i32, 0i32);
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return stats,
        }
        n += 1;
        match rng.u32(0..100) {
            0..35 => {
                let result =
                    outcome(proxy.send(DEVICE_DATASTREAM, STORED_PATH, &Value::I32(stored_seq)))
                        .await;
                record(&mut stats.stored, stored_seq, &result);
                stats.count("stored datastream", &result);
                stored_seq += 1;
            }
            35..45 => {
                let note = format!("object {object_seq}");
                let values = std::collections::HashMap::from([
                    ("seq", Value::I32(object_seq)),
                    ("note", Value::from(note.as_str())),
                ]);
                let result =
                    outcome(proxy.send_object(STORED_OBJECT, STORED_OBJECT_PATH, values)).await;
                record(&mut stats.stored_object, object_seq, &result);
                stats.count("stored object", &result);
                object_seq += 1;
            }
            45..60 => {
                let result = outcome(proxy.send(
                    DEVICE_DATASTREAM,
                    "/plain/value",
                    &Value::F64(f64::from(n)),
                ))
                .await;
                stats.count("volatile datastream", &result);
            }
            60..70 => {
                let result =
                    outcome(proxy.send(DEVICE_DATASTREAM, "/discard/value", &Value::I32(n))).await;
                stats.count("discard datastream", &result);
            }
            70..80 => {
                let values = std::collections::HashMap::from([
                    ("temperature", Value::F64(20.0 + f64::from(n % 10))),
                    ("humidity", Value::F64(50.0)),
                    ("label", Value::from("soak")),
                ]);
                let at = i64::from(n) + 1_700_000_000_000;
                let result =
                    outcome(proxy.send_object_at(DEVICE_OBJECT, "/room1", values, at)).await;
                stats.count("volatile object", &result);
            }
            80..90 => {
                let result =
                    outcome(proxy.set_property(DEVICE_PROPERTIES, "/counter", &Value::I32(n)))
                        .await;
                stats.property("/counter", Some(i64::from(n)), &result);
                stats.count("property set", &result);
            }
            _ => {
                let set = rng.bool();
                let result = if set {
                    outcome(proxy.set_property(DEVICE_PROPERTIES, "/enabled", &Value::Bool(true)))
                        .await
                } else {
                    match outcome(proxy.unset_property(DEVICE_PROPERTIES, "/enabled")).await {
                        // Unsetting what is already unset is the API working as documented.
                        Outcome::Refused(name) if name.ends_with(".NotSet") => Outcome::Accepted,
                        other => other,
                    }
                };
                stats.property("/enabled", set.then_some(1), &result);
                stats.count("property set/unset", &result);
            }
        }
    }
}
