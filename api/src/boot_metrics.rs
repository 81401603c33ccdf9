//! Every API series whose labels are known before the first request, registered at zero at
//! start-up: a dashboard (or an alert's `rate()`) sees each metric from the first scrape, not
//! only after the traffic that first touches it, and the first increase is not lost.
//!
//! Known in advance: the routes of the OpenAPI document (the router's own list) with their
//! methods, the pipeline's collections, and the fixed label sets of `telemetry::names`. HTTP
//! request counters are registered for the classes a dashboard plots (`2xx`, `4xx`, `5xx`), the
//! latency histograms for `2xx`; other classes appear with their first request.

use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::telemetry::names::{self, label};
use metrics::{counter, gauge, histogram};

/// HTTP status classes registered per route and method.
const HTTP_CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// Registers the series; `routes` are `(route pattern, method)` pairs, e.g.
/// `("/v1/{collection}/{id}", "GET")`.
pub fn register_at_zero(pipeline: &Pipeline, routes: &[(String, String)]) {
    for (route, method) in routes {
        for class in HTTP_CLASSES {
            let labels = [
                (label::ROUTE, route.clone()),
                (label::METHOD, method.clone()),
                (label::STATUS_CLASS, class.to_owned()),
            ];
            counter!(names::HTTP_REQUESTS_TOTAL, &labels).increment(0);
            if class == "2xx" {
                // Registering is enough: a histogram is exported (empty) once it exists.
                let _ = histogram!(names::HTTP_REQUEST_DURATION_SECONDS, &labels);
            }
        }
    }
    for collection in pipeline.collection_names() {
        for result in names::CACHE_RESULTS {
            counter!(names::CACHE_REQUESTS_TOTAL, label::COLLECTION => collection.to_owned(), label::RESULT => *result)
                .increment(0);
        }
        for outcome in names::POPULATE_OUTCOMES {
            counter!(names::CACHE_POPULATE_TOTAL, label::COLLECTION => collection.to_owned(), label::OUTCOME => *outcome)
                .increment(0);
        }
        counter!(names::SINGLEFLIGHT_COALESCED_TOTAL, label::COLLECTION => collection.to_owned())
            .increment(0);
    }
    for op in names::STORE_OPS {
        let _ = histogram!(names::STORE_OPERATION_DURATION_SECONDS, label::OP => *op);
        for kind in names::STORE_ERROR_KINDS {
            counter!(names::STORE_ERRORS_TOTAL, label::OP => *op, label::KIND => *kind)
                .increment(0);
        }
    }
    gauge!(names::OUTBOX_PENDING_EVENTS).increment(0.0);
    let _ = histogram!(names::OUTBOX_PUBLISH_DURATION_SECONDS);
    counter!(names::OUTBOX_PUBLISHED_EVENTS_TOTAL).increment(0);
    counter!(names::OUTBOX_PUBLISH_FAILURES_TOTAL).increment(0);
}

/// The `(route pattern, method)` pairs of an OpenAPI document, methods upper-case.
pub fn routes_of(spec: &utoipa::openapi::OpenApi) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, item) in &spec.paths.paths {
        let operations = [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
            ("POST", item.post.is_some()),
        ];
        for (method, present) in operations {
            if present {
                routes.push((path.clone(), method.to_owned()));
            }
        }
    }
    routes
}
