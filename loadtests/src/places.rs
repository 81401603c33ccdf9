//! Deterministic demo places: place `n` of seed `s` is always the same document, whatever the
//! count or the concurrency of the run that generates it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The categories places are drawn from.
pub const CATEGORIES: [&str; 8] = [
    "cafe",
    "bar",
    "restaurant",
    "bakery",
    "museum",
    "park",
    "bookshop",
    "gallery",
];

/// Centre of the demo city (Lisbon), as `(longitude, latitude)`.
pub const CENTRE: (f64, f64) = (-9.1393, 38.7223);

/// Places lie within this distance of [`CENTRE`], in metres.
pub const RADIUS_M: f64 = 10_000.0;

/// Metres per degree of latitude (and of longitude at the equator).
const METRES_PER_DEGREE: f64 = 111_320.0;

const ADJECTIVES: [&str; 16] = [
    "Golden", "Blue", "Quiet", "Little", "Old", "Sunny", "Hidden", "Green", "Royal", "Lucky",
    "Silver", "Cosy", "Bright", "Wild", "Velvet", "Amber",
];

const NOUNS: [&str; 16] = [
    "Tram", "Harbour", "Lantern", "Tile", "Garden", "Anchor", "Corner", "Sardine", "Castle",
    "Bridge", "Fig", "Compass", "Window", "Orchard", "Terrace", "Gull",
];

/// One generated place.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub name: String,
    pub category: &'static str,
    /// 1.0 to 5.0 with one decimal.
    pub rating: f64,
    /// 1 to 4.
    pub price: u8,
    pub longitude: f64,
    pub latitude: f64,
}

impl Place {
    /// The document body to PUT: `location` is a GeoJSON Point `[lon, lat]`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "category": self.category,
            "rating": self.rating,
            "price": self.price,
            "location": {
                "type": "Point",
                "coordinates": [self.longitude, self.latitude],
            },
        })
    }
}

/// Place number `n` for `seed`.
pub fn place(seed: u64, n: u64) -> Place {
    let mut rng = StdRng::seed_from_u64(mix(seed, n));
    let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
    let noun = NOUNS[rng.random_range(0..NOUNS.len())];
    let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
    let rating = f64::from(rng.random_range(10u8..=50)) / 10.0;
    let price = rng.random_range(1u8..=4);

    // Uniform over the disc: sqrt for the radius, then metres to degrees.
    let distance = RADIUS_M * rng.random::<f64>().sqrt();
    let bearing = rng.random::<f64>() * std::f64::consts::TAU;
    let (centre_lon, centre_lat) = CENTRE;
    let latitude = centre_lat + distance * bearing.cos() / METRES_PER_DEGREE;
    let longitude =
        centre_lon + distance * bearing.sin() / (METRES_PER_DEGREE * centre_lat.to_radians().cos());

    Place {
        name: format!("{adjective} {noun} {n}"),
        category,
        rating,
        price,
        longitude: round6(longitude),
        latitude: round6(latitude),
    }
}

/// The id of place `n` in a run of `count` places: `prefix` + `n` zero-padded to four digits,
/// or wider when `count` has more digits.
pub fn place_id(prefix: &str, n: u64, count: u64) -> String {
    let width = count.to_string().len().max(4);
    format!("{prefix}{n:0width$}")
}

/// About 11 cm of precision: plenty, and short in JSON.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// SplitMix64 of the seed and the place number, so neighbouring places get unrelated streams.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Great-circle distance in metres (haversine).
    fn distance_m((lon1, lat1): (f64, f64), (lon2, lat2): (f64, f64)) -> f64 {
        const EARTH_RADIUS_M: f64 = 6_371_008.8;
        let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
        let d_phi = (lat2 - lat1).to_radians();
        let d_lambda = (lon2 - lon1).to_radians();
        let a =
            (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }

    #[test]
    fn deterministic_for_a_seed() {
        for n in 1..=200 {
            assert_eq!(place(42, n), place(42, n));
            assert_eq!(place(7, n).to_json(), place(7, n).to_json());
        }
        let differ = (1..=200).filter(|&n| place(42, n) != place(43, n)).count();
        assert_eq!(differ, 200, "another seed must give other places");
        let distinct: HashSet<String> = (1..=200)
            .map(|n| place(42, n).to_json().to_string())
            .collect();
        assert_eq!(distinct.len(), 200);
    }

    #[test]
    fn all_fields_in_range() {
        let mut categories = HashSet::new();
        let mut prices = HashSet::new();
        for n in 1..=5_000 {
            let p = place(42, n);
            assert!(p.name.ends_with(&format!(" {n}")), "{}", p.name);
            assert_eq!(p.name.split(' ').count(), 3, "{}", p.name);
            assert!(CATEGORIES.contains(&p.category));
            assert!((1.0..=5.0).contains(&p.rating), "rating {}", p.rating);
            let tenths = p.rating * 10.0;
            assert!(
                (tenths - tenths.round()).abs() < 1e-9,
                "rating {} has more than one decimal",
                p.rating
            );
            assert!((1..=4).contains(&p.price));
            let d = distance_m(CENTRE, (p.longitude, p.latitude));
            assert!(d <= RADIUS_M * 1.01, "place {n} is {d} m from the centre");
            categories.insert(p.category);
            prices.insert(p.price);
        }
        assert_eq!(categories.len(), CATEGORIES.len());
        assert_eq!(prices.len(), 4);
    }

    #[test]
    fn json_shape() {
        let doc = place(1, 1).to_json();
        let obj = doc.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["category", "location", "name", "price", "rating"]);
        assert_eq!(doc["location"]["type"], "Point");
        let coords = doc["location"]["coordinates"].as_array().unwrap();
        assert_eq!(coords.len(), 2);
        assert!(coords[0].as_f64().unwrap() < -8.9, "longitude first");
        assert!(coords[1].as_f64().unwrap() > 38.5, "latitude second");
        assert!(doc["price"].is_u64());
        let rating = doc["rating"].to_string();
        assert!(
            rating.split('.').nth(1).is_some_and(|d| d.len() == 1),
            "{rating}"
        );
    }

    #[test]
    fn ids_are_zero_padded() {
        assert_eq!(place_id("place-", 1, 1000), "place-0001");
        assert_eq!(place_id("place-", 1000, 1000), "place-1000");
        assert_eq!(place_id("p", 7, 10), "p0007");
        assert_eq!(place_id("place-", 1, 12_345), "place-00001");
        assert_eq!(place_id("", 12_345, 12_345), "12345");
    }

    #[test]
    fn haversine_sanity() {
        // One degree of latitude is about 111 km.
        let d = distance_m((0.0, 0.0), (0.0, 1.0));
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
        assert_eq!(distance_m(CENTRE, CENTRE), 0.0);
    }
}
