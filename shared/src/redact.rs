//! Connection URLs carry credentials (`redis://:pw@host`, `mongodb+srv://user:pw@cluster`), and some
//! settings are credentials (`nats.password`, `nats.token`); these types make sure only the
//! redacted form ever reaches a log line or an error message.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A connection URL whose `Debug` and `Display` hide the user info and any password/token query
/// parameters. The raw value is only reachable through [`SecretUrl::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its credentials, for handing to a client library. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL's scheme (`redis`, `sqlite`, `mongodb+srv`, ...), if it has one.
    pub fn scheme(&self) -> Option<&str> {
        self.0.split_once("://").map(|(scheme, _)| scheme)
    }

    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A secret setting (a password, a token). `Debug` and `Display` print `***`; the value is only
/// reachable through [`Secret::expose`]. It serialises as itself, for the settings layers only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for handing to a client library. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

const SECRET_PARAMS: &[&str] = &["password", "pass", "token", "secret", "authsource_password"];

/// Replaces `user:password@` with `***@` and secret-looking query parameters with `***`.
/// Works on strings that are not valid URLs too (it never echoes what it cannot parse).
pub fn redact_url(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_owned();
    };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    // The user info ends at the last '@' before the first '/' of the path.
    let authority_end = authority_and_path
        .find('/')
        .unwrap_or(authority_and_path.len());
    let (authority, path) = authority_and_path.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_user_info_and_secret_params() {
        assert_eq!(
            redact_url(
                "mongodb+srv://alice:s3cret@cluster0.example.net/db?retryWrites=true&password=x"
            ),
            "mongodb+srv://***@cluster0.example.net/db?retryWrites=true&password=***"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("sqlite://data/cacheflow.db"),
            "sqlite://data/cacheflow.db"
        );
    }

    #[test]
    fn secrets_print_as_stars() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "\"***\"");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(\"***\")");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let url = SecretUrl::new("rediss://user:hunter2@cache:6380");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!format!("{url}").contains("hunter2"));
        assert_eq!(url.expose(), "rediss://user:hunter2@cache:6380");
        assert_eq!(url.scheme(), Some("rediss"));
    }
}
