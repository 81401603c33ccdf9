//! `seed`: PUTs deterministic demo places into the API with bounded concurrency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::StatusCode;

use crate::{places, redis_util};

/// Tries per place (the first request plus retries).
const DEFAULT_TRIES: u32 = 5;
/// First retry delay; doubles per retry up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How many failure reasons are printed.
const SHOWN_FAILURES: usize = 10;

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Base URL of the cacheflow API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// A writer (or admin) API key, sent as `Authorization: Bearer` when the API requires keys.
    #[arg(long, env = "CACHEFLOW_API_KEY", hide_env_values = true, value_parser = crate::http::ApiKey::parse)]
    pub api_key: Option<crate::http::ApiKey>,
    /// How many places to write (ids 1..=count).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// Seed of the generator: the same seed writes the same places.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Id prefix: place n gets the id `{prefix}{n:04}` (wider when count > 9999).
    #[arg(long, default_value = "place-", value_parser = parse_prefix)]
    pub prefix: String,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// Tries per place on connection errors and 429/502/503/504 answers.
    #[arg(long, default_value_t = DEFAULT_TRIES, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub tries: u32,
    /// After seeding, wait until this Redis (the one the worker writes) holds every written
    /// version.
    #[arg(long)]
    pub redis: Option<String>,
    /// `worker.key_prefix` of the stack.
    #[arg(long, default_value = "")]
    pub key_prefix: String,
    /// Longest wait for the worker with `--redis`, seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub wait_secs: u64,
}

pub fn parse_prefix(prefix: &str) -> Result<String, String> {
    if prefix.len() > 100 {
        return Err("at most 100 characters".into());
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{bad:?} is not allowed: ids use only letters, digits, '_' and '-'"
        ));
    }
    Ok(prefix.to_string())
}

/// What a seed run did.
#[derive(Debug)]
pub struct SeedReport {
    pub succeeded: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// The first few failures, as `id: reason`.
    pub failures: Vec<String>,
    /// With `--redis`: how long after the last write every version was in Redis, or how many
    /// were still missing when the wait ended.
    pub visible: Option<Result<Duration, usize>>,
}

impl SeedReport {
    /// `seeded N places in X s (Y/s), F failures`
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.succeeded as f64 / secs
        } else {
            0.0
        };
        let visible = match self.visible {
            None => String::new(),
            Some(Ok(after)) => format!("; all in Redis {:.2} s later", after.as_secs_f64()),
            Some(Err(missing)) => format!("; {missing} still not in Redis"),
        };
        format!(
            "seeded {} places in {secs:.2} s ({rate:.1}/s), {} failures{visible}",
            self.succeeded, self.failed
        )
    }

    /// Everything written, and visible when asked.
    pub fn complete(&self) -> bool {
        self.failed == 0 && !matches!(self.visible, Some(Err(_)))
    }
}

/// Writes the places and reports; errors only when the run cannot start at all.
pub async fn run(args: &SeedArgs) -> Result<SeedReport> {
    let api = args.api.trim_end_matches('/').to_string();
    if !api.starts_with("http://") {
        bail!("--api {api}: expected a plain http:// URL (this tool is built without TLS)");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &args.api_key {
        headers.insert(reqwest::header::AUTHORIZATION, key.header());
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(args.timeout_secs))
        .connect_timeout(Duration::from_secs(args.timeout_secs.min(5)))
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()
        .context("building the HTTP client")?;

    let next = Arc::new(AtomicU64::new(1));
    // The version each place got (0: not written).
    let versions: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.count).map(|_| AtomicU64::new(0)).collect());
    let succeeded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();

    let workers = args.concurrency.min(args.count);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (client, api, args) = (client.clone(), api.clone(), args.clone());
        let (next, succeeded, failed, failures, versions) = (
            next.clone(),
            succeeded.clone(),
            failed.clone(),
            failures.clone(),
            versions.clone(),
        );
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n > args.count {
                    break;
                }
                let id = places::place_id(&args.prefix, n, args.count);
                let url = format!("{api}/v1/places/{id}");
                let body = places::place(args.seed, n).to_json();
                match put_with_retries(&client, &url, &body, args.tries).await {
                    Ok(version) => {
                        succeeded.fetch_add(1, Ordering::Relaxed);
                        // An answer without an ETag still proves the write; wait for any version.
                        versions[(n - 1) as usize].store(version.unwrap_or(1), Ordering::Relaxed);
                    }
                    Err(reason) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut shown = failures.lock().unwrap_or_else(|e| e.into_inner());
                        if shown.len() < SHOWN_FAILURES {
                            shown.push(format!("{id}: {reason}"));
                        }
                    }
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a seed worker panicked")?;
    }

    let elapsed = started.elapsed();
    let failures = std::mem::take(&mut *failures.lock().unwrap_or_else(|e| e.into_inner()));
    let visible = match &args.redis {
        None => None,
        Some(url) => {
            let written: Vec<(String, u64)> = versions
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let version = v.load(Ordering::Relaxed);
                    let id = places::place_id(&args.prefix, i as u64 + 1, args.count);
                    (version > 0).then(|| (redis_util::doc_key(&args.key_prefix, &id), version))
                })
                .collect();
            let mut conn = redis_util::connect(url).await?;
            Some(
                redis_util::wait_visible(&mut conn, &written, Duration::from_secs(args.wait_secs))
                    .await?,
            )
        }
    };
    Ok(SeedReport {
        succeeded: succeeded.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        failures,
        visible,
    })
}

