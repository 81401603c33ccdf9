//! The Redis key layout: every key the adapter writes is `<prefix><rendered template>`, and each
//! entity has one meta hash under the same prefix, so a prefix (a test, a future cache
//! generation) owns a complete, self-consistent cache.

use std::fmt;
use std::io::{self, Write};

use serde::ser::{Serialize, Serializer};

/// Where an entity's version and occupied keys live, relative to the prefix.
const META_SEGMENT: &str = "cacheflow:meta:";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of a rendered key template.
    pub fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// `<prefix>cacheflow:meta:<collection>:<id>`: a hash with `v` (the cached version), `d`
    /// (`1` for a tombstone), `keys` and `idx` (JSON lists of the full entity and index keys the
    /// entity occupies).
    pub fn meta(&self, collection: &str, id: &str) -> String {
        format!("{}{META_SEGMENT}{collection}:{id}", self.prefix)
    }

    /// The JSON list stored in the meta's `keys` / `idx`: full keys, in the given order (the
    /// planner's sets are sorted and have no duplicates).
    pub fn key_list<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> String {
        let keys: Vec<&str> = keys.into_iter().collect();
        serde_json::to_string(&FullKeys(&self.prefix, &keys))
            .expect("a list of strings always serialises")
    }

    // The writers below put the same bytes as `key`, `meta` and `key_list` straight into a
    // command's argument buffer: encoding a batch allocated a string per key, list and meta,
    // a large share of the worker's time per event.

    /// Writes [`key`](Self::key)`(key)`.
    pub(super) fn write_key(&self, out: &mut dyn Write, key: &str) -> io::Result<()> {
        out.write_all(self.prefix.as_bytes())?;
        out.write_all(key.as_bytes())
    }

    /// Writes [`meta`](Self::meta)`(collection, id)`.
    pub(super) fn write_meta(
        &self,
        out: &mut dyn Write,
        collection: &str,
        id: &str,
    ) -> io::Result<()> {
        write!(out, "{}{META_SEGMENT}{collection}:{id}", self.prefix)
    }

    /// Writes [`key_list`](Self::key_list)`(keys)`.
    pub(super) fn write_key_list(&self, out: &mut dyn Write, keys: &[&str]) -> io::Result<()> {
        // Keys rarely hold a character JSON escapes; then the list is written as it is.
        if needs_escape(&self.prefix) || keys.iter().any(|key| needs_escape(key)) {
            return serde_json::to_writer(out, &FullKeys(&self.prefix, keys))
                .map_err(io::Error::from);
        }
        out.write_all(b"[")?;
        for (n, key) in keys.iter().enumerate() {
            out.write_all(if n == 0 { b"\"" } else { b",\"" })?;
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(key.as_bytes())?;
            out.write_all(b"\"")?;
        }
        out.write_all(b"]")
    }
}

/// `text` as a `SCAN MATCH` pattern that matches only itself: the glob characters escaped.
/// Prefixes and collection names are configuration, so they may hold any of them.
pub fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Whether serde_json escapes a character of `text` in a JSON string: control characters, `"`
/// and `\`, nothing else.
fn needs_escape(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Serialises as the JSON list of `prefix + key` for each key, without building the strings.
struct FullKeys<'a>(&'a str, &'a [&'a str]);

impl Serialize for FullKeys<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.1.iter().map(|key| FullKey(self.0, key)))
    }
}

/// One full key: serialised as one JSON string, escaped exactly as the concatenation would be.
struct FullKey<'a>(&'a str, &'a str);

impl fmt::Display for FullKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

impl Serialize for FullKey<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_prefix() {
        let layout = KeyLayout::new("g2:");
        assert_eq!(layout.key("place:p1"), "g2:place:p1");
        assert_eq!(layout.meta("places", "p1"), "g2:cacheflow:meta:places:p1");
        assert_eq!(layout.key_list(["a", "b"]), r#"["g2:a","g2:b"]"#);
        assert_eq!(KeyLayout::default().key_list([]), "[]");
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(
            glob_escape("t1:cacheflow:meta:places:"),
            "t1:cacheflow:meta:places:"
        );
        assert_eq!(glob_escape(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    }

    #[test]
    fn the_writers_write_what_the_builders_return() {
        let written = |write: &dyn Fn(&mut dyn Write) -> io::Result<()>| {
            let mut out = Vec::new();
            write(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        // Characters JSON must escape, in the prefix and in the keys.
        let layout = KeyLayout::new("p\"\\\u{1}:");
        let keys = ["a\tb", "\u{7f}é\"", "", "/"];
        let naive: Vec<String> = keys.iter().map(|key| layout.key(key)).collect();
        assert_eq!(
            layout.key_list(keys),
            serde_json::to_string(&naive).unwrap()
        );
        // Every character below 0x80, escaped or not, in the fast and the escaping path.
        let ascii: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        for layout in [KeyLayout::new("g2:"), layout] {
            for key in &ascii {
                let naive = serde_json::to_string(&[layout.key(key)]).unwrap();
                assert_eq!(layout.key_list([key.as_str()]), naive);
                let written = written(&|out| layout.write_key_list(out, &[key.as_str()]));
                assert_eq!(written, naive, "{key:?}");
            }
        }
        let plain = KeyLayout::new("g2:");
        for list in [&["place:p1", "place:p1:h", "é"][..], &[]] {
            let written = written(&|out| plain.write_key_list(out, list));
            assert_eq!(written, plain.key_list(list.iter().copied()));
        }
        let layout = KeyLayout::new("p\"\\\u{1}:");
        assert_eq!(
            written(&|out| layout.write_key_list(out, &keys)),
            layout.key_list(keys)
        );
        assert_eq!(
            written(&|out| layout.write_key(out, "a:b")),
            layout.key("a:b")
        );
        assert_eq!(
            written(&|out| layout.write_meta(out, "places", "p1")),
            layout.meta("places", "p1")
        );
    }
}
