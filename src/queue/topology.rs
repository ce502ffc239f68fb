//! The jobs topology: declared on every (re)connect, and removed as a whole
//! when a prefix is given up.
//!
//! `<prefix>.jobs` direct exchange → `<prefix>.jobs` queue, dead-lettering
//! into the `<prefix>.jobs.dlx` fanout → `<prefix>.jobs.dead`; the
//! `<prefix>.control` fanout to every worker.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use super::{Broker, BrokerError, Topology};
use crate::config::QueueType;

impl Broker {
    pub(super) async fn declare_topology(&self, ch: &Channel) -> Result<(), BrokerError> {
        let n = &self.inner.names;
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(n.jobs_exchange().into(), ExchangeKind::Direct, durable, FieldTable::default()).await?;
        ch.exchange_declare(n.dead_letter_exchange().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await?;
        ch.exchange_declare(n.control_exchange().into(), ExchangeKind::Fanout, durable, FieldTable::default()).await?;

        let mut dead_args = FieldTable::default();
        let mut job_args = FieldTable::default();
        job_args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(n.dead_letter_exchange().into()));
        match self.inner.settings.queue_type {
            // Classic queues carry priorities (RabbitMQ priority queues).
            QueueType::Classic => {
                job_args.insert("x-max-priority".into(), AMQPValue::LongInt(9));
            }
            // Quorum queues: replicated; the broker dead-letters a message
            // redelivered past the limit, safely (at-least-once), as a
            // backstop behind the worker's own attempt count.
            QueueType::Quorum => {
                for args in [&mut job_args, &mut dead_args] {
                    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
                }
                let limit = self.inner.max_attempts as i32 + 1;
                job_args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
                job_args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
                job_args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
            }
        }
        let durable_q = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(n.dead_queue().into(), durable_q, dead_args).await?;
        ch.queue_bind(
            n.dead_queue().into(),
            n.dead_letter_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(n.jobs_queue().into(), durable_q, job_args).await?;
        ch.queue_bind(
            n.jobs_queue().into(),
            n.jobs_exchange().into(),
            n.jobs_routing_key().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }
}

/// Deletes every queue and exchange of `topology`, with the messages they
/// hold; a name that does not exist is skipped. Returns how many were
/// deleted.
pub async fn remove(url: &str, topology: &Topology) -> Result<usize, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name("transcoder-topology".into());
    let conn = Connection::connect(url, props).await?;
    let mut deleted = 0;
    // A name that does not exist closes its channel: one channel per name.
    for q in &topology.queues {
        let ch = conn.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        if ch.queue_declare(q.as_str().into(), passive, FieldTable::default()).await.is_ok() {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await?;
            deleted += 1;
        }
    }
    for x in &topology.exchanges {
        let ch = conn.create_channel().await?;
        let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
        if ch.exchange_declare(x.as_str().into(), ExchangeKind::Direct, passive, FieldTable::default()).await.is_ok() {
            ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await?;
            deleted += 1;
        }
    }
    let _ = conn.close(200, "topology removed".into()).await;
    Ok(deleted)
}
