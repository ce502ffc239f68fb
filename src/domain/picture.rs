//! Colour and scan, pure: what an input is (from the probe, and `idet`
//! where its scan flag is missing or says interlaced) and the picture chain
//! that makes every output 8-bit 4:2:0 SDR BT.709, tagged as such.
//!
//! - HDR (PQ `smpte2084`, HLG `arib-std-b67`, or Dolby Vision on either)
//!   is tone-mapped: linear light at a nominal peak of 100 cd/m², BT.709
//!   primaries, the `hable` operator without desaturation, then BT.709
//!   transfer and matrix, limited range ([`TONEMAP`]).
//! - SDR in another matrix (BT.601 `smpte170m`/`bt470bg`, an untagged SD
//!   input, which is taken as BT.601) or in full range is converted to the
//!   BT.709 matrix and limited range; BT.709 passes unchanged.
//! - Interlaced input is deinterlaced with `bwdif` before scaling, one
//!   frame per frame (1080i25 gives 25p); progressive input never is.

use serde::{Deserialize, Serialize};

use super::Color;

/// Above this many lines an untagged input is taken as HD (BT.709).
pub const SD_MAX_HEIGHT: u32 = 576;

/// An HDR transfer to tone-map from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hdr {
    Pq,
    Hlg,
}

/// What the picture needs on its way to the encoder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picture {
    pub deinterlace: bool,
    /// Tone-map from this HDR transfer (with the input's matrix).
    pub tonemap: Option<(Hdr, String)>,
    /// swscale's name of the input's matrix, when it is not BT.709.
    pub matrix_from: Option<String>,
    /// The input is full range.
    pub full_range: bool,
}

/// The tone-mapping chain after the transfer's linearisation (kept in one
/// place: the README documents it and the tests run it directly).
pub const TONEMAP: &str =
    "t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p";

/// The tags every output carries.
pub const OUTPUT_TAGS: [&str; 8] =
    ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv"];

impl Color {
    /// From ffprobe's stream fields; `dolby_vision` from its side data.
    pub fn from_probe(
        primaries: Option<&str>,
        transfer: Option<&str>,
        matrix: Option<&str>,
        range: Option<&str>,
        dolby_vision: bool,
    ) -> Color {
        let known = |v: Option<&str>| v.filter(|v| !v.is_empty() && *v != "unknown").map(String::from);
        let transfer = known(transfer);
        let hdr = dolby_vision || matches!(transfer.as_deref(), Some("smpte2084" | "arib-std-b67"));
        Color { primaries: known(primaries), transfer, matrix: known(matrix), range: known(range), hdr }
    }
}

impl Picture {
    /// The chain for an input of this colour, height and scan.
    pub fn for_input(color: &Color, height: u32, interlaced: bool) -> Picture {
        let hdr = match color.transfer.as_deref() {
            Some("smpte2084") => Some(Hdr::Pq),
            Some("arib-std-b67") => Some(Hdr::Hlg),
            // Dolby Vision without a PQ/HLG base layer signalled: its
            // profiles 8.1 and 8.4 are PQ and HLG; take PQ.
            _ if color.hdr => Some(Hdr::Pq),
            _ => None,
        };
        let matrix = color.matrix.clone();
        if let Some(hdr) = hdr {
            let zscale_matrix = match matrix.as_deref() {
                Some("bt2020c") => "2020_cl",
                Some("bt709") => "709",
                _ => "2020_ncl",
            };
            return Picture {
                deinterlace: interlaced,
                tonemap: Some((hdr, zscale_matrix.to_string())),
                matrix_from: None,
                full_range: color.range.as_deref() == Some("pc"),
            };
        }
        let matrix_from = match matrix.as_deref() {
            Some("bt709") => None,
            Some("smpte170m" | "bt470bg") => Some("bt601"),
            Some("bt2020nc" | "bt2020c") => Some("bt2020"),
            Some("smpte240m") => Some("smpte240m"),
            Some("fcc") => Some("fcc"),
            _ if height <= SD_MAX_HEIGHT => Some("bt601"),
            _ => None,
        };
        Picture {
            deinterlace: interlaced,
            tonemap: None,
            matrix_from: matrix_from.map(String::from),
            full_range: color.range.as_deref() == Some("pc"),
        }
    }

