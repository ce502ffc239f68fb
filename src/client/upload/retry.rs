//! Waiting and giving up: the backoff between attempts, the watch on a
//! stalled PATCH, and how big the chunks are and how long to keep trying.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use reqwest::Response;

use super::{transient, Failure};
use crate::client::submit::Progress;

/// A PATCH whose body has not moved, and that got no answer, for this long
/// is given up (and resumed).
const STALL: Duration = Duration::from_secs(60);
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(15);

/// How the upload is cut and how long it keeps trying.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Bytes per PATCH.
    pub chunk_size: u64,
    /// Give up when nothing was acknowledged for this long.
    pub retry_for: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning { chunk_size: 8 << 20, retry_for: Duration::from_secs(300) }
    }
}

impl Tuning {
    /// The defaults, or `TRANSCODER_CHUNK_SIZE` (bytes, or `512K`, `8M`,
    /// `1G`) and `TRANSCODER_RETRY_FOR` (seconds, or `90s`, `5m`, `1h`).
    pub fn from_env() -> anyhow::Result<Tuning> {
        let mut tuning = Tuning::default();
        if let Ok(text) = std::env::var("TRANSCODER_CHUNK_SIZE") {
            tuning.chunk_size = parse_size(&text).with_context(|| format!("TRANSCODER_CHUNK_SIZE={text:?}"))?;
        }
        if let Ok(text) = std::env::var("TRANSCODER_RETRY_FOR") {
            tuning.retry_for = parse_duration(&text).with_context(|| format!("TRANSCODER_RETRY_FOR={text:?}"))?;
        }
        Ok(tuning)
    }
}

/// The send of a PATCH, dropped when neither its body moved nor an answer
/// came for [`STALL`].
pub(super) async fn watched(
    send: impl std::future::Future<Output = reqwest::Result<Response>>,
    activity: &Activity,
) -> Result<Response, Failure> {
    tokio::pin!(send);
    loop {
        tokio::select! {
            result = &mut send => return result.map_err(transient),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if activity.idle() > STALL {
                    let reason = format!("no progress for {} s", STALL.as_secs());
                    return Err(Failure::Transient { reason, retry_after: None });
                }
            }
        }
    }
}

/// When a request body last moved.
#[derive(Clone)]
pub(super) struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    pub(super) fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Waits between attempts: `Retry-After` when given, else a backoff from
/// [`FIRST_DELAY`] doubling to [`MAX_DELAY`] (with jitter); both reset by
/// progress.
pub(super) struct Retry {
    budget: Duration,
    since: Instant,
    delays: ExponentialBackoff,
}

fn delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

impl Retry {
    pub(super) fn new(budget: Duration) -> Retry {
        Retry { budget, since: Instant::now(), delays: delays() }
    }

    pub(super) fn progressed(&mut self) {
        self.since = Instant::now();
        self.delays = delays();
    }

    pub(super) async fn wait(
        &mut self,
        reason: &str,
        retry_after: Option<Duration>,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let left = self.budget.saturating_sub(self.since.elapsed());
        if left.is_zero() {
            bail!("upload failed: {reason} (no progress for {} s, giving up)", self.budget.as_secs());
        }
        let backoff = self.delays.next().unwrap_or(MAX_DELAY);
        let wait = retry_after.unwrap_or(backoff).min(left);
        progress.note(&format!("upload interrupted ({reason}); retrying in {:.1} s", wait.as_secs_f64()));
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// `8388608`, `512K`, `8M`, `8MiB`, `1G` (binary units).
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| anyhow!("not a size such as 8M or 1048576"))?;
    let shift = match unit.trim().to_ascii_lowercase().trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => bail!("the unit must be K, M or G"),
    };
    let size = n.checked_shl(shift).filter(|s| s >> shift == n).ok_or_else(|| anyhow!("too large"))?;
    if size == 0 {
        bail!("must be at least 1 byte");
    }
    Ok(size)
}

/// `300`, `90s`, `5m`, `1h`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| anyhow!("not a duration such as 90s, 5m or 1h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => bail!("the unit must be s, m or h"),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        for bad in ["", "0", "8X", "M", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5 minutes").is_err());
    }
}
