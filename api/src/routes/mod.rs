//! HTTP routes: `documents` (the write API), `reads` (entity reads and structure queries),
//! `listing` (a collection page by page), `projections` (the Redis keys holding an entity), `collections` (what the pipeline declares and which routes read it), `health` (liveness and
//! readiness) and `admin` (operators' cache invalidation).

pub mod admin;
pub mod collections;
pub mod documents;
pub mod health;
pub mod listing;
pub mod projections;
pub mod reads;
