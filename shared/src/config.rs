//! Typed, layered settings shared by both binaries: built-in defaults, then an optional TOML file,
//! then environment variables. Every error names the offending key and where it came from.
//!
//! Environment variables:
//! - the documented top-level names `STORE_URL`, `REDIS_URL`, `NATS_URL`, `API_ADDR`,
//!   `METRICS_ADDR`, `PIPELINE_CONFIG`, `ADMIN_ENABLED`, `API_KEYS`;
//! - any other key as `CACHEFLOW_<SECTION>__<KEY>`, e.g. `CACHEFLOW_STREAM__MAX_MSGS_PER_SUBJECT=5`;
//! - `CACHEFLOW_CONFIG`: the optional settings file (default `config/cacheflow.toml` when it exists);
//! - `CACHEFLOW_API_KEY` is a client's key (the load generator's), never read as a setting.
//!
//! URLs are [`SecretUrl`]s and passwords and tokens [`Secret`]s, so printing the settings never
//! prints a credential. `API_KEYS` holds hashes of the keys, never the keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::redact::{Secret, SecretUrl};
use crate::security::ApiKeys;

/// Which binary is loading the settings; only some defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub store_url: SecretUrl,
    pub redis_url: SecretUrl,
    pub nats_url: SecretUrl,
    pub api_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub pipeline_config: PathBuf,
    pub stream: StreamSettings,
    pub outbox: OutboxSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub nats: NatsSettings,
    pub log: LogSettings,
    /// Only the sync worker reads these; `#[serde(default)]` keeps older settings files valid.
    #[serde(default)]
    pub worker: WorkerSettings,
    pub reads: ReadSettings,
    /// `ADMIN_ENABLED`: serves the operator routes under `/v1/admin/` (invalidation). Off by
    /// default: they remove cache entries in bulk.
    #[serde(default)]
    pub admin_enabled: bool,
    /// `API_KEYS`: `role:<sha256 hex>` entries separated by commas, roles `reader`, `writer` and
    /// `admin`. Empty (the default): no keys, the API is open to anyone who reaches it, which is
    /// for local development only (the API warns at start-up).
    #[serde(default)]
    pub api_keys: ApiKeys,
    #[serde(default)]
    pub security: SecuritySettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub shutdown: ShutdownSettings,
}

/// How the API uses `API_KEYS`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Reads (`GET`/`HEAD` under `/v1/`) need a key too (any role). Off by default: writes and
    /// the admin routes always need one once `API_KEYS` is set.
    pub require_read_key: bool,
}

/// What one request may cost the API. Query sizes are capped by [`ReadSettings`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// A request not answered by then gets `503` `timeout`. Longer than `store.op_timeout_ms`,
    /// so that a slow store answers `store_unavailable` first.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are refused at once with `503` `overloaded` and
    /// `Retry-After`, rather than queued. `/healthz` and `/readyz` are not counted.
    pub max_concurrent_requests: usize,
    /// Largest request body; a larger one gets `413` `payload_too_large`.
    pub max_body_bytes: usize,
    /// Largest event the stream accepts: the NATS server's `max_payload` (1 MiB by default).
    /// A write whose event would be larger is refused before it is committed (`413`
    /// `event_too_large`, or `422` for a PATCH whose merged document grew too large): once
    /// committed, an event the stream refuses could never be published.
    pub max_event_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: 10_000,
            max_concurrent_requests: 1_024,
            max_body_bytes: 1024 * 1024,
            max_event_bytes: 1024 * 1024,
        }
    }
}

impl LimitSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Stopping on SIGTERM or Ctrl-C.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// From the signal to the exit, at most: the API's in-flight requests and outbox flush, the
    /// worker's batch in flight. Whatever is not finished by then is left for later (unpublished
    /// events stay in the outbox, unacked messages are redelivered), never lost.
    pub deadline_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            deadline_ms: 10_000,
        }
    }
}

impl ShutdownSettings {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// The JetStream stream every write is published to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    pub name: String,
    /// Subjects are `<subject_prefix>.<collection>.<id>`.
    pub subject_prefix: String,
    /// 1 (the default) makes the stream a compacted log: the latest event per entity.
    pub max_msgs_per_subject: i64,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a republished event.
    pub duplicate_window_secs: u64,
    /// 0 = keep events until they are superseded.
    pub max_age_secs: u64,
    pub replicas: usize,
}

