//! JSON documents in the store (status documents, upload records), read
//! with their ETag and written unconditionally or only if unchanged.

use aws_sdk_s3::primitives::ByteStream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{unavailable, Storage, StoreError};

/// A document as stored, with the version a conditional write compares.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: String,
}

/// The precondition of a conditional write.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// The object must not exist yet (`If-None-Match: *`).
    Absent,
    /// The object must still have this ETag (`If-Match`).
    Version(&'a str),
}

impl Storage {
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let Some(object) = self.get(key, None).await? else {
            return Ok(None);
        };
        let bytes = object.body.collect().await.map_err(|e| StoreError::Unavailable(e.to_string()))?.into_bytes();
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// A document and its ETag; `None` when it does not exist.
    pub async fn get_json_versioned<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(object) = self.get(key, None).await? else {
            return Ok(None);
        };
        let etag =
            object.e_tag().map(String::from).ok_or_else(|| StoreError::Unavailable("store returned no ETag".into()))?;
        let bytes = object.body.collect().await.map_err(|e| StoreError::Unavailable(e.to_string()))?.into_bytes();
        let value = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(Versioned { value, etag }))
    }

    /// Writes a document only if `expect` still holds (S3 conditional
    /// writes); [`StoreError::Conflict`] when it does not.
    pub async fn put_json_if<T: Serialize>(&self, key: &str, value: &T, expect: Expect<'_>) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).expect("documents serialize");
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let request = match expect {
            Expect::Absent => request.if_none_match("*"),
            Expect::Version(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            // 412: the precondition failed; 409: a concurrent conditional
            // write to the same key won the race.
            Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) => {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).expect("documents serialize");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
