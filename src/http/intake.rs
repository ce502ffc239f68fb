//! The one way an upload becomes a job, for both ways in (`POST
//! /video/convert` and the last byte of a resumable upload): the input's
//! last write and the status document side by side, then the confirmed,
//! routed publish. If a step fails, what the earlier ones wrote is removed.

use std::future::Future;

use chrono::Utc;

use super::{ApiError, AppState};
use crate::domain::{ClientId, Container, InputInfo, JobId, JobOptions, StatusDoc};
use crate::queue::Task;
use crate::storage::{status_key, StoreError};
use crate::trace::TraceParent;

/// What is known of a received input.
pub struct Intake<'a> {
    pub id: JobId,
    pub options: &'a JobOptions,
    pub container: Container,
    pub size: u64,
    pub filename: Option<String>,
}

/// Runs `input_done` (the input's last write) beside writing the status
/// document, then publishes the job; removes the document again when
/// anything fails (the caller removes the input).
pub async fn enqueue(
    state: &AppState,
    client: &ClientId,
    intake: Intake<'_>,
    input_done: impl Future<Output = Result<(), StoreError>>,
    trace: &TraceParent,
) -> Result<StatusDoc, ApiError> {
    let Intake { id, options, container, size, filename } = intake;
    let input =
        InputInfo { filename, size_bytes: size, content_type: container.content_type().to_string(), color: None };
    let doc = StatusDoc::queued(id, options, input, Utc::now());
    let doc_key = status_key(client, id);
    match tokio::join!(input_done, state.jobs.create(client, &doc)) {
        (Ok(()), Ok(())) => {}
        (Err(e), Ok(())) => {
            remove_quietly(state, &doc_key).await;
            return Err(e.into());
        }
        (_, Err(e)) => return Err(e.into()),
    }

    let task = Task::Transcode { id, client: client.clone(), options: options.clone(), container };
    // Fair share: the queue's priority also reflects the client's backlog.
    let priority = state.quota.queue_priority(client, id, options.priority);
    if let Err(e) = task.publish(&state.broker, priority, trace).await {
        state.quota.not_queued(client, id);
        remove_quietly(state, &doc_key).await;
        return Err(e.into());
    }
    state.broker.note_enqueued();
    state.quota.accepted(client, id);
    tracing::info!(job = %id, size, "job accepted");
    metrics::counter!("transcoder_jobs_submitted_total", "format" => options.format.as_str()).increment(1);
    metrics::counter!("transcoder_upload_bytes_total").increment(size);
    Ok(doc)
}

pub async fn remove_quietly(state: &AppState, key: &str) {
    if let Err(e) = state.storage.delete(key).await {
        tracing::error!(key, error = %e, "could not remove an object of a rejected upload");
    }
}

/// The trace context a request carries, or a new one.
pub fn trace_of(headers: &axum::http::HeaderMap) -> TraceParent {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
        .unwrap_or_else(TraceParent::start)
}
