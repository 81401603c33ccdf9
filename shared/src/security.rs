//! API keys: the roles, the configured SHA-256 hashes, and the constant-time lookup of a key a
//! client presents.
//!
//! The configuration holds hashes, never keys (`API_KEYS="writer:<sha256 hex>,admin:<sha256 hex>"`),
//! so a leaked settings file or environment grants nothing. Parse errors name `API_KEYS` and the
//! position of the bad entry but never repeat its text: an operator who pasted a raw key by
//! mistake must not find it in a log.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What a key may do. Ordered: an admin key may do what a writer key may, a writer key what a
/// reader key may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyRole {
    /// `GET`/`HEAD` under `/v1/` (only checked when `security.require_read_key` is set).
    Reader,
    /// Every other method under `/v1/`: `PUT`, `PATCH`, `DELETE`.
    Writer,
    /// The operator routes under `/v1/admin/`.
    Admin,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Reader => "reader",
            KeyRole::Writer => "writer",
            KeyRole::Admin => "admin",
        }
    }

    /// Whether a key of this role may do what `needed` may.
    pub fn allows(self, needed: KeyRole) -> bool {
        self >= needed
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "reader" => Some(KeyRole::Reader),
            "writer" => Some(KeyRole::Writer),
            "admin" => Some(KeyRole::Admin),
            _ => None,
        }
    }

    /// 1..=3, so that 0 can mean "no key matched" in the constant-time lookup.
    fn rank(self) -> u8 {
        self as u8 + 1
    }

    fn from_rank(rank: u8) -> Option<Self> {
        match rank {
            1 => Some(KeyRole::Reader),
            2 => Some(KeyRole::Writer),
            3 => Some(KeyRole::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const DIGEST_LEN: usize = 32;

/// The configured keys, as (role, SHA-256 of the key). Empty means "no keys": the API is open.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    keys: Vec<(KeyRole, [u8; DIGEST_LEN])>,
}

/// Why `API_KEYS` was rejected. The message never contains any part of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API_KEYS: {0}")]
pub struct ApiKeysError(String);

impl ApiKeys {
    /// Parses `role:<sha256 hex>` entries separated by commas (whitespace around them is ignored).
    /// An empty or blank value means no keys.
    pub fn parse(value: &str) -> Result<Self, ApiKeysError> {
        if value.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_entries(value.split(','))
    }

    fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, ApiKeysError> {
        let entries: Vec<&str> = entries.into_iter().collect();
        let total = entries.len();
        let keys = entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_entry(entry.trim())
                    .map_err(|why| ApiKeysError(format!("entry {} of {total}: {why}", i + 1)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys have exactly this role.
    pub fn count(&self, role: KeyRole) -> usize {
        self.keys.iter().filter(|(r, _)| *r == role).count()
    }

    /// The role of a presented key, if it is one of the configured ones (the highest role if its
    /// hash is configured more than once).
    ///
    /// Constant time with respect to the key: its hash is compared with every configured hash,
    /// each comparison in constant time, with no early exit, so response timing tells nothing
    /// about how close a guess was or which entry it matched.
    pub fn role_of(&self, presented: &str) -> Option<KeyRole> {
        let digest: [u8; DIGEST_LEN] = Sha256::digest(presented.as_bytes()).into();
        let mut best = 0u8;
        for (role, hash) in &self.keys {
            let matched = hash.ct_eq(&digest);
            let candidate = u8::conditional_select(&0, &role.rank(), matched);
            // Ranks are not secret (roles are few and public); only the match is.
            best = best.max(candidate);
        }
        KeyRole::from_rank(best)
    }

    fn to_config_string(&self) -> String {
        self.keys
            .iter()
            .map(|(role, hash)| format!("{role}:{}", hex::encode(hash)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn parse_entry(entry: &str) -> Result<(KeyRole, [u8; DIGEST_LEN]), String> {
    let Some((role, hash)) = entry.split_once(':') else {
        return Err("expected <role>:<sha256 hex> (roles: reader, writer, admin)".into());
    };
    let role = KeyRole::parse(role.trim())
        .ok_or_else(|| "unknown role; expected reader, writer or admin".to_owned())?;
    let hash = hash.trim();
    if hash.len() != DIGEST_LEN * 2 {
        return Err(format!(
            "the hash must be a SHA-256 in hex (64 characters), not {} characters; configure \
             the hash of a key, never the key (`cacheflow-api hash-key <key>`)",
            hash.len()
        ));
    }
    let mut digest = [0u8; DIGEST_LEN];
    hex::decode_to_slice(hash, &mut digest)
        .map_err(|_| "the hash must contain hex digits only (0-9, a-f)".to_owned())?;
    Ok((role, digest))
}

/// The SHA-256 of a key in lowercase hex: what `API_KEYS` holds for it.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Counts per role only: hashes are not secrets, but there is nothing to gain from printing them.
impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("admin", &self.count(KeyRole::Admin))
            .field("writer", &self.count(KeyRole::Writer))
            .field("reader", &self.count(KeyRole::Reader))
            .finish()
    }
}

/// Serialised in the `API_KEYS` format, so the settings layers round-trip.
impl Serialize for ApiKeys {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_config_string())
    }
}

/// Accepts the `API_KEYS` string, or (in a settings file) a list of `role:hash` strings. Every
/// other type is refused without echoing the value: serde's default "invalid type" message
/// would quote it, and an all-digit value may well be a pasted key.
impl<'de> Deserialize<'de> for ApiKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ApiKeysVisitor)
    }
}

struct ApiKeysVisitor;

const EXPECTED: &str =
    "API_KEYS: expected a string of role:<sha256 hex> entries separated by commas";

impl<'de> Visitor<'de> for ApiKeysVisitor {
    type Value = ApiKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("role:<sha256 hex> entries separated by commas")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ApiKeys, E> {
        ApiKeys::parse(value).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ApiKeys, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<Entry>()? {
            entries.push(entry.0);
        }
        ApiKeys::from_entries(entries.iter().map(String::as_str)).map_err(de::Error::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<ApiKeys, E> {
        Ok(ApiKeys::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<ApiKeys, E> {
        Ok(ApiKeys::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<ApiKeys, E> {
        Err(E::custom(EXPECTED))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<ApiKeys, E> {
        Err(E::custom(EXPECTED))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<ApiKeys, E> {
        Err(E::custom(EXPECTED))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<ApiKeys, E> {
        Err(E::custom(EXPECTED))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<ApiKeys, E> {
        Err(E::custom(EXPECTED))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<ApiKeys, E> {
        Err(E::custom(EXPECTED))
    }

    fn visit_char<E: de::Error>(self, _: char) -> Result<ApiKeys, E> {
        Err(E::custom(EXPECTED))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<ApiKeys, A::Error> {
        Err(de::Error::custom(EXPECTED))
    }
}

/// One list entry; refuses non-strings without echoing them, like [`ApiKeysVisitor`].
struct Entry(String);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl Visitor<'_> for EntryVisitor {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a role:<sha256 hex> string")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Entry, E> {
                Ok(Entry(value.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Entry, E> {
                Err(E::custom(EXPECTED))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Entry, E> {
                Err(E::custom(EXPECTED))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Entry, E> {
                Err(E::custom(EXPECTED))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Entry, E> {
                Err(E::custom(EXPECTED))
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entries: &[(&str, &str)]) -> String {
        entries
            .iter()
            .map(|(role, key)| format!("{role}:{}", hash_key(key)))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn hash_key_is_sha256_hex() {
        // printf %s abc | sha256sum
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keys_map_to_their_roles() {
        let keys = ApiKeys::parse(&spec(&[
            ("writer", "w1"),
            ("admin", "a1"),
            ("reader", "r1"),
            ("writer", "w2"),
        ]))
        .unwrap();
        assert_eq!(keys.role_of("w1"), Some(KeyRole::Writer));
        assert_eq!(keys.role_of("w2"), Some(KeyRole::Writer));
        assert_eq!(keys.role_of("a1"), Some(KeyRole::Admin));
        assert_eq!(keys.role_of("r1"), Some(KeyRole::Reader));
        assert_eq!(keys.role_of("nope"), None);
        assert_eq!(keys.role_of(""), None);
        assert_eq!(keys.count(KeyRole::Writer), 2);
        assert!(!keys.is_empty());
    }

    #[test]
    fn the_highest_role_wins_for_a_key_listed_twice() {
        let keys = ApiKeys::parse(&spec(&[("reader", "k"), ("admin", "k")])).unwrap();
        assert_eq!(keys.role_of("k"), Some(KeyRole::Admin));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(KeyRole::Admin.allows(KeyRole::Writer));
        assert!(KeyRole::Admin.allows(KeyRole::Reader));
        assert!(KeyRole::Writer.allows(KeyRole::Reader));
        assert!(!KeyRole::Writer.allows(KeyRole::Admin));
        assert!(!KeyRole::Reader.allows(KeyRole::Writer));
    }

    #[test]
    fn whitespace_upper_case_hex_and_blank_values_are_accepted() {
        let upper = hash_key("k").to_uppercase();
        let keys = ApiKeys::parse(&format!(" writer : {upper} ")).unwrap();
        assert_eq!(keys.role_of("k"), Some(KeyRole::Writer));
        assert!(ApiKeys::parse("").unwrap().is_empty());
        assert!(ApiKeys::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_entry_and_never_echo_it() {
        let secret = "s3cr3t-key-value";
        let cases = [
            format!("writer:{}", hash_key("a")) + &format!(",{secret}"),
            format!("owner:{}", hash_key("a")),
            format!("writer:{secret}"),
            format!("writer:{}", "g".repeat(64)),
            format!("writer:{},", hash_key("a")),
        ];
        for case in &cases {
            let err = ApiKeys::parse(case).unwrap_err().to_string();
            assert!(err.starts_with("API_KEYS: entry "), "{err}");
            assert!(!err.contains(secret), "{err}");
            assert!(!err.contains(&hash_key("a")), "{err}");
            assert!(!err.contains("owner"), "{err}");
        }
        let err = ApiKeys::parse(&format!("admin:{secret}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 1 of 1") && err.contains("64"), "{err}");
    }

    #[test]
    fn debug_shows_counts_only() {
        let keys = ApiKeys::parse(&spec(&[("admin", "a")])).unwrap();
        let debug = format!("{keys:?}");
        assert_eq!(debug, "ApiKeys { admin: 1, writer: 0, reader: 0 }");
    }

    #[test]
    fn round_trips_through_serde() {
        let keys = ApiKeys::parse(&spec(&[("admin", "a"), ("reader", "r")])).unwrap();
        let json = serde_json::to_string(&keys).unwrap();
        let back: ApiKeys = serde_json::from_str(&json).unwrap();
        assert_eq!(back, keys);
        let list = format!(
            "[\"admin:{}\", \"reader:{}\"]",
            hash_key("a"),
            hash_key("r")
        );
        let from_list: ApiKeys = serde_json::from_str(&list).unwrap();
        assert_eq!(from_list, keys);
        let err = serde_json::from_str::<ApiKeys>("123456789").unwrap_err();
        assert!(!err.to_string().contains("123456789"), "{err}");
    }
}