/// The relay that publishes the outbox to JetStream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    pub batch_size: usize,
    /// The relay also wakes at once after each write; this is the fallback poll.
    pub poll_interval_ms: u64,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// How often the API writes a heartbeat of each collection through the outbox, which the
    /// worker turns into `cacheflow_heartbeat_lag_seconds` (the end-to-end lag while nobody
    /// writes). 0 turns it off.
    pub heartbeat_interval_ms: u64,
}

impl OutboxSettings {
    /// `None` when heartbeats are off.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        (self.heartbeat_interval_ms > 0).then(|| Duration::from_millis(self.heartbeat_interval_ms))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Deadline for one store operation.
    pub op_timeout_ms: u64,
    /// SQLite `PRAGMA synchronous`: `full` (the default: a committed write survives power loss)
    /// or `normal` (WAL-safe against crashes of the process, may lose the last commits on power loss).
    pub sqlite_synchronous: SqliteSynchronous,
    /// Read connections kept besides the single writer.
    pub sqlite_readers: usize,
    /// MongoDB database used when the URL names none.
    pub mongo_database: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Deadline for connecting and for one JetStream request (publish ack, stream info).
    pub timeout_ms: u64,
    /// A `.creds` file (JWT and NKey seed) to authenticate with. At most one of `creds_file`,
    /// `user` with `password`, and `token`.
    pub creds_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// PEM file of the CA that signed the server's certificate, when it is not a public one;
    /// setting it also makes TLS required. (`tls://` URLs require TLS as well.)
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients; both or neither.
    pub tls_client_cert: Option<PathBuf>,
    pub tls_client_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `RUST_LOG`-style filter; the `RUST_LOG` variable wins when set.
    pub filter: String,
    /// One JSON object per line instead of human-readable text.
    pub json: bool,
}

/// The sync worker: its durable JetStream consumer and how it writes Redis.
///
/// Dead letters go to `<stream.subject_prefix>.dlq.<collection>.<stream sequence>`: inside the
/// event stream (durable) and one token deeper than an event, which is how the worker tells them
/// apart (see docs/WORKER.md). So they are derived rather than configured: a configurable
/// subject could leave the stream or look like an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Durable name of the pull consumer. Every worker process binding the same name shares the
    /// load; a different name is an independent copy of the cache (e.g. another Redis).
    pub consumer: String,
    /// Most messages fetched, and applied in one Redis round trip, at a time.
    pub batch_size: usize,
    /// Batches one worker process works on at once: while Redis executes one, the worker
    /// fetches, decodes and plans the others. Memory: this many times `batch_size` messages.
    pub batches_in_flight: usize,
    /// How long one pull request waits for a first message. Bounds how long shutdown waits
    /// when the stream is idle; it adds no latency (a pull returns as soon as messages exist).
    pub fetch_wait_ms: u64,
    /// Messages delivered but not yet acked, across all workers; bounds memory and redelivery.
    pub max_ack_pending: i64,
    /// Unacked messages are redelivered after this long (e.g. when a worker died mid-batch).
    pub ack_wait_secs: u64,
    /// How long a deleted entity's tombstone (its last version) outlives it in Redis, so that a
    /// late, older upsert cannot resurrect it.
    pub tombstone_ttl_secs: u64,
    /// Prepended to every Redis key the worker writes, meta keys included (test isolation, and
    /// cache generations later). Empty by default.
    pub key_prefix: String,
    /// Backoff between retries of a failed Redis apply or NATS call (capped, jittered).
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// The stall watchdog: messages waiting on the consumer (or the consumer gone) while this
    /// worker received nothing for this long makes it re-create the consumer and its pulls,
    /// count `cacheflow_worker_stalls_total` and answer `/readyz` with 503 until messages flow.
    pub stall_after_secs: u64,
    /// The sampled background audit: every this many seconds one worker (a Redis lock picks it)
    /// compares `audit_sample` random live documents of each collection with Redis, like
    /// `verify --sample`, and records the result (`cacheflow:audit:last`, the drift and
    /// inconsistency gauges). 0 turns it off.
    pub audit_interval_secs: u64,
    /// Entities per collection each background audit checks.
    pub audit_sample: u64,
}

