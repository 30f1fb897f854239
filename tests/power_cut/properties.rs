//! The device properties check: every property the agent acknowledged holds its last value,
//! in the agent (`GetProperty`) and at Astarte (the value and purge-list messages the observer
//! saw, replayed as Astarte applies them).

use std::collections::BTreeMap;

use crate::checks::Row;
use crate::common::{DEVICE_PROPERTIES, DeviceProxy};
use crate::data::PropertyValue;

/// The values a property may hold now: the last one the agent accepted (unset before any),
/// or one of the calls after it that got no answer (the agent was cut during the call).
fn allowed(calls: &[(PropertyValue, bool)]) -> Vec<PropertyValue> {
    let last_certain = calls.iter().rposition(|(_, certain)| *certain);
    let mut allowed = vec![last_certain.and_then(|i| calls[i].0)];
    let uncertain_from = last_certain.map_or(0, |i| i + 1);
    allowed.extend(calls[uncertain_from..].iter().map(|(value, _)| *value));
    allowed
}

/// The value of a property payload (`{"v": ...}`); `None` for an unset (empty payload).
fn value_of(payload: &[u8]) -> Option<PropertyValue> {
    if payload.is_empty() {
        return Some(None);
    }
    let document = astarte_sandbox::decode_bson(payload).ok()?;
    match document.get("v")? {
        bson::Bson::Int32(v) => Some(Some(i64::from(*v))),
        bson::Bson::Int64(v) => Some(Some(*v)),
        bson::Bson::Boolean(v) => Some(Some(i64::from(*v))),
        _ => None,
    }
}

/// What Astarte holds after applying `log` in order: value messages set, empty payloads
/// unset, and each purge list unsets every property it does not list.
fn astarte_view(log: &[(String, Vec<u8>)]) -> BTreeMap<String, PropertyValue> {
    let prefix = format!("/{DEVICE_PROPERTIES}");
    let mut view = BTreeMap::new();
    for (suffix, payload) in log {
        if let Some(path) = suffix.strip_prefix(&prefix) {
            if let Some(value) = value_of(payload) {
                view.insert(path.to_owned(), value);
            }
        } else if let Ok(listed) = astarte_sandbox::decode_purge_list(payload) {
            let kept: Vec<String> = listed
                .iter()
                .filter_map(|entry| entry.strip_prefix(DEVICE_PROPERTIES).map(str::to_owned))
                .collect();
            for (path, value) in view.iter_mut() {
                if !kept.contains(path) {
                    *value = None;
                }
            }
        }
    }
    view
}

async fn agent_view(proxy: &DeviceProxy<'static>, path: &str) -> Result<PropertyValue, String> {
    match proxy.get_property(DEVICE_PROPERTIES, path).await {
        Ok(value) => {
            if let Ok(v) = i32::try_from(&value) {
                return Ok(Some(i64::from(v)));
            }
            if let Ok(v) = bool::try_from(&value) {
                return Ok(Some(i64::from(v)));
            }
            Err(format!("{path}: unexpected value {value:?}"))
        }
        Err(zbus::Error::MethodError(name, _, _)) if name.ends_with(".NotSet") => Ok(None),
        Err(error) => Err(format!("{path}: {error}")),
    }
}

pub async fn check(
    calls: &BTreeMap<&'static str, Vec<(PropertyValue, bool)>>,
    log: &[(String, Vec<u8>)],
    proxy: &DeviceProxy<'static>,
) -> Row {
    let astarte = astarte_view(log);
    let mut problems = Vec::new();
    let mut figures = Vec::new();
    for (path, calls) in calls {
        let allowed = allowed(calls);
        let agent = agent_view(proxy, path).await;
        let at_astarte = astarte.get(*path).copied().unwrap_or(None);
        figures.push(format!(
            "{path}: {} calls, agent {agent:?}, Astarte {at_astarte:?}",
            calls.len()
        ));
        match agent {
            Ok(value) if allowed.contains(&value) => {
                if value != at_astarte {
                    problems.push(format!(
                        "{path}: the agent holds {value:?}, Astarte {at_astarte:?}"
                    ));
                }
            }
            Ok(value) => problems.push(format!(
                "{path}: the agent holds {value:?}, expected one of {allowed:?}"
            )),
            Err(error) => problems.push(error),
        }
    }
    Row {
        name: "device properties hold their last acknowledged value".to_owned(),
        pass: problems.is_empty(),
        figures: format!("{figures:?}; problems {problems:?}"),
    }
}

#[test]
fn the_last_accepted_value_or_a_later_unanswered_one_is_allowed() {
    assert_eq!(allowed(&[]), vec![None]);
    assert_eq!(allowed(&[(Some(1), true), (Some(2), true)]), vec![Some(2)]);
    assert_eq!(
        allowed(&[(Some(1), true), (None, false), (Some(3), false)]),
        vec![Some(1), None, Some(3)]
    );
}

#[test]
fn a_purge_list_unsets_what_it_does_not_list() {
    let set = |path: &str, v: i32| {
        (
            format!("/{DEVICE_PROPERTIES}{path}"),
            bson::doc! {"v": v}.to_vec().unwrap(),
        )
    };
    let purge = |entries: &[&str]| {
        let listed: Vec<String> = entries
            .iter()
            .map(|p| format!("{DEVICE_PROPERTIES}{p}"))
            .collect();
        (
            "/control/producer/properties".to_owned(),
            astarte_agent::data::encode_purge_list(&listed),
        )
    };
    let log = vec![
        set("/counter", 1),
        set("/enabled", 1),
        purge(&["/counter"]),
        set("/counter", 2),
    ];
    let view = astarte_view(&log);
    assert_eq!(view.get("/counter"), Some(&Some(2)));
    assert_eq!(view.get("/enabled"), Some(&None));
}
