//! `GET /video/status/{id}`: the status document, as often as asked.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use utoipa::openapi::{RefOr, Response as ResponseDoc, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::parts;
use super::openapi::problems::{InternalError, JobNotFound, Unauthorized, Unavailable};
use super::{ApiError, AppState, Client};
use crate::domain::{ClientId, JobId, JobStatus, StatusDoc};
use crate::storage::status_key;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

/// A job id from the path. A malformed id names no job: 404, not 400.
pub struct JobPath(pub JobId);

/// The `{id}` of the job routes, in the document.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobIdParam {
    /// The job id. A malformed id names no job: 404.
    #[param(format = Uuid)]
    #[allow(dead_code)]
    id: String,
}

impl FromRequestParts<AppState> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(raw) =
            Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::job_not_found())?;
        raw.parse().map(JobPath).map_err(|_| ApiError::job_not_found())
    }
}

/// The client's own job, or 404 (another client's job is just as unknown).
pub async fn load_job(state: &AppState, client: &ClientId, id: JobId) -> Result<StatusDoc, ApiError> {
    state.storage.get_json::<StatusDoc>(&status_key(client, id)).await?.ok_or_else(ApiError::job_not_found)
}

/// The estimate for a queued job: the jobs ahead of it (the queue's depth)
/// shared among the consumers, at the recent average job duration, plus
/// about half a job for the ones running now. `None` without a basis.
pub async fn estimate_queued(state: &AppState, doc: &mut StatusDoc) {
    if doc.status != JobStatus::Queued {
        return;
    }
    let (Some(average), Ok((depth, consumers))) = (state.hub.average_job_seconds(), state.broker.queue_depth().await)
    else {
        return;
    };
    if consumers == 0 {
        return;
    }
    let rounds = (depth.max(1) as f64 / consumers as f64).ceil();
    let seconds = average * (rounds + 0.5);
    doc.estimated_completion_utc_time = Some(Utc::now() + chrono::Duration::milliseconds((seconds * 1000.0) as i64));
}

/// The 200 of `GET /video/status/{id}`.
struct StatusAnswer;

impl IntoResponses for StatusAnswer {
    fn responses() -> std::collections::BTreeMap<String, RefOr<ResponseDoc>> {
        let ok = ResponseBuilder::new()
            .description("The status document; `Retry-After` while the job is not finished.")
            .header("Retry-After", parts::retry_after(false))
            .content("application/json", parts::json::<StatusDoc>());
        [("200".to_string(), ok.build().into())].into()
    }
}

#[utoipa::path(
    get,
    path = "/video/status/{id}",
    operation_id = "getStatus",
    tag = "jobs",
    summary = "The job's status document",
    params(JobIdParam),
    responses(
        StatusAnswer,
        (status = 401, response = Unauthorized),
        (status = 404, response = JobNotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn status(
    State(state): State<AppState>,
    Client(client): Client,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let mut doc = load_job(&state, &client, id).await?;
    estimate_queued(&state, &mut doc).await;
    super::files::playback_links(&state, &client, &mut doc);
    let retry = doc.retry_after_seconds(Utc::now());
    let mut response = Json(doc).into_response();
    if let Some(secs) = retry {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Ok(response)
}
