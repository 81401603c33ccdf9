//! The property tests' runner settings, one definition for every suite: a fixed seed and a fixed
//! number of cases, so a CI run is repeatable, unless `PROPTEST_RNG_SEED` / `PROPTEST_CASES` ask
//! otherwise; no failure-persistence files in the repository (a failure prints its seed and its
//! shrunk input instead).

use proptest::test_runner::{Config, RngSeed};

/// The seed every suite uses unless `PROPTEST_RNG_SEED` is set.
pub const SEED: u64 = 0x00ca_c4ef_1e0e_7e47;

/// `cases` cases per property (or `PROPTEST_CASES`), seeded with [`SEED`] (or
/// `PROPTEST_RNG_SEED`).
pub fn config(cases: u32) -> Config {
    let from_env = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            cases
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            from_env.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        failure_persistence: None,
        ..from_env
    }
}
