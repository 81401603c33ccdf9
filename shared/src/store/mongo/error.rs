//! Driver errors as [`StoreError`]s: what a retry (by the client, or after fail-over) can fix is
//! `Unavailable`, everything else `Internal`.

use mongodb::error::{
    Error, ErrorKind, WriteFailure, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, SYSTEM_OVERLOADED_ERROR,
};

use crate::redact::SecretUrl;
use crate::store::StoreError;

const DUPLICATE_KEY: i32 = 11000;

/// Server codes that mean "not now" rather than "never": the node is unreachable, shutting down,
/// stepping down or not (yet) primary, or the operation ran out of time.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    133,   // FailedToSatisfyReadPreference
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10058, // LegacyNotPrimary
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

pub fn map_err(err: Error) -> StoreError {
    let message = format!("MongoDB: {}", err.kind);
    if is_transient(&err) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Internal(message)
    }
}

/// A connect-time error: names the server by its redacted URL and scrubs the credentials from the
/// driver's message in case it echoes part of the connection string.
pub fn connect_err(url: &SecretUrl, err: Error) -> StoreError {
    let message = format!(
        "cannot connect to MongoDB at {url}: {}",
        scrub(&err.kind.to_string(), url)
    );
    if is_transient(&err) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Internal(message)
    }
}

/// Another writer created the entity between our read and our insert.
pub fn is_duplicate_key(err: &Error) -> bool {
    server_code(err) == Some(DUPLICATE_KEY)
}

fn is_transient(err: &Error) -> bool {
    let transient_kind = matches!(
        err.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
    );
    transient_kind
        || [
            RETRYABLE_WRITE_ERROR,
            RETRYABLE_ERROR,
            SYSTEM_OVERLOADED_ERROR,
        ]
        .iter()
        .any(|label| err.contains_label(label))
        || server_code(err).is_some_and(|code| TRANSIENT_CODES.contains(&code))
}

fn server_code(err: &Error) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(err) => Some(err.code),
        ErrorKind::Write(WriteFailure::WriteError(err)) => Some(err.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(err)) => Some(err.code),
        _ => None,
    }
}

/// Removes the URL's user info, and its password alone, raw and percent-decoded.
fn scrub(message: &str, url: &SecretUrl) -> String {
    let raw = url.expose();
    let authority = raw
        .split_once("://")
        .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
    let Some((user_info, _)) = authority.rsplit_once('@') else {
        return message.to_owned();
    };
    let mut secrets = vec![user_info.to_owned()];
    if let Some((_, password)) = user_info.split_once(':') {
        secrets.push(password.to_owned());
        secrets.push(percent_decode(password));
    }
    secrets.retain(|s| !s.is_empty());
    // Longest first, so a password inside the user info does not leave the rest behind.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.iter().fold(message.to_owned(), |message, secret| {
        message.replace(secret.as_str(), "***")
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mongodb::bson::{doc, from_document};
    use mongodb::error::{CommandError, WriteError};

    use super::*;

    fn command(code: i32) -> Error {
        let err: CommandError =
            from_document(doc! { "code": code, "codeName": "X", "errmsg": "boom" }).unwrap();
        ErrorKind::Command(err).into()
    }

    fn write(code: i32) -> Error {
        let err: WriteError = from_document(doc! { "code": code, "errmsg": "boom" }).unwrap();
        ErrorKind::Write(WriteFailure::WriteError(err)).into()
    }

    #[test]
    fn network_and_failover_errors_are_unavailable() {
        let io = Error::from(ErrorKind::Io(Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))));
        assert!(matches!(map_err(io), StoreError::Unavailable(_)));
        for code in [189, 10107, 11600, 91, 50, 262] {
            assert!(
                matches!(map_err(command(code)), StoreError::Unavailable(_)),
                "{code}"
            );
        }
        assert!(matches!(map_err(write(64)), StoreError::Unavailable(_)));
    }

    #[test]
    fn other_errors_are_internal() {
        assert!(matches!(map_err(command(2)), StoreError::Internal(_)));
        assert!(matches!(map_err(command(13)), StoreError::Internal(_)));
        assert!(matches!(
            map_err(write(DUPLICATE_KEY)),
            StoreError::Internal(_)
        ));
    }

    #[test]
    fn duplicate_key_is_recognised_on_writes_and_commands() {
        assert!(is_duplicate_key(&write(11000)));
        assert!(is_duplicate_key(&command(11000)));
        assert!(!is_duplicate_key(&write(2)));
    }

    #[test]
    fn connect_errors_never_carry_the_credentials() {
        let url = SecretUrl::new("mongodb+srv://alice:p%40ss@cluster0.example.net/db");
        let err = Error::from(ErrorKind::Io(Arc::new(std::io::Error::other(
            "alice:p%40ss and p@ss and p%40ss",
        ))));
        let message = connect_err(&url, err).to_string();
        assert!(!message.contains("p@ss"), "{message}");
        assert!(!message.contains("p%40ss"), "{message}");
        assert!(
            message.contains("mongodb+srv://***@cluster0.example.net/db"),
            "{message}"
        );
        assert_eq!(
            scrub("no secrets", &SecretUrl::new("mongodb://h/db")),
            "no secrets"
        );
    }
}
