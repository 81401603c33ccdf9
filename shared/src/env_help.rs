//! The environment variables a binary reads, with their defaults, for `--help`: generated from
//! [`Settings::defaults`] and the list of top-level names the settings loader reads, so the help
//! cannot drift from what the binary does.

use std::fmt::Write as _;

use crate::config::{Role, Settings, TOP_LEVEL_ENV};

/// `Environment (defaults in brackets):` and one line per variable.
pub fn environment_help(role: Role) -> String {
    let defaults = Settings::defaults(role);
    let mut help = String::from("Environment (defaults in brackets):\n");
    for name in TOP_LEVEL_ENV {
        let (default, what) = match *name {
            "STORE_URL" => (
                defaults.store_url.to_string(),
                "the store of record: sqlite://PATH, mongodb://…, mongodb+srv://…",
            ),
            "REDIS_URL" => (
                defaults.redis_url.to_string(),
                "redis:// or rediss:// (TLS)",
            ),
            "NATS_URL" => (defaults.nats_url.to_string(), "nats:// or tls://"),
            "API_ADDR" => (defaults.api_addr.to_string(), "where the API listens"),
            "METRICS_ADDR" => (
                defaults.metrics_addr.to_string(),
                "where GET /metrics is served",
            ),
            "PIPELINE_CONFIG" => (
                defaults.pipeline_config.display().to_string(),
                "the collections and their projections",
            ),
            "ADMIN_ENABLED" => (
                defaults.admin_enabled.to_string(),
                "serve the operator routes under /v1/admin/",
            ),
            "API_KEYS" => (
                "unset: the API is open".to_owned(),
                "role:<sha256 hex>,… (roles reader, writer, admin); see `hash-key`",
            ),
            other => (String::new(), other),
        };
        let _ = writeln!(help, "  {name:<28} [{default}]  {what}");
    }
    let rest = [
        (
            "CACHEFLOW_CONFIG",
            "config/cacheflow.toml if present",
            "an optional settings file (TOML, the same keys)",
        ),
        (
            "CACHEFLOW_<SECTION>__<KEY>",
            "see shared/src/config.rs",
            "any other setting, e.g. CACHEFLOW_OUTBOX__BATCH_SIZE=512",
        ),
        (
            "RUST_LOG",
            "info",
            "log filter; CACHEFLOW_LOG__JSON=true for JSON lines",
        ),
    ];
    for (name, default, what) in rest {
        let _ = writeln!(help, "  {name:<28} [{default}]  {what}");
    }
    help
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_listed_with_its_default() {
        let api = environment_help(Role::Api);
        for name in TOP_LEVEL_ENV {
            let line = api
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} is not listed:\n{api}"));
            assert!(!line.contains("[]"), "{name} has no default: {line}");
        }
        assert!(api.contains("[127.0.0.1:8080]") && api.contains("[127.0.0.1:9464]"));
        assert!(api.contains("[sqlite://data/cacheflow.db]"), "{api}");
        assert!(environment_help(Role::Worker).contains("[127.0.0.1:9465]"));
    }
}
