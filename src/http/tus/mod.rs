//! `/video/uploads`: resumable uploads, tus 1.0.0 with `creation`,
//! `creation-with-upload`, `termination` and `expiration`. The state lives
//! in the store ([`crate::uploads`]), so any API process continues an
//! upload; the last byte makes the job through the same path as `POST
//! /video/convert` ([`super::intake`]).

mod docs;
mod protocol;
mod receive;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::CorsLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use protocol::TUS_VERSION;
use protocol::*;
use receive::{complete, spawn_receive};

use super::locks::Held;
use super::openapi::parts::{mp4_padded, Binary, MP4_SIGNATURE};
use super::openapi::problems::{
    BadRequest, InternalError, PastUploadLength, PayloadTooLarge, TooManyRequests, Unauthorized, Unavailable,
    UnprocessableEntity, UnsupportedMediaType, UnsupportedTusVersion, UploadConflict, UploadNotFound,
};
use super::upload::declared_length;
use super::{intake, ApiError, AppState, Client};
use crate::domain::ClientId;
use crate::uploads::Upload;
use docs::{
    AnyUploadId, CreateHeaders, Created, Discovery, OffsetHeader, Stored, Terminated, UploadIdParam, UploadState,
};

/// How long a request waits for another request on the same upload (in
/// this process) to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

pub fn routes() -> OpenApiRouter<AppState> {
    // OPTIONS must be a method of both routes, or the router answers 405
    // before the layers below run; the layers then answer every OPTIONS
    // (discovery or CORS preflight).
    OpenApiRouter::new().routes(routes!(create, discover)).routes(routes!(info, patch, terminate, discover_upload))
}

/// The layers of the resumable-upload routes: the protocol version,
/// streamed bodies, CORS and discovery.
pub struct Layers {
    cors: CorsLayer,
    state: AppState,
}

impl Layers {
    pub fn new(state: &AppState) -> anyhow::Result<Layers> {
        Ok(Layers { cors: cors(&state.settings.http)?, state: state.clone() })
    }

    pub fn wrap(&self, routes: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
        routes
            .layer(axum::middleware::from_fn(tus_resumable))
            // Bodies are streamed into the store and counted there.
            .layer(DefaultBodyLimit::disable())
            .layer(self.cors.clone())
            .layer(axum::middleware::from_fn_with_state(self.state.clone(), discovery_first))
    }
}

/// The CORS layer takes every `OPTIONS` for a preflight; an `OPTIONS`
/// that is not one (no `Access-Control-Request-Method`) is tus discovery.
async fn discovery_first(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS && !req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let mut response = discover(State(state)).await;
        response.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
        return response;
    }
    next.run(req).await
}

#[utoipa::path(
    options,
    path = "/video/uploads",
    operation_id = "discoverUploads",
    tag = "uploads",
    summary = "tus discovery: versions, extensions and the size limit",
    description = "An `OPTIONS` that is not a CORS preflight (no `Access-Control-Request-Method`). Needs neither an API key nor `Tus-Resumable`.",
    security(()),
    responses(Discovery)
)]
async fn discover(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    h.insert("tus-max-size", HeaderValue::from(state.settings.http.max_upload_bytes));
    response
}

#[utoipa::path(
    options,
    path = "/video/uploads/{id}",
    operation_id = "discoverUpload",
    tag = "uploads",
    summary = "tus discovery, on an upload's URL",
    description = "The same answer as `OPTIONS /video/uploads`, for any id.",
    security(()),
    params(AnyUploadId),
    responses(Discovery)
)]
async fn discover_upload(state: State<AppState>) -> Response {
    discover(state).await
}

/// `POST /video/uploads`: checks the length and the options, records the
/// upload, and stores a first chunk when the request carries one.
#[utoipa::path(
    post,
    path = "/video/uploads",
    operation_id = "createUpload",
    tag = "uploads",
    summary = "Create a resumable upload (tus `creation`, `creation-with-upload`)",
    description = "Checks `Upload-Length` against `http.max_upload_bytes` and the job options of `Upload-Metadata` at once, records the upload in the store, and answers its `Location`. A body with `Content-Type: application/offset+octet-stream` is its first bytes (`creation-with-upload`), stored as a `PATCH` at offset 0 would store them; when they are the whole upload it becomes its job at once (`Link`). The first bytes are sniffed as in `POST /video/convert`: not a video, 415, and the upload is removed.",
    params(CreateHeaders),
    request_body(
        description = "`creation-with-upload`: the upload's first bytes (at most `Upload-Length`).",
        content((inline(Option<Binary>) = "application/offset+octet-stream", examples(
            ("mp4-signature-only" = (summary = "an MP4 signature alone (24 bytes)", value = json!(MP4_SIGNATURE))),
            ("mp4-signature-padded" = (summary = "an MP4 signature padded to 624 bytes", value = json!(mp4_padded())))
        )))
    ),
    responses(
        Created,
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 412, response = UnsupportedTusVersion),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn create(State(state): State<AppState>, Client(client): Client, req: Request) -> Result<Response, ApiError> {
    let headers = req.headers();
    let length = header_u64(headers, "upload-length")?.ok_or_else(|| ApiError::BadRequest {
        code: "bad-request",
        detail: "Upload-Length is required (Upload-Defer-Length is not supported)".into(),
    })?;
    if length > state.settings.http.max_upload_bytes {
        return Err(ApiError::PayloadTooLarge(state.settings.http.max_upload_bytes));
    }
    if length == 0 {
        return Err(ApiError::BadRequest {
            code: "empty-body",
            detail: "Upload-Length is 0: nothing to convert".into(),
        });
    }
    let (options, filename) = metadata(headers)?;
    let with_body = declared_length(headers).is_none_or(|n| n > 0) && is_offset_stream(headers);
    let trace = intake::trace_of(headers);
    let upload = state.uploads.create(&client, length, options, filename).await?;
    tracing::info!(upload = %upload.id, client = %client, length, "upload created");
    let location = format!("/video/uploads/{}", upload.id);
    let upload = if with_body { spawn_receive(&state, &client, upload.id, 0, req, trace).await? } else { upload };
    let mut response = answer(StatusCode::CREATED, &upload);
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ids are header-safe"));
    Ok(response)
}

