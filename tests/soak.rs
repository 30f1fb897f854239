//! Fault soak: the agent under a continuous mixed D-Bus stream and remote commands while
//! faults are injected one after the other (broker restart and pause, Pairing down, agent
//! SIGTERM and SIGKILL, short-lived certificates, a deleted credentials secret, a full
//! disk). At the end a table says whether every stored message and every command made it,
//! exactly as promised, and whether the logs, memory and descriptors stayed clean.
//!
//! `SOAK_MINUTES` (default 2) of faults, after a 20 s warm-up and before a 45 s quiet tail;
//! `SOAK_SEED` (default 14) draws the fault order and gaps and the clients' streams;
//! `SOAK_AGENT` names the agent binary (default the debug build). `scripts/soak` runs it
//! against the release build. See docs/reliability.md, "Fault soak".

#[path = "soak/agent.rs"]
mod agent;
#[path = "soak/checks.rs"]
mod checks;
#[path = "soak/commands.rs"]
mod commands;
mod common;
#[path = "soak/data.rs"]
mod data;
#[path = "soak/drain.rs"]
mod drain;
#[path = "soak/faults.rs"]
mod faults;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{DEVICE_DATASTREAM, TestEnv};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

use agent::{CONNECT_DEADLINE, Launcher, wait_connected};
use checks::Row;
use faults::{FaultKind, SmallDisk, Target};

const WARM_UP: Duration = Duration::from_secs(20);
const TAIL: Duration = Duration::from_secs(45);
/// After the clients stop: time for the backlog and the last commands to arrive.
const DRAIN: Duration = Duration::from_secs(120);

