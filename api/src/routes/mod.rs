//! HTTP routes: `documents` (the write API), `reads` (entity reads and structure queries),
//! `health` (liveness and readiness) and `admin` (operators' cache invalidation).

pub mod admin;
pub mod documents;
pub mod health;
pub mod reads;
