//! What both ways in (`POST /video/convert` and the resumable uploads)
//! share about a request's upload: its declared length and the memory it
//! may hold, the refusal of what is not a video, the client's file name.

use axum::http::{header, HeaderMap};

use super::ApiError;
use crate::storage::PART_SIZE;

pub fn not_video() -> ApiError {
    ApiError::UnsupportedMediaType(
        "the upload is not a video in a supported container (MP4, QuickTime, Matroska, WebM, AVI, MPEG-TS, MPEG-PS, FLV, Ogg, ASF)".into(),
    )
}

pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// The memory an upload of `declared` bytes holds at most while it
/// streams: the part being filled and the one being sent.
pub fn reservation(declared: Option<u64>) -> u64 {
    let most = 2 * PART_SIZE as u64;
    declared.map_or(most, |n| n.min(most))
}

/// The client's name for its file, for display only: last path component,
/// printable, at most 255 characters.
pub fn clean_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    last.chars().filter(|c| !c.is_control()).take(255).collect()
}
