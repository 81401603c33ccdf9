//! `mixed`: reads and writes of the seeded places, by default 90 % GET and 10 % writes (half PUT of
//! the whole document with a new rating, half merge-PATCH of the rating).

use bytes::Bytes;
use clap::Args;
use hyper::Method;
use rand::rngs::SmallRng;
use rand::Rng as _;
use serde_json::json;

use crate::args::CommonArgs;
use crate::engine::Workload;
use crate::http::Planned;
use crate::places;

#[derive(Debug, Clone, Args)]
pub struct MixedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Percentage of writes (the rest are GETs).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub write_percent: u8,
}

pub const GET: usize = 0;
pub const PUT: usize = 1;
pub const PATCH: usize = 2;

pub struct Mixed {
    ids: Vec<String>,
    seed: u64,
    write_percent: u8,
}

impl Mixed {
    pub fn new(args: &MixedArgs) -> Self {
        Self {
            ids: super::ids(&args.common.prefix, args.common.ids()),
            seed: args.common.seed,
            write_percent: args.write_percent,
        }
    }
}

/// A rating from 1.0 to 5.0 with one decimal.
pub fn random_rating(rng: &mut SmallRng) -> f64 {
    f64::from(rng.random_range(10u8..=50)) / 10.0
}

impl Workload for Mixed {
    fn ops(&self) -> &[&'static str] {
        &["get", "put", "patch"]
    }

    fn plan(&self, rng: &mut SmallRng, _seq: u64) -> Planned {
        let n = rng.random_range(0..self.ids.len());
        let path = format!("/v1/places/{}", self.ids[n]);
        let write = rng.random_range(0..100u8) < self.write_percent;
        if !write {
            return Planned::get(GET, n as u64, path);
        }
        let rating = random_rating(rng);
        if rng.random_bool(0.5) {
            let mut place = places::place(self.seed, n as u64 + 1);
            place.rating = rating;
            Planned {
                op: PUT,
                tag: n as u64,
                method: Method::PUT,
                path,
                body: Some(("application/json", Bytes::from(place.to_json().to_string()))),
            }
        } else {
            Planned {
                op: PATCH,
                tag: n as u64,
                method: Method::PATCH,
                path,
                body: Some((
                    "application/merge-patch+json",
                    Bytes::from(json!({ "rating": rating }).to_string()),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    fn mixed(write_percent: u8) -> Mixed {
        Mixed {
            ids: super::super::ids("place-", 100),
            seed: 42,
            write_percent,
        }
    }

    #[test]
    fn ninety_ten_mix() {
        let w = mixed(10);
        let mut rng = SmallRng::seed_from_u64(9);
        let mut counts = [0u32; 3];
        for i in 0..20_000 {
            let p = w.plan(&mut rng, i);
            counts[p.op] += 1;
            match p.op {
                GET => assert!(p.body.is_none() && p.method == Method::GET),
                PUT => {
                    let (ct, body) = p.body.unwrap();
                    assert_eq!(ct, "application/json");
                    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let id = &p.path["/v1/places/".len()..];
                    let n: u64 = id["place-".len()..].parse().unwrap();
                    assert_eq!(doc["name"], places::place(42, n).to_json()["name"]);
                }
                _ => {
                    let (ct, body) = p.body.unwrap();
                    assert_eq!(ct, "application/merge-patch+json");
                    assert!(body.starts_with(b"{\"rating\":"));
                }
            }
        }
        let writes = f64::from(counts[PUT] + counts[PATCH]) / 20_000.0;
        assert!((writes - 0.10).abs() < 0.01, "{writes}");
        assert!(counts[PUT].abs_diff(counts[PATCH]) < 300, "{counts:?}");
    }

    #[test]
    fn read_only_and_write_only() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..500).all(|i| mixed(0).plan(&mut rng, i).op == GET));
        assert!((0..500).all(|i| mixed(100).plan(&mut rng, i).op != GET));
    }
}
