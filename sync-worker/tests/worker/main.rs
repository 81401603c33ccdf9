//! The sync worker's integration tests, against real `redis-server` and `nats-server -js`
//! processes (cacheflow-testkit). Each test owns a namespace: stream, subject prefix, Redis key
//! prefix and consumer name. Set `TEST_LOG=1` to see in-process worker logs.
//!
//! - `projections`: each projection kind, moves between indexes, deletes, versions, tombstones.
//! - `bulk_fill`: the backfill's bulk path writes what the versioned apply would, leaves newer
//!   versions, tombstones and live events alone, refuses only entities whose keys hold another type.
//! - `dead_letters`: poison events reach the DLQ subject with their reason; the worker moves on.
//! - `outages`: Redis stopped and restarted under a running worker.
//! - `processes`: the real binary: SIGKILL mid-run, three workers on one consumer, SIGTERM.
//! - `ops`: backfill, replay and rebuild (backfill under live events, replay after a flush, a
//!   generation switch under a reader running flat out, a killed backfill resumed).
//! - `stalls`: the stall watchdog re-creates a consumer that vanished under a running worker;
//!   `/readyz` names a dependency that is down.
//! - `observability`: the real binary's `/metrics` after a workload with outages: every worker
//!   metric (and every one a dashboard uses), values that match, `promtool check metrics` clean.

mod gen;
mod helpers;
mod process;
mod state;

mod bulk_fill;
mod dead_letters;
mod heartbeats;
mod observability;
mod ops;
mod outages;
mod processes;
mod projections;
mod stalls;
mod verify;
