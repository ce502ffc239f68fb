//! The command-line client: `transcoder submit` and `transcoder watch`.
//! Progress comes from events pushed to the client's own exchange; the
//! client never polls the status.

mod submit;
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
}

/// One received event.
pub struct Received {
    pub routing_key: String,
    pub body: serde_json::Value,
}

impl Events {
    pub async fn subscribe(target: &Target, binding: &str) -> anyhow::Result<Events> {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let a = &target.settings.amqp;
        let conn = Connection::connect(&a.url, ConnectionProperties::default())
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the broker at {}: {e}", redact(&a.url)))?;
        let ch = conn.create_channel().await?;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{}.client.{}.{}", a.prefix, target.client, &suffix[..12]);
        let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        ch.queue_declare(name.as_str().into(), options, FieldTable::default()).await?;
        let exchange = format!("{}.notify.{}", a.prefix, target.client);
        ch.queue_bind(
            name.as_str().into(),
            exchange.as_str().into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {exchange}: {e}"))?;
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let consumer = ch.basic_consume(name.as_str().into(), "".into(), no_ack, FieldTable::default()).await?;
        Ok(Events { _conn: conn, consumer })
    }

    /// The next event; an error when the connection is lost.
    pub async fn next(&mut self) -> anyhow::Result<Received> {
        loop {
            let delivery =
                self.consumer.next().await.ok_or_else(|| anyhow::anyhow!("lost the broker connection"))??;
            if let Ok(body) = serde_json::from_slice(&delivery.data) {
                return Ok(Received { routing_key: delivery.routing_key.to_string(), body });
            }
        }
    }
}

/// An AMQP URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// A problem document's detail, or the status line.
async fn problem_text(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Option<serde_json::Value> = response.json().await.ok();
    let detail = body.as_ref().and_then(|b| b["detail"].as_str()).unwrap_or("");
    format!("{status}: {detail}")
}
