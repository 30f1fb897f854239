//! Interface-level validation rules (protocol reference 4.1) and `Interface::from_json`.
//!
//! Mapping keys are checked in `validate_mapping`, rules across mappings in
//! `validate_set`. The first broken rule is reported.

use super::error::{InterfaceError, Location};
use super::model::{Aggregation, Interface, InterfaceType, Ownership};
use super::schema::{self, RawInterface};
use super::validate_mapping::{MappingContext, validate_mapping};
use super::validate_set::{check_endpoints, check_object};

pub const MAX_NAME_LEN: usize = 128;
pub const RESERVED_NAMES: [&str; 3] = ["astarte", "control", "device"];
pub const MAX_DESCRIPTION_LEN: usize = 1000;
pub const MAX_DOC_LEN: usize = 100_000;
pub const MAX_MAPPINGS: usize = 1024;
/// Largest interface document accepted, checked before the JSON is parsed (`AddInterface`
/// and files of `interfaces_dir` alike). Real interfaces are a few KiB; 1 MiB still holds
/// 1,024 mappings with 700-character descriptions, and bounds what one document costs to
/// parse (its JSON tree is several times its size) and to keep on disk.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

impl Interface {
    /// Parses and validates an interface file against every rule Astarte applies.
    pub fn from_json(text: &str) -> Result<Interface, InterfaceError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(InterfaceError::DocumentTooLarge {
                max: MAX_DOCUMENT_BYTES,
            });
        }
        validate(schema::parse(text)?)
    }
}

fn validate(raw: RawInterface) -> Result<Interface, InterfaceError> {
    let name = required(raw.interface_name.clone(), "interface_name")?;
    check_name(&name).map_err(|reason| InterfaceError::InvalidName {
        name: name.clone(),
        reason,
    })?;

    let version_major = version(raw.version_major, "version_major")?;
    let version_minor = version(raw.version_minor, "version_minor")?;
    if version_major == 0 && version_minor == 0 {
        return Err(InterfaceError::NullVersion);
    }

    let interface_type = match required(raw.interface_type.as_deref(), "type")? {
        "datastream" => InterfaceType::Datastream,
        "properties" => InterfaceType::Properties,
        other => return Err(invalid("type", other, "`datastream` or `properties`")),
    };
    // `producer` and `consumer` are the deprecated names Astarte still casts.
    let ownership = match required(raw.ownership_text(), "ownership")? {
        "device" | "producer" => Ownership::Device,
        "server" | "consumer" => Ownership::Server,
        other => return Err(invalid("ownership", other, "`device` or `server`")),
    };
    // Astarte's legacy handling: `aggregation` wins, else `aggregate: true` means object.
    let aggregation = match (raw.aggregation.as_deref(), raw.aggregate) {
        (Some("individual"), _) => Aggregation::Individual,
        (Some("object"), _) => Aggregation::Object,
        (Some(other), _) => return Err(invalid("aggregation", other, "`individual` or `object`")),
        (None, Some(true)) => Aggregation::Object,
        (None, _) => Aggregation::Individual,
    };
    if interface_type == InterfaceType::Properties && aggregation == Aggregation::Object {
        return Err(InterfaceError::ObjectProperties);
    }

    let at = Location::Interface;
    check_length(
        &at,
        "description",
        raw.description.as_deref(),
        MAX_DESCRIPTION_LEN,
    )?;
    check_length(&at, "doc", raw.doc.as_deref(), MAX_DOC_LEN)?;

    let raw_mappings = required(raw.mappings, "mappings")?;
    if !(1..=MAX_MAPPINGS).contains(&raw_mappings.len()) {
        return Err(InterfaceError::MappingCount {
            count: raw_mappings.len(),
        });
    }
    let context = MappingContext {
        interface_type,
        aggregation,
    };
    let mappings = raw_mappings
        .iter()
        .enumerate()
        .map(|(index, mapping)| validate_mapping(mapping, index, context))
        .collect::<Result<Vec<_>, _>>()?;
    check_endpoints(&mappings)?;
    if aggregation == Aggregation::Object {
        check_object(&name, &mappings)?;
    }

    Ok(Interface {
        name,
        version_major,
        version_minor,
        interface_type,
        ownership,
        aggregation,
        mappings,
    })
}

/// Checks the length limits and the Elixir regex
/// `^([a-zA-Z][a-zA-Z0-9]*\.([a-zA-Z0-9][a-zA-Z0-9-]*\.)*)?[a-zA-Z][a-zA-Z0-9]*$`:
/// first and last labels are alphanumeric starting with a letter, middle labels may start
/// with a digit and contain `-`. A single label is accepted, as Astarte does.
pub fn check_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err("it is empty".to_owned());
    }
    if len > MAX_NAME_LEN {
        return Err(format!(
            "it is {len} characters long, at most {MAX_NAME_LEN} allowed"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err("`astarte`, `control` and `device` are reserved".to_owned());
    }
    let labels: Vec<&str> = name.split('.').collect();
    let last = labels.len() - 1;
    for (index, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return Err(format!(
                "label {} is empty (no leading, trailing or doubled `.`)",
                index + 1
            ));
        }
        let outer = index == 0 || index == last;
        if outer && !is_outer_label(label) {
            let which = if index == last { "last" } else { "first" };
            return Err(format!(
                "the {which} label `{label}` must start with a letter and contain only letters and digits"
            ));
        }
        if !outer && !is_middle_label(label) {
            return Err(format!(
                "label `{label}` must start with a letter or digit and contain only letters, digits and `-`"
            ));
        }
    }
    Ok(())
}

/// `[a-zA-Z][a-zA-Z0-9]*`
fn is_outer_label(label: &str) -> bool {
    let mut chars = label.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

/// `[a-zA-Z0-9][a-zA-Z0-9-]*`
fn is_middle_label(label: &str) -> bool {
    let mut chars = label.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn version(value: Option<i64>, key: &'static str) -> Result<u32, InterfaceError> {
    let value = required(value, key)?;
    u32::try_from(value).map_err(|_| InterfaceError::InvalidValue {
        at: Location::Interface,
        key,
        value: value.to_string(),
        expected: "an integer from 0 to 4294967295",
    })
}

fn required<T>(value: Option<T>, key: &'static str) -> Result<T, InterfaceError> {
    value.ok_or(InterfaceError::MissingKey {
        at: Location::Interface,
        key,
    })
}

fn invalid(key: &'static str, value: &str, expected: &'static str) -> InterfaceError {
    InterfaceError::InvalidValue {
        at: Location::Interface,
        key,
        value: format!("{value:?}"),
        expected,
    }
}

/// Lengths are counted in characters, as Astarte's `validate_length` does.
pub(super) fn check_length(
    at: &Location,
    key: &'static str,
    text: Option<&str>,
    max: usize,
) -> Result<(), InterfaceError> {
    let len = text.map_or(0, |text| text.chars().count());
    if len > max {
        return Err(InterfaceError::TooLong {
            at: at.clone(),
            key,
            len,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
