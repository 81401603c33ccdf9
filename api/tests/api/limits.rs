//! Request limits over real sockets. A genuinely slow request is a PUT whose client sends the
//! headers and only part of the declared body: the handler waits for the rest while holding its
//! concurrency permit, exactly like a slow client.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{error_of, place, spawn_app_with, TestApp};

/// Sends a PUT that declares a 100-byte body and sends 2 bytes of it.
async fn stalled_put(app: &TestApp, id: &str) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/places/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads a whole HTTP/1.1 response (the server closes the connection after it, since the
/// request body was never completed) and returns its status line and body.
async fn read_response(stream: &mut TcpStream) -> (String, Value) {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes the connection")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.lines().next().unwrap().to_owned();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).expect("a JSON body"))
}

#[tokio::test]
async fn requests_beyond_the_concurrency_cap_are_shed_with_json() {
    let app = spawn_app_with(|settings| {
        settings.limits.max_concurrent_requests = 2;
        settings.limits.request_timeout_ms = 60_000;
    })
    .await;
    let stalled = [stalled_put(&app, "s1").await, stalled_put(&app, "s2").await];

    // Once both stalled requests hold their permits, the next request is refused at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let response = app.get("/v1/places/any").await;
        if response.status() == 503 {
            break response;
        }
        assert!(Instant::now() < deadline, "no request was ever shed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shed.headers()["retry-after"], "1");
    let (status, code, _) = error_of(shed).await;
    assert_eq!((status, code.as_str()), (503, "overloaded"));
    // Probes are not counted against the cap.
    assert_eq!(app.get("/healthz").await.status(), 200);

    // The permits come back when the stalled requests end.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .put("/v1/places/ok", &place("x", "cafe", 3.0))
        .await
        .status()
        == 503
    {
        assert!(Instant::now() < deadline, "the permits never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_a_json_timeout() {
    let app = spawn_app_with(|settings| settings.limits.request_timeout_ms = 300).await;
    let started = Instant::now();
    let mut stalled = stalled_put(&app, "slow").await;
    let (status, body) = read_response(&mut stalled).await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert_eq!(body["code"], "timeout", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing was written.
    assert_eq!(app.get("/v1/places/slow").await.status(), 404);
}

#[tokio::test]
async fn the_body_limit_is_a_setting() {
    let app = spawn_app_with(|settings| settings.limits.max_body_bytes = 2_000).await;
    let mut doc = place("x", "cafe", 4.0);
    doc["blob"] = json!("x".repeat(3_000));
    let (status, code, body) = error_of(app.put("/v1/places/big", &doc).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    assert!(
        body["message"].as_str().unwrap().contains("2000 byte"),
        "{body}"
    );
    doc["blob"] = json!("x".repeat(1_000));
    assert_eq!(app.put("/v1/places/big", &doc).await.status(), 201);
}
