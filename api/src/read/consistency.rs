//! Read-your-writes: every write answers a consistency token (`Cacheflow-Token`, the version it
//! committed); a read of that entity sending it back (or `?min_version=`) never answers an older
//! version: a cached copy older than that is passed over for the store.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::Response;

use crate::error::ApiError;

/// The header writes answer and reads accept.
pub const TOKEN_HEADER: &str = "cacheflow-token";

/// The token of a write that committed `version`.
pub fn set_token(response: &mut Response, version: u64) {
    response
        .headers_mut()
        .insert(TOKEN_HEADER, HeaderValue::from(version));
}

/// The least version a read may answer: the larger of `?min_version=` and `Cacheflow-Token`,
/// `0` when neither is sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct MinVersion(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for MinVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let from_query = match parts.uri.query() {
            Some(query) => query_min_version(query)?,
            None => 0,
        };
        let from_token = match parts.headers.get(TOKEN_HEADER) {
            Some(token) => token
                .to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "{TOKEN_HEADER} must be the token a write answered (a version number)"
                    ))
                })?,
            None => 0,
        };
        Ok(Self(from_query.max(from_token)))
    }
}

fn query_min_version(query: &str) -> Result<u64, ApiError> {
    let mut least = 0;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "min_version" {
            let version = value.parse::<u64>().map_err(|_| {
                ApiError::InvalidQuery(format!(
                    "min_version `{}` must be a non-negative integer",
                    value.chars().take(40).collect::<String>()
                ))
            })?;
            least = least.max(version);
        }
    }
    Ok(least)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_version_is_read_from_the_query() {
        assert_eq!(query_min_version("min_version=7").unwrap(), 7);
        assert_eq!(query_min_version("a=1&min_version=3").unwrap(), 3);
        assert_eq!(query_min_version("a=1").unwrap(), 0);
        assert!(query_min_version("min_version=-1").is_err());
        assert!(query_min_version("min_version=x").is_err());
    }
}
