//! The API's one error type: every error is an RFC 9457 problem document
//! with a stable `code`. Details of 5xx errors go to the log only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;

use crate::domain::JobId;
use crate::queue::BrokerError;
use crate::storage::StoreError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// An RFC 9457 problem document with a stable `code`.
#[derive(serde::Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/{code}`.
    #[serde(rename = "type")]
    #[schema(rename = "type", format = "uri-reference", pattern = "^/problems/[a-z]+(-[a-z]+)*$")]
    pub kind: String,
    /// The status code's reason phrase.
    pub title: &'static str,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    #[schema(min_length = 1)]
    pub detail: String,
    // One of the codes of `crate::codes::PROBLEMS`.
    #[schema(schema_with = problem_code)]
    pub code: &'static str,
}

fn problem_code() -> utoipa::openapi::schema::Object {
    crate::domain::schema::one_of(crate::codes::PROBLEMS.map(|(_, code)| code)).build()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("a valid API key is required")]
    Unauthorized,
    /// A forged, altered or expired playback token.
    #[error("{0}")]
    Forbidden(String),
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String, monitor: Option<JobId> },
    #[error("{0}")]
    Conflict(String),
    #[error("this method is not allowed on this resource")]
    MethodNotAllowed,
    /// A resumable-upload request without `Tus-Resumable: 1.0.0`.
    #[error("send Tus-Resumable: 1.0.0 (the only tus version served)")]
    TusVersion,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("the upload is larger than the limit of {0} bytes")]
    PayloadTooLarge(u64),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    InvalidOption(String),
    #[error("the requested range is outside the result of {0} bytes")]
    RangeNotSatisfiable(u64),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn job_not_found() -> ApiError {
        ApiError::NotFound { code: "not-found", detail: "no such job".into(), monitor: None }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "invalid-playback-token"),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            ApiError::TusVersion => (StatusCode::PRECONDITION_FAILED, "unsupported-tus-version"),
            ApiError::IdempotencyMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-mismatch"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"),
            ApiError::InvalidOption(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-option"),
            ApiError::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range-not-satisfiable"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too-many-requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "service-unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidRange => ApiError::RangeNotSatisfiable(0),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "object store unavailable");
                ApiError::Unavailable("the object store is unavailable; try again shortly".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        tracing::warn!(error = %e, "broker unavailable");
        ApiError::Unavailable("the job queue is unavailable; try again shortly".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                "the service failed to handle this request".to_string()
            }
            other => other.to_string(),
        };
        let body = Problem {
            kind: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
        };
        let body = serde_json::to_string(&body).expect("problem documents serialize");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match &self {
            ApiError::Unavailable(_) | ApiError::TooManyRequests(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::RangeNotSatisfiable(size) => {
                let value = format!("bytes */{size}");
                headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).expect("digits"));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TusVersion => {
                headers.insert("tus-version", HeaderValue::from_static("1.0.0"));
            }
            ApiError::NotFound { monitor: Some(id), .. } => {
                let link = format!("</video/status/{id}>; rel=\"monitor\"");
                headers.insert(header::LINK, HeaderValue::from_str(&link).expect("ids are header-safe"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_code_is_in_the_table_with_its_status() {
        let bad = |code| ApiError::BadRequest { code, detail: String::new() };
        let missing = |code| ApiError::NotFound { code, detail: String::new(), monitor: None };
        let all = [
            bad("bad-request"),
            bad("empty-body"),
            bad("malformed-multipart"),
            ApiError::Unauthorized,
            ApiError::Forbidden(String::new()),
            missing("not-found"),
            missing("result-not-ready"),
            ApiError::Conflict(String::new()),
            ApiError::MethodNotAllowed,
            ApiError::TusVersion,
            ApiError::IdempotencyMismatch,
            ApiError::PayloadTooLarge(1),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::InvalidOption(String::new()),
            ApiError::RangeNotSatisfiable(1),
            ApiError::TooManyRequests(String::new()),
            ApiError::Unavailable(String::new()),
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        let mut seen = Vec::new();
        for e in &all {
            let (status, code) = e.parts();
            assert!(
                crate::codes::PROBLEMS.contains(&(status.as_u16(), code)),
                "{status} {code} is not in codes::PROBLEMS"
            );
            seen.push(code);
        }
        for (_, code) in crate::codes::PROBLEMS {
            assert!(seen.contains(&code), "{code} in codes::PROBLEMS is given by no error");
        }
    }
}
