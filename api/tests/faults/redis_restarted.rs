//! Redis stopped and started again empty (no persistence) on the same port: while it is down
//! `/readyz` says so, reads fall back to the store and writes go on; once it is back, `verify`
//! finds the entities nobody wrote since missing, and a `replay` of the compacted stream (as the
//! operator would run it, beside the live worker and API) restores them.

use std::time::Duration;

use reqwest::StatusCode;

use crate::stack::{eventually, Stack, DEADLINE};
use crate::workload::{Class, Workload};
use crate::{exclusive, AFTERMATH, WARM_UP};

const DOWN_FOR: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_restored_by_a_replay() {
    let _one = exclusive().await;
    let mut stack = Stack::start().await;
    let workload = Workload::start(&stack.base);
    tokio::time::sleep(WARM_UP).await;

    workload.enter("redis down").await;
    tokio::task::block_in_place(|| stack.redis.stop());
    let (status, body) = eventually("/readyz to report redis down", DEADLINE, || async {
        stack
            .readyz()
            .await
            .filter(|(_, body)| body["checks"]["redis"]["status"] == "down")
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["store"]["status"], "up", "{body}");
    assert_eq!(body["checks"]["nats"]["status"], "up", "{body}");
    tokio::time::sleep(DOWN_FOR).await;

    tokio::task::block_in_place(|| stack.redis.restart());
    workload.enter("redis back").await;
    eventually("/readyz to report ready again", DEADLINE, || async {
        stack
            .readyz()
            .await
            .filter(|(status, _)| *status == StatusCode::OK)
    })
    .await;
    // Proof the restarted Redis is empty: entities nobody wrote since are missing.
    let (code, summary) = stack.verify().await;
    assert!(
        code == Some(2) && !summary.contains(": 0 missing,"),
        "verify before the replay: exit code {code:?}, {summary}"
    );
    eprintln!("before the replay: {summary}");
    let replayed = stack.operator_command(&["replay"]).await;
    let summary = replayed.lines().filter(|l| l.starts_with("replay"));
    eprintln!("{}", summary.collect::<Vec<_>>().join("\n"));
    tokio::time::sleep(AFTERMATH).await;

    let report = stack.settle_and_check(workload).await;
    // Redis is a cache: losing it costs no request.
    let failed = [Class::Refused, Class::NotSent, Class::Unknown];
    for phase in ["before", "redis down", "redis back"] {
        assert_eq!(report.count_any(phase, &failed), 0, "{phase}: {report}");
    }
    assert!(report.count("redis down", Class::Read) > 0, "{report}");
    eprintln!("redis_restarted: {:?}", stack.elapsed());
}
