//! Private copies of job inputs, kept for the next tasks of the same job.
//!
//! The pieces of a split job all read the whole input; a worker that runs
//! several of them copies it out of the store once. The last few inputs are
//! kept (a few more than the tasks running at once); a copy still in use
//! outlives its eviction, and every copy goes when the process ends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::domain::JobId;

/// One input copied out of the store, removed when the last user drops it.
pub struct LocalInput {
    dir: tempfile::TempDir,
}

impl LocalInput {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("input")
    }
}

type Slot = Arc<OnceCell<Arc<LocalInput>>>;

pub struct Inputs {
    base: PathBuf,
    capacity: usize,
    slots: Mutex<VecDeque<(JobId, Slot)>>,
}

impl Inputs {
    pub fn new(base: &Path, capacity: usize) -> Inputs {
        Inputs { base: base.to_path_buf(), capacity: capacity.max(1), slots: Mutex::new(VecDeque::new()) }
    }

    /// The job's input, copied by `fetch` (into the folder it is given)
    /// unless a copy is here already; tasks asking at once share one copy.
    pub async fn get<F, Fut, E>(&self, id: JobId, fetch: F) -> Result<Arc<LocalInput>, E>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: From<std::io::Error>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap();
            let slot = match slots.iter().position(|(j, _)| *j == id) {
                Some(at) => slots.remove(at).expect("found").1,
                None => Slot::default(),
            };
            slots.push_back((id, slot.clone()));
            while slots.len() > self.capacity {
                slots.pop_front();
            }
            slot
        };
        let base = self.base.clone();
        let local = slot
            .get_or_try_init(|| async move {
                let dir = crate::transcode::scratch_dir(&base)?;
                let local = LocalInput { dir };
                fetch(local.path()).await?;
                Ok::<_, E>(Arc::new(local))
            })
            .await?;
        Ok(local.clone())
    }

    /// The job is over here: its copy goes once no task uses it.
    pub fn forget(&self, id: JobId) {
        self.slots.lock().unwrap().retain(|(j, _)| *j != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_input_is_copied_once_and_the_oldest_copy_goes_first() {
        let base = tempfile::tempdir().unwrap();
        let inputs = Inputs::new(base.path(), 2);
        let copies = std::sync::atomic::AtomicUsize::new(0);
        let fetch = |path: PathBuf| {
            copies.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { std::fs::write(path, b"x") }
        };
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        let first = inputs.get(a, fetch).await.unwrap();
        let again = inputs.get(a, fetch).await.unwrap();
        assert_eq!(first.path(), again.path());
        assert_eq!(copies.load(std::sync::atomic::Ordering::SeqCst), 1);
        inputs.get(b, fetch).await.unwrap();
        inputs.get(c, fetch).await.unwrap();
        // a was evicted, but its copy lives while it is used.
        assert!(first.path().exists());
        let path = first.path();
        drop((first, again));
        assert!(!path.exists());
        inputs.get(a, fetch).await.unwrap();
        assert_eq!(copies.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
