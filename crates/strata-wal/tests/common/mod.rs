//! Helpers shared by the WAL's integration suites.

#![allow(dead_code)] // each suite uses a subset

/// The root seed: `SEED` from the environment (as `cargo xtask ci` sets it) or a fresh one.
/// Always printed, so a failure can be replayed with `SEED=<n>`.
pub(crate) fn seed(suite: &str) -> u64 {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            #[allow(clippy::disallowed_methods)] // a seed source only
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            now ^ u64::from(std::process::id())
        });
    eprintln!("{suite}: SEED={seed} (replay with SEED={seed})");
    seed
}

/// How many times bigger the randomized suites run under `cargo xtask stress`.
pub(crate) fn stress_factor() -> u64 {
    std::env::var("STRATA_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}
