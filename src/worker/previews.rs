//! The poster and storyboard of a job (see `transcode::previews`): made
//! from the input's keyframes while the input encodes, when those are as
//! dense as the output's would be and the frames need no deinterlacing;
//! else from the finished output's keyframes, beside its upload.

use std::path::{Path, PathBuf};

use super::common::{JobError, Quiet, Run};
use crate::domain::picture::Picture;
use crate::domain::{Container, InputVideo};
use crate::storage::output_file_key;
use crate::transcode::previews::{self, Source, Storyboard, POSTER, STORYBOARD_CUES, STORYBOARD_IMAGE};
use crate::transcode::{self, MediaInfo, TranscodeError};

/// The widest keyframe spacing taken from an input: x264's default GOP
/// (250 frames) at 25 fps, what an output's thumbnails would be apart.
const MAX_INPUT_KEYFRAME_GAP: f64 = 10.0;

/// A folder holding the three files, made and not yet stored.
#[derive(Debug)]
pub struct Made(PathBuf);

/// Decoders that skip non-keyframes themselves (`-skip_frame nokey`); for
/// the others a copy of the keyframe packets is decoded.
fn skips_to_keyframes(codec: &str) -> bool {
    matches!(codec, "h264" | "hevc")
}

/// What the previews need of the probed input.
pub fn input_video(container: Container, info: &MediaInfo) -> InputVideo {
    InputVideo { container, codec: info.video_codec.clone(), width: info.width, height: info.height }
}

/// Makes the three files from the input in `dir`, when it can stand for
/// the output there: `None` (and the output is used once encoded) when its
/// keyframes are sparser than [`MAX_INPUT_KEYFRAME_GAP`] (or a hundredth of
/// its duration), when it needs deinterlacing, or when anything fails.
pub async fn from_input(
    run: &Run<'_>,
    input: &Path,
    video: &InputVideo,
    picture: &Picture,
    dir: &Path,
) -> Option<Made> {
    if picture.deinterlace {
        return None;
    }
    let chain = transcode::picture_chain(run.options, picture);
    let source = Source { path: input, demuxer: Some(video.container.demuxer()), chain: Some(&chain) };
    let (width, height) = transcode::output_size(run.options, video.width, video.height);
    let dense = |keyframes: &[f64], end: f64| {
        // (A millisecond over: times are sums of frame durations.)
        let gap = MAX_INPUT_KEYFRAME_GAP.max(end / previews::MAX_THUMBNAILS as f64) + 0.001;
        keyframes.windows(2).all(|w| w[1] - w[0] <= gap) && keyframes.last().is_some_and(|&last| end - last <= gap)
    };
    let made = make(run, &source, skips_to_keyframes(&video.codec), Some((width, height)), dir, dense).await;
    match made {
        Ok(true) => Some(Made(dir.to_path_buf())),
        Ok(false) => None,
        Err(e) => {
            tracing::info!(error = %e, "previews from the input failed; they will be made from the output");
            None
        }
    }
}

/// Stores the three files made from the input, or makes them from the
/// local `output` (`h264`: its decoder skips non-keyframes) and stores them.
pub async fn store(run: &Run<'_>, made: Option<Made>, output: &Path, h264: bool) -> Result<(), JobError> {
    let dir = match made {
        Some(Made(dir)) => dir,
        None => {
            let dir = output.parent().unwrap_or(Path::new(".")).to_path_buf();
            let source = Source { path: output, demuxer: None, chain: None };
            make(run, &source, h264, None, &dir, |_, _| true).await?;
            dir
        }
    };
    let storage = &run.ctx.storage;
    let put = |name: &'static str| {
        let path = dir.join(name);
        async move {
            let content_type = previews::content_type(name).expect("one of the three files");
            storage.put_file(&output_file_key(run.client, run.id, name), &path, content_type).await
        }
    };
    let (a, b, c) = tokio::join!(put(POSTER), put(STORYBOARD_IMAGE), put(STORYBOARD_CUES));
    a?;
    b?;
    c?;
    Ok(())
}

/// Lists the source's keyframes and, when `usable(keyframes, end)`, writes
/// the poster, the sprite and the cues into `dir` (`size`: the frames'
/// size after the source's chain, when it is not the file's own); whether
/// it did.
async fn make(
    run: &Run<'_>,
    source: &Source<'_>,
    skip_nokey: bool,
    size: Option<(u32, u32)>,
    dir: &Path,
    usable: impl Fn(&[f64], f64) -> bool,
) -> Result<bool, JobError> {
    let packets = transcode::video_packets(source.path, source.demuxer).await?;
    let (first, end) = (packets.times.first().copied().unwrap_or(0.0), packets.end());
    let relative: Vec<f64> = packets.keyframes.iter().map(|t| t - first).collect();
    if !usable(&relative, end - first) {
        return Ok(false);
    }
    let keys = dir.join("keyframes.mkv");
    let (decoded, keyframes) = if skip_nokey {
        (*source, packets.keyframes.clone())
    } else {
        run.ffmpeg(previews::keyframes_args(source, &keys), dir, run.stop.clone(), Quiet).await?;
        let copied = transcode::video_packets(&keys, Some("matroska")).await?;
        (Source { path: &keys, demuxer: Some("matroska"), chain: source.chain }, copied.keyframes)
    };
    let (width, height) = size.unwrap_or((packets.width, packets.height));
    let board = Storyboard::plan(&keyframes, end - first, width, height)
        .ok_or_else(|| TranscodeError::InvalidMedia("the video has no keyframes".into()))?;
    let (poster, sprite) = (dir.join(POSTER), dir.join(STORYBOARD_IMAGE));
    run.ffmpeg(board.args(&decoded, skip_nokey, &poster, &sprite), dir, run.stop.clone(), Quiet).await?;
    tokio::fs::write(dir.join(STORYBOARD_CUES), board.vtt()).await?;
    Ok(true)
}
