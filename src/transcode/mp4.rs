//! An MP4 read from its boxes, in-process: the video track's frame times,
//! keyframes and coded size as ffprobe lists them, and the description of
//! an output ffmpeg wrote (duration, size, codecs, colour), without
//! starting ffprobe (whose start alone costs about 50 ms of a core). For
//! the files ffmpeg writes (outputs, pieces) and plain MP4 inputs; anything
//! else (fragmented files, several edits, a table or a code it cannot
//! account for) gives `None`, and callers ask ffprobe.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{MediaInfo, VideoPackets};
use crate::domain::Color;

/// The largest `moov` read into memory.
const MAX_MOOV: u64 = 64 << 20;
/// The most samples a track may declare.
const MAX_SAMPLES: u64 = 10_000_000;

/// The first video track of the MP4 at `path`, or `None` if it is not one
/// this reader fully understands.
pub fn video_packets(path: &Path) -> Option<VideoPackets> {
    let moov = read_moov(path).ok()??;
    let track = boxes(&moov).filter(|(kind, _)| kind == b"trak").find_map(|(_, trak)| video_track(trak));
    track?
}

/// What ffprobe says of an MP4 that ffmpeg wrote: its duration, the first
/// video track's size, codec and colour (from its `colr` box) and the first
/// audio track's codec and rate. `None` when a part of that is not there or
/// not one of the codes named here.
pub fn describe(path: &Path) -> Option<MediaInfo> {
    let moov = read_moov(path).ok()??;
    let mvhd = child(&moov, b"mvhd")?;
    let (timescale, duration) = match mvhd.first()? {
        0 => (u32_at(mvhd, 12)?, u64::from(u32_at(mvhd, 16)?)),
        1 => (u32_at(mvhd, 20)?, u64_at(mvhd, 24)?),
        _ => return None,
    };
    if timescale == 0 || duration == 0 {
        return None;
    }
    let mut video = None;
    let mut audio = None;
    for (_, trak) in boxes(&moov).filter(|(kind, _)| kind == b"trak") {
        let mdia = child(trak, b"mdia")?;
        let stsd = child(child(child(mdia, b"minf")?, b"stbl")?, b"stsd")?;
        let (kind, entry) = boxes(stsd.get(8..)?).next()?;
        match child(mdia, b"hdlr")?.get(8..12)? {
            b"vide" if video.is_none() => video = Some((kind, entry)),
            b"soun" if audio.is_none() => audio = Some((kind, entry)),
            _ => {}
        }
    }
    let (kind, entry) = video?;
    let video_codec = match &kind {
        b"avc1" | b"avc3" => "h264",
        b"hvc1" | b"hev1" => "hevc",
        b"vp09" => "vp9",
        b"av01" => "av1",
        _ => return None,
    };
    let (width, height) = (u32::from(u16_at(entry, 24)?), u32::from(u16_at(entry, 26)?));
    // The visual sample entry's own fields take 78 bytes; its boxes follow.
    let extensions = entry.get(78..)?;
    if child(extensions, b"dvcC").is_some() || child(extensions, b"dvvC").is_some() {
        return None;
    }
    let color = nclx(child(extensions, b"colr")?)?;
    let (audio_codec, audio_sample_rate) = match audio {
        None => (None, None),
        Some((kind, entry)) => {
            // An audio sample entry (version 0): 28 bytes, the rate in 16.16.
            let rate = u32_at(entry, 24)? >> 16;
            let codec = match &kind {
                b"mp4a" => match object_type(child(entry.get(28..)?, b"esds")?)? {
                    0x40 | 0x66 | 0x67 | 0x68 => "aac",
                    0x69 | 0x6B => "mp3",
                    _ => return None,
                },
                b"Opus" => "opus",
                b"ac-3" => "ac3",
                _ => return None,
            };
            (Some(codec.to_string()), Some(rate))
        }
    };
    Some(MediaInfo {
        duration_seconds: duration as f64 / f64::from(timescale),
        width,
        height,
        video_codec: video_codec.to_string(),
        audio_codec,
        audio_sample_rate,
        start_seconds: 0.0,
        color,
        field_order: None,
        frame_rate: None,
    })
}

