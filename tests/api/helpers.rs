#![allow(dead_code)]
//! `spawn_app()` and friends: an isolated service per test, an event
//! subscriber, generated clips and ffprobe checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use transcoder::config::Settings;
use transcoder::queue::private_subscription;
use transcoder::startup::{Application, Role};
use transcoder::storage::Storage;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A short unique name for this test's resources.
pub fn unique(kind: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{kind}-{}", &id[..12])
}

pub struct TestApp {
    pub address: String,
    pub prefix: String,
    pub http: reqwest::Client,
    pub storage: Storage,
    pub dir: tempfile::TempDir,
    /// The settings the service runs with (endpoint filled in).
    pub settings: Settings,
    pub role: Role,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The service (`serve`: API + worker + embedded store) with test defaults.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_role(Role::Serve, tempfile::tempdir().unwrap(), configure).await
}

async fn spawn_role(role: Role, dir: tempfile::TempDir, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let mut settings = Settings::defaults();
    settings.http.bind = "127.0.0.1:0".into();
    settings.amqp.url = AMQP_URL.into();
    settings.amqp.prefix = unique("tc");
    settings.storage.bucket = unique("bucket");
    settings.storage.data_dir = dir.path().join("store");
    settings.worker.scratch_dir = dir.path().join("scratch");
    configure(&mut settings);
    let prefix = settings.amqp.prefix.clone();
    let app = Application::build(settings.clone(), role).await.expect("the service starts");
    settings.storage.endpoint = app.storage_endpoint();
    if settings.storage.access_key.is_empty() {
        settings.storage.access_key = transcoder::embedded_s3::DEV_ACCESS_KEY.into();
        settings.storage.secret_key = transcoder::embedded_s3::DEV_SECRET_KEY.into();
    }
    let address = app.local_addr().map(|a| format!("http://{a}")).unwrap_or_default();
    let storage = app.storage().clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until(shutdown.clone()));
    TestApp { address, prefix, http: http_client(), storage, dir, settings, role, shutdown, task: Some(task) }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs raw bytes to /video/convert.
    pub async fn submit_bytes(&self, body: Vec<u8>, content_type: &str, query: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/video/convert{query}")))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a file as `video/mp4` and expects 202; returns the job id.
    pub async fn submit(&self, clip: &Path, query: &str) -> String {
        let response = self.submit_bytes(std::fs::read(clip).unwrap(), "video/mp4", query).await;
        assert_eq!(response.status(), 202, "submission refused: {}", response.text().await.unwrap());
        let doc: Value = response.json().await.unwrap();
        doc["id"].as_str().unwrap().to_string()
    }

    /// POSTs `body` in chunks of `chunk` bytes without a Content-Length.
    pub async fn submit_chunked(&self, body: &[u8], chunk: usize) -> reqwest::Response {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
        self.http
            .post(self.url("/video/convert"))
            .header("Content-Type", "video/mp4")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap()
    }

    pub async fn status(&self, id: &str) -> Value {
        let response = self.http.get(self.url(&format!("/video/status/{id}"))).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Object keys under a prefix of this test's bucket.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.storage.list(prefix).await.unwrap()
    }

    /// Stops the service and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(120), task).await;
            stopped.expect("the service did not stop within 120 s").unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        delete_topology(&self.prefix);
    }
}

/// Removes a test's exchanges and queues (also after a failed assertion),
/// with `transcoder topology remove`: the clients the tests use, and what
/// `env` configures (e.g. webhook retry waits).
pub fn remove_topology(prefix: &str, env: &[(&str, String)]) {
    let status = Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["topology", "remove", "--yes", "--client", "alpha", "--client", "beta"])
        .env("TRANSCODER__AMQP__PREFIX", prefix)
        .env("TRANSCODER__AMQP__URL", AMQP_URL)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(std::process::Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("could not remove the AMQP topology of {prefix}");
    }
}

pub fn delete_topology(prefix: &str) {
    remove_topology(prefix, &[]);
}

/// One event as a subscriber receives it.
#[derive(Debug, Clone)]
pub struct Event {
    pub routing_key: String,
    pub body: Value,
    pub properties: BasicProperties,
}

/// A subscriber's own queue bound to `<prefix>.notify.<client>`.
pub struct Subscriber {
    consumer: lapin::Consumer,
    _conn: Connection,
    pub seen: Vec<Event>,
}

impl Subscriber {
    pub async fn bind(prefix: &str, client: &str, binding: &str) -> Subscriber {
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let exchange = format!("{prefix}.notify.{client}");
        let consumer = private_subscription(&ch, "", &[(exchange, binding.to_string())]).await.unwrap();
        Subscriber { consumer, _conn: conn, seen: Vec::new() }
    }

