//! The poster and storyboard of a finished output, made from its
//! keyframes beside the output's upload (see `transcode::previews`).

use std::path::Path;

use super::common::{JobError, Quiet, Run};
use crate::storage::output_file_key;
use crate::transcode::previews::{self, Storyboard, POSTER, STORYBOARD_CUES, STORYBOARD_IMAGE};
use crate::transcode::{self, TranscodeError};

/// Makes the three files from the local `output` (of `width`×`height`,
/// `duration` s) and stores them in the job's output folder.
pub async fn store(run: &Run<'_>, output: &Path, duration: f64, width: u32, height: u32) -> Result<(), JobError> {
    let dir = output.parent().unwrap_or(Path::new("."));
    let keys = dir.join("keyframes.mkv");
    run.ffmpeg(previews::keyframes_args(output, &keys), dir, run.stop.clone(), Quiet).await?;
    let times = transcode::frame_times(&keys, "matroska").await?;
    let board = Storyboard::plan(&times, duration, width, height)
        .ok_or_else(|| TranscodeError::InvalidMedia("the output has no keyframes".into()))?;
    let (poster, sprite, cues) = (dir.join(POSTER), dir.join(STORYBOARD_IMAGE), dir.join(STORYBOARD_CUES));
    run.ffmpeg(board.args(&keys, &poster, &sprite), dir, run.stop.clone(), Quiet).await?;
    tokio::fs::write(&cues, board.vtt()).await?;
    let storage = &run.ctx.storage;
    let put = |name: &'static str, path: std::path::PathBuf, content_type: &'static str| async move {
        storage.put_file(&output_file_key(run.client, run.id, name), &path, content_type).await
    };
    let (a, b, c) = tokio::join!(
        put(POSTER, poster, "image/jpeg"),
        put(STORYBOARD_IMAGE, sprite, "image/jpeg"),
        put(STORYBOARD_CUES, cues, "text/vtt")
    );
    a?;
    b?;
    c?;
    Ok(())
}
