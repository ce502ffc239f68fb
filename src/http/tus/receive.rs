//! Storing the bytes of a request (`POST` with a body, `PATCH`) at the
//! upload's offset, and the last byte making the job.

use std::time::Duration;

use axum::extract::Request;
use tracing::Instrument;

use super::protocol::{interrupted, no_upload};
use super::LOCK_WAIT;
use crate::domain::{ClientId, JobId};
use crate::http::body::{drain, idle_limited};
use crate::http::intake::{self, Intake};
use crate::http::upload::{declared_length, reservation};
use crate::http::{ApiError, AppState};
use crate::trace::TraceParent;
use crate::uploads::{AppendError, Upload, PART_SIZE};

/// Runs [`receive`] in its own task: when the client goes away mid-body,
/// the bytes that arrived are still stored and acknowledged.
pub(super) async fn spawn_receive(
    state: &AppState,
    client: &ClientId,
    id: JobId,
    offset: u64,
    req: Request,
    trace: TraceParent,
) -> Result<Upload, ApiError> {
    let span = tracing::info_span!("upload", client = %client, upload = %id, trace_id = %trace.trace_id);
    let work = receive(state.clone(), client.clone(), id, offset, req, trace).instrument(span);
    tokio::spawn(work).await.map_err(|e| ApiError::Internal(e.into()))?
}

async fn receive(
    state: AppState,
    client: ClientId,
    id: JobId,
    offset: u64,
    req: Request,
    trace: TraceParent,
) -> Result<Upload, ApiError> {
    let declared = declared_length(req.headers());
    let mut body = req.into_body();
    let http = &state.settings.http;
    let idle = Duration::from_secs(http.body_idle_timeout_seconds);
    let Some(_held) = state.upload_locks.hold(&client, id, LOCK_WAIT).await else {
        drain(body, idle).await;
        return Err(ApiError::Conflict("another request is storing bytes of this upload; try again".into()));
    };
    let Some(current) = state.uploads.load(&client, id).await? else {
        return Err(no_upload());
    };
    if current.value.completed && declared.is_none_or(|n| offset + n == current.value.length) {
        // A retried last request: the upload already is its job.
        drain(body, idle).await;
        return Ok(current.value);
    }
    if offset != current.value.offset {
        drain(body, idle).await;
        return Err(ApiError::Conflict(format!(
            "Upload-Offset is {offset} but the upload has {} bytes; continue from there",
            current.value.offset
        )));
    }
    let _slot = state.quota.start_upload(&client, http.max_concurrent_uploads_per_client, usize::MAX)?;
    let tail = current.value.offset % PART_SIZE;
    let _memory = state.budget.reserve_or_drain(reservation(declared.map(|n| n + tail)), &mut body, idle).await?;
    let before = current.value.clone();
    let stream = idle_limited(body.into_data_stream(), idle);
    let appended = match state.uploads.append(&client, current, stream, declared).await {
        Ok(a) => a,
        Err(AppendError::NotVideo) => {
            if let Err(e) = state.uploads.remove(&client, &before).await {
                tracing::error!(error = %e, "could not remove an upload that is not a video");
            }
            return Err(crate::http::upload::not_video());
        }
        Err(AppendError::Conflict) => {
            return Err(ApiError::Conflict("the upload's offset moved meanwhile; HEAD it and continue".into()))
        }
        Err(AppendError::TooLong) => return Err(ApiError::PayloadTooLarge(before.length)),
        Err(AppendError::Store(e)) => return Err(e.into()),
        Err(AppendError::Body(e)) => return Err(interrupted(before.offset, e)),
    };
    let mut upload = appended.upload;
    metrics::counter!("transcoder_upload_bytes_received_total").increment(upload.offset - before.offset);
    if upload.is_whole() {
        complete(&state, &client, &upload, &trace).await?;
        upload.completed = true;
    }
    match appended.interrupted {
        Some(e) if !upload.completed => Err(interrupted(upload.offset, e)),
        _ => Ok(upload),
    }
}

/// A whole upload becomes its job (once: a job that exists already is the
/// one an earlier request made).
pub(super) async fn complete(
    state: &AppState,
    client: &ClientId,
    upload: &Upload,
    trace: &TraceParent,
) -> Result<(), ApiError> {
    if state.jobs.read(client, upload.id).await?.is_none() {
        let container = upload.container.ok_or_else(crate::http::upload::not_video)?;
        let intake = Intake {
            id: upload.id,
            options: &upload.options,
            container,
            size: upload.length,
            filename: upload.filename.clone(),
        };
        let input_done = state.uploads.finish_input(client, upload);
        intake::enqueue(state, client, intake, input_done, trace).await?;
    }
    state.uploads.mark_completed(client, upload.id).await?;
    Ok(())
}
