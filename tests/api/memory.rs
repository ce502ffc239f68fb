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
