//! NATS down for 10 s (stopped, then restarted on the same port with its JetStream store): every
//! write is still acknowledged, its event waiting in the outbox, and once NATS is back the events
//! reach the stream and Redis.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::stack::{eventually, Stack, DEADLINE};
use crate::workload::{Class, Workload};
use crate::{exclusive, AFTERMATH, WARM_UP};

const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_through_a_nats_outage_and_arrive_afterwards() {
    let _one = exclusive().await;
    let mut stack = Stack::start().await;
    let workload = Workload::start(&stack.base);
    tokio::time::sleep(WARM_UP).await;

    workload.enter("nats down").await;
    tokio::task::block_in_place(|| stack.nats.stop());
    let outage = Instant::now();
    let (status, body) = eventually("/readyz to report nats down", DEADLINE, || async {
        stack
            .readyz()
            .await
            .filter(|(_, body)| body["checks"]["nats"]["status"] == "down")
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;
    let held = stack.outbox_pending().await;

    tokio::task::block_in_place(|| stack.nats.restart());
    workload.enter("nats back").await;
    eventually("the outbox to be published", DEADLINE, || async {
        (stack.outbox_pending().await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(AFTERMATH).await;

    let report = stack.settle_and_check(workload).await;
    eprintln!("the outbox held {held} events at the end of the outage");
    assert!(held > 0, "no event waited for NATS");
    let failed = [Class::Refused, Class::NotSent, Class::Unknown];
    for phase in ["before", "nats down", "nats back"] {
        assert_eq!(report.count_any(phase, &failed), 0, "{phase}: {report}");
    }
    assert!(report.count("nats down", Class::Acked) > 100, "{report}");
    eprintln!("nats_down: {:?}", stack.elapsed());
}
