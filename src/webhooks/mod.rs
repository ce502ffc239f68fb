//! `transcoder webhooks` (also part of `serve`): each client with a
//! `webhook_url` gets its outcome events POSTed there.
//!
//! Per client, on the broker: a durable queue `<prefix>.webhooks.<client>`
//! bound to the client's exchange for `job.completed.*`, `job.failed.*` and
//! `job.cancelled.*`, and one wait queue per retry wait,
//! `<prefix>.webhooks.<client>.wait.<n>s`, whose messages expire after that
//! wait back into the first (TTL and dead-lettering). A failed attempt is
//! published to the next wait queue (confirmed) before the delivery is
//! acknowledged, so a delivery survives restarts of every process. Each
//! client has its own consumer: a slow or dead receiver delays only its own
//! deliveries.

pub mod deliver;

use std::sync::Arc;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::ClientId;
use crate::queue::Names;
use deliver::DeliveryError;

const ATTEMPT_HEADER: &str = "x-webhook-attempt";
const OUTCOMES: [&str; 3] = ["job.completed.*", "job.failed.*", "job.cancelled.*"];

/// One client's webhook.
struct Hook {
    client: ClientId,
    url: reqwest::Url,
    key: Vec<u8>,
}

/// The clients with a webhook, from the configuration (validated at load).
fn hooks(settings: &Settings) -> Vec<Hook> {
    settings
        .clients
        .iter()
        .filter_map(|(client, c)| {
            Some(Hook {
                client: ClientId::parse(client)?,
                url: reqwest::Url::parse(c.webhook_url.as_deref()?).ok()?,
                key: c.webhook_key()?,
            })
        })
        .collect()
}

fn names(settings: &Settings) -> Names {
    Names { prefix: settings.amqp.prefix.clone() }
}

/// Declares the client's delivery queue and wait queues (idempotent).
pub async fn declare(ch: &Channel, settings: &Settings, client: &ClientId) -> Result<(), lapin::Error> {
    let names = names(settings);
    let exchange = names.notify_exchange(client);
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    let main = names.webhook_queue(client);
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    // Replicated like the job queue in a cluster (quorum queues take TTLs
    // and dead-lettering from RabbitMQ 3.10).
    let base = || {
        let mut args = FieldTable::default();
        if settings.amqp.queue_type == crate::config::QueueType::Quorum {
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        }
        args
    };
    ch.queue_declare(main.as_str().into(), options, base()).await?;
    for key in OUTCOMES {
        ch.queue_bind(
            main.as_str().into(),
            exchange.as_str().into(),
            key.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await?;
    }
    for &seconds in &settings.webhooks.retry_seconds {
        let mut args = base();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt((seconds * 1000) as i64));
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(main.as_str().into()));
        let wait = names.webhook_wait_queue(client, seconds);
        ch.queue_declare(wait.as_str().into(), options, args).await?;
    }
    Ok(())
}

/// Runs every client's delivery loop until `shutdown`.
pub async fn run(settings: Arc<Settings>, shutdown: CancellationToken) {
    let hooks = hooks(&settings);
    if hooks.is_empty() {
        return;
    }
    tracing::info!(clients = hooks.len(), "delivering webhooks");
    let loops: Vec<_> =
        hooks.into_iter().map(|hook| tokio::spawn(client_loop(settings.clone(), hook, shutdown.clone()))).collect();
    for l in loops {
        let _ = l.await;
    }
}

/// One client's consumer; reconnects when the connection is lost.
async fn client_loop(settings: Arc<Settings>, hook: Hook, shutdown: CancellationToken) {
    let mut reconnect = crate::backoff::Reconnect::default();
    loop {
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = consume(&settings, &hook, &shutdown) => r,
        };
        match ended {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(client = %hook.client, error = %e, "webhook consumer lost the broker; reconnecting");
                if !reconnect.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
}

async fn consume(settings: &Settings, hook: &Hook, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let props = ConnectionProperties::default().with_connection_name("transcoder-webhooks".into());
    let conn = Connection::connect(&settings.amqp.url, props).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    declare(&ch, settings, &hook.client).await?;
    // One delivery at a time per client: its order, and no other client
    // behind it.
    ch.basic_qos(1, BasicQosOptions::default()).await?;
    let main = names(settings).webhook_queue(&hook.client);
    let mut consumer = ch
        .basic_consume(main.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            d = consumer.next() => d.ok_or_else(|| anyhow::anyhow!("consumer ended"))??,
        };
        let attempt = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(ATTEMPT_HEADER))
            .and_then(|v| v.as_long_long_int())
            .unwrap_or(1) as usize;
        let id = serde_json::from_slice::<serde_json::Value>(&delivery.data)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let allow = settings.webhooks.allow_private_networks;
        match deliver::deliver(&hook.url, &hook.key, &id, &delivery.data, allow).await {
            Ok(status) => {
                tracing::info!(client = %hook.client, event = %id, attempt, status, "webhook delivered");
                metrics::counter!("transcoder_webhook_deliveries_total", "outcome" => "delivered").increment(1);
            }
            Err(DeliveryError::Refused(reason)) => {
                tracing::error!(client = %hook.client, event = %id, "webhook not sent: {reason}");
                metrics::counter!("transcoder_webhook_deliveries_total", "outcome" => "refused").increment(1);
            }
            Err(DeliveryError::Failed(reason)) => match settings.webhooks.retry_seconds.get(attempt - 1) {
                Some(&wait) => {
                    tracing::warn!(client = %hook.client, event = %id, attempt, retry_in = wait, "webhook failed: {reason}");
                    retry_later(&ch, settings, hook, &delivery, attempt + 1, wait).await?;
                }
                None => {
                    tracing::error!(client = %hook.client, event = %id, attempt, "webhook given up: {reason}");
                    metrics::counter!("transcoder_webhook_deliveries_total", "outcome" => "given-up").increment(1);
                }
            },
        }
        delivery.ack(BasicAckOptions::default()).await?;
    }
}

/// The delivery into the wait queue of `wait` seconds, with its attempt
/// count; confirmed by the broker before the original is acknowledged.
async fn retry_later(
    ch: &Channel,
    settings: &Settings,
    hook: &Hook,
    delivery: &lapin::message::Delivery,
    attempt: usize,
    wait: u64,
) -> anyhow::Result<()> {
    let mut headers = FieldTable::default();
    headers.insert(ShortString::from(ATTEMPT_HEADER), AMQPValue::LongLongInt(attempt as i64));
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into())
        .with_headers(headers);
    let wait_queue = names(settings).webhook_wait_queue(&hook.client, wait);
    let confirm = ch
        .basic_publish(
            "".into(),
            wait_queue.as_str().into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            &delivery.data,
            properties,
        )
        .await?
        .await?;
    match confirm {
        lapin::Confirmation::Ack(None) => Ok(()),
        other => anyhow::bail!("the retry was not taken by the broker: {other:?}"),
    }
}
