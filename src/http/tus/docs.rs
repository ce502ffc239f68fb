//! The tus requests and answers as the OpenAPI document shows them: the
//! protocol's headers in and out of each operation.

use std::collections::BTreeMap;

use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses};

use super::TUS_VERSION;
use crate::domain::schema::{matching, one_of};
use crate::http::openapi::parts::{self, param};

fn upload_id(description: &str, uuid: bool) -> Parameter {
    let mut schema = ObjectBuilder::new().schema_type(Type::String);
    if uuid {
        schema = schema.format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
    }
    param("id", ParameterIn::Path, true, schema, description)
}

fn tus_resumable() -> Parameter {
    let about = "The tus protocol version the client speaks. Missing or another version: 412 with `Tus-Version`.";
    param("Tus-Resumable", ParameterIn::Header, true, one_of([TUS_VERSION]), about)
}

/// `{id}` of `OPTIONS`, which answers for any id.
pub struct AnyUploadId;

impl IntoParams for AnyUploadId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![upload_id("Any id: discovery does not look at it.", false)]
    }
}

/// `{id}` and `Tus-Resumable`, on every request to an upload.
pub struct UploadIdParam;

impl IntoParams for UploadIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let about = "The upload id, the last segment of the `Location` of `POST /video/uploads`; once the upload is finished it is also its job's id. A malformed id names no upload: 404.";
        vec![upload_id(about, true), tus_resumable()]
    }
}

/// The headers of `POST /video/uploads`.
pub struct CreateHeaders;

impl IntoParams for CreateHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let length = "The whole upload's length in bytes. 0: 400 `empty-body`; over `http.max_upload_bytes` (`Tus-Max-Size`): 413. `Upload-Defer-Length` is not supported.";
        let metadata = "Comma-separated `key base64(value)` pairs (tus 1.0.0). `filename` (for display; `name` too) and `filetype` (ignored); `format`, `height` and `priority` are the job options of `POST /video/convert`, checked at once: a value that is not base64 of UTF-8 or not a number, 400; an invalid value or an unknown option, 422. Other keys are ignored.";
        let pairs = r"^ *(?:[^ ,]+(?: +[A-Za-z0-9+/]*={0,2})? *)?(?:, *(?:[^ ,]+(?: +[A-Za-z0-9+/]*={0,2})? *)?)*$";
        let examples = json!({
            "all-keys": {
                "summary": "filename clip.mp4, filetype video/mp4, format webm, height 360, priority 7",
                "value": "filename Y2xpcC5tcDQ=,filetype dmlkZW8vbXA0,format d2VibQ==,height MzYw,priority Nw=="
            },
            "filename-only": {"value": "filename dmlkZW8ubW92"},
            "bad-format": {"summary": "format avi: 422", "value": "format YXZp"},
            "not-base64": {"summary": "400", "value": "height 360"}
        });
        vec![
            tus_resumable(),
            param("Upload-Length", ParameterIn::Header, true, parts::integer(1), length),
            parts::with_examples(
                param("Upload-Metadata", ParameterIn::Header, false, matching(pairs), metadata),
                examples,
            ),
        ]
    }
}

/// `Upload-Offset` of a `PATCH`.
pub struct OffsetHeader;

impl IntoParams for OffsetHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let about = "Where the bytes of this request go: the `Upload-Offset` the last answer (or `HEAD`) gave. Any other offset: 409, and nothing is stored.";
        vec![param("Upload-Offset", ParameterIn::Header, true, parts::integer(0), about)]
    }
}

fn one(status: &str, response: ResponseBuilder) -> BTreeMap<String, RefOr<Response>> {
    let response = response.header("Tus-Resumable", parts::tus_resumable());
    [(status.to_string(), response.build().into())].into()
}

/// The offset, the expiry while unfinished, the job's monitor once finished.
fn progress(response: ResponseBuilder) -> ResponseBuilder {
    response
        .header("Upload-Offset", parts::upload_offset())
        .header("Upload-Expires", parts::upload_expires())
        .header("Link", parts::upload_monitor())
}

/// 204 of `OPTIONS`: what the service speaks.
pub struct Discovery;

impl IntoResponses for Discovery {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one(
            "204",
            ResponseBuilder::new()
                .description("What the service speaks.")
                .header("Tus-Version", parts::tus_version())
                .header("Tus-Extension", parts::tus_extension())
                .header("Tus-Max-Size", parts::tus_max_size()),
        )
    }
}

/// 201 of `POST /video/uploads`.
pub struct Created;

impl IntoResponses for Created {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let about = "The upload is recorded. `Upload-Offset` is what the request body stored (0 without one); `Upload-Expires` while it is unfinished, `Link` once it is (its job is made).";
        let mut created = progress(ResponseBuilder::new().description(about))
            .header("Location", parts::location("/video/uploads/", "The upload, `/video/uploads/{id}`."));
        for (name, operation) in [
            ("GetUploadOffset", "getUploadOffset"),
            ("ResumeUpload", "resumeUpload"),
            ("TerminateUpload", "terminateUpload"),
        ] {
            created = created.link(name, parts::upload_link(operation));
        }
        one("201", created)
    }
}

/// 200 of `HEAD`.
pub struct UploadState;

impl IntoResponses for UploadState {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let about = "The upload's offset and length; `Upload-Expires` while it is unfinished, `Link` once it is.";
        let state = progress(ResponseBuilder::new().description(about))
            .header("Upload-Length", parts::upload_length())
            .header("Cache-Control", parts::no_store());
        one("200", state)
    }
}

/// 204 of `PATCH`.
pub struct Stored;

impl IntoResponses for Stored {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let about = "The bytes are stored; `Upload-Offset` is the new offset. `Upload-Expires` while the upload is unfinished, `Link` once it is.";
        one("204", progress(ResponseBuilder::new().description(about)))
    }
}

/// 204 of `DELETE`.
pub struct Terminated;

impl IntoResponses for Terminated {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one("204", ResponseBuilder::new().description("The upload is gone."))
    }
}
