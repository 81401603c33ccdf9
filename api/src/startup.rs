//! Wiring: builds the application from settings and a bound listener, so tests can bind port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use cacheflow_shared::config::Settings;
use cacheflow_shared::events::{self, JetStreamPublisher};
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::store::{self, instrumented::InstrumentedStore};
use cacheflow_shared::telemetry::metrics::{install_recorder, serve_metrics};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::edge::EdgeLayer;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::openapi::ApiDoc;
use crate::read::generations::GenerationFollower;
use crate::read::near_cache::NearCache;
use crate::read::notices::NoticeSubscriber;
use crate::read::populate::Populator;
use crate::read::redis_reads::RedisReads;
use crate::read::views::Views;
use crate::read::Reader;
use crate::relay::heartbeat::Heartbeats;
use crate::relay::OutboxRelay;
use crate::routes::{admin, collections, documents, health, reads};
use crate::shutdown;
use crate::state::{AppState, PipelineNames, StateParts};

pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    metrics: PrometheusHandle,
    router: Router,
    relay: OutboxRelay,
    heartbeats: Option<Heartbeats>,
    generations: GenerationFollower,
    notices: NoticeSubscriber,
    limits: Limits,
    /// From the signal to the exit, at most (`shutdown.deadline_ms`).
    shutdown_deadline: Duration,
}

