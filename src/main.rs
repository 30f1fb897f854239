use std::process::ExitCode;
use std::time::Duration;

use astarte_agent::cli::{Cli, Command};
use astarte_agent::{check, logging, supervisor};

/// Threads of tokio's blocking pool (files, key generation, opening the store) at most...
const BLOCKING_THREADS: usize = 4;
/// ...each ending after this long without work: an idle agent keeps none.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Stack reserved for each (only the pages used are resident).
const BLOCKING_STACK: usize = 512 * 1024;

fn main() -> ExitCode {
    // Before any thread starts (see memory.rs).
    astarte_agent::memory::limit_arenas();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig) => check::check_config(&cli.config),
        Some(Command::DeviceId) => check::print_device_id(&cli.config),
        Some(Command::Status { json }) => astarte_agent::status::run(&cli.config, json),
        None => run_daemon(&cli),
    }
}

fn run_daemon(cli: &Cli) -> ExitCode {
    logging::init();
    let config = match astarte_agent::config::Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("{}", astarte_agent::error_chain::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    // One thread keeps RSS small; blocking work (files, key generation) goes to tokio's pool,
    // kept small too: a few short jobs at start-up and on reloads, none while idle.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .thread_stack_size(BLOCKING_STACK)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "couldn't start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let (shutdown, reloads) = {
        let _context = runtime.enter();
        (
            astarte_agent::signals::install(),
            astarte_agent::signals::install_reload(),
        )
    };
    let reload = supervisor::Reload {
        config_path: cli.config.clone(),
        signals: reloads,
    };
    match runtime.block_on(supervisor::run(config, reload, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{}", astarte_agent::error_chain::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
