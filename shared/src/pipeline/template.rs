//! Key templates: literal text with `{field}` placeholders, e.g. `places:rating:{category}`.
//! `{id}` is the entity id; any other name is a document field.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use super::DocumentError;
use crate::document::Document;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Field(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    raw: String,
    segments: Vec<Segment>,
}

/// Template values must be short and free of braces, whitespace and control characters so that
/// one key can never be mistaken for another.
const MAX_VALUE_LEN: usize = 256;

impl KeyTemplate {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("a key template must not be empty".into());
        }
        let mut segments = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(format!("unbalanced `}}` in key template `{raw}`"));
            }
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in key template `{raw}`"))?;
            let name = &after[..close];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "`{{{name}}}` in key template `{raw}` is not a field name"
                ));
            }
            if matches!(segments.last(), Some(Segment::Field(_))) {
                return Err(format!(
                    "key template `{raw}` puts two fields side by side; separate them"
                ));
            }
            segments.push(Segment::Field(name.to_owned()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unbalanced `}}` in key template `{raw}`"));
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Self {
            raw: raw.to_owned(),
            segments,
        })
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The field names the template uses (`id` included if present).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Field(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    pub fn uses_id(&self) -> bool {
        self.fields().any(|f| f == "id")
    }

    /// Renders the key for one entity. Fails (naming the field) when a field is missing or its
    /// value cannot be part of a key.
    pub fn render(&self, id: &str, document: &Document) -> Result<String, DocumentError> {
        let mut key = String::with_capacity(self.raw.len() + id.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => key.push_str(text),
                Segment::Field(name) if name == "id" => key.push_str(id),
                Segment::Field(name) => key.push_str(&key_value(name, document.get(name))?),
            }
        }
        Ok(key)
    }

    /// Whether [`render`](Self::render) would succeed for `document` (the id aside), without
    /// building the key: validation runs on every event, before the planner renders it.
    pub fn check(&self, document: &Document) -> Result<(), DocumentError> {
        for name in self.fields().filter(|name| *name != "id") {
            key_value(name, document.get(name))?;
        }
        Ok(())
    }
}

fn key_value<'a>(field: &str, value: Option<&'a Value>) -> Result<Cow<'a, str>, DocumentError> {
    let text = match value {
        None | Some(Value::Null) => {
            return Err(DocumentError::new(field, "is required by a key template"))
        }
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Cow::Owned(n.to_string()),
        Some(_) => {
            return Err(DocumentError::new(
                field,
                "must be a string or an integer to be used in a key",
            ))
        }
    };
    if text.is_empty() || text.len() > MAX_VALUE_LEN {
        return Err(DocumentError::new(
            field,
            format!("must be 1 to {MAX_VALUE_LEN} bytes long to be used in a key"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '{' || c == '}')
    {
        return Err(DocumentError::new(
            field,
            "must not contain whitespace, control characters or braces to be used in a key",
        ));
    }
    Ok(text)
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = KeyTemplate::parse("places:rating:{category}").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), vec!["category"]);
        assert!(!t.uses_id());
        let doc = json!({"category": "cafe"}).as_object().unwrap().clone();
        assert_eq!(t.render("p1", &doc).unwrap(), "places:rating:cafe");
        let t = KeyTemplate::parse("place:{id}:h").unwrap();
        assert!(t.uses_id());
        assert_eq!(t.render("p1", &doc).unwrap(), "place:p1:h");
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in ["", "a:{", "a:}", "a:{}", "a:{b-c}", "{a}{b}", "a:{b}}"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn render_names_the_bad_field() {
        let t = KeyTemplate::parse("x:{category}").unwrap();
        let err = t.render("p1", &Default::default()).unwrap_err();
        assert_eq!(err.field, "category");
        let doc = json!({"category": "two words"})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(t.render("p1", &doc).unwrap_err().field, "category");
        let doc = json!({"category": 1.5}).as_object().unwrap().clone();
        assert_eq!(t.render("p1", &doc).unwrap_err().field, "category");
        let doc = json!({"category": 7}).as_object().unwrap().clone();
        assert_eq!(t.render("p1", &doc).unwrap(), "x:7");
    }

    #[test]
    fn check_fails_exactly_where_render_fails() {
        let t = KeyTemplate::parse("x:{category}:{id}:{n}").unwrap();
        let docs = [
            json!({}),
            json!({"category": "cafe"}),
            json!({"category": "cafe", "n": 3}),
            json!({"category": "cafe", "n": 3.5}),
            json!({"category": "", "n": 3}),
            json!({"category": "a{b", "n": 3}),
            json!({"category": "x".repeat(257), "n": 3}),
            json!({"category": null, "n": 3}),
            json!({"category": ["cafe"], "n": 3}),
        ];
        for doc in docs {
            let doc = doc.as_object().unwrap().clone();
            let (checked, rendered) = (t.check(&doc), t.render("p1", &doc));
            assert_eq!(checked.is_ok(), rendered.is_ok(), "{doc:?}");
            assert_eq!(checked.err(), rendered.err(), "{doc:?}");
        }
        // The id is the caller's, not the document's: an id-only template needs nothing.
        let t = KeyTemplate::parse("place:{id}").unwrap();
        assert!(t.check(&Default::default()).is_ok());
    }
}
