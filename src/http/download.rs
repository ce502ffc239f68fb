//! `GET /video/download/{id}`: the result, streamed from the store, with
//! ranges.

use axum::body::Body;
use axum::extract::State;
use axum::http::response::Builder;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use http_range_header::{EndPosition, StartPosition, SyntacticallyCorrectRange};
use tokio_util::io::ReaderStream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::collections::BTreeMap;

use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Response as ResponseDoc, ResponseBuilder};

use super::openapi::parts;
use super::openapi::problems::{InternalError, NoResult, RangeNotSatisfiable, Unauthorized, Unavailable};
use super::status::{load_job, JobIdParam, JobPath};
use super::{ApiError, AppState, Client};
use crate::domain::schema::{matching, one_of, UUID};
use crate::domain::{JobId, JobStatus, OutputFormat, OutputInfo, StatusDoc};
use crate::storage::output_key;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download))
}

#[utoipa::path(
    get,
    path = "/video/download/{id}",
    operation_id = "downloadResult",
    tag = "jobs",
    summary = "The result",
    security((), ("bearer" = []), ("api_key" = [])),
    params(JobIdParam, RangeParam),
    responses(
        Output,
        (status = 401, response = Unauthorized),
        (status = 404, response = NoResult),
        (status = 416, response = RangeNotSatisfiable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn download(
    State(state): State<AppState>,
    Client(client): Client,
    JobPath(id): JobPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let doc = load_job(&state, &client, id).await?;
    let output = finished_output(&doc)?;
    if let Some(manifest) = doc.format.manifest() {
        // A package: its manifest, which names the other files relatively.
        let location = format!("/video/download/{id}/{manifest}");
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .body(Body::empty())
            .map_err(|e| ApiError::Internal(e.into()));
    }
    let disposition = format!("attachment; filename=\"{id}.{}\"", doc.format.extension());
    let key = output_key(&client, id, doc.format);
    serve_object(&state, id, &key, Some(&output.content_type), Some(output.size_bytes), &headers, |r| {
        r.header(header::CONTENT_DISPOSITION, disposition)
    })
    .await
}

/// The output of a done job, or the 404 that says why there is none.
pub fn finished_output(doc: &StatusDoc) -> Result<&OutputInfo, ApiError> {
    let id = doc.id;
    let not_ready = |detail: String| ApiError::NotFound { code: "result-not-ready", detail, monitor: Some(id) };
    match (doc.status, &doc.output) {
        (JobStatus::Done, Some(output)) => Ok(output),
        (JobStatus::Failed, _) => {
            let reason = doc.error.as_ref().map(|e| e.message.as_str()).unwrap_or("unknown reason");
            Err(not_ready(format!("job {id} failed, so there is no result: {reason}")))
        }
        (JobStatus::Cancelled, _) => Err(not_ready(format!("job {id} was cancelled, so there is no result"))),
        (status, _) => Err(not_ready(format!("job {id} is {}; the result is not ready yet", status.as_str()))),
    }
}

/// Streams one object of job `id` from the store, honouring one `Range`
/// (`size`, when known, saves a request to learn it).
pub async fn serve_object(
    state: &AppState,
    id: JobId,
    key: &str,
    content_type: Option<&str>,
    size: Option<u64>,
    headers: &HeaderMap,
    extra: impl FnOnce(Builder) -> Builder,
) -> Result<Response, ApiError> {
    let expired = || ApiError::NotFound {
        code: "result-not-ready",
        detail: format!("the result of job {id} has expired"),
        monitor: Some(id),
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(parse_range) {
        Some(r) => {
            let size = match size {
                Some(size) => size,
                None => state.storage.size(key).await?.ok_or_else(expired)?,
            };
            resolve_range(r, size)?
        }
        None => None,
    };
    let object = state.storage.get(key, range.as_deref()).await?.ok_or_else(expired)?;
    let content_type = content_type.or(object.content_type()).unwrap_or("application/octet-stream").to_string();
    let mut response = Response::builder()
        .status(if object.content_range().is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(len) = object.content_length() {
        response = response.header(header::CONTENT_LENGTH, len);
    }
    if let Some(range) = object.content_range() {
        response = response.header(header::CONTENT_RANGE, range);
    }
    if let Some(etag) = object.e_tag().and_then(|e| HeaderValue::from_str(e).ok()) {
        response = response.header(header::ETAG, etag);
    }
    let body = Body::from_stream(ReaderStream::new(object.body.into_async_read()));
    extra(response).body(body).map_err(|e| ApiError::Internal(e.into()))
}

/// `Range`, in the document.
pub struct RangeParam;

impl utoipa::IntoParams for RangeParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let about = "One byte range (RFC 9110): `bytes=0-1023`, `bytes=1024-` or `bytes=-512` gives 206, or 416 when it starts past the end. A value that is not a `bytes=` range is ignored (200).";
        let range =
            parts::param("Range", ParameterIn::Header, false, ObjectBuilder::new().schema_type(Type::String), about);
        let range = parts::with_examples(range, parts::range_examples());
        vec![range]
    }
}

/// The 200 and 206 of a file: `types` are its possible content types;
/// `extra` adds headers of its own.
fn file_answers(
    types: &[&str],
    extra: impl Fn(ResponseBuilder) -> ResponseBuilder,
) -> BTreeMap<String, RefOr<ResponseDoc>> {
    let answer = |description: &str| {
        let mut r = ResponseBuilder::new()
            .description(description)
            .header("Content-Length", parts::required(parts::header(parts::integer(0), None)))
            .header("ETag", parts::required(parts::header(matching("^(W/)?\"[^\"]*\"$"), None)))
            .header("Accept-Ranges", parts::required(parts::header(one_of(["bytes"]), None)));
        for content_type in types {
            let media = ObjectBuilder::new().schema_type(Type::String).content_media_type(*content_type);
            r = r.content(*content_type, parts::content(media));
        }
        extra(r)
    };
    let whole = answer("The whole file, streamed from the store.");
    let part = answer("The requested range.")
        .header("Content-Range", parts::required(parts::header(matching("^bytes [0-9]+-[0-9]+/[0-9]+$"), None)));
    [("200".to_string(), whole.build().into()), ("206".to_string(), part.build().into())].into()
}

/// The 200 and 206 of a download.
struct Output;

impl utoipa::IntoResponses for Output {
    fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
        let single: Vec<OutputFormat> = OutputFormat::ALL.into_iter().filter(|f| !f.is_package()).collect();
        let extensions: Vec<&str> = single.iter().map(|f| f.extension()).collect();
        let id_file = format!("^attachment; filename=\"{UUID}\\.({})\"$", extensions.join("|"));
        let types: Vec<&str> = single.iter().map(|f| f.content_type()).collect();
        let mut answers = file_answers(&types, |r| {
            r.header("Content-Disposition", parts::required(parts::header(matching(id_file.clone()), None)))
        });
        let manifest = format!("^/video/download/{UUID}/(master\\.m3u8|manifest\\.mpd)$");
        let found = ResponseBuilder::new()
            .description("An `hls` or `dash` job: its manifest, among the files of `/video/download/{id}/{file}`.")
            .header("Location", parts::required(parts::header(matching(manifest), None)));
        answers.insert("302".to_string(), found.build().into());
        answers
    }
}

/// The 200 and 206 of one file of an output folder.
pub struct FileOutput;

impl utoipa::IntoResponses for FileOutput {
    fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
        let mut types: Vec<&str> = OutputFormat::ALL.map(OutputFormat::content_type).to_vec();
        types.extend(["audio/mp4", "image/jpeg", "text/vtt"]);
        file_answers(&types, |r| r.header("Cache-Control", parts::required(parts::header(matching("immutable"), None))))
    }
}

