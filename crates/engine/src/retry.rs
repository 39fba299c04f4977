//! Randomness for retry times: jitter spreads the retries of jobs that failed together.

use std::time::Duration;

use cronium_core::job::retry_delay;

/// `base` scaled by a random factor in [0.5, 1): spreads retries of jobs
/// that failed together.
pub(crate) fn jittered(base: Duration) -> Duration {
    retry_delay(base, 1, random_fraction())
}

/// A uniformly random number in [0, 1).
pub(crate) fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    // Jitter needs no cryptographic quality; a zero fraction is a fine fallback.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
