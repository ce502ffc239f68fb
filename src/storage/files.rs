//! Local files to and from the store: a worker's outputs and pieces up,
//! its private working copy of an input down.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{unavailable, PutStreamError, Storage, StoreError};

/// Largest local file uploaded with a single PUT (S3 allows 5 GiB).
const SINGLE_PUT_MAX: u64 = 256 * 1024 * 1024;

impl Storage {
    /// Uploads a local file (a transcoded output or a piece): one streamed
    /// PUT up to [`SINGLE_PUT_MAX`] (the store writes it once, with no
    /// parts to assemble), a multipart upload above.
    pub async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<u64, StoreError> {
        let size = tokio::fs::metadata(path).await?.len();
        if size <= SINGLE_PUT_MAX {
            let body = ByteStream::from_path(path).await.map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .content_length(size as i64)
                .body(body)
                .send()
                .await
                .map_err(unavailable)?;
            return Ok(size);
        }
        let file = tokio::fs::File::open(path).await?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        self.put_stream(key, content_type, Bytes::new(), stream, u64::MAX).await.map_err(|e| match e {
            PutStreamError::Body(io) => StoreError::Io(io),
            PutStreamError::Store(s) => s,
            PutStreamError::TooLarge(_) => unreachable!("no limit on outputs"),
        })
    }

    /// Copies an object into a local file; `None` when it does not exist.
    pub async fn download_to_file(&self, key: &str, path: &Path) -> Result<Option<u64>, StoreError> {
        let Some(object) = self.get(key, None).await? else {
            return Ok(None);
        };
        let mut reader = object.body.into_async_read();
        // Network reads come in pieces of a few KiB; each write to a tokio
        // file is a trip to the blocking pool, so write whole MiBs.
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(path).await?);
        let n = tokio::io::copy_buf(&mut reader, &mut file).await?;
        file.flush().await?;
        Ok(Some(n))
    }

    /// The object's size; `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(super::unavailable(e)),
        }
    }
}
