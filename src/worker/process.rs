//! One delivery, from the stored input to the terminal event. Every
//! delivery ends in exactly one ack, reject or requeue.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::WorkerContext;
use crate::domain::{ClientId, Container, JobMessage, JobOptions, JobStatus, OutputInfo, StatusDoc};
use crate::events::{self, EventKind};
use crate::storage::{input_key, output_key, status_key, StoreError};
use crate::trace::TraceParent;
use crate::transcode::{self, Limits, TranscodeError};

/// How one attempt ended.
enum Outcome {
    /// Done or failed for good: the status is terminal.
    Finished,
    /// Something transient (store, broker, stall): try again.
    Retry(String),
    /// The worker is shutting down: back to the queue.
    Requeue,
    /// Failed as poison: recorded, announced, and kept in the dead queue.
    DeadLetter,
}

/// Handles one job delivery.
pub async fn process_one(ctx: &WorkerContext, delivery: Delivery) {
    let message: JobMessage = match serde_json::from_slice(&delivery.data) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "unreadable job message; dead-lettering it");
            let _ = delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await;
            return;
        }
    };
    let JobMessage::TranscodeV1 { id, client, options, container } = message;
    let trace = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("traceparent"))
        .and_then(|v| v.as_long_string())
        .and_then(|s| TraceParent::parse(&s.to_string()))
        .unwrap_or_else(TraceParent::start);
    let span = tracing::info_span!("job", job = %id, client = %client, trace_id = %trace.trace_id);
    async {
        let key = status_key(&client, id);
        let stop = ctx.cancels.register(id, &ctx.stop_jobs);
        let outcome = match ctx.storage.get_json::<StatusDoc>(&key).await {
            Ok(Some(mut doc)) => {
                let job = Job { client: &client, options: &options, container, stop: &stop };
                attempt(ctx, job, &mut doc).await
            }
            Ok(None) => {
                tracing::warn!("job has no status document; dropping the message");
                Outcome::Finished
            }
            Err(e) => Outcome::Retry(e.to_string()),
        };
        let requeue = |requeue| BasicNackOptions { requeue, ..Default::default() };
        let settle = async {
            match outcome {
                Outcome::Finished => delivery.acker.ack(BasicAckOptions::default()).await,
                Outcome::Requeue => delivery.acker.nack(requeue(true)).await,
                Outcome::DeadLetter => delivery.acker.nack(requeue(false)).await,
                Outcome::Retry(reason) => {
                    tracing::warn!(reason, "attempt failed; the job goes back to the queue");
                    // A short pause, so a store outage does not spin the queue.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    delivery.acker.nack(requeue(true)).await
                }
            }
        };
        let settled = tokio::time::timeout(Duration::from_secs(10), settle).await;
        ctx.cancels.finished(id);
        let settled = match settled {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!("the broker did not take the acknowledgement in time; it will redeliver the job");
                return;
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "could not settle the delivery; the broker will redeliver it");
        }
    }
    .instrument(span)
    .await
}

/// What one delivery is about, beside its status document.
#[derive(Clone, Copy)]
struct Job<'a> {
    client: &'a ClientId,
    options: &'a JobOptions,
    container: Container,
    /// Fires on cancellation, or at the end of a drain.
    stop: &'a CancellationToken,
}

