//! The end-of-run checks, each a row of the table: PASS/FAIL and its figures.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::agent::Sample;
use crate::commands::{Collected, CommandStats, is_final};
use crate::data::Stream;
use crate::faults::Fault;

/// A check's outcome.
pub struct Row {
    pub name: String,
    pub pass: bool,
    pub figures: String,
}

/// Every accepted stored message arrived; first occurrences in order; nothing refused
/// arrived. Uncertain calls (no answer) may or may not have been accepted.
pub fn stored_delivery(name: &str, stream: &Stream, observed: &[i32]) -> Row {
    let mut seen = HashSet::new();
    let firsts: Vec<i32> = observed
        .iter()
        .copied()
        .filter(|v| seen.insert(*v))
        .collect();
    let duplicates = observed.len() - firsts.len();
    let missing: Vec<i32> = stream
        .accepted
        .iter()
        .copied()
        .filter(|v| !seen.contains(v))
        .collect();
    let out_of_order = firsts.windows(2).filter(|w| w[0] >= w[1]).count();
    let refused: HashSet<i32> = stream.refused.iter().copied().collect();
    let refused_arrived: Vec<i32> = firsts
        .iter()
        .copied()
        .filter(|v| refused.contains(v))
        .collect();
    let uncertain_arrived = stream.uncertain.iter().filter(|v| seen.contains(v)).count();
    let pass = missing.is_empty() && out_of_order == 0 && refused_arrived.is_empty();
    let mut figures = format!(
        "accepted {}, arrived {}, missing {}, out of order {}, duplicates {}, refused {} (arrived {}), no answer {} (arrived {})",
        stream.accepted.len(),
        firsts.len(),
        missing.len(),
        out_of_order,
        duplicates,
        stream.refused.len(),
        refused_arrived.len(),
        stream.uncertain.len(),
        uncertain_arrived,
    );
    if !missing.is_empty() {
        figures += &format!("; first missing {:?}", &missing[..missing.len().min(10)]);
    }
    Row {
        name: format!("{name} messages delivered in order"),
        pass,
        figures,
    }
}

/// Every command has a final result and ran exactly once; `interrupted` (the agent stopped
/// while it ran, docs/commands.md) ran at most once, and only where the agent was
/// stopped between its request and that result.
pub fn commands(
    stats: &CommandStats,
    collected: &Collected,
    executions: &[String],
    agent_stops: &[Instant],
) -> Row {
    let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
    for id in executions {
        *runs.entry(id.as_str()).or_default() += 1;
    }
    let mut problems = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for (id, sent) in &stats.sent {
        let n = runs.get(id.as_str()).copied().unwrap_or(0);
        let finals: Vec<_> = collected
            .results
            .get(id)
            .map(|r| r.iter().filter(|r| is_final(&r.status)).collect())
            .unwrap_or_default();
        let Some(first) = finals.first() else {
            if sent.sends > 0 {
                problems.push(format!("{id}: no final result ({n} runs)"));
            } else if n > 0 {
                problems.push(format!("{id}: never published, yet ran"));
            }
            continue;
        };
        *by_status.entry(first.status.clone()).or_default() += 1;
        if finals.iter().any(|r| r.status != first.status) {
            problems.push(format!("{id}: final results differ"));
        }
        match first.status.as_str() {
            "completed" if n == 1 => {}
            "interrupted" if n <= 1 => {
                let stopped = agent_stops
                    .iter()
                    .any(|t| *t >= sent.first && *t <= first.at);
                if !stopped {
                    problems.push(format!("{id}: interrupted without an agent stop"));
                }
            }
            status => problems.push(format!("{id}: {status} with {n} runs")),
        }
    }
    let unknown = runs
        .keys()
        .filter(|id| !stats.sent.contains_key(**id))
        .count();
    if unknown > 0 {
        problems.push(format!("{unknown} runs of ids never sent"));
    }
    let sent = stats.sent.values().filter(|s| s.sends > 0).count();
    let mut figures = format!(
        "sent {sent} ({} resends), final {by_status:?}, runs {}",
        stats.resends(),
        executions.len()
    );
    if !problems.is_empty() {
        figures += &format!("; problems: {:?}", &problems[..problems.len().min(10)]);
    }
    Row {
        name: "commands: one run and a final result each".to_owned(),
        pass: problems.is_empty(),
        figures,
    }
}

/// `2026-01-01T12:00:00.123456Z` at the start of a log line.
fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.get(..19)?;
    let num = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let frac = line
        .get(20..26)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_micros(frac))
}

/// Error lines after a fault's end that it still explains (e.g. a reconnection's aftermath).
const AFTERMATH: Duration = Duration::from_secs(5);

