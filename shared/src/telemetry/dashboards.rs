//! The metric names Grafana dashboards query, and the metric names a scrape holds: tests compare
//! the two so that a dashboard never plots a metric the code does not emit.
//!
//! The PromQL reader is deliberately small: it finds the metric names of an expression by
//! skipping strings, label matchers (`{...}`), ranges (`[...]`), Grafana variables (`$x`, `${x}`),
//! numbers and durations, function calls (an identifier followed by `(`), keywords, and the label
//! lists of `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`. What is left are
//! metric names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// The exposition-format suffixes of a histogram's (or summary's) series.
const SERIES_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

/// PromQL keywords (case-insensitive) that are neither metric names nor function calls.
const KEYWORDS: &[&str] = &[
    // aggregation operators (`sum by (x) (...)`, `sum(...)`)
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    // set and binary operators, modifiers
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "offset",
    // literals
    "inf",
    "nan",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric families every Grafana dashboard (`*.json`) in `dir` queries: the names in each
/// panel target's `expr` and in query variables, with a histogram's `_bucket`, `_sum` and
/// `_count` series counted as the histogram itself.
///
/// # Panics
/// When `dir` cannot be read or a dashboard is not JSON (this is a test helper; the message
/// names the file).
pub fn dashboard_metric_names(dir: &Path) -> BTreeSet<String> {
    dashboard_queries(dir)
        .values()
        .flatten()
        .flat_map(|expr| promql_metric_names(expr))
        .map(|name| base_metric_name(&name).to_owned())
        .collect()
}

/// Every PromQL query of every dashboard in `dir`, by file name.
///
/// # Panics
/// As [`dashboard_metric_names`].
pub fn dashboard_queries(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the dashboards in {}: {e}", dir.display()));
    let mut queries = BTreeMap::new();
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        queries.insert(name, dashboard_expressions(&dashboard));
    }
    queries
}

/// The PromQL expressions of one dashboard: every `expr` string (panel targets, at any depth:
/// rows nest panels) and the PromQL inside query variables (`label_values(<selector>, label)`,
/// `query_result(<expr>)`).
pub fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_exprs(dashboard, &mut found);
    let variables = dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for variable in variables {
        if variable.get("type").and_then(Value::as_str) != Some("query") {
            continue;
        }
        let query = match variable.get("query") {
            Some(Value::String(q)) => Some(q.as_str()),
            Some(Value::Object(o)) => o.get("query").and_then(Value::as_str),
            _ => None,
        };
        if let Some(expr) = query.and_then(variable_promql) {
            found.push(expr.to_owned());
        }
    }
    found
}

fn collect_exprs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(expr) if key == "expr" => found.push(expr.clone()),
                    _ => collect_exprs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, found)),
        _ => {}
    }
}

