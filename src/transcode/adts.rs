//! AAC in ADTS framing: each packet carries its own length, so a range of
//! packets is cut from a file without a demuxer, and the ranges of a split
//! job's pieces are put end to end into one stream.

use crate::domain::audio::AudioCut;

/// The byte ranges of the ADTS frames in `bytes`, in order; stops at the
/// first thing that is not a frame header.
pub fn frames(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 7 <= bytes.len() {
        let h = &bytes[at..at + 7];
        if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
            break;
        }
        let length = ((usize::from(h[3]) & 0x03) << 11) | (usize::from(h[4]) << 3) | (usize::from(h[5]) >> 5);
        if length < 7 || at + length > bytes.len() {
            break;
        }
        out.push(at..at + length);
        at += length;
    }
    out
}

/// The packets of `cut` from one piece's encode: `keep` of them from
/// `keep_from` (fewer where the audio ends early), or all from there.
pub fn cut(bytes: &[u8], cut: &AudioCut) -> Vec<u8> {
    let frames = frames(bytes);
    let from = (cut.keep_from as usize).min(frames.len());
    let to = match cut.keep {
        Some(n) => (from + n as usize).min(frames.len()),
        None => frames.len(),
    };
    match (frames.get(from), to.checked_sub(1).and_then(|t| frames.get(t))) {
        (Some(first), Some(last)) if to > from => bytes[first.start..last.end].to_vec(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake ADTS frame of `len` bytes whose payload is `tag`.
    fn frame(len: usize, tag: u8) -> Vec<u8> {
        let mut f = vec![0xFF, 0xF1, 0x50, 0x80, 0, 0, 0xFC];
        f[3] |= ((len >> 11) & 0x03) as u8;
        f[4] = ((len >> 3) & 0xFF) as u8;
        f[5] = (((len & 0x07) << 5) as u8) | 0x1F;
        f.resize(len, tag);
        f
    }

    #[test]
    fn frames_are_found_by_their_lengths_and_a_range_is_cut_out() {
        let bytes: Vec<u8> = (0..6u8).flat_map(|i| frame(10 + i as usize, i)).collect();
        let found = frames(&bytes);
        assert_eq!(found.len(), 6);
        assert_eq!(found[2], (10 + 11)..(10 + 11 + 12));
        let middle = cut(&bytes, &AudioCut { first_sample: 0, end_sample: None, keep_from: 2, keep: Some(3) });
        assert_eq!(frames(&middle).len(), 3);
        assert_eq!(middle[7], 2);
        assert_eq!(*middle.last().unwrap(), 4);
        let tail = cut(&bytes, &AudioCut { first_sample: 0, end_sample: None, keep_from: 4, keep: None });
        assert_eq!(frames(&tail).len(), 2);
        let past = cut(&bytes, &AudioCut { first_sample: 0, end_sample: None, keep_from: 9, keep: Some(2) });
        assert!(past.is_empty());
    }
}
