//! `GET /healthz` (the process is alive) and `GET /readyz` (store, Redis and NATS reachable).

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when every dependency answers, 503 otherwise; the body names each dependency's state so an
/// operator sees at once which one is down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Store, Redis and NATS answer"),
        (status = 503, description = "A dependency is down; the body names it"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let Dependencies { store, redis, nats } = dependencies(&state).await;
    let ready = store.is_ok() && redis.is_ok() && nats.is_ok();
    let show = |r: Result<(), String>| match r {
        Ok(()) => json!({ "status": "up" }),
        Err(error) => json!({ "status": "down", "error": error }),
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": { "store": show(store), "redis": show(redis), "nats": show(nats) },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Whether each dependency answers (`Err` says why not), probed at once.
pub(crate) struct Dependencies {
    pub store: Result<(), String>,
    pub redis: Result<(), String>,
    pub nats: Result<(), String>,
}

pub(crate) async fn dependencies(state: &AppState) -> Dependencies {
    let timeout = state.dependency_timeout();
    let store = probe(timeout, async {
        state.store().ping().await.map_err(|e| e.to_string())
    });
    let redis = probe(timeout, async {
        let mut conn = state.redis();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    });
    let nats = async {
        match state.nats().connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(format!("connection {other}")),
        }
    };
    let (store, redis, nats) = tokio::join!(store, redis, nats);
    Dependencies { store, redis, nats }
}

/// Runs `check` within `timeout`; a late answer is an error naming the timeout.
pub(crate) async fn probe<T>(
    timeout: std::time::Duration,
    check: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
