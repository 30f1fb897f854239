//! Validation of one mapping's keys (protocol reference 4.2).
//!
//! Datastream-only, properties-only and object-only keys follow Astarte's "must be blank"
//! rule: they are accepted on the wrong kind of interface only when absent or set to
//! their default value (Ecto records no change for a default).

use super::endpoint::Endpoint;
use super::error::{Findings, InterfaceError, Location};
use super::model::{
    Aggregation, DatabaseRetention, InterfaceType, Mapping, MappingType, Reliability, Retention,
};
use super::schema::RawMapping;

/// Smallest and largest `database_retention_ttl`, in seconds (below 20 years).
pub const TTL_RANGE: (i64, i64) = (60, 630_719_999);

/// What a mapping needs to know about its interface.
#[derive(Debug, Clone, Copy)]
pub struct MappingContext {
    pub interface_type: InterfaceType,
    pub aggregation: Aggregation,
}

/// The accepted names of an enumeration and how to describe them in an error.
struct Choices<T: 'static> {
    values: &'static [(&'static str, T)],
    expected: &'static str,
}

const RELIABILITIES: &Choices<Reliability> = &Choices {
    values: &[
        ("unreliable", Reliability::Unreliable),
        ("guaranteed", Reliability::Guaranteed),
        ("unique", Reliability::Unique),
    ],
    expected: "`unreliable`, `guaranteed` or `unique`",
};
const RETENTIONS: &Choices<Retention> = &Choices {
    values: &[
        ("discard", Retention::Discard),
        ("volatile", Retention::Volatile),
        ("stored", Retention::Stored),
    ],
    expected: "`discard`, `volatile` or `stored`",
};
/// `true` for `use_ttl`.
const POLICIES: &Choices<bool> = &Choices {
    values: &[("no_ttl", false), ("use_ttl", true)],
    expected: "`no_ttl` or `use_ttl`",
};

pub const MAX_DESCRIPTION_LEN: usize = 1000;
pub const MAX_DOC_LEN: usize = 100_000;

/// Checks one mapping, reporting every problem it has.
pub fn validate_mapping(
    raw: &RawMapping,
    index: usize,
    context: MappingContext,
) -> Result<Mapping, Vec<InterfaceError>> {
    let mut check = Check {
        at: Location::Mapping(match raw.endpoint_text() {
            Some(endpoint) => endpoint.to_owned(),
            None => format!("at index {index}"),
        }),
        context,
        found: Findings::default(),
    };
    let endpoint = check.endpoint(raw);
    let mapping_type = check.mapping_type(raw);
    let reliability = check.choice("reliability", raw.reliability.as_deref(), RELIABILITIES);
    check.datastream_only(
        "reliability",
        is_set(reliability.flatten(), Reliability::Unreliable),
    );
    let retention = check.choice("retention", raw.retention.as_deref(), RETENTIONS);
    check.datastream_only("retention", is_set(retention.flatten(), Retention::Discard));
    check.expiry(raw.expiry);
    let database_retention = check.database_retention(raw);
    check.only_for(
        "allow_unset",
        is_set(raw.allow_unset, false),
        InterfaceType::Properties,
    );
    check.datastream_only("explicit_timestamp", is_set(raw.explicit_timestamp, false));
    if is_set(raw.required, false) && context.aggregation != Aggregation::Object {
        check.not_applicable("required", "object-aggregation");
    }
    // `encrypted` is accepted whatever its value and ignored until keyAgreement exists.
    check_texts(
        &mut check.found,
        &check.at,
        raw.description.as_deref(),
        raw.doc.as_deref(),
    );

    let mapping = match (
        endpoint,
        mapping_type,
        reliability,
        retention,
        database_retention,
    ) {
        (
            Some(endpoint),
            Some(mapping_type),
            Some(reliability),
            Some(retention),
            Some(database_retention),
        ) => Some(Mapping {
            endpoint,
            mapping_type,
            reliability: reliability.unwrap_or(Reliability::Unreliable),
            retention: retention.unwrap_or(Retention::Discard),
            // Checked non-negative (a negative one is a problem found).
            expiry_seconds: raw.expiry.map_or(0, |expiry| expiry.unsigned_abs()),
            database_retention,
            allow_unset: raw.allow_unset.unwrap_or(false),
            explicit_timestamp: raw.explicit_timestamp.unwrap_or(false),
            required: raw.required.unwrap_or(false),
        }),
        _ => None,
    };
    check.found.finish(mapping)
}

/// One mapping being checked: where it is, what its interface is, what was found so far.
struct Check {
    at: Location,
    context: MappingContext,
    found: Findings,
}

impl Check {
    fn endpoint(&mut self, raw: &RawMapping) -> Option<Endpoint> {
        let Some(text) = raw.endpoint_text() else {
            self.missing("endpoint");
            return None;
        };
        self.found.take(
            Endpoint::parse(text).map_err(|reason| InterfaceError::InvalidEndpoint {
                endpoint: text.to_owned(),
                reason,
            }),
        )
    }

    fn mapping_type(&mut self, raw: &RawMapping) -> Option<MappingType> {
        let Some(name) = raw.mapping_type.as_deref() else {
            self.missing("type");
            return None;
        };
        let parsed = MappingType::from_name(name);
        if parsed.is_none() {
            self.invalid(
                "type",
                format!("{name:?}"),
                "one of the 14 Astarte types (`double`, `integer`, ..., `datetimearray`)",
            );
        }
        parsed
    }

