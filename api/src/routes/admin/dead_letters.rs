//! `/v1/admin/dead-letters`: the events the worker could not apply, as it keeps them in the event
//! stream (`<subject prefix>.dlq.<collection>.<original stream sequence>`, the original payload,
//! `Cacheflow-Dlq-*` headers; docs/WORKER.md "Dead letters"). A dead letter is named by its own
//! stream sequence. List (oldest first), show (with the event), redrive (republish the event on
//! its original subject, then delete the dead letter) and drop (delete it).

use std::collections::HashMap;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::ErrorCode;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use cacheflow_shared::event::{Event, Op};
use cacheflow_shared::events::dlq;
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::PathParams;
use crate::openapi::ErrorBody;
use crate::state::{AppState, PipelineNames};

use super::AdminEnabled;

/// One dead letter.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    /// The dead letter's own stream sequence: its name in these routes.
    seq: u64,
    collection: String,
    /// `null` when the payload could not be decoded (also for `version` and `op`).
    id: Option<String>,
    version: Option<u64>,
    #[schema(value_type = Option<String>, example = "upsert")]
    op: Option<Op>,
    reason: String,
    original_subject: String,
    original_seq: u64,
    /// When the worker dead-lettered it (RFC 3339).
    dead_lettered_at: String,
    /// Whether it was parked behind an earlier dead letter of the same entity.
    parked: bool,
    /// The event JSON (show only; `null` when the payload is not JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    event: Option<Option<Value>>,
    /// The payload, base64, when it is not JSON (show only).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Oldest first.
    items: Vec<DeadLetter>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Redriven {
    seq: u64,
    redriven: bool,
}