/// The PromQL part of a Grafana Prometheus query variable, if it has one.
fn variable_promql(query: &str) -> Option<&str> {
    let query = query.trim();
    let inner = |prefix: &str| {
        query
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(args) = inner("label_values(") {
        // `label_values(selector, label)`; `label_values(label)` names no metric.
        return args.rsplit_once(',').map(|(selector, _)| selector.trim());
    }
    inner("query_result(")
}

/// `name` without a histogram/summary series suffix (`_bucket`, `_sum`, `_count`).
pub fn base_metric_name(name: &str) -> &str {
    SERIES_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The metric names (as written, suffixes kept) a PromQL expression selects.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_group(&chars, i, '{', '}'),
            '[' => i = skip_group(&chars, i, '[', ']'),
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_group(&chars, i, '{', '}');
                } else {
                    while i < chars.len() && is_ident_char(chars[i]) {
                        i += 1;
                    }
                }
            }
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // A number or a duration (`0.99`, `1e3`, `0x1f`, `5m`).
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_'))
                {
                    i += 1;
                }
            }
            _ if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let lower = ident.to_ascii_lowercase();
                let next = next_non_space(&chars, i);
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if let Some(open) = next.filter(|&j| chars[j] == '(') {
                        i = skip_group(&chars, open, '(', ')');
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || next.is_some_and(|j| chars[j] == '(')
                {
                    // A keyword, or a function call: its arguments are read on.
                } else {
                    names.insert(ident);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn next_non_space(chars: &[char], from: usize) -> Option<usize> {
    (from..chars.len()).find(|&j| !chars[j].is_whitespace())
}

/// The index after the string starting at `start` (its quote character).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The index after the group opened at `start`, nested groups and strings inside skipped.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// The metric families with at least one sample in a Prometheus text exposition (a scrape):
/// a histogram's `_bucket`, `_sum` and `_count` series count as the histogram.
pub fn exposition_metric_names(text: &str) -> BTreeSet<String> {
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name, kind);
            }
        }
    }
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|series| {
            let base = base_metric_name(series);
            let is_distribution = matches!(types.get(base).copied(), Some("histogram" | "summary"));
            if base != series && is_distribution && !types.contains_key(series) {
                base.to_owned()
            } else {
                series.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(expr: &str) -> Vec<String> {
        promql_metric_names(expr).into_iter().collect()
    }

    #[test]
    fn finds_metric_names_and_skips_everything_else() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, route) (rate(cacheflow_http_request_duration_seconds_bucket{route=~"/v1/.*", status_class!="5xx"}[$__rate_interval])))"#
            ),
            ["cacheflow_http_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names(
                "sum(rate(a_total{result=~\"hit|negative_hit\"}[5m])) / ignoring(result) \
                 group_left(collection) sum without (instance, job) (rate(b_total[5m] offset 1h))"
            ),
            ["a_total", "b_total"]
        );
        assert_eq!(
            names("SUM BY (outcome) (increase(x_total[1h:5m])) > bool 0 and on(job) up"),
            ["up", "x_total"]
        );
        assert_eq!(
            names(
                r#"label_replace(m, "dst", "$1", "src", "(.*)") or vector(1e3) unless n @ start()"#
            ),
            ["m", "n"]
        );
        assert_eq!(
            names(
                "max(cacheflow_consumer_pending_messages{job=\"${job}\"}) * $factor + .5 # by (x)\n- q:recorded:rate5m"
            ),
            ["cacheflow_consumer_pending_messages", "q:recorded:rate5m"]
        );
        // Quotes inside strings and matchers do not end them early.
        assert_eq!(
            names(r#"a{x="a\"}b", y='it\'s'} + count_values("v}", c)"#),
            ["a", "c"]
        );
        assert!(names("sum(rate(").is_empty());
    }

    #[test]
    fn base_names_drop_series_suffixes() {
        assert_eq!(base_metric_name("x_seconds_bucket"), "x_seconds");
        assert_eq!(base_metric_name("x_seconds_sum"), "x_seconds");
        assert_eq!(base_metric_name("x_count"), "x");
        assert_eq!(base_metric_name("x_total"), "x_total");
    }

    #[test]
    fn reads_targets_nested_panels_and_query_variables() {
        let dashboard = json!({
            "panels": [
                {"targets": [{"expr": "rate(a_total[5m])"}, {"expr": "b_seconds_count"}]},
                {"type": "row", "panels": [{"targets": [{"expr": "c"}]}]},
            ],
            "templating": {"list": [
                {"type": "datasource", "query": "prometheus"},
                {"type": "query", "query": "label_values(d_total{x=\"1\"}, route)"},
                {"type": "query", "query": {"query": "query_result(topk(3, e))", "refId": "V"}},
                {"type": "query", "query": "label_values(job)"},
            ]},
        });
        let exprs = dashboard_expressions(&dashboard);
        let found: BTreeSet<String> = exprs
            .iter()
            .flat_map(|e| promql_metric_names(e))
            .map(|n| base_metric_name(&n).to_owned())
            .collect();
        let expected: BTreeSet<String> = ["a_total", "b_seconds", "c", "d_total", "e"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn reads_every_dashboard_file_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("one.json"),
            json!({"panels": [{"targets": [{"expr": "sum(rate(x_seconds_bucket[1m]))"}]}]})
                .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("two.json"),
            json!({"panels": [{"targets": [{"expr": "y_total"}]}]}).to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.md"), "not a dashboard: z_total").unwrap();
        let found: Vec<String> = dashboard_metric_names(dir.path()).into_iter().collect();
        assert_eq!(found, ["x_seconds", "y_total"]);
    }

    #[test]
    fn exposition_names_group_histogram_series() {
        let scrape = "\
# HELP a_total A.
# TYPE a_total counter
a_total{x=\"1\"} 3

# TYPE h_seconds histogram
h_seconds_bucket{le=\"0.1\"} 1
h_seconds_bucket{le=\"+Inf\"} 1
h_seconds_sum 0.05
h_seconds_count 1
# TYPE described_only gauge
# TYPE g_count gauge
g_count 2
";
        let found: Vec<String> = exposition_metric_names(scrape).into_iter().collect();
        assert_eq!(found, ["a_total", "g_count", "h_seconds"]);
    }
}
