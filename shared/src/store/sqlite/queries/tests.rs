use rusqlite::params;
use serde_json::json;

use super::*;
use crate::store::sqlite::SCHEMA;

fn db(rows: &[(&str, Value)]) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    for (id, body) in rows {
        conn.execute(
            "INSERT INTO documents (collection, id, version, deleted, body, updated_at)
             VALUES ('c', ?1, 1, 0, ?2, 'now')",
            params![id, body.to_string()],
        )
        .unwrap();
    }
    conn
}

fn top_ids(conn: &Connection, equals: &[(String, Value)]) -> Vec<String> {
    let (sql, params) = top_by_score_sql("c", "s", equals, 0, 100);
    let mut stmt = conn.prepare(&sql).unwrap();
    let rows = stmt
        .query_map(params_from_iter(params), |row| {
            let body: String = row.get(1)?;
            Ok(serde_json::from_str::<Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned())
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Where a point `distance_m` away from (lon, lat) on bearing `bearing_deg` lies, on Redis's
/// sphere (the "destination point" formula).
fn destination(lon: f64, lat: f64, bearing_deg: f64, distance_m: f64) -> (f64, f64) {
    let (lat1, theta, delta) = (
        lat.to_radians(),
        bearing_deg.to_radians(),
        distance_m / EARTH_RADIUS_M,
    );
    let lat2 = (lat1.sin() * delta.cos() + lat1.cos() * delta.sin() * theta.cos()).asin();
    let lon2 = lon.to_radians()
        + (theta.sin() * delta.sin() * lat1.cos()).atan2(delta.cos() - lat1.sin() * lat2.sin());
    let lon2 = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
    (lon2, lat2.to_degrees())
}

#[test]
fn haversine_matches_redis_geodist() {
    // GEODIST Sicily Palermo Catania from Redis's documentation: 166274.1516 m (Redis measures
    // between geohash cell centres, a few decimetres off the exact coordinates).
    let d = haversine_m(13.361389, 38.115556, 15.087269, 37.502669);
    assert!((d - 166_274.151_6).abs() < 1.0, "{d}");
    assert_eq!(haversine_m(-9.14, 38.72, -9.14, 38.72), 0.0);
    assert_eq!(
        haversine_m(1.0, 2.0, 3.0, 4.0),
        haversine_m(3.0, 4.0, 1.0, 2.0)
    );
    // Across the antimeridian the short way round: 0.002° of the equator.
    let across = haversine_m(179.999, 0.0, -179.999, 0.0);
    let expected = 0.002_f64.to_radians() * EARTH_RADIUS_M;
    assert!((across - expected).abs() < 1e-6, "{across} vs {expected}");
    // Antipodes: half the circumference, not NaN.
    let half = haversine_m(0.0, 0.0, 180.0, 0.0);
    assert!((half - std::f64::consts::PI * EARTH_RADIUS_M).abs() < 1e-3);
}

#[test]
fn bounding_box_bounds_latitude_and_longitude_away_from_poles_and_antimeridian() {
    // ~111.2 km is 1° of latitude on Redis's sphere.
    let one_degree = 1f64.to_radians() * EARTH_RADIUS_M;
    let bbox = bounding_box(10.0, 0.0, one_degree);
    let (min_lat, max_lat) = bbox.lat;
    assert!(
        (min_lat + 1.0).abs() < 1e-6 && (max_lat - 1.0).abs() < 1e-6,
        "{bbox:?}"
    );
    let (min_lon, max_lon) = bbox.lon.unwrap();
    assert!(
        (min_lon - 9.0).abs() < 1e-6 && (max_lon - 11.0).abs() < 1e-6,
        "{bbox:?}"
    );
    // At 60° a degree of longitude is half as long, so the box is about twice as wide.
    let (min_lon, max_lon) = bounding_box(10.0, 60.0, one_degree).lon.unwrap();
    assert!(max_lon - min_lon > 3.9 && max_lon - min_lon < 4.1);

    assert_eq!(bounding_box(179.9, 0.0, 50_000.0).lon, None, "crosses +180");
    assert_eq!(
        bounding_box(-179.9, 0.0, 50_000.0).lon,
        None,
        "crosses -180"
    );
    let polar = bounding_box(0.0, 85.0, 600_000.0);
    assert_eq!(polar.lon, None, "reaches the pole");
    assert_eq!(polar.lat.1, 90.0);
    assert_eq!(
        bounding_box(0.0, 0.0, 3e7).lat,
        (-90.0, 90.0),
        "whole Earth"
    );
    let zero = bounding_box(-9.14, 38.72, 0.0);
    assert!(zero.lat.0 < 38.72 && 38.72 < zero.lat.1);
    let (min_lon, max_lon) = zero.lon.unwrap();
    assert!(min_lon < -9.14 && -9.14 < max_lon);
}

#[test]
fn bounding_box_contains_the_whole_circle() {
    let centres = [
        (0.0, 0.0),
        (-9.1393, 38.7223),
        (179.99, 10.0),
        (-179.99, -10.0),
        (10.0, 84.9),
        (-120.0, -85.05),
        (45.0, 89.99),
    ];
    for (lon, lat) in centres {
        for radius in [0.5, 100.0, 5_000.0, 250_000.0, 1e6, 5e6, 1.9e7] {
            let bbox = bounding_box(lon, lat, radius);
            for step in 0..72 {
                let (plon, plat) = destination(lon, lat, f64::from(step) * 5.0, radius);
                let d = haversine_m(lon, lat, plon, plat);
                assert!(
                    (d - radius).abs() <= radius * 1e-9 + 1e-5,
                    "{d} vs {radius}"
                );
                let (min_lat, max_lat) = bbox.lat;
                assert!(
                    (min_lat..=max_lat).contains(&plat),
                    "({lon}, {lat}) r={radius}: lat {plat} outside {bbox:?}"
                );
                if let Some((min_lon, max_lon)) = bbox.lon {
                    assert!(
                        (min_lon..=max_lon).contains(&plon),
                        "({lon}, {lat}) r={radius}: lon {plon} outside {bbox:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn equals_pins_the_json_type() {
    let conn = db(&[
        ("int", json!({"id": "int", "s": 1, "f": 1})),
        ("float", json!({"id": "float", "s": 1, "f": 1.0})),
        ("text", json!({"id": "text", "s": 1, "f": "1"})),
        ("bool", json!({"id": "bool", "s": 1, "f": true})),
        ("zero", json!({"id": "zero", "s": 1, "f": false})),
        ("array", json!({"id": "array", "s": 1, "f": [1]})),
        ("object", json!({"id": "object", "s": 1, "f": {"a": 1}})),
        ("null", json!({"id": "null", "s": 1, "f": null})),
        ("missing", json!({"id": "missing", "s": 1})),
    ]);
    let eq = |value: Value| top_ids(&conn, &[("f".to_owned(), value)]);
    assert_eq!(eq(json!(1)), ["float", "int"]);
    assert_eq!(eq(json!(1.0)), ["float", "int"]);
    assert_eq!(eq(json!("1")), ["text"]);
    assert_eq!(eq(json!(true)), ["bool"]);
    assert_eq!(eq(json!(false)), ["zero"]);
    assert_eq!(eq(json!(null)), ["null"]);
    assert!(eq(json!(2)).is_empty());
    assert!(eq(json!(u64::MAX)).is_empty());
    assert!(eq(json!([1])).is_empty(), "composites never match");
    assert!(eq(json!({"a": 1})).is_empty(), "composites never match");
}

#[test]
fn only_numeric_scores_rank() {
    let conn = db(&[
        ("a", json!({"id": "a", "s": 2})),
        ("b", json!({"id": "b", "s": 2.5})),
        ("c", json!({"id": "c", "s": "9"})),
        ("d", json!({"id": "d", "s": true})),
        ("e", json!({"id": "e", "s": [9]})),
        ("f", json!({"id": "f", "s": null})),
        ("g", json!({"id": "g"})),
        ("h", json!({"id": "h", "s": -1e300})),
        ("i", json!({"id": "i", "s": 2.0})),
    ]);
    assert_eq!(top_ids(&conn, &[]), ["b", "a", "i", "h"]);
}

#[test]
fn nearest_candidates_keep_the_limit_nearest_with_id_tie_breaks() {
    let centre = (-9.1393, 38.7223);
    // 40 points on 10 spots (4 ids on each, so exact ties), inserted out of id order.
    let mut rows = Vec::new();
    for i in (0..40).rev() {
        let spot = f64::from(i / 4);
        let (lon, lat) = destination(centre.0, centre.1, spot * 37.0, spot * 100.0);
        let id = format!("p{:02}", (i * 7) % 40);
        rows.push((
            id.clone(),
            json!({"id": id, "loc": {"type": "Point", "coordinates": [lon, lat]}}),
        ));
    }
    let borrowed: Vec<(&str, Value)> = rows.iter().map(|(i, b)| (i.as_str(), b.clone())).collect();
    let conn = db(&borrowed);
    let mut expected: Vec<(f64, String)> = rows
        .iter()
        .map(|(id, body)| {
            let c = &body["loc"]["coordinates"];
            let d = haversine_m(
                centre.0,
                centre.1,
                c[0].as_f64().unwrap(),
                c[1].as_f64().unwrap(),
            );
            (d, id.clone())
        })
        .filter(|(d, _)| *d <= 650.0)
        .collect();
    expected.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    assert_eq!(expected.len(), 28);
    let (sql, params) = near_sql("c", "loc", &bounding_box(centre.0, centre.1, 650.0));
    for limit in [1, 5, 13, 28, 100] {
        let got = nearest_candidates(&conn, &sql, params.clone(), centre, 650.0, limit).unwrap();
        let got: Vec<(f64, String)> = got.into_iter().map(|c| (c.distance, c.id)).collect();
        assert_eq!(got, expected[..limit.min(28)], "limit {limit}");
    }
}

#[test]
fn near_reads_only_points_of_the_collection() {
    let point = json!({"type": "Point", "coordinates": [1.0, 1.0]});
    let conn = db(&[
        ("a", json!({"id": "a", "loc": point})),
        (
            "line",
            json!({"id": "line", "loc": {"type": "LineString", "coordinates": [1.0, 1.0]}}),
        ),
        (
            "text",
            json!({"id": "text", "loc": {"type": "Point", "coordinates": ["1", "1"]}}),
        ),
        ("flat", json!({"id": "flat", "loc": [1.0, 1.0]})),
        ("none", json!({"id": "none"})),
    ]);
    conn.execute(
        "INSERT INTO documents VALUES ('other', 'b', 1, 0, ?1, 'now'), ('c', 'gone', 2, 1, NULL, 'now')",
        params![json!({"id": "b", "loc": point}).to_string()],
    )
    .unwrap();
    let (sql, params) = near_sql("c", "loc", &bounding_box(1.0, 1.0, 10.0));
    let got = nearest_candidates(&conn, &sql, params, (1.0, 1.0), 10.0, 10).unwrap();
    let ids: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a"]);
    assert_eq!(got[0].distance, 0.0);
}
