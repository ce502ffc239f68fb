//! Request bodies that may not stay silent: an upload whose body sends
//! nothing for `http.body_idle_timeout_seconds` is ended with an error
//! (`tokio-stream`'s per-item timeout, ended at the first silence).

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
    let mut items = Box::pin(tokio_stream::StreamExt::timeout(body, limit).map(move |item| match item {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(IdleOr::Body(e)),
        Err(_) => Err(IdleOr::Idle(Idle(limit))),
    }));
    // Nothing after the first error: the body is given up, and not polled
    // again (the timeout would wait for an item that never comes).
    let mut failed = false;
    futures::stream::poll_fn(move |cx| {
        if failed {
            return std::task::Poll::Ready(None);
        }
        let item = std::task::ready!(items.as_mut().poll_next(cx));
        failed = matches!(item, Some(Err(_)));
        std::task::Poll::Ready(item)
    })
}

/// Reads a body to its end (or its first silence of `idle`) and drops it,
/// so that a client still sending gets the answer.
pub async fn drain(body: axum::body::Body, idle: Duration) {
    let mut stream = idle_limited(body.into_data_stream(), idle);
    while let Some(Ok(_)) = stream.next().await {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_goes_silent_ends_with_one_idle_error() {
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"ab"))])
            .chain(futures::stream::pending());
        let mut body = idle_limited(Box::pin(chunks), Duration::from_secs(5));
        assert_eq!(body.next().await.unwrap().unwrap(), "ab");
        assert!(matches!(body.next().await, Some(Err(IdleOr::Idle(_)))));
        assert!(body.next().await.is_none());
    }
}
