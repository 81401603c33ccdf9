//! Request bodies are read whole, up to `limits.max_body_bytes`, before any check can answer.
//!
//! Why: when an answer goes out while the request's body is still unread and not yet arrived
//! (a `404`, a `412`, a `415`, a `401` found from the head alone), hyper gives up on the
//! connection after the answer although the answer said nothing about closing it. A client that
//! reuses the connection then fails its next request (`broken pipe` while writing it, or an
//! incomplete message), and one still writing the rejected body may not see the answer at all.
//! Reading the body first keeps the connection usable and every answer readable. A body over
//! the limit is not read further: its `413` says `Connection: close`, so no client reuses it.
//!
//! Requests without a body (every `GET`) pass through untouched.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// How long an answer given without the handler (`401`, `403`, a shed `503`) waits for the
/// rest of the request's body before closing the connection instead.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The body of `request` read whole (at most `limit` bytes), the request rebuilt around it; or
/// the answer to give instead (`413` over the limit, `400` when the client stopped sending),
/// which closes the connection.
pub async fn buffered(request: Request, limit: usize) -> Result<Request, Response> {
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    match read_capped(body, &parts.headers, limit).await {
        Ok(bytes) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Err(err) => Err(closing(err.into_response())),
    }
}

/// `response`, given without reading `body`: the body is read and dropped first (up to `limit`
/// bytes, for at most [`DRAIN_TIMEOUT`]); if it could not be, the response closes the connection.
pub async fn answer_unread(body: Body, limit: usize, response: Response) -> Response {
    if body.is_end_stream() {
        return response;
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, axum::body::to_bytes(body, limit)).await;
    match drained {
        Ok(Ok(_)) => response,
        _ => closing(response),
    }
}

/// The whole body, or `413` `payload_too_large` when it is (or says it is) longer than `limit`.
/// A declared length over the limit is refused before reading anything.
async fn read_capped(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        if over_limit(&err) {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::InvalidBody(format!("cannot read the request body: {err}"))
        }
    })
}

/// Whether reading a body failed because it is longer than the limit.
fn over_limit(err: &axum::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
