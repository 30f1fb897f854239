//! Mapping endpoints (`/%{param}/value`) and matching of concrete paths against them.

/// One level of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Literal(String),
    Parameter(String),
}

/// A parsed, validated endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub levels: Vec<Level>,
}
