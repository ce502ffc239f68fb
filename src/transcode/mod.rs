//! ffmpeg and ffprobe: arguments, limits, progress and errors.
//!
//! ffmpeg runs through ffmpeg-sidecar on a blocking thread (its event
//! iterator blocks), in its own process group with a minimal environment,
//! reading only a local file through a forced demuxer. It is killed on a
//! stall, at the wall-clock limit, on cancellation, and by the kernel if the
//! thread that started it goes away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::picture as color;
use crate::domain::OutputFormat;

pub mod adts;
mod args;
pub mod child;
pub mod ladder;
pub mod manifest;
pub mod mp4;
pub mod previews;
mod probe;
mod run;
pub use args::{
    audio_args, audio_part_args, concat_list, ffmpeg_args, join_args, join_inputs, output_size, picture_chain,
    piece_args, whole_args, JoinAudio, Media,
};
pub use probe::{
    count_frames, describe_output, interlaced, parse_probe, parse_video_packets, probe, video_packets, MediaInfo,
    VideoPackets,
};
pub use run::{classify_failure, parse_clock, run_ffmpeg, Progress};

/// The sample rates of ffmpeg's AAC encoder (it resamples others).
pub const AAC_SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// Environment ffmpeg and ffprobe see: nothing of the service's.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The input is not something we can decode; permanent.
    #[error("{0}")]
    InvalidMedia(String),
    /// The input exceeds a configured limit; permanent.
    #[error("{0}")]
    LimitExceeded(String),
    /// ffmpeg made no progress for the stall interval; worth another try.
    #[error("ffmpeg made no progress for {0} s")]
    Stalled(u64),
    /// The transcode ran past the wall-clock limit; permanent.
    #[error("transcoding took longer than the limit of {0} s")]
    TimedOut(u64),
    #[error("cancelled")]
    Cancelled,
    /// The machine ran short (ffmpeg killed by a signal, out of memory, no
    /// space left): worth another try, on this worker or another.
    #[error("{0}")]
    Resources(String),
    /// Something on our side (ffmpeg missing); worth another try.
    #[error("{0}")]
    Internal(String),
}

impl TranscodeError {
    /// The stable `error.code` of a failed job.
    pub fn code(&self) -> &'static str {
        match self {
            TranscodeError::InvalidMedia(_) => "invalid-media",
            TranscodeError::LimitExceeded(_) => "input-too-large",
            TranscodeError::Stalled(_) => "stalled",
            TranscodeError::TimedOut(_) => "timeout",
            TranscodeError::Cancelled => "cancelled",
            TranscodeError::Resources(_) => "resources-exhausted",
            TranscodeError::Internal(_) => "internal-error",
        }
    }

    /// Whether another attempt could succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TranscodeError::Stalled(_) | TranscodeError::Resources(_) | TranscodeError::Internal(_))
    }
}

/// Limits that bound one transcode.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_input_seconds: u64,
    pub max_input_pixels: u64,
    pub stall: Duration,
    pub timeout: Duration,
}

impl Limits {
    pub fn check(&self, input: &MediaInfo) -> Result<(), TranscodeError> {
        if input.duration_seconds > self.max_input_seconds as f64 {
            return Err(TranscodeError::LimitExceeded(format!(
                "input lasts {:.0} s; the limit is {} s",
                input.duration_seconds, self.max_input_seconds
            )));
        }
        if input.width as u64 * input.height as u64 > self.max_input_pixels {
            return Err(TranscodeError::LimitExceeded(format!(
                "input frames are {}x{}; the limit is {} pixels",
                input.width, input.height, self.max_input_pixels
            )));
        }
        Ok(())
    }
}

/// Demuxers an input may be read with, nested ones included (ffmpeg hands
/// the list down to sub-demuxers, such as the subtitles inside an AVI that
/// once carried an HLS playlist).
pub const FORMAT_WHITELIST: &str = "mov,matroska,avi,mpegts,mpeg,flv,ogg,asf";

/// Input options: local files only, the demuxer forced from the sniffed
/// container, and no other demuxer anywhere below it.
pub(crate) fn input_restrictions(demuxer: &str) -> Vec<String> {
    ["-protocol_whitelist", "file", "-format_whitelist", FORMAT_WHITELIST, "-f", demuxer]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Input options for a local file: [`input_restrictions`] for a demuxer
/// forced from the sniffed container, else local files only (a file the
/// service wrote itself).
pub(crate) fn local_input(demuxer: Option<&str>) -> Vec<String> {
    match demuxer {
        Some(d) => input_restrictions(d),
        None => vec!["-protocol_whitelist".into(), "file".into()],
    }
}

/// Drops ffmpeg's `[level]` prefix and any local path from a log line.
fn tidy(line: &str) -> String {
    let line = line.trim();
    let line = line.strip_prefix('[').and_then(|l| l.split_once("] ")).map(|(_, rest)| rest).unwrap_or(line);
    line.to_string()
}

fn last_line(stderr: &str, path: &Path) -> String {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("unknown error");
    tidy(&line.replace(&path.display().to_string(), "input"))
}

/// A private working folder for one job, removed when dropped.
pub fn scratch_dir(base: &Path) -> std::io::Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("transcoder-job-");
    if base.as_os_str().is_empty() {
        b.tempdir()
    } else {
        std::fs::create_dir_all(base)?;
        b.tempdir_in(base)
    }
}

