//! What ffprobe (and ffmpeg's `idet`) say of a file.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::child::{self, Failed, Output};
use super::{color, input_restrictions, last_line, TranscodeError, PROBE_TIMEOUT};
use crate::domain::Color;

/// What ffprobe says of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub duration_seconds: f64,
    pub width: u32,
    pub height: u32,
    pub video_codec: String,
    pub audio_codec: Option<String>,
    /// The first audio stream's sample rate.
    pub audio_sample_rate: Option<u32>,
    /// Where the input's timeline starts (what `-ss` counts from).
    pub start_seconds: f64,
    /// The video stream's colour.
    pub color: Color,
    /// ffprobe's `field_order` (`progressive`, `tt`, …), when known.
    pub field_order: Option<String>,
    /// The video's average frame rate, when known.
    pub frame_rate: Option<f64>,
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
    sample_rate: Option<String>,
    avg_frame_rate: Option<String>,
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
        audio_sample_rate: audio.and_then(|a| a.sample_rate.as_deref()).and_then(|r| r.parse().ok()),
        color: Color::from_probe(
            video.color_primaries.as_deref(),
            video.color_transfer.as_deref(),
            video.color_space.as_deref(),
            video.color_range.as_deref(),
            video.side_data_list.iter().any(|d| d.side_data_type.as_deref().is_some_and(|t| t.contains("DOVI"))),
        ),
        field_order: video.field_order.clone(),
        frame_rate: video.avg_frame_rate.as_deref().and_then(rational).filter(|r| *r > 0.0),
        start_seconds: out
            .format
            .as_ref()
            .and_then(|f| f.start_time.as_deref())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite())
            .unwrap_or(0.0),
    })
}

/// `num/den` (ffprobe's form of a rate).
fn rational(value: &str) -> Option<f64> {
    let (n, d) = value.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d != 0.0).then(|| n / d)
}

/// ffprobe on a local file, with the demuxer forced when given.
fn ffprobe(path: &Path, demuxer: Option<&str>, query: &[&str]) -> Command {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]).args(super::local_input(demuxer)).args(query).arg(path);
    cmd
}

/// Runs a short ffprobe or ffmpeg query (a supervised child within
/// [`PROBE_TIMEOUT`]); `what` names it in the time-out message.
async fn query(cmd: &mut Command, what: &str) -> Result<Output, TranscodeError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    child::output(cmd, PROBE_TIMEOUT).await.map_err(|e| match e {
        Failed::TimedOut => TranscodeError::InvalidMedia(format!("reading the input's {what} took too long")),
        Failed::Start(e) => TranscodeError::Internal(format!("could not run {program}: {e}")),
    })
}

/// Runs an ffprobe query; its standard output, or why it failed.
async fn run_ffprobe(path: &Path, demuxer: Option<&str>, query_args: &[&str]) -> Result<Vec<u8>, TranscodeError> {
    let output = query(&mut ffprobe(path, demuxer, query_args), "header").await?;
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

/// What an output ffmpeg wrote is: from its MP4 boxes when it is one the
/// in-process reader knows, else from ffprobe.
pub async fn describe_output(path: &Path) -> Result<MediaInfo, TranscodeError> {
    let file = path.to_path_buf();
    match tokio::task::spawn_blocking(move || super::mp4::describe(&file)).await.ok().flatten() {
        Some(info) => Ok(info),
        None => probe(path, None).await,
    }
}

/// A video stream read from its packets (no decoding): every presentation
/// time in order, the keyframes' times, and the frame size.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPackets {
    pub times: Vec<f64>,
    pub keyframes: Vec<f64>,
    pub width: u32,
    pub height: u32,
    /// Ticks per second of the stream's time base, when known.
    pub ticks_per_second: Option<f64>,
}

impl VideoPackets {
    /// Where the video ends: its last frame's time plus one frame.
    pub fn end(&self) -> f64 {
        match self.times.as_slice() {
            [.., a, b] => b + (b - a),
            [a] => *a,
            [] => 0.0,
        }
    }
}

