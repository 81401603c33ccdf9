//! The real binary: killed mid-run, scaled out to three processes, stopped with SIGTERM.

use crate::gen::{history, rng, shuffled_with_duplicates};
use crate::helpers::{eventually, TestEnv};
use crate::process::{events_handled, log_fields, WorkerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing() {
    let mut env = TestEnv::new("sigkill").await;
    // Events the killed worker held unacked come back after ack_wait: keep the test short.
    env.settings.worker.ack_wait_secs = 2;
    let mut rng = rng(11);
    let history = history(&mut rng, "k", 5_000, 7);
    let events = shuffled_with_duplicates(&mut rng, &history, 0.05);
    assert!(events.len() >= 20_000, "{} events", events.len());
    env.publish(&events).await;

    let worker = WorkerProcess::start(&env.process_env());
    eventually("the worker to be part-way through", || async {
        env.consumer_info()
            .await
            .filter(|info| info.ack_floor.stream_sequence >= 2_000)
    })
    .await;
    let logs = worker.kill();
    let info = env.consumer_info().await.expect("consumer info");
    assert!(
        info.num_pending + info.num_ack_pending as u64 > 0,
        "the worker finished before it was killed; the test proves nothing\n{logs}"
    );

    let restarted = WorkerProcess::start(&env.process_env());
    env.wait_drained().await;
    let (status, logs) = restarted.terminate();
    assert!(status.success(), "{status}\n{logs}");
    env.assert_projection(&events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_consumer_converge_exactly() {
    let mut env = TestEnv::new("scale").await;
    // Small batches so that the three pull requests interleave.
    env.settings.worker.batch_size = 20;
    let mut rng = rng(23);
    let history = history(&mut rng, "s", 300, 6);
    let events = shuffled_with_duplicates(&mut rng, &history, 0.2);

    let workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::start(&env.process_env()))
        .collect();
    // All three bound and pulling before the first event, so that the load is really shared.
    eventually("three waiting pull requests", || async {
        env.consumer_info()
            .await
            .filter(|info| info.num_waiting >= 3)
    })
    .await;
    env.publish(&events).await;
    env.wait_drained().await;

    let mut handled = Vec::new();
    for worker in workers {
        let (status, logs) = worker.terminate();
        assert!(status.success(), "{status}\n{logs}");
        handled.push(events_handled(&logs));
    }
    assert!(
        handled.iter().all(|&n| n > 0),
        "a worker did nothing: {handled:?}"
    );
    assert!(
        handled.iter().sum::<u64>() >= events.len() as u64,
        "{handled:?} of {}",
        events.len()
    );
    env.assert_projection(&events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_acks_the_batch_in_flight_and_exits_zero() {
    let env = TestEnv::new("sigterm").await;
    let mut rng = rng(5);
    let events = history(&mut rng, "t", 2_000, 5);
    env.publish(&events).await;

    let mut worker = WorkerProcess::start(&env.process_env());
    eventually("the worker to be applying", || async {
        env.consumer_info()
            .await
            .filter(|info| info.ack_floor.stream_sequence > 0)
    })
    .await;
    assert!(worker.is_running());
    let (status, logs) = worker.terminate();
    assert!(status.success(), "exit status {status}\n{logs}");
    assert!(log_fields(&logs, "sync worker stopped").is_some(), "{logs}");
    // Acks are processed by the server just after the exit: allow it a moment, not a sleep.
    let info = eventually("no unacked deliveries", || async {
        env.consumer_info()
            .await
            .filter(|info| info.num_ack_pending == 0)
    })
    .await;
    assert_eq!(info.num_redelivered, 0, "{info:?}");
}
