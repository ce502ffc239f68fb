//! Adaptive streaming packages: the ladder of renditions, and the ffmpeg
//! that encodes all of them from one decode (whole, or a split job's piece
//! and join). What is measured from the segments afterwards is in
//! [`super::manifest`].
//!
//! Every rendition is H.264 (capped CRF) with AAC muxed in, in fMP4 (CMAF)
//! segments of [`SEGMENT_SECONDS`]: keyframes are forced at the same input
//! times in every rendition and scene-cut keyframes are off, so each segment
//! starts with a keyframe and all renditions share the segment boundaries.

use std::path::Path;

use super::{input_restrictions, join_inputs, JoinAudio};
use crate::domain::picture::{Picture, OUTPUT_TAGS};
use crate::domain::{OutputFormat, RUNGS};

/// Length of one segment.
pub const SEGMENT_SECONDS: u32 = 4;

/// The bitrate cap of each rung (kbit/s): about Apple's HLS authoring
/// guidance for H.264 at 30 fps, so that a rung plays on the connection its
/// resolution is meant for; simple content stays well under (CRF 23).
pub fn cap_kbps(height: u32) -> u32 {
    match height {
        h if h >= 2160 => 16_000,
        h if h >= 1440 => 9_000,
        h if h >= 1080 => 5_800,
        h if h >= 720 => 3_000,
        h if h >= 480 => 1_400,
        h if h >= 360 => 800,
        _ => 400,
    }
}

/// One rendition of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// `720p`: the prefix of its files.
    pub name: String,
    pub height: u32,
    pub cap_kbps: u32,
}

/// The renditions for an input `input_height` lines high: the requested
/// rungs (or all of [`RUNGS`]) at or below it, highest first; when none is,
/// one rendition at the input's own (even) height. Never upscaled.
pub fn renditions(requested: Option<&[u32]>, input_height: u32) -> Vec<Rung> {
    let wanted: Vec<u32> = requested.map(<[u32]>::to_vec).unwrap_or_else(|| RUNGS.to_vec());
    let mut heights: Vec<u32> = wanted.into_iter().filter(|h| *h <= input_height).collect();
    heights.sort_unstable_by(|a, b| b.cmp(a));
    heights.dedup();
    if heights.is_empty() {
        heights.push((input_height / 2 * 2).max(2));
    }
    rungs(&heights)
}

/// The rungs of heights already chosen (a split job's plan keeps them).
pub fn rungs(heights: &[u32]) -> Vec<Rung> {
    heights.iter().map(|&h| Rung { name: format!("{h}p"), height: h, cap_kbps: cap_kbps(h) }).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What the package's ffmpeg reads.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub input: &'a Path,
    pub demuxer: &'a str,
    pub threads: u32,
    pub picture: &'a Picture,
    pub has_audio: bool,
}

/// The video encoder of one rendition (stream specifier `spec`).
fn video_codec(rung: &Rung, spec: &str, threads: u32) -> Vec<String> {
    let mut args = vec![format!("-c:v{spec}"), "libx264".into(), format!("-preset:v{spec}"), "veryfast".into()];
    args.extend([format!("-crf:v{spec}"), "23".into()]);
    args.extend([format!("-maxrate:v{spec}"), format!("{}k", rung.cap_kbps)]);
    args.extend([format!("-bufsize:v{spec}"), format!("{}k", rung.cap_kbps * 2)]);
    if threads > 0 {
        args.extend([format!("-threads:v{spec}"), threads.to_string()]);
    }
    args
}

/// Keyframes at the segment boundaries only, the same in every rendition.
fn keyframes() -> Vec<String> {
    let mut args = vec!["-force_key_frames".into(), format!("expr:gte(t,n_forced*{SEGMENT_SECONDS})")];
    args.extend(strings(&["-sc_threshold", "0", "-g", "1000", "-keyint_min", "1", "-flags", "+cgop"]));
    args
}

