//! One reconnect policy for every long-lived connection (the worker's and
//! the webhook role's consumers, broadcast subscriptions) and the start-up
//! tries of the broker and the store: exponential from 250 ms, doubling up
//! to 5 s, each delay plus a random part of up to itself, so a fleet that
//! lost its broker does not come back in step. Built on `backon`'s exponential policy.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

const FIRST: Duration = Duration::from_millis(250);
const LONGEST: Duration = Duration::from_secs(5);
/// Start-up tries before the error is the operator's to see (about 20 s).
const START_TRIES: usize = 7;

fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default().with_min_delay(FIRST).with_max_delay(LONGEST).with_factor(2.0).with_jitter()
}

/// The delays between reconnects of one connection; [`Reconnect::reset`]
/// once it works again.
pub struct Reconnect {
    delays: ExponentialBackoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { delays: policy().without_max_times().build() }
    }
}

impl Reconnect {
    /// The next delay (never ending: a service keeps trying).
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(LONGEST)
    }

    /// The connection works again: the next loss starts from the first delay.
    pub fn reset(&mut self) {
        *self = Reconnect::default();
    }

    /// Waits the next delay; false when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Runs `attempt` until it succeeds, with the reconnect policy, at most
/// [`START_TRIES`] times: so a broker or store still starting does not fail
/// the process.
pub async fn at_start<F, Fut, T, E>(what: &str, attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    use backon::Retryable;
    attempt
        .retry(policy().with_max_times(START_TRIES))
        .notify(|e: &E, delay: Duration| tracing::warn!(error = %e, retry_in = ?delay, "{what} not reachable yet; retrying"))
        .await
        .map_err(|e| anyhow::anyhow!("{what} unavailable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_longest_and_start_again_after_a_reset() {
        let mut r = Reconnect::default();
        let first = r.next_delay();
        assert!(first >= FIRST && first <= FIRST * 2, "{first:?}");
        let later: Vec<Duration> = (0..10).map(|_| r.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= LONGEST * 2), "{later:?}");
        assert!(later.last().unwrap() >= &LONGEST, "{later:?}");
        r.reset();
        assert!(r.next_delay() <= FIRST * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn start_up_tries_stop_at_the_first_success_and_give_up_after_the_last() {
        let mut calls = 0;
        let ok: anyhow::Result<u32> = at_start("thing", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err("not yet")
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(ok.unwrap(), 3);
        let mut tries = 0;
        let failed: anyhow::Result<()> = at_start("thing", || {
            tries += 1;
            async { Err("down") }
        })
        .await;
        assert_eq!(tries, START_TRIES + 1);
        assert!(failed.unwrap_err().to_string().contains("thing unavailable: down"));
    }
}
