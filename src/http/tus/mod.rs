//! `/video/uploads`: resumable uploads, tus 1.0.0 with `creation`,
//! `creation-with-upload`, `termination` and `expiration`. The state lives
//! in the store ([`crate::uploads`]), so any API process continues an
//! upload; the last byte makes the job through the same path as `POST
//! /video/convert` ([`super::intake`]).

mod protocol;
mod receive;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use protocol::*;
use receive::{complete, spawn_receive};

use super::intake;
use super::locks::Held;
use super::upload::declared_length;
use super::{ApiError, AppState, Client};
use crate::domain::ClientId;
use crate::uploads::Upload;

/// How long a request waits for another request on the same upload (in
/// this process) to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

pub fn router(state: &AppState) -> anyhow::Result<Router<AppState>> {
    Ok(Router::new()
        // OPTIONS must be a method of both routes, or the router answers 405
        // before the layers below run; the layers then answer every OPTIONS
        // (discovery or CORS preflight).
        .route("/video/uploads", post(create).options(discover))
        .route("/video/uploads/{id}", axum::routing::head(info).patch(patch).delete(terminate).options(discover))
        .layer(axum::middleware::from_fn(tus_resumable))
        // Bodies are streamed into the store and counted there.
        .layer(DefaultBodyLimit::disable())
        .layer(cors(&state.settings.http)?)
        .layer(axum::middleware::from_fn_with_state(state.clone(), discovery_first)))
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

async fn discover(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    h.insert("tus-max-size", HeaderValue::from(state.settings.http.max_upload_bytes));
    response
}

/// `POST /video/uploads`: checks the length and the options, records the
/// upload, and stores a first chunk when the request carries one.
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
