//! Cache errors carry a kind, so the worker decides from a typed value, never from a message,
//! whether to retry a batch, dead-letter one event, or stop.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use ::redis::{ErrorKind as RedisErrorKind, RedisError, RetryMethod, ServerErrorKind};

use crate::pipeline::DocumentError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheErrorKind {
    /// Redis is unreachable, timed out, loading, busy or out of memory: retry later, do not ack.
    Unavailable,
    /// This one event can never be applied (unknown collection, a document the projections
    /// cannot use, `WRONGTYPE` at one of its keys): dead-letter it.
    Poison,
    /// Redis refuses us or answers in a way this build does not understand (bad credentials,
    /// ACL, an unexpected reply): retrying will not help; stop and let an operator look.
    Fatal,
}

impl fmt::Display for CacheErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheErrorKind::Unavailable => "cache unavailable",
            CacheErrorKind::Poison => "event rejected",
            CacheErrorKind::Fatal => "cache error",
        })
    }
}

#[derive(Debug, Clone)]
pub struct CacheError {
    kind: CacheErrorKind,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl CacheError {
    pub fn new(kind: CacheErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn kind(&self) -> CacheErrorKind {
        self.kind
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == CacheErrorKind::Unavailable
    }

    pub fn unknown_collection(collection: &str) -> Self {
        Self::new(
            CacheErrorKind::Poison,
            format!("collection `{collection}` is not in the pipeline"),
        )
    }

    pub fn timeout(what: &str, after: std::time::Duration) -> Self {
        Self::new(
            CacheErrorKind::Unavailable,
            format!("{what} timed out after {after:?}"),
        )
    }

    /// A Redis error for a whole call (connecting, a pipeline that did not come back).
    pub(crate) fn from_redis(context: &str, err: RedisError) -> Self {
        let kind = if is_transient(&err) {
            CacheErrorKind::Unavailable
        } else {
            CacheErrorKind::Fatal
        };
        Self::new(kind, format!("{context}: {err}")).with_source(err)
    }

    /// A Redis error for one event's script call. `WRONGTYPE` means another writer put a
    /// different type at one of this entity's keys: retrying would block the stream forever, so
    /// the event is poison. Any other refusal (a script error) would hit every event alike, and
    /// dead-lettering the whole stream is worse than stopping, so it is fatal.
    pub(crate) fn from_redis_for_event(err: RedisError) -> Self {
        let kind = if is_transient(&err) {
            CacheErrorKind::Unavailable
        } else if err.code() == Some("WRONGTYPE") {
            // No typed kind exists for WRONGTYPE in redis-rs; the code token is compared.
            CacheErrorKind::Poison
        } else {
            CacheErrorKind::Fatal
        };
        Self::new(kind, format!("redis refused the write: {err}")).with_source(err)
    }
}

impl From<DocumentError> for CacheError {
    fn from(err: DocumentError) -> Self {
        Self::new(CacheErrorKind::Poison, format!("document rejected: {err}")).with_source(err)
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl StdError for CacheError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// Transient = the same call can succeed later without anyone changing anything.
fn is_transient(err: &RedisError) -> bool {
    if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
        return true;
    }
    match err.kind() {
        // redis-rs has no typed kinds for these two server codes, so the code token (not the
        // message) is compared: BUSY = a script runs longer than busy-reply-threshold, OOM =
        // maxmemory reached with nothing evictable. Both clear up on their own.
        RedisErrorKind::Extension => matches!(err.code(), Some("BUSY" | "OOM")),
        RedisErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::ReadOnly,
        ) => true,
        _ => matches!(
            err.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
                | RetryMethod::RetryImmediately
                | RetryMethod::WaitAndRetry
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn classifies_redis_errors_by_kind() {
        let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(CacheError::from_redis("apply", refused.clone()).is_retryable());
        assert!(CacheError::from_redis_for_event(refused).is_retryable());
        let timeout = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(CacheError::from_redis("apply", timeout).is_retryable());

        let busy = ::redis::make_extension_error("BUSY".into(), Some("script".into()));
        assert!(CacheError::from_redis_for_event(busy).is_retryable());
        let wrongtype = ::redis::make_extension_error("WRONGTYPE".into(), None);
        let err = CacheError::from_redis_for_event(wrongtype.clone());
        assert_eq!(err.kind(), CacheErrorKind::Poison);
        assert_eq!(
            CacheError::from_redis("apply", wrongtype).kind(),
            CacheErrorKind::Fatal
        );
        let script_error =
            ::redis::make_extension_error("ERR".into(), Some("user_script:1".into()));
        assert_eq!(
            CacheError::from_redis_for_event(script_error).kind(),
            CacheErrorKind::Fatal
        );
    }

    #[test]
    fn document_errors_are_poison_and_name_the_field() {
        let err = CacheError::from(DocumentError::new("rating", "must be of type number"));
        assert_eq!(err.kind(), CacheErrorKind::Poison);
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("`rating`"), "{err}");
        assert!(err.source().is_some());
    }
}
