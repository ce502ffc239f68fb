//! What ffprobe says of an MP4 that ffmpeg wrote, read from its boxes.

use std::path::Path;

use super::boxes::{boxes, child, first_entry, read_moov, u16_at, u32_at, u64_at, visual_size};
use crate::domain::Color;
use crate::transcode::MediaInfo;

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
        let (kind, entry) = first_entry(stsd)?;
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
    let (width, height) = visual_size(entry)?;
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
