//! HTTP routes: `documents` (the write API) and `health` (liveness and readiness).

pub mod documents;
pub mod health;
