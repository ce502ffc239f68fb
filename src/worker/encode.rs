//! Encoding one part of a split job, a piece or the audio, into the job's
//! work folder, with the piece's progress as its share of the whole job.

use chrono::Utc;
use tokio::time::Instant;

use super::common::{AsyncReport, JobError, Quiet, Run};
use super::measure::{estimate, fraction, ms_since};
use super::split::{piece_format, Part};
use crate::domain::audio::AudioCut;
use crate::domain::picture::Picture;
use crate::domain::{Container, JobRecord, OutputFormat, TaskTiming};
use crate::transcode::{self, adts, ladder, TranscodeError};

/// Copies the plan's progress into the document and, at most once a second
/// for the whole job (whichever worker reports), stamps a progress event.
pub(super) fn throttled_sync(r: &mut JobRecord, now: chrono::DateTime<Utc>) {
    let before = r.doc.progress_percent;
    r.sync_progress();
    estimate(&mut r.doc);
    let Some(p) = r.plan.as_mut() else { return };
    let due = p.last_progress_event.is_none_or(|t| now - t >= chrono::Duration::seconds(1));
    if r.doc.progress_percent > before && due {
        p.last_progress_event = Some(now);
    }
}

pub(super) fn progress_due(record: &JobRecord, now: chrono::DateTime<Utc>) -> bool {
    record.plan.as_ref().is_some_and(|p| p.last_progress_event == Some(now))
}

pub(super) async fn encode_part(
    run: &Run<'_>,
    container: Container,
    part: &Part<'_>,
    picture: &Picture,
    key: &str,
    audio: Option<(AudioCut, String)>,
    renditions: &[u32],
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
            let args = if format.is_package() {
                let source = ladder::Source {
                    input: &input,
                    demuxer: container.demuxer(),
                    threads: media.threads,
                    picture,
                    has_audio: false,
                };
                ladder::piece_args(&source, &ladder::rungs(renditions), piece.seek_seconds, piece.frames, &output)
            } else {
                transcode::piece_args(&media, piece, &output)
            };
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
            if let Some((cut, _)) = &audio {
                let encoded = scratch.path().join("audio-part.adts");
                let args = transcode::audio_part_args(&media, cut, &encoded);
                run.ffmpeg(args, scratch.path(), run.stop.clone(), Quiet).await?;
                let packets = adts::cut(&tokio::fs::read(&encoded).await?, cut);
                tokio::fs::write(scratch.path().join("audio-part.aac"), packets).await?;
            }
        }
        Part::Audio => {
            let args = transcode::audio_args(&media, &output);
            run.ffmpeg(args, scratch.path(), run.stop.clone(), Quiet).await?;
        }
    }
    let content_type = match (part, format) {
        (Part::Audio, OutputFormat::Mp4 | OutputFormat::Hls | OutputFormat::Dash) => "audio/mp4",
        (Part::Audio, OutputFormat::Webm) => "audio/webm",
        (Part::Piece(_), f) => piece_format(f).content_type(),
    };
    let encode_ms = ms_since(t1);
    let t2 = Instant::now();
    run.ctx.storage.put_file(key, &output, content_type).await?;
    if let Some((_, audio_key)) = &audio {
        run.ctx.storage.put_file(audio_key, &scratch.path().join("audio-part.aac"), "audio/aac").await?;
    }
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
