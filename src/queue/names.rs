//! AMQP names under one prefix: the one place that spells them.

use crate::domain::ClientId;

/// AMQP names under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    pub fn jobs_queue(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    pub fn jobs_routing_key(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.jobs.dlx", self.prefix)
    }
    pub fn dead_queue(&self) -> String {
        format!("{}.jobs.dead", self.prefix)
    }
    pub fn notify_exchange(&self, client: &ClientId) -> String {
        format!("{}.notify.{client}", self.prefix)
    }
    /// The client's event log: a stream bound to its exchange with `#`.
    pub fn notify_log(&self, client: &ClientId) -> String {
        format!("{}.notify.{client}.log", self.prefix)
    }
    /// The client's webhook deliveries, due now.
    pub fn webhook_queue(&self, client: &ClientId) -> String {
        format!("{}.webhooks.{client}", self.prefix)
    }
    /// The client's webhook deliveries waiting `seconds` for their retry.
    pub fn webhook_wait_queue(&self, client: &ClientId, seconds: u64) -> String {
        format!("{}.webhooks.{client}.wait.{seconds}s", self.prefix)
    }
    /// Fanout from the API to every worker (cancellations).
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.prefix)
    }
    /// The client whose notification exchange this is.
    pub fn client_of_notify_exchange(&self, exchange: &str) -> Option<ClientId> {
        exchange.strip_prefix(&format!("{}.notify.", self.prefix)).and_then(ClientId::parse)
    }
}

/// Every queue and exchange the service declares under one prefix, for the
/// given clients and webhook retry waits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
}

impl Names {
    pub fn topology(&self, clients: &[ClientId], webhook_waits: &[u64]) -> Topology {
        let mut queues = vec![self.jobs_queue(), self.dead_queue()];
        let mut exchanges = vec![self.jobs_exchange(), self.dead_letter_exchange(), self.control_exchange()];
        for client in clients {
            exchanges.push(self.notify_exchange(client));
            queues.push(self.notify_log(client));
            queues.push(self.webhook_queue(client));
            queues.extend(webhook_waits.iter().map(|w| self.webhook_wait_queue(client, *w)));
        }
        Topology { queues, exchanges }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_lists_every_name_of_the_prefix() {
        let names = Names { prefix: "p".into() };
        let t = names.topology(&[ClientId::parse("alpha").unwrap()], &[1, 30]);
        assert_eq!(
            t.queues,
            [
                "p.jobs",
                "p.jobs.dead",
                "p.notify.alpha.log",
                "p.webhooks.alpha",
                "p.webhooks.alpha.wait.1s",
                "p.webhooks.alpha.wait.30s"
            ]
        );
        assert_eq!(t.exchanges, ["p.jobs", "p.jobs.dlx", "p.control", "p.notify.alpha"]);
    }
}
