//! `/openapi.json` covers every route the router serves, with its parameters and error bodies.

use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: [&str; 5] = ["get", "put", "patch", "delete", "post"];

/// A concrete path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{collection}", "places")
        .replace("{id}", "p1")
        .replace("{index}", "rating")
}

#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            let operation = &item[method];
            let url = app.url(&concrete(path));
            let response = app
                .client
                .request(method.to_uppercase().parse().unwrap(), url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let code = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|body| body["code"].as_str().map(str::to_owned));
            let routed = !matches!(
                code.as_deref(),
                Some("route_not_found" | "method_not_allowed")
            );
            if operation.is_null() {
                assert!(
                    !routed,
                    "{method} {path} is served ({status}) but not documented"
                );
                continue;
            }
            assert!(
                routed,
                "{method} {path} is documented but the router answers {status} {code:?}"
            );
            documented.push(format!("{method} {path}"));
            // Path parameters are declared.
            for name in ["collection", "id", "index"]
                .iter()
                .filter(|n| path.contains(&format!("{{{n}}}")))
            {
                let declared = operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == *name && p["in"] == "path"));
                assert!(
                    declared,
                    "{method} {path} does not declare path parameter {name}"
                );
            }
            // Every 4xx/5xx response documents the error body.
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    if path.ends_with("readyz") {
                        continue;
                    }
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        vec![
            "delete /v1/admin/dead-letters/{seq}",
            "delete /v1/{collection}/{id}",
            "get /healthz",
            "get /readyz",
            "get /v1/admin/audit",
            "get /v1/admin/dead-letters",
            "get /v1/admin/dead-letters/{seq}",
            "get /v1/admin/generations",
            "get /v1/admin/status",
            "get /v1/collections",
            "get /v1/collections/{collection}",
            "get /v1/{collection}",
            "get /v1/{collection}/near/{index}",
            "get /v1/{collection}/top/{index}",
            "get /v1/{collection}/{id}",
            "get /v1/{collection}/{id}/fields",
            "get /v1/{collection}/{id}/projections",
            "patch /v1/{collection}/{id}",
            "post /v1/admin/dead-letters/{seq}/redrive",
            "post /v1/admin/invalidate",
            "put /v1/{collection}/{id}",
        ]
    );
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("ErrorBody") && schemas.contains_key("Document"));
    // Paths that are not documented are not served either.
    for path in ["/v1/places/p1/other", "/v2/places", "/v1"] {
        let body: Value = app.get(path).await.json().await.unwrap();
        assert_eq!(body["code"], "route_not_found", "{path}");
    }
}
