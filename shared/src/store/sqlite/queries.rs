//! The structure queries the API falls back to when Redis is unreachable: a sorted set's top-N
//! ([`DocumentStore::top_by_score`](crate::store::DocumentStore::top_by_score)) and a geo
//! index's radius search ([`DocumentStore::near`](crate::store::DocumentStore::near)), answered
//! from the JSON bodies with SQLite's JSON functions.
//!
//! Field names are checked against the pipeline's identifier rule and still never spliced into the
//! SQL: JSON paths and values are bound as parameters, so the statement text only varies with the
//! number of `equals` conditions (which keeps `prepare_cached` effective).
//!
//! There are no indexes on document fields, so both queries scan the collection's rows. Memory
//! stays bounded regardless: SQLite's sorter keeps only `offset + limit` rows for the top-N, and
//! the radius search keeps only the `limit` nearest candidates while it reads.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection};
use serde_json::Value;

use super::{map_err, parse_body, SqliteStore};
use crate::store::{
    check_equals, check_field_name, check_near, Scored, StoreError, EARTH_RADIUS_M,
};

impl SqliteStore {
    pub(super) async fn query_top_by_score(
        &self,
        collection: &str,
        score_field: &str,
        equals: &[(String, Value)],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        check_field_name(score_field)?;
        check_equals(equals)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (sql, params) = top_by_score_sql(collection, score_field, equals, offset, limit);
        self.run(self.reader(), move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
            let rows = stmt
                .query_map(params_from_iter(params), |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        // rusqlite widens an INTEGER score to f64 here.
                        row.get::<_, f64>(2)?,
                    ))
                })
                .map_err(map_err)?;
            rows.map(|row| {
                let (version, body, value) = row.map_err(map_err)?;
                Ok(Scored {
                    document: parse_body(version, &body)?,
                    value,
                })
            })
            .collect()
        })
        .await
    }

    pub(super) async fn query_near(
        &self,
        collection: &str,
        field: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        check_field_name(field)?;
        check_near(lon, lat, radius_m)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (sql, params) = near_sql(collection, field, &bounding_box(lon, lat, radius_m));
        self.run(self.reader(), move |conn| {
            let nearest = nearest_candidates(conn, &sql, params, (lon, lat), radius_m, limit)?;
            nearest
                .into_iter()
                .map(|c| {
                    Ok(Scored {
                        document: parse_body(c.version, &c.body)?,
                        value: c.distance,
                    })
                })
                .collect()
        })
        .await
    }
}

/// The JSON path of a top-level field (the name is already checked to be an identifier).
fn path(field: &str) -> String {
    format!("$.{field}")
}