    /// The `-vf` chain around `scale` (e.g. `scale=-2:720`).
    pub fn filters(&self, scale: &str) -> String {
        let mut chain = Vec::new();
        if self.deinterlace {
            chain.push("bwdif=mode=send_frame:parity=auto:deint=all".to_string());
        }
        match &self.tonemap {
            Some((hdr, matrix)) => {
                chain.push(scale.to_string());
                let tin = match hdr {
                    Hdr::Pq => "smpte2084",
                    Hdr::Hlg => "arib-std-b67",
                };
                let rin = if self.full_range { "full" } else { "limited" };
                chain.push(format!("zscale=tin={tin}:min={matrix}:pin=2020:rin={rin}:{TONEMAP}"));
            }
            None => {
                let mut scale = scale.to_string();
                if let Some(from) = &self.matrix_from {
                    scale.push_str(&format!(":in_color_matrix={from}:out_color_matrix=bt709"));
                }
                if self.full_range {
                    scale.push_str(":in_range=pc:out_range=tv");
                }
                chain.push(scale);
            }
        }
        chain.join(",")
    }
}

/// What the container says of the scan: `Some(false)` progressive,
/// `Some(true)` interlaced, `None` unknown.
pub fn flagged_interlaced(field_order: Option<&str>) -> Option<bool> {
    match field_order {
        Some("progressive") => Some(false),
        Some("tt" | "bb" | "tb" | "bt") => Some(true),
        _ => None,
    }
}

/// Whether a codec carries interlaced video in practice, so that a missing
/// field order is worth checking with `idet` (which, on sharp synthetic
/// patterns in a progressive codec, reports combing that is not there).
pub fn may_carry_fields(codec: &str) -> bool {
    matches!(
        codec,
        "mpeg2video"
            | "mpeg1video"
            | "h264"
            | "hevc"
            | "vc1"
            | "wmv3"
            | "dvvideo"
            | "prores"
            | "dnxhd"
            | "mjpeg"
            | "rawvideo"
    )
}

