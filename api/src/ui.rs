//! The browser pages the API serves itself, from files embedded in the binary (no CDN, nothing
//! fetched at build or run time, so they work offline): `/docs`, Swagger UI (vendored from the
//! npm package `swagger-ui-dist`, its licence alongside in `api/assets/swagger-ui/`) on
//! `/openapi.json`, and `/console`, the operator console (plain JS in `api/assets/console/`).
//! Both are open like `/openapi.json` (see [`crate::auth`]): they hold no data; the console
//! sends the API key the user enters with each request it makes.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// One embedded file and the path it is served at.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $file)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("/docs", "swagger-ui/index.html", HTML),
    asset!("/docs/init.js", "swagger-ui/init.js", JS),
    asset!(
        "/docs/swagger-ui-bundle.js",
        "swagger-ui/swagger-ui-bundle.js",
        JS
    ),
    asset!("/docs/swagger-ui.css", "swagger-ui/swagger-ui.css", CSS),
    asset!("/docs/LICENSE", "swagger-ui/LICENSE", TEXT),
    asset!("/console", "console/index.html", HTML),
    asset!("/console/style.css", "console/style.css", CSS),
    asset!("/console/api.js", "console/api.js", JS),
    asset!("/console/map.js", "console/map.js", JS),
    asset!("/console/top.js", "console/top.js", JS),
    asset!("/console/entity.js", "console/entity.js", JS),
    asset!("/console/ops.js", "console/ops.js", JS),
    asset!("/console/app.js", "console/app.js", JS),
];

/// Whether `path` is one of the pages or their files (served without a key).
pub fn is_ui_path(path: &str) -> bool {
    ASSETS.iter().any(|asset| asset.path == path)
}

/// The routes serving every embedded file.
pub fn routes() -> Router<AppState> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || serve(asset)))
    })
}

async fn serve(asset: &'static Asset) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            // Embedded in the binary: a new build may change them, so browsers revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        asset.body,
    )
        .into_response()
}
