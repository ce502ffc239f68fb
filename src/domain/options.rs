use serde::{Deserialize, Serialize};

/// Output presets: `mp4` = H.264/AAC, `webm` = VP9/Opus, and the adaptive
/// streaming packages `hls` and `dash` (H.264/AAC renditions in CMAF
/// segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Format)]
pub enum OutputFormat {
    /// H.264/AAC in MP4 with faststart.
    Mp4,
    /// VP9/Opus in WebM.
    Webm,
    /// HLS: `master.m3u8`, a VOD playlist per rendition, fMP4 segments.
    Hls,
    /// MPEG-DASH: `manifest.mpd`, fMP4 segments.
    Dash,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 4] = [OutputFormat::Mp4, OutputFormat::Webm, OutputFormat::Hls, OutputFormat::Dash];

    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Mp4 => "mp4",
            OutputFormat::Webm => "webm",
            OutputFormat::Hls => "hls",
            OutputFormat::Dash => "dash",
        }
    }

    /// The extension of a single-file result (a package's is its manifest's).
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Mp4 => "mp4",
            OutputFormat::Webm => "webm",
            OutputFormat::Hls => "m3u8",
            OutputFormat::Dash => "mpd",
        }
    }

    /// The content type of the result, or of a package's manifest.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Mp4 => "video/mp4",
            OutputFormat::Webm => "video/webm",
            OutputFormat::Hls => "application/vnd.apple.mpegurl",
            OutputFormat::Dash => "application/dash+xml",
        }
    }

    /// A package's manifest: the file players start from.
    pub fn manifest(self) -> Option<&'static str> {
        match self {
            OutputFormat::Hls => Some("master.m3u8"),
            OutputFormat::Dash => Some("manifest.mpd"),
            OutputFormat::Mp4 | OutputFormat::Webm => None,
        }
    }

    /// A folder of files (manifest, playlists, segments), not one file.
    pub fn is_package(self) -> bool {
        self.manifest().is_some()
    }
}

/// The rungs a ladder is made of (heights), highest first.
pub const RUNGS: [u32; 7] = [2160, 1440, 1080, 720, 480, 360, 240];

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    pub format: OutputFormat,
    pub height: Option<u32>,
    pub priority: u8,
    /// Heights of a package's renditions (rungs of [`RUNGS`], highest
    /// first); `None` = the default ladder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renditions: Option<Vec<u32>>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions { format: OutputFormat::Mp4, height: None, priority: 5, renditions: None }
    }
}

/// A rejected option: `unparseable` ones are 400, the others 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub unparseable: bool,
    pub message: String,
}

pub const MIN_HEIGHT: u32 = 16;
pub const MAX_HEIGHT: u32 = 4320;

impl JobOptions {
    /// Applies one `name=value` option (query parameter or multipart field).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), OptionError> {
        let invalid = |message: String| OptionError { unparseable: false, message };
        let unparseable = |message: String| OptionError { unparseable: true, message };
        match name {
            "format" => {
                self.format = OutputFormat::ALL.into_iter().find(|f| f.as_str() == value).ok_or_else(|| {
                    invalid(format!("format {value:?} is not supported; use \"mp4\", \"webm\", \"hls\" or \"dash\""))
                })?
            }
            "renditions" => {
                let mut heights = Vec::new();
                for item in value.split(',').map(str::trim) {
                    let h: u32 =
                        item.parse().map_err(|_| unparseable(format!("renditions: {item:?} is not a whole number")))?;
                    if !RUNGS.contains(&h) {
                        return Err(invalid(format!("renditions: {h} is not a rung of the ladder ({RUNGS:?})")));
                    }
                    if heights.contains(&h) {
                        return Err(invalid(format!("renditions: {h} is listed twice")));
                    }
                    heights.push(h);
                }
                heights.sort_unstable_by(|a, b| b.cmp(a));
                self.renditions = Some(heights);
            }
            "height" => {
                let h: u32 =
                    value.parse().map_err(|_| unparseable(format!("height {value:?} is not a whole number")))?;
                if !(MIN_HEIGHT..=MAX_HEIGHT).contains(&h) || h % 2 != 0 {
                    return Err(invalid(format!(
                        "height must be an even number from {MIN_HEIGHT} to {MAX_HEIGHT}, got {h}"
                    )));
                }
                self.height = Some(h);
            }
            "priority" => {
                let p: i64 =
                    value.parse().map_err(|_| unparseable(format!("priority {value:?} is not a whole number")))?;
                if !(0..=9).contains(&p) {
                    return Err(invalid(format!("priority must be from 0 to 9, got {p}")));
                }
                self.priority = p as u8;
            }
            other => {
                return Err(invalid(format!(
                    "unknown option {other:?}; the options are format, height, priority and renditions"
                )))
            }
        }
        Ok(())
    }

    /// The options together, once all are set: `renditions` belongs to the
    /// packages, `height` to the single files.
    pub fn check(&self) -> Result<(), OptionError> {
        let invalid = |message: &str| Err(OptionError { unparseable: false, message: message.into() });
        match (self.format.is_package(), self.height, &self.renditions) {
            (true, Some(_), _) => invalid("height applies to mp4 and webm; a package's heights are its renditions"),
            (false, _, Some(_)) => invalid("renditions apply to the hls and dash formats"),
            _ => Ok(()),
        }
    }
}

