//! The browser console (`/console`) driven in headless Chromium through chromedriver, against a
//! real stack (API, worker, Redis, NATS, SQLite): a near search by clicking the map, a filtered
//! top list, an edit that shows the new version, the "changed meanwhile" message of a stale edit,
//! and a dead letter that appears in the operations pane and is redriven from it. Each pane is
//! saved as a screenshot under `docs/console/` (shown in the README).
//!
//! Also the embedded pages' serving: open without a key, offline (no outside URL in them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cacheflow_shared::security::{hash_key, ApiKeys};
use cacheflow_testkit::{free_port, require_binary};
use fantoccini::{Client, ClientBuilder, Locator};
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::helpers::{place, place_at, spawn_app_with, TestApp};

/// Generous: the machine running the tests may be busy.
const WAIT: Duration = Duration::from_secs(30);

/// A chromedriver on a free port, killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> Self {
        let binary = require_binary("chromedriver");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        while http.get(format!("{url}/status")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    async fn browser(&self) -> Client {
        let chromium = require_binary("chromium");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a headless Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the text of `css` until `check` holds; returns it.
async fn wait_text(
    browser: &Client,
    css: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = match browser.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if check(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `{css}` shows {text:?} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(browser: &Client, css: &str) -> usize {
    browser
        .find_all(Locator::Css(css))
        .await
        .map_or(0, |all| all.len())
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("no `{css}`: {err}"))
        .click()
        .await
        .unwrap_or_else(|err| panic!("cannot click `{css}`: {err}"));
}

async fn screenshot(browser: &Client, pane: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{pane}.png")), png).unwrap();
}

const READER: &str = "console-reader-key";
const ADMIN: &str = "console-admin-key";

fn keys() -> ApiKeys {
    ApiKeys::parse(&format!(
        "reader:{},admin:{}",
        hash_key(READER),
        hash_key(ADMIN)
    ))
    .unwrap()
}

/// A write from another client than the page (with the admin key, which may write too).
async fn put(app: &TestApp, path: &str, body: &Value) -> u16 {
    app.client
        .put(app.url(path))
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Types `key` into the key form and waits for the role it shows.
async fn use_key(browser: &Client, key: &str, role: &str) {
    let input = browser.find(Locator::Css("#key")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(key).await.unwrap();
    click(browser, "#key-form button").await;
    wait_text(browser, "#role", "the key's role", |t| t == role).await;
}

async fn seed(app: &TestApp) {
    let places = [
        ("p1", "cafe", 4.5, -9.1393, 38.7223),
        ("p2", "bar", 4.1, -9.1420, 38.7130),
        ("p3", "cafe", 3.2, -9.1500, 38.7300),
        ("p4", "bar", 3.9, -9.1000, 38.7400),
        ("p5", "bar", 2.5, -9.2000, 38.7000),
        ("p6", "cafe", 4.9, -9.1300, 38.6900),
    ];
    for (id, category, rating, lon, lat) in places {
        let mut doc = place_at(&format!("Place {id}"), category, rating, lon, lat);
        doc["name"] = json!(format!("Place {id}"));
        assert_eq!(put(app, &format!("/v1/places/{id}"), &doc).await, 201);
    }
    app.eventually("the six places indexed", WAIT, || async {
        let top: Value = app
            .get("/v1/places/top/rating?limit=10")
            .await
            .json()
            .await
            .unwrap();
        top["items"].as_array().map_or(0, Vec::len) == 6
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_browses_edits_and_operates_in_a_real_browser() {
    let app = spawn_app_with(|s| {
        s.admin_enabled = true;
        s.api_keys = keys();
    })
    .await;
    app.start_worker();
    seed(&app).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser.goto(&app.url("/console")).await.unwrap();

    // Map: every place drawn; clicking p1 searches around it.
    let deadline = Instant::now() + WAIT;
    while count(&browser, "#map circle.place").await < 6 {
        assert!(
            Instant::now() < deadline,
            "the map did not draw the six places"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reads need no key here; the operator's key is entered once, kept for the session.
    wait_text(&browser, "#role", "the key's role", |t| t == "no valid key").await;
    use_key(&browser, ADMIN, "admin").await;
    browser
        .execute(
            "const r = document.getElementById('radius'); r.value = 2000; \
             r.dispatchEvent(new Event('input'));",
            vec![],
        )
        .await
        .unwrap();
    click(&browser, "#map circle[data-id='p1']").await;
    let near = wait_text(&browser, "#near-results", "near results", |t| {
        t.contains("p1")
    })
    .await;
    assert!(near.contains("p2"), "p2 is ~1 km away: {near}");
    assert!(!near.contains("p5"), "p5 is ~6 km away: {near}");
    assert!(count(&browser, "#map circle.place.hit").await >= 2);
    screenshot(&browser, "map").await;

    // Top list filtered by category.
    click(&browser, "#tabs button[data-pane='top']").await;
    browser
        .find(Locator::Css("#top-index"))
        .await
        .unwrap()
        .select_by_value("/v1/places/top/rating_by_category")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#top-var-category"))
        .await
        .unwrap()
        .send_keys("bar")
        .await
        .unwrap();
    click(&browser, "#top-load").await;
    let top = wait_text(&browser, "#top-results", "the bar top list", |t| {
        t.contains("p2")
    })
    .await;
    let order: Vec<usize> = ["p2", "p4", "p5"]
        .iter()
        .map(|id| top.find(id).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "highest first: {top}"
    );
    assert!(
        !top.contains("p1") && !top.contains("p6"),
        "cafes are filtered out: {top}"
    );
    screenshot(&browser, "top").await;

    // Entity: load p1, edit it, see version 2.
    click(&browser, "#tabs button[data-pane='entity']").await;
    let id = browser.find(Locator::Css("#entity-id")).await.unwrap();
    id.clear().await.unwrap();
    id.send_keys("p1").await.unwrap();
    click(&browser, "#entity-load").await;
    wait_text(&browser, "#entity-version", "p1 loaded", |t| t == "1").await;
    wait_text(&browser, "#entity-projections", "p1's keys", |t| {
        t.contains("place:p1")
    })
    .await;
    let edit = "const d = document.getElementById('entity-doc'); \
                const doc = JSON.parse(d.value); doc.rating = arguments[0]; \
                d.value = JSON.stringify(doc, null, 2);";
    browser.execute(edit, vec![json!(1.5)]).await.unwrap();
    click(&browser, "#entity-save").await;
    wait_text(&browser, "#entity-message", "the save", |t| {
        t.contains("version 2")
    })
    .await;
    wait_text(&browser, "#entity-version", "the new version", |t| t == "2").await;
    let stored: Value = app.get("/v1/places/p1").await.json().await.unwrap();
    assert_eq!(stored["rating"], 1.5);

    // Someone else saves meanwhile: the next save from the page is refused with a clear message.
    assert_eq!(
        put(&app, "/v1/places/p1", &place("Elsewhere", "cafe", 2.0)).await,
        200
    );
    browser.execute(edit, vec![json!(3.5)]).await.unwrap();
    click(&browser, "#entity-save").await;
    wait_text(&browser, "#entity-message", "the stale save", |t| {
        t.contains("Changed meanwhile") && t.contains("Reload")
    })
    .await;
    screenshot(&browser, "entity").await;
    let stored: Value = app.get("/v1/places/p1").await.json().await.unwrap();
    assert_eq!(
        (stored["name"].as_str(), stored["version"].as_u64()),
        (Some("Elsewhere"), Some(3))
    );

    // Operations: a dead letter appears (live refresh) and is redriven from the page.
    let mut redis = app.redis().await;
    let blocker = app.key("places:rating:blocked");
    let _: () = redis.set(&blocker, "not a set").await.unwrap();
    assert_eq!(
        put(&app, "/v1/places/p9", &place("Blocked", "blocked", 4.0)).await,
        201
    );
    click(&browser, "#tabs button[data-pane='ops']").await;
    wait_text(&browser, "#ops-deps", "the dependencies", |t| {
        t.contains("redis: ok")
    })
    .await;
    let row = "#ops-dead-letters tbody tr[data-seq]";
    wait_text(&browser, row, "the dead letter of p9", |t| {
        t.contains("p9") && t.contains("WRONGTYPE")
    })
    .await;
    screenshot(&browser, "operations").await;
    let _: () = redis.del(&blocker).await.unwrap();
    let redrive = browser
        .find(Locator::XPath("//tr[@data-seq]//button[text()='Redrive']"))
        .await
        .unwrap();
    redrive.click().await.unwrap();
    wait_text(&browser, "#ops-message", "the redrive", |t| {
        t.contains("redriven")
    })
    .await;
    app.eventually("p9 applied after the redrive", WAIT, || {
        let mut redis = redis.clone();
        let blocker = blocker.clone();
        async move {
            redis
                .zscore::<_, _, Option<f64>>(&blocker, "p9")
                .await
                .unwrap()
                == Some(4.0)
        }
    })
    .await;
    wait_text(
        &browser,
        "#ops-dead-letters tbody",
        "no dead letters left",
        |t| t.contains("No dead letters"),
    )
    .await;

    // A reader key: the page hides what it may not do and says why operations are empty.
    use_key(&browser, READER, "reader (read only)").await;
    click(&browser, "#tabs button[data-pane='entity']").await;
    for css in [
        "#entity-save",
        "#entity-create",
        "#entity-delete",
        "#entity-new",
    ] {
        let shown = browser
            .find(Locator::Css(css))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap();
        assert!(!shown, "{css} is shown to a reader");
    }
    click(&browser, "#tabs button[data-pane='ops']").await;
    wait_text(&browser, "#ops-message", "the reader's operations", |t| {
        t.contains("need an admin key")
    })
    .await;
    let kept: Value = browser
        .execute("return sessionStorage.getItem('cacheflow.apiKey');", vec![])
        .await
        .unwrap();
    assert_eq!(kept, READER, "the key is kept in session storage");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_offline_without_a_key() {
    let app = spawn_app_with(|s| {
        s.api_keys = ApiKeys::parse(&format!("reader:{}", hash_key("r-key"))).unwrap();
    })
    .await;
    for (path, content_type) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/style.css", "text/css"),
        ("/docs", "text/html"),
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/LICENSE", "text/plain"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let got = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
        let body = response.text().await.unwrap();
        // Nothing fetched from elsewhere (the vendored bundle only names URLs in comments).
        if path.starts_with("/console") || path == "/docs" {
            assert!(
                !body.contains("https://") && !body.contains("//cdn"),
                "{path} links out"
            );
        }
    }
    // The data still needs the key.
    assert_eq!(app.get("/v1/admin/status").await.status(), 401);
}
