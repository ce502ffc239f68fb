//! What the status document tells about the media and the job's pieces:
//! the input as received, the output as ffprobe reads it, colour, the
//! failure, the links. Each type is also its own OpenAPI schema.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use super::{JobId, OutputFormat};

/// Pieces of a split job (a long input encoded by many workers at once):
/// `total` pieces, `done` of them stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Segments {
    #[schema(minimum = 1)]
    pub total: u32,
    #[schema(minimum = 0)]
    pub done: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = Input)]
pub struct InputInfo {
    /// The client's file name (multipart `filename` or Content-Disposition), for display only.
    #[schema(required = true, max_length = 255)]
    pub filename: Option<String>,
    #[schema(minimum = 1)]
    pub size_bytes: u64,
    /// Sniffed from the first bytes of the upload.
    #[schema(schema_with = schema::input_content_type)]
    pub content_type: String,
    /// The input's colour, once a worker has probed it; `null` before.
    #[serde(default)]
    #[schema(required = true)]
    pub color: Option<Color>,
}

/// A video stream's colour as ffprobe names it; `null` where the stream
/// does not say.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Color {
    /// `color_primaries`, e.g. `bt709`, `bt2020`.
    #[schema(required = true)]
    pub primaries: Option<String>,
    /// `color_transfer`, e.g. `bt709`, `smpte2084` (PQ), `arib-std-b67` (HLG).
    #[schema(required = true)]
    pub transfer: Option<String>,
    /// `color_space`, e.g. `bt709`, `smpte170m`, `bt2020nc`.
    #[schema(required = true)]
    pub matrix: Option<String>,
    /// `color_range`: `tv` (limited) or `pc` (full).
    #[schema(required = true)]
    pub range: Option<String>,
    /// A PQ or HLG transfer, or Dolby Vision.
    pub hdr: bool,
}

/// The result, as ffprobe reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = Output)]
pub struct OutputInfo {
    pub format: OutputFormat,
    #[schema(schema_with = schema::output_content_type)]
    pub content_type: String,
    #[schema(minimum = 0)]
    pub size_bytes: u64,
    #[schema(minimum = 0)]
    pub duration_seconds: f64,
    #[schema(minimum = 1)]
    pub width: u32,
    #[schema(minimum = 1)]
    pub height: u32,
    #[schema(examples("h264", "vp9"))]
    pub video_codec: String,
    /// `null` when the output has no audio.
    #[schema(required = true, examples("aac", "opus"))]
    pub audio_codec: Option<String>,
    /// The colour the output really has, read back from it (SDR BT.709,
    /// limited range, 8-bit 4:2:0); `null` only for jobs finished before
    /// colour was recorded.
    #[serde(default)]
    #[schema(required = true)]
    pub color: Option<Color>,
    /// A package's manifest (`master.m3u8`, `manifest.mpd`), the file players
    /// start from; absent for a single file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(examples("master.m3u8", "manifest.mpd"))]
    pub manifest: Option<String>,
    /// A package's renditions, highest first; absent for a single file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renditions: Option<Vec<Rendition>>,
}

/// One rendition of a package, as measured from its segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Rendition {
    /// `720p`: its playlist is `720p.m3u8` (HLS).
    #[schema(examples("720p"))]
    pub name: String,
    #[schema(minimum = 1)]
    pub width: u32,
    #[schema(minimum = 1)]
    pub height: u32,
    /// Bits per second of its fullest segment.
    #[schema(minimum = 0)]
    pub bandwidth: u64,
    /// Bits per second over the whole rendition.
    #[schema(minimum = 0)]
    pub average_bandwidth: u64,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    #[schema(minimum = 0)]
    pub frame_rate: f64,
}

/// Why a job failed: a stable `code` and a message for the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = JobError)]
pub struct ErrorInfo {
    #[schema(schema_with = schema::job_error_code)]
    pub code: String,
    #[schema(min_length = 1)]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    #[schema(schema_with = schema::status_link)]
    pub self_: String,
    #[schema(schema_with = schema::download_link)]
    pub download: String,
    /// A done job's result for players, under a signed, expiring playback
    /// token (no API key needed); `null` before the job is done.
    #[serde(default)]
    #[schema(required = true, schema_with = schema::play_link)]
    pub play: Option<String>,
    /// A done job's poster (`poster.jpg`) under the same token; `null` before.
    #[serde(default)]
    #[schema(required = true, schema_with = schema::play_link)]
    pub poster: Option<String>,
    /// A done job's storyboard cues (`storyboard.vtt`, WebVTT cues into the
    /// sprite `storyboard.jpg` beside it) under the same token; `null` before.
    #[serde(default)]
    #[schema(required = true, schema_with = schema::play_link)]
    pub storyboard: Option<String>,
}

impl Links {
    pub fn for_job(id: JobId) -> Links {
        Links {
            self_: format!("/video/status/{id}"),
            download: format!("/video/download/{id}"),
            play: None,
            poster: None,
            storyboard: None,
        }
    }
}