/// An input container recognised from its first bytes. The worker forces the
/// matching demuxer, so a file is never read as anything else (an HLS
/// playlist named `.mp4`, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Container {
    Mp4,
    Quicktime,
    Matroska,
    Webm,
    Avi,
    MpegTs,
    MpegPs,
    Flv,
    Ogg,
    Asf,
}

impl Container {
    pub const ALL: [Container; 10] = [
        Container::Mp4,
        Container::Quicktime,
        Container::Matroska,
        Container::Webm,
        Container::Avi,
        Container::MpegTs,
        Container::MpegPs,
        Container::Flv,
        Container::Ogg,
        Container::Asf,
    ];

    /// The ffmpeg demuxer that reads this container.
    pub fn demuxer(self) -> &'static str {
        match self {
            Container::Mp4 | Container::Quicktime => "mov",
            Container::Matroska | Container::Webm => "matroska",
            Container::Avi => "avi",
            Container::MpegTs => "mpegts",
            Container::MpegPs => "mpeg",
            Container::Flv => "flv",
            Container::Ogg => "ogg",
            Container::Asf => "asf",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Container::Mp4 => "video/mp4",
            Container::Quicktime => "video/quicktime",
            Container::Matroska => "video/x-matroska",
            Container::Webm => "video/webm",
            Container::Avi => "video/x-msvideo",
            Container::MpegTs => "video/mp2t",
            Container::MpegPs => "video/mpeg",
            Container::Flv => "video/x-flv",
            Container::Ogg => "video/ogg",
            Container::Asf => "video/x-ms-asf",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_reject_with_the_right_class() {
        let mut o = JobOptions::default();
        o.set("format", "webm").unwrap();
        o.set("height", "360").unwrap();
        o.set("priority", "9").unwrap();
        assert_eq!(o, JobOptions { format: OutputFormat::Webm, height: Some(360), priority: 9, renditions: None });
        assert!(o.check().is_ok());
        o.set("renditions", "360,720").unwrap();
        assert!(o.check().is_err(), "renditions with webm");
        o.set("format", "hls").unwrap();
        assert!(o.check().is_err(), "height with hls");
        o.height = None;
        assert!(o.check().is_ok());
        assert_eq!(o.renditions, Some(vec![720, 360]));
        assert!(!o.set("renditions", "720,720").unwrap_err().unparseable);
        assert!(!o.set("renditions", "700").unwrap_err().unparseable);
        assert!(o.set("renditions", "720,x").unwrap_err().unparseable);
        o.set("format", "dash").unwrap();

        let e = o.set("priority", "10").unwrap_err();
        assert!(!e.unparseable);
        let e = o.set("priority", "high").unwrap_err();
        assert!(e.unparseable);
        assert!(!o.set("height", "361").unwrap_err().unparseable);
        assert!(!o.set("height", "8").unwrap_err().unparseable);
        assert!(o.set("height", "1e3").unwrap_err().unparseable);
        assert!(!o.set("format", "gif").unwrap_err().unparseable);
        assert!(!o.set("colour", "red").unwrap_err().unparseable);
    }
}