    /// The next event, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let delivery = tokio::time::timeout(timeout, self.consumer.next()).await.ok()??.ok()?;
        let event = Event {
            routing_key: delivery.routing_key.to_string(),
            body: serde_json::from_slice(&delivery.data).expect("events are JSON"),
            properties: delivery.properties,
        };
        self.seen.push(event.clone());
        Some(event)
    }

    /// Waits (up to `timeout`) for the event with this routing key.
    pub async fn wait_for(&mut self, routing_key: &str, timeout: Duration) -> Event {
        self.wait_for_any(&[routing_key], timeout).await
    }

    /// The first event with any of `routing_keys` (e.g. a job's completed
    /// or failed event, whichever comes).
    pub async fn wait_for_any(&mut self, routing_keys: &[&str], timeout: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) if routing_keys.contains(&e.routing_key.as_str()) => return e,
                Some(_) => continue,
                None => panic!("no {routing_keys:?} within {timeout:?}; saw {:?}", self.keys()),
            }
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.seen.iter().map(|e| e.routing_key.clone()).collect()
    }
}

/// A generated test clip.
pub struct Clip {
    pub seconds: u32,
    pub width: u32,
    pub height: u32,
    pub audio: bool,
}

impl Clip {
    pub fn small(seconds: u32) -> Clip {
        Clip { seconds, width: 320, height: 240, audio: true }
    }

    /// Writes the clip with ffmpeg's lavfi sources (fast MPEG-4 Part 2 in MP4).
    pub fn make(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let video = format!("testsrc2=size={}x{}:rate=25:duration={}", self.width, self.height, self.seconds);
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i", &video]);
        if self.audio {
            cmd.args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={}", self.seconds)]);
            cmd.args(["-c:a", "aac", "-shortest"]);
        }
        cmd.args(["-c:v", "mpeg4", "-q:v", "6"]).arg(&path);
        let status = cmd.status().expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg could not generate {name}");
        path
    }
}

/// ffprobe's view of a file: (format duration, streams).
pub fn probe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == kind)
}

pub fn duration(probe: &Value) -> f64 {
    probe["format"]["duration"].as_str().unwrap().parse().unwrap()
}

pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// The API alone in this process, over an embedded store started by the
/// test, so that workers can run as separate processes against it.
pub async fn spawn_api_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store = transcoder::embedded_s3::EmbeddedStore::start(
        &dir.path().join("store"),
        0,
        transcoder::embedded_s3::DEV_ACCESS_KEY,
        transcoder::embedded_s3::DEV_SECRET_KEY,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let endpoint = store.endpoint();
    // The store must outlive this function: it stops with the test process.
    std::mem::forget(store);
    spawn_role(Role::Api, dir, |s| {
        s.storage.endpoint = endpoint;
        s.storage.access_key = transcoder::embedded_s3::DEV_ACCESS_KEY.into();
        s.storage.secret_key = transcoder::embedded_s3::DEV_SECRET_KEY.into();
        configure(s);
    })
    .await
}

/// An HTTP client whose requests fail after a minute instead of hanging.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// The sum of a Prometheus text metric's samples whose labels contain `label`.
pub fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The test venv's Python (PyPI clients: m3u8, tuspy, standardwebhooks).
pub fn python() -> String {
    std::env::var("TRANSCODER_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/target/pyenv/bin/python", env!("CARGO_MANIFEST_DIR")))
}

/// An HLS package read over HTTP by PyPI `m3u8` (`tests/clients/hls_check.py`):
/// its report, after the script's own checks passed.
pub fn hls_check(master: &str) -> Value {
    let checked = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/hls_check.py"))
        .arg(master)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&checked.stdout).to_string();
    assert!(checked.status.success(), "hls_check: {stdout}{}", String::from_utf8_lossy(&checked.stderr));
    serde_json::from_str(&stdout).unwrap()
}

/// Frames ffprobe decodes from `url` (stream `select`).
pub fn decoded_frames(url: &str, select: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", select])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // One line per program that holds the stream, then the stream's own.
    let counts: Vec<u64> = text.lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect();
    assert!(!counts.is_empty() && counts.iter().all(|c| *c == counts[0]), "ffprobe {url}: {text}");
    counts[0]
}

/// The first video packet of `init + segment`: (pts seconds, keyframe).
pub async fn first_packet(http: &reqwest::Client, dir: &Path, init: &str, segment: &str, n: usize) -> (f64, bool) {
    let mut bytes = http.get(init).send().await.unwrap().bytes().await.unwrap().to_vec();
    bytes.extend(http.get(segment).send().await.unwrap().bytes().await.unwrap());
    let file = dir.join(format!("probe-{n}.mp4"));
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags"])
        .args(["-read_intervals", "%+#1", "-of", "csv=p=0"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_else(|| panic!("no packet in {segment}"));
    let mut fields = line.split(',');
    (fields.next().unwrap().parse().unwrap(), fields.next().unwrap().starts_with('K'))
}
