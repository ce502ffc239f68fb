//! The `hls` and `dash` formats: probe, encode the ladder in one ffmpeg,
//! measure the segments, write the master playlist, store every file of the
//! package with its poster and storyboard.

use std::path::Path;
use std::sync::{Arc, OnceLock};

mod uploads;

use super::common::{AsyncReport, JobError, Quiet, Run};
use super::whole::{examine, output_info, remove_output, WholeProgress};
use crate::domain::{Container, OutputFormat, OutputInfo, Rendition};
use crate::transcode::ladder::{self, Rung, Source};
use crate::transcode::manifest::{self, Measured, Segments};
use crate::transcode::{self, JoinAudio, TranscodeError};
use uploads::{Uploads, UPLOAD_INTERVAL};

/// Probes the local input, then encodes the package and stores it, or
/// plans it into pieces for any worker (`None`: planned).
pub async fn encode(
    run: &Run<'_>,
    container: Container,
    input: &Path,
    scratch: &Path,
    fetch_ms: u64,
) -> Result<Option<OutputInfo>, JobError> {
    let probing = tokio::time::Instant::now();
    let probed = transcode::probe(input, Some(container.demuxer())).await;
    let (info, picture) = examine(run, container, input, probed).await?;
    let threads = run.ctx.settings.ffmpeg_threads;
    if run.ctx.settings.splits(info.duration_seconds)
        && Box::pin(super::split::plan(run, container, input, &info, &picture, fetch_ms, probing)).await?
    {
        return Ok(None);
    }
    let format = run.options.format;
    let rungs = ladder::renditions(run.options.renditions.as_deref(), info.height);
    let dir = scratch.join("package");
    tokio::fs::create_dir_all(&dir).await?;
    let source = Source {
        input,
        demuxer: container.demuxer(),
        threads,
        picture: &picture,
        has_audio: info.audio_codec.is_some(),
    };
    tracing::info!(renditions = ?rungs.iter().map(|r| r.height).collect::<Vec<_>>(), "encoding the package");
    let duration = Arc::new(OnceLock::new());
    let _ = duration.set(info.duration_seconds);
    let args = ladder::package_args(format, &source, &rungs, &dir);
    let report = WholeProgress { duration };
    Box::pin(write_and_store(run, args, report, &rungs, scratch, source.has_audio)).await.map(Some)
}

/// The join of a split package: the pieces' tracks and the audio copied
/// into the package's segments, then stored as a whole encode's are.
pub async fn join(
    run: &Run<'_>,
    list: &Path,
    audio: JoinAudio<'_>,
    renditions: &[u32],
    scratch: &Path,
) -> Result<OutputInfo, JobError> {
    let rungs = ladder::rungs(renditions);
    let dir = scratch.join("package");
    tokio::fs::create_dir_all(&dir).await?;
    let has_audio = !matches!(audio, JoinAudio::None);
    let args = ladder::join_args(run.options.format, list, audio, &rungs, &dir);
    Box::pin(write_and_store(run, args, Quiet, &rungs, scratch, has_audio)).await
}

/// Runs the ffmpeg that writes the package into `scratch/package`, storing
/// segments as it closes them and the rest at the end; on failure nothing
/// of the output stays behind.
async fn write_and_store(
    run: &Run<'_>,
    args: Vec<String>,
    report: impl AsyncReport,
    rungs: &[Rung],
    scratch: &Path,
    has_audio: bool,
) -> Result<OutputInfo, JobError> {
    let format = run.options.format;
    let dir = scratch.join("package");
    let audio_rep = if format == OutputFormat::Dash { rungs.len() } else { usize::MAX };
    let mut uploads = Uploads::new(dir.clone(), audio_rep);
    let written = async {
        // (Futures boxed: large ones, kept off the worker's stack.)
        let mut encode = Box::pin(run.ffmpeg(args, scratch, run.stop.clone(), report));
        let mut tick = tokio::time::interval(UPLOAD_INTERVAL);
        loop {
            tokio::select! {
                done = &mut encode => break done.map_err(JobError::from),
                _ = tick.tick() => Box::pin(uploads.store(run, false)).await?,
            }
        }?;
        Box::pin(store(run, format, rungs, &dir, scratch, has_audio, &mut uploads)).await
    };
    let result = Box::pin(written).await;
    if result.is_err() {
        remove_output(run).await;
    }
    result
}