pub fn output_path(scratch: &Path, format: OutputFormat) -> PathBuf {
    scratch.join(format!("output.{}", format.extension()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_jobs_code_is_one_of_the_table() {
        use super::TranscodeError as E;
        let all = [
            E::InvalidMedia(String::new()),
            E::LimitExceeded(String::new()),
            E::Stalled(1),
            E::TimedOut(1),
            E::Resources(String::new()),
            E::Internal(String::new()),
        ];
        // Transient ones are retried; a job ends with them only as
        // resources-exhausted or too-many-attempts.
        for e in all.iter().filter(|e| !e.is_transient() || matches!(e, E::Resources(_))) {
            assert!(crate::codes::JOB_ERRORS.contains(&e.code()), "{} is not in codes::JOB_ERRORS", e.code());
        }
        assert!(crate::codes::JOB_ERRORS.contains(&"too-many-attempts"));
    }

    #[test]
    fn a_signal_or_a_full_disk_is_the_machine_and_anything_else_the_input() {
        use std::os::unix::process::ExitStatusExt;
        let killed = super::classify_failure(std::process::ExitStatus::from_raw(9), &[]);
        assert_eq!(killed.code(), "resources-exhausted");
        assert!(killed.is_transient() && killed.to_string().contains("signal 9"), "{killed}");
        let exit_1 = std::process::ExitStatus::from_raw(1 << 8);
        let full =
            ["Error writing trailer of out.mp4: No space left on device".to_string(), "Conversion failed!".into()];
        assert_eq!(super::classify_failure(exit_1, &full).code(), "resources-exhausted");
        let bad = ["moov atom not found".to_string(), "Invalid data found when processing input".into()];
        let media = super::classify_failure(exit_1, &bad);
        assert_eq!(media.code(), "invalid-media");
        assert!(!media.is_transient() && media.to_string().contains("Invalid data"), "{media}");
    }

    use super::*;

    #[test]
    fn parses_clock_times() {
        assert_eq!(parse_clock("00:01:02.50"), Some(62.5));
        assert_eq!(parse_clock("N/A"), None);
    }

    #[test]
    fn reads_real_ffprobe_output() {
        let info = parse_probe(include_bytes!("../../tests/fixtures/probe_h264_aac.json")).unwrap();
        assert_eq!(info.video_codec, "h264");
        assert_eq!(info.audio_codec.as_deref(), Some("aac"));
        assert_eq!((info.width, info.height), (320, 240));
        assert!((info.duration_seconds - 2.0).abs() < 0.1);
    }

    #[test]
    fn dolby_vision_side_data_is_read_as_hdr() {
        let json = br#"{"streams":[{"codec_type":"video","codec_name":"hevc","width":1920,"height":1080,
            "color_primaries":"bt2020","color_space":"bt2020nc","color_range":"tv",
            "side_data_list":[{"side_data_type":"DOVI configuration record"}]}],"format":{"duration":"3.0"}}"#;
        let info = parse_probe(json).unwrap();
        assert!(info.color.hdr, "{:?}", info.color);
        assert_eq!(info.color.transfer, None);
    }

    #[test]
    fn a_file_without_video_is_invalid_media() {
        let json = br#"{"streams":[{"codec_type":"audio","codec_name":"mp3"}],"format":{"duration":"3.0"}}"#;
        let err = parse_probe(json).unwrap_err();
        assert_eq!(err.code(), "invalid-media");
        assert_eq!(err.to_string(), "input has no decodable video stream");
    }

    #[test]
    fn packets_give_keyframes_size_and_end() {
        let csv = "0.000000,K_\n0.080000,__\n0.040000,__\n10.000000,K_\n10.040000,__,\n640,360,1/12800\n";
        let p = parse_video_packets(csv).unwrap();
        assert_eq!(p.keyframes, vec![0.0, 10.0]);
        assert_eq!((p.width, p.height, p.times.len(), p.ticks_per_second), (640, 360, 5, Some(12800.0)));
        assert!((p.end() - 10.08).abs() < 1e-9);
        assert!(parse_video_packets("0.0,K_\n").is_none(), "no stream size");
    }

    #[test]
    fn tidies_ffmpeg_log_lines() {
        assert_eq!(tidy("[error] moov atom not found"), "moov atom not found");
    }
}
