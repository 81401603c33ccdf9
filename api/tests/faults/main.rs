//! The fault-injection suite: the real binaries (`cacheflow-api`, `cacheflow-sync-worker`) as
//! child processes on private `redis-server` and `nats-server -js` instances and an SQLite file,
//! under a steady mixed workload, with one fault per scenario:
//!
//! - [`worker_killed`]: the worker SIGKILLed while it holds unacked messages, then restarted;
//! - [`api_killed`]: the API SIGKILLed with committed writes still in the outbox, then restarted;
//! - [`redis_restarted`]: Redis restarted empty, `/readyz` reporting it, `replay` restoring it;
//! - [`nats_down`]: NATS down for 10 s while writes keep succeeding through the outbox;
//! - [`store_unavailable`]: the SQLite database locked: writes `503`, cache hits still `200`.
//!
//! Every scenario ends the same way ([`stack::Stack::settle_and_check`]): the workload stops, the
//! outbox and the worker's consumer drain, `cacheflow-sync-worker verify` finds no drift, and the
//! store holds every acknowledged write ([`ledger`]).
//!
//! The worker binary is not built by `cargo test -p cacheflow-api` (only the api's own binary
//! is): run `cargo build --workspace --bins` first, as `infra/scripts/test.sh` does.
//!
//! Support: [`stack`] (the fixture), [`service`] (a binary as a child process), [`workload`] and
//! [`ledger`] (what the clients were told, checked against the store), [`pause`] (SIGSTOP a
//! server), [`sqlite_lock`] (an exclusive lock on the store).

mod ledger;
mod pause;
mod service;
mod sqlite_lock;
mod stack;
mod workload;

mod api_killed;
mod nats_down;
mod redis_restarted;
mod store_unavailable;
mod worker_killed;

/// Scenarios run one at a time: each runs six processes and a workload, and on a 2-core machine
/// two of them at once would measure the machine rather than the faults.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole scenario; released even when it panics.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// How long the workload runs before the fault, and again after the recovery: long enough for
/// every key to be written a few times (each is written about once a second).
pub const WARM_UP: std::time::Duration = std::time::Duration::from_secs(3);
pub const AFTERMATH: std::time::Duration = std::time::Duration::from_secs(2);
