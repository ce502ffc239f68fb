//! Hostile input and greedy clients: playlists and scripts posing as
//! videos, absurd headers, slow clients, oversize bodies, quotas.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::procs::*;

/// Incomplete multipart uploads the embedded store still holds.
fn leftover_uploads(store: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(store) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(".upload") {
            found.push(name);
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// A TCP listener that counts the connections it receives.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).status().unwrap();
    assert!(status.success(), "ffmpeg {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpus_is_refused_or_fails_cleanly_without_network_or_foreign_reads() {
    let app = spawn_app().await;
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let dir = app.dir.path();
    let (port, connections) = counting_listener().await;
    let secret = "FOREIGN-TENANT-SECRET-7f3a";
    let foreign = dir.join("foreign.ts");
    std::fs::write(&foreign, secret.repeat(100)).unwrap();

    // Refused at the door: not a video container at all.
    let playlists: Vec<(&str, Vec<u8>)> = vec![
        (
            "m3u8 with http segments",
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:{port}/seg.ts\n#EXT-X-ENDLIST\n")
                .into_bytes(),
        ),
        (
            "m3u8 with a local path",
            format!("#EXTM3U\n#EXTINF:10,\n{}\n#EXT-X-ENDLIST\n", foreign.display()).into_bytes(),
        ),
        (
            "m3u8 with a file URL",
            format!("#EXTM3U\n#EXTINF:10,\nfile://{}\n#EXT-X-ENDLIST\n", foreign.display()).into_bytes(),
        ),
        ("ffconcat script", format!("ffconcat version 1.0\nfile '{}'\n", foreign.display()).into_bytes()),
    ];
    let mut refused = 0;
    for (what, body) in &playlists {
        let r = app.submit_bytes(body.clone(), "video/mp4", "").await;
        assert_eq!(r.status(), 415, "{what}");
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(body.clone()).file_name("clip.mp4"));
        let r = app.http.post(app.url("/video/convert")).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), 415, "{what} as clip.mp4 in a form");
        refused += 2;
    }

    // Accepted (they look like videos) and then failed with a clear code.
    let huge = dir.join("huge.mov");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=black:size=16000x16000:rate=1",
        "-frames:v",
        "1",
        "-c:v",
        "mjpeg",
        "-q:v",
        "31",
        huge.to_str().unwrap(),
    ]);
    let long = dir.join("long.avi");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-c:v", "mjpeg", long.to_str().unwrap()]);
    let mut avi = std::fs::read(&long).unwrap();
    let patch = |b: &mut Vec<u8>, tag: &[u8], offset: usize| {
        let i = b.windows(4).position(|w| w == tag).unwrap() + offset;
        b[i..i + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    };
    patch(&mut avi, b"avih", 8 + 16); // dwTotalFrames
    patch(&mut avi, b"strh", 8 + 32); // dwLength
    let clip = std::fs::read(Clip::small(2).make(dir, "ok.mp4")).unwrap();
    let mut fake = clip[..32].to_vec();
    fake.extend(std::iter::repeat_n(b"this is text, not video. ".as_slice(), 4000).flatten());
    let mut playlist_in_mp4 = clip[..32].to_vec();
    playlist_in_mp4.extend_from_slice(&playlists[0].1);
    let accepted: Vec<(&str, Vec<u8>, &str)> = vec![
        ("16000x16000 frames", std::fs::read(&huge).unwrap(), "input-too-large"),
        ("a header claiming 10^6 frames", avi, "input-too-large"),
        ("truncated", clip[..clip.len() / 3].to_vec(), "invalid-media"),
        ("text behind MP4 magic bytes", fake, "invalid-media"),
        ("a playlist behind MP4 magic bytes", playlist_in_mp4, "invalid-media"),
    ];
    let mut ids = Vec::new();
    for (what, body, _) in &accepted {
        let r = app.submit_bytes(body.clone(), "application/octet-stream", "").await;
        assert_eq!(r.status(), 202, "{what}");
        ids.push(r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    for ((what, _, code), id) in accepted.iter().zip(&ids) {
        let failed = sub.wait_for(&format!("job.failed.{id}"), JOB_TIMEOUT).await;
        let error = &failed.body["data"]["error"];
        assert_eq!(error["code"], *code, "{what}: {error}");
        assert!(error["message"].as_str().unwrap().len() > 10, "{what}: {error}");
    }
    // Other jobs are unaffected.
    let good = app.submit(&dir.join("ok.mp4"), "").await;
    sub.wait_for(&format!("job.completed.{good}"), JOB_TIMEOUT).await;

    let scratch = app.settings.worker.scratch_dir.clone();
    assert_ffmpeg_gone(&scratch, Duration::from_secs(5)).await;
    let outputs = app.keys("outputs/").await;
    // Only the good job has an output (the result, its poster and storyboard).
    assert!(outputs.iter().all(|k| k.starts_with(&format!("outputs/default/{good}/"))), "{outputs:?}");
    assert!(outputs.iter().any(|k| k.ends_with("/output.mp4")), "{outputs:?}");
    let mut foreign_bytes = 0;
    for path in walk(&app.settings.storage.data_dir) {
        if path.is_file() && path.to_string_lossy().contains("/outputs/") {
            let bytes = std::fs::read(&path).unwrap();
            foreign_bytes += bytes.windows(secret.len()).filter(|w| *w == secret.as_bytes()).count();
        }
    }
    assert_eq!(foreign_bytes, 0);
    assert_eq!(connections.load(Ordering::SeqCst), 0, "ffmpeg or the service connected to the listener");
    println!(
        "hostile corpus: {refused} refused with 415, {} failed with a code, listener connections 0, foreign bytes 0, ffmpeg left 0",
        accepted.len()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    assert!(transcoder::config::Settings::defaults().http.header_read_timeout_seconds <= 30);
    let app = spawn_app_with(|s| s.http.header_read_timeout_seconds = 3).await;
    let mut socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    socket.write_all(b"POST /video/convert HTTP/1.1\r\nHost: localhost\r\nContent-Type: vid").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf)).await;
    let closed_after = started.elapsed();
    assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "still open after 30 s");
    assert!(closed_after < Duration::from_secs(6), "closed only after {closed_after:?}");
    println!("slowloris: closed after {:.1} s", closed_after.as_secs_f64());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_aborted_and_an_oversize_one_refused_leaving_no_partial_upload() {
    let limit: u64 = 12 << 20;
    let app = spawn_app_with(|s| {
        s.http.body_idle_timeout_seconds = 2;
        s.http.max_upload_bytes = limit;
    })
    .await;
    let header = std::fs::read(Clip::small(1).make(app.dir.path(), "h.mp4")).unwrap()[..64].to_vec();
    let mut body = header.clone();
    body.resize(9 << 20, 0); // past one 8 MiB part: a multipart upload is under way

    // Stall: declared 20 MiB, sends 9 MiB, then nothing.
    let mut socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    socket
        .write_all(
            b"POST /video/convert HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nContent-Length: 11000000\r\n\r\n",
        )
        .await
        .unwrap();
    socket.write_all(&body).await.unwrap();
    let started = Instant::now();
    let mut response = vec![0u8; 4096];
    let n =
        tokio::time::timeout(Duration::from_secs(20), socket.read(&mut response)).await.expect("a response").unwrap();
    let text = String::from_utf8_lossy(&response[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    println!("stalled body: aborted {:.1} s after the data stopped", started.elapsed().as_secs_f64());

    // Oversize, without Content-Length.
    let mut big = header;
    big.resize(limit as usize + 1, 0);
    let r = app.submit_chunked(&big, 1 << 20).await;
    assert_eq!(r.status(), 413);

    // The aborts run as the requests end; wait for the store to settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftover_uploads(&app.settings.storage.data_dir);
        if left.is_empty() && app.keys("inputs/").await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}, inputs {:?}", app.keys("inputs/").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.keys("jobs/").await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_upload_or_pending_job_quota_gets_429() {
    // A client of its own, so the per-client upload gauge is this test's.
    let app = spawn_api_with(|s| {
        s.auth.keys.insert("key-quota".into(), "quota".into());
        s.http.max_concurrent_uploads_per_client = 1;
        s.http.max_pending_jobs_per_client = 2;
    })
    .await;
    let clip = std::fs::read(Clip::small(1).make(app.dir.path(), "c.mp4")).unwrap();
    let post = |body: reqwest::Body| {
        app.http.post(app.url("/video/convert")).bearer_auth("key-quota").header("Content-Type", "video/mp4").body(body)
    };
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(clip[..1000].to_vec())).unwrap();
    let slow = tokio::spawn(post(reqwest::Body::wrap_stream(rx)).send());

    // Wait until the held upload owns the only slot.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metric(&text, "transcoder_uploads_in_progress", "client=\"quota\"") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the held upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = post(b"x".to_vec().into()).send().await.unwrap();
    assert_eq!(busy.status(), 429);
    assert!(busy.headers().contains_key("retry-after"));
    let problem = busy.json::<serde_json::Value>().await.unwrap();
    assert_eq!(problem["code"], "too-many-requests");
    assert!(problem["detail"].as_str().unwrap().contains("uploads in progress"), "{problem}");
    tx.unbounded_send(Ok(clip[1000..].to_vec())).unwrap();
    drop(tx);
    assert_eq!(slow.await.unwrap().unwrap().status(), 202);

    // No worker runs here: jobs stay pending, up to two of them.
    assert_eq!(post(clip.clone().into()).send().await.unwrap().status(), 202);
    let last = post(clip.clone().into()).send().await.unwrap();
    assert_eq!(last.status(), 429);
    assert!(last.headers().contains_key("retry-after"));
    assert!(last.json::<serde_json::Value>().await.unwrap()["detail"].as_str().unwrap().contains("unfinished"));
    app.stop().await;
}
