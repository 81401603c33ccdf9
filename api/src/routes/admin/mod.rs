//! Operator routes under `/v1/admin/`. They change or reveal the pipeline's internals, so they
//! are off unless `ADMIN_ENABLED` is set; while off, each answers 404 `admin_disabled` before
//! reading its request or touching Redis. One file per group of routes:
//!
//! - [`invalidate`]: `POST /v1/admin/invalidate`, cache invalidation.
//! - [`status`]: `GET /v1/admin/status`, the pipeline's dependencies, backlog and freshness.
//! - [`audit`]: `GET /v1/admin/audit`, the last consistency audit.
//! - [`dead_letters`]: `/v1/admin/dead-letters`, list, show, redrive and drop dead letters.
//! - [`generations`]: `GET /v1/admin/generations`, each collection's cache generations.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;

pub mod audit;
pub mod dead_letters;
pub mod generations;
pub mod invalidate;
pub mod status;

/// Rejects the request with `admin_disabled` unless the admin routes are enabled. Every admin
/// handler takes it first: extractors run in order, so nothing else of the request is read.
pub struct AdminEnabled;

impl FromRequestParts<AppState> for AdminEnabled {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.admin_enabled() {
            Ok(Self)
        } else {
            Err(ApiError::AdminDisabled)
        }
    }
}
