//! Pure planning: the input's frame timestamps → the pieces of a split job.

use serde::{Deserialize, Serialize};

/// One piece of a split job: an exact frame range of the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PieceSpec {
    pub index: u32,
    /// The first frame, in presentation order.
    pub start_frame: u64,
    /// Frames in the piece; the encoder takes exactly these (`-frames:v`).
    pub frames: u64,
    /// Input seek position (`-ss`), relative to the input's start: halfway
    /// between the previous frame and this piece's first, so that accurate
    /// seeking drops exactly the frames before it; this piece's first frame
    /// itself when that is a keyframe (see [`split`]).
    pub seek_seconds: f64,
    /// Time from this piece's first frame to the next piece's first frame:
    /// the `duration` line of the join's concat list.
    pub duration_seconds: f64,
}

impl PieceSpec {
    pub fn name(&self) -> String {
        format!("piece-{:05}", self.index)
    }
}

/// Cuts the input into pieces of about `segment_seconds`, each starting on
/// a frame. `frame_times` are the video frames' presentation times in
/// seconds, `start_time` the input's start (what `-ss` counts from). A last
/// piece shorter than half a segment joins the one before it.
///
/// A piece's seek lies halfway between the frame before it and its first
/// frame, so that ffmpeg's accurate seek keeps exactly that frame whatever
/// the rounding; the demuxer then starts decoding at the keyframe before
/// the seek. A piece that starts on one of `keyframes` (times as in
/// `frame_times`; empty when the stream's time base is finer than the
/// microseconds `-ss` counts in) is sought to that frame's time itself, to
/// the microsecond, so that decoding starts at its own keyframe instead of
/// the one before it (a whole GOP less to decode and drop).
pub fn split(frame_times: &[f64], keyframes: &[f64], start_time: f64, segment_seconds: f64) -> Vec<PieceSpec> {
    let mut times: Vec<f64> = frame_times.iter().copied().filter(|t| t.is_finite()).collect();
    times.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    times.dedup();
    if times.is_empty() || segment_seconds <= 0.0 {
        return Vec::new();
    }
    let first = times[0];
    let mut starts: Vec<usize> = vec![0];
    let mut next_cut = first + segment_seconds;
    for (i, t) in times.iter().enumerate() {
        if *t >= next_cut - 1e-6 {
            starts.push(i);
            while next_cut <= *t + 1e-6 {
                next_cut += segment_seconds;
            }
        }
    }
    // A short tail joins the previous piece.
    if starts.len() > 1 {
        let last = *starts.last().expect("not empty");
        if times[times.len() - 1] - times[last] < segment_seconds / 2.0 {
            starts.pop();
        }
    }
    let step = frame_step(&times);
    let end_of = |k: usize| -> f64 {
        match starts.get(k + 1) {
            Some(&next) => times[next],
            None => times[times.len() - 1] + step,
        }
    };
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let end_frame = starts.get(k + 1).copied().unwrap_or(times.len());
            let on_keyframe = keyframes.binary_search_by(|k| k.total_cmp(&times[s])).is_ok();
            let seek = match s {
                0 => 0.0,
                _ if on_keyframe => (((times[s] - start_time) * 1e6).round() / 1e6).max(0.0),
                _ => ((times[s - 1] + times[s]) / 2.0 - start_time).max(0.0),
            };
            PieceSpec {
                index: k as u32,
                start_frame: s as u64,
                frames: (end_frame - s) as u64,
                seek_seconds: seek,
                duration_seconds: end_of(k) - times[s],
            }
        })
        .collect()
}

/// The usual spacing of frames (the median step), for the last frame's duration.
fn frame_step(times: &[f64]) -> f64 {
    let mut steps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0.0).collect();
    if steps.is_empty() {
        return 0.04;
    }
    steps.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    steps[steps.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize, fps: f64) -> Vec<f64> {
        (0..n).map(|i| i as f64 / fps).collect()
    }

    #[test]
    fn a_24_s_clip_at_25_fps_splits_into_six_exact_4_s_pieces() {
        let pieces = split(&frames(600, 25.0), &[], 0.0, 4.0);
        assert_eq!(pieces.len(), 6);
        assert!(pieces.iter().all(|p| p.frames == 100));
        assert_eq!(pieces.iter().map(|p| p.frames).sum::<u64>(), 600);
        assert_eq!(pieces[1].start_frame, 100);
        assert!((pieces[1].seek_seconds - 3.98).abs() < 1e-9);
        assert!((pieces[5].duration_seconds - 4.0).abs() < 1e-9);
        assert_eq!(pieces[0].seek_seconds, 0.0);
    }

    #[test]
    fn a_short_tail_joins_the_previous_piece_and_frames_are_neither_lost_nor_repeated() {
        // 10.2 s at 29.97 fps, 4 s pieces: 4, 4, 2.2 → 2.2 ≥ 2, kept.
        let times: Vec<f64> = (0..306).map(|i| i as f64 * 1001.0 / 30000.0).collect();
        let pieces = split(&times, &[], 0.0, 4.0);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.iter().map(|p| p.frames).sum::<u64>(), 306);
        for w in pieces.windows(2) {
            assert_eq!(w[0].start_frame + w[0].frames, w[1].start_frame);
            assert!((w[0].duration_seconds - w[0].frames as f64 * 1001.0 / 30000.0).abs() < 1e-9);
        }
        // 9 s: the 1 s tail is folded into the second piece.
        let pieces = split(&frames(225, 25.0), &[], 0.0, 4.0);
        assert_eq!(pieces.iter().map(|p| p.frames).collect::<Vec<_>>(), vec![100, 125]);
    }

    #[test]
    fn a_piece_that_starts_on_a_keyframe_is_sought_to_that_frame_to_the_microsecond() {
        // 29.97 fps, keyframes every 60 frames: the piece at frame 120 starts
        // on one, the piece at 240 does too, the one at 360 (a cut at 12 s
        // lands on frame 360, a keyframe) as well; frame 480 is not one.
        let times: Vec<f64> = (0..600).map(|i| i as f64 * 1001.0 / 30000.0).collect();
        let keyframes: Vec<f64> = times.iter().copied().step_by(60).filter(|t| *t < 15.0).collect();
        let pieces = split(&times, &keyframes, 1.5, 4.0);
        let starts: Vec<u64> = pieces.iter().map(|p| p.start_frame).collect();
        assert_eq!(starts, vec![0, 120, 240, 360, 480]);
        for p in &pieces[1..] {
            let first = times[p.start_frame as usize] - 1.5;
            if keyframes.contains(&times[p.start_frame as usize]) {
                assert!((p.seek_seconds - first).abs() <= 0.5e-6, "{p:?}");
                assert_eq!(p.seek_seconds, (p.seek_seconds * 1e6).round() / 1e6);
            } else {
                let halfway = first - 0.5 * 1001.0 / 30000.0;
                assert!((p.seek_seconds - halfway).abs() < 1e-9, "{p:?}");
            }
        }
        assert!(keyframes.contains(&times[360]) && !keyframes.contains(&times[480]));
    }

    #[test]
    fn seeks_count_from_the_inputs_start_time() {
        let times: Vec<f64> = frames(200, 25.0).iter().map(|t| t + 1.4).collect();
        let pieces = split(&times, &[], 1.4, 4.0);
        assert_eq!(pieces.len(), 2);
        assert!((pieces[1].seek_seconds - 3.98).abs() < 1e-9);
    }
}
