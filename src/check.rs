//! `check-config` and `device-id`: offline checks an operator runs before starting the service.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::error_chain::error_chain;
use crate::interface::registry::Registry;

/// Validates the configuration and every interface file; prints one line per problem, all of
/// them (a bad key does not hide a bad interface file).
pub fn check_config(path: &Path) -> ExitCode {
    let checked = Config::check(path);
    let mut problems: Vec<String> = checked.problems.iter().map(|p| error_chain(p)).collect();
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
    let Some(config) = checked.config else {
        for problem in &problems {
            eprintln!("{problem}");
        }
        return ExitCode::FAILURE;
    };
    let device_id = match config.resolve_device_id() {
        Ok(id) => Some(id),
        Err(error) => {
            problems.push(error_chain(&error));
            None
        }
    };
    if let Some(token_file) = &config.pairing_token_file
        && let Err(error) = std::fs::metadata(token_file)
    {
        // Not fatal: a device that already holds a credentials secret needs no token.
        eprintln!("note: pairing_token_file {}: {error}", token_file.display());
    }
    if let Some(ca_file) = &config.ca_file
        && let Err(error) = crate::tls::trust_anchors(Some(ca_file))
    {
        problems.push(error_chain(&error));
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    if !problems.is_empty() {
        return ExitCode::FAILURE;
    }
    if let Some(id) = device_id {
        println!(
            "configuration OK: realm {}, device {id}, {interfaces} interfaces",
            config.realm
        );
    }
    ExitCode::SUCCESS
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
