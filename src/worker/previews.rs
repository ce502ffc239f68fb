//! The poster and storyboard of a finished output, made from its
//! keyframes beside the output's probe and upload (see `transcode::previews`).

use std::path::Path;

use super::common::{JobError, Quiet, Run};
use crate::storage::output_file_key;
use crate::transcode::previews::{self, Storyboard, POSTER, STORYBOARD_CUES, STORYBOARD_IMAGE};
use crate::transcode::{self, TranscodeError};

/// Makes the three files from the local `output` and stores them in the
/// job's output folder. `h264`: its decoder can skip the non-keyframes
/// itself (else a copy of the keyframes is decoded).
pub async fn store(run: &Run<'_>, output: &Path, h264: bool) -> Result<(), JobError> {
    let dir = output.parent().unwrap_or(Path::new("."));
    let packets = transcode::video_packets(output, None).await?;
    let (source, keyframes) = if h264 {
        (output.to_path_buf(), packets.keyframes.clone())
    } else {
        let keys = dir.join("keyframes.mkv");
        run.ffmpeg(previews::keyframes_args(output, &keys), dir, run.stop.clone(), Quiet).await?;
        let copied = transcode::video_packets(&keys, Some("matroska")).await?;
        (keys, copied.keyframes)
    };
    let board = Storyboard::plan(&keyframes, packets.end(), packets.width, packets.height)
        .ok_or_else(|| TranscodeError::InvalidMedia("the output has no keyframes".into()))?;
    let (poster, sprite, cues) = (dir.join(POSTER), dir.join(STORYBOARD_IMAGE), dir.join(STORYBOARD_CUES));
    run.ffmpeg(board.args(&source, h264, &poster, &sprite), dir, run.stop.clone(), Quiet).await?;
    tokio::fs::write(&cues, board.vtt()).await?;
    let storage = &run.ctx.storage;
    let put = |name: &'static str, path: std::path::PathBuf| async move {
        let content_type = previews::content_type(name).expect("one of the three files");
        storage.put_file(&output_file_key(run.client, run.id, name), &path, content_type).await
    };
    let (a, b, c) = tokio::join!(put(POSTER, poster), put(STORYBOARD_IMAGE, sprite), put(STORYBOARD_CUES, cues));
    a?;
    b?;
    c?;
    Ok(())
}
