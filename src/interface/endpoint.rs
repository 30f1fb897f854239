//! Mapping endpoints (`/%{param}/value`) and matching of concrete paths against them.
//!
//! The endpoint grammar is Astarte's
//! `^(\/(%{([a-zA-Z_]+[a-zA-Z0-9_]*)}|[a-zA-Z_]+[a-zA-Z0-9_]*)){1,64}$`, 2–256 characters,
//! checked by hand so that each failure can say which level is wrong.

use std::fmt;
use std::str::FromStr;

use super::path::ConcretePath;

/// Shortest and longest endpoint, in characters.
pub const ENDPOINT_LEN: (usize, usize) = (2, 256);
/// Most levels an endpoint may have.
pub const MAX_ENDPOINT_LEVELS: usize = 64;

/// Why an endpoint string is not a valid endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("it is {len} characters long, expected 2 to 256")]
    Length { len: usize },
    #[error("it must start with `/`")]
    NoLeadingSlash,
    #[error("level {position} is empty (no `//` and no trailing `/`)")]
    EmptyLevel { position: usize },
    #[error("it has {count} levels, at most 64 allowed")]
    TooManyLevels { count: usize },
    #[error(
        "level `{level}` must be a literal `[A-Za-z_][A-Za-z0-9_]*` or a parameter `%{{name}}`"
    )]
    InvalidLiteral { level: String },
    #[error("parameter `{level}` must be `%{{name}}` with a name `[A-Za-z_][A-Za-z0-9_]*`")]
    InvalidParameter { level: String },
}

/// One level of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Literal(String),
    Parameter(String),
}

impl Level {
    /// Whether a concrete (already syntax-checked) path level matches: literals exactly and
    /// case-sensitively, parameters any level.
    pub fn matches(&self, concrete: &str) -> bool {
        match self {
            Level::Literal(literal) => literal == concrete,
            Level::Parameter(_) => true,
        }
    }

    /// Whether some concrete level matches both `self` and `other`.
    pub fn overlaps(&self, other: &Level) -> bool {
        match (self, other) {
            (Level::Literal(a), Level::Literal(b)) => a == b,
            _ => true,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Literal(literal) => f.write_str(literal),
            Level::Parameter(name) => write!(f, "%{{{name}}}"),
        }
    }
}

/// A parsed, validated endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub levels: Vec<Level>,
}

impl Endpoint {
    /// Parses and validates an endpoint such as `/%{sensor_id}/value`.
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let len = text.chars().count();
        if !(ENDPOINT_LEN.0..=ENDPOINT_LEN.1).contains(&len) {
            return Err(EndpointError::Length { len });
        }
        let rest = text
            .strip_prefix('/')
            .ok_or(EndpointError::NoLeadingSlash)?;
        let raw_levels: Vec<&str> = rest.split('/').collect();
        if raw_levels.len() > MAX_ENDPOINT_LEVELS {
            return Err(EndpointError::TooManyLevels {
                count: raw_levels.len(),
            });
        }
        let levels = raw_levels
            .iter()
            .enumerate()
            .map(|(index, raw)| parse_level(raw, index + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Endpoint { levels })
    }

    /// Number of levels.
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The last level: for object aggregation, the key inside the object. `None` only for
    /// an `Endpoint` built by hand with no levels; parsing guarantees at least one.
    pub fn last_level(&self) -> Option<&Level> {
        self.levels.last()
    }

    /// Whether a concrete path such as `/room1/value` resolves to this endpoint.
    /// Malformed paths (see [`ConcretePath::parse`]) never match.
    pub fn matches(&self, path: &str) -> bool {
        ConcretePath::parse(path).is_ok_and(|path| self.matches_path(&path))
    }

    /// Like [`Endpoint::matches`] for a path that was already checked.
    pub fn matches_path(&self, path: &ConcretePath<'_>) -> bool {
        path.levels().len() == self.levels.len()
            && self
                .levels
                .iter()
                .zip(path.levels())
                .all(|(level, concrete)| level.matches(concrete))
    }

    /// Whether `path` matches every level but the last: the path an object is published on.
    pub fn matches_object_path(&self, path: &ConcretePath<'_>) -> bool {
        let Some((_, prefix)) = self.levels.split_last() else {
            return false;
        };
        path.levels().len() == prefix.len()
            && prefix
                .iter()
                .zip(path.levels())
                .all(|(level, concrete)| level.matches(concrete))
    }

    /// The endpoint with parameters removed and lower-cased, as Astarte compares endpoints
    /// for uniqueness (`/%{a}/Value` becomes `//value`).
    pub fn normalized(&self) -> String {
        self.levels
            .iter()
            .map(|level| match level {
                Level::Literal(literal) => format!("/{}", literal.to_lowercase()),
                Level::Parameter(_) => "/".to_owned(),
            })
            .collect()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for level in &self.levels {
            write!(f, "/{level}")?;
        }
        Ok(())
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(text)
    }
}

