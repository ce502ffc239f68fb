//! `DELETE /video/status/{id}`: cancel. A queued job is marked cancelled
//! here and never runs; a processing job is stopped by its worker, which
//! records the outcome. Either way every worker hears of it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use axum::{Json, Router};
use chrono::Utc;
use lapin::BasicProperties;

use super::status::{load_job, JobPath};
use super::{ApiError, AppState, Client};
use crate::domain::{ControlMessage, JobStatus};
use crate::events::{self, EventKind};
use crate::storage::status_key;

pub fn router() -> Router<AppState> {
    Router::new().route("/video/status/{id}", delete(cancel))
}

async fn cancel(
    State(state): State<AppState>,
    Client(client): Client,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let mut doc = load_job(&state, &client, id).await?;
    if doc.status.is_terminal() {
        return Err(ApiError::Conflict(format!("job {id} is already {}", doc.status.as_str())));
    }
    // Tell the workers first: the one that holds (or is about to take) the
    // job stops it.
    let message = serde_json::to_vec(&ControlMessage::CancelV1 { id, client: client.clone() }).expect("serializes");
    let names = state.broker.names();
    let props = BasicProperties::default().with_content_type("application/json".into());
    state.broker.publish(&names.control_exchange(), "", false, &message, props).await?;

    if doc.status == JobStatus::Queued {
        doc.finish_cancelled(Utc::now());
        state.storage.put_json(&status_key(&client, id), &doc).await?;
        if let Err(e) = events::publish(&state.broker, &client, &doc, EventKind::Cancelled).await {
            // The worker that receives the job message announces it again.
            tracing::warn!(job = %id, error = %e, "cancelled event not published yet");
        }
    }
    tracing::info!(job = %id, client = %client, "cancel requested");
    Ok((StatusCode::ACCEPTED, Json(doc)).into_response())
}