impl Application {
    /// Loads the pipeline named in the settings and builds the application on `settings.api_addr`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pipeline = Pipeline::load(&settings.pipeline_config)?;
        let listener = TcpListener::bind(settings.api_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.api_addr))?;
        Self::build_with(settings, pipeline, listener).await
    }

    /// Builds the application on an already bound listener. Redis and NATS may be down: the API
    /// starts anyway (writes only need the store) and reports them in `/readyz`.
    pub async fn build_with(
        settings: Settings,
        pipeline: Pipeline,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let metrics = install_recorder();
        let metrics_listener = TcpListener::bind(settings.metrics_addr)
            .await
            .with_context(|| format!("cannot listen on {} for metrics", settings.metrics_addr))?;
        let store = store::open(&settings.store_url, &pipeline, &settings.store)
            .await
            .with_context(|| format!("cannot open the store at {}", settings.store_url))?;
        let store = InstrumentedStore::wrap(store);
        let redis = redis_manager(&settings)?;
        let nats = events::connect(&settings, "cacheflow-api").await?;
        let mut js = async_nats::jetstream::new(nats.clone());
        js.set_timeout(settings.nats.timeout());

        let wake = Arc::new(Notify::new());
        let publisher = Arc::new(JetStreamPublisher::new(
            js.clone(),
            settings.stream.subject_prefix.clone(),
        ));
        let pipeline_names = PipelineNames {
            jetstream: js.clone(),
            stream: settings.stream.name.clone(),
            subject_prefix: settings.stream.subject_prefix.clone(),
            consumer: settings.worker.consumer.clone(),
            key_prefix: settings.worker.key_prefix.clone(),
        };
        let heartbeats = Heartbeats::new(
            store.clone(),
            pipeline.collection_names().map(str::to_owned).collect(),
            settings.outbox.heartbeat_interval(),
            wake.clone(),
        );
        let relay = OutboxRelay::new(
            store.clone(),
            publisher,
            wake.clone(),
            settings.outbox.clone(),
        )
        .with_stream_setup(js, settings.stream.clone());
        let pipeline = Arc::new(pipeline);
        let (layouts, generations) =
            GenerationFollower::start(&settings, &pipeline, redis.clone()).await;
        let reader = Arc::new(
            Reader::new(
                RedisReads::new(redis.clone(), settings.redis.timeout()),
                store.clone(),
                layouts,
                Populator::new(&settings, pipeline.clone()),
                Views::new(&pipeline),
            )
            .with_near_cache(NearCache::new(
                settings.reads.near_cache_bytes,
                settings.reads.near_cache_max_staleness(),
                nats.clone(),
            )),
        );
        let notices =
            NoticeSubscriber::start(&nats, &settings.stream.subject_prefix, reader.clone())
                .await
                .context("cannot subscribe to the near-cache notices")?;
        let state = AppState::new(StateParts {
            pipeline: &pipeline,
            store,
            redis,
            nats,
            relay_wake: wake,
            dependency_timeout: settings.redis.timeout().max(settings.nats.timeout()),
            reader,
            read_settings: settings.reads.clone(),
            admin_enabled: settings.admin_enabled,
            max_event_bytes: settings.limits.max_event_bytes,
            pipeline_names,
        });
        let limits = Limits::new(&settings.limits);
        let (router, spec) = router_and_spec(state, Auth::from_settings(&settings), limits.clone());
        crate::boot_metrics::register_at_zero(&pipeline, &crate::boot_metrics::routes_of(&spec));
        Ok(Self {
            listener,
            metrics_listener,
            metrics,
            router,
            relay,
            heartbeats,
            generations,
            notices,
            limits,
            shutdown_deadline: settings.shutdown.deadline(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `signal` resolves, then stops accepting, finishes in-flight requests and
    /// drains the outbox, all within `shutdown.deadline_ms`, and returns (see [`shutdown`]).
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop_relay = CancellationToken::new();
        let relay = tokio::spawn(self.relay.run(stop_relay.clone()));
        // Heartbeats stop with the relay, before the outbox is drained.
        if let Some(heartbeats) = self.heartbeats {
            tokio::spawn(heartbeats.run(stop_relay.clone()));
        }
        // Metrics and the generation follower serve the requests that are finishing too: they
        // stop last.
        let stop_background = CancellationToken::new();
        let metrics = tokio::spawn(serve_metrics(
            self.metrics_listener,
            self.metrics,
            stop_background.clone(),
        ));
        let generations = tokio::spawn(self.generations.run(stop_background.clone()));
        let notices = tokio::spawn(self.notices.run(stop_background.clone()));
        let (served, stop_by) = shutdown::serve(
            self.listener,
            self.router,
            signal,
            self.shutdown_deadline,
            &self.limits,
        )
        .await;
        let flushed = shutdown::flush_outbox(relay, &stop_relay, stop_by).await;
        stop_background.cancel();
        shutdown::join_by(generations, stop_by, "the cache generations task").await?;
        shutdown::join_by(notices, stop_by, "the near-cache notices task").await?;
        if let Some(served_metrics) =
            shutdown::join_by(metrics, stop_by, "the metrics task").await?
        {
            served_metrics.context("the metrics endpoint failed")?;
        }
        flushed?;
        served.context("the HTTP server failed")
    }
}

fn redis_manager(settings: &Settings) -> anyhow::Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(settings.redis_url.expose()).map_err(|err| {
        anyhow::anyhow!("invalid redis_url {}: {:?}", settings.redis_url, err.kind())
    })?;
    let timeout = settings.redis.timeout();
    // No response timeout here: every call through this connection is already bounded by its
    // caller (`RedisReads`, `/readyz`, the generation follower), and a second timer per read
    // costs the cache-hit path a timer registration for nothing.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    // Lazy: the API must start (and keep accepting writes) while Redis is down.
    Ok(redis::aio::ConnectionManager::new_lazy_with_config(
        client, config,
    )?)
}

/// The router and the OpenAPI document, built from one list of handlers, with the API keys and
/// the request limits enforced around every route.
pub fn router_and_spec(
    state: AppState,
    auth: Auth,
    limits: Limits,
) -> (Router, utoipa::openapi::OpenApi) {
    let (routes, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(collections::list))
        .routes(routes!(collections::show))
        .routes(routes!(reads::get_many))
        .routes(routes!(
            reads::get_one,
            documents::put,
            documents::patch,
            documents::delete
        ))
        .routes(routes!(reads::fields))
        .routes(routes!(crate::routes::projections::projections))
        .routes(routes!(reads::near))
        .routes(routes!(reads::top))
        .routes(routes!(admin::invalidate::invalidate))
        .routes(routes!(admin::status::status))
        .routes(routes!(admin::audit::audit))
        .routes(routes!(admin::generations::generations))
        .routes(routes!(admin::dead_letters::list))
        .routes(routes!(
            admin::dead_letters::show,
            admin::dead_letters::drop
        ))
        .routes(routes!(admin::dead_letters::redrive))
        .split_for_parts();
    crate::openapi::document_guards(&mut spec);
    let json = Arc::new(
        spec.to_pretty_json()
            .expect("the OpenAPI document serialises"),
    );
    let router = routes
        .route("/openapi.json", get(move || openapi_json(json.clone())))
        .merge(crate::ui::routes())
        .fallback(
            |uri: axum::http::Uri| async move { ApiError::RouteNotFound(uri.path().to_owned()) },
        )
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // The one layer, inside the router because it needs the matched route pattern for its
        // metrics; it does every per-request job (see `edge`). Each layer added with
        // `Router::layer` boxes every route again and clones it per request.
        .layer(EdgeLayer::new(auth, limits));
    (router, spec)
}

/// The router, separate from any listener so tests can drive it directly.
pub fn router(state: AppState, auth: Auth, limits: Limits) -> Router {
    router_and_spec(state, auth, limits).0
}

async fn openapi_json(json: Arc<String>) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        (*json).clone(),
    )
}
