//! The OpenAPI 3.1 document, `GET /openapi.json`: generated from the route
//! table ([`super::table`]), whose handlers carry their operations
//! (`#[utoipa::path]`), and from the wire types (`ToSchema`).

pub mod parts;
pub mod problems;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::OpenApi;

use crate::domain::StatusDoc;

/// What the routes do not say: the API as a whole.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "transcoder",
        description = "Upload a video, get `202 Accepted` with a status monitor at once; workers transcode with ffmpeg; outcomes are pushed to the client's AMQP exchange. Errors are `application/problem+json` (RFC 9457) with a stable `code`. Authentication is `Authorization: Bearer <api-key>` (or `?api_key=` where a browser cannot send headers); with no keys configured (development mode) it is not needed."
    ),
    servers((url = "/")),
    security((), ("bearer" = [])),
    tags(
        (name = "jobs", description = "Jobs: submit, follow, download, cancel."),
        (name = "uploads", description = "Resumable uploads (tus 1.0.0)."),
        (name = "operations", description = "Health, metrics, this document and the web page.")
    ),
    components(schemas(StatusDoc))
)]
struct ApiDoc;

/// The base document the routes are added to.
pub(super) fn base() -> Document {
    ApiDoc::openapi()
}

/// The served document, as JSON text (built once).
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_string_pretty(&document()).expect("the document serializes"))
}

/// The whole document: the routes' operations, the schemas, the shared
/// problem responses and the security schemes.
pub fn document() -> Value {
    let mut doc = super::documented();
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.extend(problems::schemas());
    components.responses.extend(problems::all());
    components.security_schemes.insert(
        "bearer".into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key from `auth.keys`, as `Authorization: Bearer <key>`. Optional in development mode.",
                ))
                .build(),
        ),
    );
    components.security_schemes.insert(
        "api_key".into(),
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "api_key",
            "The API key as `?api_key=`, for clients that cannot send an Authorization header (EventSource, download links); only where an operation lists it.",
        ))),
    );
    // Every document the service sends or takes has exactly the listed
    // fields (a form's unknown fields are refused as unknown options).
    for (name, schema) in components.schemas.iter_mut() {
        if let RefOr::T(Schema::Object(object)) = schema {
            close(object);
            if name == "StatusDocument" {
                let rules = crate::domain::schema::status_rules();
                object.extensions.get_or_insert_with(Default::default).insert("allOf".into(), rules);
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for body in operations.into_iter().flatten().filter_map(|op| op.request_body.as_mut()) {
            let optional = body.required != Some(Required::True);
            for content in body.content.values_mut() {
                // An optional body is absent or bytes, never `null` (the
                // `Option` of the handler's body type says only the first).
                if let (true, Some(RefOr::T(Schema::OneOf(one)))) = (optional, content.schema.as_ref()) {
                    let not_null = |s: &&RefOr<Schema>| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == Type::Null.into());
                    if let [only] = one.items.iter().filter(not_null).collect::<Vec<_>>()[..] {
                        content.schema = Some(only.clone());
                    }
                }
                if let Some(RefOr::T(Schema::Object(object))) = content.schema.as_mut() {
                    close(object);
                }
            }
        }
    }
    let mut value = serde_json::to_value(&doc).expect("the document serializes");
    move_required_marks(&mut value);
    name_link_fields(&mut value);
    value
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`); OpenAPI
/// names them in camel case.
fn name_link_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(links) = map.get_mut("links").and_then(Value::as_object_mut) {
                for link in links.values_mut().filter_map(Value::as_object_mut) {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(v) = link.remove(snake) {
                            link.insert(camel.into(), v);
                        }
                    }
                }
            }
            map.values_mut().for_each(name_link_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(name_link_fields),
        _ => {}
    }
}

fn close(object: &mut utoipa::openapi::schema::Object) {
    if !object.properties.is_empty() && object.additional_properties.is_none() {
        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    }
}

/// Moves [`parts::REQUIRED_MARK`] from a header's schema to the header.
fn move_required_marks(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(headers) = map.get_mut("headers").and_then(Value::as_object_mut) {
                for header in headers.values_mut() {
                    let marked = header
                        .pointer_mut("/schema")
                        .and_then(Value::as_object_mut)
                        .and_then(|schema| schema.remove(parts::REQUIRED_MARK))
                        .is_some();
                    if marked {
                        header["required"] = Value::Bool(true);
                    }
                }
            }
            map.values_mut().for_each(move_required_marks);
        }
        Value::Array(items) => items.iter_mut().for_each(move_required_marks),
        _ => {}
    }
}
