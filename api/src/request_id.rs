//! Request ids (`x-request-id`) for requests that come without one: a random per-process prefix
//! and a counter. Unique across processes like a UUID, without asking the kernel for randomness
//! on every request (`MakeRequestUuid` does, a `getrandom` call per request on the hot path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

#[derive(Clone)]
pub struct ProcessRequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl ProcessRequestIds {
    pub fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().as_u64_pair().0,
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for ProcessRequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl MakeRequestId for ProcessRequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}-{n:016x}", self.prefix);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_within_and_across_processes() {
        let request = Request::new(());
        let (mut a, mut b) = (ProcessRequestIds::new(), ProcessRequestIds::new());
        let first = a.make_request_id(&request).unwrap();
        let second = a.clone().make_request_id(&request).unwrap();
        let other = b.make_request_id(&request).unwrap();
        assert_ne!(first.header_value(), second.header_value());
        assert_ne!(first.header_value(), other.header_value());
        assert_eq!(first.header_value().len(), 33);
    }
}
