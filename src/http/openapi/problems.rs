//! The problem documents in the OpenAPI document: the `Problem` schema,
//! whose `code` lists every code of [`crate::codes::PROBLEMS`], and one
//! response per kind of refusal, each naming the codes (of that status)
//! that its operations can give.

use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToResponse, ToSchema};

use super::parts::{self, content};
use crate::domain::schema::{matching, one_of};
use crate::http::error::Problem;

/// A problem response of `status` whose `code` is one of `codes`.
pub fn problem(status: u16, codes: &[&str], description: &str) -> ResponseBuilder {
    let reason = axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let narrower = ObjectBuilder::new()
        .property("status", ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some([status])))
        .property("title", one_of([reason]))
        .property("code", one_of(codes.iter().copied()));
    let schema = AllOfBuilder::new().item(Ref::from_schema_name(Problem::name())).item(narrower);
    ResponseBuilder::new().description(description).content("application/problem+json", content(schema))
}

/// Problem responses shared by operations: `$ref`s to
/// `#/components/responses/<name>`.
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident = $status:literal, [$($code:literal),+], $description:literal $(, $header:expr)*;)+) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl<'s> ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<Response>) {
                    let response = problem($status, &[$($code),+], $description)$(.header($header.0, $header.1))*;
                    (stringify!($name), response.build().into())
                }
            }
        )+

        /// Every shared problem response, for the document's components.
        pub fn all() -> Vec<(String, RefOr<Response>)> {
            vec![$({ let (name, response) = $name::response(); (name.to_string(), response) }),+]
        }
    };
}

problems! {
    BadRequest = 400, ["bad-request", "empty-body", "malformed-multipart"],
        "Malformed request: unparseable option or query string, bad Idempotency-Key, empty body or malformed multipart form.";
    Unauthorized = 401, ["unauthorized"],
        "A valid API key is required (only when `auth.keys` is configured).",
        ("WWW-Authenticate", parts::required(parts::header(one_of(["Bearer"]), None)));
    PlaybackForbidden = 403, ["invalid-playback-token"],
        "The playback token is malformed, was not signed with this deployment's `http.playback_secret`, was altered, or expired.";
    JobNotFound = 404, ["not-found"], "Unknown or malformed id, or another client's job.";
    UploadNotFound = 404, ["not-found"],
        "Unknown or malformed id, an expired, terminated or refused (not a video) upload, or another client's upload.";
    /// 404 of a download: no result (yet), with the job's monitor when it exists.
    NoResult = 404, ["not-found", "result-not-ready"],
        "No result (yet): queued, processing, failed, cancelled, expired, unknown or another client's job; `detail` says why.",
        ("Link", parts::header(crate::domain::schema::monitor_link(), Some("`</video/status/{id}>; rel=\"monitor\"` when the job exists.")));
    IdempotencyConflict = 409, ["conflict"], "A request with this Idempotency-Key is still in progress.";
    AlreadyFinished = 409, ["conflict"], "The job is already finished.";
    UploadConflict = 409, ["conflict"],
        "`Upload-Offset` is not the upload's offset, or another request is storing bytes of this upload; nothing was stored. `HEAD` the upload and continue from its `Upload-Offset`.";
    UnsupportedTusVersion = 412, ["unsupported-tus-version"],
        "The request has no `Tus-Resumable: 1.0.0` (missing, or another version); nothing was changed.",
        ("Tus-Version", parts::tus_version()),
        ("Tus-Resumable", parts::tus_resumable());
    PayloadTooLarge = 413, ["payload-too-large"], "The upload is larger than `http.max_upload_bytes`; nothing was kept.";
    /// 413 of a `PATCH`: past the upload's declared length.
    PastUploadLength = 413, ["payload-too-large"],
        "The body goes past the upload's `Upload-Length`; nothing of it was kept.";
    UnsupportedMediaType = 415, ["unsupported-media-type"],
        "The Content-Type is not accepted, or the body is not a video in a supported container (sniffed from its first bytes).";
    RangeNotSatisfiable = 416, ["range-not-satisfiable"], "The requested range cannot be served.",
        ("Content-Range", parts::required(parts::header(matching("^bytes \\*/[0-9]+$"), None)));
    UnprocessableEntity = 422, ["invalid-option", "idempotency-key-mismatch"],
        "An invalid option value or an unknown option; or an Idempotency-Key reused with a different request.";
    TooManyRequests = 429, ["too-many-requests"],
        "Per-client quota: too many uploads in progress (`http.max_concurrent_uploads_per_client`) or unfinished jobs (`http.max_pending_jobs_per_client`).",
        ("Retry-After", parts::retry_after(true));
    InternalError = 500, ["internal-error"], "The service failed; details are logged, never returned.";
    Unavailable = 503, ["service-unavailable"], "The broker or the object store is unavailable; nothing was changed.",
        ("Retry-After", parts::retry_after(true));
}

/// The schemas this module adds to the document.
pub fn schemas() -> Vec<(String, RefOr<utoipa::openapi::schema::Schema>)> {
    vec![(Problem::name().into_owned(), Problem::schema())]
}
