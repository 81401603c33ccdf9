//! Request metrics labelled by the matched route *pattern* (never the raw path, which would make
//! one time series per entity id), the method and the status class.
//!
//! The series handles are registered once per (route, method, class) and kept: building a
//! metrics key (owned label strings, a registry lookup) for every request costs the cache-hit
//! path more than recording the two samples does.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use cacheflow_shared::telemetry::names;
use metrics::{Counter, Histogram};

const METHODS: [&str; 7] = ["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The handles of every series the API records into, created on first use.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<Box<str>, RouteSeries>>,
}

#[derive(Debug)]
struct RouteSeries {
    route: Box<str>,
    series: [OnceLock<Series>; METHODS.len() * CLASSES.len()],
}

#[derive(Debug)]
struct Series {
    requests: Counter,
    duration: Histogram,
}

impl HttpMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request of `route` (the matched pattern, `None` when no route matched).
    pub fn record(
        &self,
        route: Option<&str>,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let route = route.unwrap_or(names::UNMATCHED_ROUTE);
        let (m, c) = (method_index(method), class_index(status));
        {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(series) = routes.get(route) {
                return series.record(m, c, elapsed);
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes
            .entry(route.into())
            .or_insert_with(|| RouteSeries::new(route))
            .record(m, c, elapsed);
    }
}

impl RouteSeries {
    fn new(route: &str) -> Self {
        Self {
            route: route.into(),
            series: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn record(&self, m: usize, c: usize, elapsed: Duration) {
        let series = self.series[m * CLASSES.len() + c].get_or_init(|| {
            let labels = [
                (names::label::ROUTE, self.route.to_string()),
                (names::label::METHOD, METHODS[m].to_owned()),
                (names::label::STATUS_CLASS, CLASSES[c].to_owned()),
            ];
            Series {
                requests: metrics::counter!(names::HTTP_REQUESTS_TOTAL, &labels),
                duration: metrics::histogram!(names::HTTP_REQUEST_DURATION_SECONDS, &labels),
            }
        });
        series.requests.increment(1);
        series.duration.record(elapsed.as_secs_f64());
    }
}

/// Methods outside the API's own become "other", keeping the label set small and fixed.
fn method_index(method: &Method) -> usize {
    let name = method.as_str();
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == name)
        .unwrap_or(METHODS.len() - 1)
}

fn class_index(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_a_small_fixed_set() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::DELETE)], "DELETE");
        assert_eq!(METHODS[method_index(&Method::OPTIONS)], "other");
        assert_eq!(
            METHODS[method_index(&Method::from_bytes(b"BREW").unwrap())],
            "other"
        );
        assert_eq!(CLASSES[class_index(StatusCode::NOT_MODIFIED)], "3xx");
        assert_eq!(CLASSES[class_index(StatusCode::SERVICE_UNAVAILABLE)], "5xx");
        assert_eq!(CLASSES[class_index(StatusCode::OK)], "2xx");
    }

    #[test]
    fn one_series_per_route_method_and_class() {
        let metrics = HttpMetrics::new();
        let ms = Duration::from_millis(1);
        metrics.record(
            Some("/v1/{collection}/{id}"),
            &Method::GET,
            StatusCode::OK,
            ms,
        );
        metrics.record(
            Some("/v1/{collection}/{id}"),
            &Method::GET,
            StatusCode::OK,
            ms,
        );
        metrics.record(None, &Method::GET, StatusCode::NOT_FOUND, ms);
        let routes = metrics.routes.read().unwrap();
        let mut names: Vec<_> = routes.keys().map(|k| k.to_string()).collect();
        names.sort();
        assert_eq!(names, ["/v1/{collection}/{id}", names::UNMATCHED_ROUTE]);
        let entity = &routes["/v1/{collection}/{id}"];
        let created = entity.series.iter().filter(|s| s.get().is_some()).count();
        assert_eq!(created, 1);
    }
}
