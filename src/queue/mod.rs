//! The broker: connection (re-made on demand after a loss), topology,
//! confirmed publishing and the job consumer channel.
//!
//! Topology (RabbitMQ AMQP 0-9-1, <https://www.rabbitmq.com/docs/queues>):
//! the jobs exchange, queue and dead letters in `topology`; one topic
//! exchange `<prefix>.notify.<client>` per client for events, with its log,
//! in `notify`; every name in `names`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::config::AmqpSettings;
use crate::domain::ClientId;

mod names;
mod notify;
mod subscribe;
pub mod tasks;
mod topology;
pub use names::{Names, Topology};
pub use subscribe::private_subscription;
pub use tasks::Task;
pub use topology::remove;

/// How long a connect or a publish confirm may take before the broker is
/// treated as unavailable, so callers fail fast instead of hanging.
const BROKER_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker did not answer in time")]
    Timeout,
    #[error("message was not routed to any queue")]
    Unroutable,
    #[error("broker refused the message")]
    Nacked,
}

impl From<lapin::Error> for BrokerError {
    fn from(e: lapin::Error) -> Self {
        BrokerError::Unavailable(e.to_string())
    }
}

struct Live {
    connection: Connection,
    publisher: Channel,
}

struct Inner {
    settings: AmqpSettings,
    max_attempts: u32,
    names: Names,
    live: Mutex<Option<Live>>,
    /// Notification exchanges declared on the current connection.
    notify_declared: std::sync::Mutex<HashSet<ClientId>>,
    /// Clients whose exchanges are declared on every (re)connect.
    known_clients: Vec<ClientId>,
    /// The last queue depth read, and when.
    depth_cache: std::sync::Mutex<Option<(std::time::Instant, (u32, u32))>>,
    enqueued_since_read: std::sync::atomic::AtomicU32,
}

