//! ffmpeg argument lists: the whole-input encode, and the pieces, audio and
//! join of a split job. Pieces use the whole encode's video settings plus
//! what makes them join seamlessly: exact frame ranges after an accurate
//! seek, closed GOPs and x264's `stitchable`.

use std::path::Path;

use super::input_restrictions;
use crate::domain::audio::{AudioCut, AAC_FRAME};
use crate::domain::picture::{Picture, OUTPUT_TAGS};
use crate::domain::{JobOptions, OutputFormat, PieceSpec};

/// The input side of an encode.
#[derive(Debug, Clone, Copy)]
pub struct Media<'a> {
    pub input: &'a Path,
    /// The demuxer forced from the sniffed container.
    pub demuxer: &'a str,
    pub options: &'a JobOptions,
    /// `worker.ffmpeg_threads` (0 = ffmpeg's choice).
    pub threads: u32,
    /// Deinterlacing, tone-mapping and matrix conversion the input needs.
    pub picture: &'a Picture,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn head(media: &Media<'_>, seek: Option<f64>) -> Vec<String> {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y"]);
    args.extend(threads(media.threads));
    if let Some(seek) = seek.filter(|s| *s > 0.0) {
        args.push("-ss".into());
        args.push(format!("{seek:.6}"));
    }
    args.extend(input_restrictions(media.demuxer));
    args.push("-i".into());
    args.push(media.input.display().to_string());
    args
}

fn threads(n: u32) -> Vec<String> {
    if n == 0 {
        Vec::new()
    } else {
        vec!["-threads".into(), n.to_string()]
    }
}

fn scale(options: &JobOptions) -> String {
    match options.height {
        Some(h) => format!("scale=-2:{h}"),
        // Even dimensions, which 4:2:0 encoders require.
        None => "scale=trunc(iw/2)*2:trunc(ih/2)*2".to_string(),
    }
}

/// The filters that make the input's frames the output's: the picture
/// chain around the scale.
pub fn picture_chain(options: &JobOptions, picture: &Picture) -> String {
    picture.filters(&scale(options))
}

/// The size [`picture_chain`] gives a `width`×`height` input (as ffmpeg's
/// `scale` rounds: the derived side to the even number nearest the aspect).
pub fn output_size(options: &JobOptions, width: u32, height: u32) -> (u32, u32) {
    match options.height {
        Some(h) => {
            let w = (u64::from(h) * u64::from(width)) as f64 / (2 * u64::from(height.max(1))) as f64;
            ((w.round() as u32 * 2).max(2), h)
        }
        None => (width / 2 * 2, height / 2 * 2),
    }
}

fn video(media: &Media<'_>) -> Vec<String> {
    let mut args = strings(&["-map", "0:v:0", "-sn", "-dn", "-map_metadata", "-1"]);
    args.extend(["-vf".into(), picture_chain(media.options, media.picture), "-pix_fmt".into(), "yuv420p".into()]);
    args.extend(strings(&OUTPUT_TAGS));
    if media.threads > 0 {
        args.extend(["-filter_threads".into(), media.threads.to_string()]);
    }
    args.extend(strings(match media.options.format {
        OutputFormat::Mp4 | OutputFormat::Hls | OutputFormat::Dash => {
            &["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"]
        }
        OutputFormat::Webm => &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-row-mt",
            "1",
            "-b:v",
            "0",
            "-crf",
            "35",
        ],
    }));
    args.extend(threads(media.threads));
    args
}

fn audio(format: OutputFormat) -> Vec<String> {
    strings(match format {
        OutputFormat::Mp4 | OutputFormat::Hls | OutputFormat::Dash => &["-ac", "2", "-c:a", "aac", "-b:a", "128k"],
        OutputFormat::Webm => &["-ac", "2", "-c:a", "libopus", "-b:a", "96k"],
    })
}

fn muxer(format: OutputFormat) -> Vec<String> {
    strings(match format {
        // (A package's pieces are MP4 too; its segments are written by the ladder.)
        OutputFormat::Mp4 | OutputFormat::Hls | OutputFormat::Dash => &["-movflags", "+faststart", "-f", "mp4"],
        OutputFormat::Webm => &["-f", "webm"],
    })
}

/// The whole input in one ffmpeg (also what benchmarks run bare).
pub fn whole_args(media: &Media<'_>, output: &Path) -> Vec<String> {
    let mut args = head(media, None);
    args.extend(video(media));
    args.extend(strings(&["-map", "0:a:0?"]));
    args.extend(audio(media.options.format));
    args.extend(muxer(media.options.format));
    args.push(output.display().to_string());
    args
}

/// [`whole_args`] with ffmpeg's own thread choice.
pub fn ffmpeg_args(input: &Path, demuxer: &str, options: &JobOptions, output: &Path) -> Vec<String> {
    whole_args(&Media { input, demuxer, options, threads: 0, picture: &Picture::default() }, output)
}

/// One piece: seek, then exactly the piece's frames, video only.
pub fn piece_args(media: &Media<'_>, piece: &PieceSpec, output: &Path) -> Vec<String> {
    let mut args = head(media, Some(piece.seek_seconds));
    args.extend(video(media));
    if media.options.format == OutputFormat::Mp4 {
        // Closed GOPs, and headers that let independently encoded pieces be
        // concatenated into one stream.
        args.extend(strings(&["-flags", "+cgop", "-x264-params", "stitchable=1"]));
    }
    args.extend(strings(&["-an", "-frames:v"]));
    args.push(piece.frames.to_string());
    // Keep the input's frame timing; never duplicate or drop a frame.
    args.extend(strings(&["-fps_mode", "passthrough"]));
    args.extend(muxer(media.options.format));
    args.push(output.display().to_string());
    args
}

