//! An MP4 read from its boxes, in-process: the video track's frame times,
//! keyframes and coded size as ffprobe lists them, and the description of
//! an output ffmpeg wrote (duration, size, codecs, colour), without
//! starting ffprobe (whose start alone costs about 50 ms of a core). For
//! the files ffmpeg writes (outputs, pieces) and plain MP4 inputs; anything
//! else (fragmented files, several edits, a table or a code it cannot
//! account for) gives `None`, and callers ask ffprobe.

mod boxes;
mod describe;

use std::path::Path;

use boxes::{boxes, child, first_entry, read_moov, table, u32_at, u64_at, visual_size};
pub use describe::describe;

use super::VideoPackets;

/// The most samples a track may declare.
const MAX_SAMPLES: u64 = 10_000_000;

/// The first video track of the MP4 at `path`, or `None` if it is not one
/// this reader fully understands.
pub fn video_packets(path: &Path) -> Option<VideoPackets> {
    let moov = read_moov(path).ok()??;
    let track = boxes(&moov).filter(|(kind, _)| kind == b"trak").find_map(|(_, trak)| video_track(trak));
    track?
}

/// `None`: not a video track (the next is looked at); `Some(None)`: a video
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
    let (width, height) = visual_size(first_entry(child(stbl, b"stsd")?)?.1)?;
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
mod tests;