/// The API's read side. Reads use the same Redis key prefix as the workers (`worker.key_prefix`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadSettings {
    /// How long a miss for an absent entity is cached (a create replaces the marker at once).
    pub negative_ttl_ms: u64,
    /// Most ids in one batch read (`?ids=`).
    pub max_batch_ids: usize,
    /// Largest `limit` of a structure query.
    pub max_limit: usize,
    /// Largest `radius_m` of a nearby query.
    pub max_radius_m: f64,
    /// How often the API re-reads each collection's active cache generation
    /// (`cacheflow:gen:<collection>`), so it follows a rebuild's switch without a restart.
    pub generation_refresh_ms: u64,
    /// Bytes of documents the API keeps in its in-process near-cache (L1) in front of Redis;
    /// `0` turns it off.
    pub near_cache_bytes: u64,
    /// The longest an L1 entry is served without asking Redis again, whatever notices said
    /// (a lost notice costs at most this).
    pub near_cache_max_staleness_ms: u64,
}

impl Default for ReadSettings {
    fn default() -> Self {
        Self {
            negative_ttl_ms: 5_000,
            max_batch_ids: 1_000,
            max_limit: 1_000,
            max_radius_m: 100_000.0,
            generation_refresh_ms: 250,
            near_cache_bytes: 64 * 1024 * 1024,
            near_cache_max_staleness_ms: 1_000,
        }
    }
}

impl ReadSettings {
    pub fn negative_ttl(&self) -> Duration {
        Duration::from_millis(self.negative_ttl_ms)
    }

    pub fn generation_refresh(&self) -> Duration {
        Duration::from_millis(self.generation_refresh_ms)
    }

    pub fn near_cache_max_staleness(&self) -> Duration {
        Duration::from_millis(self.near_cache_max_staleness_ms)
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            consumer: "cacheflow-sync".into(),
            batch_size: 512,
            batches_in_flight: 4,
            fetch_wait_ms: 500,
            max_ack_pending: 4_096,
            ack_wait_secs: 30,
            tombstone_ttl_secs: 86_400,
            key_prefix: String::new(),
            retry_min_ms: 50,
            retry_max_ms: 5_000,
            stall_after_secs: 60,
            audit_interval_secs: 300,
            audit_sample: 1_000,
        }
    }
}

impl WorkerSettings {
    /// `None` when the background audit is off.
    pub fn audit_interval(&self) -> Option<Duration> {
        (self.audit_interval_secs > 0).then(|| Duration::from_secs(self.audit_interval_secs))
    }

    pub fn stall_after(&self) -> Duration {
        Duration::from_secs(self.stall_after_secs)
    }

    pub fn fetch_wait(&self) -> Duration {
        Duration::from_millis(self.fetch_wait_ms)
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }

    pub fn tombstone_ttl(&self) -> Duration {
        Duration::from_secs(self.tombstone_ttl_secs)
    }

