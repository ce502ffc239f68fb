//! Recognises video containers from their first bytes, never from a name
//! or a declared type.

use crate::domain::Container;

/// Bytes needed to decide; shorter bodies are judged on what they have.
pub const SNIFF_LEN: usize = 512;

pub fn sniff(head: &[u8]) -> Option<Container> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);

    if at(4, b"ftyp") {
        return Some(if at(8, b"qt  ") { Container::Quicktime } else { Container::Mp4 });
    }
    // QuickTime files that start with another top-level atom.
    if [b"moov", b"mdat", b"wide", b"free", b"skip"].iter().any(|m| at(4, *m)) && head.len() >= 8 {
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if size == 1 || size >= 8 {
            return Some(Container::Quicktime);
        }
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        let is_webm = head.windows(4).any(|w| w == b"webm");
        return Some(if is_webm { Container::Webm } else { Container::Matroska });
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some(Container::Avi);
    }
    if at(0, &[0x00, 0x00, 0x01, 0xBA]) {
        return Some(Container::MpegPs);
    }
    if head.first() == Some(&0x47) && head.get(188) == Some(&0x47) && head.get(376).is_none_or(|b| *b == 0x47) {
        return Some(Container::MpegTs);
    }
    if at(0, b"FLV") && head.get(3) == Some(&1) {
        return Some(Container::Flv);
    }
    if at(0, b"OggS") {
        return Some(Container::Ogg);
    }
    if at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        return Some(Container::Asf);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_common_containers() {
        let mut mp4 = vec![0, 0, 0, 0x20];
        mp4.extend_from_slice(b"ftypisom");
        assert_eq!(sniff(&mp4), Some(Container::Mp4));
        let mut mov = vec![0, 0, 0, 0x14];
        mov.extend_from_slice(b"ftypqt  ");
        assert_eq!(sniff(&mov), Some(Container::Quicktime));
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84];
        webm.extend_from_slice(b"webm");
        assert_eq!(sniff(&webm), Some(Container::Webm));
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI LIST"), Some(Container::Avi));
    }

    #[test]
    fn rejects_text_playlists_and_images() {
        assert_eq!(sniff(b"hello, this is not a video at all"), None);
        assert_eq!(sniff(b"#EXTM3U\n#EXT-X-VERSION:3\n"), None);
        assert_eq!(sniff(b"ffconcat version 1.0\nfile a.mp4\n"), None);
        assert_eq!(sniff(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]), None);
        assert_eq!(sniff(b""), None);
    }
}
