//! The API SIGKILLed between commit and publish, while writes are in flight, then restarted on
//! the same port and store: the events of the acknowledged writes it had not published yet go
//! out from the outbox after the restart.
//!
//! To be sure the kill lands in that window, NATS is frozen (SIGSTOP) just before it: the relay's
//! publishes hang, so acknowledged writes pile up in the outbox, and some publishes are sent but
//! never acknowledged, so the restarted relay sends them again (dropped by JetStream as
//! duplicates of the same `Nats-Msg-Id`).

use std::time::Duration;

use crate::pause::Paused;
use crate::stack::{eventually, Stack, DEADLINE};
use crate::workload::{Class, Workload};
use crate::{exclusive, AFTERMATH, WARM_UP};

/// Acknowledged writes the outbox must hold when the API dies.
const AT_LEAST_PENDING: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_killed_after_commit_publishes_on_restart() {
    let _one = exclusive().await;
    let mut stack = Stack::start().await;
    let workload = Workload::start(&stack.base);
    tokio::time::sleep(WARM_UP).await;

    workload.enter("kill").await;
    let pending_at_kill = {
        let nats_pid = stack.nats.pid().expect("nats-server runs");
        let _frozen = Paused::new("nats-server", nats_pid);
        eventually(
            "acknowledged writes waiting in the outbox",
            DEADLINE,
            || async {
                let pending = stack.outbox_pending().await;
                (pending >= AT_LEAST_PENDING).then_some(())
            },
        )
        .await;
        stack.api.kill();
        stack.outbox_pending().await
        // NATS thaws here, with the dead API's last publishes in its socket buffers.
    };
    assert!(pending_at_kill >= AT_LEAST_PENDING, "{pending_at_kill}");
    // Clients meet a closed port for a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.start_api().await;
    workload.enter("after").await;
    eventually(
        "the outbox left by the killed API to be published",
        DEADLINE,
        || async { (stack.outbox_pending().await == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(AFTERMATH).await;

    let report = stack.settle_and_check(workload).await;
    eprintln!("the outbox held {pending_at_kill} events when the API died");
    let failed = [Class::Refused, Class::NotSent, Class::Unknown];
    assert_eq!(report.count_any("before", &failed), 0, "{report}");
    assert_eq!(report.count_any("after", &failed), 0, "{report}");
    assert_eq!(report.count("kill", Class::Refused), 0, "{report}");
    eprintln!("api_killed: {:?}", stack.elapsed());
}
