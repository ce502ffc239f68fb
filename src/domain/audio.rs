//! Audio of a split job encoded by its pieces: which samples each piece
//! encodes and which of its AAC packets it keeps, so that the packets end
//! to end make one gapless stream.

use super::plan::PlanState;

/// Samples per AAC frame (one packet), and the encoder's priming: ffmpeg's
/// AAC encoder starts with one packet of delay.
pub const AAC_FRAME: u64 = 1024;
/// Frames of audio encoded before a piece's own range and dropped, so that
/// the encoder has settled and the decoder's overlap with the previous
/// piece's last packet is made from the same signal.
const PRE_ROLL_FRAMES: u64 = 2;
/// Frames encoded past the range (and dropped): the encoder looks ahead.
const POST_ROLL_FRAMES: u64 = 2;

/// One piece's share of an AAC track encoded in parts that join without a
/// gap or a click: the piece encodes samples `[first_sample, end_sample)`
/// of the input's audio and keeps `keep` packets from packet `keep_from`.
///
/// Range k covers the samples from `A_k` (its start time rounded to whole
/// AAC frames) to `A_{k+1}`. Decoded frame `g` of an AAC stream covers
/// samples `[(g-1)·1024, g·1024)` (packet 0 is the priming) and is made from
/// packets `g-1` and `g`: so range k keeps packets `A_k/1024 + 1 ..=
/// A_{k+1}/1024` (the first range from packet 0, the last to the end), and
/// the packets put end to end are, frame for frame, one AAC stream of the
/// whole input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioCut {
    pub first_sample: u64,
    /// `None` for the last piece (to the end of the audio).
    pub end_sample: Option<u64>,
    pub keep_from: u64,
    /// `None` for the last piece (every packet to the end).
    pub keep: Option<u64>,
}

/// The first sample of a range starting at `seconds`, on a frame boundary.
fn range_start(seconds: f64, rate: u32) -> u64 {
    ((seconds.max(0.0) * rate as f64 / AAC_FRAME as f64).round() as u64) * AAC_FRAME
}

impl PlanState {
    /// The audio cut of piece `index` (`None` unless the pieces carry the audio).
    pub fn audio_cut(&self, index: u32) -> Option<AudioCut> {
        let rate = self.audio_sample_rate?;
        let k = index as usize;
        let start_of = |k: usize| range_start(self.pieces[..k].iter().map(|p| p.duration_seconds).sum(), rate);
        let start = start_of(k);
        let end = (k + 1 < self.pieces.len()).then(|| start_of(k + 1));
        let first_sample = start.saturating_sub(PRE_ROLL_FRAMES * AAC_FRAME);
        let frames_before = (start - first_sample) / AAC_FRAME;
        // The first range keeps the priming packet too.
        let keep_from = if start == 0 { 0 } else { frames_before + 1 };
        Some(AudioCut {
            first_sample,
            end_sample: end.map(|e| e + POST_ROLL_FRAMES * AAC_FRAME),
            keep_from,
            keep: end.map(|e| (e - start) / AAC_FRAME + u64::from(start == 0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PieceSpec;

    fn plan(durations: &[f64], rate: u32) -> PlanState {
        let pieces = durations
            .iter()
            .enumerate()
            .map(|(i, d)| PieceSpec {
                index: i as u32,
                start_frame: 0,
                frames: 1,
                seek_seconds: 0.0,
                duration_seconds: *d,
            })
            .collect();
        let mut p = PlanState::new(pieces, true);
        p.audio_sample_rate = Some(rate);
        p
    }

    #[test]
    fn the_ranges_tile_the_track_in_whole_frames_and_keep_each_packet_once() {
        let p = plan(&[4.0, 4.0, 4.0], 44_100);
        let cuts: Vec<AudioCut> = (0..3).map(|i| p.audio_cut(i).unwrap()).collect();
        // 4 s at 44.1 kHz = 172.27 frames → the boundary at frame 172.
        assert_eq!(cuts[0], AudioCut { first_sample: 0, end_sample: Some(174 * 1024), keep_from: 0, keep: Some(173) });
        assert_eq!(
            cuts[1],
            AudioCut { first_sample: 170 * 1024, end_sample: Some(347 * 1024), keep_from: 3, keep: Some(173) }
        );
        assert_eq!(cuts[2], AudioCut { first_sample: 343 * 1024, end_sample: None, keep_from: 3, keep: None });
        // Global packets: 0..=172 from the first, 173..=345 from the second, 346.. from the last.
        let global_first = |c: &AudioCut| c.first_sample / AAC_FRAME + c.keep_from;
        assert_eq!(global_first(&cuts[1]), 173);
        assert_eq!(global_first(&cuts[2]), 346);
    }

    #[test]
    fn without_a_sample_rate_one_task_encodes_the_audio() {
        let mut p = plan(&[4.0, 4.0], 48_000);
        assert!(!p.has_audio_task());
        p.audio_sample_rate = None;
        assert!(p.has_audio_task());
        assert_eq!(p.audio_cut(0), None);
    }
}
