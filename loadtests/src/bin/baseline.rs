//! `cacheflow-baseline`: the baseline of issue 4. A bare axum server with one handler,
//! `GET /v1/places/{id}`, that does one Redis GET of `place:{id}` and returns the value (404 when
//! absent). No middleware, no metrics, no tracing: what the read API's cache-hit path is compared
//! with, on the same machine, the same Redis connection type (redis-rs `ConnectionManager`,
//! multiplexed), the same allocator (mimalloc) and the same load generator.
//!
//! ```text
//! BASELINE_ADDR=127.0.0.1:8090 REDIS_URL=redis://127.0.0.1:6379 cacheflow-baseline
//! ```
//! `BASELINE_KEY_PREFIX` is prepended to the key (the stack's `worker.key_prefix`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use redis::aio::ConnectionManager;

// The same allocator as cacheflow-api, so the comparison measures the API's work per request,
// not two allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct AppState {
    redis: ConnectionManager,
    key_prefix: Arc<str>,
}

async fn get_place(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let mut conn = state.redis.clone();
    let key = format!("{}place:{id}", state.key_prefix);
    match redis::cmd("GET")
        .arg(&key)
        .query_async::<Option<Vec<u8>>>(&mut conn)
        .await
    {
        Ok(Some(value)) => ([(header::CONTENT_TYPE, "application/json")], value).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/places/{id}", get(get_place))
        .with_state(state)
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::var("BASELINE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8090".into())
        .parse()
        .context("BASELINE_ADDR must be host:port")?;
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key_prefix: Arc<str> = std::env::var("BASELINE_KEY_PREFIX")
        .unwrap_or_default()
        .into();
    let client = redis::Client::open(redis_url.as_str()).context("invalid REDIS_URL")?;
    let redis = ConnectionManager::new(client)
        .await
        .context("cannot connect to Redis")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("cacheflow-baseline listening on {addr}");
    axum::serve(listener, router(AppState { redis, key_prefix }))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}
