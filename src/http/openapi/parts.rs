//! Pieces of operations that several handlers share: response headers
//! (tus, `Retry-After`, the job's monitor), binary bodies and their
//! examples, links between operations.

use serde_json::{json, Value};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::link::Link;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{Content, ContentBuilder, Ref, RefOr, Required};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::schema::{matching, one_of, UUID};

/// Marks a header as always sent. utoipa's `Header` has no `required`, so
/// the mark travels in its schema and [`super::document`] moves it.
pub const REQUIRED_MARK: &str = "x-required";

pub fn header(schema: impl Into<RefOr<Schema>>, description: Option<&str>) -> Header {
    HeaderBuilder::new().schema(schema).description(description).build()
}

/// `header`, sent on every answer it is documented for.
pub fn required(mut header: Header) -> Header {
    if let RefOr::T(Schema::Object(object)) = &mut header.schema {
        object.extensions.get_or_insert_with(Default::default).insert(REQUIRED_MARK.into(), json!(true));
    }
    header
}

pub fn integer(minimum: u64) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(minimum))
}

/// `Retry-After`: seconds, as the service gives them (1–60).
pub fn retry_after(always: bool) -> Header {
    let h = header(integer(1).maximum(Some(60)), Some("Seconds to wait before asking again."));
    if always {
        required(h)
    } else {
        h
    }
}

pub fn tus_resumable() -> Header {
    let about = "The tus protocol version of the answer; on every answer of `/video/uploads`.";
    required(header(one_of([crate::http::tus::TUS_VERSION]), Some(about)))
}

pub fn tus_version() -> Header {
    let about = "The tus protocol versions the service speaks, comma-separated.";
    required(header(matching(r"^[0-9]+\.[0-9]+\.[0-9]+(,[0-9]+\.[0-9]+\.[0-9]+)*$"), Some(about)))
}

pub fn tus_extension() -> Header {
    let about = "The tus extensions the service supports, comma-separated: `creation,creation-with-upload,termination,expiration`.";
    required(header(matching("^[a-z]+(-[a-z]+)*(,[a-z]+(-[a-z]+)*)*$"), Some(about)))
}

pub fn tus_max_size() -> Header {
    let about = "The largest `Upload-Length` accepted, in bytes (`http.max_upload_bytes`).";
    required(header(integer(0), Some(about)))
}

pub fn upload_offset() -> Header {
    let about = "How many bytes of the upload are stored (durably): where the next `PATCH` continues.";
    required(header(integer(0), Some(about)))
}

pub fn upload_length() -> Header {
    required(header(integer(1), Some("The upload's whole length, as declared at its creation.")))
}

pub fn upload_expires() -> Header {
    let about = "While the upload is unfinished: when it expires and its bytes are removed (`http.upload_expiry_seconds` after its last received byte), an HTTP-date (RFC 9110).";
    let date = "^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$";
    header(matching(date), Some(about))
}

pub fn upload_monitor() -> Header {
    let about = "Once the upload is finished (its last byte stored): `</video/status/{id}>; rel=\"monitor\"`, the status monitor of the job it became.";
    header(crate::domain::schema::monitor_link(), Some(about))
}

pub fn no_store() -> Header {
    required(header(one_of(["no-store"]), None))
}

/// `Location: <prefix>{id}`.
pub fn location(prefix: &str, about: &str) -> Header {
    required(header(matching(format!("^{prefix}{UUID}$")), Some(about)))
}

/// A body of `schema`.
pub fn content(schema: impl Into<RefOr<Schema>>) -> Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

/// A JSON body of `T`'s schema, by reference.
pub fn json<T: ToSchema>() -> Content {
    content(Ref::from_schema_name(T::name()))
}

/// Raw bytes of any kind.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// The first bytes of an MP4 file (its `ftyp` box): sniffed as MP4.
pub const MP4_SIGNATURE: &str = "\0\0\0\u{18}ftypisom\0\0\u{2}\0isomiso2";

/// [`MP4_SIGNATURE`] and 600 bytes more.
pub fn mp4_padded() -> String {
    format!("{MP4_SIGNATURE}{}", ".".repeat(600))
}

/// A link to operation `operation` with the job id from the body's `id`.
pub fn job_link(operation: &str) -> RefOr<Link> {
    LinkBuilder::new().operation_id(operation).parameter("id", "$response.body#/id").build().into()
}

/// A link to operation `operation` with the upload id from `Location`.
pub fn upload_link(operation: &str) -> RefOr<Link> {
    let id = "$response.header.Location#regex:^/video/uploads/([0-9a-f-]+)$";
    LinkBuilder::new().operation_id(operation).parameter("id", id).build().into()
}

/// Examples of a single range header (`Range`), valid and not.
pub fn range_examples() -> Value {
    let mut examples = serde_json::Map::new();
    for (name, value) in [
        ("first-kib", "bytes=0-1023"),
        ("from-1024", "bytes=1024-"),
        ("last-512", "bytes=-512"),
        ("past-the-end", "bytes=999999999-"),
        ("two-ranges", "bytes=0-0,5-6"),
        ("reversed", "bytes=5-2"),
        ("not-a-number", "bytes=abc"),
        ("other-unit", "items=0-1"),
    ] {
        examples.insert(name.into(), json!({ "value": value }));
    }
    Value::Object(examples)
}

/// A parameter of `schema` in `place`.
pub fn param(
    name: &str,
    place: ParameterIn,
    required: bool,
    schema: impl Into<RefOr<Schema>>,
    description: &str,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// Named examples on a parameter. utoipa's `Parameter` has no `examples`
/// map: they are set as the keyword itself.
pub fn with_examples(mut parameter: Parameter, examples: Value) -> Parameter {
    parameter.extensions.get_or_insert_with(Default::default).insert("examples".into(), examples);
    parameter
}
