//! Walking an MP4's boxes: the `moov` box read from a file, the children
//! of a payload, big-endian fields and full-box tables, all bounds-checked.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The largest `moov` read into memory.
const MAX_MOOV: u64 = 64 << 20;

/// The `moov` box's payload, found by walking the top-level boxes.
pub(super) fn read_moov(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
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
pub(super) fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
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

pub(super) fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

pub(super) fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

pub(super) fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

pub(super) fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

/// A full box's entries: `(count, entries)` after version/flags and count,
/// with the count checked against the bytes there are.
pub(super) fn table(data: &[u8], entry: usize) -> Option<(usize, &[u8])> {
    let count = u32_at(data, 4)? as usize;
    let entries = data.get(8..)?;
    (entries.len() / entry >= count).then_some((count, entries))
}

/// The first sample entry of an `stsd` payload: its format and its body.
pub(super) fn first_entry(stsd: &[u8]) -> Option<([u8; 4], &[u8])> {
    if u32_at(stsd, 4)? == 0 {
        return None;
    }
    boxes(stsd.get(8..)?).next()
}

/// A visual sample entry's coded width and height (its body: 6 reserved
/// bytes, the data reference index, 16 of pre-defined and reserved, then
/// the size at 24).
pub(super) fn visual_size(entry: &[u8]) -> Option<(u32, u32)> {
    let (w, h) = (u16_at(entry, 24)?, u16_at(entry, 26)?);
    (w > 0 && h > 0).then_some((u32::from(w), u32::from(h)))
}
