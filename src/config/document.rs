//! The configuration file as TOML: parsed once with the position of every key, so that each
//! problem can name its line, and every syntax error is reported, not only the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::reader::Findings;
use super::{Config, ConfigError, DEFAULT_INTERFACES_DIR};

/// The parsed file: its keys and values, and the line of each key (`section.key` → line).
pub(super) struct Document {
    pub table: toml::Table,
    lines: BTreeMap<String, usize>,
}

/// A syntax error: where, what, and the source snippet TOML shows with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: Option<usize>,
    pub message: String,
    /// The lines of the file around the error with a marker, as the TOML parser prints them.
    pub snippet: String,
}

impl Document {
    pub fn parse(text: &str) -> Result<Document, Vec<SyntaxError>> {
        let (parsed, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            return Err(errors
                .iter()
                .map(|error| syntax_error(text, error))
                .collect());
        }
        let mut lines = BTreeMap::new();
        collect_lines(text, "", parsed.get_ref(), &mut lines);
        let deserializer = toml::de::Deserializer::from(parsed);
        let table = serde::Deserialize::deserialize(deserializer)
            .map_err(|error: toml::de::Error| vec![syntax_error(text, &error)])?;
        Ok(Document { table, lines })
    }

    /// The line of `key` (`store.max_queue_bytes`), or of the closest table that holds it.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(line) = self.lines.get(key) {
                return Some(*line);
            }
            key = &key[..key.rfind('.')?];
        }
    }
}

fn syntax_error(text: &str, error: &toml::de::Error) -> SyntaxError {
    let rendered = error.to_string();
    // The first line repeats the position ("TOML parse error at line L, column C").
    let snippet = rendered
        .split_once('\n')
        .map_or("", |(_, rest)| rest)
        .trim_end()
        .to_owned();
    SyntaxError {
        line: error.span().map(|span| line_at(text, span.start)),
        message: error.message().trim_end().replace('\n', " "),
        snippet,
    }
}

fn collect_lines(
    text: &str,
    prefix: &str,
    table: &DeTable<'_>,
    lines: &mut BTreeMap<String, usize>,
) {
    for (key, value) in table.iter() {
        let path = format!("{prefix}{}", key.get_ref());
        lines
            .entry(path.clone())
            .or_insert_with(|| line_at(text, key.span().start));
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            collect_lines(text, &format!("{path}."), inner, lines);
        }
    }
}

/// 1-based line number of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// One problem of the configuration file, with the line it is on when known.
#[derive(Debug)]
pub struct Problem {
    pub line: Option<usize>,
    pub error: ConfigError,
    /// For a syntax error, the file's lines around it.
    pub snippet: Option<String>,
}

/// What `check-config` needs: the configuration when it is valid, every problem otherwise,
/// and the interfaces folder to check in either case (from the file when it names one).
pub struct Checked {
    pub config: Option<Config>,
    pub problems: Vec<Problem>,
    pub interfaces_dir: PathBuf,
}

impl Config {
    /// Reads the configuration file and reports every problem it has, each with its line.
    pub fn check(path: &Path) -> Checked {
        let mut checked = Checked {
            config: None,
            problems: Vec::new(),
            interfaces_dir: DEFAULT_INTERFACES_DIR.into(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(source) => {
                checked.problems.push(Problem {
                    line: None,
                    error: ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    },
                    snippet: None,
                });
                return checked;
            }
        };
        let document = match Document::parse(&text) {
            Ok(document) => document,
            Err(errors) => {
                checked.problems = errors
                    .into_iter()
                    .map(|error| Problem {
                        line: error.line,
                        error: ConfigError::Syntax {
                            path: path.to_owned(),
                            message: error.message,
                        },
                        snippet: Some(error.snippet),
                    })
                    .collect();
                return checked;
            }
        };
        // The folder of interfaces is checked even when the rest is invalid.
        if let Some(dir) = document
            .table
            .get("interfaces_dir")
            .and_then(|v| v.as_str())
        {
            checked.interfaces_dir = dir.into();
        }
        match super::file::read(&document.table) {
            Ok(config) => {
                checked.interfaces_dir = config.interfaces_dir.clone();
                checked.config = Some(config);
            }
            Err(Findings { problems, .. }) => {
                checked.problems = problems
                    .into_iter()
                    .map(|error| Problem {
                        line: error.key().and_then(|key| document.line_of(&key)),
                        error,
                        snippet: None,
                    })
                    .collect();
                // In file order; problems without a line (a missing key) last.
                checked
                    .problems
                    .sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
            }
        }
        checked
    }
}
