//! `GET /v1/admin/status`: the pipeline at a glance, for an operator asking "is it flowing?":
//! whether the store, Redis and NATS answer, the outbox backlog (events the relay has not had
//! acknowledged), the worker consumer's backlog, each collection's last end-to-end lag measured by
//! the heartbeat (`cacheflow_shared::cache::status`), and the dead letters kept in the stream.
//! Every part is read at once, each within the dependency timeout; a part that cannot be read is
//! `null` (or `{}` for the lags), never a failed request: the status is most useful when
//! something is down.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use cacheflow_shared::cache::status::heartbeat_key;
use futures::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::routes::health::{dependencies, probe, Dependencies};
use crate::state::{AppState, PipelineNames};

use super::AdminEnabled;

#[derive(Serialize, ToSchema)]
pub struct StatusResponse {
    dependencies: DependencyStates,
    outbox: OutboxStatus,
    /// `null` when NATS or the consumer cannot be read (e.g. no worker started it yet).
    consumer: Option<ConsumerStatus>,
    sync_lag: SyncLag,
    /// Dead letters in the stream (`<subject prefix>.dlq.>`); `null` when NATS cannot be read.
    dead_letters: Option<u64>,
    /// Entities whose events are parked behind a dead letter; `null` when unknown.
    parked_entities: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct DependencyStates {
    store: DependencyState,
    redis: DependencyState,
    nats: DependencyState,
}

#[derive(Serialize, ToSchema)]
struct DependencyState {
    ok: bool,
    /// Why not, when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Result<(), String>> for DependencyState {
    fn from(result: Result<(), String>) -> Self {
        Self {
            ok: result.is_ok(),
            error: result.err(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct OutboxStatus {
    /// Events not yet acknowledged by JetStream (or acknowledged and about to be removed);
    /// `null` when the store cannot be read.
    pending: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct ConsumerStatus {
    name: String,
    /// Messages not yet delivered to any worker.
    pending: u64,
    /// Delivered, not yet acknowledged.
    ack_pending: u64,
    /// Delivered more than once.
    redelivered: u64,
}

#[derive(Serialize, ToSchema, Default)]
struct SyncLag {
    /// Per collection, its last heartbeat; a collection without one yet is left out.
    collections: BTreeMap<String, Lag>,
}

#[derive(Serialize, ToSchema)]
struct Lag {
    /// Milliseconds from the store commit of the heartbeat write to its apply in Redis.
    last_ms: f64,
    /// When it was measured (RFC 3339).
    at: String,
}

#[utoipa::path(
    get,
    path = "/v1/admin/status",
    tag = "admin",
    responses(
        (status = 200, description = "The pipeline's state; unreadable parts are `null`", body = StatusResponse),
        (status = 404, description = "The admin routes are disabled (`admin_disabled`)", body = ErrorBody),
    )
)]
pub async fn status(
    _: AdminEnabled,
    State(state): State<AppState>,
) -> Result<Json<StatusResponse>, ApiError> {
    let timeout = state.dependency_timeout();
    let names = state.pipeline_names();
    let pending = probe(timeout, async {
        state
            .store()
            .pending_count()
            .await
            .map_err(|e| e.to_string())
    });
    let (Dependencies { store, redis, nats }, pending, consumer, lags, dead_letters) = tokio::join!(
        dependencies(&state),
        pending,
        consumer(names, timeout),
        sync_lag(&state, timeout),
        dead_letters(names, timeout),
    );
    Ok(Json(StatusResponse {
        dependencies: DependencyStates {
            store: store.into(),
            redis: redis.into(),
            nats: nats.into(),
        },
        outbox: OutboxStatus {
            pending: pending.ok(),
        },
        consumer,
        sync_lag: lags,
        dead_letters,
        parked_entities: None,
    }))
}

async fn consumer(names: &PipelineNames, timeout: Duration) -> Option<ConsumerStatus> {
    let info = probe(timeout, async {
        let stream = names
            .jetstream
            .get_stream_no_info(&names.stream)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .consumer_info(&names.consumer)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .inspect_err(|reason| tracing::debug!(%reason, "consumer info unavailable"))
    .ok()?;
    Some(ConsumerStatus {
        name: info.name,
        pending: info.num_pending,
        ack_pending: info.num_ack_pending as u64,
        redelivered: info.num_redelivered as u64,
    })
}

/// Each collection's heartbeat hash, in one round trip.
async fn sync_lag(state: &AppState, timeout: Duration) -> SyncLag {
    let collections = state.collection_names();
    let key_prefix = &state.pipeline_names().key_prefix;
    let mut pipe = redis::pipe();
    for collection in &collections {
        pipe.cmd("HGETALL")
            .arg(heartbeat_key(key_prefix, collection));
    }
    let mut conn = state.redis();
    let read = probe(timeout, async {
        pipe.query_async::<Vec<HashMap<String, String>>>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let Ok(hashes) = read else {
        return SyncLag::default();
    };
    let collections = collections
        .into_iter()
        .zip(hashes)
        .filter_map(|(collection, hash)| {
            let last_ms = hash.get("last_ms")?.parse().ok()?;
            let at = hash.get("at")?.clone();
            Some((collection.to_owned(), Lag { last_ms, at }))
        })
        .collect();
    SyncLag { collections }
}

/// Messages on `<subject prefix>.dlq.>` (one subject per dead letter).
async fn dead_letters(names: &PipelineNames, timeout: Duration) -> Option<u64> {
    probe(timeout, async {
        let stream = names
            .jetstream
            .get_stream(&names.stream)
            .await
            .map_err(|e| e.to_string())?;
        let filter = format!("{}.dlq.>", names.subject_prefix);
        let mut subjects = stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| e.to_string())?;
        let mut count = 0u64;
        while let Some(subject) = subjects.next().await {
            let (_, messages) = subject.map_err(|e| e.to_string())?;
            count += messages as u64;
        }
        Ok(count)
    })
    .await
    .inspect_err(|reason| tracing::debug!(%reason, "dead letters not counted"))
    .ok()
}
