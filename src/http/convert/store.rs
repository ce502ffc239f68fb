//! The body of a direct upload into the store: the first bytes sniffed,
//! then the whole body streamed to `inputs/<client>/<id>` (or, for an
//! idempotent replay, only hashed), recorded under `uploads/` while it runs.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::super::upload::not_video;
use super::super::{ApiError, AppState};
use crate::domain::{ClientId, Container, JobId};
use crate::sniff::{sniff, SNIFF_LEN};
use crate::storage::{input_key, Journal, PendingPut, PutStreamError};

/// A received upload, before it becomes a job. Its last write to the store
/// is still pending (`None` for a replay, which stores nothing).
pub(super) struct StoredInput {
    pub(super) container: Container,
    pub(super) size: u64,
    pub(super) filename: Option<String>,
    pub(super) pending: Option<PendingPut>,
}

/// Where an upload goes: into the store, and through a hash when the
/// request carries an Idempotency-Key.
pub(super) struct Sink {
    pub(super) store: bool,
    pub(super) hasher: Option<Arc<Mutex<Sha256>>>,
}

/// Upload failure, before it is turned into an HTTP error.
pub(super) enum StoreInputError<E> {
    Empty,
    NotVideo,
    Put(PutStreamError<E>),
}

impl<E> StoreInputError<E> {
    pub(super) fn into_api(self, body_error: impl FnOnce(E) -> ApiError) -> ApiError {
        match self {
            StoreInputError::Empty => {
                ApiError::BadRequest { code: "empty-body", detail: "the request body is empty".into() }
            }
            StoreInputError::NotVideo => not_video(),
            StoreInputError::Put(PutStreamError::Body(e)) => body_error(e),
            StoreInputError::Put(PutStreamError::TooLarge(limit)) => ApiError::PayloadTooLarge(limit),
            StoreInputError::Put(PutStreamError::Store(e)) => e.into(),
        }
    }
}

/// Reads enough of the body to recognise the container, then streams the
/// whole body to `inputs/<client>/<id>`.
pub(super) async fn store_input<S, E>(
    state: &AppState,
    client: &ClientId,
    id: JobId,
    body: S,
    filename: Option<String>,
    sink: &Sink,
) -> Result<StoredInput, StoreInputError<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let hasher = sink.hasher.clone();
    let mut body = body.map(move |chunk| {
        if let (Ok(bytes), Some(h)) = (&chunk, &hasher) {
            h.lock().unwrap().update(bytes);
        }
        chunk
    });
    let mut head = BytesMut::new();
    while head.len() < SNIFF_LEN {
        match body.next().await {
            Some(chunk) => head.extend_from_slice(&chunk.map_err(|e| StoreInputError::Put(PutStreamError::Body(e)))?),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(StoreInputError::Empty);
    }
    let container = sniff(&head).ok_or(StoreInputError::NotVideo)?;
    let limit = state.settings.http.max_upload_bytes;
    let (size, pending) = if sink.store {
        let key = input_key(client, id);
        let pending = state
            .storage
            .receive_stream(
                &key,
                container.content_type(),
                head.freeze(),
                body,
                limit,
                Some(journal(state, client, id)),
            )
            .await
            .map_err(StoreInputError::Put)?;
        (pending.size(), Some(pending))
    } else {
        // A replay: the bytes are only hashed, to compare with the first request.
        let mut size = head.len() as u64;
        while let Some(chunk) = body.next().await {
            size += chunk.map_err(|e| StoreInputError::Put(PutStreamError::Body(e)))?.len() as u64;
            if size > limit {
                return Err(StoreInputError::Put(PutStreamError::TooLarge(limit)));
            }
        }
        (size, None)
    };
    Ok(StoredInput { container, size, filename, pending })
}

/// Where a direct upload records its multipart upload while it runs, so
/// the sweeper can abort it should this process die.
fn journal(state: &AppState, client: &ClientId, id: JobId) -> Journal {
    let expiry = chrono::Duration::seconds(state.settings.http.upload_expiry_seconds.min(1 << 40) as i64);
    Journal { key: crate::uploads::direct_record_key(client, id), expires_at: Utc::now() + expiry }
}
