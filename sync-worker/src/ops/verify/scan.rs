//! Paging through keys (`SCAN MATCH … TYPE …`) and through one sorted set's members (`ZSCAN`),
//! one page per round trip. Both may return a key or member twice when Redis rehashes meanwhile;
//! the passes count each entity once regardless.

use cacheflow_shared::pipeline::{KeyTemplate, Segment};
use redis::Cmd;

use super::context::Ctx;
use cacheflow_shared::cache::redis::glob_escape;

/// Where a `SCAN` or `ZSCAN` is.
struct Cursor {
    next: u64,
    done: bool,
}

impl Cursor {
    fn new() -> Self {
        Self {
            next: 0,
            done: false,
        }
    }

    fn moved_to(&mut self, next: u64) {
        self.next = next;
        self.done = next == 0;
    }
}

/// The keys matching a pattern, of one type.
pub(super) struct KeyScan {
    pattern: String,
    kind: &'static str,
    cursor: Cursor,
}

impl KeyScan {
    /// `pattern` is a `SCAN MATCH` glob (escape literal text with `glob_escape`).
    pub fn new(pattern: String, kind: &'static str) -> Self {
        Self {
            pattern,
            kind,
            cursor: Cursor::new(),
        }
    }

    /// The keys under `prefix` that `template` can render to, any value for each field.
    pub fn of_template(prefix: &str, template: &KeyTemplate, kind: &'static str) -> Self {
        let mut pattern = glob_escape(prefix);
        for segment in template.segments() {
            match segment {
                Segment::Literal(text) => pattern.push_str(&glob_escape(text)),
                Segment::Field(_) => pattern.push('*'),
            }
        }
        Self::new(pattern, kind)
    }

    /// The next page (possibly empty), `None` once the scan is complete.
    pub async fn next(&mut self, ctx: &Ctx<'_>) -> anyhow::Result<Option<Vec<String>>> {
        if self.cursor.done {
            return Ok(None);
        }
        let mut cmd = Cmd::new();
        cmd.arg("SCAN")
            .arg(self.cursor.next)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(ctx.batch)
            .arg("TYPE")
            .arg(self.kind);
        let (next, keys): (u64, Vec<String>) = ctx.command("scanning keys", &cmd).await?;
        self.cursor.moved_to(next);
        Ok(Some(keys))
    }
}

/// The members of one sorted set, with their scores.
pub(super) struct MemberScan {
    key: String,
    cursor: Cursor,
}

impl MemberScan {
    pub fn new(key: String) -> Self {
        Self {
            key,
            cursor: Cursor::new(),
        }
    }

    /// The next page (possibly empty), `None` once the scan is complete.
    pub async fn next(&mut self, ctx: &Ctx<'_>) -> anyhow::Result<Option<Vec<(String, f64)>>> {
        if self.cursor.done {
            return Ok(None);
        }
        let mut cmd = Cmd::new();
        cmd.arg("ZSCAN")
            .arg(&self.key)
            .arg(self.cursor.next)
            .arg("COUNT")
            .arg(ctx.batch);
        let (next, members): (u64, Vec<(String, f64)>) =
            ctx.command("scanning an index", &cmd).await?;
        self.cursor.moved_to(next);
        Ok(Some(members))
    }
}

/// Whether `key` (without prefix) is one `template` renders, for some non-empty field values.
pub(super) fn template_matches(template: &KeyTemplate, key: &str) -> bool {
    fn matches(segments: &[Segment], key: &str) -> bool {
        match segments.split_first() {
            None => key.is_empty(),
            Some((Segment::Literal(text), rest)) => key
                .strip_prefix(text.as_str())
                .is_some_and(|key| matches(rest, key)),
            // A field takes at least one character; try every length (templates are short and
            // never put two fields side by side).
            Some((Segment::Field(_), rest)) => key
                .char_indices()
                .skip(1)
                .map(|(at, _)| at)
                .chain([key.len()])
                .filter(|&at| at > 0)
                .any(|at| matches(rest, &key[at..])),
        }
    }
    matches(template.segments(), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_renderings() {
        let t = KeyTemplate::parse("place:{id}").unwrap();
        assert!(template_matches(&t, "place:p1"));
        assert!(template_matches(&t, "place:p1:h"));
        assert!(!template_matches(&t, "place:"));
        assert!(!template_matches(&t, "places:p1"));
        let t = KeyTemplate::parse("place:{id}:h").unwrap();
        assert!(template_matches(&t, "place:p1:h"));
        assert!(template_matches(&t, "place:a:b:h"));
        assert!(!template_matches(&t, "place:p1"));
        assert!(!template_matches(&t, "place::h"));
        let t = KeyTemplate::parse("{category}:{id}").unwrap();
        assert!(template_matches(&t, "cafe:p1"));
        assert!(!template_matches(&t, "cafe"));
    }

    #[test]
    fn template_patterns_escape_the_literal_text() {
        let t = KeyTemplate::parse("places:rating:{category}").unwrap();
        assert_eq!(
            KeyScan::of_template("t[1]:", &t, "zset").pattern,
            r"t\[1\]:places:rating:*"
        );
    }
}
