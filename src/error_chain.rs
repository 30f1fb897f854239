//! One line for an error and its causes, for logs and messages: `what: why: root cause`.

use std::error::Error;

/// The error and each of its sources, joined with `: `; a cause whose text the line already
/// contains (many errors repeat their source) is written once.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("couldn't load the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_joined_once() {
        let error = Outer(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&error), "couldn't load the store: disk full");
    }
}
