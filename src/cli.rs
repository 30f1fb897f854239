//! Command-line interface.
//!
//! Parsed by hand: three subcommands and two options did not need clap, which was about 200 KB
//! of the binary (issue "Fits the smallest boards"). The help, version and error texts and the
//! exit statuses (0 after help or version, 2 after a usage error) are the ones clap printed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::exit;

use crate::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, PartialEq, Eq)]
pub struct Cli {
    /// Configuration file.
    pub config: PathBuf,
    pub command: Option<Command>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Validate the configuration and every interface file; every problem, one line each.
    CheckConfig,
    /// Print the device ID the configuration resolves to.
    DeviceId,
    /// Show the running daemon's health; exit status 0 connected, 150 degraded (running, not
    /// connected), 3 not running, 4 unknown.
    Status {
        /// One JSON object instead of text.
        json: bool,
    },
}

const ABOUT: &str = "Connects this device to Astarte and serves a D-Bus API";
const CHECK_CONFIG: &str =
    "Validate the configuration and every interface file; every problem, one line each";
const DEVICE_ID: &str = "Print the device ID the configuration resolves to";
const STATUS: &str = "Show the running daemon's health; exit status 0 connected, 150 degraded \
                      (running, not connected), 3 not running, 4 unknown";
const HELP: &str = "Print this message or the help of the given subcommand(s)";
const CONFIG_OPTION: &str = "      --config <CONFIG>  Configuration file [default: ";

/// Where in the command line the parser is: the top level or a subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Top,
    CheckConfig,
    DeviceId,
    Status,
    Help,
}

impl Scope {
    fn named(name: &str) -> Option<Scope> {
        Some(match name {
            "check-config" => Scope::CheckConfig,
            "device-id" => Scope::DeviceId,
            "status" => Scope::Status,
            "help" => Scope::Help,
            _ => return None,
        })
    }

    fn usage(self) -> &'static str {
        match self {
            Scope::Top => "[OPTIONS] [COMMAND]",
            Scope::CheckConfig => "check-config [OPTIONS]",
            Scope::DeviceId => "device-id [OPTIONS]",
            Scope::Status => "status [OPTIONS]",
            Scope::Help => "help [COMMAND]...",
        }
    }

    fn help(self, bin: &str) -> String {
        let usage = self.usage();
        let config = format!("{CONFIG_OPTION}{DEFAULT_CONFIG_PATH}]");
        let help = "  -h, --help             Print help";
        match self {
            Scope::Top => format!(
                "{ABOUT}\n\nUsage: {bin} {usage}\n\nCommands:\n  check-config  {CHECK_CONFIG}\n  \
                 device-id     {DEVICE_ID}\n  status        {STATUS}\n  help          {HELP}\n\n\
                 Options:\n{config}\n{help}\n  -V, --version          Print version\n"
            ),
            Scope::CheckConfig | Scope::DeviceId => {
                let about = if self == Scope::CheckConfig {
                    CHECK_CONFIG
                } else {
                    DEVICE_ID
                };
                format!("{about}\n\nUsage: {bin} {usage}\n\nOptions:\n{config}\n{help}\n")
            }
            Scope::Status => format!(
                "{STATUS}\n\nUsage: {bin} {usage}\n\nOptions:\n{config}\n      --json             \
                 One JSON object instead of text\n{help}\n"
            ),
            Scope::Help => format!(
                "{HELP}\n\nUsage: {bin} {usage}\n\nArguments:\n  [COMMAND]...  Print help for \
                 the subcommand(s)\n"
            ),
        }
    }
}

/// What the command line asks for besides running.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Print this on stdout, exit 0 (help, version).
    Print(String),
    /// Print this on stderr, exit 2 (a usage error).
    Usage(String),
}

impl Cli {
    /// Parses the process's arguments; prints help, the version or a usage error and exits
    /// when that is what they ask for.
    pub fn parse() -> Cli {
        let mut args = std::env::args_os();
        let bin = args
            .next()
            .map(PathBuf::from)
            .and_then(|path| {
                path.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "astarte-agent".into());
        match Cli::parse_from(&bin, args) {
            Ok(cli) => cli,
            Err(Exit::Print(text)) => {
                print!("{text}");
                exit(0)
            }
            Err(Exit::Usage(text)) => {
                eprint!("{text}");
                exit(2)
            }
        }
    }

    /// Parses `args` (without the program name); `bin` names the program in usage lines.
    pub fn parse_from(bin: &str, args: impl IntoIterator<Item = OsString>) -> Result<Cli, Exit> {
        let mut parser = Parser {
            bin,
            scope: Scope::Top,
            config: None,
            json: false,
            missing_value: false,
            escaped: false,
            help_for: None,
        };
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let value = match args.peek() {
                Some(next) if !looks_like_option(next) => Some(next.clone()),
                _ => None,
            };
            if parser.arg(&arg, value)? {
                args.next();
            }
        }
        parser.finish()
    }
}

fn looks_like_option(arg: &OsString) -> bool {
    let bytes = arg.as_encoded_bytes();
    bytes.len() > 1 && bytes[0] == b'-'
}

