//! `transcoder submit` uploads through tus and resumes by itself: the API
//! process is killed in the middle of an upload and started again on the
//! same port, over the same store and broker; submit continues from the
//! offset the service acknowledged, and the job completes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::procs::{wait_ready, Proc};

const MIB: u64 = 1 << 20;
/// What the proxy lets through from the client, per connection.
const RATE: u64 = 8 * MIB;
const CHUNK: u64 = 4 * MIB;

/// A TCP proxy to `upstream` that forwards what clients send at `rate`
/// bytes per second (answers unthrottled); a connection ends on both sides
/// when either does. Returns its port.
async fn throttling_proxy(upstream: u16, rate: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, upstream, rate));
        }
    });
    port
}

async fn relay(client: TcpStream, upstream: u16, rate: u64) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    tokio::select! {
        _ = throttled_copy(&mut from_client, &mut to_server, rate) => {}
        _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
    }
}

async fn throttled_copy(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    rate: u64,
) -> std::io::Result<()> {
    let (start, mut total) = (tokio::time::Instant::now(), 0u64);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
        tokio::time::sleep_until(start + Duration::from_secs_f64(total as f64 / rate as f64)).await;
    }
}

/// A real clip followed by a `free` box of `pad` bytes: still an MP4 that
/// sniffs and decodes, but large enough to take seconds through the proxy.
fn padded_clip(dir: &Path, pad: u64) -> PathBuf {
    let path = Clip::small(2).make(dir, "clip.mp4");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&(8 + pad as u32).to_be_bytes());
    bytes.extend_from_slice(b"free");
    bytes.extend((0..pad).map(|i| (i * 7 % 251) as u8));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The lines submit writes to stderr, as they come.
struct Lines {
    rx: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn follow(stderr: tokio::process::ChildStderr) -> Lines {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// The first value `pick` finds in a line, within `limit`.
    async fn until(&mut self, what: &str, limit: Duration, pick: impl Fn(&str) -> Option<u64>) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => {
                    let found = pick(&line);
                    self.seen.push(line);
                    if let Some(v) = found {
                        return v;
                    }
                }
                Ok(None) => panic!("submit ended before {what}; stderr: {:#?}", self.seen),
                Err(_) => panic!("no {what} within {limit:?}; stderr: {:#?}", self.seen),
            }
        }
    }

    /// The rest, until submit closes stderr.
    async fn rest(&mut self) {
        while let Some(line) = self.rx.recv().await {
            self.seen.push(line);
        }
    }
}

/// `upload 12582912/43000000 bytes` → 12582912.
fn acknowledged(line: &str) -> Option<u64> {
    line.strip_prefix("upload ")?.split('/').next()?.parse().ok()
}

/// `resuming at 12582912 of 43000000 bytes` → 12582912.
fn resumed(line: &str) -> Option<u64> {
    line.strip_prefix("resuming at ")?.split(' ').next()?.parse().ok()
}