/// A cheap-to-clone handle on the broker.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl Broker {
    pub fn new(settings: &AmqpSettings, max_attempts: u32, known_clients: Vec<ClientId>) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                names: Names { prefix: settings.prefix.clone() },
                settings: settings.clone(),
                max_attempts,
                live: Mutex::new(None),
                notify_declared: Default::default(),
                known_clients,
                depth_cache: Default::default(),
                enqueued_since_read: Default::default(),
            }),
        }
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    /// The publisher channel, connecting (and declaring the topology) first
    /// when there is no live connection.
    async fn publisher(&self) -> Result<Channel, BrokerError> {
        let mut live = self.inner.live.lock().await;
        if let Some(l) = live.as_ref() {
            if l.connection.status().connected() && l.publisher.status().connected() {
                return Ok(l.publisher.clone());
            }
            tracing::warn!("broker connection lost; reconnecting");
        }
        *live = None;
        self.inner.notify_declared.lock().unwrap().clear();
        let fresh = tokio::time::timeout(BROKER_TIMEOUT, self.connect_and_declare())
            .await
            .map_err(|_| BrokerError::Timeout)??;
        let publisher = fresh.publisher.clone();
        *live = Some(fresh);
        Ok(publisher)
    }

    async fn connect_and_declare(&self) -> Result<Live, BrokerError> {
        let props = ConnectionProperties::default().with_connection_name("transcoder".into());
        let connection = Connection::connect(&self.inner.settings.url, props).await?;
        let publisher = connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        self.declare_topology(&publisher).await?;
        for client in &self.inner.known_clients {
            self.declare_notify(&connection, &publisher, client).await?;
            self.inner.notify_declared.lock().unwrap().insert(client.clone());
        }
        tracing::info!(prefix = %self.inner.names.prefix, "connected to the broker; topology declared");
        Ok(Live { connection, publisher })
    }

    /// Connects now (at start), so a misconfiguration shows at once.
    pub async fn connect(&self) -> Result<(), BrokerError> {
        self.publisher().await.map(|_| ())
    }

    /// Publishes and waits for the broker's confirm. Success means the
    /// broker took responsibility: acked and, for `mandatory`, routed.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BrokerError> {
        let ch = self.publisher().await?;
        let attempt = async {
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions { mandatory, ..Default::default() },
                    payload,
                    properties,
                )
                .await?;
            match confirm.await? {
                Confirmation::Ack(None) => Ok(()),
                // An ack that carries the message back: it was not routed.
                Confirmation::Ack(Some(_)) => Err(BrokerError::Unroutable),
                Confirmation::Nack(_) => Err(BrokerError::Nacked),
                Confirmation::NotRequested => Err(BrokerError::Unavailable("publisher confirms are off".into())),
            }
        };
        tokio::time::timeout(BROKER_TIMEOUT, attempt).await.map_err(|_| BrokerError::Timeout)?
    }

    /// Declares `<prefix>.notify.<client>` if this connection has not yet.
    pub async fn ensure_notify_exchange(&self, client: &ClientId) -> Result<String, BrokerError> {
        let name = self.inner.names.notify_exchange(client);
        let ch = self.publisher().await?;
        if !self.inner.notify_declared.lock().unwrap().contains(client) {
            let live = self.inner.live.lock().await;
            let connection =
                &live.as_ref().ok_or_else(|| BrokerError::Unavailable("connection lost".into()))?.connection;
            self.declare_notify(connection, &ch, client).await?;
            drop(live);
            self.inner.notify_declared.lock().unwrap().insert(client.clone());
        }
        Ok(name)
    }

    /// A fresh channel on the live connection for consuming jobs, with
    /// prefetch = `prefetch` (one unacked job per concurrent slot).
    pub async fn consumer_channel(&self, prefetch: u16) -> Result<Channel, BrokerError> {
        self.publisher().await?;
        let live = self.inner.live.lock().await;
        let connection = &live.as_ref().ok_or_else(|| BrokerError::Unavailable("not connected".into()))?.connection;
        let ch = connection.create_channel().await?;
        ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
        Ok(ch)
    }

    /// Known clients (their notification exchanges exist from the start).
    pub fn known_clients(&self) -> &[ClientId] {
        &self.inner.known_clients
    }

    /// Jobs waiting and consumers attached, from a passive declare.
    pub async fn queue_depth(&self) -> Result<(u32, u32), BrokerError> {
        // Estimates are asked for on every status read and every 202: one
        // passive declare a second is plenty.
        // Jobs this process published since then are counted on top.
        if let Some((at, (messages, consumers))) = *self.inner.depth_cache.lock().unwrap() {
            if at.elapsed() < Duration::from_secs(1) {
                let since = self.inner.enqueued_since_read.load(std::sync::atomic::Ordering::Relaxed);
                return Ok((messages + since, consumers));
            }
        }
        let depth = self.read_queue_depth().await?;
        self.inner.enqueued_since_read.store(0, std::sync::atomic::Ordering::Relaxed);
        *self.inner.depth_cache.lock().unwrap() = Some((std::time::Instant::now(), depth));
        Ok(depth)
    }

    /// Counts a job published by this process (for [`Broker::queue_depth`]).
    pub fn note_enqueued(&self) {
        self.inner.enqueued_since_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn read_queue_depth(&self) -> Result<(u32, u32), BrokerError> {
        let ch = self.consumer_channel(1).await?;
        let q = ch
            .queue_declare(
                self.inner.names.jobs_queue().into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
        let _ = ch.close(200, "done".into()).await;
        Ok((q.message_count(), q.consumer_count()))
    }

    /// Whether the broker answers now.
    pub async fn ready(&self) -> bool {
        self.publisher().await.is_ok()
    }

    /// Closes the connection (at shutdown), giving up after a few seconds:
    /// a broker that does not answer must not hold the process.
    pub async fn close(&self) {
        let live = match tokio::time::timeout(BROKER_TIMEOUT, self.inner.live.lock()).await {
            Ok(mut guard) => guard.take(),
            Err(_) => None,
        };
        if let Some(live) = live {
            let closing = live.connection.close(200, "shutting down".into());
            if tokio::time::timeout(BROKER_TIMEOUT, closing).await.is_err() {
                tracing::warn!("broker did not confirm the close in time");
            }
        }
    }
}