/// Parses `packet=pts_time,flags:stream=width,height,time_base` in
/// ffprobe's CSV.
pub fn parse_video_packets(csv: &str) -> Option<VideoPackets> {
    let (mut times, mut keyframes, mut size, mut ticks_per_second) = (Vec::new(), Vec::new(), None, None);
    for line in csv.lines() {
        let mut fields = line.trim().trim_end_matches(',').split(',');
        let (Some(a), Some(b)) = (fields.next(), fields.next()) else { continue };
        match (a.parse::<u32>(), b.parse::<u32>()) {
            (Ok(w), Ok(h)) => {
                size = Some((w, h));
                ticks_per_second = fields.next().and_then(rational).filter(|t| *t > 0.0).map(|t| 1.0 / t);
            }
            _ => {
                let Ok(t) = a.parse::<f64>() else { continue };
                times.push(t);
                if b.starts_with('K') {
                    keyframes.push(t);
                }
            }
        }
    }
    let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.total_cmp(b));
    sort(&mut times);
    sort(&mut keyframes);
    let (width, height) = size?;
    Some(VideoPackets { times, keyframes, width, height, ticks_per_second })
}

/// The packets of a file's first video stream.
pub async fn video_packets(path: &Path, demuxer: Option<&str>) -> Result<VideoPackets, TranscodeError> {
    if demuxer.is_none_or(|d| d == "mov") {
        if let Some(packets) = mp4_packets(path).await.filter(|p| !p.keyframes.is_empty()) {
            return Ok(packets);
        }
    }
    let query = [
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,flags:stream=width,height,time_base",
        "-of",
        "csv=p=0",
    ];
    let out = run_ffprobe(path, demuxer, &query).await?;
    parse_video_packets(&String::from_utf8_lossy(&out))
        .filter(|p| !p.keyframes.is_empty())
        .ok_or_else(|| TranscodeError::InvalidMedia("no video keyframes could be read".into()))
}

/// Whether the input is interlaced: its scan flag when that says
/// progressive, else `idet` over its first frames (which confirms an
/// interlaced flag, or decides a missing one).
pub async fn interlaced(path: &Path, demuxer: &str, info: &MediaInfo, threads: u32) -> Result<bool, TranscodeError> {
    let flagged = color::flagged_interlaced(info.field_order.as_deref());
    if flagged == Some(false) || (flagged.is_none() && !color::may_carry_fields(&info.video_codec)) {
        return Ok(false);
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "info"]);
    if threads > 0 {
        cmd.args(["-threads", &threads.to_string()]);
    }
    cmd.args(input_restrictions(demuxer)).arg("-i").arg(path).args([
        "-map",
        "0:v:0",
        "-frames:v",
        "100",
        "-vf",
        "idet",
        "-an",
        "-f",
        "null",
        "-",
    ]);
    let output = query(&mut cmd, "first frames").await?;
    let verdict = color::parse_idet(&String::from_utf8_lossy(&output.stderr));
    Ok(verdict.or(flagged).unwrap_or(false))
}

/// Video frames in a file we wrote (a piece), counted from its packets.
pub async fn count_frames(path: &Path) -> Result<u64, TranscodeError> {
    if let Some(packets) = mp4_packets(path).await {
        return Ok(packets.times.len() as u64);
    }
    let query =
        ["-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"];
    let out = run_ffprobe(path, None, &query).await?;
    String::from_utf8_lossy(&out)
        .trim()
        .trim_end_matches(',')
        .parse()
        .map_err(|_| TranscodeError::Internal("ffprobe gave no packet count".into()))
}

/// The video packets of an MP4 from its sample tables (see [`super::mp4`]),
/// when it is one the reader understands.
async fn mp4_packets(path: &Path) -> Option<VideoPackets> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || super::mp4::video_packets(&path)).await.ok().flatten()
}
