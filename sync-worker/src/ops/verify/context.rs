//! What one collection's audit works with, and its Redis and store calls: each retried on
//! transient failures (the writer's connection bounds every call with its response timeout).

use std::sync::Arc;

use anyhow::Context as _;
use cacheflow_shared::cache::{read_key_template, CacheError, CacheErrorKind, KeyLayout};
use cacheflow_shared::pipeline::{Collection, KeyTemplate};
use cacheflow_shared::store::{DocumentStore, Versioned};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, RetryMethod, Value};

use super::super::{retry_transient, Ops};

pub(super) struct Ctx<'a> {
    pub ops: &'a Ops,
    pub store: &'a Arc<dyn DocumentStore>,
    pub spec: &'a Collection,
    /// The audited generation's layout: `<key_prefix><generation>`.
    pub layout: KeyLayout,
    pub generation: String,
    /// The key an entity is read from, if the collection has one.
    pub read_key: Option<&'a KeyTemplate>,
    /// Entities per round trip, and `COUNT` of each `SCAN` step.
    pub batch: usize,
}

impl<'a> Ctx<'a> {
    pub fn new(
        ops: &'a Ops,
        store: &'a Arc<dyn DocumentStore>,
        collection: &str,
        generation: &str,
        batch: usize,
    ) -> anyhow::Result<Self> {
        let spec = ops
            .pipeline
            .collection(collection)
            .with_context(|| format!("collection `{collection}` is not in the pipeline"))?;
        Ok(Self {
            ops,
            store,
            spec,
            layout: KeyLayout::new(format!("{}{generation}", ops.writer.key_prefix())),
            generation: generation.to_owned(),
            read_key: read_key_template(spec),
            batch: batch.max(1),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Stops a pass when shutdown was requested: a partial audit is not recorded.
    pub fn check_stopped(&self) -> anyhow::Result<()> {
        if self.ops.stopped() {
            anyhow::bail!(
                "interrupted: the audit of `{}` is incomplete and was not recorded",
                self.name()
            );
        }
        Ok(())
    }

    /// Keys under the audited prefix that belong to the bookkeeping, never to a projection
    /// (metas, generation pointers, checkpoints, audits), and, when the empty generation is
    /// audited, the other generations' keys: a template such as `{category}` renders to a pattern
    /// matching them too.
    pub fn is_bookkeeping(&self, key: &str) -> bool {
        let Some(rest) = key.strip_prefix(self.layout.prefix()) else {
            return true;
        };
        rest.starts_with("cacheflow:") || (self.generation.is_empty() && rest.starts_with("gen:"))
    }

    /// One command, retried while Redis is unavailable.
    pub async fn command<T: FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &Cmd,
    ) -> anyhow::Result<T> {
        retry_transient(&self.ops.settings, what, || {
            let mut conn = self.ops.writer.connection();
            async move {
                cmd.query_async(&mut conn)
                    .await
                    .map_err(|err| cache_error(what, &err))
            }
        })
        .await
    }

    /// A pipeline (one round trip), one result per command: a command Redis refuses (a key of
    /// another type) is that command's error, while a transient refusal retries the whole
    /// pipeline.
    pub async fn each(
        &self,
        what: &'static str,
        pipe: &Pipeline,
    ) -> anyhow::Result<Vec<RedisResult<Value>>> {
        if pipe.cmd_iter().next().is_none() {
            return Ok(Vec::new());
        }
        retry_transient(&self.ops.settings, what, || {
            let mut conn = self.ops.writer.connection();
            async move {
                let results: Vec<RedisResult<Value>> = pipe
                    .clone()
                    .ignore_errors()
                    .query_async(&mut conn)
                    .await
                    .map_err(|err| cache_error(what, &err))?;
                match results
                    .iter()
                    .find_map(|r| r.as_ref().err().filter(|e| transient(e)))
                {
                    Some(err) => Err(cache_error(what, err)),
                    None => Ok(results),
                }
            }
        })
        .await
    }

    /// The live documents of `ids`, in order (`None` for absent or deleted).
    pub async fn live(&self, ids: &[String]) -> anyhow::Result<Vec<Option<Versioned>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        retry_transient(&self.ops.settings, "reading the store", || {
            self.store.get_many(self.name(), ids)
        })
        .await
    }
}

/// A Redis error as the commands' retry understands it.
pub(super) fn cache_error(what: &str, err: &RedisError) -> CacheError {
    let kind = if transient(err) {
        CacheErrorKind::Unavailable
    } else {
        CacheErrorKind::Fatal
    };
    CacheError::new(kind, format!("{what}: {err}"))
}

/// Whether the same read can succeed later: connection trouble, a timeout, or Redis loading,
/// busy or failing over.
fn transient(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
                | RetryMethod::RetryImmediately
                | RetryMethod::WaitAndRetry
        )
}
