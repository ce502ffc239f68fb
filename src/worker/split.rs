//! A split job: the plan (pieces of the input's frames and one audio task,
//! all on `<prefix>.jobs` for any worker), the pieces and the audio, each
//! stored under `work/<client>/<id>/`, and the join. The task that
//! completes the plan publishes the join; a redelivered task overwrites its
//! own key and counts once. The join itself is in `join`.

use std::path::Path;

use chrono::Utc;
use tokio::time::Instant;

use super::common::{JobError, Outcome, Run};
use super::encode::{encode_part, progress_due, throttled_sync};
use super::measure::ms_since;
use crate::domain::picture::Picture;
use crate::domain::{Container, JobRecord, OutputFormat, PieceSpec, PlanState, TaskTiming};
use crate::queue::tasks::{Task, JOIN_PRIORITY};
use crate::storage::work_prefix;
use crate::transcode::ladder::{self, SEGMENT_SECONDS};
use crate::transcode::{self, MediaInfo};

/// The container of a job's pieces: the output's, or for a package MP4
/// (every rendition of the piece's range as a video track of one file).
pub(super) fn piece_format(format: OutputFormat) -> OutputFormat {
    if format.is_package() {
        OutputFormat::Mp4
    } else {
        format
    }
}

pub(super) fn piece_file(piece: &PieceSpec, format: OutputFormat) -> String {
    format!("{}.{}", piece.name(), piece_format(format).extension())
}

/// A piece's range of the audio, when the pieces carry it.
pub(super) fn audio_part_file(piece: &PieceSpec) -> String {
    format!("{}.aac", piece.name())
}

pub(super) fn audio_file(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Mp4 | OutputFormat::Hls | OutputFormat::Dash => "audio.m4a",
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
    let packets = transcode::video_packets(input, Some(container.demuxer())).await?;
    // Pieces that start on a keyframe are sought to it exactly, where `-ss`
    // (in microseconds) can name the stream's ticks.
    let exact = packets.ticks_per_second.is_some_and(|t| t < 1e6);
    let keyframes = if exact { packets.keyframes.as_slice() } else { &[] };
    let times = &packets.times;
    let format = run.options.format;
    let mut length = run.ctx.settings.segment_seconds;
    if format.is_package() {
        // Pieces of whole segments: their joins are segment boundaries.
        length = length.div_ceil(u64::from(SEGMENT_SECONDS)).max(1) * u64::from(SEGMENT_SECONDS);
    }
    let pieces = crate::domain::plan::split(times, keyframes, info.start_seconds, length as f64);
    if pieces.len() < 2 {
        return Ok(false);
    }
    tracing::info!(pieces = pieces.len(), frames = times.len(), "splitting the job");
    let mut plan = PlanState::new(pieces, info.audio_codec.is_some());
    // AAC audio is encoded by the pieces, each its own range (packets that
    // join without a seam); Opus, and rates AAC does not have, by one task.
    if plan.audio && format != OutputFormat::Webm {
        plan.audio_sample_rate = info.audio_sample_rate.filter(|r| transcode::AAC_SAMPLE_RATES.contains(r));
    }
    if format.is_package() {
        let rungs = ladder::renditions(run.options.renditions.as_deref(), info.height);
        plan.renditions = rungs.iter().map(|r| r.height).collect();
    }
    plan.picture = picture.clone();
    plan.input_video = Some(super::previews::input_video(container, info));
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
    if plan.has_audio_task() && !plan.audio_done {
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
pub(super) enum Part<'a> {
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

    pub(super) fn file(&self, format: OutputFormat) -> String {
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
    let audio = match (&part, record.plan.as_ref()) {
        (Part::Piece(piece), Some(plan)) => plan
            .audio_cut(piece.index)
            .map(|cut| (cut, format!("{}{}", work_prefix(run.client, run.id), audio_part_file(piece)))),
        _ => None,
    };
    let renditions = record.plan.as_ref().map(|p| p.renditions.clone()).unwrap_or_default();
    let timing = match encode_part(run, container, &part, &picture, &key, audio, &renditions).await {
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
