//! Embedded SQLite adapter (bundled `rusqlite`), the default store for a laptop and for CI.
//!
//! Durability: WAL journal with `synchronous = FULL` by default, so a write acknowledged to a
//! client survives a crash of the process *and* of the machine; `normal` trades the last commits
//! on power loss for fewer fsyncs. One writer connection serialises writes (SQLite allows one
//! writer anyway), which also makes "read version, write version + 1, append to the outbox" a
//! single `BEGIN IMMEDIATE` transaction. Reads use a small pool of reader connections, which WAL
//! lets run beside the writer.
//!
//! - `writes.rs`: the write transactions (put, patch, delete).
//! - `queries.rs`: the structure queries (top-N by score, nearest by location) that stand in for
//!   Redis when it is unreachable.

mod queries;
mod writes;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::Value;

use self::writes::{current, delete_tx, patch_tx, put_tx};
use super::{
    DocumentStore, PendingEvent, Precondition, Scored, StoreError, Validator, Versioned,
    WriteOutcome,
};
use crate::config::{SqliteSynchronous, StoreSettings};
use crate::document::Document;
use crate::event::Event;
use crate::redact::SecretUrl;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    body       TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    payload  BLOB NOT NULL
);
";

type Shared = Arc<Mutex<Connection>>;

pub struct SqliteStore {
    writer: Shared,
    readers: Vec<Shared>,
    next_reader: AtomicUsize,
    op_timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if needed) the database named by a `sqlite://<path>` URL.
    pub async fn open(url: &SecretUrl, settings: &StoreSettings) -> Result<Self, StoreError> {
        let path = url
            .expose()
            .strip_prefix("sqlite://")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| StoreError::Internal(format!("{url} is not a sqlite://<path> URL")))?
            .to_owned();
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, &settings))
            .await
            .map_err(|err| StoreError::Internal(err.to_string()))?
    }

    fn open_blocking(path: &str, settings: &StoreSettings) -> Result<Self, StoreError> {
        let in_memory = path == ":memory:";
        if !in_memory {
            if let Some(parent) = PathBuf::from(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|err| {
                    StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
                })?;
            }
        }
        let synchronous = match settings.sqlite_synchronous {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Normal => "NORMAL",
        };
        let busy_ms = settings.op_timeout_ms;
        let open = || -> Result<Connection, StoreError> {
            let conn = Connection::open(path).map_err(map_err)?;
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = {busy_ms};"
            ))
            .map_err(map_err)?;
            Ok(conn)
        };
        let writer = open()?;
        writer.execute_batch(SCHEMA).map_err(map_err)?;
        // A private in-memory database exists only inside its one connection.
        let readers = if in_memory {
            Vec::new()
        } else {
            (0..settings.sqlite_readers)
                .map(|_| open().map(|c| Arc::new(Mutex::new(c))))
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            next_reader: AtomicUsize::new(0),
            op_timeout: settings.op_timeout(),
        })
    }

    fn reader(&self) -> Shared {
        if self.readers.is_empty() {
            return self.writer.clone();
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].clone()
    }

    /// Runs blocking SQLite work off the async runtime. The operation timeout bounds the waits
    /// (for the connection, then for SQLite's locks through `busy_timeout`), never the work:
    /// `Unavailable` becomes `503 store_unavailable`, which tells the client nothing was written,
    /// so the caller must not give up on work that may still commit. (Giving up did let a refused
    /// write, queued behind a lock, commit later, even after the client's next, acknowledged
    /// write of the same entity.) Started work is bounded by the request timeout, whose
    /// `503 timeout` says a write may have been applied.
    async fn run<T, F>(&self, conn: Shared, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let op_timeout = self.op_timeout;
        let deadline = Instant::now() + op_timeout;
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| {
                StoreError::Internal("a SQLite connection lock was poisoned".into())
            })?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "SQLite connection busy for longer than {op_timeout:?}"
                )));
            }
            conn.busy_timeout(left).map_err(map_err)?;
            work(&mut conn)
        });
        task.await
            .unwrap_or_else(|join| Err(StoreError::Internal(format!("store task failed: {join}"))))
    }

    async fn write<F>(&self, work: F) -> Result<WriteOutcome, StoreError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<WriteOutcome, StoreError> + Send + 'static,
    {
        self.run(self.writer.clone(), move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let outcome = work(&tx)?;
            tx.execute(
                "INSERT INTO outbox (event_id, payload) VALUES (?1, ?2)",
                params![outcome.event.event_id.to_string(), outcome.event.encode()],
            )
            .map_err(map_err)?;
            tx.commit().map_err(map_err)?;
            Ok(outcome)
        })
        .await
    }
}

fn parse_body(version: i64, body: &str) -> Result<Versioned, StoreError> {
    let document: Document = serde_json::from_str(body)
        .map_err(|e| StoreError::Internal(format!("corrupt document: {e}")))?;
    Ok(Versioned {
        version: version as u64,
        document,
    })
}

