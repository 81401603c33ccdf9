//! `GET /v1/admin/audit`: the most recent consistency audit (an operator's `verify`, or a
//! worker's sampled background audit), as kept in Redis at `<key prefix>cacheflow:audit:last`
//! (`cacheflow_shared::cache::status`).

use axum::extract::State;
use axum::Json;
use cacheflow_shared::cache::status::audit_last_key;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::routes::health::probe;
use crate::state::AppState;

use super::AdminEnabled;

#[derive(Serialize, ToSchema)]
pub struct AuditResponse {
    /// The last audit summary, `null` before the first audit:
    /// `{ source: "verify" | "background", finished_at, checked, drifted, inconsistency_rate,
    /// collections: { <name>: { checked, missing, stale, orphaned, wrong_index, drifted_ids } } }`.
    #[schema(value_type = Option<Object>)]
    last: Option<Value>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    responses(
        (status = 200, description = "The last audit, or `null` before the first", body = AuditResponse),
        (status = 404, description = "The admin routes are disabled (`admin_disabled`)", body = ErrorBody),
        (status = 503, description = "Redis is unavailable; retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn audit(
    _: AdminEnabled,
    State(state): State<AppState>,
) -> Result<Json<AuditResponse>, ApiError> {
    let key = audit_last_key(&state.pipeline_names().key_prefix);
    let mut conn = state.redis();
    let read = probe(state.dependency_timeout(), async {
        redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(|err| err.to_string())
    });
    let stored = read.await.map_err(|reason| {
        tracing::warn!(%reason, "cannot read the last audit: redis unavailable");
        ApiError::CacheUnavailable
    })?;
    // Written by this project's own code; a value that does not parse is shown as absent and
    // logged, rather than failing the route.
    let last = stored.and_then(|json| match serde_json::from_str(&json) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(%key, error = %err, "the last audit record is not JSON; ignored");
            None
        }
    });
    Ok(Json(AuditResponse { last }))
}
