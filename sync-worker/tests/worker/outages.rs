//! Redis stopped and restarted under a running worker: the worker neither crashes nor acks
//! what it could not write, and converges once Redis is back.

use cacheflow_testkit::RedisServer;
use tokio::task::block_in_place;

use crate::gen::{history, rng};
use crate::helpers::{connect_redis, eventually, pipeline, TestEnv};
use crate::state::assert_projection_of;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_recovers_when_redis_comes_back() {
    let mut redis = block_in_place(RedisServer::start);
    let env = TestEnv::with_redis("outage", &redis.url()).await;
    let worker = env.spawn_worker();
    let mut rng = rng(7);

    let before = history(&mut rng, "a", 30, 3);
    env.publish(&before).await;
    env.wait_drained().await;

    block_in_place(|| redis.stop());
    let during = history(&mut rng, "b", 30, 3);
    env.publish(&during).await;
    // The worker took the batch and keeps it unacked while it retries.
    eventually("the worker to hold the batch it cannot write", || async {
        env.consumer_info()
            .await
            .filter(|info| info.num_ack_pending > 0)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !worker.task.is_finished(),
        "the worker gave up while Redis was down"
    );
    let info = env.consumer_info().await.expect("consumer info");
    assert!(
        info.num_ack_pending > 0,
        "events were acked while Redis was down: {info:?}"
    );

    // Back, empty (no persistence): the script is gone too and must be reloaded.
    block_in_place(|| redis.restart());
    env.wait_drained().await;
    let after = history(&mut rng, "c", 30, 3);
    env.publish(&after).await;
    env.wait_drained().await;

    // Exactly the events written since the restart: what was acked before it is lost with
    // Redis's memory, by design (backfill/replay repair that), and nothing else is there.
    let mut conn = connect_redis(&redis.url()).await;
    let written: Vec<_> = during.iter().chain(&after).cloned().collect();
    assert_projection_of(&mut conn, &pipeline(), &env.layout(), &written).await;
    let stats = worker.stop().await;
    assert!(stats.applied > 0, "{stats:?}");
}
