//! The worker SIGKILLed mid-batch (holding messages it was delivered but had not acked), twice,
//! and restarted each time: JetStream redelivers what it held after `ack_wait`, re-applying is
//! harmless (the versioned apply), and nothing acknowledged is missing from Redis.

use std::time::{Duration, Instant};

use crate::stack::{Stack, DEADLINE};
use crate::workload::{Class, Workload};
use crate::{exclusive, AFTERMATH, WARM_UP};

const KILLS: usize = 2;
/// Looks at the consumer before each try: the kill must land while a batch is unacked.
const KILL_ATTEMPTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let _one = exclusive().await;
    let mut stack = Stack::start().await;
    let workload = Workload::start(&stack.base);
    tokio::time::sleep(WARM_UP).await;

    for _ in 0..KILLS {
        let held = kill_mid_batch(&mut stack).await;
        eprintln!("the worker died holding {held} unacked messages");
        // Events queue up in the stream while no worker runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stack.worker.start();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(AFTERMATH).await;

    let report = stack.settle_and_check(workload).await;
    // Only the worker was hurt: the API answered everything.
    let failed = [Class::Refused, Class::NotSent, Class::Unknown];
    assert_eq!(report.count_any("before", &failed), 0, "{report}");
    eprintln!("worker_killed: {:?}", stack.elapsed());
}

/// Kills the worker at a moment it holds delivered, unacked messages; returns how many the
/// consumer still counted unacked after the kill. A batch acked between the look and the kill
/// proves nothing, so then the worker is started again and the next batch is tried.
async fn kill_mid_batch(stack: &mut Stack) -> u64 {
    for _ in 0..KILL_ATTEMPTS {
        let deadline = Instant::now() + DEADLINE;
        // No sleep between looks: a batch is unacked for a few milliseconds only.
        while stack
            .consumer_info()
            .await
            .is_none_or(|info| info.num_ack_pending == 0)
        {
            assert!(
                Instant::now() < deadline,
                "the worker never held an unacked batch"
            );
        }
        stack.worker.kill();
        let held = stack
            .consumer_info()
            .await
            .map_or(0, |info| info.num_ack_pending);
        if held > 0 {
            return held as u64;
        }
        stack.worker.start();
    }
    panic!("{KILL_ATTEMPTS} kills all landed between batches");
}