fn sql_int(n: usize) -> Sql {
    Sql::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `json_type` tells the JSON types apart where `json_extract` alone would not: it returns
/// `true`/`false` as 1/0 and objects as their JSON text, so `= 1` would match `true` and a string
/// equal to an object's JSON text would match the object. Each condition therefore pins the JSON
/// type and, for strings and numbers, the value; numbers compare by value across INTEGER and REAL
/// (`1 = 1.0`), as MongoDB's do.
fn equals_condition(field: &str, value: &Value, params: &mut Vec<Sql>) -> String {
    let path = path(field);
    let (types, compared) = match value {
        // `check_equals` refuses objects and arrays before any SQL is built; should one get here,
        // matching nothing keeps the answer from widening (as the MongoDB adapter does).
        Value::Array(_) | Value::Object(_) => return " AND 0".to_owned(),
        Value::String(s) => ("'text'", Some(Sql::Text(s.clone()))),
        Value::Number(n) => {
            let bound = match n.as_i64() {
                Some(i) => Sql::Integer(i),
                // Above i64::MAX or fractional: SQLite holds such a JSON number as REAL.
                None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
            };
            ("'integer', 'real'", Some(bound))
        }
        Value::Bool(true) => ("'true'", None),
        Value::Bool(false) => ("'false'", None),
        Value::Null => ("'null'", None),
    };
    params.push(Sql::Text(path.clone()));
    match compared {
        Some(bound) => {
            params.push(Sql::Text(path));
            params.push(bound);
            format!(" AND json_type(body, ?) IN ({types}) AND json_extract(body, ?) = ?")
        }
        None => format!(" AND json_type(body, ?) IN ({types})"),
    }
}

fn top_by_score_sql(
    collection: &str,
    score_field: &str,
    equals: &[(String, Value)],
    offset: usize,
    limit: usize,
) -> (String, Vec<Sql>) {
    let score = path(score_field);
    let mut params = vec![
        Sql::Text(score.clone()),
        Sql::Text(collection.to_owned()),
        Sql::Text(score),
    ];
    let mut sql = String::from(
        "SELECT version, body, json_extract(body, ?) AS score FROM documents
         WHERE collection = ? AND deleted = 0 AND json_type(body, ?) IN ('integer', 'real')",
    );
    for (field, value) in equals {
        sql.push_str(&equals_condition(field, value, &mut params));
    }
    sql.push_str(" ORDER BY score DESC, id ASC LIMIT ? OFFSET ?");
    params.push(sql_int(limit));
    params.push(sql_int(offset));
    (sql, params)
}

/// Degree ranges that contain every point within the radius; `lon: None` when no longitude
/// range can be given (the circle reaches a pole or crosses the antimeridian).
#[derive(Debug, Clone, PartialEq)]
struct BoundingBox {
    lat: (f64, f64),
    lon: Option<(f64, f64)>,
}

/// The spherical bounding box of a circle (J. P. Matuschek, "Finding Points Within a Distance of
/// a Latitude/Longitude Using Bounding Coordinates"), on the same sphere as the exact test.
fn bounding_box(lon: f64, lat: f64, radius_m: f64) -> BoundingBox {
    // Widening by ~0.1 mm keeps rounding at the edges from dropping a point the exact test would
    // keep; the box is only a prefilter, so being slightly too big costs nothing.
    const SLACK_DEG: f64 = 1e-9;
    let angular = radius_m / EARTH_RADIUS_M;
    let delta_lat = angular.to_degrees() + SLACK_DEG;
    let (min_lat, max_lat) = (lat - delta_lat, lat + delta_lat);
    if min_lat <= -90.0 || max_lat >= 90.0 {
        // The circle contains a pole, where every meridian meets: no longitude is out of reach.
        return BoundingBox {
            lat: (min_lat.max(-90.0), max_lat.min(90.0)),
            lon: None,
        };
    }
    // Away from the poles |lat| + angular < 90°, so the ratio is below 1 and asin is defined.
    let ratio = angular.sin() / lat.to_radians().cos();
    let delta_lon = ratio.min(1.0).asin().to_degrees() + SLACK_DEG;
    let (min_lon, max_lon) = (lon - delta_lon, lon + delta_lon);
    let lon = if min_lon < -180.0 || max_lon > 180.0 {
        // The box wraps around ±180°; the latitude band alone still bounds the rows read.
        None
    } else {
        Some((min_lon, max_lon))
    };
    BoundingBox {
        lat: (min_lat, max_lat),
        lon,
    }
}

fn near_sql(collection: &str, field: &str, bbox: &BoundingBox) -> (String, Vec<Sql>) {
    let base = path(field);
    let lon_path = Sql::Text(format!("{base}.coordinates[0]"));
    let lat_path = Sql::Text(format!("{base}.coordinates[1]"));
    let mut params = vec![
        lon_path.clone(),
        lat_path.clone(),
        Sql::Text(collection.to_owned()),
        Sql::Text(format!("{base}.type")),
        lon_path.clone(),
        lat_path.clone(),
        lat_path,
        Sql::Real(bbox.lat.0),
        Sql::Real(bbox.lat.1),
    ];
    let mut sql = String::from(
        "SELECT id, version, body, json_extract(body, ?) AS lon, json_extract(body, ?) AS lat
         FROM documents
         WHERE collection = ? AND deleted = 0 AND json_extract(body, ?) = 'Point'
           AND json_type(body, ?) IN ('integer', 'real') AND json_type(body, ?) IN ('integer', 'real')
           AND json_extract(body, ?) BETWEEN ? AND ?",
    );
    if let Some((min_lon, max_lon)) = bbox.lon {
        sql.push_str(" AND json_extract(body, ?) BETWEEN ? AND ?");
        params.extend([lon_path, Sql::Real(min_lon), Sql::Real(max_lon)]);
    }
    (sql, params)
}

/// A document within the radius, ordered nearest first, then by id.
#[derive(Debug)]
struct Candidate {
    distance: f64,
    id: String,
    version: i64,
    body: String,
}

impl Candidate {
    fn rank(&self, distance: f64, id: &str) -> Ordering {
        self.distance
            .total_cmp(&distance)
            .then_with(|| self.id.as_str().cmp(id))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank(other.distance, &other.id)
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// Reads the prefiltered rows one at a time, keeping the `limit` nearest within the radius in a
/// max-heap whose top is the farthest kept; a row that would not displace it is never copied.
fn nearest_candidates(
    conn: &Connection,
    sql: &str,
    params: Vec<Sql>,
    (lon, lat): (f64, f64),
    radius_m: f64,
    limit: usize,
) -> Result<Vec<Candidate>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let mut rows = stmt.query(params_from_iter(params)).map_err(map_err)?;
    let mut kept: BinaryHeap<Candidate> = BinaryHeap::with_capacity(limit.min(1024) + 1);
    while let Some(row) = rows.next().map_err(map_err)? {
        let (point_lon, point_lat): (f64, f64) =
            (row.get(3).map_err(map_err)?, row.get(4).map_err(map_err)?);
        let distance = haversine_m(lon, lat, point_lon, point_lat);
        if distance.is_nan() || distance > radius_m {
            continue;
        }
        let id = row
            .get_ref(0)
            .map_err(map_err)?
            .as_str()
            .map_err(|e| StoreError::Internal(format!("corrupt document id: {e}")))?;
        let displaces = kept.len() < limit
            || kept
                .peek()
                .is_some_and(|worst| worst.rank(distance, id) == Ordering::Greater);
        if !displaces {
            continue;
        }
        let candidate = Candidate {
            distance,
            id: id.to_owned(),
            version: row.get(1).map_err(map_err)?,
            body: row.get(2).map_err(map_err)?,
        };
        kept.push(candidate);
        if kept.len() > limit {
            kept.pop();
        }
    }
    Ok(kept.into_sorted_vec())
}

/// Great-circle distance in metres by the haversine formula on Redis's sphere, the same formula
/// as Redis's `geohashGetDistance`, so distances agree with `GEOSEARCH`/`GEODIST`.
fn haversine_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (lat1, lat2) = (lat1.to_radians(), lat2.to_radians());
    let u = ((lat2 - lat1) / 2.0).sin();
    let v = ((lon2 - lon1).to_radians() / 2.0).sin();
    // Rounding can push the term a hair above 1 for antipodal points, where asin is undefined.
    let a = (u * u + lat1.cos() * lat2.cos() * v * v).min(1.0);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

#[cfg(test)]
mod tests;
