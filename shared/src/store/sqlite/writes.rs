//! The SQLite adapter's write transactions. Each runs inside the writer's `BEGIN IMMEDIATE`
//! transaction (`SqliteStore::write`), which makes "read the version, write version + 1" atomic
//! with the outbox insert that follows it.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::map_err;
use crate::document::{merge_patch, stamp, Document};
use crate::event::Event;
use crate::store::{Precondition, StoreError, Validator, WriteOutcome};

/// `(version, deleted, body)` of the entity's row, tombstones included.
pub(super) fn current(
    tx: &Connection,
    collection: &str,
    id: &str,
) -> Result<Option<(u64, bool, Option<String>)>, StoreError> {
    tx.query_row(
        "SELECT version, deleted, body FROM documents WHERE collection = ?1 AND id = ?2",
        params![collection, id],
        |row| {
            Ok((
                row.get::<_, i64>(0)? as u64,
                row.get::<_, bool>(1)?,
                row.get(2)?,
            ))
        },
    )
    .optional()
    .map_err(map_err)
}

fn upsert_row(
    tx: &Connection,
    collection: &str,
    id: &str,
    version: u64,
    document: &Document,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(document).map_err(|e| StoreError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO documents (collection, id, version, deleted, body, updated_at)
         VALUES (?1, ?2, ?3, 0, ?4, ?5)
         ON CONFLICT (collection, id) DO UPDATE SET
             version = excluded.version, deleted = 0, body = excluded.body,
             updated_at = excluded.updated_at",
        params![collection, id, version as i64, body, now()],
    )
    .map_err(map_err)?;
    Ok(())
}

pub(super) fn put_tx(
    tx: &Connection,
    collection: &str,
    id: &str,
    mut document: Document,
    precondition: Precondition,
) -> Result<WriteOutcome, StoreError> {
    let row = current(tx, collection, id)?;
    let live = row.as_ref().filter(|(_, deleted, _)| !deleted).map(|r| r.0);
    precondition.check(live)?;
    let version = row.map_or(1, |(v, _, _)| v + 1);
    stamp(&mut document, id, version);
    upsert_row(tx, collection, id, version, &document)?;
    Ok(WriteOutcome {
        created: live.is_none(),
        version,
        document: Some(document.clone()),
        event: Event::upsert(collection, id, version, document),
    })
}

pub(super) fn patch_tx(
    tx: &Connection,
    collection: &str,
    id: &str,
    patch: &Value,
    precondition: Precondition,
    validate: &Validator,
) -> Result<WriteOutcome, StoreError> {
    let Some((version, false, Some(body))) = current(tx, collection, id)? else {
        return Err(StoreError::NotFound);
    };
    precondition.check(Some(version))?;
    let mut merged: Value =
        serde_json::from_str(&body).map_err(|e| StoreError::Internal(e.to_string()))?;
    merge_patch(&mut merged, patch);
    let Value::Object(mut document) = merged else {
        return Err(StoreError::Invalid(crate::pipeline::DocumentError::new(
            "(document)",
            "a merge patch must leave the document a JSON object",
        )));
    };
    validate(&document)?;
    let version = version + 1;
    stamp(&mut document, id, version);
    upsert_row(tx, collection, id, version, &document)?;
    Ok(WriteOutcome {
        created: false,
        version,
        document: Some(document.clone()),
        event: Event::upsert(collection, id, version, document),
    })
}

pub(super) fn delete_tx(
    tx: &Connection,
    collection: &str,
    id: &str,
    precondition: Precondition,
) -> Result<WriteOutcome, StoreError> {
    let Some((version, false, _)) = current(tx, collection, id)? else {
        return Err(StoreError::NotFound);
    };
    precondition.check(Some(version))?;
    let version = version + 1;
    tx.execute(
        "UPDATE documents SET version = ?3, deleted = 1, body = NULL, updated_at = ?4
         WHERE collection = ?1 AND id = ?2",
        params![collection, id, version as i64, now()],
    )
    .map_err(map_err)?;
    Ok(WriteOutcome {
        created: false,
        version,
        document: None,
        event: Event::delete(collection, id, version),
    })
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current time always formats")
}
