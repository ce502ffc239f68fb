//! ffmpeg and ffprobe: arguments, limits, progress and errors.
//!
//! ffmpeg runs through ffmpeg-sidecar on a blocking thread (its event
//! iterator blocks), in its own process group with a minimal environment,
//! reading only a local file through a forced demuxer. It is killed on a
//! stall, at the wall-clock limit, on cancellation, and by the kernel if the
//! thread that started it goes away.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::picture as color;
use crate::domain::{Color, OutputFormat};

mod args;
pub use args::{audio_args, concat_list, ffmpeg_args, join_args, piece_args, whole_args, Media};

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

/// What ffmpeg's last error lines say when the machine, not the input, is
/// at fault (the `strerror` texts of ENOSPC, ENOMEM, EDQUOT, EMFILE, EAGAIN).
const RESOURCE_ERRORS: [&str; 6] = [
    "No space left on device",
    "Cannot allocate memory",
    "Disk quota exceeded",
    "Too many open files",
    "Resource temporarily unavailable",
    "File too large",
];

/// Why an ffmpeg that ended with `status` failed: killed by a signal (the
/// OOM killer, an operator) or short of a resource is transient; anything
/// else is the input's fault.
pub fn classify_failure(status: std::process::ExitStatus, errors: &[String]) -> TranscodeError {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        return TranscodeError::Resources(format!("ffmpeg was killed by signal {signal}"));
    }
    let resource = errors.iter().rev().find(|line| RESOURCE_ERRORS.iter().any(|r| line.contains(r)));
    if let Some(line) = resource {
        return TranscodeError::Resources(format!("ffmpeg ran short of resources: {}", tidy(line)));
    }
    let reason = errors.last().cloned().unwrap_or_else(|| format!("ffmpeg exited with {status}"));
    TranscodeError::InvalidMedia(format!("the input could not be transcoded: {}", tidy(&reason)))
}

/// What ffprobe says of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub duration_seconds: f64,
    pub width: u32,
    pub height: u32,
    pub video_codec: String,
    pub audio_codec: Option<String>,
    /// Where the input's timeline starts (what `-ss` counts from).
    pub start_seconds: f64,
    /// The video stream's colour.
    pub color: Color,
    /// ffprobe's `field_order` (`progressive`, `tt`, …), when known.
    pub field_order: Option<String>,
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
    color_primaries: Option<String>,
    color_transfer: Option<String>,
    color_space: Option<String>,
    color_range: Option<String>,
    field_order: Option<String>,
    #[serde(default)]
    side_data_list: Vec<ProbeSideData>,
}

#[derive(Deserialize)]
struct ProbeSideData {
    side_data_type: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
    start_time: Option<String>,
}

/// Parses ffprobe's JSON into [`MediaInfo`]; pure, so it is unit-tested on
/// real ffprobe output.
pub fn parse_probe(json: &[u8]) -> Result<MediaInfo, TranscodeError> {
    let out: ProbeOutput = serde_json::from_slice(json)
        .map_err(|_| TranscodeError::InvalidMedia("the input could not be read as a video".into()))?;
    let video = out
        .streams
        .iter()
        .find(|s| {
            s.codec_type.as_deref() == Some("video")
                && s.disposition.get("attached_pic").copied().unwrap_or(0) == 0
                && s.codec_name.is_some()
                && s.width.unwrap_or(0) > 0
                && s.height.unwrap_or(0) > 0
        })
        .ok_or_else(|| TranscodeError::InvalidMedia("input has no decodable video stream".into()))?;
    let audio = out.streams.iter().find(|s| s.codec_type.as_deref() == Some("audio"));
    let duration = out
        .format
        .as_ref()
        .and_then(|f| f.duration.as_deref())
        .or(video.duration.as_deref())
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| TranscodeError::InvalidMedia("input has no known duration".into()))?;
    Ok(MediaInfo {
        duration_seconds: duration,
        width: video.width.unwrap_or(0),
        height: video.height.unwrap_or(0),
        video_codec: video.codec_name.clone().unwrap_or_default(),
        audio_codec: audio.and_then(|a| a.codec_name.clone()),
        color: Color::from_probe(
            video.color_primaries.as_deref(),
            video.color_transfer.as_deref(),
            video.color_space.as_deref(),
            video.color_range.as_deref(),
            video.side_data_list.iter().any(|d| d.side_data_type.as_deref().is_some_and(|t| t.contains("DOVI"))),
        ),
        field_order: video.field_order.clone(),
        start_seconds: out
            .format
            .as_ref()
            .and_then(|f| f.start_time.as_deref())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite())
            .unwrap_or(0.0),
    })
}