/// PUTs `body` to `url`; retries connection errors and "try again" statuses with a capped
/// exponential backoff. `Ok` carries the version from the `ETag`, `Err` the last reason.
async fn put_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    tries: u32,
) -> Result<Option<u64>, String> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let (reason, retryable) = match client.put(url).json(body).send().await {
            Ok(response) => {
                let status = response.status();
                if status == StatusCode::OK || status == StatusCode::CREATED {
                    return Ok(response
                        .headers()
                        .get(reqwest::header::ETAG)
                        .and_then(|v| v.to_str().ok())
                        .and_then(crate::http::parse_etag));
                }
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                (
                    format!("HTTP {status}: {text}"),
                    is_retryable_status(status),
                )
            }
            Err(e) => {
                let retryable = e.is_connect() || e.is_timeout() || e.is_request();
                (format!("request failed: {}", error_chain(&e)), retryable)
            }
        };
        if !retryable || attempt >= tries {
            let suffix = if attempt > 1 {
                format!(" (after {attempt} tries)")
            } else {
                String::new()
            };
            return Err(format!("{reason}{suffix}"));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Request lines and bodies the test server received.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    fn args(api: String, count: u64) -> SeedArgs {
        SeedArgs {
            api,
            api_key: None,
            count,
            concurrency: 4,
            seed: 42,
            prefix: "place-".into(),
            timeout_secs: 5,
            tries: 5,
            redis: None,
            key_prefix: String::new(),
            wait_secs: 1,
        }
    }

    /// Reads one HTTP/1.1 request: `(request line, body)`.
    fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).ok()? == 0 {
            return None;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).ok()?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).ok()?;
        Some((
            request_line.trim_end().to_string(),
            String::from_utf8(body).ok()?,
        ))
    }

    /// A tiny HTTP server: answers each request with `respond(index, request line, body)`.
    fn serve(respond: impl Fn(usize, &str, &str) -> u16 + Send + Sync + 'static) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let seen_by_server = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let (seen, counter, respond) =
                    (seen_by_server.clone(), counter.clone(), respond.clone());
                std::thread::spawn(move || {
                    while let Some((line, body)) = read_request(&mut stream) {
                        let index = counter.fetch_add(1, Ordering::SeqCst);
                        let status = respond(index, &line, &body);
                        seen.lock().unwrap().push((line, body));
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{{}}"
                        );
                        if stream.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (api, seen)
    }

    #[tokio::test]
    async fn puts_every_place_once_with_its_generated_body() {
        let (api, seen) = serve(|index, _, _| if index % 2 == 0 { 201 } else { 200 });
        let report = run(&args(api, 25)).await.unwrap();
        assert_eq!(
            (report.succeeded, report.failed),
            (25, 0),
            "{:?}",
            report.failures
        );
        assert!(
            report.summary().starts_with("seeded 25 places in "),
            "{}",
            report.summary()
        );
        assert!(report.summary().ends_with(", 0 failures"));

        let seen = seen.lock().unwrap();
        let mut lines: Vec<&str> = seen.iter().map(|(line, _)| line.as_str()).collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), 25);
        assert_eq!(lines[0], "PUT /v1/places/place-0001 HTTP/1.1");
        assert_eq!(lines[24], "PUT /v1/places/place-0025 HTTP/1.1");
        let (_, body) = seen
            .iter()
            .find(|(line, _)| line.contains("place-0007 "))
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body, places::place(42, 7).to_json());
    }

    #[tokio::test]
    async fn retries_503_then_succeeds() {
        // The first two requests are refused with 503.
        let (api, seen) = serve(|index, _, _| if index < 2 { 503 } else { 201 });
        let mut args = args(api, 1);
        args.concurrency = 1;
        let report = run(&args).await.unwrap();
        assert_eq!(
            (report.succeeded, report.failed),
            (1, 0),
            "{:?}",
            report.failures
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_tries_and_reports_failures() {
        let (api, seen) = serve(|_, line, _| {
            if line.contains("place-0002 ") {
                503
            } else {
                200
            }
        });
        let mut args = args(api, 3);
        args.tries = 3;
        let report = run(&args).await.unwrap();
        assert_eq!((report.succeeded, report.failed), (2, 1));
        assert_eq!(report.failures.len(), 1);
        assert!(
            report.failures[0].starts_with("place-0002: HTTP 503"),
            "{:?}",
            report.failures
        );
        assert!(
            report.failures[0].ends_with("(after 3 tries)"),
            "{:?}",
            report.failures
        );
        assert!(report.summary().ends_with(", 1 failures"));
        assert_eq!(seen.lock().unwrap().len(), 2 + 3);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (api, seen) = serve(|_, _, _| 422);
        let report = run(&args(api, 2)).await.unwrap();
        assert_eq!((report.succeeded, report.failed), (0, 2));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_fails() {
        // A port that was free a moment ago: nothing listens.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args = args(format!("http://127.0.0.1:{port}"), 1);
        args.tries = 2;
        let report = run(&args).await.unwrap();
        assert_eq!((report.succeeded, report.failed), (0, 1));
        assert!(
            report.failures[0].contains("request failed"),
            "{:?}",
            report.failures
        );
        assert!(
            report.failures[0].ends_with("(after 2 tries)"),
            "{:?}",
            report.failures
        );
    }

    #[test]
    fn prefix_must_be_id_safe() {
        assert_eq!(parse_prefix("place-").unwrap(), "place-");
        assert_eq!(parse_prefix("").unwrap(), "");
        assert!(parse_prefix("a/b").is_err());
        assert!(parse_prefix("a.b").is_err());
    }

    #[tokio::test]
    async fn rejects_a_non_http_api() {
        assert!(run(&args("localhost:8080".into(), 1)).await.is_err());
    }
}
