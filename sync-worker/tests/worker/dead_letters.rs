//! Poison events go to `<prefix>.dlq.<collection>.<seq>` with the reason in headers, are acked,
//! and the worker carries on with the next events.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use cacheflow_shared::event::Event;
use cacheflow_sync_worker::dlq;
use futures::StreamExt;
use redis::AsyncCommands;

use crate::gen::{place, upsert};
use crate::helpers::{TestEnv, DEADLINE};

#[tokio::test]
async fn poison_events_are_dead_lettered_with_a_reason_and_the_worker_moves_on() {
    let env = TestEnv::new("dlq").await;
    let worker = env.spawn_worker();
    let prefix = env.settings.stream.subject_prefix.clone();
    let mut high = place("p2", 1, "cafe", 1.0, 2.0, 48.0);
    high.insert("rating".into(), "high".into());
    let unknown = Event::upsert("nope", "x1", 1, place("x1", 1, "cafe", 1.0, 2.0, 48.0));
    let high = Event::upsert("places", "p2", 1, high);
    env.publish_raw([
        (format!("{prefix}.places.p9"), b"{not json".to_vec()),
        (unknown.subject(&prefix), unknown.encode()),
        (high.subject(&prefix), high.encode()),
    ])
    .await;
    let good = upsert("p1", 1, "cafe", 4.0);
    env.publish(std::slice::from_ref(&good)).await;
    env.wait_drained().await;

    // Only the good event reached Redis.
    env.assert_projection(&[good]).await;
    let stats = worker.stop().await;
    assert_eq!((stats.applied, stats.dead_lettered), (1, 3), "{stats:?}");
    // The dead letters are in the same stream: they came round once and were skipped, not
    // dead-lettered again (which would loop forever).
    assert_eq!(stats.skipped, 3, "{stats:?}");

    let letters = read_dead_letters(&env, 3).await;
    let expected = [
        (
            "unknown",
            format!("{prefix}.places.p9"),
            "undecodable event",
        ),
        (
            "nope",
            unknown.subject(&prefix),
            "collection `nope` is not in the pipeline",
        ),
        (
            "places",
            high.subject(&prefix),
            "field `rating` must be of type number",
        ),
    ];
    for ((subject, headers, payload), (collection, original, reason)) in
        letters.iter().zip(&expected)
    {
        let seq = headers
            .get(dlq::STREAM_SEQ)
            .expect("stream seq header")
            .to_string();
        assert_eq!(subject, &format!("{prefix}.dlq.{collection}.{seq}"));
        assert_eq!(headers.get(dlq::SUBJECT).unwrap().as_str(), original);
        let got = headers.get(dlq::REASON).expect("reason header").to_string();
        assert!(
            got.contains(reason),
            "reason {got:?} should mention {reason:?}"
        );
        assert!(
            !payload.is_empty(),
            "the dead letter carries the original payload"
        );
    }
}

#[tokio::test]
async fn a_key_of_the_wrong_type_dead_letters_only_that_event() {
    let env = TestEnv::new("wrongtype").await;
    let mut redis = env.redis.clone();
    // Someone else's string where p1's category index must go.
    let _: () = redis
        .set(env.layout().key("places:rating:bar"), "not a set")
        .await
        .unwrap();
    let worker = env.spawn_worker();
    env.publish(&[upsert("p1", 1, "bar", 4.0), upsert("p2", 1, "cafe", 3.0)])
        .await;
    env.wait_drained().await;
    let stats = worker.stop().await;
    assert_eq!(
        (stats.applied, stats.dead_lettered, stats.skipped),
        (1, 1, 1),
        "{stats:?}"
    );
    let letters = read_dead_letters(&env, 1).await;
    let reason = letters[0].1.get(dlq::REASON).unwrap().to_string();
    assert!(reason.contains("WRONGTYPE"), "{reason}");
    let p2: Option<f64> = redis
        .zscore(env.layout().key("places:rating:cafe"), "p2")
        .await
        .unwrap();
    assert_eq!(p2, Some(3.0), "the other event of the batch is applied");
}

/// Reads `n` dead letters of the env's stream (subject, headers, payload), in stream order.
async fn read_dead_letters(
    env: &TestEnv,
    n: usize,
) -> Vec<(String, async_nats::HeaderMap, bytes::Bytes)> {
    let stream = env.js.get_stream(&env.settings.stream.name).await.unwrap();
    let reader = stream
        .create_consumer(pull::Config {
            filter_subject: format!("{}.dlq.>", env.settings.stream.subject_prefix),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut letters = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while letters.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} dead letters arrived",
            letters.len()
        );
        let mut batch = reader
            .fetch()
            .max_messages(n - letters.len())
            .expires(Duration::from_millis(200))
            .messages()
            .await
            .unwrap();
        while let Some(item) = batch.next().await {
            let message = item.expect("a dead letter");
            let headers = message.headers.clone().expect("dead letters have headers");
            letters.push((
                message.subject.to_string(),
                headers,
                message.payload.clone(),
            ));
        }
    }
    letters
}
