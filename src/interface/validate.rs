//! Interface-level validation rules (protocol reference 4.1) and `Interface::from_json`.
//!
//! Mapping keys are checked in `validate_mapping`, rules across mappings in
//! `validate_set`. Validation goes on after a broken rule wherever the rest does not depend on
//! it: [`Interface::validate_json`] reports every problem of a document, `from_json` the first.

use super::error::{Findings, InterfaceError, Location};
use super::model::{Aggregation, Interface, InterfaceType, Mapping, Ownership};
use super::schema::{self, RawInterface, RawMapping};
pub use super::validate_mapping::{MAX_DESCRIPTION_LEN, MAX_DOC_LEN};
use super::validate_mapping::{MappingContext, check_texts, validate_mapping};
use super::validate_set::{check_endpoints, check_object};

pub const MAX_NAME_LEN: usize = 128;
pub const RESERVED_NAMES: [&str; 3] = ["astarte", "control", "device"];
pub const MAX_MAPPINGS: usize = 1024;
/// Largest interface document accepted, checked before the JSON is parsed (`AddInterface`
/// and files of `interfaces_dir` alike). Real interfaces are a few KiB; 1 MiB still holds
/// 1,024 mappings with 700-character descriptions, and bounds what one document costs to
/// parse (its JSON tree is several times its size) and to keep on disk.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

impl Interface {
    /// Parses and validates an interface file against every rule Astarte applies; the first
    /// problem found when it breaks any.
    pub fn from_json(text: &str) -> Result<Interface, InterfaceError> {
        Interface::validate_json(text).map_err(|mut problems| problems.swap_remove(0))
    }

    /// Like [`Interface::from_json`], with every problem of the document (never an empty list).
    pub fn validate_json(text: &str) -> Result<Interface, Vec<InterfaceError>> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(vec![InterfaceError::DocumentTooLarge {
                max: MAX_DOCUMENT_BYTES,
            }]);
        }
        validate(schema::parse(text).map_err(|problem| vec![problem])?)
    }
}

fn validate(raw: RawInterface) -> Result<Interface, Vec<InterfaceError>> {
    let mut found = Findings::default();
    let name = found.take(required(raw.interface_name.clone(), "interface_name"));
    if let Some(name) = &name {
        found.take(
            check_name(name).map_err(|reason| InterfaceError::InvalidName {
                name: name.clone(),
                reason,
            }),
        );
    }
    let version_major = found.take(version(raw.version_major, "version_major"));
    let version_minor = found.take(version(raw.version_minor, "version_minor"));
    if version_major == Some(0) && version_minor == Some(0) {
        found.push(InterfaceError::NullVersion);
    }
    let (interface_type, ownership, aggregation) = kind(&raw, &mut found);
    check_texts(
        &mut found,
        &Location::Interface,
        raw.description.as_deref(),
        raw.doc.as_deref(),
    );
    let raw_mappings = found.take(required(raw.mappings, "mappings"));
    let mappings = match (&raw_mappings, interface_type, aggregation) {
        (Some(raw_mappings), Some(interface_type), Some(aggregation)) => {
            let context = MappingContext {
                interface_type,
                aggregation,
            };
            mappings(raw_mappings, context, name.as_deref(), &mut found)
        }
        // Mappings can't be judged without the interface's type and aggregation.
        _ => None,
    };
    let interface = match (
        name,
        version_major,
        version_minor,
        interface_type,
        ownership,
        aggregation,
        mappings,
    ) {
        (
            Some(name),
            Some(version_major),
            Some(version_minor),
            Some(interface_type),
            Some(ownership),
            Some(aggregation),
            Some(mappings),
        ) => Some(Interface {
            name,
            version_major,
            version_minor,
            interface_type,
            ownership,
            aggregation,
            mappings,
        }),
        _ => None,
    };
    found.finish(interface)
}

/// `type`, `ownership` and `aggregation`, and whether they go together.
fn kind(
    raw: &RawInterface,
    found: &mut Findings,
) -> (
    Option<InterfaceType>,
    Option<Ownership>,
    Option<Aggregation>,
) {
    let interface_type = found.take(match required(raw.interface_type.as_deref(), "type") {
        Ok("datastream") => Ok(InterfaceType::Datastream),
        Ok("properties") => Ok(InterfaceType::Properties),
        Ok(other) => Err(invalid("type", other, "`datastream` or `properties`")),
        Err(missing) => Err(missing),
    });
    // `producer` and `consumer` are the deprecated names Astarte still casts.
    let ownership = found.take(match required(raw.ownership_text(), "ownership") {
        Ok("device" | "producer") => Ok(Ownership::Device),
        Ok("server" | "consumer") => Ok(Ownership::Server),
        Ok(other) => Err(invalid("ownership", other, "`device` or `server`")),
        Err(missing) => Err(missing),
    });
    // Astarte's legacy handling: `aggregation` wins, else `aggregate: true` means object.
    let aggregation = found.take(match (raw.aggregation.as_deref(), raw.aggregate) {
        (Some("individual"), _) => Ok(Aggregation::Individual),
        (Some("object"), _) => Ok(Aggregation::Object),
        (Some(other), _) => Err(invalid("aggregation", other, "`individual` or `object`")),
        (None, Some(true)) => Ok(Aggregation::Object),
        (None, _) => Ok(Aggregation::Individual),
    });
    if interface_type == Some(InterfaceType::Properties) && aggregation == Some(Aggregation::Object)
    {
        found.push(InterfaceError::ObjectProperties);
    }
    (interface_type, ownership, aggregation)
}

/// Every mapping, then the rules across them (which need every mapping valid).
fn mappings(
    raw_mappings: &[RawMapping],
    context: MappingContext,
    name: Option<&str>,
    found: &mut Findings,
) -> Option<Vec<Mapping>> {
    if !(1..=MAX_MAPPINGS).contains(&raw_mappings.len()) {
        found.push(InterfaceError::MappingCount {
            count: raw_mappings.len(),
        });
    }
    let mut mappings = Vec::with_capacity(raw_mappings.len());
    for (index, mapping) in raw_mappings.iter().enumerate() {
        match validate_mapping(mapping, index, context) {
            Ok(mapping) => mappings.push(mapping),
            Err(problems) => found.extend(problems),
        }
    }
    if mappings.len() != raw_mappings.len() {
        return None;
    }
    found.take(check_endpoints(&mappings));
    if let (Some(name), Aggregation::Object) = (name, context.aggregation) {
        found.take(check_object(name, &mappings));
    }
    Some(mappings)
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

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
