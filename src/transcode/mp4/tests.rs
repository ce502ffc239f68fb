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
            .chain(["-x264-params", "stitchable=1", "-frames:v", "90", "-fps_mode", "passthrough", &at("piece.mp4")])
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
    ffmpeg(&["-f", "lavfi", "-i", source, "-c:v", "libx264", "-movflags", "+frag_keyframe+empty_moov", &at("f.mp4")]);
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