struct Parser<'a> {
    bin: &'a str,
    scope: Scope,
    config: Option<PathBuf>,
    json: bool,
    /// `--config` was given without a value.
    missing_value: bool,
    /// After `--`: everything is a positional argument.
    escaped: bool,
    /// `help COMMAND`: the subcommand whose help is asked for.
    help_for: Option<Scope>,
}

impl Parser<'_> {
    /// Takes `arg` (and `next`, the argument after it unless it looks like an option);
    /// whether `next` was used.
    fn arg(&mut self, arg: &OsString, next: Option<OsString>) -> Result<bool, Exit> {
        let Some(text) = arg.to_str() else {
            return Err(self.error("invalid UTF-8 was detected in one or more arguments", None));
        };
        if self.escaped || self.scope == Scope::Help || !text.starts_with('-') || text == "-" {
            return self.positional(text).map(|()| false);
        }
        match text {
            "--" => self.escaped = true,
            "--help" => return Err(Exit::Print(self.scope.help(self.bin))),
            "--version" if self.scope == Scope::Top => {
                return self.short_flags("-V").map(|()| false);
            }
            "--json" if self.scope == Scope::Status => {
                if self.json {
                    return Err(self.usage("the argument '--json' cannot be used multiple times"));
                }
                self.json = true;
            }
            "--config" => {
                self.set_config(next.clone())?;
                return Ok(next.is_some());
            }
            _ if !text.starts_with("--") => return self.short_flags(text).map(|()| false),
            _ => {
                if let Some(value) = text.strip_prefix("--config=") {
                    self.set_config((!value.is_empty()).then(|| value.into()))?;
                } else if let Some(value) = text.strip_prefix("--json=")
                    && self.scope == Scope::Status
                {
                    let message = format!(
                        "unexpected value '{value}' for '--json' found; no more were expected"
                    );
                    return Err(self.error(&message, Some("status --json")));
                } else {
                    return Err(self.usage(&format!("unexpected argument '{text}' found")));
                }
            }
        }
        Ok(false)
    }

    /// `-h`, `-V` or a cluster of them (`-hV`): the first one wins.
    fn short_flags(&mut self, text: &str) -> Result<(), Exit> {
        match text[1..].chars().next() {
            Some('h') => Err(Exit::Print(self.scope.help(self.bin))),
            Some('V') if self.scope == Scope::Top => {
                let version = env!("CARGO_PKG_VERSION");
                Err(Exit::Print(format!("astarte-agent {version}\n")))
            }
            Some(flag) => Err(self.usage(&format!("unexpected argument '-{flag}' found"))),
            None => Ok(()),
        }
    }

    fn set_config(&mut self, value: Option<OsString>) -> Result<(), Exit> {
        if self.config.is_some() {
            return Err(
                self.usage("the argument '--config <CONFIG>' cannot be used multiple times")
            );
        }
        match value {
            Some(value) => self.config = Some(value.into()),
            None => self.missing_value = true,
        }
        Ok(())
    }

    fn positional(&mut self, text: &str) -> Result<(), Exit> {
        match self.scope {
            Scope::Top if !self.escaped => match Scope::named(text) {
                Some(scope) => self.scope = scope,
                None => return Err(self.usage(&format!("unrecognized subcommand '{text}'"))),
            },
            Scope::Top if Scope::named(text).is_some() => {
                let message = format!(
                    "unexpected argument '{text}' found\n\n  tip: subcommand '{text}' exists; to \
                     use it, remove the '--' before it"
                );
                return Err(self.usage(&message));
            }
            // `help [COMMAND]`: the help of that subcommand; nothing may follow it.
            Scope::Help => match (self.help_for, Scope::named(text)) {
                (None, Some(scope)) => self.help_for = Some(scope),
                (target, _) => {
                    let usage = target.unwrap_or(Scope::Top).usage();
                    return Err(
                        self.error(&format!("unrecognized subcommand '{text}'"), Some(usage))
                    );
                }
            },
            _ => return Err(self.usage(&format!("unexpected argument '{text}' found"))),
        }
        Ok(())
    }

    fn finish(self) -> Result<Cli, Exit> {
        if self.missing_value {
            let message = "a value is required for '--config <CONFIG>' but none was supplied";
            return Err(self.error(message, None));
        }
        let command = match self.scope {
            Scope::Top => None,
            Scope::CheckConfig => Some(Command::CheckConfig),
            Scope::DeviceId => Some(Command::DeviceId),
            Scope::Status => Some(Command::Status { json: self.json }),
            Scope::Help => {
                let scope = self.help_for.unwrap_or(Scope::Top);
                return Err(Exit::Print(scope.help(self.bin)));
            }
        };
        Ok(Cli {
            config: self
                .config
                .unwrap_or_else(|| Path::new(DEFAULT_CONFIG_PATH).to_owned()),
            command,
        })
    }

    /// A usage error with the usage line of the current scope.
    fn usage(&self, message: &str) -> Exit {
        self.error(message, Some(self.scope.usage()))
    }

    fn error(&self, message: &str, usage: Option<&str>) -> Exit {
        let usage = usage
            .map(|usage| format!("Usage: {} {usage}\n\n", self.bin))
            .unwrap_or_default();
        Exit::Usage(format!(
            "error: {message}\n\n{usage}For more information, try '--help'.\n"
        ))
    }
}

#[cfg(test)]
mod tests;
