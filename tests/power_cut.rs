//! Power cuts: `store_dir` lives on a filesystem that keeps only what was fsynced (the
//! sandbox's `LazyFs`), and the power is cut at random moments under a mixed load: the agent
//! is SIGKILLed, everything not made durable is thrown away, the filesystem is mounted again
//! and the agent restarted. Meanwhile a D-Bus client sends stored datastreams and objects and
//! sets and unsets properties, and "Astarte" sends a remote command every few seconds, also
//! while the agent is down. One cut falls during a credentials recovery, one during a
//! certificate renewal.
//!
//! After the cuts: every value whose D-Bus call returned success arrived, first occurrences
//! in order; every acknowledged device property holds its last value, in the agent and at
//! Astarte; every command ran at most once and has a final result; the credentials stayed
//! usable or were recovered by the agent itself (it reconnected after every cut); the
//! database opened after every cut, or was moved aside and reported.
//!
//! `POWER_CUT_CUTS` (default 10) cuts, drawn from `POWER_CUT_SEED` (default 20); `scripts/
//! power-cut N [seed]` runs more. Needs root (FUSE); as another user the test says it skipped.

#[allow(dead_code)]
#[path = "soak/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "soak/checks.rs"]
mod checks;
#[path = "soak/commands.rs"]
mod commands;
mod common;
#[path = "power_cut/cut.rs"]
mod cut;
#[path = "soak/data.rs"]
mod data;
#[path = "soak/drain.rs"]
mod drain;
#[allow(dead_code)]
#[path = "soak/faults.rs"]
mod faults;
#[path = "power_cut/properties.rs"]
mod properties;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DEVICE_DATASTREAM, TestEnv};
use tokio_util::sync::CancellationToken;

use agent::Launcher;
use checks::Row;
use cut::{Cut, Rig};

/// After the clients stop: time for the backlog and the last commands to arrive.
const DRAIN: Duration = Duration::from_secs(120);

