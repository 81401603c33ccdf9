//! Request ids (`x-request-id`) for requests that come without one: a random per-process prefix
//! and a counter. Unique across processes like a UUID, without asking the kernel for randomness
//! on every request (`MakeRequestUuid` does, a `getrandom` call per request on the hot path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::header::HeaderName;
use axum::http::HeaderValue;

/// The header a request's id travels in, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Debug)]
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

    /// The next id: `<prefix>-<counter>`, both as 16 hex digits.
    pub fn next_id(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [b'-'; 33];
        write_hex(&mut id[..16], self.prefix);
        write_hex(&mut id[17..], n);
        HeaderValue::from_bytes(&id).expect("hex digits and a dash are a valid header value")
    }
}

impl Default for ProcessRequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// `value` as 16 lower-case hex digits, without the formatting machinery of `format!`.
fn write_hex(out: &mut [u8], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((value >> ((15 - i) * 4)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_within_and_across_processes() {
        let (a, b) = (ProcessRequestIds::new(), ProcessRequestIds::new());
        let first = a.next_id();
        let second = a.clone().next_id();
        let other = b.next_id();
        assert_ne!(first, second);
        assert_ne!(first, other);
        assert_eq!(first.len(), 33);
        let expected = format!("{:016x}-{:016x}", a.prefix, 0);
        assert_eq!(first.to_str().unwrap(), expected);
        let mut hex = [0u8; 16];
        write_hex(&mut hex, 0x0123_4567_89ab_cdef);
        assert_eq!(&hex, b"0123456789abcdef");
    }
}