fn parse_level(raw: &str, position: usize) -> Result<Level, EndpointError> {
    if raw.is_empty() {
        return Err(EndpointError::EmptyLevel { position });
    }
    if let Some(inner) = raw.strip_prefix("%{") {
        return match inner.strip_suffix('}') {
            Some(name) if is_identifier(name) => Ok(Level::Parameter(name.to_owned())),
            _ => Err(EndpointError::InvalidParameter {
                level: raw.to_owned(),
            }),
        };
    }
    if is_identifier(raw) {
        Ok(Level::Literal(raw.to_owned()))
    } else {
        Err(EndpointError::InvalidLiteral {
            level: raw.to_owned(),
        })
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::single_literal("/a")]
    #[case::underscore_start("/_private/x1")]
    #[case::parameter("/%{sensor_id}/value")]
    #[case::parameter_underscore("/%{_id}")]
    #[case::only_parameters("/%{a}/%{b}")]
    #[case::mixed_case("/Config/Enabled")]
    fn valid_endpoints_parse_and_display_back(#[case] text: &str) {
        let endpoint = Endpoint::parse(text).unwrap();
        assert_eq!(endpoint.to_string(), text);
    }

    #[test]
    fn parse_splits_literals_and_parameters() {
        let endpoint = Endpoint::parse("/led/%{id}/enabled").unwrap();
        assert_eq!(
            endpoint.levels,
            vec![
                Level::Literal("led".into()),
                Level::Parameter("id".into()),
                Level::Literal("enabled".into()),
            ]
        );
    }

    #[test]
    fn sixty_four_levels_and_256_characters_are_the_limits() {
        let max_levels = "/a".repeat(64);
        assert_eq!(Endpoint::parse(&max_levels).unwrap().depth(), 64);
        let long = format!("/{}", "a".repeat(255));
        assert!(Endpoint::parse(&long).is_ok());
    }

    #[rstest]
    #[case::empty("", EndpointError::Length { len: 0 })]
    #[case::only_slash("/", EndpointError::Length { len: 1 })]
    #[case::too_long(&format!("/{}", "a".repeat(256)), EndpointError::Length { len: 257 })]
    #[case::too_many_levels(&"/a".repeat(65), EndpointError::TooManyLevels { count: 65 })]
    #[case::no_leading_slash("ab/c", EndpointError::NoLeadingSlash)]
    #[case::trailing_slash("/a/", EndpointError::EmptyLevel { position: 2 })]
    #[case::double_slash("/a//b", EndpointError::EmptyLevel { position: 2 })]
    #[case::digit_start("/1a", EndpointError::InvalidLiteral { level: "1a".into() })]
    #[case::hyphen("/a-b", EndpointError::InvalidLiteral { level: "a-b".into() })]
    #[case::dot("/a.b", EndpointError::InvalidLiteral { level: "a.b".into() })]
    #[case::non_ascii("/caf\u{e9}", EndpointError::InvalidLiteral { level: "caf\u{e9}".into() })]
    #[case::partial_parameter("/x%{id}", EndpointError::InvalidLiteral { level: "x%{id}".into() })]
    #[case::parameter_with_suffix("/%{id}x", EndpointError::InvalidParameter { level: "%{id}x".into() })]
    #[case::empty_parameter("/%{}", EndpointError::InvalidParameter { level: "%{}".into() })]
    #[case::parameter_digit("/%{1}", EndpointError::InvalidParameter { level: "%{1}".into() })]
    #[case::unclosed_parameter("/%{id", EndpointError::InvalidParameter { level: "%{id".into() })]
    fn invalid_endpoints_are_rejected_with_the_reason(
        #[case] text: &str,
        #[case] expected: EndpointError,
    ) {
        assert_eq!(Endpoint::parse(text), Err(expected));
    }

    #[rstest]
    #[case::literal("/config/enabled", "/config/enabled", true)]
    #[case::literal_other("/config/enabled", "/config/disabled", false)]
    #[case::literal_is_case_sensitive("/config/enabled", "/Config/enabled", false)]
    #[case::parameter("/%{id}/value", "/room1/value", true)]
    #[case::parameter_any_utf8("/%{id}/value", "/caf\u{e9} 1/value", true)]
    #[case::parameter_spans_one_level_only("/%{id}/value", "/a/b/value", false)]
    #[case::too_short("/%{id}/value", "/room1", false)]
    #[case::too_long("/%{id}/value", "/room1/value/x", false)]
    #[case::empty_level("/%{id}/value", "//value", false)]
    #[case::trailing_slash("/%{id}/value", "/room1/value/", false)]
    #[case::no_leading_slash("/%{id}/value", "room1/value", false)]
    #[case::plus("/%{id}/value", "/+/value", false)]
    #[case::hash("/%{id}/value", "/#/value", false)]
    #[case::wildcard_inside_level("/%{id}/value", "/a+b/value", false)]
    fn concrete_paths_match_endpoints(
        #[case] endpoint: &str,
        #[case] path: &str,
        #[case] expected: bool,
    ) {
        assert_eq!(Endpoint::parse(endpoint).unwrap().matches(path), expected);
    }

    #[rstest]
    #[case("/%{room}/temperature", "/kitchen", true)]
    #[case("/%{room}/temperature", "/kitchen/temperature", false)]
    #[case("/building/%{room}/temperature", "/building/kitchen", true)]
    #[case("/building/%{room}/temperature", "/garage/kitchen", false)]
    #[case("/temperature", "/", true)]
    fn object_paths_match_every_level_but_the_last(
        #[case] endpoint: &str,
        #[case] path: &str,
        #[case] expected: bool,
    ) {
        let endpoint = Endpoint::parse(endpoint).unwrap();
        let path = ConcretePath::parse(path).unwrap();
        assert_eq!(endpoint.matches_object_path(&path), expected);
    }

    #[rstest]
    #[case("/%{a}/Value", "//value")]
    #[case("/Config/%{x}/On", "/config//on")]
    fn normalized_drops_parameter_names_and_case(#[case] endpoint: &str, #[case] expected: &str) {
        assert_eq!(Endpoint::parse(endpoint).unwrap().normalized(), expected);
    }
}
