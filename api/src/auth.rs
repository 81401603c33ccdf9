//! API keys. The edge middleware ([`crate::edge`]), around every route, decides from the method and the path alone which
//! role a request needs, and checks the `Authorization: Bearer` key against `API_KEYS`:
//!
//! | request | needs |
//! |---|---|
//! | `/healthz`, `/readyz`, `/openapi.json`, the pages of `/docs` and `/console` | nothing |
//! | anything under `/v1/admin/` | `admin` |
//! | `GET`/`HEAD` elsewhere | `reader` if `security.require_read_key`, else nothing |
//! | any other method elsewhere | `writer` |
//!
//! Deciding from the method and path alone, for every route and the fallback alike, means a
//! route added later is covered without opting in, and an
//! unauthenticated client learns nothing about which routes exist. Axum matches routes on the raw
//! (still percent-encoded) path, which is what the prefix check sees too.
//!
//! The key is never logged: the `Authorization` header is marked sensitive for every layer, the
//! request span records only method, path and request id, and errors never quote the key.

use std::sync::Arc;

use axum::http::{header, HeaderMap, Method};
use cacheflow_shared::config::Settings;
use cacheflow_shared::security::{ApiKeys, KeyRole};

use crate::error::ApiError;

/// Paths served to anyone: probes must work without credentials, and the API description is
/// public.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/openapi.json"];
const ADMIN_PREFIX: &str = "/v1/admin/";

/// The configured keys and how reads are treated; cheap to clone into every route's layer.
#[derive(Clone, Debug)]
pub struct Auth {
    inner: Arc<Policy>,
}

#[derive(Debug)]
struct Policy {
    keys: ApiKeys,
    require_read_key: bool,
}

impl Auth {
    pub fn new(keys: ApiKeys, require_read_key: bool) -> Self {
        Self {
            inner: Arc::new(Policy {
                keys,
                require_read_key,
            }),
        }
    }

    /// From the settings, saying at start-up which mode the API runs in: without keys it is open
    /// to anyone who can reach it, which must not go unnoticed outside a laptop.
    pub fn from_settings(settings: &Settings) -> Self {
        let keys = &settings.api_keys;
        if keys.is_empty() {
            tracing::warn!(
                "API_KEYS is not set: the API is OPEN, anyone who can reach it may write and \
                 invalidate; for local development only"
            );
        } else {
            tracing::info!(
                admin = keys.count(KeyRole::Admin),
                writer = keys.count(KeyRole::Writer),
                reader = keys.count(KeyRole::Reader),
                require_read_key = settings.security.require_read_key,
                "API keys required"
            );
        }
        Self::new(keys.clone(), settings.security.require_read_key)
    }

    /// The role `method path` needs, or `None` when it is open.
    pub fn required_role(&self, method: &Method, path: &str) -> Option<KeyRole> {
        if OPEN_PATHS.contains(&path) || crate::ui::is_ui_path(path) {
            return None;
        }
        if path.starts_with(ADMIN_PREFIX) || path == ADMIN_PREFIX.trim_end_matches('/') {
            return Some(KeyRole::Admin);
        }
        if *method == Method::GET || *method == Method::HEAD {
            return self.inner.require_read_key.then_some(KeyRole::Reader);
        }
        Some(KeyRole::Writer)
    }

    /// Whether the request may proceed: `401` without a known key, `403` with too weak a one.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.inner.keys.is_empty() {
            return Ok(());
        }
        let Some(needed) = self.required_role(method, path) else {
            return Ok(());
        };
        let presented = bearer(headers).ok_or(ApiError::Unauthorized(
            "this request needs an API key: send `Authorization: Bearer <key>`",
        ))?;
        let held = self
            .inner
            .keys
            .role_of(presented)
            .ok_or(ApiError::Unauthorized("unknown API key"))?;
        if held.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden { held, needed })
        }
    }
}

