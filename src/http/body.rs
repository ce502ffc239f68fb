//! Request bodies that may not stay silent: an upload whose body sends
//! nothing for `http.body_idle_timeout_seconds` is ended with an error.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Error of a body stream that went silent.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct Idle(Duration);

/// Ends a body stream with an error when no data arrives for `limit`.
pub fn idle_limited<S, E>(body: S, limit: Duration) -> impl Stream<Item = Result<Bytes, IdleOr<E>>> + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let stream = futures::stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(limit, body.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), Some(body))),
            Ok(Some(Err(e))) => Some((Err(IdleOr::Body(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(IdleOr::Idle(Idle(limit))), None)),
        }
    })
    .fuse();
    Box::pin(stream)
}

/// A body error or silence.
#[derive(Debug)]
pub enum IdleOr<E> {
    Body(E),
    Idle(Idle),
}

impl<E: std::fmt::Display> std::fmt::Display for IdleOr<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdleOr::Body(e) => e.fmt(f),
            IdleOr::Idle(i) => i.fmt(f),
        }
    }
}
