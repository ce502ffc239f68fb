//! What a package's files say, read back after ffmpeg wrote them: each
//! rendition's segments (from its HLS playlist or the MPD's timeline),
//! codecs from the init segment, bitrates from the segments' sizes, and
//! the master playlist, which is written here rather than by ffmpeg (under
//! `-c copy` ffmpeg 5.1 omits `CODECS` and writes the configured, not the
//! measured, `BANDWIDTH`).

/// One rendition's media segments: file names and durations, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Segments {
    pub init: String,
    pub files: Vec<String>,
    pub durations: Vec<f64>,
}

/// The segments of an HLS media playlist (its `#EXT-X-MAP` and `#EXTINF`s).
pub fn hls_segments(playlist: &str) -> Option<Segments> {
    let mut init = None;
    let (mut files, mut durations) = (Vec::new(), Vec::new());
    let mut pending: Option<f64> = None;
    for line in playlist.lines().map(str::trim) {
        if let Some(map) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            init = map.split('"').next().map(str::to_string);
        } else if let Some(extinf) = line.strip_prefix("#EXTINF:") {
            pending = extinf.split(',').next().and_then(|d| d.parse().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            durations.push(pending.take()?);
            files.push(line.to_string());
        }
    }
    Some(Segments { init: init?, files, durations })
}

/// The segments of representation `rep` of an MPD written with
/// `$Number%05d$` templates and a `SegmentTimeline`.
pub fn dash_segments(mpd: &str, rep: usize) -> Option<Segments> {
    let start = mpd.find(&format!("<Representation id=\"{rep}\""))?;
    let body = &mpd[start..start + mpd[start..].find("</Representation>")?];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let t = &body[body.find(tag)?..];
        let t = &t[..t.find('>')?];
        let v = &t[t.find(&format!(" {name}=\""))? + name.len() + 3..];
        Some(v[..v.find('"')?].to_string())
    };
    let timescale: f64 = attr("<SegmentTemplate", "timescale")?.parse().ok()?;
    let first: usize = attr("<SegmentTemplate", "startNumber").unwrap_or_else(|| "1".into()).parse().ok()?;
    let mut durations = Vec::new();
    for s in body.split("<S ").skip(1) {
        let s = &s[..s.find("/>")?];
        let field = |name: &str| -> Option<f64> {
            let v = &s[s.find(&format!("{name}=\""))? + name.len() + 2..];
            v[..v.find('"')?].parse().ok()
        };
        let d = field("d")?;
        for _ in 0..=(field("r").unwrap_or(0.0) as usize) {
            durations.push(d / timescale);
        }
    }
    let files = (0..durations.len()).map(|i| format!("chunk-{rep}-{:05}.m4s", first + i)).collect();
    Some(Segments { init: format!("init-{rep}.mp4"), files, durations })
}

/// `avc1.PPCCLL` from an init segment's `avcC` box (profile, constraint
/// flags, level: RFC 6381).
pub fn avc_codec(init: &[u8]) -> Option<String> {
    let at = init.windows(4).position(|w| w == b"avcC")? + 4;
    let b = init.get(at..at + 4)?;
    Some(format!("avc1.{:02x}{:02x}{:02x}", b[1], b[2], b[3]))
}

/// A rendition as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub name: String,
    pub playlist: String,
    pub width: u32,
    pub height: u32,
    /// Bits per second of the fullest segment (rounded up).
    pub peak_bps: u64,
    /// Bits per second over the whole rendition.
    pub average_bps: u64,
    /// RFC 6381, video and audio.
    pub codecs: String,
    pub frame_rate: f64,
}

/// Peak and average bitrates from segment sizes (bytes) and durations.
pub fn bitrates(sizes: &[u64], durations: &[f64]) -> (u64, u64) {
    let peak = sizes
        .iter()
        .zip(durations)
        .filter(|(_, d)| **d > 0.0)
        .map(|(s, d)| (*s as f64 * 8.0 / d).ceil() as u64)
        .max()
        .unwrap_or(0);
    let total: f64 = durations.iter().sum();
    let average = if total > 0.0 { (sizes.iter().sum::<u64>() as f64 * 8.0 / total).ceil() as u64 } else { 0 };
    (peak, average)
}

/// The master playlist, highest rendition first.
pub fn master_playlist(renditions: &[Measured]) -> String {
    let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in renditions {
        m.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",RESOLUTION={}x{},FRAME-RATE={:.3}\n{}\n",
            r.peak_bps, r.average_bps, r.codecs, r.width, r.height, r.frame_rate, r.playlist
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_playlists_and_dash_timelines_give_the_segments() {
        let playlist = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n\
            #EXT-X-MAP:URI=\"720p_init.mp4\"\n#EXTINF:4.000000,\n720p_00000.m4s\n#EXTINF:2.040000,\n720p_00001.m4s\n#EXT-X-ENDLIST\n";
        let s = hls_segments(playlist).unwrap();
        assert_eq!(s.init, "720p_init.mp4");
        assert_eq!(s.files, vec!["720p_00000.m4s", "720p_00001.m4s"]);
        assert_eq!(s.durations, vec![4.0, 2.04]);
        let mpd = r#"<Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="2387022" width="1280" height="720">
            <SegmentTemplate timescale="12800" initialization="init-$RepresentationID$.mp4" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
            <SegmentTimeline><S t="0" d="51200" r="3" /><S d="25600" /></SegmentTimeline></SegmentTemplate></Representation>
            <Representation id="1" mimeType="video/mp4"></Representation>"#;
        let s = dash_segments(mpd, 0).unwrap();
        assert_eq!(s.durations, vec![4.0, 4.0, 4.0, 4.0, 2.0]);
        assert_eq!(s.files[4], "chunk-0-00005.m4s");
        assert_eq!(s.init, "init-0.mp4");
    }

    #[test]
    fn codecs_bitrates_and_the_master_playlist() {
        let init = [b"....avcC".as_slice(), &[1, 0x64, 0x00, 0x1f, 0xff]].concat();
        assert_eq!(avc_codec(&init).as_deref(), Some("avc1.64001f"));
        assert_eq!(bitrates(&[500_000, 250_000], &[4.0, 1.0]), (2_000_000, 1_200_000));
        let m = Measured {
            name: "720p".into(),
            playlist: "720p.m3u8".into(),
            width: 1280,
            height: 720,
            peak_bps: 2_000_000,
            average_bps: 1_200_000,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            frame_rate: 25.0,
        };
        assert_eq!(
            master_playlist(&[m]),
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=2000000,AVERAGE-BANDWIDTH=1200000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=25.000\n720p.m3u8\n"
        );
    }
}