/// The key of an `Authorization: Bearer <key>` header (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use cacheflow_shared::security::hash_key;

    use super::*;

    fn auth(require_read_key: bool) -> Auth {
        let keys = ApiKeys::parse(&format!(
            "reader:{},writer:{},admin:{}",
            hash_key("r"),
            hash_key("w"),
            hash_key("a")
        ))
        .unwrap();
        Auth::new(keys, require_read_key)
    }

    fn with_key(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn code(result: Result<(), ApiError>) -> &'static str {
        result.err().map_or("ok", |e| e.code())
    }

    #[test]
    fn roles_by_method_and_path() {
        let open = auth(false);
        let strict = auth(true);
        let get = Method::GET;
        let put = Method::PUT;
        for path in OPEN_PATHS {
            assert_eq!(strict.required_role(&get, path), None, "{path}");
        }
        assert_eq!(open.required_role(&get, "/v1/places/p1"), None);
        assert_eq!(
            strict.required_role(&Method::HEAD, "/v1/places/p1"),
            Some(KeyRole::Reader)
        );
        assert_eq!(
            open.required_role(&put, "/v1/places/p1"),
            Some(KeyRole::Writer)
        );
        assert_eq!(
            open.required_role(&Method::DELETE, "/v1/places/p1"),
            Some(KeyRole::Writer)
        );
        assert_eq!(
            open.required_role(&Method::POST, "/v1/admin/invalidate"),
            Some(KeyRole::Admin)
        );
        assert_eq!(
            open.required_role(&get, "/v1/admin/status"),
            Some(KeyRole::Admin)
        );
        assert_eq!(open.required_role(&get, "/v1/admin"), Some(KeyRole::Admin));
        // A collection whose name merely starts with "admin" is an ordinary collection.
        assert_eq!(open.required_role(&get, "/v1/administrators/x"), None);
        // Unknown paths are not open for writes either.
        assert_eq!(open.required_role(&put, "/other"), Some(KeyRole::Writer));
    }

    #[test]
    fn keys_are_checked_against_the_role() {
        let auth = auth(false);
        let put = Method::PUT;
        let path = "/v1/places/p1";
        assert_eq!(
            code(auth.check(&put, path, &HeaderMap::new())),
            "unauthorized"
        );
        assert_eq!(
            code(auth.check(&put, path, &with_key("Bearer nope"))),
            "unauthorized"
        );
        assert_eq!(
            code(auth.check(&put, path, &with_key("Basic dzp3"))),
            "unauthorized"
        );
        assert_eq!(
            code(auth.check(&put, path, &with_key("Bearer "))),
            "unauthorized"
        );
        assert_eq!(
            code(auth.check(&put, path, &with_key("Bearer r"))),
            "forbidden"
        );
        assert_eq!(code(auth.check(&put, path, &with_key("Bearer w"))), "ok");
        assert_eq!(code(auth.check(&put, path, &with_key("bearer  a "))), "ok");
        let admin = "/v1/admin/invalidate";
        let post = Method::POST;
        assert_eq!(
            code(auth.check(&post, admin, &with_key("Bearer w"))),
            "forbidden"
        );
        assert_eq!(code(auth.check(&post, admin, &with_key("Bearer a"))), "ok");
        assert_eq!(
            code(auth.check(&Method::GET, path, &HeaderMap::new())),
            "ok"
        );
    }

    #[test]
    fn without_keys_everything_is_open() {
        let auth = Auth::new(ApiKeys::default(), false);
        assert_eq!(
            code(auth.check(&Method::POST, "/v1/admin/invalidate", &HeaderMap::new())),
            "ok"
        );
    }

    #[test]
    fn errors_never_quote_the_key() {
        let auth = auth(false);
        let err = auth
            .check(
                &Method::PUT,
                "/v1/places/p1",
                &with_key("Bearer guessed-key-123"),
            )
            .unwrap_err();
        assert!(!err.to_string().contains("guessed-key-123"));
        let err = auth
            .check(&Method::PUT, "/v1/places/p1", &with_key("Bearer r"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "this reader key cannot do this: it needs a writer key"
        );
    }
}
