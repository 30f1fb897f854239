//! `check-config` and `device-id`: offline checks an operator runs before starting the service.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError, Problem};
use crate::error_chain::error_chain;
use crate::interface::registry::Registry;

/// Validates the configuration and every interface file; prints every problem on stderr, one
/// line each (`FILE:LINE: KEY: message`, without LINE or KEY where they are not known; a TOML
/// syntax error is followed by the lines it is about), all of them in one run: a bad key does
/// not hide another one, nor a bad interface file.
pub fn check_config(path: &Path) -> ExitCode {
    let checked = Config::check(path);
    let mut problems: Vec<String> = checked
        .problems
        .iter()
        .map(|problem| render(path, problem))
        .collect();
    let interfaces = match Registry::load_dir(&checked.interfaces_dir) {
        Ok((registry, file_problems)) => {
            problems.extend(file_problems.iter().map(|problem| problem.to_string()));
            registry.len()
        }
        Err(error) => {
            problems.push(error_chain(&error));
            0
        }
    };
    let mut device_id = None;
    if let Some(config) = &checked.config {
        match config.resolve_device_id() {
            Ok(id) => device_id = Some(id),
            Err(error) => problems.push(format!("{}: {}", path.display(), error_chain(&error))),
        }
        if let Some(token_file) = &config.pairing_token_file
            && let Err(error) = std::fs::metadata(token_file)
        {
            // Not fatal: a device that already holds a credentials secret needs no token.
            eprintln!("note: pairing_token_file {}: {error}", token_file.display());
        }
        if let Some(ca_file) = &config.ca_file
            && let Err(error) = crate::tls::trust_anchors(Some(ca_file))
        {
            problems.push(format!(
                "{}: ca_file: {}",
                path.display(),
                error_chain(&error)
            ));
        }
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    match (&checked.config, device_id) {
        (Some(config), Some(id)) if problems.is_empty() => {
            let noun = if interfaces == 1 {
                "interface"
            } else {
                "interfaces"
            };
            println!(
                "configuration OK: realm {}, device {id}, {interfaces} {noun}",
                config.realm
            );
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}

/// `FILE:LINE: message` (the message names the key), and the lines a syntax error is about.
fn render(file: &Path, problem: &Problem) -> String {
    let message = match &problem.error {
        ConfigError::Syntax { message, .. } => message.clone(),
        // It names the file itself.
        ConfigError::Read { .. } => return error_chain(&problem.error),
        error => error_chain(error),
    };
    let mut line = match problem.line {
        Some(number) => format!("{}:{number}: {message}", file.display()),
        None => format!("{}: {message}", file.display()),
    };
    if let Some(snippet) = problem.snippet.as_deref().filter(|s| !s.is_empty()) {
        line.push('\n');
        line.push_str(snippet);
    }
    line
}

/// Prints the device ID the configuration resolves to.
pub fn print_device_id(path: &Path) -> ExitCode {
    match Config::load(path).and_then(|config| config.resolve_device_id()) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
