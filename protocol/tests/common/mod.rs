//! What the seeded randomized tests of the protocol share: the seed (printed, replayed from
//! `SEED=n`) and the case count (from an environment variable, else a default).

/// The run's seed: `SEED` if set and valid, else a random one. The caller prints it.
pub fn seed() -> u64 {
    std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>)
}

/// The case count: the environment variable `var` if set and valid, else `default`.
pub fn cases<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