async fn attempt(ctx: &WorkerContext, job: Job<'_>, doc: &mut StatusDoc) -> Outcome {
    let client = job.client;
    // A redelivery of a finished job: make sure its terminal event went out.
    if let Some(kind) = events::EventKind::terminal_for(doc.status) {
        return announce(ctx, client, doc, kind).await;
    }
    if doc.attempt >= ctx.settings.max_attempts {
        let message = format!("the job was attempted {} times without finishing", doc.attempt);
        doc.finish_failed("too-many-attempts", message, Utc::now());
        return match finish(ctx, client, doc).await {
            Outcome::Finished => Outcome::DeadLetter,
            other => other,
        };
    }
    doc.start_attempt(Utc::now());
    if doc.attempt == 1 {
        let waited = (Utc::now() - doc.submitted_utc_time).num_milliseconds() as f64 / 1000.0;
        metrics::histogram!("transcoder_queue_wait_seconds").record(waited);
    }
    if let Err(e) = save(ctx, client, doc).await {
        return Outcome::Retry(e.to_string());
    }
    tracing::info!(attempt = doc.attempt, "transcoding");
    let started_doc = doc.clone();
    let started = async {
        if let Err(e) = events::publish(&ctx.broker, client, &started_doc, EventKind::Started).await {
            tracing::warn!(error = %e, "could not publish the started event");
        }
    };

    match transcode_job(ctx, job, doc, started).await {
        Ok(output) => {
            doc.finish_done(output, Utc::now());
            finish(ctx, client, doc).await
        }
        Err(JobError::Media(TranscodeError::Cancelled)) if ctx.stop_jobs.is_cancelled() => {
            doc.status = JobStatus::Queued;
            let _ = save(ctx, client, doc).await;
            Outcome::Requeue
        }
        Err(JobError::Media(TranscodeError::Cancelled)) => {
            // Nothing of the partial result stays behind.
            let _ = ctx.storage.delete(&output_key(client, doc.id, job.options.format)).await;
            doc.finish_cancelled(Utc::now());
            finish(ctx, client, doc).await
        }
        Err(JobError::Media(e)) if !e.is_transient() => {
            tracing::info!(code = e.code(), reason = %e, "job failed");
            doc.finish_failed(e.code(), e.to_string(), Utc::now());
            finish(ctx, client, doc).await
        }
        Err(e) => {
            doc.status = JobStatus::Queued;
            let _ = save(ctx, client, doc).await;
            Outcome::Retry(e.to_string())
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Media(#[from] TranscodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Private copy of the input → probe → ffmpeg → probe → upload. `started`
/// (the started event) runs beside the copy and ends before the probe, so
/// it always precedes the progress events.
async fn transcode_job(
    ctx: &WorkerContext,
    job: Job<'_>,
    doc: &mut StatusDoc,
    started: impl Future<Output = ()>,
) -> Result<OutputInfo, JobError> {
    let Job { client, options, container, stop } = job;
    let s = &ctx.settings;
    let scratch = match transcode::scratch_dir(&s.scratch_dir) {
        Ok(scratch) => scratch,
        Err(e) => {
            started.await;
            return Err(TranscodeError::Internal(e.to_string()).into());
        }
    };
    let input = scratch.path().join("input");
    let mut phase = Phases::start();
    let source = input_key(client, doc.id);
    let (fetched, ()) = tokio::join!(ctx.storage.download_to_file(&source, &input), started);
    if fetched?.is_none() {
        return Err(TranscodeError::InvalidMedia("the uploaded input is no longer in the store".into()).into());
    }
    phase.end("fetch");
    let info = transcode::probe(&input, Some(container.demuxer())).await?;
    phase.end("probe");
    let limits = Limits {
        max_input_seconds: s.max_input_seconds,
        max_input_pixels: s.max_input_pixels,
        stall: Duration::from_secs(s.stall_seconds),
        timeout: Duration::from_secs(s.job_timeout_seconds),
    };
    limits.check(&info)?;

    let output = transcode::output_path(scratch.path(), options.format);
    let args = transcode::ffmpeg_args(&input, container.demuxer(), options, &output);
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let run = transcode::run_ffmpeg(args, scratch.path(), limits, stop.clone(), move |p| {
        let _ = tx.send(Some(p));
    });
    tokio::pin!(run);
    let started = Instant::now();
    let mut last_report: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            changed = rx.changed() => {
                if changed.is_err() { continue; }
                let Some(p) = *rx.borrow_and_update() else { continue };
                if last_report.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                    continue;
                }
                let fraction = (p.encoded_seconds / info.duration_seconds).clamp(0.0, 1.0);
                if doc.advance_progress((fraction * 100.0) as u8) {
                    last_report = Some(Instant::now());
                    if fraction > 0.0 {
                        let total = started.elapsed().as_secs_f64() / fraction;
                        let left = (total - started.elapsed().as_secs_f64()).max(0.0);
                        doc.estimated_completion_utc_time =
                            Some(Utc::now() + chrono::Duration::milliseconds((left * 1000.0) as i64));
                    }
                    report_progress(ctx, client, doc).await;
                }
            }
        }
    };
    result?;
    phase.end("ffmpeg");

    // The output is probed while it uploads.
    let size = tokio::fs::metadata(&output).await.map_err(StoreError::Io)?.len();
    let key = output_key(client, doc.id, options.format);
    let (probed, stored) = tokio::join!(
        transcode::probe(&output, None),
        ctx.storage.put_file(&key, &output, options.format.content_type())
    );
    if stored.is_ok() && probed.is_err() {
        let _ = ctx.storage.delete(&key).await;
    }
    let probed = probed?;
    stored?;
    phase.end("store");
    Ok(OutputInfo {
        format: options.format,
        content_type: options.format.content_type().to_string(),
        size_bytes: size,
        duration_seconds: (probed.duration_seconds * 1000.0).round() / 1000.0,
        width: probed.width,
        height: probed.height,
        video_codec: probed.video_codec,
        audio_codec: probed.audio_codec,
    })
}

/// Time spent in each step of a transcode, for the
/// `transcoder_job_phase_seconds` histogram.
struct Phases(Instant);

impl Phases {
    fn start() -> Phases {
        Phases(Instant::now())
    }

    /// Records the time since the previous phase ended as `name`.
    fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        metrics::histogram!("transcoder_job_phase_seconds", "phase" => name).record((now - self.0).as_secs_f64());
        self.0 = now;
    }
}

