//! `POST /video/convert`: stream the upload into the store, write the status
//! document, publish the job with a confirmed, routed publish, then 202.
//! If any step fails, what earlier steps made is removed again.

mod docs;
mod form;
mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tracing::Instrument;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::body::idle_limited;
use super::idempotency::{self, Claim};
use super::intake::{self, remove_quietly, Intake};
use super::openapi::parts::{mp4_padded, Binary, MP4_SIGNATURE};
use super::openapi::problems::{
    BadRequest, IdempotencyConflict, InternalError, PayloadTooLarge, TooManyRequests, Unauthorized, Unavailable,
    UnprocessableEntity, UnsupportedMediaType,
};
use super::status::{estimate_queued, load_job};
use super::upload::{clean_filename, declared_length, reservation};
use super::{ApiError, AppState, Client};
use crate::domain::{ClientId, JobId, JobOptions, OptionError};
use crate::storage::input_key;
use crate::trace::TraceParent;
use docs::{Accepted, ConvertForm, ConvertQuery, IdempotencyKey};
use form::{from_multipart, malformed_multipart};
use store::{store_input, Sink, StoredInput};

pub fn routes() -> OpenApiRouter<AppState> {
    // The body is streamed and counted against `http.max_upload_bytes` here,
    // so axum's own (buffering) limit is off.
    OpenApiRouter::new().routes(routes!(convert).layer(DefaultBodyLimit::disable()))
}

impl From<OptionError> for ApiError {
    fn from(e: OptionError) -> Self {
        if e.unparseable {
            ApiError::BadRequest { code: "bad-request", detail: e.message }
        } else {
            ApiError::InvalidOption(e.message)
        }
    }
}

#[utoipa::path(
    post,
    path = "/video/convert",
    operation_id = "convertVideo",
    tag = "jobs",
    summary = "Enqueue a transcoding job",
    description = "Streams the video to the store, writes the status document, publishes the job with a confirmed publish, then answers 202. Options come as query parameters or multipart text fields. The container is sniffed from the first bytes, never taken from a name.",
    params(ConvertQuery, IdempotencyKey),
    request_body(
        content(
            (inline(Binary) = "video/*", examples(
                ("mp4-signature-only" = (summary = "an MP4 signature alone (24 bytes)", value = json!(MP4_SIGNATURE))),
                ("mp4-signature-padded" = (summary = "an MP4 signature padded to 624 bytes", value = json!(mp4_padded())))
            )),
            (inline(Binary) = "application/octet-stream", examples(
                ("mp4-signature-only" = (summary = "an MP4 signature alone (24 bytes)", value = json!(MP4_SIGNATURE))),
                ("mp4-signature-padded" = (summary = "an MP4 signature padded to 624 bytes", value = json!(mp4_padded())))
            )),
            (inline(ConvertForm) = "multipart/form-data",
                encoding(("file" = (content_type = "video/*, application/octet-stream"))),
                examples(
                    ("mp4-signature-only" = (value = json!({"file": MP4_SIGNATURE, "format": "webm"}))),
                    ("mp4-signature-padded" = (value = json!({"file": mp4_padded(), "height": 360, "priority": 7})))
                )
            )
        )
    ),
    responses(
        Accepted,
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = IdempotencyConflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn convert(State(state): State<AppState>, Client(client): Client, req: Request) -> Result<Response, ApiError> {
    // The work runs in its own task: if the client goes away mid-upload, the
    // task still sees the body fail and cleans up after itself.
    let trace = intake::trace_of(req.headers());
    let span = tracing::info_span!("convert", client = %client, trace_id = %trace.trace_id);
    let work = convert_inner(state, client, req, trace).instrument(span);
    tokio::spawn(work).await.map_err(|e| ApiError::Internal(e.into()))?
}

async fn convert_inner(
    state: AppState,
    client: ClientId,
    mut req: Request,
    trace: TraceParent,
) -> Result<Response, ApiError> {
    let key = match req.headers().get("idempotency-key") {
        Some(v) => Some(idempotency::parse_key(v.to_str().unwrap_or(""))?),
        None => None,
    };
    let claim = match &key {
        Some(key) => {
            let ttl = state.settings.http.idempotency_ttl_seconds;
            Some(state.idempotency.claim(&state.storage, &client, key, ttl).await?)
        }
        None => None,
    };
    let http = &state.settings.http;
    let _slot =
        state.quota.start_upload(&client, http.max_concurrent_uploads_per_client, http.max_pending_jobs_per_client)?;
    let declared = declared_length(req.headers());
    let _memory = state.budget.reserve_or_drain(reservation(declared), req.body_mut(), idle(&state)).await?;
    let id = JobId::new();
    let store = !matches!(claim, Some(Claim::Replay { .. }));
    let mut received = receive(&state, &client, id, req, store, key.is_some()).await?;
    let fingerprint = received.body_sha256.as_ref().map(|h| idempotency::fingerprint(&received.options, h));

    let doc = match claim {
        Some(Claim::Replay { job, fingerprint: first }) => {
            if fingerprint.as_deref() != Some(first.as_str()) {
                return Err(ApiError::IdempotencyMismatch);
            }
            tracing::info!(job = %job, client = %client, "idempotent replay");
            load_job(&state, &client, job).await?
        }
        claim => {
            let pending = received.stored.pending.take();
            let stored = &received.stored;
            let intake = Intake {
                id,
                options: &received.options,
                container: stored.container,
                size: stored.size,
                filename: stored.filename.clone(),
            };
            let input_done = async {
                match pending {
                    Some(p) => p.finish(&state.storage).await.map(drop),
                    None => Ok(()),
                }
            };
            let doc = match intake::enqueue(&state, &client, intake, input_done, &trace).await {
                Ok(doc) => doc,
                Err(e) => {
                    remove_quietly(&state, &input_key(&client, id)).await;
                    return Err(e);
                }
            };
            if let (Some(Claim::Fresh(guard)), Some(fp)) = (claim, fingerprint) {
                guard.complete(id, fp).await?;
            }
            doc
        }
    };
    let mut doc = doc;
    estimate_queued(&state, &mut doc).await;
    let mut response = (StatusCode::ACCEPTED, Json(&doc)).into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_str(&doc.links.self_).expect("ids are header-safe"));
    let retry = doc.retry_after_seconds(Utc::now()).unwrap_or(1);
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry));
    Ok(response)
}

