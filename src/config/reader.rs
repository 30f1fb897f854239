//! Reading a TOML table key by key. Each key is converted to its type on its own, so a wrong
//! type, an unknown key or a missing one is a problem of that key and the rest of the file is
//! still read: `check-config` reports every problem in one run.

use serde::de::DeserializeOwned;

use super::ConfigError;

/// What reading found: the problems, and every key it asked for (the documented keys, see
/// [`super::keys`]).
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub problems: Vec<ConfigError>,
    pub asked: Vec<String>,
}

impl Findings {
    pub fn push(&mut self, problem: ConfigError) {
        self.problems.push(problem);
    }

    /// The value, or `None` with its problem recorded.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|problem| self.push(problem)).ok()
    }
}

/// One table of the file (the top level, or a section such as `[store]`).
pub(super) struct Reader<'t> {
    /// `store.` for `[store]`, empty at the top level.
    prefix: String,
    table: Option<&'t toml::Table>,
    /// Keys asked for, in order: anything else in the table is unknown.
    known: Vec<&'static str>,
}

impl<'t> Reader<'t> {
    pub fn top(table: &'t toml::Table) -> Reader<'t> {
        Reader {
            prefix: String::new(),
            table: Some(table),
            known: Vec::new(),
        }
    }

    /// The full name of `key` in this table, as problems and the documentation name it.
    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn ask(&mut self, key: &'static str, found: &mut Findings) -> Option<&'t toml::Value> {
        self.known.push(key);
        found.asked.push(self.path(key));
        self.table?.get(key)
    }

    /// An optional key converted to `T`; `None` when absent or of the wrong type (a problem).
    pub fn optional<T: DeserializeOwned>(
        &mut self,
        key: &'static str,
        found: &mut Findings,
    ) -> Option<T> {
        let value = self.ask(key, found)?;
        let converted =
            value
                .clone()
                .try_into()
                .map_err(|error: toml::de::Error| ConfigError::WrongType {
                    key: self.path(key),
                    message: error.message().trim_end().replace('\n', " "),
                });
        found.take(converted)
    }

    /// A required key: its absence is a problem too.
    pub fn required<T: DeserializeOwned>(
        &mut self,
        key: &'static str,
        found: &mut Findings,
    ) -> Option<T> {
        let present = self.table.is_some_and(|table| table.contains_key(key));
        let value = self.optional(key, found);
        if !present {
            found.push(ConfigError::Missing {
                key: self.path(key),
            });
        }
        value
    }

    /// A key holding a table, read as it is (for tables of free-form names).
    pub fn raw_table(
        &mut self,
        key: &'static str,
        found: &mut Findings,
    ) -> Option<&'t toml::Table> {
        let value = self.ask(key, found)?;
        match value {
            toml::Value::Table(table) => Some(table),
            _ => {
                found.push(ConfigError::WrongType {
                    key: self.path(key),
                    message: format!("expected a table ([{}])", self.path(key)),
                });
                None
            }
        }
    }

    /// A section (`[key]`), read with its own reader; absent, it reads as empty.
    pub fn section(&mut self, key: &'static str, found: &mut Findings) -> Reader<'t> {
        let table = self.raw_table(key, found);
        Reader {
            prefix: format!("{}.", self.path(key)),
            table,
            known: Vec::new(),
        }
    }

    /// A reader of `table` under the name `prefix` (for `[commands.<name>]`).
    pub fn named(prefix: String, table: Option<&'t toml::Table>) -> Reader<'t> {
        Reader {
            prefix: format!("{prefix}."),
            table,
            known: Vec::new(),
        }
    }

    /// Every key of the table that was not asked for is unknown.
    pub fn finish(self, found: &mut Findings) {
        let Some(table) = self.table else {
            return;
        };
        for key in table.keys() {
            if !self.known.contains(&key.as_str()) {
                found.push(ConfigError::UnknownKey {
                    key: self.path(key),
                    expected: self.known.join(", "),
                });
            }
        }
    }
}