/// A single byte range as a client asks for it (parsed strictly by
/// `http-range-header`).
type ByteRange = SyntacticallyCorrectRange;

/// One `bytes=` range; anything else (bad syntax, several ranges) is
/// ignored and the whole result served, as RFC 9110 allows.
fn parse_range(value: &str) -> Option<ByteRange> {
    let parsed = http_range_header::parse_range_header(value.trim()).ok()?;
    match parsed.ranges.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// The S3 `Range` for a range of a result of `size` bytes, or 416. A suffix
/// longer than the result means all of it (RFC 9110 §14.1.2); a range that
/// ends before it starts is ignored.
fn resolve_range(range: ByteRange, size: u64) -> Result<Option<String>, ApiError> {
    let last = size.saturating_sub(1);
    let (start, end) = match (range.start, range.end) {
        (StartPosition::FromLast(n), _) => (size.saturating_sub(n), last),
        (StartPosition::Index(start), _) if start >= size => return Err(ApiError::RangeNotSatisfiable(size)),
        (StartPosition::Index(start), EndPosition::LastByte) => (start, last),
        (StartPosition::Index(start), EndPosition::Index(end)) if end < start => return Ok(None),
        (StartPosition::Index(start), EndPosition::Index(end)) => (start, end.min(last)),
    };
    Ok(Some(format!("bytes={start}-{end}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_or_ignored() {
        let range = |v: &str, size: u64| resolve_range(parse_range(v).expect(v), size);
        assert_eq!(range("bytes=10-19", 100).unwrap().unwrap(), "bytes=10-19");
        assert_eq!(range("bytes=10-", 100).unwrap().unwrap(), "bytes=10-99");
        assert_eq!(range("bytes=-5", 100).unwrap().unwrap(), "bytes=95-99");
        for ignored in ["bytes=abc", "bytes=0-0,5-6", "bytes=", "items=0-1", "bytes=-0", "bytes= 1-2"] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
        assert_eq!(range("bytes=5-2", 10).unwrap(), None);
        assert_eq!(range("bytes=0-99", 10).unwrap().unwrap(), "bytes=0-9");
        assert!(range("bytes=10-", 10).is_err());
        assert_eq!(range("bytes=-50", 10).unwrap().unwrap(), "bytes=0-9");
    }
}
