//! A split job: the plan (pieces of the input's frames and one audio task,
//! all on `<prefix>.jobs` for any worker), the pieces and the audio, each
//! stored under `work/<client>/<id>/`, and the join. The task that
//! completes the plan publishes the join; a redelivered task overwrites its
//! own key and counts once.

use std::path::Path;

use chrono::Utc;
use tokio::time::Instant;

use super::common::{estimate, fraction, ms_since, AsyncReport, JobError, Outcome, Quiet, Run};
use super::whole::store_output;
use crate::domain::picture::Picture;
use crate::domain::{Container, JobRecord, OutputFormat, PieceSpec, PlanState, TaskTiming};
use crate::queue::tasks::{Task, JOIN_PRIORITY};
use crate::storage::{output_key, work_prefix};
use crate::transcode::{self, concat_list, MediaInfo, TranscodeError};

fn piece_file(piece: &PieceSpec, format: OutputFormat) -> String {
    format!("{}.{}", piece.name(), format.extension())
}

fn audio_file(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Mp4 => "audio.m4a",
        OutputFormat::Webm => "audio.webm",
    }
}

/// Plans the job into pieces and publishes their tasks; false when the
/// input is too short to split after all (then it is encoded whole).
pub async fn plan(
    run: &Run<'_>,
    container: Container,
    input: &Path,
    info: &MediaInfo,
    picture: &Picture,
    fetch_ms: u64,
    probing: Instant,
) -> Result<bool, JobError> {
    let times = transcode::frame_times(input, container.demuxer()).await?;
    let pieces = crate::domain::plan::split(&times, info.start_seconds, run.ctx.settings.segment_seconds as f64);
    if pieces.len() < 2 {
        return Ok(false);
    }
    tracing::info!(pieces = pieces.len(), frames = times.len(), "splitting the job");
    let mut plan = PlanState::new(pieces, info.audio_codec.is_some());
    plan.picture = picture.clone();
    let encode_ms = ms_since(probing);
    let started = Some(Utc::now() - chrono::Duration::milliseconds((fetch_ms + encode_ms) as i64));
    plan.timings.insert("plan".into(), TaskTiming { started, fetch_ms, encode_ms, store_ms: 0 });
    let updated = run
        .update(|r| {
            if r.doc.status.is_terminal() || r.plan.is_some() {
                return false;
            }
            r.plan = Some(plan.clone());
            r.sync_progress();
            true
        })
        .await?;
    if let Some(u) = updated.filter(|u| !u.record.doc.status.is_terminal()) {
        publish_plan(run, container, &u.record).await?;
    }
    Ok(true)
}

