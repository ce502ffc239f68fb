//! Every stable error `code` the service gives, in one place: a failed
//! job's `error.code` and the `code` of HTTP problem documents. The README
//! and the OpenAPI document list exactly these (`tests/api/codes.rs`).

/// `error.code` of a `failed` job.
pub const JOB_ERRORS: [&str; 5] = [
    // The input cannot be read or decoded as a video (permanent).
    "invalid-media",
    // Over worker.max_input_seconds or worker.max_input_pixels.
    "input-too-large",
    // Over worker.job_timeout_seconds.
    "timeout",
    // Delivered worker.max_attempts times without finishing.
    "too-many-attempts",
    // The machine ran short on the last attempt (signal, memory, disk).
    "resources-exhausted",
];

/// The HTTP status and `code` of every problem document.
pub const PROBLEMS: [(u16, &str); 18] = [
    (400, "bad-request"),
    (400, "empty-body"),
    (400, "malformed-multipart"),
    (401, "unauthorized"),
    (403, "invalid-playback-token"),
    (404, "not-found"),
    (404, "result-not-ready"),
    (405, "method-not-allowed"),
    (409, "conflict"),
    (412, "unsupported-tus-version"),
    (413, "payload-too-large"),
    (415, "unsupported-media-type"),
    (416, "range-not-satisfiable"),
    (422, "invalid-option"),
    (422, "idempotency-key-mismatch"),
    (429, "too-many-requests"),
    (500, "internal-error"),
    (503, "service-unavailable"),
];
