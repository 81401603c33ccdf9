//! HTTP routes: `documents` (the write API), `reads` (entity reads and structure queries) and
//! `health` (liveness and readiness).

pub mod documents;
pub mod health;
pub mod reads;
