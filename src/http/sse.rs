//! `GET /video/events/{id}`: Server-Sent Events for browsers, bridged from
//! the job's AMQP events. The current status first, then each event; the
//! stream ends after the terminal one.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems::{InternalError, JobNotFound, Unauthorized, Unavailable};
use super::status::{load_job, JobIdParam, JobPath};
use super::{ApiError, AppState, Client};
use crate::domain::schema::{matching, one_of, UUID};
use crate::domain::StatusDoc;
use crate::events::EventKind;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// One Server-Sent Event of the stream, in the document.
struct JobEvent;

impl PartialSchema for JobEvent {
    fn schema() -> RefOr<Schema> {
        let events = std::iter::once("status").chain(EventKind::ALL.map(EventKind::as_str));
        let mut data = ObjectBuilder::new().schema_type(Type::String).content_media_type("application/json").build();
        // utoipa's schema has no `contentSchema`: set as the keyword itself.
        let status = json!({"$ref": format!("#/components/schemas/{}", StatusDoc::name())});
        data.extensions = Some([("contentSchema", status)].into_iter().collect());
        ObjectBuilder::new()
            .description(Some("One Server-Sent Event: first `status` (the current document), then `started`, `progress`, `completed`, `failed` or `cancelled`; `data` is the status document as JSON. The stream ends after a terminal event."))
            .property("event", one_of(events))
            .property("data", data)
            .property("id", matching(format!("^{UUID}\\.[a-z]+(-[0-9]+)?$")))
            .property("retry", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .required("event")
            .required("data")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for JobEvent {}

#[utoipa::path(
    get,
    path = "/video/events/{id}",
    operation_id = "streamEvents",
    tag = "jobs",
    summary = "Server-Sent Events of one job",
    description = "The current status first (event `status`), then each event of the job as it happens, bridged from its AMQP events; the stream ends after the terminal event. Keep-alive comments are sent while nothing happens.",
    security((), ("bearer" = []), ("api_key" = [])),
    params(JobIdParam),
    responses(
        (status = 200, description = "The event stream; the schema describes one event.", body = JobEvent, content_type = "text/event-stream"),
        (status = 401, response = Unauthorized),
        (status = 404, response = JobNotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn events(
    State(state): State<AppState>,
    Client(client): Client,
    JobPath(id): JobPath,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the status, so nothing falls in between.
    let rx = state.hub.subscribe();
    let mut doc = load_job(&state, &client, id).await?;
    super::files::playback_links(&state, &client, &mut doc);
    let first = Event::default().event("status").json_data(&doc).expect("documents serialize");
    let shown = doc.progress_percent;

    // State: the receiver, the progress already shown, and whether the
    // stream is over. Events older than the status just sent are skipped.
    let signing = state.clone();
    let updates = stream::unfold((rx, shown, doc.status.is_terminal()), move |(mut rx, shown, done)| {
        let client = client.clone();
        let state = signing.clone();
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
                            .json_data(&with_links(&state, &client, &e.doc))
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

/// An event's status document with the playback links of a done job.
fn with_links(state: &AppState, client: &crate::domain::ClientId, doc: &StatusDoc) -> StatusDoc {
    let mut doc = doc.clone();
    super::files::playback_links(state, client, &mut doc);
    doc
}