/// A request's options and video, stored (or, for a replay, only hashed).
struct Received {
    options: JobOptions,
    stored: StoredInput,
    body_sha256: Option<Vec<u8>>,
}

async fn receive(
    state: &AppState,
    client: &ClientId,
    id: JobId,
    req: Request,
    store: bool,
    hash: bool,
) -> Result<Received, ApiError> {
    let mut options = JobOptions::default();
    let Query(query) = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map_err(|_| ApiError::BadRequest { code: "bad-request", detail: "the query string is malformed".into() })?;
    for (name, value) in &query {
        options.set(name, value)?;
    }
    let multipart_options = req.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.to_str().is_ok_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
    });
    if !multipart_options {
        options.check()?;
    }
    check_length(req.headers(), state.settings.http.max_upload_bytes)?;

    let hasher = hash.then(|| Arc::new(Mutex::new(Sha256::new())));
    let sink = Sink { store, hasher: hasher.clone() };
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let stored = if media_type == "multipart/form-data" {
        let multipart = Multipart::from_request(req, state).await.map_err(|e| malformed_multipart(e.body_text()))?;
        from_multipart(state, client, id, multipart, &mut options, &sink).await?
    } else if media_type.is_empty() || media_type == "application/octet-stream" || media_type.starts_with("video/") {
        let filename = filename_from_disposition(req.headers());
        let body = idle_limited(req.into_body().into_data_stream(), idle(state));
        store_input(state, client, id, body, filename, &sink).await.map_err(|e| {
            e.into_api(|e| ApiError::BadRequest {
                code: "bad-request",
                detail: format!("the upload was interrupted: {e}"),
            })
        })?
    } else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {media_type:?} is not accepted; send video/*, application/octet-stream or multipart/form-data"
        )));
    };
    let body_sha256 = hasher.map(|h| h.lock().unwrap().clone().finalize().to_vec());
    Ok(Received { options, stored, body_sha256 })
}

/// A declared `Content-Length` over the limit is refused before reading.
fn check_length(headers: &HeaderMap, limit: u64) -> Result<(), ApiError> {
    match declared_length(headers) {
        Some(n) if n > limit => Err(ApiError::PayloadTooLarge(limit)),
        _ => Ok(()),
    }
}

fn idle(state: &AppState) -> Duration {
    Duration::from_secs(state.settings.http.body_idle_timeout_seconds)
}

fn filename_from_disposition(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_DISPOSITION)?.to_str().ok()?;
    let start = value.find("filename=")? + "filename=".len();
    let name = value[start..].split(';').next()?.trim().trim_matches('"');
    (!name.is_empty()).then(|| clean_filename(name))
}
