//! Reading a collection from the store in id order, one page ahead of its consumer: a reader task
//! and a channel of one page, so at most three pages are in memory (the one being consumed, the
//! one sent, the one being read) whatever the collection's size.

use std::sync::Arc;

use cacheflow_shared::config::Settings;
use cacheflow_shared::store::{DocumentStore, Versioned};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::retry_transient;

pub struct StorePages {
    pages: mpsc::Receiver<Vec<Versioned>>,
    reader: JoinHandle<anyhow::Result<()>>,
}

impl StorePages {
    /// Starts reading `collection` after id `after` (from the start if `None`), `batch`
    /// documents per page; transient store failures are retried.
    pub fn read_ahead(
        store: Arc<dyn DocumentStore>,
        settings: &Settings,
        collection: &str,
        batch: usize,
        mut after: Option<String>,
    ) -> Self {
        let (sender, pages) = mpsc::channel::<Vec<Versioned>>(1);
        let (settings, collection) = (settings.clone(), collection.to_owned());
        let reader = tokio::spawn(async move {
            loop {
                let page = retry_transient(&settings, "reading the store", || {
                    store.scan(&collection, after.as_deref(), batch)
                })
                .await?;
                let Some(last) = page.last() else {
                    return Ok(());
                };
                after = Some(document_id(last).to_owned());
                if sender.send(page).await.is_err() {
                    // The consumer stopped reading (done early, an error, shutdown).
                    return Ok(());
                }
            }
        });
        Self { pages, reader }
    }

    /// The next page; `None` after the last one (or after the reader failed: see
    /// [`finish`](Self::finish)).
    pub async fn next(&mut self) -> Option<Vec<Versioned>> {
        self.pages.recv().await
    }

    /// Stops the reader and reports whether reading failed.
    pub async fn finish(self) -> anyhow::Result<()> {
        drop(self.pages);
        self.reader
            .await
            .map_err(|err| anyhow::anyhow!("the store reader panicked: {err}"))?
    }
}

/// The id the store stamped into the document.
pub fn document_id(live: &Versioned) -> &str {
    live.document
        .get("id")
        .and_then(|id| id.as_str())
        .unwrap_or_default()
}
