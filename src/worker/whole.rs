//! The `transcode` task: a job as submitted. Its worker copies and probes
//! the input, then encodes it whole, or plans pieces for a long input.

use std::future::Future;

use chrono::Utc;

use super::common::{estimate, AsyncReport, JobError, Outcome, Phases, Run};
use super::split;
use crate::domain::{Container, JobStatus, OutputFormat, OutputInfo};
use crate::events::{self, EventKind};
use crate::storage::{output_key, StoreError};
use crate::transcode::{self, MediaInfo, TranscodeError};

/// What became of the job after its first step.
enum Next {
    /// Encoded whole.
    Done(OutputInfo),
    /// Planned into pieces, now queued for any worker.
    Planned,
}

pub async fn run(run: &Run<'_>, container: Container) -> Outcome {
    let record = match run.read().await {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::warn!("job has no record; dropping the task");
            return Outcome::Finished;
        }
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    // A redelivery of a finished job: make sure its terminal event went out.
    if record.doc.status.is_terminal() {
        return run.conclude(&record, false).await;
    }
    // A redelivery after the job was planned: the pieces are its work now.
    if record.plan.is_some() {
        return split::resume(run, container, &record).await;
    }
    let max = run.ctx.settings.max_attempts;
    if record.doc.attempt >= max {
        let message = format!("the job was attempted {} times without finishing", record.doc.attempt);
        return match run.fail("too-many-attempts", message).await {
            Outcome::Finished => Outcome::DeadLetter,
            other => other,
        };
    }
    let updated = run
        .update(|r| {
            if r.doc.status.is_terminal() {
                return false;
            }
            r.doc.start_attempt(Utc::now());
            true
        })
        .await;
    let doc = match updated {
        Ok(Some(u)) if u.changed => u.record.doc,
        Ok(Some(u)) => return run.conclude(&u.record, false).await,
        Ok(None) => return Outcome::Finished,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    if doc.attempt == 1 {
        let waited = (Utc::now() - doc.submitted_utc_time).num_milliseconds() as f64 / 1000.0;
        metrics::histogram!("transcoder_queue_wait_seconds").record(waited);
    }
    tracing::info!(attempt = doc.attempt, "transcoding");
    let started = async {
        if let Err(e) = events::publish(&run.ctx.broker, run.client, &doc, EventKind::Started).await {
            tracing::warn!(error = %e, "could not publish the started event");
        }
    };
    match first_step(run, container, started).await {
        Ok(Next::Done(output)) => run.finish(|d| d.finish_done(output.clone(), Utc::now())).await,
        Ok(Next::Planned) => Outcome::Finished,
        Err(JobError::Media(TranscodeError::Cancelled)) if !run.ctx.stop_jobs.is_cancelled() => {
            // Nothing of the partial result stays behind.
            let _ = run.ctx.storage.delete(&output_key(run.client, run.id, run.options.format)).await;
            run.finish(|d| d.finish_cancelled(Utc::now())).await
        }
        Err(e) => {
            let outcome = run.settle_error(e).await;
            if matches!(outcome, Outcome::Retry(_) | Outcome::Requeue) {
                requeued(run).await;
            }
            outcome
        }
    }
}

/// Back to `queued` for the next delivery.
async fn requeued(run: &Run<'_>) {
    let back = run
        .update(|r| {
            if r.doc.status != JobStatus::Processing || r.plan.is_some() {
                return false;
            }
            r.doc.status = JobStatus::Queued;
            true
        })
        .await;
    if let Err(e) = back {
        tracing::warn!(error = %e, "could not record the requeue");
    }
}

/// Private copy of the input → probe → plan, or ffmpeg → probe → upload.
/// `started` (the started event) runs beside the copy and ends before the
/// probe, so it always precedes the progress events.
async fn first_step(run: &Run<'_>, container: Container, started: impl Future<Output = ()>) -> Result<Next, JobError> {
    let scratch = match run.scratch() {
        Ok(s) => s,
        Err(e) => {
            started.await;
            return Err(e);
        }
    };
    let mut phase = Phases::start();
    let (input, ()) = tokio::join!(run.fetch_input(scratch.path()), started);
    let input = input?;
    phase.end("fetch");
    let info = transcode::probe(&input, Some(container.demuxer())).await?;
    phase.end("probe");
    run.limits().check(&info)?;

    if run.ctx.settings.splits(info.duration_seconds) {
        if split::plan(run, container, &input, &info).await? {
            phase.end("plan");
            return Ok(Next::Planned);
        }
    }
    let media = transcode::Media {
        input: &input,
        demuxer: container.demuxer(),
        options: run.options,
        threads: run.ctx.settings.ffmpeg_threads,
    };
    let output = transcode::output_path(scratch.path(), run.options.format);
    run.ffmpeg(transcode::whole_args(&media, &output), scratch.path(), info.duration_seconds, WholeProgress).await?;
    phase.end("ffmpeg");
    let info = store_output(run, &output).await?;
    phase.end("store");
    Ok(Next::Done(info))
}

/// Uploads the output while it is probed; the output's description.
pub async fn store_output(run: &Run<'_>, output: &std::path::Path) -> Result<OutputInfo, JobError> {
    let format = run.options.format;
    let size = tokio::fs::metadata(output).await.map_err(StoreError::Io)?.len();
    let key = output_key(run.client, run.id, format);
    let (probed, stored) =
        tokio::join!(transcode::probe(output, None), run.ctx.storage.put_file(&key, output, format.content_type()));
    if stored.is_ok() && probed.is_err() {
        let _ = run.ctx.storage.delete(&key).await;
    }
    let probed = probed?;
    stored?;
    Ok(output_info(format, size, probed))
}

pub fn output_info(format: OutputFormat, size: u64, probed: MediaInfo) -> OutputInfo {
    OutputInfo {
        format,
        content_type: format.content_type().to_string(),
        size_bytes: size,
        duration_seconds: (probed.duration_seconds * 1000.0).round() / 1000.0,
        width: probed.width,
        height: probed.height,
        video_codec: probed.video_codec,
        audio_codec: probed.audio_codec,
    }
}

/// Progress of a whole encode: the status document's percentage.
struct WholeProgress;

impl AsyncReport for WholeProgress {
    async fn report(&mut self, run: &Run<'_>, fraction: f64) {
        let updated = run
            .update(|r| {
                if r.doc.status.is_terminal() || !r.doc.advance_progress((fraction * 100.0) as u8) {
                    return false;
                }
                estimate(&mut r.doc);
                true
            })
            .await;
        match updated {
            Ok(Some(u)) if u.changed => run.progress_event(&u.record.doc).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not record progress"),
        }
    }
}
