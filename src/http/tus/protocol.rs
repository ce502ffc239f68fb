//! The tus 1.0.0 wire details: versions and extensions, its headers in and
//! out, `Upload-Metadata`, and CORS for browser clients.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::config::HttpSettings;
use crate::domain::{JobId, JobOptions};
use crate::http::upload::clean_filename;
use crate::http::ApiError;
use crate::uploads::Upload;

pub const TUS_VERSION: &str = "1.0.0";
pub(super) const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration";
pub(super) const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// Headers a browser may read from the answers (CORS).
pub const EXPOSED: [&str; 10] = [
    "location",
    "link",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
];

/// Headers a browser may send (CORS).
pub const ALLOWED: [&str; 9] = [
    "authorization",
    "content-type",
    "tus-resumable",
    "upload-length",
    "upload-metadata",
    "upload-offset",
    "upload-defer-length",
    "x-http-method-override",
    "x-requested-with",
];

/// Every answer says `Tus-Resumable`; requests other than `OPTIONS` must
/// speak version 1.0.0 (412 otherwise).
pub(super) async fn tus_resumable(req: Request, next: Next) -> Response {
    let speaks = req.headers().get("tus-resumable").is_some_and(|v| v == TUS_VERSION);
    let mut response = if req.method() == Method::OPTIONS || speaks {
        next.run(req).await
    } else {
        ApiError::TusVersion.into_response()
    };
    response.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

/// The answer to a request on an upload: its offset, expiry and, once it
/// is a job, the job's monitor.
pub(super) fn answer(status: StatusCode, upload: &Upload) -> Response {
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert("upload-offset", HeaderValue::from(upload.offset));
    if upload.completed {
        let link = format!("</video/status/{}>; rel=\"monitor\"", upload.id);
        h.insert(header::LINK, HeaderValue::from_str(&link).expect("ids are header-safe"));
    } else {
        h.insert("upload-expires", HeaderValue::from_str(&http_date(upload.expires_at)).expect("dates are ASCII"));
    }
    response
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs. The job
/// options (`format`, `height`, `priority`) are checked as the query of
/// `POST /video/convert` is; `filename` is kept for display; other keys
/// (`filetype`, and what clients add) are ignored.
pub(super) fn metadata(headers: &HeaderMap) -> Result<(JobOptions, Option<String>), ApiError> {
    let mut options = JobOptions::default();
    let mut filename = None;
    let Some(value) = headers.get("upload-metadata") else {
        return Ok((options, filename));
    };
    let bad = |detail: String| ApiError::BadRequest { code: "bad-request", detail };
    let text = value.to_str().map_err(|_| bad("Upload-Metadata is not ASCII".into()))?;
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, ' ');
        let key = it.next().unwrap_or("");
        let encoded = it.next().unwrap_or("").trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| bad(format!("Upload-Metadata: the value of {key:?} is not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad(format!("Upload-Metadata: the value of {key:?} is not UTF-8")))?;
        match key {
            "filename" | "name" => filename = Some(clean_filename(&decoded)),
            "format" | "height" | "priority" | "renditions" => options.set(key, &decoded)?,
            _ => {}
        }
    }
    options.check()?;
    Ok((options, filename))
}

pub(super) fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    value.to_str().ok().map(str::trim).filter(|v| digits(v)).and_then(|v| v.parse::<u64>().ok()).map(Some).ok_or_else(
        || ApiError::BadRequest { code: "bad-request", detail: format!("{name} is not a non-negative integer") },
    )
}

pub(super) fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(OFFSET_STREAM))
}

pub(super) fn upload_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| no_upload())
}

pub(super) fn no_upload() -> ApiError {
    ApiError::NotFound { code: "not-found", detail: "no such upload (or it expired)".into(), monitor: None }
}

pub(super) fn interrupted(offset: u64, e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: "bad-request",
        detail: format!("the upload was interrupted ({e}); {offset} bytes are stored: continue from there"),
    }
}

/// CORS for browser uploads (and playback files): `http.cors_allowed_origins`.
pub(super) fn cors(http: &HttpSettings) -> anyhow::Result<tower_http::cors::CorsLayer> {
    use tower_http::cors::CorsLayer;
    let names = |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    Ok(CorsLayer::new()
        .allow_origin(crate::http::files::allowed_origins(http)?)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers(names(&ALLOWED))
        .expose_headers(names(&EXPOSED))
        .max_age(Duration::from_secs(86400)))
}
