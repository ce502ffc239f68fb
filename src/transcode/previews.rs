//! The poster and the storyboard of a job.
//!
//! Both come from keyframes only, of the input (through the output's
//! picture chain) or of the finished output: the packets are listed (no
//! decoding; from an MP4's sample tables in-process, else by ffprobe), and
//! one ffmpeg decodes just the keyframes on one thread and writes the
//! poster at full size and the sprite of thumbnails. For H.264 and HEVC the
//! decoder itself skips the other frames (`-skip_frame nokey`); other
//! decoders (VP9's among them) ignore that, so a stream copy first keeps
//! only the keyframe packets (the `noise` bitstream filter drops the
//! others). The cost is a fraction of a second however long the video, and
//! it runs beside the encode (or the output's upload); the thumbnails'
//! spacing is that of the keyframes used (at most [`MAX_THUMBNAILS`] of
//! them, evenly thinned).

use std::path::Path;

/// Thumbnails in one sprite, at most.
pub const MAX_THUMBNAILS: usize = 100;
/// Thumbnails per row of the sprite.
pub const COLUMNS: usize = 10;
/// Width of one thumbnail (height follows the aspect ratio, even).
pub const THUMB_WIDTH: u32 = 160;

pub const POSTER: &str = "poster.jpg";
pub const STORYBOARD_IMAGE: &str = "storyboard.jpg";
pub const STORYBOARD_CUES: &str = "storyboard.vtt";

/// The content type of one of the three files, by its name.
pub fn content_type(name: &str) -> Option<&'static str> {
    match name {
        POSTER | STORYBOARD_IMAGE => Some("image/jpeg"),
        STORYBOARD_CUES => Some("text/vtt"),
        _ => None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The file the previews are made from: the output, or the input (its
/// demuxer forced, and the picture chain that makes its frames the
/// output's: tone mapping, matrix, scale).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub path: &'a Path,
    pub demuxer: Option<&'a str>,
    pub chain: Option<&'a str>,
}

impl Source<'_> {
    fn input(&self) -> Vec<String> {
        let mut args = super::local_input(self.demuxer);
        args.push("-i".into());
        args.push(self.path.display().to_string());
        args
    }
}

/// Copies only the keyframes of the source's video into `keys` (Matroska).
pub fn keyframes_args(source: &Source<'_>, keys: &Path) -> Vec<String> {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y"]);
    args.extend(source.input());
    args.extend(strings(&["-map", "0:v:0", "-c", "copy", "-bsf:v", "noise=drop=not(key)", "-f", "matroska"]));
    args.push(keys.display().to_string());
    args
}

/// Which keyframes become what, and where the thumbnails lie in the sprite.
#[derive(Debug, Clone, PartialEq)]
pub struct Storyboard {
    /// The keyframes' times it was planned from.
    pub keyframes: Vec<f64>,
    /// Index (among the keyframes) of the poster frame.
    pub poster: usize,
    /// Indexes of the keyframes that become thumbnails, in order.
    pub picks: Vec<usize>,
    /// `[start, end)` of each thumbnail's cue, end to end from 0 to the duration.
    pub cues: Vec<(f64, f64)>,
    pub thumb_width: u32,
    pub thumb_height: u32,
    pub columns: usize,
    pub rows: usize,
}

impl Storyboard {
    /// From the keyframes' times (seconds, in order), the output's duration
    /// and size.
    pub fn plan(keyframes: &[f64], duration: f64, width: u32, height: u32) -> Option<Storyboard> {
        let first = *keyframes.first()?;
        let duration = duration.max(keyframes.last().copied().unwrap_or(0.0) - first).max(0.001);
        let gap = duration / MAX_THUMBNAILS as f64;
        let mut picks: Vec<usize> = Vec::new();
        let mut last = f64::NEG_INFINITY;
        for (i, &t) in keyframes.iter().enumerate() {
            let t = t - first;
            if picks.is_empty() || t >= last + gap {
                picks.push(i);
                last = t;
            }
            if picks.len() == MAX_THUMBNAILS {
                break;
            }
        }
        let starts: Vec<f64> =
            picks.iter().enumerate().map(|(n, &i)| if n == 0 { 0.0 } else { keyframes[i] - first }).collect();
        let cues =
            starts.iter().enumerate().map(|(n, &s)| (s, starts.get(n + 1).copied().unwrap_or(duration))).collect();
        // A representative frame: the keyframe nearest a third of the way in
        // (the first frames are often a fade or a title).
        let target = first + duration / 3.0;
        let poster = (0..keyframes.len())
            .min_by(|&a, &b| (keyframes[a] - target).abs().total_cmp(&(keyframes[b] - target).abs()))
            .unwrap_or(0);
        let thumb_width = THUMB_WIDTH;
        let thumb_height =
            ((f64::from(THUMB_WIDTH) * f64::from(height) / f64::from(width.max(1)) / 2.0).round() as u32 * 2).max(2);
        let columns = picks.len().min(COLUMNS);
        let rows = picks.len().div_ceil(COLUMNS);
        Some(Storyboard {
            keyframes: keyframes.to_vec(),
            poster,
            picks,
            cues,
            thumb_width,
            thumb_height,
            columns,
            rows,
        })
    }

