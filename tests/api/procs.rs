//! Service processes for tests that kill, stop or signal them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestApp;

/// A `transcoder` process, killed when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status within `limit`.
    pub async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit within {limit:?} of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `transcoder <role>` with `env` (stdout dropped, stderr shown).
pub fn spawn_role(role: &str, env: &[(&str, String)]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .arg(role)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("transcoder {role} starts: {e}"));
    Proc { child }
}

/// `transcoder worker` against the test app's broker prefix and store, with
/// its own scratch folder under `scratch`.
pub fn spawn_worker(app: &TestApp, scratch: &Path, env: &[(&str, String)]) -> Proc {
    let s = &app.settings;
    let child = Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .arg("worker")
        .env("TRANSCODER__AMQP__URL", &s.amqp.url)
        .env("TRANSCODER__AMQP__PREFIX", &s.amqp.prefix)
        .env(
            "TRANSCODER__AMQP__QUEUE_TYPE",
            match s.amqp.queue_type {
                transcoder::config::QueueType::Classic => "classic",
                transcoder::config::QueueType::Quorum => "quorum",
            },
        )
        .env("TRANSCODER__STORAGE__ENDPOINT", &s.storage.endpoint)
        .env("TRANSCODER__STORAGE__BUCKET", &s.storage.bucket)
        .env("TRANSCODER__STORAGE__ACCESS_KEY", &s.storage.access_key)
        .env("TRANSCODER__STORAGE__SECRET_KEY", &s.storage.secret_key)
        .env("TRANSCODER__WORKER__MAX_ATTEMPTS", s.worker.max_attempts.to_string())
        .env("TRANSCODER__WORKER__SCRATCH_DIR", scratch)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the worker starts");
    Proc { child }
}

/// Pids of ffmpeg processes working under `dir` (their arguments name it).
pub fn ffmpeg_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_str().unwrap();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_ffmpeg = args.first().is_some_and(|a| a == "ffmpeg" || a.ends_with("/ffmpeg"));
        if is_ffmpeg && args.iter().any(|a| a.contains(needle)) {
            // A zombie has no more work to do; count only live processes.
            let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if !state.split_whitespace().nth(2).is_some_and(|s| s == "Z") {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Waits until no ffmpeg works under `dir`; panics after `limit`.
pub async fn assert_ffmpeg_gone(dir: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = ffmpeg_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "ffmpeg still running after {limit:?}: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `transcoder serve` as its own process (embedded store under `dir`),
/// ready to take requests; returns it and its base URL.
pub async fn spawn_serve(dir: &Path, prefix: &str, env: &[(&str, String)]) -> (Proc, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .arg("serve")
        .env("TRANSCODER__AMQP__PREFIX", prefix)
        .env("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("TRANSCODER__STORAGE__DATA_DIR", dir.join("store"))
        .env("TRANSCODER__WORKER__SCRATCH_DIR", dir.join("scratch"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let proc = Proc { child };
    let address = format!("http://127.0.0.1:{port}");
    wait_ready(&address).await;
    (proc, address)
}

/// Waits (60 s at most) until the API at `address` answers `/readyz` with 200.
pub async fn wait_ready(address: &str) {
    let http = crate::helpers::http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{address}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "{address} not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