/// A redelivered `transcode` task of a planned job: publishes what the
/// first delivery may not have.
pub async fn resume(run: &Run<'_>, container: Container, record: &JobRecord) -> Outcome {
    if record.plan.as_ref().is_some_and(|p| p.published) {
        return Outcome::Finished;
    }
    match publish_plan(run, container, record).await {
        Ok(()) => Outcome::Finished,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn publish_plan(run: &Run<'_>, container: Container, record: &JobRecord) -> Result<(), JobError> {
    let plan = record.plan.as_ref().expect("a planned job");
    let (id, client, options) = (run.id, run.client.clone(), run.options.clone());
    // The audio first: it is the longest task (the whole input's length),
    // so a worker starts it at once while the others take the pieces.
    if plan.audio && !plan.audio_done {
        let task = Task::Audio { id, client: client.clone(), options: options.clone(), container };
        task.publish(&run.ctx.broker, run.priority, &run.trace).await?;
    }
    for piece in plan.pieces.iter().filter(|p| !plan.done.contains(&p.index)) {
        let task =
            Task::Piece { id, client: client.clone(), options: options.clone(), container, piece: piece.clone() };
        task.publish(&run.ctx.broker, run.priority, &run.trace).await?;
    }
    run.update(|r| match r.plan.as_mut() {
        Some(p) if !p.published => {
            p.published = true;
            true
        }
        _ => false,
    })
    .await?;
    Ok(())
}

/// What a piece or audio task produces.
enum Part<'a> {
    Piece(&'a PieceSpec),
    Audio,
}

impl Part<'_> {
    fn name(&self) -> String {
        match self {
            Part::Piece(p) => p.name(),
            Part::Audio => "audio".into(),
        }
    }

    fn file(&self, format: OutputFormat) -> String {
        match self {
            Part::Piece(p) => piece_file(p, format),
            Part::Audio => audio_file(format).into(),
        }
    }

    fn is_done(&self, plan: &PlanState) -> bool {
        match self {
            Part::Piece(p) => plan.done.contains(&p.index),
            Part::Audio => plan.audio_done,
        }
    }

    fn mark_done(&self, plan: &mut PlanState) {
        match self {
            Part::Piece(p) => {
                plan.done.insert(p.index);
                plan.running.remove(&p.index);
            }
            Part::Audio => plan.audio_done = true,
        }
    }
}

pub async fn piece(run: &Run<'_>, container: Container, piece: &PieceSpec) -> Outcome {
    part(run, container, Part::Piece(piece)).await
}

pub async fn audio(run: &Run<'_>, container: Container) -> Outcome {
    part(run, container, Part::Audio).await
}

/// Runs one piece or the audio: counts the attempt, encodes, stores under
/// `work/…`, marks it done, and publishes the join if it was the last.
async fn part(run: &Run<'_>, container: Container, part: Part<'_>) -> Outcome {
    let name = part.name();
    let counted = run
        .update(|r| {
            let terminal = r.doc.status.is_terminal();
            match r.plan.as_mut() {
                Some(p) if !terminal && !part.is_done(p) => {
                    p.attempt(&name);
                    true
                }
                _ => false,
            }
        })
        .await;
    let record = match counted {
        Ok(Some(u)) if u.changed => u.record,
        // Finished, cancelled or already done: nothing to encode.
        Ok(Some(u)) => return join_if_complete(run, &u.record).await,
        Ok(None) => return Outcome::Finished,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    let attempts = record.plan.as_ref().and_then(|p| p.attempts.get(&name)).copied().unwrap_or(1);
    if attempts > run.ctx.settings.max_attempts {
        let message = format!("{name} of the job was attempted {} times without finishing", attempts - 1);
        return match run.fail("too-many-attempts", message).await {
            Outcome::Finished => Outcome::DeadLetter,
            other => other,
        };
    }
    tracing::info!(attempt = attempts, "encoding {name}");
    let key = format!("{}{}", work_prefix(run.client, run.id), part.file(run.options.format));
    let picture = record.plan.as_ref().map(|p| p.picture.clone()).unwrap_or_default();
    let timing = match encode_part(run, container, &part, &picture, &key).await {
        Ok(t) => t,
        Err(e) => return run.settle_error(e, attempts).await,
    };
    let now = Utc::now();
    let marked = run
        .update(|r| {
            if r.doc.status.is_terminal() {
                return false;
            }
            let Some(p) = r.plan.as_mut() else { return false };
            part.mark_done(p);
            p.timings.insert(name.clone(), timing);
            throttled_sync(r, now);
            true
        })
        .await;
    match marked {
        Ok(Some(u)) if u.record.doc.status.is_terminal() => {
            // The job ended while this part was made: it must not outlive it.
            let _ = run.ctx.storage.delete(&key).await;
            Outcome::Finished
        }
        Ok(Some(u)) => {
            if progress_due(&u.record, now) {
                run.progress_event(&u.record.doc).await;
            }
            join_if_complete(run, &u.record).await
        }
        Ok(None) => Outcome::Finished,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// Publishes the join once every part is stored (again on a redelivery:
/// a second join finds the job done and only re-announces it).
async fn join_if_complete(run: &Run<'_>, record: &JobRecord) -> Outcome {
    let complete = record.plan.as_ref().is_some_and(|p| p.complete());
    if !complete || record.doc.status.is_terminal() {
        return Outcome::Finished;
    }
    let task = Task::Join { id: run.id, client: run.client.clone(), options: run.options.clone() };
    match task.publish(&run.ctx.broker, JOIN_PRIORITY, &run.trace).await {
        Ok(()) => Outcome::Finished,
        Err(e) => Outcome::Retry(format!("join not published: {e}")),
    }
}

/// Copies the plan's progress into the document and, at most once a second
/// for the whole job (whichever worker reports), stamps a progress event.
fn throttled_sync(r: &mut JobRecord, now: chrono::DateTime<Utc>) {
    let before = r.doc.progress_percent;
    r.sync_progress();
    estimate(&mut r.doc);
    let Some(p) = r.plan.as_mut() else { return };
    let due = p.last_progress_event.is_none_or(|t| now - t >= chrono::Duration::seconds(1));
    if r.doc.progress_percent > before && due {
        p.last_progress_event = Some(now);
    }
}

fn progress_due(record: &JobRecord, now: chrono::DateTime<Utc>) -> bool {
    record.plan.as_ref().is_some_and(|p| p.last_progress_event == Some(now))
}

async fn encode_part(
    run: &Run<'_>,
    container: Container,
    part: &Part<'_>,
    picture: &Picture,
    key: &str,
) -> Result<TaskTiming, JobError> {
    let scratch = run.scratch()?;
    let started = Some(Utc::now());
    let t0 = Instant::now();
    let local = run.fetch_input().await?;
    let input = local.path();
    let fetch_ms = ms_since(t0);
    let t1 = Instant::now();
    let format = run.options.format;
    let media = transcode::Media {
        input: &input,
        demuxer: container.demuxer(),
        options: run.options,
        threads: run.ctx.settings.ffmpeg_threads,
        picture,
    };
    let output = scratch.path().join(part.file(format));
    match part {
        Part::Piece(piece) => {
            let args = transcode::piece_args(&media, piece, &output);
            let report = PieceProgress { index: piece.index, seconds: piece.duration_seconds };
            run.ffmpeg(args, scratch.path(), run.stop.clone(), report).await?;
            let frames = transcode::count_frames(&output).await?;
            if frames != piece.frames {
                return Err(TranscodeError::InvalidMedia(format!(
                    "the input's frames {}-{} could not all be decoded ({frames} of {})",
                    piece.start_frame,
                    piece.start_frame + piece.frames - 1,
                    piece.frames
                ))
                .into());
            }
        }
        Part::Audio => {
            let args = transcode::audio_args(&media, &output);
            run.ffmpeg(args, scratch.path(), run.stop.clone(), Quiet).await?;
        }
    }
    let content_type = match (part, format) {
        (Part::Audio, OutputFormat::Mp4) => "audio/mp4",
        (Part::Audio, OutputFormat::Webm) => "audio/webm",
        (Part::Piece(_), f) => f.content_type(),
    };
    let encode_ms = ms_since(t1);
    let t2 = Instant::now();
    run.ctx.storage.put_file(key, &output, content_type).await?;
    Ok(TaskTiming { started, fetch_ms, encode_ms, store_ms: ms_since(t2) })
}

/// Progress of a running piece: its share of the whole job.
struct PieceProgress {
    index: u32,
    seconds: f64,
}

impl AsyncReport for PieceProgress {
    async fn report(&mut self, run: &Run<'_>, encoded_seconds: f64) {
        let fraction = fraction(encoded_seconds, self.seconds);
        let now = Utc::now();
        let updated = run
            .update(|r| {
                if r.doc.status.is_terminal() {
                    return false;
                }
                let Some(p) = r.plan.as_mut() else { return false };
                if p.done.contains(&self.index) {
                    return false;
                }
                p.running.insert(self.index, fraction as f32);
                throttled_sync(r, now);
                true
            })
            .await;
        match updated {
            Ok(Some(u)) if progress_due(&u.record, now) => run.progress_event(&u.record.doc).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not record progress"),
        }
    }
}

/// The join: pieces (stream copy, exact durations) and the audio into the
/// output; then the job is done and its work folder removed.
pub async fn join(run: &Run<'_>) -> Outcome {
    let record = match run.read().await {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Finished,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    if record.doc.status.is_terminal() {
        return run.conclude(&record, false).await;
    }
    let Some(plan) = record.plan.clone().filter(|p| p.complete()) else {
        tracing::warn!("join of a job whose pieces are not all stored; dropping it");
        return Outcome::Finished;
    };
    let counted = run.update(|r| r.plan.as_mut().map(|p| p.attempt("join")).is_some()).await;
    let attempts = match counted {
        Ok(Some(u)) => u.record.plan.as_ref().and_then(|p| p.attempts.get("join")).copied().unwrap_or(1),
        Ok(None) => return Outcome::Finished,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    if attempts > run.ctx.settings.max_attempts {
        let message = format!("joining the pieces was attempted {} times without finishing", attempts - 1);
        return match run.fail("too-many-attempts", message).await {
            Outcome::Finished => Outcome::DeadLetter,
            other => other,
        };
    }
    match join_pieces(run, &plan).await {
        Ok((output, timing)) => {
            let outcome = run
                .finish_record(|r| {
                    r.doc.finish_done(output.clone(), Utc::now());
                    if let Some(p) = r.plan.as_mut() {
                        p.running.clear();
                        p.timings.insert("join".into(), timing);
                    }
                })
                .await;
            if let Ok(Some(r)) = run.read().await {
                if r.doc.status != crate::domain::JobStatus::Done {
                    // Cancelled while joining: no output stays behind.
                    let _ = run.ctx.storage.delete(&output_key(run.client, run.id, run.options.format)).await;
                }
            }
            outcome
        }
        Err(e) => run.settle_error(e, attempts).await,
    }
}

async fn join_pieces(run: &Run<'_>, plan: &PlanState) -> Result<(crate::domain::OutputInfo, TaskTiming), JobError> {
    let scratch = run.scratch()?;
    let started = Some(Utc::now());
    let t0 = Instant::now();
    let dir = scratch.path();
    let format = run.options.format;
    let prefix = work_prefix(run.client, run.id);
    let mut files = Vec::with_capacity(plan.pieces.len() + 1);
    for piece in &plan.pieces {
        files.push(piece_file(piece, format));
    }
    if plan.audio {
        files.push(audio_file(format).to_string());
    }
    // Every part at once: the join waits for the slowest, not the sum.
    let (prefix, storage) = (&prefix, &run.ctx.storage);
    let fetches = files.iter().map(|file| async move {
        match storage.download_to_file(&format!("{prefix}{file}"), &dir.join(file)).await? {
            Some(_) => Ok(()),
            None => {
                Err(JobError::from(TranscodeError::Internal(format!("{file} of the job is missing from the store"))))
            }
        }
    });
    futures::future::try_join_all(fetches).await?;
    let fetch_ms = ms_since(t0);
    let t1 = Instant::now();
    let entries: Vec<(String, f64)> = plan.pieces.iter().map(|p| (piece_file(p, format), p.duration_seconds)).collect();
    let list = dir.join("pieces.ffconcat");
    tokio::fs::write(&list, concat_list(&entries)).await.map_err(crate::storage::StoreError::Io)?;
    let audio = plan.audio.then(|| dir.join(audio_file(format)));
    let output = transcode::output_path(dir, format);
    let args = transcode::join_args(&list, audio.as_deref(), format, &output);
    run.ffmpeg(args, dir, run.stop.clone(), Quiet).await?;
    let encode_ms = ms_since(t1);
    let t2 = Instant::now();
    let info = store_output(run, &output).await?;
    Ok((info, TaskTiming { started, fetch_ms, encode_ms, store_ms: ms_since(t2) }))
}
