//! A package's files into the store: segments as soon as ffmpeg closes
//! them, everything else at the end, each with its content type.

use std::collections::HashMap;
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};

use super::super::common::{JobError, Run};
use crate::storage::{output_file_key, StoreError};

/// Files stored at once.
const UPLOADS_AT_ONCE: usize = 8;

/// How often the package folder is looked at for closed segments.
pub(super) const UPLOAD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// The package's files stored so far, with their sizes.
pub(super) struct Uploads {
    dir: PathBuf,
    /// DASH's audio representation (its files are `audio/mp4`).
    audio_rep: usize,
    stored: HashMap<String, u64>,
}

impl Uploads {
    pub(super) fn new(dir: PathBuf, audio_rep: usize) -> Uploads {
        Uploads { dir, audio_rep, stored: HashMap::new() }
    }

    /// Stores the files not stored yet: those ffmpeg has closed (a segment
    /// whose successor exists, an init segment whose first segment does),
    /// or, at the end (`all`), every one.
    pub(super) async fn store(&mut self, run: &Run<'_>, all: bool) -> Result<(), JobError> {
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        let ready: Vec<String> =
            names.iter().filter(|n| !self.stored.contains_key(*n) && (all || closed(n, &names))).cloned().collect();
        let storage = &run.ctx.storage;
        let audio_rep = self.audio_rep;
        let dir = &self.dir;
        let sizes: Vec<(String, u64)> = futures::stream::iter(ready)
            .map(|name| async move {
                let key = output_file_key(run.client, run.id, &name);
                let size = storage.put_file(&key, &dir.join(&name), content_type(&name, audio_rep)).await?;
                Ok::<_, StoreError>((name, size))
            })
            .buffer_unordered(UPLOADS_AT_ONCE)
            .try_collect()
            .await?;
        self.stored.extend(sizes);
        Ok(())
    }

    pub(super) fn total(&self) -> u64 {
        self.stored.values().sum()
    }
}

/// Whether ffmpeg is done with a file of the package while it still runs.
fn closed(name: &str, names: &[String]) -> bool {
    let exists = |n: &str| names.iter().any(|x| x == n);
    if let Some(stem) = name.strip_suffix(".m4s") {
        let digits = stem.len() - stem.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (prefix, number) = stem.split_at(digits);
        return match number.parse::<u64>() {
            Ok(n) => exists(&format!("{prefix}{:0width$}.m4s", n + 1, width = number.len())),
            Err(_) => false,
        };
    }
    let segments =
        match (name.strip_suffix("_init.mp4"), name.strip_prefix("init-").and_then(|r| r.strip_suffix(".mp4"))) {
            (Some(rendition), _) => format!("{rendition}_"),
            (None, Some(rep)) => format!("chunk-{rep}-"),
            _ => return false,
        };
    names.iter().any(|n| n.starts_with(&segments) && n.ends_with(".m4s"))
}

/// The content type a package file is stored (and served) with; DASH's
/// audio representation is the one after the renditions.
fn content_type(name: &str, audio_rep: usize) -> &'static str {
    if name.ends_with(".m3u8") {
        "application/vnd.apple.mpegurl"
    } else if name.ends_with(".mpd") {
        "application/dash+xml"
    } else if name == format!("init-{audio_rep}.mp4") || name.starts_with(&format!("chunk-{audio_rep}-")) {
        "audio/mp4"
    } else {
        "video/mp4"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_segment_is_closed_once_its_successor_exists() {
        use super::closed;
        let names: Vec<String> = [
            "720p_init.mp4",
            "720p_00000.m4s",
            "720p_00001.m4s",
            "init-0.mp4",
            "init-1.mp4",
            "chunk-1-00009.m4s",
            "chunk-1-00010.m4s",
            "720p.m3u8",
        ]
        .map(String::from)
        .to_vec();
        assert!(closed("720p_00000.m4s", &names));
        assert!(!closed("720p_00001.m4s", &names));
        assert!(closed("chunk-1-00009.m4s", &names));
        assert!(!closed("chunk-1-00010.m4s", &names));
        assert!(closed("720p_init.mp4", &names));
        assert!(closed("init-1.mp4", &names));
        assert!(!closed("init-0.mp4", &names));
        assert!(!closed("720p.m3u8", &names));
    }

    #[test]
    fn package_files_have_their_content_types() {
        use super::content_type;
        assert_eq!(content_type("master.m3u8", usize::MAX), "application/vnd.apple.mpegurl");
        assert_eq!(content_type("manifest.mpd", 2), "application/dash+xml");
        assert_eq!(content_type("chunk-2-00001.m4s", 2), "audio/mp4");
        assert_eq!(content_type("init-2.mp4", 2), "audio/mp4");
        assert_eq!(content_type("chunk-1-00001.m4s", 2), "video/mp4");
        assert_eq!(content_type("720p_00000.m4s", usize::MAX), "video/mp4");
    }
}
