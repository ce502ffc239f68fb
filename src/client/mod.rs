//! The command-line client: `transcoder submit` (a resumable tus upload) and
//! `transcoder watch`.
//! Progress comes from events pushed to the client's own exchange; the
//! client never polls the status.

mod submit;
mod upload;
mod watch;

use futures::StreamExt;
use lapin::{Connection, ConnectionProperties};

pub use submit::{submit, SubmitArgs};
pub use watch::watch;

use crate::config::Settings;
use crate::domain::ClientId;

/// Where the client talks to.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub api_key: Option<String>,
    pub client: ClientId,
    pub settings: Settings,
}

/// A private queue on the client's notification exchange, named
/// `<prefix>.client.<client>.<random>` (the names a provisioned client user
/// may declare).
pub struct Events {
    _conn: Connection,
    consumer: lapin::Consumer,
    /// Reading the event log from this time (else live only).
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Event ids printed, so a duplicate in the log is shown once.
    seen: std::collections::HashSet<String>,
}

/// One received event.
pub struct Received {
    pub routing_key: String,
    pub body: serde_json::Value,
}

impl Events {
    pub async fn subscribe(target: &Target, binding: &str) -> anyhow::Result<Events> {
        let a = &target.settings.amqp;
        let conn = Connection::connect(&a.url, ConnectionProperties::default())
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the broker at {}: {e}", crate::config::redact_url(&a.url)))?;
        let ch = conn.create_channel().await?;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{}.client.{}.{}", a.prefix, target.client, &suffix[..12]);
        let exchange = format!("{}.notify.{}", a.prefix, target.client);
        let consumer = crate::queue::private_subscription(&ch, &name, &[(exchange.clone(), binding.to_string())])
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {exchange}: {e}"))?;
        Ok(Events { _conn: conn, consumer, since: None, seen: Default::default() })
    }

    /// The client's event log from `since` on, then every new event as it
    /// comes: one consumer of the stream `<prefix>.notify.<client>.log`
    /// (manual acks, a prefetch, `x-stream-offset` at `since`).
    pub async fn replay(target: &Target, since: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Events> {
        use lapin::options::{BasicConsumeOptions, BasicQosOptions};
        use lapin::types::{AMQPValue, FieldTable};
        let a = &target.settings.amqp;
        let conn = Connection::connect(&a.url, ConnectionProperties::default())
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the broker at {}: {e}", crate::config::redact_url(&a.url)))?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(100, BasicQosOptions::default()).await?;
        let log = format!("{}.notify.{}.log", a.prefix, target.client);
        let mut args = FieldTable::default();
        // Streams keep whole chunks: the offset may start a little early,
        // and `next` drops what precedes `since`.
        args.insert("x-stream-offset".into(), AMQPValue::Timestamp(since.timestamp().max(0) as u64));
        let consumer = ch
            .basic_consume(log.as_str().into(), "".into(), BasicConsumeOptions::default(), args)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the event log {log}: {e}"))?;
        Ok(Events { _conn: conn, consumer, since: Some(since), seen: Default::default() })
    }

    /// The next event; an error when the connection is lost. From the log,
    /// each event once (by its id), none before `since`.
    pub async fn next(&mut self) -> anyhow::Result<Received> {
        use lapin::options::BasicAckOptions;
        loop {
            let delivery =
                self.consumer.next().await.ok_or_else(|| anyhow::anyhow!("lost the broker connection"))??;
            if self.since.is_some() {
                delivery.ack(BasicAckOptions::default()).await?;
            }
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&delivery.data) else { continue };
            if let Some(since) = self.since {
                let time = body["time"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                if time.is_some_and(|t| t < since) {
                    continue;
                }
                let id = body["id"].as_str().unwrap_or_default().to_string();
                if !id.is_empty() && !self.seen.insert(id) {
                    continue;
                }
            }
            return Ok(Received { routing_key: delivery.routing_key.to_string(), body });
        }
    }
}

/// A problem document's detail, or the status line.
async fn problem_text(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Option<serde_json::Value> = response.json().await.ok();
    let detail = body.as_ref().and_then(|b| b["detail"].as_str()).unwrap_or("");
    format!("{status}: {detail}")
}
