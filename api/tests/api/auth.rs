//! API keys over real sockets: 401 without a key or with an unknown one, 403 with a key whose
//! role is too low, the right keys pass; reads open unless `security.require_read_key`.

use cacheflow_shared::security::{hash_key, ApiKeys};
use serde_json::{json, Value};

use crate::helpers::{error_of, place, spawn_app_with, TestApp};

const READER: &str = "reader-key-4f1c";
const WRITER: &str = "writer-key-9a2e";
const ADMIN: &str = "admin-key-77d0";

fn keys() -> ApiKeys {
    ApiKeys::parse(&format!(
        "reader:{},writer:{},admin:{}",
        hash_key(READER),
        hash_key(WRITER),
        hash_key(ADMIN)
    ))
    .unwrap()
}

async fn app_with_keys(require_read_key: bool) -> TestApp {
    spawn_app_with(|settings| {
        settings.api_keys = keys();
        settings.security.require_read_key = require_read_key;
    })
    .await
}

async fn put_with(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .put(app.url(path))
        .json(&place("Cafe", "cafe", 4.0));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn get_with(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn assert_unauthorized(response: reqwest::Response) {
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer"),
    );
    let (status, code, body) = error_of(response).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{body}");
}

#[tokio::test]
async fn writes_need_a_writer_or_admin_key() {
    let app = app_with_keys(false).await;
    assert_unauthorized(put_with(&app, "/v1/places/k1", None).await).await;
    assert_unauthorized(put_with(&app, "/v1/places/k1", Some("not-a-key")).await).await;
    // A configured hash is not a key.
    assert_unauthorized(put_with(&app, "/v1/places/k1", Some(&hash_key(WRITER))).await).await;

    let (status, code, body) = error_of(put_with(&app, "/v1/places/k1", Some(READER)).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"), "{body}");
    assert_eq!(
        body["message"],
        "this reader key cannot do this: it needs a writer key"
    );

    assert_eq!(
        put_with(&app, "/v1/places/k1", Some(WRITER)).await.status(),
        201
    );
    assert_eq!(
        put_with(&app, "/v1/places/k1", Some(ADMIN)).await.status(),
        200
    );
    let delete = app
        .client
        .delete(app.url("/v1/places/k1"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);
    // Nothing refused reached the store: one create, one replace.
    app.wait_for_stream_count(2, std::time::Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn admin_routes_need_an_admin_key_before_anything_else() {
    let app = app_with_keys(false).await;
    let invalidate = |key: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/v1/admin/invalidate"))
            .json(&json!({ "collection": "places" }));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_unauthorized(invalidate(None).await.unwrap()).await;
    for key in [READER, WRITER] {
        let (status, code, _) = error_of(invalidate(Some(key)).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (403, "forbidden"), "{key}");
    }
    // Past the key check: whatever the route answers (ADMIN_ENABLED is off here), it is not an
    // authentication error.
    let status = invalidate(Some(ADMIN)).await.unwrap().status().as_u16();
    assert!(![401, 403].contains(&status), "{status}");
}

#[tokio::test]
async fn reads_are_open_unless_required() {
    let app = app_with_keys(false).await;
    put_with(&app, "/v1/places/r1", Some(WRITER)).await;
    assert_eq!(get_with(&app, "/v1/places/r1", None).await.status(), 200);
    let (status, code, _) = error_of(get_with(&app, "/v1/places/absent", None).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn required_read_keys_accept_every_role() {
    let app = app_with_keys(true).await;
    put_with(&app, "/v1/places/r1", Some(WRITER)).await;
    assert_unauthorized(get_with(&app, "/v1/places/r1", None).await).await;
    assert_unauthorized(get_with(&app, "/v1/places?ids=r1", Some("wrong")).await).await;
    for key in [READER, WRITER, ADMIN] {
        assert_eq!(
            get_with(&app, "/v1/places/r1", Some(key)).await.status(),
            200,
            "{key}"
        );
    }
    // Probes and the API description stay open.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let status = get_with(&app, path, None).await.status().as_u16();
        assert!(![401, 403].contains(&status), "{path}: {status}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_key() {
    let app = app_with_keys(false).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let put = &spec["paths"]["/v1/{collection}/{id}"]["put"];
    assert_eq!(put["security"], json!([{ "api_key": [] }]));
    assert_eq!(
        put["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(put["responses"]["403"].is_object());
    let get = &spec["paths"]["/v1/{collection}/{id}"]["get"];
    assert_eq!(get["security"], json!([{}, { "api_key": [] }]));
    assert!(spec["paths"]["/healthz"]["get"]["security"].is_null());
}
