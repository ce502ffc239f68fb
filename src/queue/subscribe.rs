//! Subscriptions for events that are only of use while a process runs:
//! a private queue bound to the exchanges wanted, consumed without acks.

use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Channel;

use super::{Broker, BrokerError};

/// A private queue (exclusive and auto-deleted: it goes with its
/// connection), named `name` or by the broker when `name` is empty, bound to
/// each `(exchange, routing key)` of `bindings` and consumed without acks.
pub async fn private_subscription(
    ch: &Channel,
    name: &str,
    bindings: &[(String, String)],
) -> Result<lapin::Consumer, lapin::Error> {
    let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let q = ch.queue_declare(name.into(), exclusive, FieldTable::default()).await?;
    for (exchange, key) in bindings {
        ch.queue_bind(
            q.name().clone(),
            exchange.as_str().into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
    ch.basic_consume(q.name().clone(), "".into(), no_ack, FieldTable::default()).await
}

impl Broker {
    /// A private, server-named queue (exclusive: it goes with this
    /// connection) bound to `bindings`, consumed without acks. For streams
    /// of events that are only of use while this process runs.
    pub async fn subscribe(&self, bindings: &[(String, String)]) -> Result<(Channel, lapin::Consumer), BrokerError> {
        let ch = self.consumer_channel(256).await?;
        let consumer = private_subscription(&ch, "", bindings).await?;
        Ok((ch, consumer))
    }

    /// Hands every message on `bindings` to `handle` until `shutdown`,
    /// subscribing again (with backoff) whenever the subscription is lost.
    /// For streams that matter only while this process runs (events for SSE,
    /// cancellations for workers).
    pub async fn follow(
        &self,
        what: &str,
        bindings: &[(String, String)],
        shutdown: &tokio_util::sync::CancellationToken,
        mut handle: impl FnMut(lapin::message::Delivery),
    ) {
        use futures::StreamExt;
        let mut reconnect = crate::backoff::Reconnect::default();
        while !shutdown.is_cancelled() {
            let (_ch, mut consumer) = match self.subscribe(bindings).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: cannot subscribe; retrying");
                    if !reconnect.wait(shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            reconnect.reset();
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = consumer.next() => n,
                };
                match next {
                    Some(Ok(delivery)) => handle(delivery),
                    // The end of the stream means the channel or connection is gone.
                    _ => {
                        tracing::warn!("{what}: subscription lost; subscribing again");
                        break;
                    }
                }
            }
        }
    }
}