/// The whole input's audio, once (per-piece audio would add encoder
/// priming and gaps at every join).
pub fn audio_args(media: &Media<'_>, output: &Path) -> Vec<String> {
    let mut args = head(media, None);
    args.extend(strings(&["-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1"]));
    args.extend(audio(media.options.format));
    args.extend(threads(media.threads));
    args.extend(muxer(media.options.format));
    args.push(output.display().to_string());
    args
}

/// One piece's range of the audio, as AAC in ADTS framing: the input's
/// audio decoded from its start (cheap) and trimmed to exact samples, so the
/// packets line up with every other piece's (see [`AudioCut`]).
pub fn audio_part_args(media: &Media<'_>, cut: &AudioCut, output: &Path) -> Vec<String> {
    let mut args = head(media, None);
    let end = cut.end_sample.map(|e| format!(":end_sample={e}")).unwrap_or_default();
    let trim = format!("atrim=start_sample={}{end},asetpts=N/SR/TB", cut.first_sample);
    args.extend(strings(&["-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-af"]));
    args.push(trim);
    args.extend(audio(OutputFormat::Mp4));
    args.extend(threads(media.threads));
    args.extend(strings(&["-f", "adts"]));
    args.push(output.display().to_string());
    args
}

/// The audio a join muxes in.
#[derive(Debug, Clone, Copy)]
pub enum JoinAudio<'a> {
    None,
    /// Encoded whole, in the output's container.
    Whole(&'a Path),
    /// The pieces' AAC packets end to end (ADTS) at this sample rate; its
    /// first packet is the encoder's priming, which the output's edit list
    /// skips.
    Packets(&'a Path, u32),
}

/// The concat demuxer's list: each piece with its exact duration (MP4
/// stores piece durations in milliseconds; without these lines the joins
/// drift at 29.97 fps).
pub fn concat_list(pieces: &[(String, f64)]) -> String {
    let mut list = String::from("ffconcat version 1.0\n");
    for (file, duration) in pieces {
        list.push_str(&format!("file '{file}'\nduration {duration:.6}\n"));
    }
    list
}

/// The inputs of a join: the pieces' concat list (input 0) and the audio
/// (input 1), if any; whether there is audio.
pub fn join_inputs(list: &Path, audio: JoinAudio<'_>) -> (Vec<String>, bool) {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y", "-protocol_whitelist", "file", "-f", "concat"]);
    args.push("-i".into());
    args.push(list.display().to_string());
    let audio_file = match audio {
        JoinAudio::None => None,
        JoinAudio::Whole(file) => Some(file),
        JoinAudio::Packets(file, rate) => {
            // The priming packet starts before zero: the muxer writes the
            // edit list that skips it, as it does for a whole encode.
            args.push("-itsoffset".into());
            args.push(format!("-{:.6}", AAC_FRAME as f64 / f64::from(rate)));
            args.extend(strings(&["-f", "aac"]));
            Some(file)
        }
    };
    if let Some(audio_file) = audio_file {
        args.extend(strings(&["-protocol_whitelist", "file", "-i"]));
        args.push(audio_file.display().to_string());
    }
    (args, audio_file.is_some())
}

/// Concatenates the pieces (stream copy) and muxes the audio.
pub fn join_args(list: &Path, audio: JoinAudio<'_>, format: OutputFormat, output: &Path) -> Vec<String> {
    let (mut args, has_audio) = join_inputs(list, audio);
    args.extend(strings(&["-map", "0:v:0"]));
    if has_audio {
        args.extend(strings(&["-map", "1:a:0"]));
    }
    args.extend(strings(&["-c", "copy", "-map_metadata", "-1"]));
    args.extend(muxer(format));
    args.push(output.display().to_string());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_seeks_takes_exact_frames_and_is_stitchable() {
        let options = JobOptions::default();
        let picture = Picture::default();
        let media =
            Media { input: Path::new("/s/input"), demuxer: "mov", options: &options, threads: 1, picture: &picture };
        let piece = PieceSpec { index: 1, start_frame: 100, frames: 100, seek_seconds: 3.98, duration_seconds: 4.0 };
        let args = piece_args(&media, &piece, Path::new("/s/p.mp4"));
        let joined = args.join(" ");
        assert!(joined.contains("-ss 3.980000 -protocol_whitelist file"), "{joined}");
        assert!(joined.contains("-frames:v 100"));
        assert!(joined.contains("stitchable=1"));
        assert!(joined.contains("-an"));
        assert!(joined.contains("-threads 1"));
        assert!(!whole_args(&media, Path::new("/s/o.mp4")).join(" ").contains("-ss"));
        assert!(!ffmpeg_args(Path::new("/i"), "mov", &options, Path::new("/o")).contains(&"-threads".to_string()));
    }

    #[test]
    fn the_concat_list_carries_exact_durations() {
        let list = concat_list(&[("piece-00000.mp4".into(), 4.004), ("piece-00001.mp4".into(), 2.2)]);
        assert_eq!(
            list,
            "ffconcat version 1.0\nfile 'piece-00000.mp4'\nduration 4.004000\nfile 'piece-00001.mp4'\nduration 2.200000\n"
        );
    }
}