async fn report_progress(ctx: &WorkerContext, client: &ClientId, doc: &StatusDoc) {
    if let Err(e) = save(ctx, client, doc).await {
        tracing::warn!(error = %e, "could not record progress");
    }
    if let Err(e) = events::publish(&ctx.broker, client, doc, EventKind::Progress).await {
        tracing::warn!(error = %e, "could not publish a progress event");
    }
}

/// Records a terminal status, then announces it.
async fn finish(ctx: &WorkerContext, client: &ClientId, doc: &StatusDoc) -> Outcome {
    if let Err(e) = save(ctx, client, doc).await {
        return Outcome::Retry(e.to_string());
    }
    let kind = EventKind::terminal_for(doc.status).expect("finish is called with a terminal status");
    let outcome = announce(ctx, client, doc, kind).await;
    if matches!(outcome, Outcome::Finished) {
        record_outcome(doc);
    }
    outcome
}

fn record_outcome(doc: &StatusDoc) {
    let format = doc.format.extension();
    match doc.status {
        JobStatus::Done => {
            metrics::counter!("transcoder_jobs_completed_total", "format" => format).increment(1);
            if let (Some(start), Some(end)) = (doc.started_utc_time, doc.completed_utc_time) {
                let secs = (end - start).num_milliseconds() as f64 / 1000.0;
                metrics::histogram!("transcoder_job_duration_seconds", "format" => format).record(secs);
            }
        }
        JobStatus::Failed => {
            let code = doc.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
            metrics::counter!("transcoder_jobs_failed_total", "format" => format, "code" => code).increment(1);
        }
        JobStatus::Cancelled => metrics::counter!("transcoder_jobs_cancelled_total").increment(1),
        _ => {}
    }
}

/// Publishes the terminal event and waits for its confirm: only then may
/// the job message be acked.
async fn announce(ctx: &WorkerContext, client: &ClientId, doc: &StatusDoc, kind: EventKind) -> Outcome {
    match events::publish(&ctx.broker, client, doc, kind).await {
        Ok(()) => {
            tracing::info!(status = doc.status.as_str(), "job finished");
            Outcome::Finished
        }
        Err(e) => Outcome::Retry(format!("terminal event not confirmed: {e}")),
    }
}

async fn save(ctx: &WorkerContext, client: &ClientId, doc: &StatusDoc) -> Result<(), StoreError> {
    ctx.storage.put_json(&status_key(client, doc.id), doc).await
}
