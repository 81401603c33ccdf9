//! Tracing set-up shared by both binaries: an env filter (`RUST_LOG` wins over the configured
//! filter) and optional JSON output.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored), so
/// tests may call it freely.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if settings.json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true),
            )
            .try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer()).try_init()
    };
    // A second init (tests) fails harmlessly; the first subscriber stays.
    drop(result);
}
