//! Job events as CloudEvents 1.0 (structured JSON) on the client's topic
//! exchange `<prefix>.notify.<client>`, routing key `job.<event>.<job-id>`.

use chrono::{SecondsFormat, Utc};
use lapin::BasicProperties;
use serde_json::json;

use crate::domain::{ClientId, JobStatus, StatusDoc};
use crate::queue::{Broker, BrokerError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Started,
    Progress,
    Completed,
    Failed,
    Cancelled,
}

impl EventKind {
    pub const ALL: [EventKind; 5] =
        [EventKind::Started, EventKind::Progress, EventKind::Completed, EventKind::Failed, EventKind::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Progress => "progress",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
        }
    }

    /// The terminal event for a finished status.
    pub fn terminal_for(status: JobStatus) -> Option<EventKind> {
        match status {
            JobStatus::Done => Some(EventKind::Completed),
            JobStatus::Failed => Some(EventKind::Failed),
            JobStatus::Cancelled => Some(EventKind::Cancelled),
            _ => None,
        }
    }
}

/// The event id: the same whenever the same event is published again, so
/// subscribers can drop duplicates.
pub fn event_id(doc: &StatusDoc, kind: EventKind) -> String {
    match kind {
        EventKind::Progress => format!("{}.progress.{}", doc.id, doc.progress_percent),
        other => format!("{}.{}", doc.id, other.as_str()),
    }
}

pub fn routing_key(doc: &StatusDoc, kind: EventKind) -> String {
    format!("job.{}.{}", kind.as_str(), doc.id)
}

/// The structured CloudEvent carrying the status document.
pub fn cloud_event(doc: &StatusDoc, kind: EventKind) -> serde_json::Value {
    // Stable times for events that may be published twice.
    let time = match kind {
        EventKind::Started => doc.started_utc_time,
        EventKind::Completed | EventKind::Failed | EventKind::Cancelled => doc.completed_utc_time,
        EventKind::Progress => None,
    }
    .unwrap_or_else(Utc::now);
    json!({
        "specversion": "1.0",
        "id": event_id(doc, kind),
        "type": format!("video.transcode.{}", kind.as_str()),
        "source": format!("/video/status/{}", doc.id),
        "subject": doc.id.to_string(),
        "time": time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "datacontenttype": "application/json",
        "data": doc,
    })
}

/// Publishes one event and waits for the broker's confirm. Not `mandatory`:
/// an exchange with no subscriber bound yet is normal.
pub async fn publish(broker: &Broker, client: &ClientId, doc: &StatusDoc, kind: EventKind) -> Result<(), BrokerError> {
    let exchange = broker.ensure_notify_exchange(client).await?;
    let id = event_id(doc, kind);
    let body = serde_json::to_vec(&cloud_event(doc, kind)).expect("events serialize");
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into())
        .with_message_id(id.as_str().into())
        .with_correlation_id(doc.id.to_string().as_str().into())
        .with_timestamp(Utc::now().timestamp() as u64);
    broker.publish(&exchange, &routing_key(doc, kind), false, &body, properties).await
}

/// One job event as an API process receives it back from the broker.
#[derive(Debug, Clone)]
pub struct JobEvent {
    pub client: ClientId,
    pub kind: EventKind,
    pub event_id: String,
    pub doc: StatusDoc,
}

impl EventKind {
    pub fn parse(s: &str) -> Option<EventKind> {
        [EventKind::Started, EventKind::Progress, EventKind::Completed, EventKind::Failed, EventKind::Cancelled]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, EventKind::Completed | EventKind::Failed | EventKind::Cancelled)
    }
}

/// Events of all known clients, from one broker queue per API process,
/// fanned out in-process to every SSE stream.
#[derive(Clone)]
pub struct EventHub {
    tx: tokio::sync::broadcast::Sender<std::sync::Arc<JobEvent>>,
    average: std::sync::Arc<std::sync::Mutex<Option<f64>>>,
}

impl EventHub {
    /// Starts the bridge from the broker; it reconnects until `shutdown`.
    pub fn start(broker: Broker, shutdown: tokio_util::sync::CancellationToken) -> EventHub {
        let (tx, _) = tokio::sync::broadcast::channel(1024);
        let hub = EventHub { tx: tx.clone(), average: Default::default() };
        tokio::spawn(bridge(broker, tx, shutdown));
        // Keep a moving average of how long jobs take, for estimates.
        let (mut rx, average) = (hub.subscribe(), hub.average.clone());
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(e) if e.kind == EventKind::Completed => {
                        if let (Some(s), Some(c)) = (e.doc.started_utc_time, e.doc.completed_utc_time) {
                            let secs = (c - s).num_milliseconds().max(0) as f64 / 1000.0;
                            let mut avg = average.lock().unwrap();
                            *avg = Some(avg.map_or(secs, |a| 0.7 * a + 0.3 * secs));
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
        hub
    }

    /// Recent average seconds from start to done, once a job has completed.
    pub fn average_job_seconds(&self) -> Option<f64> {
        *self.average.lock().unwrap()
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<JobEvent>> {
        self.tx.subscribe()
    }
}

async fn bridge(
    broker: Broker,
    tx: tokio::sync::broadcast::Sender<std::sync::Arc<JobEvent>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let bindings: Vec<(String, String)> =
        broker.known_clients().iter().map(|c| (broker.names().notify_exchange(c), "job.*.*".to_string())).collect();
    broker
        .follow("event bridge", &bindings, &shutdown, |delivery| {
            let client = broker.names().client_of_notify_exchange(delivery.exchange.as_str());
            let kind = delivery.routing_key.as_str().split('.').nth(1).and_then(EventKind::parse);
            let body: Option<serde_json::Value> = serde_json::from_slice(&delivery.data).ok();
            let (Some(client), Some(kind), Some(mut body)) = (client, kind, body) else { return };
            let event_id = body["id"].as_str().unwrap_or_default().to_string();
            let Ok(doc) = serde_json::from_value::<StatusDoc>(body["data"].take()) else { return };
            // No receivers is fine: nobody is watching right now.
            let _ = tx.send(std::sync::Arc::new(JobEvent { client, kind, event_id, doc }));
        })
        .await
}
