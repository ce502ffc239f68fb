//! Appending a request's bytes to an upload: full parts to the multipart
//! upload as they fill, the rest as the new tail, then the record.

use bytes::Bytes;
use chrono::Utc;
use futures::{Stream, StreamExt};

use super::{record_key, tail_key, AppendError, Appended, Upload, Uploads, PART_SIZE};
use crate::domain::ClientId;
use crate::sniff::{sniff, SNIFF_LEN};
use crate::storage::{Expect, StoreError, Versioned};

impl Uploads {
    /// Appends `body` at the upload's offset: full parts go to the
    /// multipart upload as they fill, the rest becomes the new tail, then
    /// the record is written if nobody else wrote it meanwhile. If the body
    /// fails midway, what arrived is still stored. When the request
    /// announces (`declared`) at least a part's worth of bytes from a part's
    /// start, that part is streamed to the store while it arrives, so the
    /// request's receive and its store write overlap.
    pub async fn append<S, E>(
        &self,
        client: &ClientId,
        current: Versioned<Upload>,
        mut body: S,
        declared: Option<u64>,
    ) -> Result<Appended<E>, AppendError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let Versioned { value: upload, etag } = current;
        let mut buf = self.read_tail(client, &upload).await?;
        let mut next = upload.clone();
        let mut in_flight: Option<tokio::task::JoinHandle<Result<(i32, String), StoreError>>> = None;
        let mut interrupted = None;
        let sniff_len = (SNIFF_LEN as u64).min(upload.length) as usize;
        // A part on its way to the store while it arrives; its bytes are
        // kept in `buf` too, so an interrupted request still stores them.
        let mut streaming: Option<tokio::sync::mpsc::Sender<Bytes>> = None;
        let mut announced = declared;

        let filled: Result<(), AppendError<E>> = async {
            while let Some(chunk) = body.next().await {
                let mut chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        interrupted = Some(e);
                        break;
                    }
                };
                if next.offset + chunk.len() as u64 > next.length {
                    return Err(AppendError::TooLong);
                }
                next.offset += chunk.len() as u64;
                // Sniffed as soon as the first bytes are here (until then the
                // buffer holds fewer than `sniff_len`).
                let unsniffed = next.container.is_none() && next.parts.is_empty();
                if unsniffed && buf.pending().len() + chunk.len() >= sniff_len {
                    let mut head = buf.pending().to_vec();
                    let need = sniff_len.saturating_sub(head.len());
                    head.extend_from_slice(&chunk[..need.min(chunk.len())]);
                    next.container = Some(sniff(&head).ok_or(AppendError::NotVideo)?);
                }
                while !chunk.is_empty() {
                    let whole_part_coming = announced.is_some_and(|n| n >= PART_SIZE);
                    if streaming.is_none() && buf.pending().is_empty() && whole_part_coming && next.multipart.is_some()
                    {
                        if let Some(task) = in_flight.take() {
                            next.parts.push(joined(task).await?);
                        }
                        let (tx, rx) = tokio::sync::mpsc::channel(32);
                        let (storage, multipart) = (self.storage.clone(), multipart_of(&next)?);
                        let number = next.parts.len() as i32 + 1;
                        in_flight = Some(tokio::spawn(async move {
                            let etag = storage.upload_part_streamed(&multipart, number, PART_SIZE, rx).await?;
                            Ok((number, etag))
                        }));
                        streaming = Some(tx);
                    }
                    let room = PART_SIZE as usize - buf.pending().len();
                    let piece = chunk.split_to(room.min(chunk.len()));
                    announced = announced.map(|n| n.saturating_sub(piece.len() as u64));
                    if let Some(tx) = &streaming {
                        if tx.send(piece.clone()).await.is_err() {
                            // The part's upload failed: its task reports why.
                            streaming = None;
                        }
                    }
                    for part in buf.push(&piece) {
                        if streaming.take().is_some() {
                            // Already sent; dropping the sender ends its body.
                            continue;
                        }
                        if let Some(task) = in_flight.take() {
                            next.parts.push(joined(task).await?);
                        }
                        let (storage, multipart) = (self.storage.clone(), multipart_of(&next)?);
                        let number = next.parts.len() as i32 + 1;
                        in_flight = Some(tokio::spawn(async move {
                            storage.upload_part(&multipart, number, part).await.map(|etag| (number, etag))
                        }));
                    }
                }
            }
            if let Some(task) = in_flight.take() {
                if streaming.take().is_some() {
                    // Interrupted inside a streamed part: that part is not
                    // stored; its bytes stay in `buf` and become the tail.
                    let _ = task.await;
                } else {
                    next.parts.push(joined(task).await?);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = filled {
            if let Some(task) = in_flight.take() {
                let _ = task.await;
            }
            return Err(e);
        }
        if next.offset == upload.offset {
            return match interrupted {
                Some(e) => Err(AppendError::Body(e)),
                None => Ok(Appended { upload, interrupted: None }),
            };
        }
        if next.container.is_none() && next.is_whole() {
            // Shorter than the sniffed prefix: judged on all of it.
            next.container = Some(sniff(buf.pending()).ok_or(AppendError::NotVideo)?);
        }
        next.expires_at = Utc::now() + self.expiry;
        let new_tail = (!buf.pending().is_empty()).then(|| tail_key(client, upload.id, next.offset));
        if let Some(key) = &new_tail {
            self.storage.put_bytes(key, buf.into_rest(), "application/octet-stream").await?;
        }
        match self.storage.put_json_if(&record_key(client, upload.id), &next, Expect::Version(&etag)).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                // Another request stored bytes meanwhile. If it reached the
                // same offset it stored the same bytes: that is success.
                let now = self.load(client, upload.id).await?;
                if now.as_ref().is_some_and(|n| n.value.offset == next.offset) {
                    return Ok(Appended { upload: now.expect("checked").value, interrupted });
                }
                if let Some(key) = &new_tail {
                    let _ = self.storage.delete(key).await;
                }
                return Err(AppendError::Conflict);
            }
            Err(e) => return Err(e.into()),
        }
        if upload.offset > upload.parts_end() {
            let old = tail_key(client, upload.id, upload.offset);
            if new_tail.as_deref() != Some(old.as_str()) {
                let _ = self.storage.delete(&old).await;
            }
        }
        Ok(Appended { upload: next, interrupted })
    }
}

fn multipart_of<E>(upload: &Upload) -> Result<crate::storage::MultipartRef, AppendError<E>> {
    let missing = || StoreError::Corrupt("an upload of more than one part has no multipart upload".into());
    Ok(upload.multipart.clone().ok_or_else(missing)?)
}

async fn joined<E>(
    task: tokio::task::JoinHandle<Result<(i32, String), StoreError>>,
) -> Result<(i32, String), AppendError<E>> {
    task.await.map_err(|e| StoreError::Unavailable(format!("part upload task: {e}")))?.map_err(AppendError::Store)
}
