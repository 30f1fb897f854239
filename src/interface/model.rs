//! The typed model of an Astarte interface, produced only by validation (`Interface::from_json`).

use super::endpoint::Endpoint;

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