/// An `nclx` colour box in ffprobe's names (the codes of ISO/IEC 23091-2).
fn nclx(colr: &[u8]) -> Option<Color> {
    if colr.get(..4)? != b"nclx" {
        return None;
    }
    let primaries = match u16_at(colr, 4)? {
        1 => "bt709",
        5 => "bt470bg",
        6 => "smpte170m",
        9 => "bt2020",
        _ => return None,
    };
    let transfer = match u16_at(colr, 6)? {
        1 => "bt709",
        6 => "smpte170m",
        13 => "iec61966-2-1",
        14 => "bt2020-10",
        16 => "smpte2084",
        18 => "arib-std-b67",
        _ => return None,
    };
    let matrix = match u16_at(colr, 8)? {
        1 => "bt709",
        5 => "bt470bg",
        6 => "smpte170m",
        9 => "bt2020nc",
        _ => return None,
    };
    let range = if colr.get(10)? & 0x80 != 0 { "pc" } else { "tv" };
    Some(Color::from_probe(Some(primaries), Some(transfer), Some(matrix), Some(range), false))
}

/// The `objectTypeIndication` of an `esds` box's decoder configuration.
fn object_type(esds: &[u8]) -> Option<u8> {
    // Version and flags, then descriptors: a tag, a length of up to four
    // bytes (7 bits each), the body.
    let mut at = 4;
    let descriptor = |at: &mut usize| -> Option<u8> {
        let tag = *esds.get(*at)?;
        *at += 1;
        for _ in 0..4 {
            let b = *esds.get(*at)?;
            *at += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        Some(tag)
    };
    if descriptor(&mut at)? != 0x03 {
        return None;
    }
    let flags = *esds.get(at + 2)?;
    at += 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*esds.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    if descriptor(&mut at)? != 0x04 {
        return None;
    }
    esds.get(at).copied()
}

/// The `moov` box's payload, found by walking the top-level boxes.
fn read_moov(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut at = 0u64;
    let mut first = true;
    while at + 8 <= len {
        file.seek(SeekFrom::Start(at))?;
        let mut head = [0u8; 16];
        file.read_exact(&mut head[..8])?;
        let size32 = u32::from_be_bytes(head[..4].try_into().unwrap()) as u64;
        let kind: [u8; 4] = head[4..8].try_into().unwrap();
        if first && &kind != b"ftyp" {
            return Ok(None);
        }
        first = false;
        let (size, header) = match size32 {
            0 => (len - at, 8),
            1 => {
                file.read_exact(&mut head[8..16])?;
                (u64::from_be_bytes(head[8..16].try_into().unwrap()), 16)
            }
            n => (n, 8),
        };
        if size < header || at + size > len {
            return Ok(None);
        }
        match &kind {
            b"moov" if size - header <= MAX_MOOV => {
                let mut body = vec![0u8; (size - header) as usize];
                file.read_exact(&mut body)?;
                return Ok(Some(body));
            }
            // A fragmented file: its samples are not in the tables.
            b"moof" => return Ok(None),
            _ => at += size,
        }
    }
    Ok(None)
}

/// The child boxes of a payload; stops at the first malformed one.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let kind: [u8; 4] = rest[4..8].try_into().ok()?;
        let (size, header) = match size {
            0 => (rest.len(), 8),
            1 => (usize::try_from(u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?)).ok()?, 16),
            n => (n, 8),
        };
        if size < header || size > rest.len() {
            rest = &[];
            return None;
        }
        let body = &rest[header..size];
        rest = &rest[size..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

/// A full box's entries: `(count, entries)` after version/flags and count,
/// with the count checked against the bytes there are.
fn table(data: &[u8], entry: usize) -> Option<(usize, &[u8])> {
    let count = u32_at(data, 4)? as usize;
    let entries = data.get(8..)?;
    (entries.len() / entry >= count).then_some((count, entries))
}

/// `Some(None)`: a track, not video. `None` at the outer level: a video
/// track this reader does not understand.
fn video_track(trak: &[u8]) -> Option<Option<VideoPackets>> {
    let mdia = child(trak, b"mdia")?;
    let handler = child(mdia, b"hdlr")?.get(8..12)?;
    if handler != b"vide" {
        return None;
    }
    Some(read_video(trak, mdia))
}

fn read_video(trak: &[u8], mdia: &[u8]) -> Option<VideoPackets> {
    let mdhd = child(mdia, b"mdhd")?;
    let timescale = match mdhd.first()? {
        0 => u32_at(mdhd, 12)?,
        1 => u32_at(mdhd, 20)?,
        _ => return None,
    };
    if timescale == 0 {
        return None;
    }
    let stbl = child(child(mdia, b"minf")?, b"stbl")?;
    let (width, height) = coded_size(child(stbl, b"stsd")?)?;
    let shift = edit_shift(child(trak, b"edts"))?;

    let (runs, stts) = table(child(stbl, b"stts")?, 8)?;
    let total: u64 = (0..runs).map(|i| u32_at(stts, i * 8).map(u64::from)).sum::<Option<u64>>()?;
    if total == 0 || total > MAX_SAMPLES {
        return None;
    }
    let declared = child(stbl, b"stsz").and_then(|b| u32_at(b, 8)).map(u64::from);
    if declared != Some(total) {
        return None;
    }
    let mut dts = Vec::with_capacity(total as usize);
    let mut t: i64 = 0;
    for i in 0..runs {
        let (count, delta) = (u32_at(stts, i * 8)?, u32_at(stts, i * 8 + 4)?);
        for _ in 0..count {
            dts.push(t);
            t += i64::from(delta);
        }
    }
    let mut pts = dts;
    if let Some(ctts) = child(stbl, b"ctts") {
        let (runs, entries) = table(ctts, 8)?;
        let mut n = 0usize;
        for i in 0..runs {
            let count = u32_at(entries, i * 8)? as usize;
            // Signed in version 1; ffmpeg reads version 0's as signed too.
            let offset = i64::from(u32_at(entries, i * 8 + 4)? as i32);
            for p in pts.get_mut(n..n.checked_add(count)?)? {
                *p += offset;
            }
            n += count;
        }
        if n != pts.len() {
            return None;
        }
    }
    let seconds = |p: i64| (p - shift) as f64 / f64::from(timescale);
    let keyframes: Vec<f64> = match child(stbl, b"stss") {
        Some(stss) => {
            let (count, entries) = table(stss, 4)?;
            let mut keys = Vec::with_capacity(count);
            for i in 0..count {
                let sample = u32_at(entries, i * 4)? as usize;
                keys.push(seconds(*pts.get(sample.checked_sub(1)?)?));
            }
            keys
        }
        None => pts.iter().map(|&p| seconds(p)).collect(),
    };
    let mut times: Vec<f64> = pts.iter().map(|&p| seconds(p)).collect();
    let mut keyframes = keyframes;
    times.sort_by(f64::total_cmp);
    keyframes.sort_by(f64::total_cmp);
    Some(VideoPackets { times, keyframes, width, height, ticks_per_second: Some(f64::from(timescale)) })
}

/// The first sample entry's coded width and height (a visual sample entry:
/// 8 bytes of box header, then the size at 32 bytes into its payload, less
/// the 8 of its header: 24).
fn coded_size(stsd: &[u8]) -> Option<(u32, u32)> {
    if u32_at(stsd, 4)? == 0 {
        return None;
    }
    let (_, entry) = boxes(stsd.get(8..)?).next()?;
    let (w, h) = (u16_at(entry, 24)?, u16_at(entry, 26)?);
    (w > 0 && h > 0).then_some((u32::from(w), u32::from(h)))
}

/// Media time the track's presentation starts at: none, or the one edit
/// ffmpeg writes (it skips the encoder's reordering delay). `None` for
/// anything else (empty edits, several edits, a rate other than 1).
fn edit_shift(edts: Option<&[u8]>) -> Option<i64> {
    let Some(edts) = edts else { return Some(0) };
    let Some(elst) = child(edts, b"elst") else { return Some(0) };
    let version = *elst.first()?;
    let entry = if version == 1 { 20 } else { 12 };
    let (count, entries) = table(elst, entry)?;
    if count != 1 {
        return None;
    }
    let (media_time, rate) = if version == 1 {
        (u64_at(entries, 8)? as i64, u32_at(entries, 16)?)
    } else {
        (i64::from(u32_at(entries, 4)? as i32), u32_at(entries, 8)?)
    };
    (media_time >= 0 && rate == 0x0001_0000).then_some(media_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn ffmpeg(args: &[&str]) {
        let status = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).status().unwrap();
        assert!(status.success(), "ffmpeg {args:?}");
    }

    /// What ffprobe lists for the same file: the reference.
    fn ffprobe(path: &Path) -> VideoPackets {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["packet=pts_time,flags:stream=width,height,time_base", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .unwrap();
        crate::transcode::parse_video_packets(&String::from_utf8_lossy(&out.stdout)).unwrap()
    }

    fn assert_same(path: &Path) -> VideoPackets {
        let ours = video_packets(path).unwrap_or_else(|| panic!("{} not read", path.display()));
        let reference = ffprobe(path);
        assert_eq!((ours.width, ours.height), (reference.width, reference.height), "{}", path.display());
        assert_eq!(ours.ticks_per_second, reference.ticks_per_second, "{}", path.display());
        assert_eq!(ours.times.len(), reference.times.len(), "{}", path.display());
        assert_eq!(ours.keyframes.len(), reference.keyframes.len(), "{}", path.display());
        for (a, b) in ours.times.iter().zip(&reference.times).chain(ours.keyframes.iter().zip(&reference.keyframes)) {
            assert!((a - b).abs() < 1e-6, "{}: {a} against ffprobe's {b}", path.display());
        }
        ours
    }

    #[test]
    fn reads_what_ffprobe_lists_from_the_files_ffmpeg_writes() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let source = "testsrc2=size=320x180:rate=30000/1001:duration=7";
        // Like the service's outputs: B-frames (so an edit list), audio, faststart.
        ffmpeg(
            &["-f", "lavfi", "-i", source, "-f", "lavfi", "-i", "sine=duration=7"]
                .into_iter()
                .chain(["-c:v", "libx264", "-g", "48", "-c:a", "aac", "-movflags", "+faststart", &at("out.mp4")])
                .collect::<Vec<_>>(),
        );
        let out = assert_same(&dir.path().join("out.mp4"));
        assert_eq!(out.times.len(), 210);
        assert!(out.keyframes.len() >= 5, "{:?}", out.keyframes);
        // No B-frames, the index at the end, an odd size.
        ffmpeg(
            &["-f", "lavfi", "-i", "testsrc2=size=322x182:rate=25:duration=3", "-c:v", "libx264"]
                .into_iter()
                .chain(["-preset", "ultrafast", &at("plain.mp4")])
                .collect::<Vec<_>>(),
        );
        assert_eq!(assert_same(&dir.path().join("plain.mp4")).times.len(), 75);
        // Like a piece: an accurate seek, a frame count, closed GOPs.
        ffmpeg(
            &["-ss", "2.002", "-i", &at("out.mp4"), "-an", "-c:v", "libx264", "-flags", "+cgop"]
                .into_iter()
                .chain([
                    "-x264-params",
                    "stitchable=1",
                    "-frames:v",
                    "90",
                    "-fps_mode",
                    "passthrough",
                    &at("piece.mp4"),
                ])
                .collect::<Vec<_>>(),
        );
        assert_eq!(assert_same(&dir.path().join("piece.mp4")).times.len(), 90);
    }

    #[test]
    fn describes_an_output_as_ffprobe_does() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let tags = crate::domain::picture::OUTPUT_TAGS;
        let mut args = vec!["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=3.3"];
        args.extend(["-f", "lavfi", "-i", "sine=duration=3:sample_rate=48000", "-c:v", "libx264"]);
        args.extend(tags);
        args.extend(["-ac", "2", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4"]);
        let out = at("out.mp4");
        args.push(&out);
        ffmpeg(&args);
        let json = Command::new("ffprobe")
            .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams", &out])
            .output()
            .unwrap()
            .stdout;
        let reference = crate::transcode::parse_probe(&json).unwrap();
        let ours = describe(Path::new(&out)).expect("read");
        assert!((ours.duration_seconds - reference.duration_seconds).abs() < 0.0005, "{ours:?} {reference:?}");
        assert_eq!((ours.width, ours.height), (reference.width, reference.height));
        assert_eq!(ours.video_codec, reference.video_codec);
        assert_eq!(ours.audio_codec, reference.audio_codec);
        assert_eq!(ours.audio_sample_rate, reference.audio_sample_rate);
        assert_eq!(ours.color, reference.color);
        assert_eq!(ours.color.primaries.as_deref(), Some("bt709"));
        // Video only, and full range.
        let mut args = vec!["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-c:v", "libx264"];
        args.extend(["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]);
        let full = at("full.mp4");
        args.extend(["-color_range", "pc", &full]);
        ffmpeg(&args);
        let ours = describe(Path::new(&full)).expect("read");
        assert_eq!((ours.audio_codec, ours.color.range.as_deref()), (None, Some("pc")));
        // No colour box: left to ffprobe.
        let bare = at("bare.mp4");
        ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-c:v", "libx264", &bare]);
        assert!(describe(Path::new(&bare)).is_none());
    }

    #[test]
    fn other_files_are_left_to_ffprobe() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let source = "testsrc2=size=160x90:rate=25:duration=2";
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            source,
            "-c:v",
            "libx264",
            "-movflags",
            "+frag_keyframe+empty_moov",
            &at("f.mp4"),
        ]);
        assert!(video_packets(&dir.path().join("f.mp4")).is_none(), "fragmented");
        ffmpeg(&["-f", "lavfi", "-i", source, "-c:v", "libvpx-vp9", "-deadline", "realtime", &at("v.webm")]);
        assert!(video_packets(&dir.path().join("v.webm")).is_none(), "webm");
        ffmpeg(&["-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", &at("a.mp4")]);
        assert!(video_packets(&dir.path().join("a.mp4")).is_none(), "no video track");
        ffmpeg(&["-f", "lavfi", "-i", source, "-c:v", "libx264", "-movflags", "+faststart", &at("whole.mp4")]);
        let whole = std::fs::read(dir.path().join("whole.mp4")).unwrap();
        for cut in [12, 40, 200, 700, whole.len() / 2] {
            std::fs::write(dir.path().join("cut.mp4"), &whole[..cut]).unwrap();
            // Truncated: read or refused, never a panic.
            if let Some(p) = video_packets(&dir.path().join("cut.mp4")) {
                assert_eq!(p.times.len(), 50);
            }
        }
        std::fs::write(dir.path().join("none.mp4"), b"").unwrap();
        assert!(video_packets(&dir.path().join("none.mp4")).is_none());
        assert!(video_packets(&dir.path().join("missing.mp4")).is_none());
    }
}
