//! Integration tests of the API over real sockets, with real `redis-server` and `nats-server -js`.

mod admin;
mod auth;
mod bad_input;
mod collections;
mod console;
mod crash_recovery;
mod dead_letters;
mod degraded;
mod errors;
mod events;
mod helpers;
mod limits;
mod listing;
mod nats_outage;
mod near_cache;
mod openapi;
mod projections;
mod queries;
mod races;
mod readiness;
mod reads;
mod shutdown;
mod status;
mod writes;
