//! OpenAPI schema parts of the wire types that a derive cannot say by
//! itself: value sets that come from the code's own tables, the shapes of
//! the links, and the status document's invariants (which fields go with
//! which status, as the state machine in `job.rs` keeps them).

use serde_json::{json, Value};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

use super::{Container, JobStatus, OutputFormat};

/// A job or upload id in its canonical form, without anchors.
pub const UUID: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/// A string of one of `values`.
pub fn one_of(values: impl IntoIterator<Item = impl Into<Value>>) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.into_iter().map(Into::into)))
}

/// A string matching `pattern`.
pub fn matching(pattern: impl Into<String>) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern.into()))
}

pub fn input_content_type() -> Object {
    one_of(Container::ALL.map(Container::content_type)).build()
}

pub fn output_content_type() -> Object {
    one_of(OutputFormat::ALL.map(OutputFormat::content_type)).build()
}

pub fn job_error_code() -> Object {
    one_of(crate::codes::JOB_ERRORS).build()
}

fn link(prefix: &str) -> Object {
    matching(format!("^{prefix}{UUID}$")).format(Some(SchemaFormat::Custom("uri-reference".into()))).build()
}

pub fn status_link() -> Object {
    link("/video/status/")
}

pub fn download_link() -> Object {
    link("/video/download/")
}

/// A playback link: `/video/play/<token>/<file>`, or `null`.
pub fn play_link() -> Object {
    matching("^/video/play/[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+/[A-Za-z0-9._-]+$")
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(SchemaFormat::Custom("uri-reference".into())))
        .build()
}

/// `Link: </video/status/{id}>; rel="monitor"`, the job's status monitor.
pub fn monitor_link() -> Object {
    matching(format!("^</video/status/{UUID}>; rel=\"monitor\"$")).build()
}

/// The pattern of the service's RFC 3339 times (UTC, milliseconds).
pub const TIME: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$";

/// A time as the service writes it.
pub fn time() -> ObjectBuilder {
    matching(TIME).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

/// The status document's invariants, as JSON Schema conditionals: `done`
/// has its output and 100 %, and only `done` has either; `failed` has its
/// error and only `failed` does; a finished job has its completion time
/// and no estimate; a processing job has started and is on an attempt.
pub fn status_rules() -> Value {
    let finished: Vec<&str> = JobStatus::ALL.into_iter().filter(|s| s.is_terminal()).map(JobStatus::as_str).collect();
    json!([
        {
            "if": {"properties": {"status": {"const": "done"}}},
            "then": {"properties": {
                "progress-percent": {"const": 100},
                "output": {"$ref": "#/components/schemas/Output"},
                "error": {"type": "null"},
                "completed-utc-time": {"type": "string"},
                "estimated-completion-utc-time": {"type": "null"}
            }},
            "else": {"properties": {"progress-percent": {"maximum": 99}, "output": {"type": "null"}}}
        },
        {
            "if": {"properties": {"status": {"const": "failed"}}},
            "then": {"properties": {"error": {"$ref": "#/components/schemas/JobError"}}},
            "else": {"properties": {"error": {"type": "null"}}}
        },
        {
            "if": {"properties": {"status": {"enum": finished}}},
            "then": {"properties": {
                "completed-utc-time": {"type": "string"},
                "estimated-completion-utc-time": {"type": "null"}
            }},
            "else": {"properties": {"completed-utc-time": {"type": "null"}}}
        },
        {
            "if": {"properties": {"status": {"const": "processing"}}},
            "then": {"properties": {"started-utc-time": {"type": "string"}, "attempt": {"minimum": 1}}}
        }
    ])
}