/// No panic, and every error line explained by a fault in progress.
pub fn logs(logs: &[PathBuf], faults: &[Fault]) -> Row {
    let mut panics = Vec::new();
    let mut errors = 0;
    let mut unexplained = Vec::new();
    for path in logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            if line.contains("panicked at") {
                panics.push(line.to_owned());
            }
            if line.get(27..34) != Some(" ERROR ") && !line.contains(" ERROR ") {
                continue;
            }
            errors += 1;
            let at = line_time(line);
            let explained = faults.iter().any(|f| {
                at.is_some_and(|at| {
                    at + Duration::from_millis(500) >= f.start && at <= f.end + AFTERMATH
                }) && f
                    .kind
                    .allowed_errors()
                    .iter()
                    .any(|allowed| line.contains(allowed))
            });
            if !explained {
                unexplained.push(line.to_owned());
            }
        }
    }
    let mut figures = format!(
        "panics {}, error lines {errors}, unexplained {}",
        panics.len(),
        unexplained.len()
    );
    for line in panics.iter().chain(&unexplained).take(8) {
        figures += &format!("\n      {line}");
    }
    Row {
        name: "no panic, no unexplained error line".to_owned(),
        pass: panics.is_empty() && unexplained.is_empty(),
        figures,
    }
}

/// A sample of an instance counts once it is this old: start-up, the handshake and the
/// first refills are behind it.
pub const WARM_UP: Duration = Duration::from_secs(20);
/// Samples at each end that are compared (medians).
const WINDOW: usize = 5;
/// An instance is compared only if its quiet samples after warm-up span this long.
const MIN_SPAN: Duration = Duration::from_secs(15);

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Per instance (a restart resets the baseline: a new process is compared only with
/// itself), the median of its first quiet samples after warm-up against the median of its
/// last ones. Quiet: connected and no fault in progress.
fn flat(
    samples: &[Sample],
    value: impl Fn(&Sample) -> u64,
    limit: impl Fn(u64, u64) -> bool,
) -> (bool, String) {
    let mut instances: BTreeMap<u32, Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.quiet && s.age >= WARM_UP) {
        instances.entry(s.instance).or_default().push(s);
    }
    let mut compared = Vec::new();
    let mut pass = true;
    for (instance, list) in &instances {
        let span = list.last().map(|l| l.age).unwrap_or_default() - list[0].age;
        if list.len() < 2 * WINDOW || span < MIN_SPAN {
            continue;
        }
        let first = median(&mut list[..WINDOW].iter().map(|s| value(s)).collect::<Vec<_>>());
        let last = median(
            &mut list[list.len() - WINDOW..]
                .iter()
                .map(|s| value(s))
                .collect::<Vec<_>>(),
        );
        let ok = limit(first, last);
        pass &= ok;
        compared.push(format!(
            "#{instance} {first}->{last} over {}s",
            span.as_secs()
        ));
    }
    if compared.is_empty() {
        return (false, "no instance lived long enough to compare".to_owned());
    }
    (pass, compared.join(", "))
}

pub fn rss(samples: &[Sample]) -> Row {
    let (pass, figures) = flat(samples, |s| s.rss_kib, |a, b| b * 100 <= a * 110);
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    Row {
        name: "RSS flat after warm-up (within 10%)".to_owned(),
        pass,
        figures: format!("KiB per instance {figures}; peak {peak} KiB"),
    }
}

/// Open descriptors: flat up to the pipes of commands running at the time (2 at once, 2
/// pipes each) and the store's and connection's churn.
pub fn fds(samples: &[Sample]) -> Row {
    let (pass, figures) = flat(samples, |s| s.fds as u64, |a, b| b <= a + 6);
    let peak = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    Row {
        name: "open file descriptors flat (within 6)".to_owned(),
        pass,
        figures: format!("per instance {figures}; peak {peak}"),
    }
}

pub fn print(rows: &[Row]) {
    println!("\n{:<4}  {:<48}  figures", "", "check");
    for row in rows {
        let verdict = if row.pass { "PASS" } else { "FAIL" };
        println!("{verdict:<4}  {:<48}  {}", row.name, row.figures);
    }
}

/// Prints the rows; when any failed, the end of each agent log too. Returns the names of
/// the failed checks.
pub fn report<'a>(rows: &'a [Row], logs: &[PathBuf]) -> Vec<&'a str> {
    print(rows);
    let failed: Vec<&str> = rows
        .iter()
        .filter(|row| !row.pass)
        .map(|row| row.name.as_str())
        .collect();
    if !failed.is_empty() {
        for path in logs {
            eprintln!("==== {}", path.display());
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
    failed
}