/// `HEAD /video/uploads/{id}`: where to continue.
#[utoipa::path(
    head,
    path = "/video/uploads/{id}",
    operation_id = "getUploadOffset",
    tag = "uploads",
    summary = "Where to continue an upload",
    description = "Waits for a request still storing bytes of this upload (in this process), then answers its offset. An upload whose last byte is stored but whose job was not made yet (its request failed meanwhile) becomes its job now. HEAD answers carry no body: errors are told by their status.",
    params(UploadIdParam),
    responses(
        UploadState,
        (status = 401, response = Unauthorized),
        (status = 404, response = UploadNotFound),
        (status = 412, response = UnsupportedTusVersion),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn info(
    State(state): State<AppState>,
    Client(client): Client,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // After a request still storing bytes here, to answer its offset.
    let (_held, mut upload) = held(&state, &client, &id).await?;
    if upload.is_whole() && !upload.completed {
        // The last byte was stored, but the request that stored it did not
        // get to make the job: make it now.
        complete(&state, &client, &upload, &intake::trace_of(&headers)).await?;
        upload.completed = true;
    }
    let mut response = answer(StatusCode::OK, &upload);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert("upload-length", HeaderValue::from(upload.length));
    Ok(response)
}

/// `PATCH /video/uploads/{id}`: stores bytes at `Upload-Offset`.
#[utoipa::path(
    patch,
    path = "/video/uploads/{id}",
    operation_id = "resumeUpload",
    tag = "uploads",
    summary = "Store bytes of an upload at `Upload-Offset`",
    description = "Streams the body into the store from `Upload-Offset`. An offset acknowledged here is durable: the upload continues through any API process, after restarts too. The first bytes are sniffed as in `POST /video/convert`: not a video, 415, and the upload is removed. When the last byte is stored the upload becomes a job exactly as `POST /video/convert` makes one, and the answer carries `Link`; a `PATCH` of a finished upload stores nothing and answers the same. A body cut short stores what arrived: 400, and `HEAD` tells where to continue.",
    params(UploadIdParam, OffsetHeader),
    request_body(
        content((inline(Binary) = "application/offset+octet-stream", examples(
            ("mp4-signature-only" = (summary = "an MP4 signature alone (24 bytes)", value = json!(MP4_SIGNATURE))),
            ("mp4-signature-padded" = (summary = "an MP4 signature padded to 624 bytes", value = json!(mp4_padded())))
        )))
    ),
    responses(
        Stored,
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = UploadNotFound),
        (status = 409, response = UploadConflict),
        (status = 412, response = UnsupportedTusVersion),
        (status = 413, response = PastUploadLength),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn patch(
    State(state): State<AppState>,
    Client(client): Client,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = upload_id(&id)?;
    if !is_offset_stream(req.headers()) {
        return Err(ApiError::UnsupportedMediaType(format!("a PATCH carries Content-Type: {OFFSET_STREAM}")));
    }
    let offset = header_u64(req.headers(), "upload-offset")?
        .ok_or_else(|| ApiError::BadRequest { code: "bad-request", detail: "Upload-Offset is required".into() })?;
    let trace = intake::trace_of(req.headers());
    let upload = spawn_receive(&state, &client, id, offset, req, trace).await?;
    Ok(answer(StatusCode::NO_CONTENT, &upload))
}

/// `DELETE /video/uploads/{id}`: nothing of the upload stays in the store
/// (a finished upload's job is not touched).
#[utoipa::path(
    delete,
    path = "/video/uploads/{id}",
    operation_id = "terminateUpload",
    tag = "uploads",
    summary = "Terminate an upload (tus `termination`)",
    description = "Nothing of the upload stays in the store. The job of a finished upload is not touched (cancel it with `DELETE /video/status/{id}`).",
    params(UploadIdParam),
    responses(
        Terminated,
        (status = 401, response = Unauthorized),
        (status = 404, response = UploadNotFound),
        (status = 412, response = UnsupportedTusVersion),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn terminate(
    State(state): State<AppState>,
    Client(client): Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_held, upload) = held(&state, &client, &id).await?;
    state.uploads.remove(&client, &upload).await?;
    tracing::info!(upload = %upload.id, client = %client, "upload terminated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The upload, read once a request storing its bytes here (if any) has
/// finished, or after [`LOCK_WAIT`] regardless.
async fn held(state: &AppState, client: &ClientId, raw_id: &str) -> Result<(Option<Held>, Upload), ApiError> {
    let id = upload_id(raw_id)?;
    let held = state.upload_locks.hold(client, id, LOCK_WAIT).await;
    let upload = state.uploads.load(client, id).await?.ok_or_else(no_upload)?.value;
    Ok((held, upload))
}
