//! `GET /v1/{collection}?limit=&cursor=` without `ids`: the collection's live documents in id
//! order, a page at a time, read from the store (the system of record, so a page never misses a
//! document the cache has not seen yet). The cursor is the last id of the previous page,
//! hex-encoded: opaque to clients, stable across writes (a document created behind the cursor is
//! simply not on a later page), and checked like any id when it comes back.

use std::collections::HashMap;

use axum::Json;
use cacheflow_shared::document::Document;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::check_ids;
use crate::state::AppState;

/// Documents per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page.
pub const MAX_PAGE: usize = 1000;

/// One page of a collection.
#[derive(Serialize, ToSchema)]
pub struct Page {
    /// Live documents in id order.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Document>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Answers a listing for `collection` (already known to exist).
pub async fn list(
    state: &AppState,
    collection: &str,
    query: &HashMap<String, String>,
) -> Result<Json<Page>, ApiError> {
    let limit = page_limit(query.get("limit").map(String::as_str))?;
    let after = query
        .get("cursor")
        .map(|cursor| decode_cursor(cursor))
        .transpose()?;
    // One more than asked tells whether a next page exists without a second query.
    let mut rows = state
        .store()
        .scan(collection, after.as_deref(), limit + 1)
        .await
        .map_err(|err| ApiError::from_shared_store(&err, collection, ""))?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .and_then(|row| row.document.get("id"))
            .and_then(|id| id.as_str())
            .map(encode_cursor)
    } else {
        None
    };
    let items = rows.into_iter().map(|row| row.document).collect();
    Ok(Json(Page { items, next_cursor }))
}

/// `limit`: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_limit(text: Option<&str>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_PAGE),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "`limit` must be an integer from 1 to {MAX_PAGE}, got `{text}`"
                ))
            }),
    }
}

fn encode_cursor(last_id: &str) -> String {
    hex::encode(last_id)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::InvalidCursor(format!(
            "`cursor` `{cursor}` is not one this API returned; start again without it"
        ))
    };
    let id = hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    check_ids([id.as_str()]).map_err(|_| invalid())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let cursor = encode_cursor("p-17");
        assert_eq!(decode_cursor(&cursor).unwrap(), "p-17");
        for bad in ["zz", "", "ff", &hex::encode("a/b")] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code(),
                "invalid_cursor",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "x", "-1"] {
            assert_eq!(page_limit(Some(bad)).unwrap_err().code(), "invalid_query");
        }
    }
}
