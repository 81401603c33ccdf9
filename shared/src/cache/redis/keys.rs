//! The Redis key layout: every key the adapter writes is `<prefix><rendered template>`, and each
//! entity has one meta hash under the same prefix, so a prefix (a test, a future cache
//! generation) owns a complete, self-consistent cache.

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

    /// The JSON list stored in the meta's `keys` / `idx`: full keys, sorted, no duplicates.
    pub fn key_list<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> String {
        let full: Vec<String> = keys.into_iter().map(|key| self.key(key)).collect();
        serde_json::to_string(&full).expect("a list of strings always serialises")
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
}
