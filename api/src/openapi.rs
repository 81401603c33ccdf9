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
