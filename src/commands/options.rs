//! The validated `[commands]` configuration (parsed in `config/commands.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Default `[commands] max_parallel`: commands running at once.
pub const DEFAULT_MAX_PARALLEL: usize = 2;
/// Default `[commands] ledger_max_age_days`: finished commands older than this are forgotten.
pub const DEFAULT_LEDGER_MAX_AGE_DAYS: u32 = 30;
/// Default `[commands] ledger_max_entries`: finished commands kept beyond this are forgotten,
/// oldest first.
pub const DEFAULT_LEDGER_MAX_ENTRIES: u32 = 1000;
/// Default `[commands.<name>] timeout_seconds`.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 300;
/// Default `[commands.<name>] max_output_bytes`, for stdout and for stderr each.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 * 1024;

/// `[commands]`: whether remote commands are on, how many run at once, how long the ledger
/// remembers finished ones, and the configured commands by name.
#[derive(Debug, Clone)]
pub struct CommandsOptions {
    /// The command interfaces are in the introspection only when this is true.
    pub enabled: bool,
    /// At most this many commands run at once (at least 1).
    pub max_parallel: usize,
    /// Finished commands are pruned from the ledger after this many days (at least 1).
    /// A command id pruned from the ledger is no longer recognised as a duplicate.
    pub ledger_max_age_days: u32,
    /// At most this many finished commands are kept (at least 1); unfinished ones always are.
    pub ledger_max_entries: u32,
    /// After start-up, requests for a name neither configured nor handled wait this long for
    /// an app to register a handler before they are rejected.
    pub handler_wait: Duration,
    pub commands: BTreeMap<String, Arc<CommandSpec>>,
}

impl CommandsOptions {
    /// Everything configured, as comparable text (a reload tells whether `[commands]` changed).
    pub fn summary(&self) -> String {
        format!("{self:?}")
    }
}

impl Default for CommandsOptions {
    fn default() -> Self {
        CommandsOptions {
            enabled: false,
            max_parallel: DEFAULT_MAX_PARALLEL,
            ledger_max_age_days: DEFAULT_LEDGER_MAX_AGE_DAYS,
            ledger_max_entries: DEFAULT_LEDGER_MAX_ENTRIES,
            handler_wait: super::DEFAULT_HANDLER_GRACE,
            commands: BTreeMap::new(),
        }
    }
}

/// `[commands.<name>]`: one command the device agrees to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program (an absolute path) and its fixed arguments; the request's arguments follow.
    pub exec: Vec<String>,
    /// Every request argument must match this whole (anchored when parsed); without a
    /// pattern no argument is accepted.
    pub args_pattern: Option<regex_lite::Regex>,
    /// The longest a run may take; a request may ask for less, never for more.
    pub timeout: Duration,
    /// Run it again after a restart that interrupted it, instead of reporting `interrupted`.
    pub rerun_on_restart: bool,
    /// Cap of stdout and of stderr each, in bytes (at most [`super::MAX_OUTPUT_BYTES`]).
    pub max_output_bytes: usize,
}

impl CommandSpec {
    /// A spec with the documented defaults: no arguments accepted, 300 s, 16 KiB of output.
    pub fn new(exec: Vec<String>) -> CommandSpec {
        CommandSpec {
            exec,
            args_pattern: None,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECONDS.into()),
            rerun_on_restart: false,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }

    /// Why `args` may not be given to this command, if they may not.
    pub fn refuse_args(&self, args: &[String]) -> Option<String> {
        match &self.args_pattern {
            None if args.is_empty() => None,
            None => Some(format!(
                "the command takes no arguments ({} given)",
                args.len()
            )),
            Some(pattern) => args
                .iter()
                .position(|arg| !pattern.is_match(arg))
                .map(|index| format!("argument {index} does not match the command's args_pattern")),
        }
    }

    /// The time a request gets: the configured timeout, or less when the request asks for
    /// less (a positive `requested` number of seconds).
    pub fn timeout_for(&self, requested_seconds: i32) -> Duration {
        match u64::try_from(requested_seconds) {
            Ok(seconds) if seconds > 0 => self.timeout.min(Duration::from_secs(seconds)),
            _ => self.timeout,
        }
    }
}

/// Anchors a configured `args_pattern` so that it must match a whole argument. The pattern
/// is compiled alone first: a pattern that only parses inside the wrapper (`a)|(b`) would
/// escape the anchors.
pub fn compile_args_pattern(pattern: &str) -> Result<regex_lite::Regex, regex_lite::Error> {
    regex_lite::Regex::new(pattern)?;
    regex_lite::Regex::new(&format!(r"\A(?:{pattern})\z"))
}

/// Whether `name` can name a command: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
