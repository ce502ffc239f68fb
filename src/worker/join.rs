//! The join of a split job: the pieces (stream copy, exact durations) and
//! the audio into the output; then the job is done and its work folder
//! removed.

use chrono::Utc;
use tokio::time::Instant;

use super::common::{JobError, Outcome, Quiet, Run};
use super::measure::ms_since;
use super::split::{audio_file, audio_part_file, piece_file};
use super::whole::store_output;
use crate::domain::{OutputInfo, PlanState, TaskTiming};
use crate::storage::{work_prefix, StoreError};
use crate::transcode::{self, concat_list, JoinAudio, TranscodeError};

/// Joins the job's stored pieces once they are all there.
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
                    super::whole::remove_output(run).await;
                }
            }
            outcome
        }
        Err(e) => run.settle_error(e, attempts).await,
    }
}

async fn join_pieces(run: &Run<'_>, plan: &PlanState) -> Result<(OutputInfo, TaskTiming), JobError> {
    let scratch = run.scratch()?;
    let started = Some(Utc::now());
    let dir = scratch.path();
    // The poster and storyboard from the input (this worker's copy, kept
    // from its pieces), beside the parts' copy and their concatenation.
    let previews_dir = dir.join("previews");
    let previews = async {
        let video = plan.input_video.as_ref().filter(|_| !run.options.format.is_package())?;
        tokio::fs::create_dir_all(&previews_dir).await.ok()?;
        let input = run.fetch_input().await.ok()?;
        super::previews::from_input(run, &input.path(), video, &plan.picture, &previews_dir).await
    };
    let (joined, made) = tokio::join!(concatenate(run, plan, dir), previews);
    let (joined, fetch_ms, encode_ms) = joined?;
    match joined {
        Joined::Package(info) => Ok((*info, TaskTiming { started, fetch_ms, encode_ms, store_ms: 0 })),
        Joined::File(output) => {
            let t2 = Instant::now();
            let info = store_output(run, &output, made).await?;
            Ok((info, TaskTiming { started, fetch_ms, encode_ms, store_ms: ms_since(t2) }))
        }
    }
}

/// What the concatenation gave: a file to store, or a package stored.
enum Joined {
    File(std::path::PathBuf),
    Package(Box<OutputInfo>),
}

/// Copies the parts in and concatenates them; with the copy's and the
/// concatenation's milliseconds.
async fn concatenate(run: &Run<'_>, plan: &PlanState, dir: &std::path::Path) -> Result<(Joined, u64, u64), JobError> {
    let t0 = Instant::now();
    let format = run.options.format;
    let prefix = work_prefix(run.client, run.id);
    let mut files = Vec::with_capacity(plan.pieces.len() + 1);
    for piece in &plan.pieces {
        files.push(piece_file(piece, format));
    }
    if plan.audio_sample_rate.is_some() {
        files.extend(plan.pieces.iter().map(audio_part_file));
    } else if plan.audio {
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
    tokio::fs::write(&list, concat_list(&entries)).await.map_err(StoreError::Io)?;
    let whole_audio = dir.join(audio_file(format));
    let packets = dir.join("audio.aac");
    let audio = match plan.audio_sample_rate {
        Some(rate) => {
            // Each piece kept exactly its own packets: end to end they are the stream.
            let mut joined = Vec::new();
            for piece in &plan.pieces {
                let part = tokio::fs::read(dir.join(audio_part_file(piece))).await.map_err(StoreError::Io)?;
                joined.extend_from_slice(&part);
            }
            tokio::fs::write(&packets, joined).await.map_err(StoreError::Io)?;
            JoinAudio::Packets(&packets, rate)
        }
        None if plan.audio => JoinAudio::Whole(&whole_audio),
        None => JoinAudio::None,
    };
    if format.is_package() {
        let info = Box::pin(super::package::join(run, &list, audio, &plan.renditions, dir)).await?;
        return Ok((Joined::Package(Box::new(info)), fetch_ms, ms_since(t1)));
    }
    let output = transcode::output_path(dir, format);
    let args = transcode::join_args(&list, audio, format, &output);
    run.ffmpeg(args, dir, run.stop.clone(), Quiet).await?;
    Ok((Joined::File(output), fetch_ms, ms_since(t1)))
}
