//! Read scenarios: `read-hit` (GET of seeded places, which the cache holds), `near` (GEOSEARCH
//! around the demo city) and `top` (sorted-set top-N, overall and by category).

use clap::{Args, ValueEnum};
use rand::rngs::SmallRng;
use rand::Rng as _;

use crate::args::CommonArgs;
use crate::engine::Workload;
use crate::http::Planned;
use crate::places::{CATEGORIES, CENTRE, RADIUS_M};

/// Users of the closed loop when neither `--rate` nor `--users` is given.
pub const DEFAULT_USERS: u64 = 32;

#[derive(Debug, Clone, Args)]
pub struct ReadHitArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// GET `/v1/places/{id}` of a uniformly random seeded id.
pub struct ReadHit {
    paths: Vec<String>,
}

impl ReadHit {
    pub fn new(common: &CommonArgs) -> Self {
        Self {
            paths: super::ids(&common.prefix, common.ids())
                .into_iter()
                .map(|id| format!("/v1/places/{id}"))
                .collect(),
        }
    }
}

impl Workload for ReadHit {
    fn ops(&self) -> &[&'static str] {
        &["get"]
    }

    fn plan(&self, rng: &mut SmallRng, seq: u64) -> Planned {
        let n = rng.random_range(0..self.paths.len());
        Planned::get(0, seq, self.paths[n].clone())
    }
}

#[derive(Debug, Clone, Args)]
pub struct NearArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Search radius in metres.
    #[arg(long, default_value_t = 1000.0)]
    pub radius_m: f64,
    /// Most results per query.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// The geo projection queried.
    #[arg(long, default_value = "nearby")]
    pub index: String,
}

/// GEOSEARCH around a uniformly random point of the demo city's disc.
pub struct Near {
    radius_m: f64,
    limit: u64,
    index: String,
}

impl Near {
    pub fn new(args: &NearArgs) -> Self {
        Self {
            radius_m: args.radius_m,
            limit: args.limit,
            index: args.index.clone(),
        }
    }
}

/// A uniformly random point within `radius_m` of `centre`, as (lon, lat).
pub fn random_point(rng: &mut SmallRng, (lon, lat): (f64, f64), radius_m: f64) -> (f64, f64) {
    const METRES_PER_DEGREE: f64 = 111_320.0;
    let distance = radius_m * rng.random::<f64>().sqrt();
    let bearing = rng.random::<f64>() * std::f64::consts::TAU;
    (
        lon + distance * bearing.sin() / (METRES_PER_DEGREE * lat.to_radians().cos()),
        lat + distance * bearing.cos() / METRES_PER_DEGREE,
    )
}

impl Workload for Near {
    fn ops(&self) -> &[&'static str] {
        &["near"]
    }

    fn plan(&self, rng: &mut SmallRng, seq: u64) -> Planned {
        let (lon, lat) = random_point(rng, CENTRE, RADIUS_M);
        Planned::get(
            0,
            seq,
            format!(
                "/v1/places/near/{}?lon={lon:.6}&lat={lat:.6}&radius_m={}&limit={}",
                self.index, self.radius_m, self.limit
            ),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopIndex {
    /// Half `rating`, half `rating_by_category` with a random category.
    Both,
    /// `places:rating`.
    Rating,
    /// `places:rating:{category}` with a random category.
    RatingByCategory,
}

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Which sorted sets to query.
    #[arg(long, value_enum, default_value_t = TopIndex::Both)]
    pub index: TopIndex,
    /// Entries per query.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Entries skipped (the page).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// Top-N by rating, overall and/or within a category.
pub struct Top {
    index: TopIndex,
    limit: u64,
    offset: u64,
}

impl Top {
    pub fn new(args: &TopArgs) -> Self {
        Self {
            index: args.index,
            limit: args.limit,
            offset: args.offset,
        }
    }
}

impl Workload for Top {
    fn ops(&self) -> &[&'static str] {
        &["top rating", "top by category"]
    }

    fn plan(&self, rng: &mut SmallRng, seq: u64) -> Planned {
        let by_category = match self.index {
            TopIndex::Both => rng.random_bool(0.5),
            TopIndex::Rating => false,
            TopIndex::RatingByCategory => true,
        };
        let page = format!("limit={}&offset={}", self.limit, self.offset);
        if by_category {
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
            Planned::get(
                1,
                seq,
                format!("/v1/places/top/rating_by_category?category={category}&{page}"),
            )
        } else {
            Planned::get(0, seq, format!("/v1/places/top/rating?{page}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use clap::Parser;
    use rand::SeedableRng as _;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        top: TopArgs,
    }

    #[test]
    fn read_hit_covers_the_seeded_ids() {
        let cli = crate::tests::parse(&["read-hit", "--ids", "20"]);
        let crate::Scenario::ReadHit(args) = cli.command else {
            panic!()
        };
        let w = ReadHit::new(&args.common);
        let mut rng = SmallRng::seed_from_u64(1);
        let paths: HashSet<String> = (0..2000).map(|i| w.plan(&mut rng, i).path).collect();
        assert_eq!(paths.len(), 20);
        assert!(paths.contains("/v1/places/place-0001"));
        assert!(paths.contains("/v1/places/place-0020"));
    }

    #[test]
    fn near_points_stay_in_the_city() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..1000 {
            let (lon, lat) = random_point(&mut rng, CENTRE, RADIUS_M);
            let dx = (lon - CENTRE.0) * 111_320.0 * CENTRE.1.to_radians().cos();
            let dy = (lat - CENTRE.1) * 111_320.0;
            assert!((dx * dx + dy * dy).sqrt() <= RADIUS_M * 1.0001);
        }
        let w = Near {
            radius_m: 500.0,
            limit: 5,
            index: "nearby".into(),
        };
        let p = w.plan(&mut rng, 0);
        assert!(
            p.path.starts_with("/v1/places/near/nearby?lon=-9."),
            "{}",
            p.path
        );
        assert!(p.path.ends_with("&radius_m=500&limit=5"), "{}", p.path);
    }

    #[test]
    fn top_queries_both_indexes() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let w = Top::new(&cli.top);
        let mut rng = SmallRng::seed_from_u64(3);
        let plans: Vec<Planned> = (0..200).map(|i| w.plan(&mut rng, i)).collect();
        assert!(plans
            .iter()
            .any(|p| p.op == 0 && p.path == "/v1/places/top/rating?limit=10&offset=0"));
        assert!(plans.iter().any(|p| p.op == 1
            && p.path
                .starts_with("/v1/places/top/rating_by_category?category=")
            && p.path.ends_with("&limit=10&offset=0")));

        let cli =
            Cli::try_parse_from(["x", "--index", "rating-by-category", "--limit", "3"]).unwrap();
        let w = Top::new(&cli.top);
        assert!((0..50).all(|i| w.plan(&mut rng, i).op == 1));
        assert!(Cli::try_parse_from(["x", "--limit", "0"]).is_err());
    }
}
