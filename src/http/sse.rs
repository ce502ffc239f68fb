//! `GET /video/events/{id}`: Server-Sent Events for browsers, bridged from
//! the job's AMQP events. The current status first, then each event; the
//! stream ends after the terminal one.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream, StreamExt};

use tokio::sync::broadcast::error::RecvError;

use super::status::{load_job, JobPath};
use super::{ApiError, AppState, Client};

pub fn router() -> Router<AppState> {
    Router::new().route("/video/events/{id}", get(events))
}

async fn events(
    State(state): State<AppState>,
    Client(client): Client,
    JobPath(id): JobPath,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the status, so nothing falls in between.
    let rx = state.hub.subscribe();
    let doc = load_job(&state, &client, id).await?;
    let first = Event::default().event("status").json_data(&doc).expect("documents serialize");
    let shown = doc.progress_percent;

    // State: the receiver, the progress already shown, and whether the
    // stream is over. Events older than the status just sent are skipped.
    let updates = stream::unfold((rx, shown, doc.status.is_terminal()), move |(mut rx, shown, done)| {
        let client = client.clone();
        async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(e) if e.client == client && e.doc.id == id => {
                        if !e.kind.is_terminal() && e.doc.progress_percent < shown {
                            continue;
                        }
                        let event = Event::default()
                            .event(e.kind.as_str())
                            .id(e.event_id.clone())
                            .json_data(&e.doc)
                            .expect("documents serialize");
                        return Some((Ok(event), (rx, e.doc.progress_percent, e.kind.is_terminal())));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let events = stream::once(async { Ok(first) }).chain(updates).take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
