//! `GET /video/download/{id}`: the result, streamed from the store, with
//! ranges.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
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
use crate::domain::{JobStatus, OutputFormat};
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
    let not_ready = |detail: String| ApiError::NotFound { code: "result-not-ready", detail, monitor: Some(id) };
    let output = match (doc.status, &doc.output) {
        (JobStatus::Done, Some(output)) => output,
        (JobStatus::Failed, _) => {
            let reason = doc.error.as_ref().map(|e| e.message.as_str()).unwrap_or("unknown reason");
            return Err(not_ready(format!("job {id} failed, so there is no result: {reason}")));
        }
        (JobStatus::Cancelled, _) => return Err(not_ready(format!("job {id} was cancelled, so there is no result"))),
        (status, _) => {
            return Err(not_ready(format!("job {id} is {}; the result is not ready yet", status.as_str())));
        }
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(parse_range) {
        Some(r) => resolve_range(r, output.size_bytes)?,
        None => None,
    };
    let range = range.as_deref();
    let object = state
        .storage
        .get(&output_key(&client, id, doc.format), range)
        .await?
        .ok_or_else(|| not_ready(format!("the result of job {id} has expired")))?;

    let mut response = Response::builder()
        .status(if object.content_range().is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, &output.content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}.{}\"", doc.format.extension()));
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
    response.body(body).map_err(|e| ApiError::Internal(e.into()))
}

/// `Range`, in the document.
struct RangeParam;

impl utoipa::IntoParams for RangeParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let about = "One byte range (RFC 9110): `bytes=0-1023`, `bytes=1024-` or `bytes=-512` gives 206, or 416 when it starts past the end. A value that is not a `bytes=` range is ignored (200).";
        let range =
            parts::param("Range", ParameterIn::Header, false, ObjectBuilder::new().schema_type(Type::String), about);
        let range = parts::with_examples(range, parts::range_examples());
        vec![range]
    }
}

/// The 200 and 206 of a download.
struct Output;

impl utoipa::IntoResponses for Output {
    fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
        let id_file = format!(
            "^attachment; filename=\"{UUID}\\.({})\"$",
            OutputFormat::ALL.map(OutputFormat::extension).join("|")
        );
        let answer = |description: &str| {
            let mut r = ResponseBuilder::new()
                .description(description)
                .header("Content-Length", parts::required(parts::header(parts::integer(0), None)))
                .header("ETag", parts::required(parts::header(matching("^(W/)?\"[^\"]*\"$"), None)))
                .header("Accept-Ranges", parts::required(parts::header(one_of(["bytes"]), None)))
                .header("Content-Disposition", parts::required(parts::header(matching(id_file.clone()), None)));
            for format in OutputFormat::ALL {
                let media = ObjectBuilder::new().schema_type(Type::String).content_media_type(format.content_type());
                r = r.content(format.content_type(), parts::content(media));
            }
            r
        };
        let whole = answer("The whole output, streamed from the store.");
        let part = answer("The requested range.")
            .header("Content-Range", parts::required(parts::header(matching("^bytes [0-9]+-[0-9]+/[0-9]+$"), None)));
        [("200".to_string(), whole.build().into()), ("206".to_string(), part.build().into())].into()
    }
}

/// A single byte range as a client asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    From(u64, Option<u64>),
    Last(u64),
}

/// One `bytes=` range; anything else (bad syntax, several ranges) is
/// ignored and the whole result served, as RFC 9110 allows.
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    match (start.trim(), end.trim()) {
        ("", last) => last.parse().ok().filter(|n| *n > 0).map(ByteRange::Last),
        (s, "") => s.parse().ok().map(|s| ByteRange::From(s, None)),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
            (s <= e).then_some(ByteRange::From(s, Some(e)))
        }
    }
}

/// The S3 `Range` for a range of a result of `size` bytes, or 416.
fn resolve_range(range: ByteRange, size: u64) -> Result<Option<String>, ApiError> {
    match range {
        ByteRange::From(start, _) if start >= size => Err(ApiError::RangeNotSatisfiable(size)),
        ByteRange::From(start, end) => {
            let end = end.unwrap_or(size - 1).min(size - 1);
            Ok(Some(format!("bytes={start}-{end}")))
        }
        ByteRange::Last(n) => Ok(Some(format!("bytes={}-{}", size.saturating_sub(n), size.saturating_sub(1)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_or_ignored() {
        assert_eq!(parse_range("bytes=10-19"), Some(ByteRange::From(10, Some(19))));
        assert_eq!(parse_range("bytes=10-"), Some(ByteRange::From(10, None)));
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Last(5)));
        for ignored in ["bytes=abc", "bytes=5-2", "bytes=0-0,5-6", "bytes=", "items=0-1", "bytes=-0"] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
        assert_eq!(resolve_range(ByteRange::From(0, Some(99)), 10).unwrap().unwrap(), "bytes=0-9");
        assert!(resolve_range(ByteRange::From(10, None), 10).is_err());
        assert_eq!(resolve_range(ByteRange::Last(50), 10).unwrap().unwrap(), "bytes=0-9");
    }
}
