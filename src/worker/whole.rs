//! The `transcode` task: a job as submitted. Its worker copies and probes
//! the input, then encodes it whole, or plans pieces for a long input.

use std::future::Future;

use chrono::Utc;

use tokio::time::Instant;

use super::common::{AsyncReport, JobError, Outcome, Run};
use super::measure::{estimate, fraction, ms_since, Phases};
use super::split;
use crate::domain::picture::Picture;
use crate::domain::{Container, JobStatus, OutputFormat, OutputInfo};
use crate::events::{self, EventKind};
use crate::storage::{output_key, output_prefix, StoreError};
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
    let attempt = doc.attempt;
    tracing::info!(attempt, "transcoding");
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
            remove_output(run).await;
            run.finish(|d| d.finish_cancelled(Utc::now())).await
        }
        Err(e) => {
            let outcome = run.settle_error(e, attempt).await;
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
    let t0 = Instant::now();
    let (local, ()) = tokio::join!(run.fetch_input(), started);
    let local = local?;
    let input = local.path();
    let fetch_ms = ms_since(t0);
    phase.end("fetch");
    if run.options.format.is_package() {
        // The ladder depends on the input's height: probe first.
        // (Boxed: a large future, kept off the worker's stack.)
        let encoded = Box::pin(super::package::encode(run, container, &input, scratch.path(), fetch_ms)).await?;
        phase.end("package");
        return Ok(encoded.map(Next::Done).unwrap_or(Next::Planned));
    }
    // ffmpeg starts at once, for the common case (progressive SDR that
    // needs no conversion); the probe runs beside it and stops it if the
    // input is invalid, over a limit, long enough to split, or needs
    // another picture chain (then it starts again with that one).
    let probing = Instant::now();
    let threads = run.ctx.settings.ffmpeg_threads;
    let guess = Picture::default();
    let media = |picture| transcode::Media {
        input: &input,
        demuxer: container.demuxer(),
        options: run.options,
        threads,
        picture,
    };
    let output = transcode::output_path(scratch.path(), run.options.format);
    let abort = run.stop.child_token();
    let duration = std::sync::Arc::new(std::sync::OnceLock::new());
    let report = WholeProgress { duration: duration.clone() };
    let encode = run.ffmpeg(transcode::whole_args(&media(&guess), &output), scratch.path(), abort.clone(), report);
    tokio::pin!(encode);
    let probe = transcode::probe(&input, Some(container.demuxer()));
    tokio::pin!(probe);
    let (probed, mut finished) = tokio::select! {
        probed = &mut probe => (probed, None),
        finished = &mut encode => (probe.await, Some(finished)),
    };
    let examined = examine(run, container, &input, probed).await;
    phase.end("probe");
    let (info, picture) = match examined {
        Ok(examined) => examined,
        Err(e) => {
            abort.cancel();
            if finished.is_none() {
                let _ = encode.as_mut().await;
            }
            return Err(e);
        }
    };
    let _ = duration.set(info.duration_seconds);
    if finished.is_none() && run.ctx.settings.splits(info.duration_seconds) {
        abort.cancel();
        let _ = encode.as_mut().await;
        if split::plan(run, container, &input, &info, &picture, fetch_ms, probing).await? {
            phase.end("plan");
            return Ok(Next::Planned);
        }
        // Too short to split after all: encode it whole.
        finished = Some(Err(TranscodeError::Cancelled));
    } else if picture != guess {
        abort.cancel();
        if finished.is_none() {
            let _ = encode.as_mut().await;
        }
        finished = Some(Err(TranscodeError::Cancelled));
    }
    let encoding = async {
        match finished {
            Some(Err(TranscodeError::Cancelled)) if !run.stop.is_cancelled() => {
                tracing::info!(?picture, "encoding with the input's picture chain");
                let report = WholeProgress { duration: duration.clone() };
                let args = transcode::whole_args(&media(&picture), &output);
                run.ffmpeg(args, scratch.path(), run.stop.clone(), report).await
            }
            Some(finished) => finished,
            None => encode.await,
        }
        .map_err(JobError::from)
    };
    // The poster and storyboard from the input's keyframes, beside the
    // encode (an encode that fails stops them).
    let video = super::previews::input_video(container, &info);
    let previews =
        async { Ok::<_, JobError>(super::previews::from_input(run, &input, &video, &picture, scratch.path()).await) };
    let ((), made) = tokio::try_join!(encoding, previews)?;
    phase.end("ffmpeg");
    let info = store_output(run, &output, made).await?;
    phase.end("store");
    Ok(Next::Done(info))
}

/// What the probe found, checked against the limits, with the input's
/// colour recorded and the picture chain it needs (after `idet` where the
/// scan is in doubt).
pub(super) async fn examine(
    run: &Run<'_>,
    container: Container,
    input: &std::path::Path,
    probed: Result<MediaInfo, TranscodeError>,
) -> Result<(MediaInfo, Picture), JobError> {
    let info = probed?;
    run.limits().check(&info)?;
    let threads = run.ctx.settings.ffmpeg_threads;
    let (recorded, interlaced) =
        tokio::join!(record_input_color(run, &info), transcode::interlaced(input, container.demuxer(), &info, threads));
    recorded?;
    let picture = Picture::for_input(&info.color, info.height, interlaced?);
    Ok((info, picture))
}

/// The input's colour into the status document.
async fn record_input_color(run: &Run<'_>, info: &MediaInfo) -> Result<(), JobError> {
    let color = Some(info.color.clone());
    run.update(|r| {
        if r.doc.status.is_terminal() || r.doc.input.color == color {
            return false;
        }
        r.doc.input.color = color.clone();
        true
    })
    .await?;
    Ok(())
}

/// Uploads the output while it is described, and its poster and storyboard
/// (`made` from the input already, or now from the output); the output's
/// description. On failure nothing of it stays behind.
pub async fn store_output(
    run: &Run<'_>,
    output: &std::path::Path,
    made: Option<super::previews::Made>,
) -> Result<OutputInfo, JobError> {
    let format = run.options.format;
    let size = tokio::fs::metadata(output).await.map_err(StoreError::Io)?.len();
    let key = output_key(run.client, run.id, format);
    let h264 = format != OutputFormat::Webm;
    let (probed, stored, previews) = tokio::join!(
        transcode::describe_output(output),
        run.ctx.storage.put_file(&key, output, format.content_type()),
        super::previews::store(run, made, output, h264)
    );
    let probed = probed.map_err(JobError::from).and_then(|p| previews.map(|()| p));
    if stored.is_err() || probed.is_err() {
        remove_output(run).await;
    }
    let probed = probed?;
    stored?;
    Ok(output_info(format, size, probed))
}

/// Removes whatever of the job's output folder was stored.
pub async fn remove_output(run: &Run<'_>) {
    if let Err(e) = run.ctx.storage.delete_prefix(&output_prefix(run.client, run.id)).await {
        tracing::warn!(error = %e, "could not remove a partial output");
    }
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
        color: Some(probed.color),
        manifest: None,
        renditions: None,
    }
}

/// Progress of a whole encode: the status document's percentage, once the
/// probe has told the input's duration.
pub(super) struct WholeProgress {
    pub(super) duration: std::sync::Arc<std::sync::OnceLock<f64>>,
}

impl AsyncReport for WholeProgress {
    async fn report(&mut self, run: &Run<'_>, encoded_seconds: f64) {
        let Some(&total) = self.duration.get() else { return };
        let fraction = fraction(encoded_seconds, total);
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
