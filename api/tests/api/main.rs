//! Integration tests of the API over real sockets, with real `redis-server` and `nats-server -js`.

mod admin;
mod auth;
mod bad_input;
mod collections;
mod crash_recovery;
mod degraded;
mod errors;
mod events;
mod helpers;
mod limits;
mod nats_outage;
mod near_cache;
mod openapi;
mod queries;
mod races;
mod readiness;
mod reads;
mod shutdown;
mod status;
mod writes;
