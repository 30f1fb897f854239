//! Astarte MQTT v1 data payloads: BSON documents `{"v": <value>, "t": <datetime>}` (protocol
//! doc, section 3.9). The empty payload of a property unset is not a BSON document and is the
//! caller's business: the decoders refuse it with [`PayloadError::Empty`].

mod decode;
mod encode;

pub use decode::{Received, ReceivedObject, decode_individual, decode_object};
pub use encode::{encode_individual, encode_object};

use bson::spec::ElementType;
use thiserror::Error;

use super::value::ValueError;
use crate::interface::MappingType;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("empty payload: an unset, not a bson document")]
    Empty,
    #[error("malformed bson document")]
    Malformed(#[source] bson::error::Error),
    #[error("couldn't encode the bson document")]
    Encode(#[source] bson::error::Error),
    #[error("payload has no `v` field")]
    MissingValue,
    #[error("key `{key}` appears more than once")]
    DuplicateKey { key: String },
    #[error("expected {} as bson {}, found bson {found}", expected.name(), expected_bson(*expected))]
    WrongType {
        expected: MappingType,
        found: &'static str,
    },
    #[error("expected {} items, found bson {found} at index {index}", expected.name())]
    WrongElementType {
        expected: MappingType,
        index: usize,
        found: &'static str,
    },
    #[error("timestamp `t` must be a bson datetime, found bson {found}")]
    WrongTimestampType { found: &'static str },
    #[error("object payload `v` must be a bson document, found bson {found}")]
    NotAnObject { found: &'static str },
    #[error("object key `{key}` is not a mapping of the interface")]
    UnknownKey { key: String },
    #[error("invalid value for object key `{key}`")]
    InvalidObjectValue {
        key: String,
        #[source]
        source: Box<PayloadError>,
    },
    #[error("value rejected by astarte limits")]
    Value(#[from] ValueError),
}

/// The BSON type names used in error messages.
fn bson_type_name(element_type: ElementType) -> &'static str {
    match element_type {
        ElementType::Double => "double",
        ElementType::String => "string",
        ElementType::EmbeddedDocument => "document",
        ElementType::Array => "array",
        ElementType::Binary => "binary",
        ElementType::Undefined => "undefined",
        ElementType::ObjectId => "objectid",
        ElementType::Boolean => "boolean",
        ElementType::DateTime => "datetime",
        ElementType::Null => "null",
        ElementType::RegularExpression => "regex",
        ElementType::DbPointer => "dbpointer",
        ElementType::JavaScriptCode => "javascript",
        ElementType::Symbol => "symbol",
        ElementType::JavaScriptCodeWithScope => "javascript with scope",
        ElementType::Int32 => "int32",
        ElementType::Timestamp => "timestamp",
        ElementType::Int64 => "int64",
        ElementType::Decimal128 => "decimal128",
        ElementType::MaxKey => "maxkey",
        ElementType::MinKey => "minkey",
    }
}

/// The BSON type the agent sends for a mapping type (arrays: the type of their items).
fn expected_bson(mapping_type: MappingType) -> &'static str {
    match mapping_type {
        MappingType::Double => "double",
        MappingType::Integer => "int32",
        MappingType::Boolean => "boolean",
        MappingType::LongInteger => "int64",
        MappingType::String => "string",
        MappingType::BinaryBlob => "binary",
        MappingType::DateTime => "datetime",
        MappingType::DoubleArray
        | MappingType::IntegerArray
        | MappingType::BooleanArray
        | MappingType::LongIntegerArray
        | MappingType::StringArray
        | MappingType::BinaryBlobArray
        | MappingType::DateTimeArray => "array",
    }
}

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod wire_tests;
