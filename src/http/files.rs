//! A done job's output files by name: `GET /video/download/{id}/{file}`
//! with an API key, `GET /video/play/{token}/{file}` with a playback token
//! (no key; CORS). Both serve the result itself (`video.<ext>`) or every
//! file of a package, and `poster.jpg`, `storyboard.jpg` and
//! `storyboard.vtt`, with ranges.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::download::{finished_output, serve_object, RangeParam};
use super::openapi::problems::{
    InternalError, NoResult, PlaybackForbidden, RangeNotSatisfiable, Unauthorized, Unavailable,
};
use super::status::load_job;
use super::{ApiError, AppState, Client};
use crate::config::HttpSettings;
use crate::domain::{ClientId, JobId, StatusDoc};
use crate::storage::{output_file_key, output_key};
use crate::transcode::previews::{self, POSTER, STORYBOARD_CUES};

/// Every file of an output folder is written once and never changes.
const IMMUTABLE: &str = "max-age=31536000, immutable";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download_file))
}

pub fn play_routes() -> OpenApiRouter<AppState> {
    // OPTIONS is a method of the route, or the router would answer 405
    // before the CORS layer sees a preflight.
    OpenApiRouter::new().routes(routes!(play_file, play_options))
}

/// `{id}` and `{file}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct JobFileParams {
    /// The job id. A malformed id names no job: 404.
    #[param(format = Uuid)]
    id: String,
    /// A file of the output: `video.mp4` or `video.webm` (the result of a
    /// single-file job), every file of a package (`master.m3u8`,
    /// `manifest.mpd`, playlists, init and media segments), `poster.jpg`,
    /// `storyboard.jpg`, `storyboard.vtt`.
    file: String,
}

/// `{token}` and `{file}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct PlayFileParams {
    /// A playback token from the job's `links` (signed, expiring).
    token: String,
    /// A file of the output, as for `/video/download/{id}/{file}`.
    file: String,
}

#[utoipa::path(
    get,
    path = "/video/download/{id}/{file}",
    operation_id = "downloadFile",
    tag = "jobs",
    summary = "One file of the job's output",
    security((), ("bearer" = []), ("api_key" = [])),
    params(JobFileParams, RangeParam),
    responses(
        super::download::FileOutput,
        (status = 401, response = Unauthorized),
        (status = 404, response = NoResult),
        (status = 416, response = RangeNotSatisfiable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn download_file(
    State(state): State<AppState>,
    Client(client): Client,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: JobId = id.parse().map_err(|_| ApiError::job_not_found())?;
    let doc = load_job(&state, &client, id).await?;
    serve_file(&state, &client, &doc, &file, &headers, "private").await
}

#[utoipa::path(
    get,
    path = "/video/play/{token}/{file}",
    operation_id = "playFile",
    tag = "jobs",
    summary = "One file of a job's output, for players",
    description = "No API key: the token is the capability. Relative URIs in a manifest resolve under the same token. CORS as `http.cors_allowed_origins` allows.",
    params(PlayFileParams, RangeParam),
    responses(
        super::download::FileOutput,
        (status = 403, response = PlaybackForbidden),
        (status = 404, response = NoResult),
        (status = 416, response = RangeNotSatisfiable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn play_file(
    State(state): State<AppState>,
    Path((token, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let grant = state.playback.check(&token, Utc::now()).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let doc = load_job(&state, &grant.client, grant.id).await?;
    serve_file(&state, &grant.client, &doc, &file, &headers, "public").await
}

#[utoipa::path(
    options,
    path = "/video/play/{token}/{file}",
    operation_id = "playOptions",
    tag = "jobs",
    summary = "CORS preflight of a playback file",
    description = "Answered by the CORS layer, with no key and no token check: from an origin of `http.cors_allowed_origins`, the `Access-Control-Allow-*` headers for `GET` with `Range`.",
    security(()),
    params(PlayFileParams),
    responses((status = 200, description = "The preflight's answer (empty)."))
)]
async fn play_options() -> Response {
    let mut response = axum::http::StatusCode::OK.into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    response
}

async fn serve_file(
    state: &AppState,
    client: &ClientId,
    doc: &StatusDoc,
    file: &str,
    headers: &HeaderMap,
    scope: &str,
) -> Result<Response, ApiError> {
    finished_output(doc)?;
    let (key, content_type) = file_key(client, doc, file).ok_or_else(|| ApiError::NotFound {
        code: "not-found",
        detail: format!("job {} has no file {file:?}", doc.id),
        monitor: Some(doc.id),
    })?;
    let cache = format!("{scope}, {IMMUTABLE}");
    serve_object(state, doc.id, &key, content_type, None, headers, |r| r.header(header::CACHE_CONTROL, cache)).await
}

/// The object and content type of one file of the job's output (`None`:
/// as stored, for a package's files).
fn file_key(client: &ClientId, doc: &StatusDoc, file: &str) -> Option<(String, Option<&'static str>)> {
    let format = doc.format;
    let content_type = match previews::content_type(file) {
        Some(preview) => Some(preview),
        None if format.is_package() && package_file(file) => None,
        None if !format.is_package() && file == format!("video.{}", format.extension()) => {
            return Some((output_key(client, doc.id, format), Some(format.content_type())));
        }
        None => return None,
    };
    Some((output_file_key(client, doc.id, file), content_type))
}

/// A name a package's file can have (manifests, playlists, segments).
fn package_file(name: &str) -> bool {
    let ext = [".m3u8", ".mpd", ".mp4", ".m4s"];
    name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.starts_with('.')
        && !name.contains("..")
        && ext.iter().any(|e| name.ends_with(e))
}

/// The playback links of a done job: a token for its output folder.
pub fn playback_links(state: &AppState, client: &ClientId, doc: &mut StatusDoc) {
    if doc.output.is_none() {
        return;
    }
    let token = state.playback.issue(client, doc.id, Utc::now());
    let base = format!("/video/play/{token}");
    let played =
        doc.format.manifest().map(str::to_string).unwrap_or_else(|| format!("video.{}", doc.format.extension()));
    doc.links.play = Some(format!("{base}/{played}"));
    doc.links.poster = Some(format!("{base}/{POSTER}"));
    doc.links.storyboard = Some(format!("{base}/{STORYBOARD_CUES}"));
}

/// `http.cors_allowed_origins` (`"*"`: any).
pub fn allowed_origins(http: &HttpSettings) -> anyhow::Result<AllowOrigin> {
    if http.cors_allowed_origins.iter().any(|o| o == "*") {
        return Ok(AllowOrigin::any());
    }
    let list = http
        .cors_allowed_origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("http.cors_allowed_origins: {o:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AllowOrigin::list(list))
}

/// CORS of the playback routes: reads from any allowed origin, ranges
/// included.
pub fn cors(http: &HttpSettings) -> anyhow::Result<CorsLayer> {
    use axum::http::Method;
    Ok(CorsLayer::new()
        .allow_origin(allowed_origins(http)?)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::RANGE])
        .expose_headers([header::CONTENT_LENGTH, header::CONTENT_RANGE, header::ACCEPT_RANGES, header::ETAG])
        .max_age(std::time::Duration::from_secs(86400)))
}
