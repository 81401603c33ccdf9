//! A write the SQLite store refused (`Unavailable`: the database stayed locked past the operation
//! timeout) is never applied afterwards. The API answers such a refusal `503 store_unavailable`,
//! which tells the client nothing was written; the fault-injection suite once caught refused
//! writes, queued behind the lock, committing after it was released.

use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::redact::SecretUrl;
use cacheflow_shared::store::sqlite::SqliteStore;
use cacheflow_shared::store::{DocumentStore, Precondition, StoreError};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_while_the_database_is_locked_are_never_applied_later() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let mut settings = Settings::defaults(Role::Api).store;
    settings.op_timeout_ms = 200;
    let url = SecretUrl::new(format!("sqlite://{}", db.display()));
    let store = std::sync::Arc::new(SqliteStore::open(&url, &settings).await.unwrap());
    let document = |name: &str| json!({ "name": name }).as_object().cloned().unwrap();

    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // They queue behind one another for the single writer connection.
    let writes: Vec<_> = (0..5)
        .map(|i| {
            let (store, document) = (store.clone(), document(&format!("refused {i}")));
            tokio::spawn(async move {
                store
                    .put("places", "p1", document, Precondition::None)
                    .await
            })
        })
        .collect();
    for write in writes {
        let refused = write.await.unwrap();
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
    }
    locker.execute_batch("ROLLBACK").unwrap();

    // Every refused write is over: the next one is the entity's first.
    let accepted = store
        .put("places", "p1", document("accepted"), Precondition::None)
        .await
        .unwrap();
    assert_eq!(accepted.version, 1);
    let held = store.get("places", "p1").await.unwrap().unwrap();
    assert_eq!(
        (held.version, &held.document["name"]),
        (1, &json!("accepted"))
    );
}