struct Settings {
    cuts: usize,
    seed: u64,
    agent: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            cuts: var("POWER_CUT_CUTS")
                .map_or(10, |v| v.parse().expect("POWER_CUT_CUTS is a whole number")),
            seed: var("POWER_CUT_SEED")
                .map_or(20, |v| v.parse().expect("POWER_CUT_SEED is a whole number")),
            agent: var("POWER_CUT_AGENT").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_astarte-agent")),
                PathBuf::from,
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_every_power_cut_nothing_accepted_is_lost_and_no_command_runs_twice() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the power-cut drill mounts a FUSE filesystem, which needs root");
        return;
    }
    let settings = Settings::from_env();
    println!(
        "power cuts: {} cuts, POWER_CUT_SEED={}, agent {}",
        settings.cuts,
        settings.seed,
        settings.agent.display()
    );
    let mut env = TestEnv::persistent().await;
    let soak_interface = "org.astarte-platform.soak.StoredObject.json";
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/soak/interfaces")
            .join(soak_interface),
        env.path("interfaces").join(soak_interface),
    )
    .expect("soak interface");
    let record = env.path("executions");
    env.write_config(&commands::config(&record));

    let topics = commands::Topics {
        base: env.base_topic(),
        stored: env.topic(DEVICE_DATASTREAM, data::STORED_PATH),
        stored_object: env.topic(data::STORED_OBJECT, data::STORED_OBJECT_PATH),
        results: env.topic(commands::RESULTS, "/result"),
        requests: env.topic(commands::REQUESTS, "/request"),
    };
    let collected = Arc::new(Mutex::new(commands::Collected::default()));
    let stop_collect = CancellationToken::new();
    let (arrived, mut arrivals) = tokio::sync::watch::channel(0u64);
    let collector = tokio::spawn(commands::collect(
        env.observer().await,
        topics.clone(),
        collected.clone(),
        arrived,
        stop_collect.clone(),
    ));
    let publisher = env.observer().await;

    let launcher = Launcher::new(
        settings.agent.clone(),
        env.config_path(),
        env.dir.path(),
        &env.bus,
    );
    let mut rig = Rig::start(&mut env, launcher).await;
    let stop_clients = CancellationToken::new();
    let drained = CancellationToken::new();
    let data_client = tokio::spawn(data::run(
        rig.env.uncached_proxy().await,
        settings.seed,
        stop_clients.clone(),
    ));
    let commands_client = tokio::spawn(commands::run(
        publisher,
        topics.clone(),
        collected.clone(),
        settings.seed.wrapping_add(1),
        stop_clients.clone(),
        drained.clone(),
    ));

    let mut rng = fastrand::Rng::with_seed(settings.seed);
    let kinds = cut::plan(settings.cuts, &mut rng);
    let mut cuts: Vec<Cut> = Vec::new();
    for (index, kind) in kinds.into_iter().enumerate() {
        // A random moment under load.
        tokio::time::sleep(Duration::from_millis(rng.u64(300..3000))).await;
        let cut = rig.cut(kind, &mut rng).await;
        println!(
            "power cut {:>3}: {:<32} {} files / {} bytes / {} entries lost; connected again in {:.1}s{}{}",
            index + 1,
            cut.kind.name(),
            cut.lost_files,
            cut.lost_bytes,
            cut.lost_entries,
            cut.recovery.as_secs_f64(),
            if cut.moved_aside {
                "; database moved aside"
            } else {
                ""
            },
            cut.failure
                .as_deref()
                .map(|f| format!(" FAILED: {f}"))
                .unwrap_or_default()
        );
        let failed = cut.failure.is_some();
        cuts.push(cut);
        if failed {
            break;
        }
    }
    println!("power cuts over; the clients stop and the backlog drains");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_clients.cancel();
    let stats = data_client.await.expect("data client");

    let command_stats = drain::drain(
        DRAIN,
        &stats,
        &collected,
        &mut arrivals,
        commands_client,
        &drained,
    )
    .await;

    let proxy = rig.env.uncached_proxy().await;
    // Whatever the agent still sends of its properties has arrived before they are compared.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let property_log = collected.lock().expect("collected").property_log.clone();
    let properties = properties::check(&stats.properties, &property_log, &proxy).await;
    let cut::Stopped {
        agent_stops,
        downtimes,
        launcher,
    } = rig.stop().await;
    stop_collect.cancel();
    collector.await.expect("collector");

    let collected = collected.lock().expect("collected");
    let executions: Vec<String> = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let empty = Vec::new();
    let failed_cuts: Vec<String> = cuts
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.failure.as_ref().map(|f| format!("cut {}: {f}", i + 1)))
        .collect();
    let moved_aside = cuts.iter().filter(|c| c.moved_aside).count();
    let rows = vec![
        checks::stored_delivery(
            "stored datastream",
            &stats.stored,
            collected.stored.get("stored").unwrap_or(&empty),
        ),
        checks::stored_delivery(
            "stored object",
            &stats.stored_object,
            collected.stored.get("stored object").unwrap_or(&empty),
        ),
        properties,
        checks::commands(&command_stats, &collected, &executions, &agent_stops),
        Row {
            name: "reconnected after every cut (credentials usable or recovered)".to_owned(),
            pass: failed_cuts.is_empty() && cuts.len() == settings.cuts,
            figures: format!(
                "{} of {} cuts; longest until connected again {:.1}s; {failed_cuts:?}",
                cuts.len(),
                settings.cuts,
                cuts.iter()
                    .map(|c| c.recovery)
                    .max()
                    .unwrap_or_default()
                    .as_secs_f64()
            ),
        },
        Row {
            name: "the database opened after every cut, or was moved aside and reported".to_owned(),
            pass: cuts.iter().all(|c| !c.moved_aside || c.reported),
            figures: format!("moved aside {moved_aside} times"),
        },
    ];
    let lost_bytes: u64 = cuts.iter().map(|c| c.lost_bytes).sum();
    println!(
        "\n{} cuts (POWER_CUT_SEED={}): {lost_bytes} unsynced bytes thrown away in all",
        cuts.len(),
        settings.seed
    );
    let sent_while_down = command_stats
        .sent
        .values()
        .filter(|s| {
            downtimes
                .iter()
                .any(|(from, to)| s.first >= *from && s.first <= *to)
        })
        .count();
    let runs_per_id = executions.iter().fold(
        std::collections::BTreeMap::<&str, usize>::new(),
        |mut runs, id| {
            *runs.entry(id.as_str()).or_default() += 1;
            runs
        },
    );
    println!(
        "commands: {} sent ({sent_while_down} while the agent was down), {} run, {} run twice, {} without a final result",
        command_stats.sent.len(),
        runs_per_id.len(),
        runs_per_id.values().filter(|n| **n > 1).count(),
        command_stats
            .sent
            .keys()
            .filter(|id| collected.final_status(id).is_none())
            .count()
    );
    println!(
        "values: stored {} accepted, {} uncertain; objects {} accepted, {} uncertain",
        stats.stored.accepted.len(),
        stats.stored.uncertain.len(),
        stats.stored_object.accepted.len(),
        stats.stored_object.uncertain.len()
    );
    let failed = checks::report(&rows, &launcher.logs);
    assert!(
        failed.is_empty(),
        "power-cut checks failed: {failed:?} (POWER_CUT_SEED={})",
        settings.seed
    );
}
