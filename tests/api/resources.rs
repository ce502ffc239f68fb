//! Failures of the machine, not of the input: an ffmpeg killed by a signal
//! is retried; a scratch disk that fills up ends the job with
//! `resources-exhausted` (never `invalid-media`) and the worker carries on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::procs::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ffmpeg_killed_by_a_signal_is_retried_and_the_job_completes() {
    let app = spawn_app_with(|s| s.worker.ffmpeg_threads = 1).await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = Clip { seconds: 20, width: 1280, height: 720, audio: true }.make(app.dir.path(), "clip.mp4");
    let scratch = app.settings.worker.scratch_dir.clone();
    let id = app.submit(&clip, "").await;
    // The same ffmpeg seen twice 20 ms apart: well inside the encode.
    let deadline = Instant::now() + JOB_TIMEOUT;
    let mut seen = None;
    let killed = loop {
        let pid = ffmpeg_under(&scratch).first().copied();
        if pid.is_some() && pid == seen {
            break pid.unwrap();
        }
        seen = pid;
        assert!(Instant::now() < deadline, "no ffmpeg ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // SAFETY: plain syscall on a pid we just saw.
    assert_eq!(unsafe { libc::kill(killed as i32, libc::SIGKILL) }, 0);
    let done = sub.wait_for_any(&[&format!("job.completed.{id}"), &format!("job.failed.{id}")], JOB_TIMEOUT).await;
    assert_eq!(done.routing_key, format!("job.completed.{id}"), "{}", done.body);
    let doc = app.status(&id).await;
    assert_eq!(doc["attempt"], 2, "{doc}");
    assert!(!ffmpeg_under(&scratch).contains(&killed));
    app.stop().await;
}

/// A tmpfs of `size` at `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_scratch_disk_fails_the_job_as_resources_exhausted_and_the_worker_serves_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Tmpfs::mount(&dir.path().join("scratch"), "4m");
    let path = scratch.0.clone();
    let app = spawn_app_with(move |s| {
        s.worker.scratch_dir = path;
        s.worker.max_attempts = 2;
    })
    .await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    // Noise, which no encoder can shrink: a small input, an output far
    // over 4 MiB.
    let clip = app.dir.path().join("noise.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("nullsrc=s=320x180:r=25:d=4,geq=lum='random(1)*255':cb=128:cr=128")
        .args(["-c:v", "mpeg4", "-q:v", "31"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let id = app.submit(&clip, "?height=1080").await;
    let failed = sub.wait_for_any(&[&format!("job.completed.{id}"), &format!("job.failed.{id}")], JOB_TIMEOUT).await;
    assert_eq!(failed.routing_key, format!("job.failed.{id}"), "{}", failed.body);
    let error = &failed.body["data"]["error"];
    assert_eq!(error["code"], "resources-exhausted", "{error}");
    assert!(error["message"].as_str().unwrap().contains("No space left"), "{error}");
    assert_eq!(app.status(&id).await["attempt"], 2);
    // Nothing of the attempts is left on the disk, and the next job fits.
    let next = app.submit(&Clip::small(2).make(app.dir.path(), "small.mp4"), "").await;
    let done = sub.wait_for_any(&[&format!("job.completed.{next}"), &format!("job.failed.{next}")], JOB_TIMEOUT).await;
    assert_eq!(done.routing_key, format!("job.completed.{next}"), "{}", done.body);
    app.stop().await;
}
