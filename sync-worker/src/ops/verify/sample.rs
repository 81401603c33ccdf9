//! A uniform random sample of a collection, picked while paging through it in id order, without
//! holding it: Knuth's selection sampling (Algorithm S). Each document is taken with probability
//! `still wanted / not yet seen`, which gives every subset of the wanted size the same chance and
//! never takes more than asked.
//!
//! The store port has no random access, so a sample still reads every page of the store; only the
//! sampled documents are planned and compared with Redis, which is where the time goes.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::SystemTime;

pub(super) struct Sampler {
    wanted: u64,
    /// Documents not seen yet, by the count taken at the start.
    unseen: u64,
    rng: SplitMix64,
}

impl Sampler {
    /// `size` documents out of about `population`; the same `seed` picks the same ones.
    pub fn new(size: u64, population: u64, seed: u64) -> Self {
        Self {
            wanted: size,
            unseen: population,
            rng: SplitMix64(seed),
        }
    }

    /// Whether to take the next document.
    pub fn take(&mut self) -> bool {
        if self.wanted == 0 {
            return false;
        }
        // Never below `wanted`: if the collection grew since it was counted, the rest is taken
        // until the sample is full rather than dividing by zero.
        let left = self.unseen.max(self.wanted);
        self.unseen = self.unseen.saturating_sub(1);
        let taken = self.rng.below(left) < self.wanted;
        if taken {
            self.wanted -= 1;
        }
        taken
    }

    /// The sample is complete: the rest of the collection need not be read.
    pub fn is_full(&self) -> bool {
        self.wanted == 0
    }
}

/// A fresh seed for a run.
pub(super) fn seed() -> u64 {
    // Process-random keys (std's hash seeding) mixed with the time: different every run, no
    // dependency needed.
    RandomState::new().hash_one(SystemTime::now())
}

/// Steele, Lea and Flood's SplitMix64: tiny, fast, and good enough to pick a sample.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2^-32 for any `n` a
    /// collection can have).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(size: u64, population: u64, seed: u64) -> Vec<u64> {
        let mut sampler = Sampler::new(size, population, seed);
        (0..population).filter(|_| sampler.take()).collect()
    }

    #[test]
    fn takes_exactly_the_size_asked_and_repeats_with_the_seed() {
        for seed in 0..50 {
            assert_eq!(picks(10, 1_000, seed).len(), 10);
            assert_eq!(picks(10, 1_000, seed), picks(10, 1_000, seed));
        }
        assert_eq!(picks(50, 20, 1), (0..20).collect::<Vec<_>>());
        assert!(picks(0, 20, 1).is_empty());
    }

    #[test]
    fn a_grown_collection_still_fills_the_sample_and_no_more() {
        // Counted 10, holds 30: takes everything past the count until full.
        let mut sampler = Sampler::new(5, 10, 7);
        let taken = (0..30).filter(|_| sampler.take()).count();
        assert_eq!(taken, 5);
        assert!(sampler.is_full());
    }

    #[test]
    fn every_position_is_equally_likely() {
        // 2 000 samples of 10 out of 100: each position is expected 200 times.
        let mut hits = [0u32; 100];
        for seed in 0..2_000 {
            for n in picks(10, 100, seed) {
                hits[n as usize] += 1;
            }
        }
        let (min, max) = (hits.iter().min().unwrap(), hits.iter().max().unwrap());
        assert!(*min > 130 && *max < 270, "min {min}, max {max}");
    }
}