fn spawn(role: &str, env: &[(&str, String)]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .arg(role)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc { child }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_resumes_after_the_api_is_restarted_mid_upload_and_the_job_completes() {
    let dir = tempfile::tempdir().unwrap();
    // The store lives in this process: it outlives the API process.
    let (access, secret) = (transcoder::embedded_s3::DEV_ACCESS_KEY, transcoder::embedded_s3::DEV_SECRET_KEY);
    let stop_store = CancellationToken::new();
    let store_dir = dir.path().join("store");
    let store =
        transcoder::embedded_s3::EmbeddedStore::start(&store_dir, 0, access, secret, stop_store.clone()).await.unwrap();
    let prefix = unique("tus-cli");
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = transcoder::config::Settings::defaults();
    settings.storage.bucket = unique("bucket");
    settings.storage.access_key = access.into();
    settings.storage.secret_key = secret.into();
    let env = vec![
        ("TRANSCODER__AMQP__PREFIX", prefix.clone()),
        ("TRANSCODER__STORAGE__ENDPOINT", store.endpoint()),
        ("TRANSCODER__STORAGE__BUCKET", settings.storage.bucket.clone()),
        ("TRANSCODER__STORAGE__ACCESS_KEY", access.into()),
        ("TRANSCODER__STORAGE__SECRET_KEY", secret.into()),
        ("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{api_port}")),
        ("TRANSCODER__WORKER__SCRATCH_DIR", dir.path().join("scratch").display().to_string()),
    ];
    let address = format!("http://127.0.0.1:{api_port}");
    let mut api = spawn("api", &env);
    wait_ready(&address).await;
    let mut worker = spawn("worker", &env);
    let proxy = throttling_proxy(api_port, RATE).await;

    let clip = padded_clip(dir.path(), 40 * MIB);
    let bytes = std::fs::read(&clip).unwrap();
    let size = bytes.len() as u64;
    let out = dir.path().join("out.mp4");
    let started = Instant::now();
    let mut submit = tokio::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["submit", clip.to_str().unwrap(), "--height", "120", "--wait", "-o", out.to_str().unwrap()])
        .args(["--server", &format!("http://127.0.0.1:{proxy}")])
        .env("TRANSCODER__AMQP__PREFIX", &prefix)
        .env("TRANSCODER_CHUNK_SIZE", "4M")
        .env("TRANSCODER_RETRY_FOR", "60s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = submit.stdout.take().unwrap();
    let printed = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    });
    let mut lines = Lines::follow(submit.stderr.take().unwrap());

    // A full part and a tail acknowledged: kill the API in the next chunk.
    let acked =
        lines.until("3 chunks acknowledged", Duration::from_secs(60), |l| acknowledged(l).filter(|n| *n >= 3 * CHUNK));
    let acked = acked.await;
    assert!(acked < size, "the upload finished before the kill ({acked} of {size})");
    api.kill9();
    let killed = started.elapsed();
    lines
        .until("the interruption", Duration::from_secs(70), |l| l.starts_with("upload interrupted").then_some(0))
        .await;
    let mut api = spawn("api", &env);
    wait_ready(&address).await;
    let offset = lines.until("the resumption", Duration::from_secs(70), resumed).await;
    let resumed_after = started.elapsed();

    let status = tokio::time::timeout(JOB_TIMEOUT, submit.wait()).await.expect("submit ends").unwrap();
    lines.rest().await;
    let stderr = lines.seen.join("\n");
    assert!(status.success(), "submit failed: {stderr}");
    assert!(stderr.contains("saved"), "{stderr}");
    let id = printed.await.unwrap().unwrap().trim().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7, "{id:?}");
    // It continued from what the killed process acknowledged, not from 0.
    assert!(offset >= acked && offset < size, "resumed at {offset}, {acked} were acknowledged, of {size}");

    // The new API process received only the rest, and no new upload.
    let http = http_client();
    let metrics = http.get(format!("{address}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, "transcoder_upload_bytes_received_total", ""), (size - offset) as f64, "{metrics}");
    assert_eq!(metric(&metrics, "transcoder_http_requests_total", "route=\"/video/uploads\""), 0.0);

    let doc: serde_json::Value =
        http.get(format!("{address}/video/status/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["status"], "done", "{doc}");
    assert_eq!(doc["input"]["size-bytes"], size, "{doc}");
    assert_eq!(doc["output"]["height"], 120, "{doc}");
    let head =
        http.head(format!("{address}/video/uploads/{id}")).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-offset"].to_str().unwrap(), size.to_string());
    let link = head.headers()["link"].to_str().unwrap();
    assert_eq!(link, format!("</video/status/{id}>; rel=\"monitor\""));

    let storage = transcoder::storage::Storage::new(&settings.storage, Some(&store.endpoint())).await;
    let input = storage.get(&format!("inputs/default/{id}"), None).await.unwrap().expect("the input is stored");
    let stored = input.body.collect().await.unwrap().into_bytes();
    assert_eq!(stored.len() as u64, size);
    assert_eq!(sha256(&stored), sha256(&bytes), "the stored input differs from the file");
    let probed = probe(&out);
    assert_eq!(stream(&probed, "video").unwrap()["codec_name"], "h264");
    assert_eq!(stream(&probed, "video").unwrap()["height"], 120);
    println!(
        "size {size} B; killed at {killed:.1?} after {acked} B acknowledged; resumed at {offset} B \
         {resumed_after:.1?} in; done after {:.1?}",
        started.elapsed()
    );
    println!("submit's stderr:\n{stderr}");
    api.kill9();
    worker.kill9();
    delete_topology(&prefix);
    stop_store.cancel();
}