struct Settings {
    minutes: f64,
    seed: u64,
    agent: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            minutes: var("SOAK_MINUTES")
                .map_or(2.0, |v| v.parse().expect("SOAK_MINUTES is a number")),
            seed: var("SOAK_SEED").map_or(14, |v| v.parse().expect("SOAK_SEED is an integer")),
            agent: var("SOAK_AGENT").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_astarte-agent")),
                PathBuf::from,
            ),
        }
    }

    /// Gaps between faults: 20–60 s, shortened for runs under 10 minutes so that a 2-minute
    /// run still sees at least four faults (4–12 s).
    fn gap(&self, rng: &mut fastrand::Rng) -> Duration {
        let scale = (self.minutes / 10.0).min(1.0);
        Duration::from_secs_f64(rng.f64().mul_add(40.0, 20.0) * scale)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_every_stored_message_and_command_arrives_exactly_as_promised() {
    let settings = Settings::from_env();
    println!(
        "soak: {} min of faults, SOAK_SEED={}, agent {}",
        settings.minutes,
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
    let disk = SmallDisk::mount(env.path("store"));
    let mut kinds = faults::ALL.to_vec();
    if disk.is_none() {
        println!("soak: the disk-full fault is skipped: mounting a small tmpfs needs root");
        kinds.retain(|k| *k != FaultKind::DiskFull);
    }

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

    let mut launcher = Launcher::new(
        settings.agent.clone(),
        env.config_path(),
        env.dir.path(),
        &env.bus,
    );
    let agent = launcher.start(&env.bus).await;
    wait_connected(&env.proxy().await, CONNECT_DEADLINE)
        .await
        .expect("first connection");

    let fault_active = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(agent::sample(
        launcher.watch(),
        env.uncached_proxy().await,
        fault_active.clone(),
        samples.clone(),
        stop_sampling.clone(),
    ));
    let stop_clients = CancellationToken::new();
    let drained = CancellationToken::new();
    let data_client = tokio::spawn(data::run(
        env.uncached_proxy().await,
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

    tokio::time::sleep(WARM_UP).await;
    let mut target = Target {
        env: &mut env,
        launcher: &mut launcher,
        agent,
        disk,
        agent_stops: Vec::new(),
        crashes: Vec::new(),
    };
    let mut rng = fastrand::Rng::with_seed(settings.seed);
    let faults_start = Instant::now();
    let faults_end = faults_start + Duration::from_secs_f64(settings.minutes * 60.0);
    let mut deck = Vec::new();
    let mut injected = Vec::new();
    while Instant::now() + Duration::from_secs(5) < faults_end {
        tokio::time::sleep(settings.gap(&mut rng)).await;
        if deck.is_empty() {
            // Every kind once before any repeats, in a seeded order.
            deck = kinds.clone();
            rng.shuffle(&mut deck);
        }
        let kind = deck.pop().expect("a fault");
        println!(
            "soak: +{:>4}s {}",
            faults_start.elapsed().as_secs(),
            kind.name()
        );
        fault_active.store(true, Ordering::SeqCst);
        let fault = target.inject(kind).await;
        fault_active.store(false, Ordering::SeqCst);
        println!(
            "soak:        recovered in {:.1}s{}",
            fault.recovery.as_secs_f64(),
            fault
                .failure
                .as_deref()
                .map(|f| format!(" FAILED: {f}"))
                .unwrap_or_default()
        );
        injected.push(fault);
        if let Some(status) = target.agent.exited() {
            target.crashes.push(format!(
                "instance {} exited with {status}",
                target.agent.instance
            ));
            break;
        }
    }
    println!("soak: faults over; {}s quiet tail", TAIL.as_secs());
    tokio::time::sleep(TAIL).await;
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
    stop_sampling.cancel();
    sampler.await.expect("sampler");

    let mut agent_proc = target.agent;
    let agent_stops = target.agent_stops;
    let mut crashes = target.crashes;
    let disk = target.disk;
    if let Some(status) = agent_proc.exited() {
        crashes.push(format!(
            "instance {} exited with {status}",
            agent_proc.instance
        ));
    } else {
        let status = launcher
            .stop(&mut agent_proc, Signal::SIGTERM, &env.bus)
            .await;
        if !status.success() {
            crashes.push(format!(
                "the last instance stopped with {status} after SIGTERM"
            ));
        }
    }
    drop(disk);
    stop_collect.cancel();
    collector.await.expect("collector");

    let collected = collected.lock().expect("collected");
    let executions: Vec<String> = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let samples = samples.lock().expect("samples");
    let empty = Vec::new();
    let mut rows = vec![
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
        checks::commands(&command_stats, &collected, &executions, &agent_stops),
        checks::logs(&launcher.logs, &injected),
        checks::rss(&samples),
        checks::fds(&samples),
    ];
    let failed_faults: Vec<String> = injected
        .iter()
        .filter_map(|f| {
            f.failure
                .as_ref()
                .map(|e| format!("{}: {e}", f.kind.name()))
        })
        .collect();
    rows.push(Row {
        name: "agent recovered from every fault, never crashed".to_owned(),
        pass: failed_faults.is_empty() && crashes.is_empty(),
        figures: format!(
            "{} instances; {failed_faults:?} {crashes:?}",
            launcher.logs.len()
        ),
    });
    let distinct: std::collections::BTreeSet<_> = injected.iter().map(|f| f.kind).collect();
    rows.push(Row {
        name: "at least 3 kinds of fault injected".to_owned(),
        pass: distinct.len() >= 3,
        figures: format!("{} faults, {} kinds", injected.len(), distinct.len()),
    });

    let mut per_kind: BTreeMap<FaultKind, (usize, Duration)> = BTreeMap::new();
    for f in &injected {
        let e = per_kind.entry(f.kind).or_default();
        e.0 += 1;
        e.1 = e.1.max(f.recovery);
    }
    println!("\nfaults injected (SOAK_SEED={}):", settings.seed);
    for (kind, (count, worst)) in &per_kind {
        println!(
            "  {:<32} {count:>3}  (longest until connected again {:.1}s)",
            kind.name(),
            worst.as_secs_f64()
        );
    }
    println!("D-Bus calls (calls / accepted / refused / no answer):");
    for (kind, [calls, ok, refused, uncertain]) in &stats.calls {
        println!("  {kind:<32} {calls:>6} / {ok:>6} / {refused:>5} / {uncertain:>3}");
    }
    println!("  refusals: {:?}", stats.refusals);
    println!(
        "commands: {} requested, {} resends",
        command_stats.sent.len(),
        command_stats.resends()
    );
    let failed = checks::report(&rows, &launcher.logs);
    assert!(
        failed.is_empty(),
        "soak checks failed: {failed:?} (SOAK_SEED={})",
        settings.seed
    );
}
