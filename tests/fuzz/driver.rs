//! The fuzz driver: a fixed number of cases per target (CI), or a time budget per target
//! (`FUZZ_MINUTES`). Every case gets its own generator, seeded from the run's seed and the
//! case index, so one failing case can be replayed alone with `FUZZ_SEED` and `FUZZ_CASE`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use fastrand::Rng;

/// The seed of a run without `FUZZ_SEED`: fixed, so `cargo test` (CI) makes the same cases
/// every time. `scripts/fuzz` draws a new seed per run on purpose and passes it in.
pub const DEFAULT_SEED: u64 = 0xf022_5eed;

/// How long each target runs.
enum Budget {
    Cases(u64),
    Time(Duration),
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(_) => panic!("{name}={text:?} is not a whole number"),
    }
}

fn budget(ci_cases: u64) -> Budget {
    match std::env::var("FUZZ_MINUTES").ok() {
        Some(text) => {
            let minutes: f64 = text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("FUZZ_MINUTES={text:?} is not a number"));
            Budget::Time(Duration::from_secs_f64(minutes * 60.0))
        }
        None => Budget::Cases(ci_cases),
    }
}

/// The generator of case `index` of a run seeded with `seed`.
pub fn case_rng(seed: u64, index: u64) -> Rng {
    Rng::with_seed(seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Runs `case` `ci_cases` times (or for `FUZZ_MINUTES`), then prints
/// `fuzz <target>: <cases> cases, <secs> s, seed <seed>`. A panicking case is reported with
/// what replays it, then the panic goes on.
pub fn run(target: &str, ci_cases: u64, mut case: impl FnMut(&mut Rng)) {
    let seed = env_u64("FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let start = Instant::now();
    let indices: Box<dyn Iterator<Item = u64>> = match env_u64("FUZZ_CASE") {
        Some(index) => Box::new(std::iter::once(index)),
        None => Box::new(0..),
    };
    let budget = budget(ci_cases);
    let mut cases = 0;
    for index in indices {
        let done = match budget {
            Budget::Cases(max) => index >= max,
            Budget::Time(limit) => start.elapsed() >= limit,
        };
        if done && cases > 0 {
            break;
        }
        let mut rng = case_rng(seed, index);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            eprintln!(
                "fuzz {target}: case {index} failed; replay with FUZZ_SEED={seed} FUZZ_CASE={index} cargo test --test fuzz {target}"
            );
            resume_unwind(panic);
        }
        cases += 1;
    }
    println!(
        "fuzz {target}: {cases} cases, {:.1} s, seed {seed}",
        start.elapsed().as_secs_f64()
    );
}

/// Asserts the typed error's message is useful: not empty.
pub fn assert_message(error: &dyn std::error::Error) {
    assert!(
        !error.to_string().trim().is_empty(),
        "an error with an empty message: {error:?}"
    );
}
