//! The `hls` and `dash` formats: probe, encode the ladder in one ffmpeg,
//! measure the segments, write the master playlist, store every file of the
//! package with its poster and storyboard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures::{StreamExt, TryStreamExt};

use super::common::{AsyncReport, JobError, Quiet, Run};
use super::whole::{output_info, record_input_color, remove_output, WholeProgress};
use crate::domain::picture::Picture;
use crate::domain::{Container, OutputFormat, OutputInfo, Rendition};
use crate::storage::{output_file_key, StoreError};
use crate::transcode::ladder::{self, Measured, Rung, Segments, Source};
use crate::transcode::{self, TranscodeError};

/// Files stored at once.
const UPLOADS_AT_ONCE: usize = 8;

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
    let info = transcode::probe(input, Some(container.demuxer())).await?;
    run.limits().check(&info)?;
    let threads = run.ctx.settings.ffmpeg_threads;
    let (recorded, interlaced) =
        tokio::join!(record_input_color(run, &info), transcode::interlaced(input, container.demuxer(), &info, threads));
    recorded?;
    let picture = Picture::for_input(&info.color, info.height, interlaced?);
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
    audio_input: Option<(Vec<String>, &Path)>,
    renditions: &[u32],
    scratch: &Path,
) -> Result<OutputInfo, JobError> {
    let rungs = ladder::rungs(renditions);
    let dir = scratch.join("package");
    tokio::fs::create_dir_all(&dir).await?;
    let has_audio = audio_input.is_some();
    let args = ladder::join_args(run.options.format, list, audio_input, &rungs, &dir);
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
    let mut uploads = Uploads { dir: dir.clone(), audio_rep, stored: HashMap::new() };
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

/// How often the package folder is looked at for closed segments.
const UPLOAD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// The package's files stored so far, with their sizes.
struct Uploads {
    dir: PathBuf,
    /// DASH's audio representation (its files are `audio/mp4`).
    audio_rep: usize,
    stored: HashMap<String, u64>,
}

impl Uploads {
    /// Stores the files not stored yet: those ffmpeg has closed (a segment
    /// whose successor exists, an init segment whose first segment does),
    /// or, at the end (`all`), every one.
    async fn store(&mut self, run: &Run<'_>, all: bool) -> Result<(), JobError> {
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        let ready: Vec<String> =
            names.iter().filter(|n| !self.stored.contains_key(*n) && (all || closed(n, &names))).cloned().collect();
        let storage = &run.ctx.storage;
        let audio_rep = self.audio_rep;
        let dir = &self.dir;
        let sizes: Vec<(String, u64)> = futures::stream::iter(ready)
            .map(|name| async move {
                let key = output_file_key(run.client, run.id, &name);
                let size = storage.put_file(&key, &dir.join(&name), content_type(&name, audio_rep)).await?;
                Ok::<_, StoreError>((name, size))
            })
            .buffer_unordered(UPLOADS_AT_ONCE)
            .try_collect()
            .await?;
        self.stored.extend(sizes);
        Ok(())
    }

    fn total(&self) -> u64 {
        self.stored.values().sum()
    }
}

/// Whether ffmpeg is done with a file of the package while it still runs.
fn closed(name: &str, names: &[String]) -> bool {
    let exists = |n: &str| names.iter().any(|x| x == n);
    if let Some(stem) = name.strip_suffix(".m4s") {
        let digits = stem.len() - stem.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (prefix, number) = stem.split_at(digits);
        return match number.parse::<u64>() {
            Ok(n) => exists(&format!("{prefix}{:0width$}.m4s", n + 1, width = number.len())),
            Err(_) => false,
        };
    }
    let segments =
        match (name.strip_suffix("_init.mp4"), name.strip_prefix("init-").and_then(|r| r.strip_suffix(".mp4"))) {
            (Some(rendition), _) => format!("{rendition}_"),
            (None, Some(rep)) => format!("chunk-{rep}-"),
            _ => return false,
        };
    names.iter().any(|n| n.starts_with(&segments) && n.ends_with(".m4s"))
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
            Some(mpd) => ladder::dash_segments(mpd, i),
            None => ladder::hls_segments(&tokio::fs::read_to_string(dir.join(format!("{}.m3u8", rung.name))).await?),
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
        let (peak_bps, average_bps) = ladder::bitrates(&sizes, &segs.durations);
        let init = tokio::fs::read(dir.join(&segs.init)).await?;
        let video = ladder::avc_codec(&init)
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
        tokio::fs::write(dir.join("master.m3u8"), ladder::master_playlist(&measured)).await?;
    }
    let (stored, previews) = tokio::join!(uploads.store(run, true), super::previews::store(run, &top_file, true));
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

/// The content type a package file is stored (and served) with; DASH's
/// audio representation is the one after the renditions.
fn content_type(name: &str, audio_rep: usize) -> &'static str {
    if name.ends_with(".m3u8") {
        "application/vnd.apple.mpegurl"
    } else if name.ends_with(".mpd") {
        "application/dash+xml"
    } else if name == format!("init-{audio_rep}.mp4") || name.starts_with(&format!("chunk-{audio_rep}-")) {
        "audio/mp4"
    } else {
        "video/mp4"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_segment_is_closed_once_its_successor_exists() {
        use super::closed;
        let names: Vec<String> = [
            "720p_init.mp4",
            "720p_00000.m4s",
            "720p_00001.m4s",
            "init-0.mp4",
            "init-1.mp4",
            "chunk-1-00009.m4s",
            "chunk-1-00010.m4s",
            "720p.m3u8",
        ]
        .map(String::from)
        .to_vec();
        assert!(closed("720p_00000.m4s", &names));
        assert!(!closed("720p_00001.m4s", &names));
        assert!(closed("chunk-1-00009.m4s", &names));
        assert!(!closed("chunk-1-00010.m4s", &names));
        assert!(closed("720p_init.mp4", &names));
        assert!(closed("init-1.mp4", &names));
        assert!(!closed("init-0.mp4", &names));
        assert!(!closed("720p.m3u8", &names));
    }

    #[test]
    fn package_files_have_their_content_types() {
        use super::content_type;
        assert_eq!(content_type("master.m3u8", usize::MAX), "application/vnd.apple.mpegurl");
        assert_eq!(content_type("manifest.mpd", 2), "application/dash+xml");
        assert_eq!(content_type("chunk-2-00001.m4s", 2), "audio/mp4");
        assert_eq!(content_type("init-2.mp4", 2), "audio/mp4");
        assert_eq!(content_type("chunk-1-00001.m4s", 2), "video/mp4");
        assert_eq!(content_type("720p_00000.m4s", usize::MAX), "video/mp4");
    }
}
