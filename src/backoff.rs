//! Capped exponential backoff with "equal jitter".
//!
//! The n-th delay is `d/2 + random(0..=d/2)` with `d = min(max, base * 2^n)`: it never drops
//! below half the nominal delay (so a fleet never hammers a recovering server) and spreads
//! devices over the other half (so they don't come back in lockstep).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self::with_rng(base, max, fastrand::Rng::new())
    }

    /// Same as [`Backoff::new`] with the given random source (seeded in tests).
    pub fn with_rng(base: Duration, max: Duration, rng: fastrand::Rng) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next attempt; each call grows the nominal delay until `max`.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal();
        if nominal < self.max {
            self.attempt += 1;
        }
        let half = nominal / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.u64(0..=spread))
    }

    /// Starts again from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn nominal(&self) -> Duration {
        2u32.checked_pow(self.attempt)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);

    fn seeded(seed: u64) -> Backoff {
        Backoff::with_rng(BASE, MAX, fastrand::Rng::with_seed(seed))
    }

    #[test]
    fn each_delay_lies_between_half_and_all_of_the_nominal_delay() {
        for seed in 0..50 {
            let mut backoff = seeded(seed);
            for attempt in 0..20 {
                let nominal = (BASE * 2u32.pow(attempt.min(12))).min(MAX);
                let delay = backoff.next_delay();
                assert!(
                    delay >= nominal / 2,
                    "seed {seed} attempt {attempt}: {delay:?}"
                );
                assert!(delay <= nominal, "seed {seed} attempt {attempt}: {delay:?}");
            }
        }
    }

    #[test]
    fn delays_double_until_the_cap() {
        let mut backoff = seeded(7);
        let delays: Vec<_> = (0..12).map(|_| backoff.next_delay()).collect();
        // Lower bound of attempt n+2 (2^(n+1)) exceeds the upper bound of attempt n (2^n).
        for pair in delays.windows(3).take(6) {
            assert!(pair[2] > pair[0], "{delays:?}");
        }
        assert!(delays[11] >= MAX / 2, "{delays:?}");
    }

    #[test]
    fn the_cap_holds_for_ever() {
        let mut backoff = seeded(3);
        for _ in 0..10_000 {
            assert!(backoff.next_delay() <= MAX);
        }
    }

    #[test]
    fn delays_are_jittered() {
        let mut backoff = seeded(11);
        for _ in 0..10 {
            backoff.next_delay();
        }
        let capped: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
        assert!(capped.windows(2).any(|w| w[0] != w[1]), "{capped:?}");
    }

    #[test]
    fn reset_starts_again_from_base() {
        let mut backoff = seeded(5);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BASE);
    }

    #[test]
    fn a_huge_attempt_count_does_not_overflow() {
        let mut backoff = Backoff::with_rng(
            Duration::from_secs(u64::MAX / 4),
            Duration::MAX,
            fastrand::Rng::with_seed(1),
        );
        for _ in 0..100 {
            backoff.next_delay();
        }
    }
}
