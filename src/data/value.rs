//! Astarte values as the agent handles them between D-Bus and the wire.

/// A value of one of the 14 Astarte types. `DateTime` is milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq)]
pub enum AstarteValue {
    Double(f64),
    Integer(i32),
    Boolean(bool),
    LongInteger(i64),
    String(String),
    BinaryBlob(Vec<u8>),
    DateTime(i64),
    DoubleArray(Vec<f64>),
    IntegerArray(Vec<i32>),
    BooleanArray(Vec<bool>),
    LongIntegerArray(Vec<i64>),
    StringArray(Vec<String>),
    BinaryBlobArray(Vec<Vec<u8>>),
    DateTimeArray(Vec<i64>),
}
