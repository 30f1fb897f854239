//! Concrete data paths (`/room1/temperature`), as they appear after the interface name in
//! an MQTT topic or in a D-Bus call, checked once so callers can report precise errors.

use std::fmt;

/// Why a concrete path is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathSyntaxError {
    #[error("it must start with `/`")]
    NoLeadingSlash,
    #[error("it must not end with `/`")]
    TrailingSlash,
    #[error("level {position} is empty (`//`)")]
    EmptyLevel { position: usize },
    #[error("level `{level}` contains the forbidden character {forbidden:?}")]
    ForbiddenCharacter { level: String, forbidden: char },
}

/// A syntactically valid concrete path split into its levels.
///
/// Levels are non-empty and contain no `/`, `+`, `#` (MQTT wildcards) or NUL (forbidden
/// in MQTT topics). The root path `/` has no levels: it is the object path of depth-1
/// object endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcretePath<'a> {
    path: &'a str,
    levels: Vec<&'a str>,
}

impl<'a> ConcretePath<'a> {
    pub fn parse(path: &'a str) -> Result<ConcretePath<'a>, PathSyntaxError> {
        let rest = path
            .strip_prefix('/')
            .ok_or(PathSyntaxError::NoLeadingSlash)?;
        if rest.is_empty() {
            return Ok(ConcretePath {
                path,
                levels: Vec::new(),
            });
        }
        let levels: Vec<&str> = rest.split('/').collect();
        let last = levels.len();
        for (index, level) in levels.iter().enumerate() {
            if level.is_empty() {
                return Err(if index + 1 == last {
                    PathSyntaxError::TrailingSlash
                } else {
                    PathSyntaxError::EmptyLevel {
                        position: index + 1,
                    }
                });
            }
            if let Some(forbidden) = level.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
                return Err(PathSyntaxError::ForbiddenCharacter {
                    level: (*level).to_owned(),
                    forbidden,
                });
            }
        }
        Ok(ConcretePath { path, levels })
    }

    /// The levels, without separators; empty for `/`.
    pub fn levels(&self) -> &[&'a str] {
        &self.levels
    }

    pub fn as_str(&self) -> &'a str {
        self.path
    }
}

impl fmt::Display for ConcretePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::root("/", &[])]
    #[case::one("/a", &["a"])]
    #[case::two("/room 1/temp", &["room 1", "temp"])]
    #[case::utf8("/caf\u{e9}", &["caf\u{e9}"])]
    fn valid_paths_split_into_levels(#[case] path: &str, #[case] levels: &[&str]) {
        assert_eq!(ConcretePath::parse(path).unwrap().levels(), levels);
    }

    #[rstest]
    #[case::empty("", PathSyntaxError::NoLeadingSlash)]
    #[case::relative("a/b", PathSyntaxError::NoLeadingSlash)]
    #[case::trailing("/a/", PathSyntaxError::TrailingSlash)]
    #[case::double_slash("/a//b", PathSyntaxError::EmptyLevel { position: 2 })]
    #[case::leading_double_slash("//a", PathSyntaxError::EmptyLevel { position: 1 })]
    #[case::plus("/a/+", PathSyntaxError::ForbiddenCharacter { level: "+".into(), forbidden: '+' })]
    #[case::hash("/x#y", PathSyntaxError::ForbiddenCharacter { level: "x#y".into(), forbidden: '#' })]
    #[case::nul("/a\0", PathSyntaxError::ForbiddenCharacter { level: "a\0".into(), forbidden: '\0' })]
    fn malformed_paths_are_rejected_with_the_reason(
        #[case] path: &str,
        #[case] expected: PathSyntaxError,
    ) {
        assert_eq!(ConcretePath::parse(path), Err(expected));
    }
}