    pub fn retry_min(&self) -> Duration {
        Duration::from_millis(self.retry_min_ms)
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// The documented top-level environment names.
pub const TOP_LEVEL_ENV: &[&str] = &[
    "STORE_URL",
    "REDIS_URL",
    "NATS_URL",
    "API_ADDR",
    "METRICS_ADDR",
    "PIPELINE_CONFIG",
    "ADMIN_ENABLED",
    "API_KEYS",
];
const ENV_PREFIX: &str = "CACHEFLOW_";
/// Names under [`ENV_PREFIX`] that are not settings of the servers, without the prefix:
/// `CACHEFLOW_CONFIG` names the settings file, and `CACHEFLOW_API_KEY` is the key a *client*
/// presents (the load generator, the seeding in `run-local.sh`), which the documented
/// protected start exports in the same shell as the servers. Every other `CACHEFLOW_*` name is
/// read as a setting, so a typo there still stops the start-up with an error naming it.
const NOT_SETTINGS_ENV: &[&str] = &["CONFIG", "API_KEY"];
const CONFIG_FILE_ENV: &str = "CACHEFLOW_CONFIG";
const DEFAULT_CONFIG_FILE: &str = "config/cacheflow.toml";

impl Settings {
    pub fn defaults(role: Role) -> Self {
        Self {
            store_url: SecretUrl::new("sqlite://data/cacheflow.db"),
            redis_url: SecretUrl::new("redis://127.0.0.1:6379"),
            nats_url: SecretUrl::new("nats://127.0.0.1:4222"),
            api_addr: ([127, 0, 0, 1], 8080).into(),
            metrics_addr: match role {
                Role::Api => ([127, 0, 0, 1], 9464).into(),
                Role::Worker => ([127, 0, 0, 1], 9465).into(),
            },
            pipeline_config: PathBuf::from("config/pipeline.toml"),
            stream: StreamSettings {
                name: "CACHEFLOW".into(),
                subject_prefix: "cacheflow".into(),
                max_msgs_per_subject: 1,
                duplicate_window_secs: 120,
                max_age_secs: 0,
                replicas: 1,
            },
            outbox: OutboxSettings {
                batch_size: 512,
                poll_interval_ms: 250,
                retry_min_ms: 50,
                retry_max_ms: 5_000,
                heartbeat_interval_ms: 10_000,
            },
            store: StoreSettings {
                op_timeout_ms: 5_000,
                sqlite_synchronous: SqliteSynchronous::Full,
                sqlite_readers: 4,
                mongo_database: "cacheflow".into(),
            },
            redis: RedisSettings { timeout_ms: 1_000 },
            nats: NatsSettings {
                timeout_ms: 5_000,
                creds_file: None,
                user: None,
                password: None,
                token: None,
                tls_ca_file: None,
                tls_client_cert: None,
                tls_client_key: None,
            },
            log: LogSettings {
                filter: "info".into(),
                json: false,
            },
            worker: WorkerSettings::default(),
            reads: ReadSettings::default(),
            admin_enabled: false,
            api_keys: ApiKeys::default(),
            security: SecuritySettings::default(),
            limits: LimitSettings::default(),
            shutdown: ShutdownSettings::default(),
        }
    }

    /// Loads the settings from the process environment (and the file it names, if any).
    pub fn load(role: Role) -> Result<Self, ConfigError> {
        let file = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
        Self::from_figment(Self::figment(role, file.as_deref()))
    }

    /// The layers, for callers (tests, tools) that want to add one of their own on top.
    pub fn figment(role: Role, file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Self::defaults(role)));
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        figment.merge(Env::raw().only(TOP_LEVEL_ENV)).merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(NOT_SETTINGS_ENV)
                .split("__"),
        )
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment
            .extract()
            .map_err(|err| ConfigError(err.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let scheme_in = |key: &str, url: &SecretUrl, allowed: &[&str]| match url.scheme() {
            Some(scheme) if allowed.contains(&scheme) => Ok(()),
            _ => Err(ConfigError(format!(
                "{key} = {url}: expected a URL starting with {}",
                allowed
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))),
        };
        scheme_in(
            "store_url",
            &self.store_url,
            &["sqlite", "mongodb", "mongodb+srv"],
        )?;
        scheme_in("redis_url", &self.redis_url, &["redis", "rediss"])?;
        scheme_in("nats_url", &self.nats_url, &["nats", "tls"])?;
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(ConfigError(format!("{key} must be greater than 0")))
            } else {
                Ok(())
            }
        };
        positive("outbox.batch_size", self.outbox.batch_size as u64)?;
        positive("outbox.poll_interval_ms", self.outbox.poll_interval_ms)?;
        positive("store.op_timeout_ms", self.store.op_timeout_ms)?;
        positive("store.sqlite_readers", self.store.sqlite_readers as u64)?;
        positive("redis.timeout_ms", self.redis.timeout_ms)?;
        positive("nats.timeout_ms", self.nats.timeout_ms)?;
        positive("stream.replicas", self.stream.replicas as u64)?;
        positive("worker.batch_size", self.worker.batch_size as u64)?;
        positive(
            "worker.batches_in_flight",
            self.worker.batches_in_flight as u64,
        )?;
        positive("worker.fetch_wait_ms", self.worker.fetch_wait_ms)?;
        positive("worker.ack_wait_secs", self.worker.ack_wait_secs)?;
        positive("worker.stall_after_secs", self.worker.stall_after_secs)?;
        positive("worker.audit_sample", self.worker.audit_sample)?;
        positive("worker.tombstone_ttl_secs", self.worker.tombstone_ttl_secs)?;
        positive("reads.negative_ttl_ms", self.reads.negative_ttl_ms)?;
        positive("reads.max_batch_ids", self.reads.max_batch_ids as u64)?;
        positive("reads.max_limit", self.reads.max_limit as u64)?;
        positive(
            "reads.generation_refresh_ms",
            self.reads.generation_refresh_ms,
        )?;
        positive(
            "reads.near_cache_max_staleness_ms",
            self.reads.near_cache_max_staleness_ms,
        )?;
        if !(self.reads.max_radius_m.is_finite() && self.reads.max_radius_m > 0.0) {
            return Err(ConfigError(
                "reads.max_radius_m must be a positive number".into(),
            ));
        }
        positive("worker.retry_min_ms", self.worker.retry_min_ms)?;
        if self.worker.retry_min_ms > self.worker.retry_max_ms {
            return Err(ConfigError(
                "worker.retry_min_ms must not exceed worker.retry_max_ms".into(),
            ));
        }
        // A smaller limit would make every full-size fetch fail with "max ack pending exceeded";
        // -1 is JetStream's "unlimited".
        if self.worker.max_ack_pending != -1
            && self.worker.max_ack_pending < self.worker.batch_size as i64
        {
            return Err(ConfigError(format!(
                "worker.max_ack_pending ({}) must be -1 (unlimited) or at least worker.batch_size ({})",
                self.worker.max_ack_pending, self.worker.batch_size
            )));
        }
        if self
            .worker
            .key_prefix
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ConfigError(format!(
                "worker.key_prefix = {:?}: whitespace and control characters are not allowed",
                self.worker.key_prefix
            )));
        }
        if self.stream.max_msgs_per_subject == 0 || self.stream.max_msgs_per_subject < -1 {
            return Err(ConfigError(
                "stream.max_msgs_per_subject must be at least 1, or -1 for unlimited".into(),
            ));
        }
        positive("limits.request_timeout_ms", self.limits.request_timeout_ms)?;
        positive(
            "limits.max_concurrent_requests",
            self.limits.max_concurrent_requests as u64,
        )?;
        positive("limits.max_body_bytes", self.limits.max_body_bytes as u64)?;
        positive("limits.max_event_bytes", self.limits.max_event_bytes as u64)?;
        positive("shutdown.deadline_ms", self.shutdown.deadline_ms)?;
        if self.security.require_read_key && self.api_keys.is_empty() {
            return Err(ConfigError(
                "security.require_read_key is set but API_KEYS is empty: set keys, or reads \
                 would look protected while the API is open"
                    .into(),
            ));
        }
        self.nats.check()?;
        if self.outbox.retry_min_ms > self.outbox.retry_max_ms {
            return Err(ConfigError(
                "outbox.retry_min_ms must not exceed outbox.retry_max_ms".into(),
            ));
        }
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token_ok(&self.stream.name) {
            return Err(ConfigError(format!(
                "stream.name = {:?}: use letters, digits, '_' and '-' only",
                self.stream.name
            )));
        }
        if !self.stream.subject_prefix.split('.').all(token_ok) {
            return Err(ConfigError(format!(
                "stream.subject_prefix = {:?}: dot-separated tokens of letters, digits, '_' and '-'",
                self.stream.subject_prefix
            )));
        }
        if !token_ok(&self.worker.consumer) {
            return Err(ConfigError(format!(
                "worker.consumer = {:?}: use letters, digits, '_' and '-' only",
                self.worker.consumer
            )));
        }
        Ok(())
    }
}

