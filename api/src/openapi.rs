//! The OpenAPI document, generated from the route annotations (`utoipa`): the router and the
//! document come from the same list of handlers, so neither can lack a route of the other.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{OpenApi, PartialSchema, ToSchema};

/// The body of every error response.
#[derive(ToSchema)]
#[allow(dead_code)] // Only described, never built: ApiError serialises its own body.
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_document`.
    code: String,
    message: String,
    /// The document field at fault, for `invalid_document` and `id_mismatch`.
    field: Option<String>,
}

/// A stored document: the client's JSON object plus server-owned `id` and `version`.
pub struct DocumentSchema;

impl PartialSchema for DocumentSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The client's JSON object plus the server-owned `id` and `version`.",
            ))
            .property("id", ObjectBuilder::new().schema_type(Type::String))
            .property(
                "version",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            )
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(true),
            ))
            .into()
    }
}

impl ToSchema for DocumentSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Document".into()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cacheflow",
        description = "Reads from Redis, writes to the document store of record; every write emits an event that sync workers turn into Redis projections."
    ),
    components(schemas(ErrorBody, DocumentSchema))
)]
pub struct ApiDoc;

/// Name of the bearer-key security scheme in the document.
const API_KEY_SCHEME: &str = "api_key";

/// Adds what the router enforces around every route, which the route annotations do not say: the
/// API key (`Authorization: Bearer`, a `401 unauthorized` / `403 forbidden`) on everything under
/// `/v1/`, and the limits' `503 overloaded` / `timeout`. Reads list the key as optional: whether
/// they need one is configuration (`security.require_read_key`).
pub fn document_guards(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};

    spec.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    for (path, item) in spec.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let admin = path.starts_with("/v1/admin/");
        let operations = [
            (&mut item.get, true),
            (&mut item.head, true),
            (&mut item.put, false),
            (&mut item.post, false),
            (&mut item.patch, false),
            (&mut item.delete, false),
        ];
        for (operation, is_read) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            let key = SecurityRequirement::new(API_KEY_SCHEME, Vec::<String>::new());
            operation.security = Some(if is_read && !admin {
                vec![SecurityRequirement::default(), key]
            } else {
                vec![key]
            });
            let needs = match (admin, is_read) {
                (true, _) => "an admin key",
                (false, false) => "a writer or admin key",
                (false, true) => "any key, when reads require one",
            };
            let responses = &mut operation.responses.responses;
            add_error(
                responses,
                "401",
                &format!("`unauthorized`: no API key, or an unknown one (needs {needs})"),
            );
            add_error(
                responses,
                "403",
                "`forbidden`: the API key's role does not allow this",
            );
            add_error(
                responses,
                "503",
                "`overloaded`: too many requests in flight, retry after `Retry-After`; \
                 `timeout`: not answered within the request deadline",
            );
        }
    }
}

/// Adds an error response, or extends the description of the one already documented.
fn add_error(
    responses: &mut std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>>,
    status: &str,
    description: &str,
) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

    match responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            existing.description = format!("{}; {description}", existing.description);
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", body)
                .build();
            responses.insert(status.to_owned(), RefOr::T(response));
        }
    }
}