/// Decode once (from `seek`, for a piece), split, scale (and convert) per
/// rendition.
fn head_and_graph(source: &Source<'_>, rungs: &[Rung], seek: Option<f64>) -> Vec<String> {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y"]);
    if source.threads > 0 {
        args.extend(["-threads".into(), source.threads.to_string()]);
    }
    if let Some(seek) = seek.filter(|s| *s > 0.0) {
        args.extend(["-ss".into(), format!("{seek:.6}")]);
    }
    args.extend(input_restrictions(source.demuxer));
    args.extend(["-i".into(), source.input.display().to_string()]);
    let outs: String = (0..rungs.len()).map(|i| format!("[s{i}]")).collect();
    let mut graph = format!("[0:v:0]split={}{outs}", rungs.len());
    for (i, rung) in rungs.iter().enumerate() {
        let chain = source.picture.filters(&format!("scale=-2:{}", rung.height));
        graph.push_str(&format!(";[s{i}]{chain},format=yuv420p[v{i}]"));
    }
    args.extend(["-filter_complex".into(), graph]);
    if source.threads > 0 {
        args.extend(["-filter_complex_threads".into(), source.threads.to_string()]);
    }
    args
}

fn audio_codec(spec: &str) -> Vec<String> {
    vec![format!("-c:a{spec}"), "aac".into(), format!("-b:a{spec}"), "128k".into(), format!("-ac:a{spec}"), "2".into()]
}

/// Common to every output: exact frames (no duplicates or drops), no
/// metadata, SDR BT.709 tags.
fn output_common() -> Vec<String> {
    let mut args = strings(&["-fps_mode", "passthrough", "-map_metadata", "-1", "-sn", "-dn"]);
    args.extend(strings(&OUTPUT_TAGS));
    args
}

/// HLS: one output per rendition (`<name>.m3u8`, `<name>_init.mp4`,
/// `<name>_NNNNN.m4s`, audio muxed in), written into `dir`.
pub fn hls_args(source: &Source<'_>, rungs: &[Rung], dir: &Path) -> Vec<String> {
    let mut args = head_and_graph(source, rungs, None);
    for (i, rung) in rungs.iter().enumerate() {
        args.extend(["-map".into(), format!("[v{i}]")]);
        if source.has_audio {
            args.extend(strings(&["-map", "0:a:0"]));
            args.extend(audio_codec(""));
        }
        args.extend(video_codec(rung, "", source.threads));
        args.extend(keyframes());
        args.extend(output_common());
        args.extend(hls_muxer(rung, dir));
    }
    args
}

/// DASH: one output, a video adaptation set of every rendition and an audio
/// one (`manifest.mpd`, `init-<rep>.mp4`, `chunk-<rep>-NNNNN.m4s`; the
/// renditions are representations 0.., the audio the last).
pub fn dash_args(source: &Source<'_>, rungs: &[Rung], dir: &Path) -> Vec<String> {
    let mut args = head_and_graph(source, rungs, None);
    for i in 0..rungs.len() {
        args.extend(["-map".into(), format!("[v{i}]")]);
    }
    if source.has_audio {
        args.extend(strings(&["-map", "0:a:0"]));
        args.extend(audio_codec(""));
    }
    for (i, rung) in rungs.iter().enumerate() {
        args.extend(video_codec(rung, &format!(":{i}"), source.threads));
    }
    args.extend(keyframes());
    args.extend(output_common());
    args.extend(dash_muxer(source.has_audio, dir));
    args
}

/// One piece of a split package: exactly `frames` frames from `seek`, every
/// rendition as a video track of one MP4 (no audio; the pieces' audio is
/// cut apart as for mp4), keyframes at the same segment boundaries as a
/// whole encode, closed GOPs and x264's `stitchable` so the join can copy.
pub fn piece_args(source: &Source<'_>, rungs: &[Rung], seek: f64, frames: u64, output: &Path) -> Vec<String> {
    let mut args = head_and_graph(source, rungs, Some(seek));
    for i in 0..rungs.len() {
        args.extend(["-map".into(), format!("[v{i}]")]);
    }
    for (i, rung) in rungs.iter().enumerate() {
        args.extend(video_codec(rung, &format!(":{i}"), source.threads));
    }
    args.extend(keyframes());
    args.extend(strings(&["-x264-params", "stitchable=1", "-an", "-frames:v"]));
    args.push(frames.to_string());
    args.extend(output_common());
    args.extend(strings(&["-f", "mp4"]));
    args.push(output.display().to_string());
    args
}

