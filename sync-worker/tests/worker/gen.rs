//! Test events for the shipped `places` pipeline.

use cacheflow_shared::document::Document;
use cacheflow_shared::event::Event;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

pub const CATEGORIES: [&str; 3] = ["cafe", "bar", "restaurant"];

pub fn place(id: &str, version: u64, category: &str, rating: f64, lon: f64, lat: f64) -> Document {
    json!({
        "id": id, "version": version, "name": format!("Place {id} v{version}"),
        "category": category, "rating": rating, "price": version % 4 + 1,
        "location": {"type": "Point", "coordinates": [lon, lat]},
    })
    .as_object()
    .expect("an object")
    .clone()
}

pub fn upsert(id: &str, version: u64, category: &str, rating: f64) -> Event {
    Event::upsert(
        "places",
        id,
        version,
        place(id, version, category, rating, 2.35, 48.85),
    )
}

/// `entities` entities with 1..=`max_versions` versions each; categories and ratings change
/// between versions, about one entity in five ends deleted and a few are deleted then recreated.
/// In version order per entity; shuffle for out-of-order delivery.
pub fn history(rng: &mut StdRng, prefix: &str, entities: usize, max_versions: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for n in 0..entities {
        let id = format!("{prefix}{n}");
        let versions = rng.random_range(1..=max_versions);
        for version in 1..=versions {
            let last = version == versions;
            let delete = (last && rng.random_bool(0.2)) || (!last && rng.random_bool(0.05));
            if delete {
                events.push(Event::delete("places", &id, version));
                continue;
            }
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
            let rating = f64::from(rng.random_range(0..=50_u32)) / 10.0;
            let lon = rng.random_range(-179.0..179.0);
            let lat = rng.random_range(-80.0..80.0);
            events.push(Event::upsert(
                "places",
                &id,
                version,
                place(&id, version, category, rating, lon, lat),
            ));
        }
    }
    events
}

/// Shuffles `events` and re-publishes about `duplicates` of them at random places.
pub fn shuffled_with_duplicates(rng: &mut StdRng, events: &[Event], duplicates: f64) -> Vec<Event> {
    let mut out: Vec<Event> = events.to_vec();
    for event in events {
        if rng.random_bool(duplicates) {
            out.push(event.clone());
        }
    }
    out.shuffle(rng);
    out
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
