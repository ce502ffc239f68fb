//! `http.upload_buffer_bytes`: the memory one API process may hold for all
//! uploads in flight together. Each upload reserves what it will buffer
//! before it reads its body; one that finds no room within a moment gets
//! 503 with `Retry-After`, after its body was read and dropped (so the
//! client reads the answer instead of a reset connection).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// Reservations are counted in units of this many bytes.
const UNIT: u64 = 64 * 1024;

/// How long an upload waits for room before it is refused.
const WAIT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct UploadBudget {
    units: Arc<Semaphore>,
    total_units: u32,
}

/// Room held for one upload; given back when dropped.
pub struct Reserved(#[allow(dead_code)] OwnedSemaphorePermit);

impl UploadBudget {
    pub fn new(bytes: u64) -> UploadBudget {
        let total_units = (bytes / UNIT).clamp(1, u32::MAX as u64 / 2) as u32;
        UploadBudget { units: Arc::new(Semaphore::new(total_units as usize)), total_units }
    }

    /// Reserves `bytes` (at most the whole budget), waiting a moment for room.
    pub async fn reserve(&self, bytes: u64) -> Result<Reserved, ApiError> {
        let units = bytes.div_ceil(UNIT).clamp(1, self.total_units as u64) as u32;
        match tokio::time::timeout(WAIT, self.units.clone().acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(Reserved(permit)),
            _ => {
                metrics::counter!("transcoder_uploads_refused_for_memory_total").increment(1);
                Err(ApiError::Unavailable(
                    "this API process is at its memory limit for uploads in flight; try again shortly".into(),
                ))
            }
        }
    }

    /// [`UploadBudget::reserve`]; when there is no room, reads `body` to its
    /// end (dropping it, for at most `idle` of silence at a time) before
    /// giving the refusal back.
    pub async fn reserve_or_drain(
        &self,
        bytes: u64,
        body: &mut axum::body::Body,
        idle: Duration,
    ) -> Result<Reserved, ApiError> {
        match self.reserve(bytes).await {
            Ok(r) => Ok(r),
            Err(refused) => {
                super::body::drain(std::mem::take(body), idle).await;
                Err(refused)
            }
        }
    }
}
