//! `/video/uploads` (tus 1.0.0) driven by real clients from outside the
//! project: tus-js-client (npm) in Node and tuspy (PyPI), each uploading a
//! clip of more than 16 MiB in 1 MiB and in 16 MiB chunks; a connection cut
//! mid-PATCH by a TCP proxy (the bytes that arrived are kept and the client
//! continues from them); and an API process killed with SIGKILL mid-PATCH,
//! the upload finished through a new API process.
//!
//! The client scripts are tests/clients/tus_upload.{mjs,py}; they print one
//! JSON line the tests read.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use transcoder::storage::Storage;

use crate::helpers::*;
use crate::procs::Proc;

const MIB: usize = 1 << 20;
/// Over 16 MiB, and not a multiple of the 8 MiB part: two 16 MiB chunks,
/// two full parts and a tail.
const CLIP_BYTES: usize = 21 * MIB + 12345;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- fixtures

/// A 1 s clip (MPEG-4 Part 2 + AAC in MP4) grown to `CLIP_BYTES` with a
/// trailing `free` box of pseudo-random bytes: still a valid MP4 (checked
/// with ffprobe), and a misplaced or repeated part changes its SHA-256.
/// Returns the file and its SHA-256 (hex).
fn big_clip(dir: &Path) -> (PathBuf, String) {
    let mut bytes = std::fs::read(Clip::small(1).make(dir, "source.mp4")).unwrap();
    let pad = CLIP_BYTES - bytes.len();
    bytes.extend_from_slice(&(pad as u32).to_be_bytes());
    bytes.extend_from_slice(b"free");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ uuid::Uuid::new_v4().as_u128() as u64;
    while bytes.len() < CLIP_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (CLIP_BYTES - bytes.len()).min(8);
        bytes.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    assert_eq!(bytes.len(), CLIP_BYTES);
    let path = dir.join("clip.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let probed = probe(&path);
    assert!((duration(&probed) - 1.0).abs() < 0.1, "the padded clip is still a 1 s MP4: {probed}");
    (path, sha256(&bytes))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The stored object's size and SHA-256.
async fn stored_sha256(storage: &Storage, key: &str) -> (usize, String) {
    let object = storage.get(key, None).await.unwrap().unwrap_or_else(|| panic!("{key} is not in the store"));
    let bytes = object.body.collect().await.unwrap().into_bytes();
    (bytes.len(), sha256(&bytes))
}

fn metadata_json() -> String {
    json!({"filename": "clip.mp4", "filetype": "video/mp4", "height": "120"}).to_string()
}

/// The job id in `Link: </video/status/{id}>; rel="monitor"`.
fn monitor_id(link: &str) -> String {
    let id = link
        .strip_prefix("</video/status/")
        .and_then(|l| l.strip_suffix(">; rel=\"monitor\""))
        .unwrap_or_else(|| panic!("not a monitor link: {link:?}"));
    assert!(!id.is_empty() && !id.contains(['/', '>', ' ']), "{link:?}");
    id.to_string()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).unwrap_or_else(|| panic!("no {name} header in {headers:?}")).to_str().unwrap().to_string()
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Waits for the job's completed (or failed) event; the subscriber may
/// have seen it already while waiting for another job.
async fn until_ended(sub: &mut Subscriber, id: &str) -> Event {
    let keys = [format!("job.completed.{id}"), format!("job.failed.{id}")];
    if let Some(e) = sub.seen.iter().find(|e| keys.contains(&e.routing_key)) {
        return e.clone();
    }
    sub.wait_for_any(&[keys[0].as_str(), keys[1].as_str()], JOB_TIMEOUT).await
}

/// The job became `done` with the options of the upload's metadata, and its
/// stored input is the file, byte for byte; no parts or tail are left.
async fn assert_job_done_with_input(app: &TestApp, sub: &mut Subscriber, id: &str, sha: &str) {
    let ended = until_ended(sub, id).await;
    assert_eq!(ended.routing_key, format!("job.completed.{id}"), "{}", ended.body);
    assert_eq!(ended.body["data"]["output"]["height"], 120, "the height of Upload-Metadata: {}", ended.body);
    let doc = app.status(id).await;
    assert_eq!(doc["status"], "done", "{doc}");
    assert_eq!(doc["input"]["size-bytes"], CLIP_BYTES, "{doc}");
    assert_eq!(doc["input"]["filename"], "clip.mp4", "{doc}");
    let (size, stored) = stored_sha256(&app.storage, &format!("inputs/default/{id}")).await;
    assert_eq!(size, CLIP_BYTES);
    assert_eq!(stored, sha, "inputs/default/{id} differs from the uploaded file");
    let left = app.keys(&format!("uploads/default/{id}/")).await;
    assert!(left.is_empty(), "tails left after the upload became a job: {left:?}");
}

// ----------------------------------------------------------------- clients

#[derive(Clone, Copy, Debug)]
enum TusClient {
    /// tus-js-client in Node.
    Js,
    /// tuspy in the venv's Python.
    Py,
}

impl TusClient {
    fn command(self) -> tokio::process::Command {
        let scripts = manifest_dir().join("tests/clients");
        match self {
            TusClient::Js => {
                let modules = std::env::var("TRANSCODER_TEST_NODE_MODULES")
                    .unwrap_or_else(|_| manifest_dir().join("tests/browser/node_modules").display().to_string());
                assert!(
                    Path::new(&modules).join("tus-js-client").is_dir(),
                    "tus-js-client not in {modules}: run `source scripts/prereqs.sh && ensure_node_tools`"
                );
                let mut cmd = tokio::process::Command::new("node");
                cmd.arg(scripts.join("tus_upload.mjs")).env("TRANSCODER_TEST_NODE_MODULES", modules);
                cmd
            }
            TusClient::Py => {
                let python = std::env::var("TRANSCODER_TEST_PYTHON")
                    .unwrap_or_else(|_| manifest_dir().join("target/pyenv/bin/python").display().to_string());
                assert!(
                    Path::new(&python).exists(),
                    "{python} missing: run `source scripts/prereqs.sh && ensure_python_tools`"
                );
                let mut cmd = tokio::process::Command::new(python);
                cmd.arg(scripts.join("tus_upload.py"));
                cmd
            }
        }
    }

    /// Uploads `file` to `endpoint` in `chunk`-byte PATCHes; returns the
    /// script's JSON report (panics if the upload failed).
    async fn upload(self, endpoint: String, file: PathBuf, chunk: usize, env: Vec<(&'static str, String)>) -> Value {
        let mut cmd = self.command();
        cmd.arg(&endpoint)
            .arg(&file)
            .arg(chunk.to_string())
            .env("TUS_METADATA", metadata_json())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let run = cmd.output();
        let out = tokio::time::timeout(CLIENT_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("{self:?} did not finish within {CLIENT_TIMEOUT:?}"))
            .expect("the client starts");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stdout.lines().last().unwrap_or_else(|| panic!("{self:?} printed nothing; stderr: {stderr}"));
        let report: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{self:?} printed {line:?} ({e}); stderr: {stderr}"));
        assert!(out.status.success(), "{self:?} failed ({}): {report}; stderr: {stderr}", out.status);
        report
    }
}

fn patches(report: &Value) -> Vec<&Value> {
    report["requests"].as_array().unwrap().iter().filter(|r| r["method"] == "PATCH").collect()
}

fn as_u64(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The report of an upload in `chunk`-byte PATCHes without interruption:
/// every PATCH continued where the last ended and got 204, only the last
/// carried the monitor link, and HEAD afterwards carries it too. Returns
/// the job id.
fn check_report(report: &Value, chunk: usize) -> String {
    let patches = patches(report);
    assert_eq!(patches.len(), CLIP_BYTES.div_ceil(chunk), "one PATCH per {chunk}-byte chunk: {report}");
    for (n, p) in patches.iter().enumerate() {
        assert_eq!(p["status"], 204, "{p}");
        assert_eq!(as_u64(&p["sent_offset"]), (n * chunk) as u64, "{p}");
        assert_eq!(as_u64(&p["offset"]), ((n + 1) * chunk).min(CLIP_BYTES) as u64, "{p}");
        if n + 1 < patches.len() {
            assert!(p["link"].is_null(), "an unfinished upload has no monitor link: {p}");
        }
    }
    let link = report["link"].as_str().unwrap_or_else(|| panic!("the final PATCH carried no Link: {report}"));
    let id = monitor_id(link);
    let head = &report["head"];
    assert_eq!(head["status"], 200, "{head}");
    assert_eq!(as_u64(&head["offset"]), CLIP_BYTES as u64);
    assert_eq!(as_u64(&head["length"]), CLIP_BYTES as u64);
    assert_eq!(head["link"], link, "HEAD on the finished upload carries the same Link");
    id
}

/// One client uploads the clip twice at once, in 1 MiB and in 16 MiB chunks;
/// both become jobs that reach `done` with the file as their input.
async fn a_real_client_uploads_in_1_and_16_mib_chunks(client: TusClient) {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let (clip, sha) = big_clip(app.dir.path());
    let endpoint = app.url("/video/uploads");
    let started = Instant::now();
    let (small, large) = tokio::join!(
        client.upload(endpoint.clone(), clip.clone(), MIB, vec![]),
        client.upload(endpoint.clone(), clip.clone(), 16 * MIB, vec![]),
    );
    let uploaded = started.elapsed();
    let small_id = check_report(&small, MIB);
    let large_id = check_report(&large, 16 * MIB);
    assert_ne!(small_id, large_id);
    for id in [&small_id, &large_id] {
        assert_job_done_with_input(&app, &mut sub, id, &sha).await;
    }
    println!(
        "{client:?} {}: {CLIP_BYTES} bytes in 1 MiB ({} PATCHes, {}s in the client) and 16 MiB ({} PATCHes, {}s) chunks, \
         both uploaded after {:.1}s, both done after {:.1}s",
        small["version"],
        patches(&small).len(),
        small["seconds"],
        patches(&large).len(),
        large["seconds"],
        uploaded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_in_1_mib_and_16_mib_chunks_become_done_jobs_with_the_files_sha256() {
    a_real_client_uploads_in_1_and_16_mib_chunks(TusClient::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_in_1_mib_and_16_mib_chunks_become_done_jobs_with_the_files_sha256() {
    a_real_client_uploads_in_1_and_16_mib_chunks(TusClient::Py).await;
}

// ------------------------------------------------------- cut connection

/// A request as the proxy forwarded it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    upload_offset: Option<u64>,
}

/// Where the proxy cut.
#[derive(Debug, Clone)]
struct Cut {
    path: String,
    /// The cut PATCH's `Upload-Offset`.
    offset: u64,
    /// Body bytes of it forwarded to the API before the cut.
    forwarded: u64,
    /// Its `Content-Length`.
    declared: u64,
}

struct ProxyState {
    upstream: String,
    cut_after: u64,
    armed: AtomicBool,
    cut: watch::Sender<Option<Cut>>,
    /// Closed from the cut until the test opens it: requests that arrive
    /// meanwhile wait (so the test looks at the upload first).
    gate: watch::Sender<bool>,
    seen: Mutex<Vec<Seen>>,
}

/// A TCP proxy in front of the API that forwards the first PATCH's body only
/// up to `cut_after` bytes, then closes both connections.
struct CutProxy {
    address: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(upstream: &str, cut_after: u64) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_start_matches("http://").to_string(),
            cut_after,
            armed: AtomicBool::new(true),
            cut: watch::channel(None).0,
            gate: watch::channel(true).0,
            seen: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(connection(shared.clone(), inbound));
            }
        });
        CutProxy { address, state, task }
    }

    async fn wait_for_cut(&self, limit: Duration) -> Cut {
        let mut rx = self.state.cut.subscribe();
        let waited = tokio::time::timeout(limit, rx.wait_for(|c| c.is_some())).await;
        let cut = waited.unwrap_or_else(|_| panic!("no PATCH was cut within {limit:?}")).unwrap().clone();
        cut.unwrap()
    }

    fn open_gate(&self) {
        self.state.gate.send_replace(true);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Parse {
    Head(Vec<u8>),
    /// `left` bytes of the body to go; `cut`: the PATCH to cut, after
    /// `state.cut_after` body bytes.
    Body {
        left: u64,
        sent: u64,
        cut: Option<Cut>,
    },
    /// A body without Content-Length: forwarded as is, no longer parsed.
    Raw,
}

/// One client connection: requests are parsed (head, then Content-Length
/// bytes of body) as they are forwarded, so the proxy knows which request
/// and which byte it is at.
async fn connection(state: Arc<ProxyState>, inbound: TcpStream) {
    let Ok(outbound) = TcpStream::connect(&state.upstream).await else { return };
    let _ = outbound.set_nodelay(true);
    let (mut client_rx, mut client_tx) = inbound.into_split();
    let (mut server_rx, mut server_tx) = outbound.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
    });
    let mut parse = Parse::Head(Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match client_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            match &mut parse {
                Parse::Raw => {
                    if server_tx.write_all(data).await.is_err() {
                        break 'read;
                    }
                    data = &[];
                }
                Parse::Head(head) => {
                    // Heads are small: byte by byte until the blank line.
                    let mut used = 0;
                    while used < data.len() && !head.ends_with(b"\r\n\r\n") {
                        head.push(data[used]);
                        used += 1;
                    }
                    data = &data[used..];
                    if !head.ends_with(b"\r\n\r\n") {
                        continue;
                    }
                    let head = std::mem::take(head);
                    let next = on_head(&state, &head).await;
                    if server_tx.write_all(&head).await.is_err() {
                        break 'read;
                    }
                    parse = next;
                }
                Parse::Body { left, sent, cut } => {
                    let mut take = (*left).min(data.len() as u64);
                    let cut_now = cut.is_some() && *sent + take >= state.cut_after;
                    if cut_now {
                        take = state.cut_after - *sent;
                    }
                    if server_tx.write_all(&data[..take as usize]).await.is_err() {
                        break 'read;
                    }
                    *sent += take;
                    *left -= take;
                    data = &data[take as usize..];
                    if cut_now {
                        // Everything forwarded is in the API's socket; close
                        // both sides (the API sees the body end early, the
                        // client a dropped connection).
                        let mut cut = cut.take().expect("cutting");
                        cut.forwarded = *sent;
                        state.gate.send_replace(false);
                        let _ = server_tx.shutdown().await;
                        down.abort();
                        drop((client_rx, server_tx));
                        state.cut.send_replace(Some(cut));
                        return;
                    }
                    if *left == 0 {
                        parse = Parse::Head(Vec::new());
                    }
                }
            }
        }
    }
    let _ = server_tx.shutdown().await;
    let _ = down.await;
}

/// Records a request head; arms the cut on the first PATCH; holds requests
/// that come after the cut until the gate opens.
async fn on_head(state: &ProxyState, head: &[u8]) -> Parse {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or("").split(' ');
    let method = request.next().unwrap_or("").to_string();
    let path = request.next().unwrap_or("").to_string();
    let mut content_length = None;
    let mut upload_offset = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.trim().parse::<u64>().ok(),
            "upload-offset" => upload_offset = value.trim().parse::<u64>().ok(),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let after_cut = state.cut.borrow().is_some() || !*state.gate.borrow();
    if after_cut {
        let mut gate = state.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
    }
    state.seen.lock().unwrap().push(Seen { method: method.clone(), upload_offset });
    if chunked {
        return Parse::Raw;
    }
    let length = content_length.unwrap_or(0);
    let mut cut = None;
    if method == "PATCH" && length > state.cut_after && state.armed.swap(false, Ordering::SeqCst) {
        cut = Some(Cut { path, offset: upload_offset.unwrap_or(0), forwarded: 0, declared: length });
    }
    if length == 0 {
        Parse::Head(Vec::new())
    } else {
        Parse::Body { left: length, sent: 0, cut }
    }
}

/// The client's first 16 MiB PATCH is cut after 11 MiB + 12345 bytes (one
/// full part and a tail): a HEAD then answers exactly the bytes that reached
/// the API, the client's retry HEADs and PATCHes from there, and the job's
/// input is the file.
async fn a_cut_patch_keeps_its_bytes_and_the_client_resumes(client: TusClient) {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let (clip, sha) = big_clip(app.dir.path());
    let cut_after = (11 * MIB + 12345) as u64;
    let proxy = CutProxy::start(&app.address, cut_after).await;
    let retries = match client {
        TusClient::Js => ("TUS_RETRY_DELAYS", "[0, 500, 1000]".to_string()),
        TusClient::Py => ("TUS_RETRIES", "2".to_string()),
    };
    let endpoint = format!("{}/video/uploads", proxy.address);
    let started = Instant::now();
    let upload = tokio::spawn(client.upload(endpoint, clip.clone(), 16 * MIB, vec![retries]));

    let cut = proxy.wait_for_cut(Duration::from_secs(60)).await;
    let cut_seen = started.elapsed();
    assert_eq!(cut.offset, 0, "the first PATCH is cut: {cut:?}");
    assert_eq!(cut.declared, 16 * MIB as u64);
    assert_eq!(cut.forwarded, cut_after);
    // Straight to the API (the client's own retry waits at the proxy): the
    // upload holds every byte that arrived before the cut.
    let head = app.http.head(app.url(&cut.path)).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 200);
    let stored: u64 = header(head.headers(), "upload-offset").parse().unwrap();
    assert_eq!(header(head.headers(), "upload-length"), CLIP_BYTES.to_string());
    assert!(head.headers().get("link").is_none(), "not finished yet");
    assert_eq!(header(head.headers(), "cache-control"), "no-store");
    assert!(stored > 0, "the bytes received before the cut are stored");
    assert_eq!(stored, cut.offset + cut.forwarded, "every byte that reached the API before the cut is stored");
    proxy.open_gate();

    let report = tokio::time::timeout(CLIENT_TIMEOUT, upload).await.expect("the client finishes").unwrap();
    let seen = proxy.seen();
    let expected = vec![
        Seen { method: "POST".into(), upload_offset: None },
        Seen { method: "PATCH".into(), upload_offset: Some(0) },
        Seen { method: "HEAD".into(), upload_offset: None },
        Seen { method: "PATCH".into(), upload_offset: Some(stored) },
        Seen { method: "HEAD".into(), upload_offset: None },
    ];
    assert_eq!(
        seen, expected,
        "create, the cut PATCH, the retry's HEAD, the rest from the stored offset, the script's HEAD at the end"
    );
    let last = *patches(&report).last().unwrap();
    assert_eq!(last["status"], 204, "{report}");
    assert_eq!(as_u64(&last["sent_offset"]), stored, "{report}");
    assert_eq!(as_u64(&last["offset"]), CLIP_BYTES as u64, "{report}");
    match client {
        TusClient::Js => {
            let retried = report["retries"].as_array().unwrap();
            assert_eq!(retried.len(), 1, "one retried error, the cut: {report}");
            let resumed = report["requests"].as_array().unwrap().iter().find(|r| r["method"] == "HEAD").unwrap();
            assert_eq!(as_u64(&resumed["offset"]), stored, "the client's HEAD: {resumed}");
        }
        TusClient::Py => assert_eq!(last["retried"], 1, "the cut PATCH was retried once: {report}"),
    }
    let link = report["link"].as_str().unwrap_or_else(|| panic!("no Link on the final PATCH: {report}"));
    let id = monitor_id(link);
    assert!(cut.path.ends_with(&id), "the upload {} became the job {id}", cut.path);
    assert_eq!(report["head"]["link"], link);
    assert_job_done_with_input(&app, &mut sub, &id, &sha).await;
    println!(
        "{client:?}: PATCH of 16 MiB cut after {} body bytes ({:.1}s); HEAD answered Upload-Offset {stored}; \
         resumed with PATCH at {stored}; done after {:.1}s",
        cut.forwarded,
        cut_seen.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_cut_by_a_proxy_keeps_the_bytes_received_and_tus_js_client_resumes_from_them() {
    a_cut_patch_keeps_its_bytes_and_the_client_resumes(TusClient::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_cut_by_a_proxy_keeps_the_bytes_received_and_tuspy_resumes_from_them() {
    a_cut_patch_keeps_its_bytes_and_the_client_resumes(TusClient::Py).await;
}

// -------------------------------------------------------------- kill -9

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `transcoder api` over the test's store, broker prefix and bucket.
async fn spawn_api_process(app: &TestApp, port: u16) -> Proc {
    let s = &app.settings;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .arg("api")
        .env("TRANSCODER__AMQP__URL", &s.amqp.url)
        .env("TRANSCODER__AMQP__PREFIX", &s.amqp.prefix)
        .env("TRANSCODER__STORAGE__ENDPOINT", &s.storage.endpoint)
        .env("TRANSCODER__STORAGE__BUCKET", &s.storage.bucket)
        .env("TRANSCODER__STORAGE__ACCESS_KEY", &s.storage.access_key)
        .env("TRANSCODER__STORAGE__SECRET_KEY", &s.storage.secret_key)
        .env("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("transcoder api starts");
    let proc = Proc { child };
    crate::procs::wait_ready(&format!("http://127.0.0.1:{port}")).await;
    proc
}

/// Parts stored so far in the multipart upload of an upload's record.
async fn stored_parts(storage: &Storage, record_key: &str) -> usize {
    let Ok(Some(record)) = storage.get_json::<transcoder::storage::InProgress>(record_key).await else {
        return 0;
    };
    let Some(m) = record.multipart else { return 0 };
    let parts = storage.sdk().list_parts().bucket(storage.bucket()).key(&m.key).upload_id(&m.upload_id).send().await;
    parts.map(|p| p.parts().len()).unwrap_or(0)
}

/// An upload is created with its first 3 MiB + 4321 bytes (acknowledged),
/// then a PATCH streams the rest slowly; once the API has stored a full part
/// of it and while more bytes are still flowing, the API process gets
/// SIGKILL. A new API process (same store, broker and port) answers the
/// acknowledged offset, takes the rest, and the job completes with the
/// file as its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_through_a_new_api_process_after_kill_9_mid_patch_and_its_job_completes() {
    // The store runs in the test process, so it outlives the API processes;
    // the in-process service (over that store) runs the workers.
    let store_dir = tempfile::tempdir().unwrap();
    let (access, secret) = (transcoder::embedded_s3::DEV_ACCESS_KEY, transcoder::embedded_s3::DEV_SECRET_KEY);
    let store_stop = tokio_util::sync::CancellationToken::new();
    let store = transcoder::embedded_s3::EmbeddedStore::start(store_dir.path(), 0, access, secret, store_stop.clone())
        .await
        .unwrap();
    let endpoint = store.endpoint();
    let app = spawn_app_with(|s| {
        s.storage.endpoint = endpoint.clone();
        s.storage.access_key = access.into();
        s.storage.secret_key = secret.into();
    })
    .await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let (clip, sha) = big_clip(app.dir.path());
    let bytes = bytes::Bytes::from(std::fs::read(&clip).unwrap());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = http_client();
    let mut api = spawn_api_process(&app, port).await;

    // creation-with-upload: the first bytes come with the POST.
    let acked = 3 * MIB + 4321;
    let meta = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("filename {},height {}", b64.encode("clip.mp4"), b64.encode("120"))
    };
    let created = http
        .post(format!("{base}/video/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", CLIP_BYTES.to_string())
        .header("Upload-Metadata", meta)
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes.slice(..acked))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(header(created.headers(), "upload-offset"), acked.to_string());
    let location = header(created.headers(), "location");
    let id = location.rsplit('/').next().unwrap().to_string();
    let url = format!("{base}{location}");

    // The rest, as a stream: 6 MiB at once (past the first 8 MiB part
    // boundary), then 64 KiB every 25 ms (about 2.5 MiB/s), so bytes are
    // still flowing when the process is killed; the last MiB is held back
    // until the request is gone, so the body never ends on its own.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let (sent_tx, mut sent_rx) = watch::channel(0usize);
    let rest = bytes.slice(acked..);
    let feeder = tokio::spawn(async move {
        let mut sent = 0;
        for chunk in rest.chunks(64 * 1024) {
            if sent + chunk.len() > rest.len() - MIB {
                tx.closed().await;
                break;
            }
            if sent >= 6 * MIB {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            if tx.send(Ok(rest.slice_ref(chunk))).await.is_err() {
                break;
            }
            sent += chunk.len();
            sent_tx.send_replace(sent);
        }
        sent
    });
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let patch = http
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", acked.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", (CLIP_BYTES - acked).to_string())
        .body(body)
        .send();
    let patch = tokio::spawn(patch);

    let record = format!("uploads/default/{id}.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_parts(&app.storage, &record).await < 1 {
        assert!(Instant::now() < deadline, "the API stored no part of the PATCH within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Kill as soon as the next chunk has gone out: mid-body, bytes flowing.
    let before = *sent_rx.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(10), sent_rx.changed()).await.expect("the body is flowing").unwrap();
    let at_kill = *sent_rx.borrow();
    api.kill9();
    let killed_at = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(30), patch).await.expect("the PATCH ends").unwrap();
    assert!(
        answer.as_ref().map(|r| r.status() != 204).unwrap_or(true),
        "the killed PATCH cannot have succeeded: {answer:?}"
    );
    let fed = tokio::time::timeout(Duration::from_secs(30), feeder).await.expect("the feeder stops").unwrap();
    assert!(before > 6 * MIB && at_kill > before, "killed during the paced part: {before} then {at_kill}");
    assert!(fed < CLIP_BYTES - acked, "the body was cut short by the kill: {fed} of {}", CLIP_BYTES - acked);
    assert!(http.head(&url).header("Tus-Resumable", "1.0.0").send().await.is_err(), "the API process is gone");

    // A new API process, same port, store and broker.
    let _api = spawn_api_process(&app, port).await;
    let restarted = killed_at.elapsed();
    let head = http.head(&url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(head.headers(), "upload-length"), CLIP_BYTES.to_string());
    let offset: usize = header(head.headers(), "upload-offset").parse().unwrap();
    assert_eq!(offset, acked, "the acknowledged offset survives kill -9; the killed PATCH acknowledged nothing");
    let last = http
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes.slice(offset..))
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 204, "{:?}", last.headers());
    assert_eq!(header(last.headers(), "upload-offset"), CLIP_BYTES.to_string());
    let job = monitor_id(&header(last.headers(), "link"));
    assert_eq!(job, id, "the upload became the job with its id");
    let head = http.head(&url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(header(head.headers(), "link"), header(last.headers(), "link"));
    assert_job_done_with_input(&app, &mut sub, &job, &sha).await;
    println!(
        "kill -9 mid-PATCH: acknowledged {acked}; killed with {at_kill} of {} PATCH bytes sent (a part stored); \
         new API ready {:.1}s later, HEAD {offset}; job done",
        CLIP_BYTES - acked,
        restarted.as_secs_f64()
    );
    drop(_api);
    app.stop().await;
    store_stop.cancel();
    drop(store);
}