/// The segments of each rendition, as the package's playlists list them.
async fn segments(format: OutputFormat, rungs: &[Rung], dir: &Path) -> Result<Vec<Segments>, JobError> {
    let unreadable = || TranscodeError::Internal("ffmpeg wrote a package whose playlists cannot be read".into());
    let mut all = Vec::new();
    let mpd = match format {
        OutputFormat::Dash => Some(tokio::fs::read_to_string(dir.join("manifest.mpd")).await?),
        _ => None,
    };
    for (i, rung) in rungs.iter().enumerate() {
        let found = match &mpd {
            Some(mpd) => manifest::dash_segments(mpd, i),
            None => manifest::hls_segments(&tokio::fs::read_to_string(dir.join(format!("{}.m3u8", rung.name))).await?),
        };
        let found = found.filter(|s| !s.files.is_empty()).ok_or_else(unreadable)?;
        all.push(found);
    }
    Ok(all)
}

/// `init + segments` of one rendition as one fMP4 file (`count` segments).
async fn joined(dir: &Path, segments: &Segments, count: usize, into: &Path) -> Result<(), JobError> {
    let mut bytes = tokio::fs::read(dir.join(&segments.init)).await?;
    for file in segments.files.iter().take(count) {
        bytes.extend(tokio::fs::read(dir.join(file)).await?);
    }
    tokio::fs::write(into, bytes).await?;
    Ok(())
}

async fn store(
    run: &Run<'_>,
    format: OutputFormat,
    rungs: &[Rung],
    dir: &Path,
    scratch: &Path,
    has_audio: bool,
    uploads: &mut Uploads,
) -> Result<OutputInfo, JobError> {
    let all = segments(format, rungs, dir).await?;
    let mut measured = Vec::new();
    let mut top = None;
    for (i, (rung, segs)) in rungs.iter().zip(&all).enumerate() {
        // The top rendition whole (for the poster, storyboard and the
        // output's description); the others' first segment.
        let sample = scratch.join(format!("{}-sample.mp4", rung.name));
        joined(dir, segs, if i == 0 { usize::MAX } else { 1 }, &sample).await?;
        let probed = transcode::probe(&sample, None).await?;
        let mut sizes = Vec::new();
        for file in &segs.files {
            sizes.push(tokio::fs::metadata(dir.join(file)).await?.len());
        }
        let (peak_bps, average_bps) = manifest::bitrates(&sizes, &segs.durations);
        let init = tokio::fs::read(dir.join(&segs.init)).await?;
        let video = manifest::avc_codec(&init)
            .ok_or_else(|| TranscodeError::Internal("a rendition's init segment has no avcC".into()))?;
        let codecs = if has_audio { format!("{video},mp4a.40.2") } else { video };
        measured.push(Measured {
            name: rung.name.clone(),
            playlist: format!("{}.m3u8", rung.name),
            width: probed.width,
            height: probed.height,
            peak_bps,
            average_bps,
            codecs,
            frame_rate: probed.frame_rate.unwrap_or(0.0),
        });
        if i == 0 {
            top = Some((sample, probed));
        }
    }
    let (top_file, top_info) = top.ok_or_else(|| TranscodeError::Internal("a package without renditions".into()))?;
    if format == OutputFormat::Hls {
        tokio::fs::write(dir.join("master.m3u8"), manifest::master_playlist(&measured)).await?;
    }
    let (stored, previews) = tokio::join!(uploads.store(run, true), super::previews::store(run, None, &top_file, true));
    stored?;
    previews?;
    // The top rendition as a single file would be described; DASH keeps
    // the audio in its own representation, which the top one lacks.
    let mut info = output_info(format, uploads.total(), top_info);
    info.audio_codec = has_audio.then(|| "aac".to_string());
    info.manifest = format.manifest().map(str::to_string);
    let renditions = measured.into_iter().map(|m| Rendition {
        name: m.name,
        width: m.width,
        height: m.height,
        bandwidth: m.peak_bps,
        average_bandwidth: m.average_bps,
        codecs: m.codecs,
        frame_rate: (m.frame_rate * 1000.0).round() / 1000.0,
    });
    info.renditions = Some(renditions.collect());
    Ok(info)
}
