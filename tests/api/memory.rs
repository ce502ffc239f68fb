//! Memory stays flat while a large upload streams through.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Heavy (1 GiB through loopback and onto disk): run by the test command
/// with `--include-ignored`.
#[tokio::test]
#[ignore = "1 GiB upload; ./scripts/test.sh runs it"]
async fn a_1_gib_upload_is_accepted_with_the_serve_process_peak_rss_under_150_mib() {
    const GIB: usize = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prefix = unique("mem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .arg("serve")
        .env("TRANSCODER__AMQP__PREFIX", &prefix)
        .env("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("TRANSCODER__STORAGE__DATA_DIR", dir.path().join("store"))
        .env("TRANSCODER__WORKER__SCRATCH_DIR", dir.path().join("scratch"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    crate::procs::wait_ready(&address).await;

    // An MP4 header, then zeros: streamed in 1 MiB chunks without a
    // Content-Length, so the service cannot know the size in advance.
    let header = std::fs::read(Clip::small(1).make(dir.path(), "h.mp4")).unwrap()[..64].to_vec();
    let chunk = bytes::Bytes::from(vec![0u8; 1 << 20]);
    let chunks = (0..GIB >> 20).map(move |i| {
        let mut c = chunk.clone();
        if i == 0 {
            let mut first = header.clone();
            first.extend_from_slice(&c[header.len()..]);
            c = bytes::Bytes::from(first);
        }
        Ok::<_, std::io::Error>(c)
    });
    let started = Instant::now();
    let response = http
        .post(format!("{address}/video/convert"))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 202);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert_eq!(doc["input"]["size-bytes"], GIB as u64);

    let peak_mib = peak_rss_kib(pid) / 1024;
    println!("1 GiB upload: 202 after {:.1} s; serve peak RSS {peak_mib} MiB", elapsed.as_secs_f64());
    let _ = child.kill();
    let _ = child.wait();
    delete_topology(&prefix);
    assert!(peak_mib < 150, "peak RSS {peak_mib} MiB");
}

/// One upload of the concurrency test: its way in and how it ended.
#[derive(Debug)]
enum Outcome {
    /// 202 (POST) or the last PATCH's 204 (tus), with the job id.
    Job(String),
    /// 503 with Retry-After.
    Refused,
}

async fn post_upload(http: reqwest::Client, base: String, key: String, body: bytes::Bytes) -> Result<Outcome, String> {
    let response = http
        .post(format!("{base}/video/convert"))
        .bearer_auth(&key)
        .header("Content-Type", "video/mp4")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST: {e}"))?;
    judge(response, 202).await
}

async fn tus_upload(http: reqwest::Client, base: String, key: String, body: bytes::Bytes) -> Result<Outcome, String> {
    const CHUNK: usize = 16 << 20;
    let created = http
        .post(format!("{base}/video/uploads"))
        .bearer_auth(&key)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", body.len().to_string())
        .send()
        .await
        .map_err(|e| format!("tus POST: {e}"))?;
    if created.status() != 201 {
        return Err(format!("tus POST: {}", created.status()));
    }
    let url = format!("{base}{}", created.headers()["location"].to_str().unwrap());
    let mut offset = 0;
    while offset < body.len() {
        let end = (offset + CHUNK).min(body.len());
        let response = http
            .patch(&url)
            .bearer_auth(&key)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body.slice(offset..end))
            .send()
            .await
            .map_err(|e| format!("PATCH: {e}"))?;
        match judge(response, 204).await? {
            Outcome::Refused => return Ok(Outcome::Refused),
            Outcome::Job(id) if end == body.len() => return Ok(Outcome::Job(id)),
            Outcome::Job(_) => offset = end,
        }
    }
    unreachable!("the loop returns at the last chunk")
}

/// `ok` with the job (from the body or the Link header), or 503 with
/// Retry-After; anything else is an error.
async fn judge(response: reqwest::Response, ok: u16) -> Result<Outcome, String> {
    let status = response.status().as_u16();
    if status == 503 {
        return match response.headers().get("retry-after") {
            Some(_) => Ok(Outcome::Refused),
            None => Err("503 without Retry-After".into()),
        };
    }
    if status != ok {
        return Err(format!("{status}: {}", response.text().await.unwrap_or_default()));
    }
    if let Some(link) = response.headers().get("link") {
        let link = link.to_str().unwrap();
        return Ok(Outcome::Job(link.trim_start_matches("</video/status/").split('>').next().unwrap().into()));
    }
    if ok == 204 {
        return Ok(Outcome::Job(String::new()));
    }
    let doc: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    Ok(Outcome::Job(doc["id"].as_str().unwrap().to_string()))
}

/// Heavy (2.3 GiB through loopback): run by the test command with
/// `--include-ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "48 concurrent 48 MiB uploads; ./scripts/test.sh runs it"]
async fn concurrent_uploads_stay_within_the_upload_buffer_and_every_202_is_a_job() {
    const CLIENTS: usize = 8;
    const UPLOADS: usize = 48;
    let dir = tempfile::tempdir().unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let (access, secret) = (transcoder::embedded_s3::DEV_ACCESS_KEY, transcoder::embedded_s3::DEV_SECRET_KEY);
    let store =
        transcoder::embedded_s3::EmbeddedStore::start(&dir.path().join("store"), 0, access, secret, token.clone())
            .await
            .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prefix = unique("membuf");
    let bucket = unique("bucket");
    let keys: String = (0..CLIENTS).map(|c| format!("\"key-{c}\" = \"client-{c}\"\n")).collect();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[auth.keys]\n{keys}")).unwrap();
    let env = [
        ("TRANSCODER_CONFIG", config.display().to_string()),
        ("TRANSCODER__AMQP__PREFIX", prefix.clone()),
        ("TRANSCODER__STORAGE__ENDPOINT", store.endpoint()),
        ("TRANSCODER__STORAGE__BUCKET", bucket.clone()),
        ("TRANSCODER__STORAGE__ACCESS_KEY", access.into()),
        ("TRANSCODER__STORAGE__SECRET_KEY", secret.into()),
        ("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}")),
        ("TRANSCODER__HTTP__UPLOAD_BUFFER_BYTES", (128u64 << 20).to_string()),
        ("TRANSCODER__WORKER__SCRATCH_DIR", dir.path().join("scratch").display().to_string()),
        ("TRANSCODER__WORKER__CONCURRENCY", "2".into()),
    ];
    let spawn = |role: &str| crate::procs::spawn_role(role, &env);
    let api = spawn("api");
    let base = format!("http://127.0.0.1:{port}");
    crate::procs::wait_ready(&base).await;
    let _worker = spawn("worker");

    // A 1 s clip padded to 48 MiB: it sniffs and decodes as MP4.
    let mut video = std::fs::read(Clip::small(1).make(dir.path(), "clip.mp4")).unwrap();
    video.resize(48 << 20, 0x5a);
    let video = bytes::Bytes::from(video);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let started = Instant::now();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let (http, base, body) = (http.clone(), base.clone(), video.clone());
            let key = format!("key-{}", i % CLIENTS);
            tokio::spawn(async move {
                let outcome = if i % 2 == 0 {
                    post_upload(http, base, key.clone(), body).await
                } else {
                    tus_upload(http, base, key.clone(), body).await
                };
                (key, outcome)
            })
        })
        .collect();
    let mut jobs = Vec::new();
    let mut refused = 0;
    for upload in uploads {
        let (key, outcome) = upload.await.unwrap();
        match outcome.unwrap_or_else(|e| panic!("an upload of {key} ended badly: {e}")) {
            Outcome::Job(id) => jobs.push((key, id)),
            Outcome::Refused => refused += 1,
        }
    }
    let elapsed = started.elapsed();
    let peak_mib = peak_rss_kib(api.child.id()) / 1024;
    println!(
        "{UPLOADS} uploads of 48 MiB: {} jobs, {refused} refused with 503, in {:.1} s; API peak RSS {peak_mib} MiB",
        jobs.len(),
        elapsed.as_secs_f64()
    );
    assert!(!jobs.is_empty(), "some uploads got through");

    // Every accepted upload is a real job that ends.
    let deadline = Instant::now() + Duration::from_secs(300);
    for (key, id) in &jobs {
        assert!(!id.is_empty(), "the last PATCH of a tus upload names its job");
        loop {
            let doc: serde_json::Value = http
                .get(format!("{base}/video/status/{id}"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let status = doc["status"].as_str().unwrap_or("").to_string();
            if ["done", "failed", "cancelled"].contains(&status.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "job {id} still {status}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    drop(api);
    token.cancel();
    delete_topology(&prefix);
    assert!(peak_mib < 256, "API peak RSS {peak_mib} MiB");
}
