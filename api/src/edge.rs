//! The one middleware around every route: it checks the API key, takes a concurrency permit
//! under the request deadline, and records the request's metrics, in that order of nesting
//! (metrics outermost, so 401s and sheds are counted too).
//!
//! One hand-written layer rather than three `middleware::from_fn` ones: axum boxes the route
//! again for every layer added with `Router::layer`, and `from_fn` boxes its `Next` once more
//! per request, so each of those layers cost the cache-hit path allocations and a clone of the
//! stack below it. This one sits inside the router only because the metrics need the matched
//! route pattern; everything that does not is layered once around the whole router
//! ([`crate::startup::router_and_spec`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service, ServiceExt};

use crate::auth::Auth;
use crate::http_metrics::HttpMetrics;
use crate::limits::Limits;

#[derive(Clone, Debug)]
pub struct EdgeLayer {
    auth: Auth,
    limits: Limits,
    metrics: Arc<HttpMetrics>,
}

impl EdgeLayer {
    pub fn new(auth: Auth, limits: Limits) -> Self {
        Self {
            auth,
            limits,
            metrics: Arc::new(HttpMetrics::new()),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's business when it is called (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let inner = self.inner.clone();
        let EdgeLayer {
            auth,
            limits,
            metrics,
        } = self.layer.clone();
        Box::pin(async move {
            let route = request.extensions().get::<MatchedPath>().cloned();
            let method = request.method().clone();
            let checked = auth
                .check(request.method(), request.uri().path(), request.headers())
                .and_then(|()| limits.admit(request.uri().path()));
            let response = match checked {
                Ok(admitted) => {
                    admitted
                        .run(async move {
                            match inner.oneshot(request).await {
                                Ok(response) => response,
                                Err(never) => match never {},
                            }
                        })
                        .await
                }
                Err(err) => err.into_response(),
            };
            metrics.record(
                route.as_ref().map(MatchedPath::as_str),
                &method,
                response.status(),
                started.elapsed(),
            );
            Ok(response)
        })
    }
}
