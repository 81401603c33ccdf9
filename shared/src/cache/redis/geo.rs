//! The sorted-set score `GEOADD` gives a point, computed here so the apply script can write geo
//! memberships with a plain `ZADD`.
//!
//! Why: inside the script `GEOADD` cost ~4–5 µs against ~1 µs for `ZADD` (it parses and checks
//! both coordinates, computes this same hash, then runs `ZADD` internally): about a tenth of
//! Redis's instructions per event (callgrind, docs/WORKER.md). The encoding cannot change between
//! Redis versions without breaking every geo index already in RDB/AOF files, and a test compares
//! it with `GEOADD` on the server the tests run against.
//!
//! The algorithm is Redis's `geohashEncodeWGS84` at `GEO_STEP_MAX` (26 bits per coordinate)
//! followed by `geohashAlign52Bits` (a no-op at that step), with the same IEEE double arithmetic
//! in the same order, so the result is bit-for-bit Redis's.

use crate::pipeline::{MAX_LATITUDE, MAX_LONGITUDE};

/// Bits per coordinate (`GEO_STEP_MAX`).
const STEP: u32 = 26;

/// The 52-bit geohash of (`lon`, `lat`), as `GEOADD` stores it (the score, sent as an integer).
/// The planner has already checked the coordinates are within Redis's limits; outside them
/// (where `GEOADD` would refuse the point) this returns `None`.
pub(super) fn score(lon: f64, lat: f64) -> Option<u64> {
    if !(-MAX_LONGITUDE..=MAX_LONGITUDE).contains(&lon)
        || !(-MAX_LATITUDE..=MAX_LATITUDE).contains(&lat)
    {
        return None;
    }
    let scale = (1u64 << STEP) as f64;
    let lat_offset = (lat - -MAX_LATITUDE) / (MAX_LATITUDE - -MAX_LATITUDE) * scale;
    let lon_offset = (lon - -MAX_LONGITUDE) / (MAX_LONGITUDE - -MAX_LONGITUDE) * scale;
    // C's double -> uint32_t conversion truncates, as `as u32` does for these in-range values.
    Some(interleave(lat_offset as u32, lon_offset as u32))
}

/// Redis's `interleave64`: the bits of `x` (latitude) at even positions, `y` (longitude) at odd.
fn interleave(x: u32, y: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = u64::from(v);
        v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v << 2)) & 0x3333_3333_3333_3333;
        (v | (v << 1)) & 0x5555_5555_5555_5555
    }
    spread(x) | (spread(y) << 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_latitude_on_even_bits() {
        assert_eq!(interleave(0b1, 0), 0b1);
        assert_eq!(interleave(0, 0b1), 0b10);
        assert_eq!(interleave(0b11, 0b01), 0b0111);
        assert_eq!(interleave(u32::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn known_scores() {
        // ZSCOREs after GEOADD on redis-server 7.0.15. The upper corner overflows 26 bits (an
        // offset of exactly 2^26), as in Redis.
        assert_eq!(score(-180.0, -MAX_LATITUDE), Some(0));
        assert_eq!(score(0.0, 0.0), Some(3_377_699_720_527_872));
        assert_eq!(score(2.35, 48.85), Some(3_663_832_751_688_490));
        assert_eq!(score(180.0, MAX_LATITUDE), Some(3 << 52));
        assert_eq!(score(180.1, 0.0), None);
        assert_eq!(score(0.0, 85.06), None);
    }
}
