//! A client's notification exchange and the event log bound to it.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};

use super::{Broker, BrokerError};
use crate::domain::ClientId;

impl Broker {
    /// The client's exchange, and its event log bound to it. The log is
    /// declared on a channel of its own: a stream that exists with other
    /// arguments (an earlier retention) closes that channel, not the
    /// publisher's, and events keep flowing to the exchange.
    pub(super) async fn declare_notify(
        &self,
        connection: &Connection,
        ch: &Channel,
        client: &ClientId,
    ) -> Result<(), BrokerError> {
        let names = &self.inner.names;
        let exchange = names.notify_exchange(client);
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
        let log = names.notify_log(client);
        let retention = self.inner.settings.event_retention_seconds;
        let declared = async {
            let side = connection.create_channel().await?;
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
            args.insert("x-max-age".into(), AMQPValue::LongString(format!("{retention}s").into()));
            let options = QueueDeclareOptions { durable: true, ..Default::default() };
            side.queue_declare(log.as_str().into(), options, args).await?;
            side.queue_bind(
                log.as_str().into(),
                exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
            let _ = side.close(200, "declared".into()).await;
            Ok::<(), lapin::Error>(())
        };
        if let Err(e) = declared.await {
            tracing::warn!(log = %log, error = %e, "could not declare the client's event log; events still reach its exchange");
        }
        Ok(())
    }
}
