//! The typed model of an Astarte interface, produced only by validation (`Interface::from_json`).

use super::endpoint::{Endpoint, Level};

/// Whether an interface carries a stream of values or a set of stateful properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceType {
    Datastream,
    Properties,
}

/// Which side of the connection writes the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Device,
    Server,
}

/// Individual values per endpoint, or one object per endpoint prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Individual,
    Object,
}

/// The 14 Astarte mapping types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingType {
    Double,
    Integer,
    Boolean,
    LongInteger,
    String,
    BinaryBlob,
    DateTime,
    DoubleArray,
    IntegerArray,
    BooleanArray,
    LongIntegerArray,
    StringArray,
    BinaryBlobArray,
    DateTimeArray,
}

impl MappingType {
    /// All types, in the order of the protocol reference.
    pub const ALL: [MappingType; 14] = [
        MappingType::Double,
        MappingType::Integer,
        MappingType::Boolean,
        MappingType::LongInteger,
        MappingType::String,
        MappingType::BinaryBlob,
        MappingType::DateTime,
        MappingType::DoubleArray,
        MappingType::IntegerArray,
        MappingType::BooleanArray,
        MappingType::LongIntegerArray,
        MappingType::StringArray,
        MappingType::BinaryBlobArray,
        MappingType::DateTimeArray,
    ];

    /// The name used in interface files (`"longintegerarray"`).
    pub fn name(self) -> &'static str {
        match self {
            MappingType::Double => "double",
            MappingType::Integer => "integer",
            MappingType::Boolean => "boolean",
            MappingType::LongInteger => "longinteger",
            MappingType::String => "string",
            MappingType::BinaryBlob => "binaryblob",
            MappingType::DateTime => "datetime",
            MappingType::DoubleArray => "doublearray",
            MappingType::IntegerArray => "integerarray",
            MappingType::BooleanArray => "booleanarray",
            MappingType::LongIntegerArray => "longintegerarray",
            MappingType::StringArray => "stringarray",
            MappingType::BinaryBlobArray => "binaryblobarray",
            MappingType::DateTimeArray => "datetimearray",
        }
    }

    /// The inverse of [`MappingType::name`]; names are case-sensitive.
    pub fn from_name(name: &str) -> Option<MappingType> {
        MappingType::ALL.into_iter().find(|ty| ty.name() == name)
    }
}

impl std::fmt::Display for MappingType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Delivery guarantee of a datastream mapping; properties always behave as `Unique`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    Unreliable,
    Guaranteed,
    Unique,
}

/// What the device does with a datastream value it cannot deliver right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Discard,
    Volatile,
    Stored,
}

/// Server-side storage policy (no effect on the wire, validated for completeness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseRetention {
    NoTtl,
    UseTtl { ttl_seconds: u32 },
}

/// One validated mapping of an interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub endpoint: Endpoint,
    pub mapping_type: MappingType,
    pub reliability: Reliability,
    pub retention: Retention,
    /// Seconds a retained value stays queued; 0 means forever.
    pub expiry_seconds: u64,
    pub database_retention: DatabaseRetention,
    pub allow_unset: bool,
    pub explicit_timestamp: bool,
    pub required: bool,
}

impl Mapping {
    /// For object aggregation, the key of this mapping inside the object (the last endpoint
    /// level); `None` when the last level is a parameter, which validation rejects for
    /// object interfaces.
    pub fn object_key(&self) -> Option<&str> {
        match self.endpoint.last_level() {
            Some(Level::Literal(key)) => Some(key),
            _ => None,
        }
    }
}

/// A validated Astarte interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    pub version_major: u32,
    pub version_minor: u32,
    pub interface_type: InterfaceType,
    pub ownership: Ownership,
    pub aggregation: Aggregation,
    pub mappings: Vec<Mapping>,
}

impl Interface {
    /// The introspection entry `name:major:minor`.
    pub fn introspection_entry(&self) -> String {
        format!(
            "{}:{}:{}",
            self.name, self.version_major, self.version_minor
        )
    }

    pub fn is_server_owned(&self) -> bool {
        self.ownership == Ownership::Server
    }

    pub fn is_object(&self) -> bool {
        self.aggregation == Aggregation::Object
    }

    pub fn is_properties(&self) -> bool {
        self.interface_type == InterfaceType::Properties
    }
}