/// ffprobe on a local file, with the demuxer forced when given.
fn ffprobe(path: &Path, demuxer: Option<&str>, query: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ffprobe");
    cmd.env_clear()
        .env("PATH", CHILD_PATH)
        .args(["-v", "error"])
        .args(match demuxer {
            Some(d) => input_restrictions(d),
            None => vec!["-protocol_whitelist".into(), "file".into()],
        })
        .args(query)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs an ffprobe query; its standard output, or why it failed.
async fn run_ffprobe(path: &Path, demuxer: Option<&str>, query: &[&str]) -> Result<Vec<u8>, TranscodeError> {
    let output = tokio::time::timeout(PROBE_TIMEOUT, ffprobe(path, demuxer, query).output())
        .await
        .map_err(|_| TranscodeError::InvalidMedia("reading the input's header took too long".into()))?
        .map_err(|e| TranscodeError::Internal(format!("could not run ffprobe: {e}")))?;
    if !output.status.success() {
        let reason = last_line(&String::from_utf8_lossy(&output.stderr), path);
        return Err(TranscodeError::InvalidMedia(format!("the input could not be read as a video: {reason}")));
    }
    Ok(output.stdout)
}

/// Runs ffprobe on a local file, with the demuxer forced when given.
pub async fn probe(path: &Path, demuxer: Option<&str>) -> Result<MediaInfo, TranscodeError> {
    let json = run_ffprobe(path, demuxer, &["-print_format", "json", "-show_format", "-show_streams"]).await?;
    parse_probe(&json)
}

/// The presentation times (seconds) of the first video stream's frames,
/// read from its packets (no decoding), in presentation order.
pub async fn frame_times(path: &Path, demuxer: &str) -> Result<Vec<f64>, TranscodeError> {
    let query = ["-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "csv=p=0"];
    let out = run_ffprobe(path, Some(demuxer), &query).await?;
    let mut times: Vec<f64> =
        String::from_utf8_lossy(&out).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if times.is_empty() {
        return Err(TranscodeError::InvalidMedia("input has no video frames".into()));
    }
    Ok(times)
}

/// Whether the input is interlaced: its scan flag when that says
/// progressive, else `idet` over its first frames (which confirms an
/// interlaced flag, or decides a missing one).
pub async fn interlaced(path: &Path, demuxer: &str, info: &MediaInfo, threads: u32) -> Result<bool, TranscodeError> {
    let flagged = color::flagged_interlaced(info.field_order.as_deref());
    if flagged == Some(false) || (flagged.is_none() && !color::may_carry_fields(&info.video_codec)) {
        return Ok(false);
    }
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.env_clear().env("PATH", CHILD_PATH).args(["-hide_banner", "-nostdin", "-loglevel", "info"]);
    if threads > 0 {
        cmd.args(["-threads", &threads.to_string()]);
    }
    cmd.args(input_restrictions(demuxer))
        .arg("-i")
        .arg(path)
        .args(["-map", "0:v:0", "-frames:v", "100", "-vf", "idet", "-an", "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PROBE_TIMEOUT, cmd.output())
        .await
        .map_err(|_| TranscodeError::InvalidMedia("reading the input's first frames took too long".into()))?
        .map_err(|e| TranscodeError::Internal(format!("could not run ffmpeg: {e}")))?;
    let verdict = color::parse_idet(&String::from_utf8_lossy(&output.stderr));
    Ok(verdict.or(flagged).unwrap_or(false))
}

/// Video frames in a file we wrote (a piece), counted from its packets.
pub async fn count_frames(path: &Path) -> Result<u64, TranscodeError> {
    let query =
        ["-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"];
    let out = run_ffprobe(path, None, &query).await?;
    String::from_utf8_lossy(&out)
        .trim()
        .trim_end_matches(',')
        .parse()
        .map_err(|_| TranscodeError::Internal("ffprobe gave no packet count".into()))
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

/// Progress as ffmpeg reports it.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Seconds of output encoded so far.
    pub encoded_seconds: f64,
    /// Encoding speed as a multiple of real time.
    pub speed: f32,
}

enum Report {
    Started(u32),
    Progress(Progress),
}

/// Runs ffmpeg with `args` until it ends, calling `on_progress` for each
/// progress line. Stops it on a stall, at the time limit or on `cancel`.
pub async fn run_ffmpeg(
    args: Vec<String>,
    scratch: &Path,
    limits: Limits,
    cancel: CancellationToken,
    mut on_progress: impl FnMut(Progress),
) -> Result<(), TranscodeError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    let scratch_owned = scratch.to_path_buf();
    let worker = tokio::task::spawn_blocking(move || run_blocking(args, &scratch_owned, tx));

    let hard_deadline = Instant::now() + limits.timeout;
    let mut stall_deadline = Instant::now() + limits.stall;
    let mut pid: Option<u32> = None;
    let stop_reason = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Some(TranscodeError::Cancelled),
            _ = tokio::time::sleep_until(hard_deadline) => break Some(TranscodeError::TimedOut(limits.timeout.as_secs())),
            _ = tokio::time::sleep_until(stall_deadline) => break Some(TranscodeError::Stalled(limits.stall.as_secs())),
            report = rx.recv() => match report {
                Some(Report::Started(p)) => pid = Some(p),
                Some(Report::Progress(p)) => {
                    stall_deadline = Instant::now() + limits.stall;
                    on_progress(p);
                }
                None => break None,
            },
        }
    };
    if let Some(reason) = stop_reason {
        if let Some(pid) = pid {
            kill_group(pid);
        }
        // Reap it: the blocking thread ends once ffmpeg's pipes close.
        let _ = worker.await;
        return Err(reason);
    }
    let outcome = worker.await.map_err(|e| TranscodeError::Internal(format!("ffmpeg thread: {e}")))?;
    let scratch = scratch.display().to_string();
    outcome.map_err(|e| match e {
        TranscodeError::InvalidMedia(m) => TranscodeError::InvalidMedia(m.replace(&scratch, ".")),
        TranscodeError::Resources(m) => TranscodeError::Resources(m.replace(&scratch, ".")),
        other => other,
    })
}

fn run_blocking(args: Vec<String>, scratch: &Path, tx: mpsc::UnboundedSender<Report>) -> Result<(), TranscodeError> {
    let mut cmd = FfmpegCommand::new_with_path("ffmpeg");
    cmd.args(&args);
    configure_child(cmd.as_inner_mut(), scratch);
    let mut child = cmd.spawn().map_err(|e| TranscodeError::Internal(format!("could not start ffmpeg: {e}")))?;
    let _ = tx.send(Report::Started(child.as_inner().id()));
    let mut errors: VecDeque<String> = VecDeque::new();
    match child.iter() {
        Ok(events) => {
            for event in events {
                match event {
                    FfmpegEvent::Progress(p) => {
                        let report = Progress { encoded_seconds: parse_clock(&p.time).unwrap_or(0.0), speed: p.speed };
                        let _ = tx.send(Report::Progress(report));
                    }
                    FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line) | FfmpegEvent::Error(line) => {
                        if errors.len() == 4 {
                            errors.pop_front();
                        }
                        errors.push_back(line);
                    }
                    _ => {}
                }
            }
        }
        Err(e) => errors.push_back(e.to_string()),
    }
    let status = child.wait().map_err(|e| TranscodeError::Internal(format!("waiting for ffmpeg: {e}")))?;
    if status.success() {
        return Ok(());
    }
    Err(classify_failure(status, errors.make_contiguous()))
}

/// Own process group (so the whole tree can be killed), a minimal
/// environment, the job's folder as working directory, and death with the
/// thread that started it.
fn configure_child(cmd: &mut std::process::Command, scratch: &Path) {
    use std::os::unix::process::CommandExt;
    cmd.env_clear().env("PATH", CHILD_PATH).current_dir(scratch).process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn kill_group(pid: u32) {
    // SAFETY: plain syscall; a negative pid addresses the process group.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

/// `HH:MM:SS.cc` → seconds.
pub fn parse_clock(s: &str) -> Option<f64> {
    let mut total = 0.0;
    for part in s.trim().split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    (total >= 0.0).then_some(total)
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
    fn a_file_without_video_is_invalid_media() {
        let json = br#"{"streams":[{"codec_type":"audio","codec_name":"mp3"}],"format":{"duration":"3.0"}}"#;
        let err = parse_probe(json).unwrap_err();
        assert_eq!(err.code(), "invalid-media");
        assert_eq!(err.to_string(), "input has no decodable video stream");
    }

    #[test]
    fn tidies_ffmpeg_log_lines() {
        assert_eq!(tidy("[error] moov atom not found"), "moov atom not found");
    }
}
