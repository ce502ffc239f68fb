//! `DELETE /video/status/{id}`: cancel. The job's record becomes
//! `cancelled` here (compare-and-swap, so a worker finishing at the same
//! moment either wins with `done` or loses); every worker hears of it and
//! stops the job's ffmpegs; the job's intermediate objects are removed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use lapin::BasicProperties;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems::{AlreadyFinished, InternalError, JobNotFound, Unauthorized, Unavailable};
use super::status::{JobIdParam, JobPath};
use super::{ApiError, AppState, Client};
use crate::domain::{ControlMessage, JobStatus};
use crate::events::{self, EventKind};
use crate::storage::work_prefix;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cancel))
}

#[utoipa::path(
    delete,
    path = "/video/status/{id}",
    operation_id = "cancelJob",
    tag = "jobs",
    summary = "Cancel the job",
    description = "A queued job never runs and is `cancelled` at once; a processing job's ffmpeg is stopped and its worker records `cancelled`.",
    params(JobIdParam),
    responses(
        (status = 202, description = "Cancellation accepted; the status document as it is now.", body = crate::domain::StatusDoc),
        (status = 401, response = Unauthorized),
        (status = 404, response = JobNotFound),
        (status = 409, response = AlreadyFinished),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn cancel(
    State(state): State<AppState>,
    Client(client): Client,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    // Tell the workers first (a broker outage is a 503 before anything
    // changed): the ones that hold, or are about to take, one of the job's
    // tasks stop it.
    let record = state.jobs.read(&client, id).await?.ok_or_else(ApiError::job_not_found)?;
    if record.doc.status.is_terminal() {
        return Err(ApiError::Conflict(format!("job {id} is already {}", record.doc.status.as_str())));
    }
    let message = serde_json::to_vec(&ControlMessage::CancelV1 { id, client: client.clone() }).expect("serializes");
    let names = state.broker.names();
    let props = BasicProperties::default().with_content_type("application/json".into());
    state.broker.publish(&names.control_exchange(), "", false, &message, props).await?;

    let updated = state
        .jobs
        .update(&client, id, |r| {
            if r.doc.status.is_terminal() {
                return false;
            }
            r.doc.finish_cancelled(Utc::now());
            true
        })
        .await?
        .ok_or_else(ApiError::job_not_found)?;
    let doc = updated.record.doc;
    if !updated.changed {
        if doc.status == JobStatus::Cancelled {
            // A worker that heard this request's cancellation got there
            // first (and announced it): the cancellation took effect.
            tracing::info!(job = %id, client = %client, "job cancelled");
            return Ok((StatusCode::ACCEPTED, Json(doc)).into_response());
        }
        return Err(ApiError::Conflict(format!("job {id} is already {}", doc.status.as_str())));
    }
    if let Err(e) = events::publish(&state.broker, &client, &doc, EventKind::Cancelled).await {
        // The worker that receives one of the job's tasks announces it again.
        tracing::warn!(job = %id, error = %e, "cancelled event not published yet");
    }
    if updated.record.plan.is_some() {
        if let Err(e) = state.storage.delete_prefix(&work_prefix(&client, id)).await {
            tracing::warn!(job = %id, error = %e, "could not remove the job's intermediate objects yet");
        }
    }
    tracing::info!(job = %id, client = %client, "job cancelled");
    Ok((StatusCode::ACCEPTED, Json(doc)).into_response())
}
