//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "astarte-agent",
    version,
    about = "Connects this device to Astarte and serves a D-Bus API"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and every interface file; every problem, one line each.
    CheckConfig,
    /// Print the device ID the configuration resolves to.
    DeviceId,
    /// Show the running daemon's health; exit status 0 connected, 150 degraded (running, not
    /// connected), 3 not running, 4 unknown.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}