#[utoipa::path(
    get,
    path = "/v1/admin/dead-letters",
    tag = "admin",
    params(
        ("collection" = Option<String>, Query, description = "Only this collection's dead letters"),
        ("limit" = Option<usize>, Query, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "Dead letters, oldest first", body = DeadLetterPage),
        (status = 400, description = "A bad `limit` or `collection` (`invalid_query`), or a cursor this API did not return (`invalid_cursor`)", body = ErrorBody),
        (status = 404, description = "The admin routes are disabled (`admin_disabled`)", body = ErrorBody),
        (status = 503, description = "NATS is unavailable (`stream_unavailable`)", body = ErrorBody),
    )
)]
pub async fn list(
    _: AdminEnabled,
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    // The listing's bounds: 1 to 1000, 100 when absent.
    let limit = crate::routes::listing::page_limit(query.get("limit").map(String::as_str))?;
    let collection = query.get("collection").map(String::as_str);
    if let Some(name) =
        collection.filter(|name| state.collection(name).is_none() && *name != "unknown")
    {
        return Err(ApiError::InvalidQuery(format!(
            "`collection` `{name}` is not a collection of the pipeline"
        )));
    }
    let mut next = match query.get("cursor") {
        None => 1,
        Some(cursor) => cursor
            .parse::<u64>()
            .ok()
            .and_then(|seq| seq.checked_add(1))
            .ok_or_else(|| {
                ApiError::InvalidCursor(format!(
                    "`cursor` `{cursor}` is not one this API returned; start again without it"
                ))
            })?,
    };
    let names = state.pipeline_names();
    let stream = stream(names).await?;
    let filter = dlq::filter(&names.subject_prefix, collection);
    let mut items = Vec::new();
    // One more than asked tells whether a next page exists.
    while items.len() <= limit {
        let message = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(filter.clone())
            .send()
            .await;
        let message = match message {
            Ok(message) => message,
            Err(err) if is_absent(err.kind()) => break,
            Err(err) => return Err(unavailable(&err)),
        };
        next = message.sequence + 1;
        if let Some(dead) = describe(names, &message, false) {
            items.push(dead);
        }
    }
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|dead| dead.seq.to_string())
    } else {
        None
    };
    Ok(Json(DeadLetterPage { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/v1/admin/dead-letters/{seq}",
    tag = "admin",
    params(("seq" = u64, Path, description = "The dead letter's stream sequence")),
    responses(
        (status = 200, description = "The dead letter with its event", body = DeadLetter),
        (status = 404, description = "No such dead letter (`dead_letter_not_found`), or the admin routes are disabled", body = ErrorBody),
        (status = 503, description = "NATS is unavailable (`stream_unavailable`)", body = ErrorBody),
    )
)]
pub async fn show(
    _: AdminEnabled,
    State(state): State<AppState>,
    PathParams(seq): PathParams<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    let (_, message) = find(&state, &seq).await?;
    describe(state.pipeline_names(), &message, true)
        .map(Json)
        .ok_or(ApiError::Internal)
}

#[utoipa::path(
    post,
    path = "/v1/admin/dead-letters/{seq}/redrive",
    tag = "admin",
    params(("seq" = u64, Path, description = "The dead letter's stream sequence")),
    responses(
        (status = 200, description = "Republished on its original subject for the worker; the dead letter is deleted", body = Redriven),
        (status = 404, description = "No such dead letter (`dead_letter_not_found`), or the admin routes are disabled", body = ErrorBody),
        (status = 409, description = "A newer event of the entity is in the stream (`dead_letter_superseded`): republishing would let the stream's per-subject limit discard it; drop this one", body = ErrorBody),
        (status = 503, description = "NATS is unavailable (`stream_unavailable`)", body = ErrorBody),
    )
)]
pub async fn redrive(
    _: AdminEnabled,
    State(state): State<AppState>,
    PathParams(seq): PathParams<String>,
) -> Result<Json<Redriven>, ApiError> {
    let (stream, message) = find(&state, &seq).await?;
    let original_subject = header(&message.headers, dlq::SUBJECT);
    let original_seq = header(&message.headers, dlq::STREAM_SEQ)
        .parse::<u64>()
        .unwrap_or(0);
    // The stream keeps `max_msgs_per_subject` events per entity subject (1 by default): a newer
    // event still waiting there would be pushed out by this older one.
    match stream
        .get_last_raw_message_by_subject(&original_subject)
        .await
    {
        Ok(last) if last.sequence > original_seq => {
            return Err(ApiError::DeadLetterSuperseded {
                newer: last.sequence,
            })
        }
        Ok(_) => {}
        Err(err) if is_absent(err.kind()) => {}
        Err(err) => return Err(unavailable(&err)),
    }
    let names = state.pipeline_names();
    let mut headers = HeaderMap::new();
    // Not the original `Nats-Msg-Id`: the duplicate window would drop the republished event.
    // This one makes a repeated redrive of the same dead letter a no-op within the window.
    headers.insert(
        NATS_MESSAGE_ID,
        format!("redrive:{}:{}", names.stream, message.sequence).as_str(),
    );
    names
        .jetstream
        .publish_with_headers(original_subject, headers, message.payload.clone())
        .await
        .map_err(|err| unavailable(&err))?
        .await
        .map_err(|err| unavailable(&err))?;
    delete(&stream, message.sequence).await?;
    Ok(Json(Redriven {
        seq: message.sequence,
        redriven: true,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/admin/dead-letters/{seq}",
    tag = "admin",
    params(("seq" = u64, Path, description = "The dead letter's stream sequence")),
    responses(
        (status = 204, description = "Dropped"),
        (status = 404, description = "No such dead letter (`dead_letter_not_found`), or the admin routes are disabled", body = ErrorBody),
        (status = 503, description = "NATS is unavailable (`stream_unavailable`)", body = ErrorBody),
    )
)]
pub async fn drop(
    _: AdminEnabled,
    State(state): State<AppState>,
    PathParams(seq): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let (stream, message) = find(&state, &seq).await?;
    delete(&stream, message.sequence).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stream(names: &PipelineNames) -> Result<Stream<()>, ApiError> {
    names
        .jetstream
        .get_stream_no_info(&names.stream)
        .await
        .map_err(|err| unavailable(&err))
}

/// The dead letter at stream sequence `seq`; any other message (an event) is not one.
async fn find(state: &AppState, seq: &str) -> Result<(Stream<()>, StreamMessage), ApiError> {
    let names = state.pipeline_names();
    let seq: u64 = seq.parse().map_err(|_| {
        ApiError::InvalidQuery(format!(
            "`{seq}` is not a stream sequence (a positive integer)"
        ))
    })?;
    let stream = stream(names).await?;
    let message = match stream.get_raw_message(seq).await {
        Ok(message) => message,
        Err(err) if is_absent(err.kind()) => return Err(ApiError::DeadLetterNotFound(seq)),
        Err(err) => return Err(unavailable(&err)),
    };
    if dead_letter_collection(&names.subject_prefix, &message.subject).is_none() {
        return Err(ApiError::DeadLetterNotFound(seq));
    }
    Ok((stream, message))
}

async fn delete(stream: &Stream<()>, seq: u64) -> Result<(), ApiError> {
    match stream.delete_message(seq).await {
        Ok(_) => Ok(()),
        // Deleted meanwhile (another operator): what was asked holds.
        Err(err) => match err.kind() {
            async_nats::jetstream::stream::DeleteMessageErrorKind::JetStream(js)
                if js.error_code() == ErrorCode::SEQUENCE_NOT_FOUND =>
            {
                Ok(())
            }
            _ => Err(unavailable(&err)),
        },
    }
}

/// `<prefix>.dlq.<collection>.<n>` → `collection`; `None` for any other subject (an event of a
/// collection named `dlq` has one token less).
fn dead_letter_collection<'a>(subject_prefix: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject
        .strip_prefix(subject_prefix)?
        .strip_prefix(".dlq.")?;
    let (collection, n) = rest.split_once('.')?;
    (n.parse::<u64>().is_ok() && !collection.is_empty()).then_some(collection)
}

fn describe(names: &PipelineNames, message: &StreamMessage, full: bool) -> Option<DeadLetter> {
    let collection = dead_letter_collection(&names.subject_prefix, &message.subject)?;
    let event = Event::decode(&message.payload).ok();
    let (event_json, payload_base64) = if full {
        match serde_json::from_slice::<Value>(&message.payload) {
            Ok(json) => (Some(Some(json)), None),
            Err(_) => (
                Some(None),
                Some(base64::engine::general_purpose::STANDARD.encode(&message.payload)),
            ),
        }
    } else {
        (None, None)
    };
    Some(DeadLetter {
        seq: message.sequence,
        collection: collection.to_owned(),
        id: event.as_ref().map(|e| e.id.clone()),
        version: event.as_ref().map(|e| e.version),
        op: event.as_ref().map(|e| e.op),
        reason: header(&message.headers, dlq::REASON),
        original_subject: header(&message.headers, dlq::SUBJECT),
        original_seq: header(&message.headers, dlq::STREAM_SEQ)
            .parse()
            .unwrap_or(0),
        dead_lettered_at: message.time.format(&Rfc3339).unwrap_or_default(),
        parked: false,
        event: event_json,
        payload_base64,
    })
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default()
}

/// No such message, or no stream yet (nothing was ever published): nothing to show.
fn is_absent(kind: LastRawMessageErrorKind) -> bool {
    match kind {
        LastRawMessageErrorKind::NoMessageFound => true,
        LastRawMessageErrorKind::JetStream(err) => {
            err.error_code() == ErrorCode::STREAM_NOT_FOUND
                || err.error_code() == ErrorCode::NO_MESSAGE_FOUND
        }
        _ => false,
    }
}

fn unavailable(err: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %err, "the event stream cannot be read for the dead letters");
    ApiError::StreamUnavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_letter_subjects_name_a_collection() {
        assert_eq!(
            dead_letter_collection("cf", "cf.dlq.places.40"),
            Some("places")
        );
        assert_eq!(dead_letter_collection("cf", "cf.dlq.p1"), None);
        assert_eq!(dead_letter_collection("cf", "cf.places.p1"), None);
        assert_eq!(dead_letter_collection("cf", "cf.dlq.places.x"), None);
        assert_eq!(dead_letter_collection("cfx", "cf.dlq.places.4"), None);
    }
}