    /// `Some(None)` when absent, `Some(Some(value))` when valid, `None` when invalid.
    fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        value: Option<&str>,
        table: &Choices<T>,
    ) -> Option<Option<T>> {
        self.found.take(one_of(&self.at, key, value, table))
    }

    fn expiry(&mut self, expiry: Option<i64>) {
        if let Some(expiry) = expiry.filter(|expiry| *expiry < 0) {
            self.invalid(
                "expiry",
                expiry.to_string(),
                "an integer >= 0 (0 means never)",
            );
        }
        self.datastream_only("expiry", is_set(expiry, 0));
    }

    /// `database_retention_policy` and `database_retention_ttl`, together.
    fn database_retention(&mut self, raw: &RawMapping) -> Option<DatabaseRetention> {
        let policy = raw.database_retention_policy.as_deref();
        let use_ttl = self.choice("database_retention_policy", policy, POLICIES);
        self.datastream_only(
            "database_retention_policy",
            is_set(use_ttl.flatten(), false),
        );
        let ttl = raw.database_retention_ttl;
        let ttl_in_range = ttl.is_none_or(|ttl| (TTL_RANGE.0..=TTL_RANGE.1).contains(&ttl));
        if let Some(ttl) = ttl.filter(|_| !ttl_in_range) {
            self.invalid(
                "database_retention_ttl",
                ttl.to_string(),
                "a number of seconds from 60 to 630719999",
            );
        }
        // The default TTL is "absent", so any value counts as set.
        self.datastream_only("database_retention_ttl", ttl.is_some());
        match use_ttl {
            Some(use_ttl) if ttl_in_range => {
                self.found
                    .take(database_retention(&self.at, use_ttl.unwrap_or(false), ttl))
            }
            _ => None,
        }
    }

    fn datastream_only(&mut self, key: &'static str, set: bool) {
        self.only_for(key, set, InterfaceType::Datastream);
    }

    fn only_for(&mut self, key: &'static str, set: bool, allowed: InterfaceType) {
        if set && self.context.interface_type != allowed {
            let only = match allowed {
                InterfaceType::Datastream => "datastream",
                InterfaceType::Properties => "properties",
            };
            self.not_applicable(key, only);
        }
    }

    fn not_applicable(&mut self, key: &'static str, only: &'static str) {
        self.found.push(InterfaceError::NotApplicable {
            at: self.at.clone(),
            key,
            only,
        });
    }

    fn missing(&mut self, key: &'static str) {
        self.found.push(InterfaceError::MissingKey {
            at: self.at.clone(),
            key,
        });
    }

    fn invalid(&mut self, key: &'static str, value: String, expected: &'static str) {
        self.found.push(InterfaceError::InvalidValue {
            at: self.at.clone(),
            key,
            value,
            expected,
        });
    }
}

/// The `description` and `doc` limits of an interface or a mapping. Lengths are counted in
/// characters, as Astarte's `validate_length` does.
pub(super) fn check_texts(
    found: &mut Findings,
    at: &Location,
    description: Option<&str>,
    doc: Option<&str>,
) {
    let limits = [
        ("description", description, MAX_DESCRIPTION_LEN),
        ("doc", doc, MAX_DOC_LEN),
    ];
    for (key, text, max) in limits {
        let len = text.map_or(0, |text| text.chars().count());
        if len > max {
            found.push(InterfaceError::TooLong {
                at: at.clone(),
                key,
                len,
                max,
            });
        }
    }
}

fn one_of<T: Copy>(
    at: &Location,
    key: &'static str,
    value: Option<&str>,
    table: &Choices<T>,
) -> Result<Option<T>, InterfaceError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match table.values.iter().find(|(name, _)| *name == value) {
        Some((_, parsed)) => Ok(Some(*parsed)),
        None => Err(InterfaceError::InvalidValue {
            at: at.clone(),
            key,
            value: format!("{value:?}"),
            expected: table.expected,
        }),
    }
}

/// Present with a value other than the default.
fn is_set<T: PartialEq>(value: Option<T>, default: T) -> bool {
    value.is_some_and(|value| value != default)
}

fn database_retention(
    at: &Location,
    use_ttl: bool,
    ttl: Option<i64>,
) -> Result<DatabaseRetention, InterfaceError> {
    match (use_ttl, ttl) {
        (false, None) => Ok(DatabaseRetention::NoTtl),
        (true, Some(ttl)) => Ok(DatabaseRetention::UseTtl {
            // Range-checked by the caller; the fallback is unreachable.
            ttl_seconds: u32::try_from(ttl).unwrap_or(u32::MAX),
        }),
        (true, None) => Err(InterfaceError::DatabaseRetention {
            at: at.clone(),
            problem: "`database_retention_policy` is `use_ttl`, so `database_retention_ttl` is required",
        }),
        (false, Some(_)) => Err(InterfaceError::DatabaseRetention {
            at: at.clone(),
            problem: "`database_retention_ttl` is set, so `database_retention_policy` must be `use_ttl`",
        }),
    }
}

#[cfg(test)]
#[path = "validate_mapping_tests.rs"]
mod tests;
