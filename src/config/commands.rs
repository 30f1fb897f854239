//! `[commands]` and its `[commands.<name>]` tables. The section mixes settings and command
//! tables, so it is read as a TOML table and checked key by key: every problem names its
//! key (`commands.reboot.args_pattern: ...`) and all of them are reported at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::commands::{
    CommandSpec, CommandsOptions, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_SECONDS,
    MAX_OUTPUT_BYTES, compile_args_pattern, is_valid_name,
};

/// One `[commands.<name>]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandFile {
    exec: Vec<String>,
    args_pattern: Option<String>,
    timeout_seconds: Option<u32>,
    rerun_on_restart: Option<bool>,
    max_output_bytes: Option<u64>,
}

const SETTINGS: &str =
    "enabled, max_parallel, ledger_max_age_days, ledger_max_entries, handler_wait_seconds";

/// Validates `[commands]`, pushing one problem per bad key; `None` when there was any.
pub(super) fn validate(
    section: Option<&toml::Table>,
    problems: &mut Vec<ConfigError>,
) -> Option<CommandsOptions> {
    let mut options = CommandsOptions::default();
    let Some(section) = section else {
        return Some(options);
    };
    let before = problems.len();
    let mut problem = |key: &str, message: String| {
        problems.push(ConfigError::Commands {
            key: key.to_owned(),
            message,
        })
    };
    let mut commands = BTreeMap::new();
    for (key, value) in section {
        match (key.as_str(), value) {
            ("enabled", toml::Value::Boolean(enabled)) => options.enabled = *enabled,
            ("enabled", _) => problem(key, "expected true or false".into()),
            ("max_parallel", value) => match at_least_one(value) {
                Ok(count) => options.max_parallel = count as usize,
                Err(message) => problem(key, message),
            },
            ("ledger_max_age_days", value) => match at_least_one(value) {
                Ok(days) => options.ledger_max_age_days = days,
                Err(message) => problem(key, message),
            },
            ("handler_wait_seconds", toml::Value::Integer(seconds))
                if (0..=3600).contains(seconds) =>
            {
                options.handler_wait = Duration::from_secs(*seconds as u64)
            }
            ("handler_wait_seconds", _) => {
                problem(key, "expected a number of seconds from 0 to 3600".into())
            }
            ("ledger_max_entries", value) => match at_least_one(value) {
                Ok(entries) => options.ledger_max_entries = entries,
                Err(message) => problem(key, message),
            },
            (name, toml::Value::Table(table)) => match command(name, table) {
                Ok(spec) => {
                    commands.insert(name.to_owned(), Arc::new(spec));
                }
                Err((key, message)) => problem(&key, message),
            },
            (_, _) => problem(
                key,
                format!("unknown key: expected one of {SETTINGS}, or a [commands.<name>] table"),
            ),
        }
    }
    options.commands = commands;
    (problems.len() == before).then_some(options)
}

/// A positive integer that fits 32 bits.
fn at_least_one(value: &toml::Value) -> Result<u32, String> {
    match value.as_integer().map(u32::try_from) {
        Some(Ok(number)) if number >= 1 => Ok(number),
        _ => Err("expected a whole number, at least 1".into()),
    }
}

/// One command table; an error names the key it is about.
fn command(name: &str, table: &toml::Table) -> Result<CommandSpec, (String, String)> {
    let key = |field: &str| format!("{name}.{field}");
    if !is_valid_name(name) {
        return Err((
            name.to_owned(),
            "a command name is 1-64 letters, digits, '_', '.' or '-'".into(),
        ));
    }
    let file: CommandFile = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|error: toml::de::Error| (name.to_owned(), one_line(&error.to_string())))?;
    match file.exec.first() {
        None => return Err((key("exec"), "expected the program and its arguments, e.g. [\"/usr/bin/systemctl\", \"restart\", \"app\"]".into())),
        Some(program) if !program.starts_with('/') => {
            return Err((
                key("exec"),
                format!("the program must be an absolute path (no PATH lookup), got {program:?}"),
            ));
        }
        Some(_) => {}
    }
    if file.exec.iter().any(|arg| arg.contains('\0')) {
        return Err((key("exec"), "an argument contains a NUL byte".into()));
    }
    let args_pattern = match &file.args_pattern {
        Some(pattern) => Some(
            compile_args_pattern(pattern)
                .map_err(|error| (key("args_pattern"), one_line(&error.to_string())))?,
        ),
        None => None,
    };
    let timeout_seconds = file.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if timeout_seconds == 0 {
        return Err((key("timeout_seconds"), "expected at least 1 second".into()));
    }
    let max_output_bytes = match file.max_output_bytes {
        None => DEFAULT_MAX_OUTPUT_BYTES,
        Some(bytes) if bytes <= MAX_OUTPUT_BYTES as u64 => bytes as usize,
        Some(bytes) => {
            return Err((
                key("max_output_bytes"),
                format!(
                    "{bytes} is too large: at most {MAX_OUTPUT_BYTES}, so that stdout and stderr fit one result in Astarte's 65,535-byte message"
                ),
            ));
        }
    };
    Ok(CommandSpec {
        exec: file.exec,
        args_pattern,
        timeout: Duration::from_secs(timeout_seconds.into()),
        rerun_on_restart: file.rerun_on_restart.unwrap_or(false),
        max_output_bytes,
    })
}

fn one_line(text: &str) -> String {
    text.trim_end().replace('\n', " ")
}
