//! `/readyz` names the dependency that is down.

use std::time::Duration;

use cacheflow_testkit::RedisServer;
use serde_json::Value;

use crate::helpers::spawn_app_with;

async fn readyz(app: &crate::helpers::TestApp) -> (u16, Value) {
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn readyz_reports_each_dependency() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut app = spawn_app_with(|s| {
        s.redis_url = cacheflow_shared::redact::SecretUrl::new(url);
        s.redis.timeout_ms = 300;
    })
    .await;
    // NATS connects in the background; give it a moment.
    let mut ready = (0, Value::Null);
    for _ in 0..100 {
        ready = readyz(&app).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert_eq!(ready.1["checks"]["store"]["status"], "up");

    redis.stop();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["redis"]["status"], "down", "{body}");
    assert_eq!(body["checks"]["store"]["status"], "up");
    redis.restart();

    app.nats.stop();
    let mut down = (0, Value::Null);
    for _ in 0..100 {
        down = readyz(&app).await;
        if down.1["checks"]["nats"]["status"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(down.0, 503);
    assert_eq!(down.1["checks"]["nats"]["status"], "down", "{}", down.1);
    assert_eq!(down.1["checks"]["redis"]["status"], "up", "{}", down.1);
}