fn map_err(err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::CannotOpen
                    | ErrorCode::ReadOnly
            ) =>
        {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn put(
        &self,
        collection: &str,
        id: &str,
        document: Document,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.write(move |tx| put_tx(tx, &collection, &id, document, precondition))
            .await
    }

    async fn patch(
        &self,
        collection: &str,
        id: &str,
        patch: Value,
        precondition: Precondition,
        validate: Validator,
    ) -> Result<WriteOutcome, StoreError> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.write(move |tx| patch_tx(tx, &collection, &id, &patch, precondition, &validate))
            .await
    }

    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.write(move |tx| delete_tx(tx, &collection, &id, precondition))
            .await
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Versioned>, StoreError> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.run(self.reader(), move |conn| {
            match current(conn, &collection, &id)? {
                Some((version, false, Some(body))) => parse_body(version as i64, &body).map(Some),
                _ => Ok(None),
            }
        })
        .await
    }

    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Versioned>>, StoreError> {
        let collection = collection.to_owned();
        let ids = ids.to_vec();
        self.run(self.reader(), move |conn| {
            let mut found = std::collections::HashMap::with_capacity(ids.len());
            // Chunks keep well under SQLite's bound-parameter limit.
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let sql = format!(
                    "SELECT id, version, body FROM documents
                     WHERE collection = ? AND deleted = 0 AND id IN ({placeholders})"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
                let params = std::iter::once(&collection).chain(chunk.iter());
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params), |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                        ))
                    })
                    .map_err(map_err)?;
                for row in rows {
                    let (id, version, body) = row.map_err(map_err)?;
                    found.insert(id, parse_body(version, &body)?);
                }
            }
            Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
        })
        .await
    }

    async fn scan(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Versioned>, StoreError> {
        let collection = collection.to_owned();
        let after = after.unwrap_or("").to_owned();
        self.run(self.reader(), move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT version, body FROM documents
                     WHERE collection = ?1 AND deleted = 0 AND id > ?2 ORDER BY id LIMIT ?3",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![collection, after, limit as i64], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(map_err)?;
            rows.map(|row| {
                let (version, body) = row.map_err(map_err)?;
                parse_body(version, &body)
            })
            .collect()
        })
        .await
    }

    async fn count_live(&self, collection: &str) -> Result<u64, StoreError> {
        let collection = collection.to_owned();
        self.run(self.reader(), move |conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM documents WHERE collection = ?1 AND deleted = 0",
            )
            .and_then(|mut stmt| stmt.query_row(params![collection], |row| row.get::<_, i64>(0)))
            .map(|count| count as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn latest_version(&self, collection: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.run(self.reader(), move |conn| {
            Ok(current(conn, &collection, &id)?.map(|(version, _, _)| version))
        })
        .await
    }

    async fn top_by_score(
        &self,
        collection: &str,
        score_field: &str,
        equals: &[(String, Value)],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        self.query_top_by_score(collection, score_field, equals, offset, limit)
            .await
    }

    async fn near(
        &self,
        collection: &str,
        field: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        self.query_near(collection, field, lon, lat, radius_m, limit)
            .await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        // On a reader: it never waits for the writer (WAL), which client writes keep busy. Each
        // statement reads the latest commit as of its start, so rows whose delete committed
        // before the call are gone from what it returns (the relay relies on that).
        self.run(self.reader(), move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?1")
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![limit as i64], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(map_err)?;
            rows.map(|row| {
                let (seq, payload) = row.map_err(map_err)?;
                let event = Event::decode(&payload).map_err(|e| {
                    StoreError::Internal(format!("corrupt outbox event {seq}: {e}"))
                })?;
                Ok(PendingEvent {
                    seq: seq as u64,
                    event,
                })
            })
            .collect()
        })
        .await
    }

    async fn mark_published(&self, events: &[PendingEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = events.iter().map(|e| e.seq as i64).collect();
        self.run(self.writer.clone(), move |conn| {
            let tx = conn.transaction().map_err(map_err)?;
            {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM outbox WHERE seq = ?1")
                    .map_err(map_err)?;
                for seq in seqs {
                    stmt.execute(params![seq]).map_err(map_err)?;
                }
            }
            tx.commit().map_err(map_err)
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.run(self.reader(), |conn| {
            conn.query_row("SELECT COUNT(*) FROM outbox", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn heartbeat(&self, collection: &str) -> Result<(), StoreError> {
        let event = Event::heartbeat(collection);
        self.run(self.writer.clone(), move |conn| {
            conn.execute(
                "INSERT INTO outbox (event_id, payload) VALUES (?1, ?2)",
                params![event.event_id.to_string(), event.encode()],
            )
            .map(drop)
            .map_err(map_err)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(self.reader(), |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err)
        })
        .await
    }
}
