//! `POST /video/convert`: stream the upload into the store, write the status
//! document, publish the job with a confirmed, routed publish, then 202.
//! If any step fails, what earlier steps made is removed again.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::{Stream, StreamExt};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::body::idle_limited;
use super::idempotency::{self, Claim};
use super::intake::{self, remove_quietly, Intake};
use super::status::{estimate_queued, load_job};
use super::{ApiError, AppState, Client};
use crate::domain::{ClientId, Container, JobId, JobOptions, OptionError};
use crate::sniff::{sniff, SNIFF_LEN};
use crate::storage::{input_key, Journal, PendingPut, PutStreamError, PART_SIZE};
use crate::trace::TraceParent;

pub fn router() -> Router<AppState> {
    // The body is streamed and counted against `http.max_upload_bytes` here,
    // so axum's own (buffering) limit is off.
    Router::new().route("/video/convert", post(convert).layer(DefaultBodyLimit::disable()))
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

/// A received upload, before it becomes a job. Its last write to the store
/// is still pending (`None` for a replay, which stores nothing).
struct StoredInput {
    container: Container,
    size: u64,
    filename: Option<String>,
    pending: Option<PendingPut>,
}

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

/// Where an upload goes: into the store, and through a hash when the
/// request carries an Idempotency-Key.
struct Sink {
    store: bool,
    hasher: Option<Arc<Mutex<Sha256>>>,
}

/// Upload failure, before it is turned into an HTTP error.
enum StoreInputError<E> {
    Empty,
    NotVideo,
    Put(PutStreamError<E>),
}

impl<E> StoreInputError<E> {
    fn into_api(self, body_error: impl FnOnce(E) -> ApiError) -> ApiError {
        match self {
            StoreInputError::Empty => {
                ApiError::BadRequest { code: "empty-body", detail: "the request body is empty".into() }
            }
            StoreInputError::NotVideo => not_video(),
            StoreInputError::Put(PutStreamError::Body(e)) => body_error(e),
            StoreInputError::Put(PutStreamError::TooLarge(limit)) => ApiError::PayloadTooLarge(limit),
            StoreInputError::Put(PutStreamError::Store(e)) => e.into(),
        }
    }
}

pub(super) fn not_video() -> ApiError {
    ApiError::UnsupportedMediaType(
        "the upload is not a video in a supported container (MP4, QuickTime, Matroska, WebM, AVI, MPEG-TS, MPEG-PS, FLV, Ogg, ASF)".into(),
    )
}

/// Reads enough of the body to recognise the container, then streams the
/// whole body to `inputs/<client>/<id>`.
async fn store_input<S, E>(
    state: &AppState,
    client: &ClientId,
    id: JobId,
    body: S,
    filename: Option<String>,
    sink: &Sink,
) -> Result<StoredInput, StoreInputError<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let hasher = sink.hasher.clone();
    let mut body = body.map(move |chunk| {
        if let (Ok(bytes), Some(h)) = (&chunk, &hasher) {
            h.lock().unwrap().update(bytes);
        }
        chunk
    });
    let mut head = BytesMut::new();
    while head.len() < SNIFF_LEN {
        match body.next().await {
            Some(chunk) => head.extend_from_slice(&chunk.map_err(|e| StoreInputError::Put(PutStreamError::Body(e)))?),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(StoreInputError::Empty);
    }
    let container = sniff(&head).ok_or(StoreInputError::NotVideo)?;
    let limit = state.settings.http.max_upload_bytes;
    let (size, pending) = if sink.store {
        let key = input_key(client, id);
        let pending = state
            .storage
            .receive_stream(
                &key,
                container.content_type(),
                head.freeze(),
                body,
                limit,
                Some(journal(state, client, id)),
            )
            .await
            .map_err(StoreInputError::Put)?;
        (pending.size(), Some(pending))
    } else {
        // A replay: the bytes are only hashed, to compare with the first request.
        let mut size = head.len() as u64;
        while let Some(chunk) = body.next().await {
            size += chunk.map_err(|e| StoreInputError::Put(PutStreamError::Body(e)))?.len() as u64;
            if size > limit {
                return Err(StoreInputError::Put(PutStreamError::TooLarge(limit)));
            }
        }
        (size, None)
    };
    Ok(StoredInput { container, size, filename, pending })
}

/// The multipart form: one part named `file` (the video), and text fields
/// for the options, before or after it.
async fn from_multipart(
    state: &AppState,
    client: &ClientId,
    id: JobId,
    mut multipart: Multipart,
    options: &mut JobOptions,
    sink: &Sink,
) -> Result<StoredInput, ApiError> {
    let mut stored: Option<StoredInput> = None;
    let result = async {
        let mut fields = 0;
        while let Some(field) = multipart.next_field().await.map_err(|e| malformed_multipart(e.body_text()))? {
            fields += 1;
            if fields > MAX_FORM_FIELDS {
                return Err(malformed_multipart(format!("a form may have at most {MAX_FORM_FIELDS} parts")));
            }
            let name = field.name().unwrap_or("").to_string();
            if name == "file" {
                if stored.is_some() {
                    return Err(malformed_multipart("only one part named \"file\" is accepted".into()));
                }
                let filename = field.file_name().map(clean_filename);
                let body = idle_limited(field, idle(state));
                let input = store_input(state, client, id, body, filename, sink)
                    .await
                    .map_err(|e| e.into_api(|e| malformed_multipart(e.to_string())))?;
                stored = Some(input);
            } else {
                let value = small_text(field).await?;
                options.set(&name, &value)?;
            }
        }
        Ok(())
    }
    .await;
    match (result, stored) {
        (Ok(()), Some(input)) => Ok(input),
        (Ok(()), None) => Err(malformed_multipart("the form has no part named \"file\"".into())),
        (Err(e), stored) => {
            if let Some(pending) = stored.and_then(|s| s.pending) {
                pending.abort(&state.storage).await;
            }
            Err(e)
        }
    }
}

/// The file and the three options, with room for a few unknown fields
/// (which are refused one by one as invalid options anyway).
const MAX_FORM_FIELDS: usize = 8;

/// A text field of at most 1 KiB.
async fn small_text(mut field: axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| malformed_multipart(e.body_text()))? {
        buf.extend_from_slice(&chunk);
        if buf.len() > 1024 {
            return Err(malformed_multipart("form fields other than \"file\" are limited to 1 KiB".into()));
        }
    }
    String::from_utf8(buf).map_err(|_| malformed_multipart("a form field is not UTF-8 text".into()))
}

fn malformed_multipart(detail: String) -> ApiError {
    ApiError::BadRequest { code: "malformed-multipart", detail: format!("malformed multipart body: {detail}") }
}

/// Where a direct upload records its multipart upload while it runs, so
/// the sweeper can abort it should this process die.
fn journal(state: &AppState, client: &ClientId, id: JobId) -> Journal {
    let expiry = chrono::Duration::seconds(state.settings.http.upload_expiry_seconds.min(1 << 40) as i64);
    Journal { key: crate::uploads::direct_record_key(client, id), expires_at: Utc::now() + expiry }
}

pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// The memory an upload of `declared` bytes holds at most while it
/// streams: the part being filled and the one being sent.
pub(super) fn reservation(declared: Option<u64>) -> u64 {
    let most = 2 * PART_SIZE as u64;
    declared.map_or(most, |n| n.min(most))
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

/// The client's name for its file, for display only: last path component,
/// printable, at most 255 characters.
pub(super) fn clean_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    last.chars().filter(|c| !c.is_control()).take(255).collect()
}
