//! `astarte-sandbox`: the sandbox as a standalone process, for the demo.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use astarte_sandbox::{Sandbox, SandboxOptions, describe, encode_purge_list};
use clap::{ArgGroup, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    version,
    about = "A local Astarte stand-in (Pairing API, test CA, mosquitto)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything on free ports, write DIR/sandbox.env, print every message of the realm
    /// until SIGINT/SIGTERM.
    Up {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "test")]
        realm: String,
        /// Keep broker sessions and queued messages across broker restarts.
        #[arg(long)]
        persistence: bool,
        /// Device certificate lifetime in seconds (default: 2190h, like Astarte).
        #[arg(long)]
        certificate_validity_secs: Option<u64>,
    },
    /// Publish one message as Astarte would (observer identity) and wait for the broker's ack.
    #[command(group(ArgGroup::new("payload").required(true).args(["bson", "empty", "purge_list"])))]
    Publish {
        /// The folder of a running `astarte-sandbox up`.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// The document as relaxed extended JSON, e.g. '{"v": true}' or
        /// '{"v": {"$date": {"$numberLong": "1700000000000"}}}'.
        #[arg(long)]
        bson: Option<String>,
        /// An empty payload (a property unset).
        #[arg(long)]
        empty: bool,
        /// A zlib purge list of `;`-separated `<interface><path>` entries ("" for an empty one).
        #[arg(long)]
        purge_list: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Up {
            dir,
            realm,
            persistence,
            certificate_validity_secs,
        } => {
            let mut opts = SandboxOptions {
                realm,
                broker_persistence: persistence,
                dir: Some(dir),
                ..SandboxOptions::default()
            };
            if let Some(secs) = certificate_validity_secs {
                opts.certificate_validity = Duration::from_secs(secs);
            }
            up(opts).await
        }
        Command::Publish {
            dir,
            topic,
            qos,
            bson,
            empty: _,
            purge_list,
        } => publish(dir, topic, qos, bson, purge_list).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = format!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn up(opts: SandboxOptions) -> Result<(), Box<dyn Error>> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sandbox = Sandbox::start(opts).await?;
    let env = sandbox.write_env()?;
    let mut observer = sandbox.observer().await?;
    eprintln!("sandbox up: source {}", env.display());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            message = observer.next(Duration::from_secs(3600)) => {
                if let Some(m) = message {
                    println!("{} qos={} {}", m.topic, m.qos, describe(&m.topic, &m.payload));
                }
            }
        }
    }
    drop(observer);
    // Graceful, so a persistent broker saves its sessions; dropping then stops the rest.
    sandbox.stop_broker().await;
    drop(sandbox);
    eprintln!("sandbox down");
    Ok(())
}

async fn publish(
    dir: PathBuf,
    topic: String,
    qos: u8,
    bson: Option<String>,
    purge_list: Option<String>,
) -> Result<(), Box<dyn Error>> {
    let payload = match (bson, purge_list) {
        (Some(json), _) => {
            let value: serde_json::Value = serde_json::from_str(&json)?;
            let doc = match bson::Bson::try_from(value)? {
                bson::Bson::Document(doc) => doc,
                other => return Err(format!("--bson must be a document, not {other}").into()),
            };
            let mut bytes = Vec::new();
            doc.to_writer(&mut bytes)?;
            bytes
        }
        (None, Some(list)) => {
            let entries: Vec<&str> = list.split(';').filter(|e| !e.is_empty()).collect();
            encode_purge_list(&entries)
        }
        (None, None) => Vec::new(),
    };
    let config = astarte_sandbox::observer_config_from_dir(&dir)?;
    let observer = astarte_sandbox::Observer::connect(config).await?;
    observer.publish(&topic, payload, qos).await?;
    Ok(())
}
