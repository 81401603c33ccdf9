//! What one request may cost: a cap on requests in flight (more are shed at once with `503`
//! `overloaded` and `Retry-After`, never queued) and a deadline per request (`503` `timeout`).
//! Bodies are capped separately, when the edge reads them ([`crate::body`], `413` `payload_too_large`).
//!
//! A counter of requests in flight and `tokio::time::timeout` around the handler rather than
//! tower's `LoadShed`,
//! `ConcurrencyLimit` and `Timeout` layers: those answer with boxed errors that need a
//! `HandleErrorLayer` to become JSON, and `Router::layer` builds one layer per route, so a
//! `ConcurrencyLimitLayer` would cap each route separately instead of the API as a whole. Here
//! every error is an [`ApiError`] by construction and one counter is shared by all routes. A
//! counter, not a semaphore: a request is never queued for a permit, and giving a semaphore's
//! permit back takes its waiters' lock, on every request.
//!
//! The checks run in [`crate::edge`], the one middleware around every route.
//!
//! The probes are exempt: an overloaded API is alive, and `/readyz` should report on its
//! dependencies, not compete with the traffic for a place.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use cacheflow_shared::config::LimitSettings;

use crate::error::ApiError;

const EXEMPT_PATHS: [&str; 2] = ["/healthz", "/readyz"];

#[derive(Clone, Debug)]
pub struct Limits {
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    request_timeout: Duration,
    max_body_bytes: usize,
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: settings.max_concurrent_requests,
            request_timeout: settings.request_timeout(),
            max_body_bytes: settings.max_body_bytes,
        }
    }

    /// Requests being handled now (the probes not counted).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

/// A request let through: it counts as in flight until its response is ready (the exempt
/// probes do not count).
#[derive(Debug)]
pub struct Admitted {
    _slot: Option<Slot>,
    deadline: Option<Duration>,
}

/// One request's place among those in flight, given back on drop.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limits {
    /// Counts a request to `path` as in flight, or sheds it when the cap is reached.
    pub fn admit(&self, path: &str) -> Result<Admitted, ApiError> {
        if EXEMPT_PATHS.contains(&path) {
            return Ok(Admitted {
                _slot: None,
                deadline: None,
            });
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::Overloaded);
        }
        Ok(Admitted {
            _slot: Some(Slot(self.in_flight.clone())),
            deadline: Some(self.request_timeout),
        })
    }
}

impl Admitted {
    /// Runs the request's handling under the deadline; it counts as in flight until done.
    pub async fn run<F>(self, handling: F) -> Response
    where
        F: Future<Output = Response>,
    {
        let Some(deadline) = self.deadline else {
            return handling.await;
        };
        match tokio::time::timeout(deadline, handling).await {
            Ok(response) => response,
            Err(_elapsed) => {
                let after_ms = deadline.as_millis() as u64;
                tracing::warn!(after_ms, "request timed out");
                ApiError::Timeout { after_ms }.into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use cacheflow_shared::security::ApiKeys;

    use super::*;
    use crate::auth::Auth;
    use crate::edge::EdgeLayer;

    fn limits(max: usize, timeout_ms: u64) -> Limits {
        Limits::new(&LimitSettings {
            request_timeout_ms: timeout_ms,
            max_concurrent_requests: max,
            max_body_bytes: 1024,
            ..LimitSettings::default()
        })
    }

    /// `/slow` waits until `release` is cancelled; `/healthz` answers at once.
    fn app(limits: Limits, release: CancellationToken) -> Router {
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.cancelled().await;
                        "done"
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(EdgeLayer::new(Auth::new(ApiKeys::default(), false), limits))
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn get_request(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn sheds_requests_beyond_the_cap_with_json() {
        let limits = limits(2, 60_000);
        let release = CancellationToken::new();
        let app = app(limits.clone(), release.clone());
        let slow: Vec<_> = (0..2)
            .map(|_| tokio::spawn(app.clone().oneshot(get_request("/slow"))))
            .collect();
        while limits.in_flight() < 2 {
            tokio::task::yield_now().await;
        }

        let shed = app.clone().oneshot(get_request("/slow")).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()["retry-after"], "1");
        assert!(shed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(body_json(shed).await["code"], "overloaded");
        // The probes still answer.
        let probe = app.clone().oneshot(get_request("/healthz")).await.unwrap();
        assert_eq!(probe.status(), StatusCode::OK);

        release.cancel();
        for handle in slow {
            assert_eq!(handle.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        assert_eq!(limits.in_flight(), 0, "finished requests no longer count");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_gets_a_json_timeout() {
        let limits = limits(4, 250);
        let app = app(limits.clone(), CancellationToken::new());
        let response = app.oneshot(get_request("/slow")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_json(response).await;
        assert_eq!(body["code"], "timeout");
        assert!(body["message"].as_str().unwrap().contains("250 ms"));
        assert_eq!(limits.in_flight(), 0);
    }
}
