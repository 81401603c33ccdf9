use cacheflow_api::{shutdown_signal, Application};
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(Role::Api)?;
    telemetry::init(&settings.log);
    tracing::info!(
        store = %settings.store_url,
        redis = %settings.redis_url,
        nats = %settings.nats_url,
        addr = %settings.api_addr,
        "starting cacheflow-api"
    );
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
