//! The store made unavailable for writes: a separate connection holds `BEGIN EXCLUSIVE` on the
//! SQLite database until the guard is dropped. Under WAL this blocks every writer (the API's
//! writes and the relay's outbox deletes wait `busy_timeout`, then fail) while readers go on,
//! which is what a store that stopped accepting writes looks like.

use std::path::Path;
use std::time::Duration;

pub struct ExclusiveLock {
    conn: Option<rusqlite::Connection>,
}

impl ExclusiveLock {
    /// Waits (a moment at most: the API's own transactions are short) for the write lock.
    pub async fn take(db: &Path) -> Self {
        let db = db.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&db).expect("open the store's database");
            conn.busy_timeout(Duration::from_secs(10))
                .expect("set busy_timeout");
            conn.execute_batch("BEGIN EXCLUSIVE")
                .expect("take the exclusive lock");
            conn
        })
        .await
        .expect("the locking task");
        Self { conn: Some(conn) }
    }

    pub fn release(mut self) {
        self.unlock();
    }

    fn unlock(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Nothing was written; the rollback only gives the lock back.
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                eprintln!("releasing the store lock failed: {e}");
            }
        }
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        self.unlock();
    }
}
