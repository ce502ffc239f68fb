use serde::{Deserialize, Serialize};

/// Output presets: `mp4` = H.264/AAC, `webm` = VP9/Opus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Format)]
pub enum OutputFormat {
    /// H.264/AAC in MP4 with faststart.
    Mp4,
    /// VP9/Opus in WebM.
    Webm,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 2] = [OutputFormat::Mp4, OutputFormat::Webm];

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Mp4 => "mp4",
            OutputFormat::Webm => "webm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Mp4 => "video/mp4",
            OutputFormat::Webm => "video/webm",
        }
    }
}

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    pub format: OutputFormat,
    pub height: Option<u32>,
    pub priority: u8,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions { format: OutputFormat::Mp4, height: None, priority: 5 }
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
                self.format = match value {
                    "mp4" => OutputFormat::Mp4,
                    "webm" => OutputFormat::Webm,
                    other => {
                        return Err(invalid(format!("format {other:?} is not supported; use \"mp4\" or \"webm\"")))
                    }
                }
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
                return Err(invalid(format!("unknown option {other:?}; the options are format, height and priority")))
            }
        }
        Ok(())
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
        assert_eq!(o, JobOptions { format: OutputFormat::Webm, height: Some(360), priority: 9 });

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
