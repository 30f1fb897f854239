//! `[commands]` and its `[commands.<name>]` tables. The section mixes settings and command
//! tables, so it is read as a TOML table and checked key by key: every problem names its
//! key (`commands.reboot.args_pattern: ...`) and all of them are reported at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::ConfigError;
use super::reader::{Findings, Reader};
use crate::commands::{
    CommandSpec, CommandsOptions, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_SECONDS,
    MAX_OUTPUT_BYTES, compile_args_pattern, is_valid_name,
};

/// The settings of `[commands]`; every other key of the section names a command table.
const SETTINGS: [&str; 5] = [
    "enabled",
    "max_parallel",
    "ledger_max_age_days",
    "ledger_max_entries",
    "handler_wait_seconds",
];

/// Reads `[commands]`, recording one problem per bad key; `None` when there was any.
pub(super) fn read(section: Option<&toml::Table>, found: &mut Findings) -> Option<CommandsOptions> {
    let before = found.problems.len();
    let mut settings = Reader::named("commands".into(), section);
    let mut options = CommandsOptions::default();
    if let Some(enabled) = settings.optional("enabled", found) {
        options.enabled = enabled;
    }
    if let Some(count) = at_least_one(&mut settings, "max_parallel", found) {
        options.max_parallel = count as usize;
    }
    if let Some(days) = at_least_one(&mut settings, "ledger_max_age_days", found) {
        options.ledger_max_age_days = days;
    }
    if let Some(entries) = at_least_one(&mut settings, "ledger_max_entries", found) {
        options.ledger_max_entries = entries;
    }
    match settings.optional::<i64>("handler_wait_seconds", found) {
        Some(seconds) if (0..=3600).contains(&seconds) => {
            options.handler_wait = Duration::from_secs(seconds.unsigned_abs())
        }
        Some(_) => found.push(invalid(
            settings.path("handler_wait_seconds"),
            "expected a number of seconds from 0 to 3600",
        )),
        None => {}
    }
    // Lists the keys of a command table (`commands.<name>.exec`, ...) among the known ones.
    let mut listing = Findings::default();
    command("<name>", None, &mut listing);
    found.asked.extend(listing.asked);
    let mut commands = BTreeMap::new();
    for (name, value) in section.into_iter().flatten() {
        if SETTINGS.contains(&name.as_str()) {
            continue;
        }
        match value {
            toml::Value::Table(table) => {
                if let Some(spec) = command(name, Some(table), found) {
                    commands.insert(name.clone(), Arc::new(spec));
                }
            }
            _ => found.push(ConfigError::UnknownKey {
                key: settings.path(name),
                expected: format!("{}, or a [commands.<name>] table", SETTINGS.join(", ")),
            }),
        }
    }
    options.commands = commands;
    (found.problems.len() == before).then_some(options)
}

/// A positive integer that fits 32 bits.
fn at_least_one(settings: &mut Reader<'_>, key: &'static str, found: &mut Findings) -> Option<u32> {
    let value: i64 = settings.optional(key, found)?;
    match u32::try_from(value) {
        Ok(number) if number >= 1 => Some(number),
        _ => {
            found.push(invalid(
                settings.path(key),
                "expected a whole number, at least 1",
            ));
            None
        }
    }
}

fn invalid(key: String, message: &str) -> ConfigError {
    ConfigError::Commands {
        key,
        message: message.to_owned(),
    }
}

/// One `[commands.<name>]` table; every problem names its key.
fn command(name: &str, table: Option<&toml::Table>, found: &mut Findings) -> Option<CommandSpec> {
    let before = found.problems.len();
    let mut fields = Reader::named(format!("commands.{name}"), table);
    if table.is_some() && !is_valid_name(name) {
        found.push(invalid(
            format!("commands.{name}"),
            "a command name is 1-64 letters, digits, '_', '.' or '-'",
        ));
    }
    let exec: Option<Vec<String>> = fields.required("exec", found);
    match exec.as_ref().map(|exec| exec.first()) {
        Some(None) => found.push(invalid(fields.path("exec"), "expected the program and its arguments, e.g. [\"/usr/bin/systemctl\", \"restart\", \"app\"]")),
        Some(Some(program)) if !program.starts_with('/') => found.push(invalid(
            fields.path("exec"),
            &format!("the program must be an absolute path (no PATH lookup), got {program:?}"),
        )),
        _ => {}
    }
    if exec.iter().flatten().any(|arg| arg.contains('\0')) {
        found.push(invalid(
            fields.path("exec"),
            "an argument contains a NUL byte",
        ));
    }
    let pattern: Option<String> = fields.optional("args_pattern", found);
    let args_pattern = pattern.and_then(|pattern| {
        compile_args_pattern(&pattern)
            .map_err(|error| {
                let message = error.to_string().trim_end().replace('\n', " ");
                found.push(invalid(fields.path("args_pattern"), &message));
            })
            .ok()
    });
    let timeout_seconds: u32 = fields
        .optional("timeout_seconds", found)
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if timeout_seconds == 0 {
        found.push(invalid(
            fields.path("timeout_seconds"),
            "expected at least 1 second",
        ));
    }
    let rerun_on_restart = fields.optional("rerun_on_restart", found).unwrap_or(false);
    let max_output_bytes = match fields.optional::<u64>("max_output_bytes", found) {
        None => DEFAULT_MAX_OUTPUT_BYTES,
        Some(bytes) if bytes <= MAX_OUTPUT_BYTES as u64 => bytes as usize,
        Some(bytes) => {
            found.push(invalid(fields.path("max_output_bytes"), &format!(
                "{bytes} is too large: at most {MAX_OUTPUT_BYTES}, so that stdout and stderr fit one result in Astarte's 65,535-byte message"
            )));
            0
        }
    };
    fields.finish(found);
    if found.problems.len() != before || table.is_none() {
        return None;
    }
    Some(CommandSpec {
        exec: exec?,
        args_pattern,
        timeout: Duration::from_secs(timeout_seconds.into()),
        rerun_on_restart,
        max_output_bytes,
    })
}