/// `idet`'s verdict from its summary line
/// (`Multi frame detection: TFF: 40 BFF: 0 Progressive: 2 Undetermined: 8`):
/// `None` when it saw too little to tell.
pub fn parse_idet(log: &str) -> Option<bool> {
    let line = log.lines().rev().find(|l| l.contains("Multi frame detection:"))?;
    let count = |label: &str| -> u64 {
        line.split(label).nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let (tff, bff, progressive) = (count("TFF:"), count("BFF:"), count("Progressive:"));
    let interlaced = tff + bff;
    if interlaced + progressive < 5 {
        return None;
    }
    Some(interlaced > progressive * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn color(p: &str, t: &str, m: &str) -> Color {
        Color::from_probe(Some(p), Some(t), Some(m), Some("tv"), false)
    }

    #[test]
    fn pq_and_hlg_are_hdr_and_tone_mapped_after_scaling() {
        let pq = color("bt2020", "smpte2084", "bt2020nc");
        assert!(pq.hdr);
        let chain = Picture::for_input(&pq, 2160, false).filters("scale=-2:720");
        assert!(
            chain.starts_with("scale=-2:720,zscale=tin=smpte2084:min=2020_ncl:pin=2020:rin=limited:t=linear:npl=100")
        );
        assert!(chain.contains("tonemap=tonemap=hable:desat=0"), "{chain}");
        let hlg = Picture::for_input(&color("bt2020", "arib-std-b67", "bt2020nc"), 1080, false);
        assert_eq!(hlg.tonemap.as_ref().unwrap().0, Hdr::Hlg);
        let dv = Color::from_probe(Some("bt2020"), None, Some("bt2020nc"), None, true);
        assert!(dv.hdr);
    }

    #[test]
    fn sdr_keeps_bt709_converts_bt601_and_untagged_sd_and_full_range() {
        assert_eq!(Picture::for_input(&color("bt709", "bt709", "bt709"), 1080, false).filters("scale=s"), "scale=s");
        let sd = Picture::for_input(&Color::default(), 480, false);
        assert_eq!(sd.filters("scale=s"), "scale=s:in_color_matrix=bt601:out_color_matrix=bt709");
        assert_eq!(Picture::for_input(&Color::default(), 720, false), Picture::default());
        let full = Color::from_probe(None, None, Some("bt709"), Some("pc"), false);
        assert_eq!(Picture::for_input(&full, 1080, false).filters("scale=s"), "scale=s:in_range=pc:out_range=tv");
        let unknown = Color::from_probe(Some("unknown"), Some(""), None, None, false);
        assert_eq!(unknown, Color::default());
    }

    #[test]
    fn interlaced_input_is_deinterlaced_first_and_progressive_never() {
        let p = Picture::for_input(&color("bt709", "bt709", "bt709"), 1080, true);
        assert_eq!(p.filters("scale=-2:720"), "bwdif=mode=send_frame:parity=auto:deint=all,scale=-2:720");
        assert_eq!(flagged_interlaced(Some("tt")), Some(true));
        assert_eq!(flagged_interlaced(Some("progressive")), Some(false));
        assert_eq!(flagged_interlaced(None), None);
    }

    #[test]
    fn dolby_vision_side_data_makes_an_input_hdr_and_tone_mapped() {
        // Profile 8.4 signals HLG in its base layer: the HLG chain.
        let hlg = Color::from_probe(Some("bt2020"), Some("arib-std-b67"), Some("bt2020nc"), Some("tv"), true);
        assert!(hlg.hdr);
        assert!(Picture::for_input(&hlg, 1080, false).filters("scale=-2:720").contains("tin=arib-std-b67"));
        // Side data but no transfer signalled: taken as PQ, never passed through.
        let bare = Color::from_probe(Some("bt2020"), None, Some("bt2020nc"), Some("tv"), true);
        assert!(bare.hdr);
        let chain = Picture::for_input(&bare, 1080, false).filters("scale=-2:720");
        assert!(chain.contains("tin=smpte2084") && chain.contains("tonemap=tonemap=hable"), "{chain}");
        // Without the side data the same tags are SDR.
        assert!(!Color::from_probe(Some("bt2020"), None, Some("bt2020nc"), Some("tv"), false).hdr);
    }

    #[test]
    fn reads_idets_summary() {
        assert!(may_carry_fields("mpeg2video") && may_carry_fields("h264"));
        assert!(!may_carry_fields("mpeg4") && !may_carry_fields("vp9") && !may_carry_fields("av1"));
        let log = "[Parsed_idet_0 @ 0x55] Repeated Fields: Neither: 50 Top: 0 Bottom: 0\n\
                   [Parsed_idet_0 @ 0x55] Single frame detection: TFF: 30 BFF: 0 Progressive: 5 Undetermined: 15\n\
                   [Parsed_idet_0 @ 0x55] Multi frame detection: TFF: 46 BFF: 0 Progressive: 1 Undetermined: 3\n";
        assert_eq!(parse_idet(log), Some(true));
        let progressive = "Multi frame detection: TFF: 0 BFF: 0 Progressive: 48 Undetermined: 2";
        assert_eq!(parse_idet(progressive), Some(false));
        assert_eq!(parse_idet("Multi frame detection: TFF: 1 BFF: 0 Progressive: 1 Undetermined: 40"), None);
        assert_eq!(parse_idet("nothing"), None);
    }
}