impl StoreSettings {
    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.op_timeout_ms)
    }
}

impl RedisSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl NatsSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// One way to authenticate, complete; values are never quoted (they may be secrets).
    fn check(&self) -> Result<(), ConfigError> {
        let user_password = match (&self.user, &self.password) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            _ => {
                return Err(ConfigError(
                    "nats.user and nats.password must be set together".into(),
                ))
            }
        };
        let methods = [
            self.creds_file.is_some(),
            user_password,
            self.token.is_some(),
        ];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError(
                "nats: set only one of creds_file, user and password, token".into(),
            ));
        }
        let empty = [
            ("nats.user", self.user.as_deref().is_some_and(str::is_empty)),
            (
                "nats.password",
                self.password
                    .as_ref()
                    .is_some_and(|p| p.expose().is_empty()),
            ),
            (
                "nats.token",
                self.token.as_ref().is_some_and(|t| t.expose().is_empty()),
            ),
        ];
        if let Some((key, _)) = empty.iter().find(|(_, is_empty)| *is_empty) {
            return Err(ConfigError(format!("{key} must not be empty")));
        }
        if self.tls_client_cert.is_some() != self.tls_client_key.is_some() {
            return Err(ConfigError(
                "nats.tls_client_cert and nats.tls_client_key must be set together".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
// figment::Jail's closures must return figment's (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        Jail::expect_with(|_| {
            let api = Settings::load(Role::Api).unwrap();
            assert_eq!(api.store_url.expose(), "sqlite://data/cacheflow.db");
            assert_eq!(api.redis_url.expose(), "redis://127.0.0.1:6379");
            assert_eq!(api.nats_url.expose(), "nats://127.0.0.1:4222");
            assert_eq!(api.api_addr.to_string(), "127.0.0.1:8080");
            assert_eq!(api.metrics_addr.to_string(), "127.0.0.1:9464");
            assert_eq!(api.pipeline_config, PathBuf::from("config/pipeline.toml"));
            assert_eq!(api.stream.name, "CACHEFLOW");
            assert_eq!(api.stream.max_msgs_per_subject, 1);
            let worker = Settings::load(Role::Worker).unwrap();
            assert_eq!(worker.metrics_addr.to_string(), "127.0.0.1:9465");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "redis_url = \"redis://file:6379\"\napi_addr = \"0.0.0.0:9000\"\n[stream]\nmax_msgs_per_subject = 3\n",
            )?;
            jail.set_env("CACHEFLOW_CONFIG", "custom.toml");
            jail.set_env("REDIS_URL", "redis://env:6379");
            jail.set_env("CACHEFLOW_STREAM__DUPLICATE_WINDOW_SECS", "30");
            let settings = Settings::load(Role::Api).unwrap();
            assert_eq!(settings.redis_url.expose(), "redis://env:6379");
            assert_eq!(settings.api_addr.to_string(), "0.0.0.0:9000");
            assert_eq!(settings.stream.max_msgs_per_subject, 3);
            assert_eq!(settings.stream.duplicate_window_secs, 30);
            Ok(())
        });
    }

    /// The documented protected start exports the client's key next to the servers' settings.
    #[test]
    fn the_client_key_is_not_a_setting() {
        Jail::expect_with(|jail| {
            jail.set_env("CACHEFLOW_API_KEY", "a-client-key");
            jail.set_env("CACHEFLOW_OUTBOX__BATCH_SIZE", "64");
            let settings = Settings::load(Role::Api).unwrap();
            assert_eq!(settings.outbox.batch_size, 64);
            assert!(Settings::load(Role::Worker).is_ok());
            Ok(())
        });
        Jail::expect_with(|jail| {
            // Only that exact name: its look-alikes are still typos.
            jail.set_env("CACHEFLOW_API_KEYS", "x");
            let err = Settings::load(Role::Api).unwrap_err().to_string();
            assert!(
                err.contains("api_keys") || err.contains("API_KEYS"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("API_ADDR", "not-an-address");
            let err = Settings::load(Role::Api).unwrap_err().to_string();
            assert!(err.contains("API_ADDR"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CACHEFLOW_STREAM__NO_SUCH_KEY", "1");
            let err = Settings::load(Role::Api).unwrap_err().to_string();
            assert!(err.contains("no_such_key"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("STORE_URL", "postgres://u:secret@db/x");
            let err = Settings::load(Role::Api).unwrap_err().to_string();
            assert!(err.contains("store_url"), "{err}");
            assert!(!err.contains("secret"), "the password leaked: {err}");
            Ok(())
        });
    }

    #[test]
    fn worker_settings_have_defaults_and_are_checked() {
        Jail::expect_with(|jail| {
            let worker = Settings::load(Role::Worker).unwrap().worker;
            assert_eq!(worker.consumer, "cacheflow-sync");
            assert_eq!(worker.tombstone_ttl(), Duration::from_secs(86_400));
            assert_eq!(worker.key_prefix, "");
            assert_eq!(worker.batches_in_flight, 4);
            jail.set_env("CACHEFLOW_WORKER__BATCHES_IN_FLIGHT", "0");
            let err = Settings::load(Role::Worker).unwrap_err().to_string();
            assert!(err.contains("worker.batches_in_flight"), "{err}");
            jail.set_env("CACHEFLOW_WORKER__BATCHES_IN_FLIGHT", "8");
            assert_eq!(
                Settings::load(Role::Worker)
                    .unwrap()
                    .worker
                    .batches_in_flight,
                8
            );
            jail.set_env("CACHEFLOW_WORKER__KEY_PREFIX", "gen2:");
            jail.set_env("CACHEFLOW_WORKER__BATCH_SIZE", "64");
            let worker = Settings::load(Role::Worker).unwrap().worker;
            assert_eq!(worker.key_prefix, "gen2:");
            assert_eq!(worker.batch_size, 64);
            jail.set_env("CACHEFLOW_WORKER__MAX_ACK_PENDING", "10");
            let err = Settings::load(Role::Worker).unwrap_err().to_string();
            assert!(err.contains("worker.max_ack_pending"), "{err}");
            jail.set_env("CACHEFLOW_WORKER__MAX_ACK_PENDING", "-1");
            jail.set_env("CACHEFLOW_WORKER__CONSUMER", "a.b");
            let err = Settings::load(Role::Worker).unwrap_err().to_string();
            assert!(err.contains("worker.consumer"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn debug_output_hides_credentials() {
        let mut settings = Settings::defaults(Role::Api);
        settings.redis_url = SecretUrl::new("redis://:topsecret@cache:6379");
        settings.nats.password = Some(Secret::new("natspassword"));
        settings.nats.token = Some(Secret::new("natstoken"));
        let debug = format!("{settings:?}");
        for secret in ["topsecret", "natspassword", "natstoken"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }

    #[test]
    fn api_keys_come_from_the_top_level_variable() {
        use crate::security::{hash_key, KeyRole};
        Jail::expect_with(|jail| {
            let settings = Settings::load(Role::Api).unwrap();
            assert!(settings.api_keys.is_empty());
            assert!(!settings.security.require_read_key);
            jail.set_env(
                "API_KEYS",
                format!(
                    "writer:{},admin:{},reader:{},writer:{}",
                    hash_key("w1"),
                    hash_key("a1"),
                    hash_key("r1"),
                    hash_key("w2")
                ),
            );
            jail.set_env("CACHEFLOW_SECURITY__REQUIRE_READ_KEY", "true");
            let settings = Settings::load(Role::Api).unwrap();
            assert_eq!(settings.api_keys.role_of("w2"), Some(KeyRole::Writer));
            assert_eq!(settings.api_keys.role_of("a1"), Some(KeyRole::Admin));
            assert_eq!(settings.api_keys.role_of("r1"), Some(KeyRole::Reader));
            assert!(settings.security.require_read_key);
            Ok(())
        });
    }

    #[test]
    fn api_keys_errors_name_the_variable_and_never_echo_it() {
        let pasted = "my-raw-secret-key-0123";
        for bad in [
            format!("writer:{pasted}"),
            format!("superuser:{}", "ab".repeat(32)),
            pasted.to_owned(),
            "12345678901234567890".to_owned(),
            format!("writer:{}", "zz".repeat(32)),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env("API_KEYS", &bad);
                let err = Settings::load(Role::Api).unwrap_err().to_string();
                assert!(err.contains("API_KEYS"), "{err}");
                assert!(!err.contains(&bad), "the value leaked: {err}");
                assert!(!err.contains(pasted), "the value leaked: {err}");
                Ok(())
            });
        }
    }

    #[test]
    fn require_read_key_needs_keys() {
        Jail::expect_with(|jail| {
            jail.set_env("CACHEFLOW_SECURITY__REQUIRE_READ_KEY", "true");
            let err = Settings::load(Role::Api).unwrap_err().to_string();
            assert!(err.contains("security.require_read_key"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn limits_and_shutdown_have_defaults_and_are_checked() {
        Jail::expect_with(|jail| {
            let settings = Settings::load(Role::Api).unwrap();
            assert_eq!(settings.limits.request_timeout(), Duration::from_secs(10));
            assert_eq!(settings.limits.max_concurrent_requests, 1_024);
            assert_eq!(settings.limits.max_body_bytes, 1024 * 1024);
            assert_eq!(settings.shutdown.deadline(), Duration::from_secs(10));
            jail.set_env("CACHEFLOW_LIMITS__REQUEST_TIMEOUT_MS", "250");
            jail.set_env("CACHEFLOW_LIMITS__MAX_CONCURRENT_REQUESTS", "8");
            jail.set_env("CACHEFLOW_LIMITS__MAX_BODY_BYTES", "4096");
            jail.set_env("CACHEFLOW_SHUTDOWN__DEADLINE_MS", "3000");
            let settings = Settings::load(Role::Worker).unwrap();
            assert_eq!(
                settings.limits.request_timeout(),
                Duration::from_millis(250)
            );
            assert_eq!(settings.limits.max_concurrent_requests, 8);
            assert_eq!(settings.limits.max_body_bytes, 4096);
            assert_eq!(settings.shutdown.deadline(), Duration::from_secs(3));
            jail.set_env("CACHEFLOW_SHUTDOWN__DEADLINE_MS", "0");
            let err = Settings::load(Role::Api).unwrap_err().to_string();
            assert!(err.contains("shutdown.deadline_ms"), "{err}");
            jail.set_env("CACHEFLOW_SHUTDOWN__DEADLINE_MS", "10");
            jail.set_env("CACHEFLOW_LIMITS__MAX_CONCURRENT_REQUESTS", "0");
            let err = Settings::load(Role::Api).unwrap_err().to_string();
            assert!(err.contains("limits.max_concurrent_requests"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn tls_urls_and_nats_credentials_are_settings() {
        Jail::expect_with(|jail| {
            jail.set_env("REDIS_URL", "rediss://:redispw@cache.example.com:6380");
            jail.set_env("NATS_URL", "tls://nats.example.com:4222");
            jail.set_env(
                "STORE_URL",
                "mongodb+srv://app:mongopw@cluster0.example.mongodb.net/cacheflow",
            );
            jail.set_env("CACHEFLOW_NATS__USER", "app");
            jail.set_env("CACHEFLOW_NATS__PASSWORD", "natspw");
            jail.set_env("CACHEFLOW_NATS__TLS_CA_FILE", "/etc/cacheflow/nats-ca.pem");
            let settings = Settings::load(Role::Api).unwrap();
            assert_eq!(settings.redis_url.scheme(), Some("rediss"));
            assert_eq!(settings.nats_url.scheme(), Some("tls"));
            assert_eq!(settings.store_url.scheme(), Some("mongodb+srv"));
            assert_eq!(settings.nats.user.as_deref(), Some("app"));
            assert_eq!(
                settings.nats.password.as_ref().map(Secret::expose),
                Some("natspw")
            );
            assert_eq!(
                settings.nats.tls_ca_file,
                Some(PathBuf::from("/etc/cacheflow/nats-ca.pem"))
            );
            let debug = format!("{settings:?}");
            for secret in ["redispw", "natspw", "mongopw"] {
                assert!(!debug.contains(secret), "{secret} leaked: {debug}");
            }
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file(
                "nats.toml",
                "[nats]\ntoken = \"s3cret-token\"\ntls_client_cert = \"c.pem\"\ntls_client_key = \"k.pem\"\n",
            )?;
            jail.set_env("CACHEFLOW_CONFIG", "nats.toml");
            let settings = Settings::load(Role::Worker).unwrap();
            assert_eq!(
                settings.nats.token.as_ref().map(Secret::expose),
                Some("s3cret-token")
            );
            assert!(!format!("{settings:?}").contains("s3cret-token"));
            jail.set_env("CACHEFLOW_NATS__CREDS_FILE", "/etc/cacheflow/app.creds");
            let err = Settings::load(Role::Worker).unwrap_err().to_string();
            assert!(err.contains("only one of"), "{err}");
            assert!(!err.contains("s3cret-token"), "{err}");
            Ok(())
        });
        for (key, value, expected) in [
            ("CACHEFLOW_NATS__USER", "app", "nats.user and nats.password"),
            (
                "CACHEFLOW_NATS__PASSWORD",
                "pw-only",
                "nats.user and nats.password",
            ),
            ("CACHEFLOW_NATS__TOKEN", "", "nats.token must not be empty"),
            ("CACHEFLOW_NATS__TLS_CLIENT_KEY", "k.pem", "tls_client_cert"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(key, value);
                let err = Settings::load(Role::Api).unwrap_err().to_string();
                assert!(err.contains(expected), "{key}: {err}");
                assert!(value.is_empty() || !err.contains("pw-only"), "{err}");
                Ok(())
            });
        }
    }
}