    /// One decode of the keyframes of `source` (with `skip_nokey`, for
    /// H.264 and HEVC; else a file of its keyframes alone): the poster at
    /// full size and the sprite. Frames are picked by their times
    /// (`-copyts`: the times the packet listing gives).
    pub fn args(&self, source: &Source<'_>, skip_nokey: bool, poster: &Path, sprite: &Path) -> Vec<String> {
        // One thread: a few keyframes decode faster than frame threads start.
        let mut args =
            strings(&["-hide_banner", "-nostdin", "-y", "-threads", "1", "-filter_complex_threads", "1", "-copyts"]);
        if skip_nokey {
            args.extend(strings(&["-skip_frame", "nokey"]));
        }
        args.extend(source.input());
        let at = |i: usize| format!("lt(abs(t-{:.6})\\,0.0005)", self.keyframes[i]);
        let picks: Vec<String> = self.picks.iter().map(|&i| at(i)).collect();
        let chain = source.chain.map(|c| format!("{c},")).unwrap_or_default();
        let graph = format!(
            "[0:v:0]{chain}split=2[a][b];[a]select='{}'[poster];[b]select='{}',scale={}:{},tile={}x{}[sprite]",
            at(self.poster),
            picks.join("+"),
            self.thumb_width,
            self.thumb_height,
            self.columns,
            self.rows
        );
        args.extend(["-filter_complex".into(), graph]);
        for (label, path, quality) in [("[poster]", poster, "3"), ("[sprite]", sprite, "5")] {
            args.extend(strings(&["-map", label, "-frames:v", "1", "-update", "1", "-q:v", quality, "-f", "image2"]));
            args.push(path.display().to_string());
        }
        args
    }

    /// The WebVTT cues: each thumbnail's span as a media fragment of the sprite.
    pub fn vtt(&self) -> String {
        let mut vtt = String::from("WEBVTT\n");
        for (n, (start, end)) in self.cues.iter().enumerate() {
            let x = (n % COLUMNS) as u32 * self.thumb_width;
            let y = (n / COLUMNS) as u32 * self.thumb_height;
            vtt.push_str(&format!(
                "\n{} --> {}\n{STORYBOARD_IMAGE}#xywh={x},{y},{},{}\n",
                clock(*start),
                clock(*end),
                self.thumb_width,
                self.thumb_height
            ));
        }
        vtt
    }
}

/// `hh:mm:ss.mmm`.
fn clock(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_cover_the_whole_duration_end_to_end() {
        let keys = [0.007, 5.127, 10.247, 15.367, 20.487];
        let sb = Storyboard::plan(&keys, 24.0, 640, 360).unwrap();
        assert_eq!(sb.picks, vec![0, 1, 2, 3, 4]);
        assert_eq!(sb.cues.first().unwrap().0, 0.0);
        assert_eq!(sb.cues.last().unwrap().1, 24.0);
        for pair in sb.cues.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
        assert_eq!((sb.thumb_width, sb.thumb_height, sb.columns, sb.rows), (160, 90, 5, 1));
        assert_eq!(sb.poster, 2);
        let vtt = sb.vtt();
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:05.120\nstoryboard.jpg#xywh=0,0,160,90\n"), "{vtt}");
        assert!(vtt.ends_with("00:00:20.480 --> 00:00:24.000\nstoryboard.jpg#xywh=640,0,160,90\n"), "{vtt}");
    }

    #[test]
    fn many_keyframes_are_thinned_to_the_limit() {
        let keys: Vec<f64> = (0..3600).map(|i| i as f64 * 2.0).collect();
        let sb = Storyboard::plan(&keys, 7200.0, 1920, 1080).unwrap();
        assert_eq!(sb.picks.len(), MAX_THUMBNAILS);
        assert_eq!(sb.picks[1], 36);
        assert_eq!((sb.columns, sb.rows), (10, 10));
        let vtt = sb.vtt();
        assert!(vtt.contains("storyboard.jpg#xywh=1440,810,160,90"), "{vtt}");
        assert_eq!(sb.cues.last().unwrap().1, 7200.0);
        assert!(Storyboard::plan(&[], 1.0, 2, 2).is_none());
    }

    #[test]
    fn the_graph_picks_the_poster_and_the_thumbnails_by_time() {
        let sb = Storyboard::plan(&[0.0, 10.0, 20.0], 24.0, 640, 480).unwrap();
        let output = Source { path: Path::new("/s/out.mp4"), demuxer: None, chain: None };
        let args = sb.args(&output, true, Path::new("/s/poster.jpg"), Path::new("/s/storyboard.jpg"));
        let joined = args.join(" ");
        assert!(
            joined.contains(
                "-threads 1 -filter_complex_threads 1 -copyts -skip_frame nokey -protocol_whitelist file -i /s/out.mp4"
            ),
            "{joined}"
        );
        let at = |t: &str| format!("lt(abs(t-{t})\\,0.0005)");
        let graph = format!(
            "select='{}'[poster];[b]select='{}+{}+{}',scale=160:120,tile=3x1",
            at("10.000000"),
            at("0.000000"),
            at("10.000000"),
            at("20.000000")
        );
        assert!(joined.contains(&graph), "{joined}");
        let keys = Source { path: Path::new("/k.mkv"), demuxer: None, chain: None };
        assert!(!sb.args(&keys, false, Path::new("/p"), Path::new("/s")).contains(&"nokey".to_string()));
        // From the input: its demuxer forced, its frames made the output's first.
        let input = Source { path: Path::new("/s/in"), demuxer: Some("mov"), chain: Some("scale=-2:360") };
        let joined = sb.args(&input, true, Path::new("/p"), Path::new("/s")).join(" ");
        assert!(joined.contains("-f mov -i /s/in"), "{joined}");
        assert!(joined.contains("[0:v:0]scale=-2:360,split=2[a][b]"), "{joined}");
    }
}