/// The join of a split package: the pieces' concat list (every rendition a
/// track) and the audio copied into the package's segments, cut at the
/// pieces' forced keyframes.
pub fn join_args(format: OutputFormat, list: &Path, audio: JoinAudio<'_>, rungs: &[Rung], dir: &Path) -> Vec<String> {
    let (mut args, has_audio) = join_inputs(list, audio);
    let mut copy = strings(&["-c", "copy", "-fps_mode", "passthrough", "-map_metadata", "-1"]);
    if has_audio {
        // The pieces' audio is ADTS; the segments' MP4 wants its config apart.
        copy.extend(strings(&["-bsf:a", "aac_adtstoasc"]));
    }
    match format {
        OutputFormat::Dash => {
            for i in 0..rungs.len() {
                args.extend(["-map".into(), format!("0:v:{i}")]);
            }
            if has_audio {
                args.extend(strings(&["-map", "1:a:0"]));
            }
            args.extend(copy);
            args.extend(dash_muxer(has_audio, dir));
        }
        _ => {
            for (i, rung) in rungs.iter().enumerate() {
                args.extend(["-map".into(), format!("0:v:{i}")]);
                if has_audio {
                    args.extend(strings(&["-map", "1:a:0"]));
                }
                args.extend(copy.clone());
                args.extend(hls_muxer(rung, dir));
            }
        }
    }
    args
}

/// The hls muxer of one rendition.
fn hls_muxer(rung: &Rung, dir: &Path) -> Vec<String> {
    let mut args = strings(&["-f", "hls", "-hls_time"]);
    args.push(SEGMENT_SECONDS.to_string());
    args.extend(strings(&["-hls_playlist_type", "vod", "-hls_segment_type", "fmp4"]));
    args.extend(strings(&["-hls_flags", "independent_segments", "-hls_fmp4_init_filename"]));
    args.push(format!("{}_init.mp4", rung.name));
    args.push("-hls_segment_filename".into());
    args.push(dir.join(format!("{}_%05d.m4s", rung.name)).display().to_string());
    args.push(dir.join(format!("{}.m3u8", rung.name)).display().to_string());
    args
}

/// The dash muxer: the video adaptation set and the audio one.
fn dash_muxer(has_audio: bool, dir: &Path) -> Vec<String> {
    let mut args = strings(&["-f", "dash", "-seg_duration"]);
    args.push(SEGMENT_SECONDS.to_string());
    args.extend(strings(&["-use_template", "1", "-use_timeline", "1", "-adaptation_sets"]));
    args.push(if has_audio { "id=0,streams=v id=1,streams=a" } else { "id=0,streams=v" }.into());
    args.extend(strings(&["-init_seg_name", "init-$RepresentationID$.mp4"]));
    args.extend(strings(&["-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s"]));
    args.push(dir.join("manifest.mpd").display().to_string());
    args
}

/// The package's ffmpeg.
pub fn package_args(format: OutputFormat, source: &Source<'_>, rungs: &[Rung], dir: &Path) -> Vec<String> {
    match format {
        OutputFormat::Dash => dash_args(source, rungs, dir),
        _ => hls_args(source, rungs, dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ladder_never_upscales() {
        let heights = |r: Vec<Rung>| r.into_iter().map(|r| r.height).collect::<Vec<_>>();
        assert_eq!(heights(renditions(None, 720)), vec![720, 480, 360, 240]);
        assert_eq!(heights(renditions(None, 1080)), vec![1080, 720, 480, 360, 240]);
        assert_eq!(heights(renditions(None, 700)), vec![480, 360, 240]);
        assert_eq!(heights(renditions(None, 181)), vec![180]);
        assert_eq!(heights(renditions(Some(&[360, 720]), 720)), vec![720, 360]);
        assert_eq!(heights(renditions(Some(&[1080, 720]), 720)), vec![720]);
        assert_eq!(renditions(None, 480)[0], Rung { name: "480p".into(), height: 480, cap_kbps: 1400 });
    }
}
