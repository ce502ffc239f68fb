//! `transcoder api` and `transcoder worker` as separate processes against a
//! standalone S3-compatible server (moto), as they run on Kubernetes.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::procs::Proc;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn moto_server() -> String {
    let candidates = [
        std::env::var("TRANSCODER_TEST_PYTHON")
            .ok()
            .map(|py| format!("{}/moto_server", py.rsplit_once('/').unwrap().0)),
        Some(format!("{}/target/pyenv/bin/moto_server", env!("CARGO_MANIFEST_DIR"))),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| std::path::Path::new(p).exists())
        .expect("moto_server not found: run the suite through ./scripts/test.sh, which installs it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_as_separate_processes_complete_a_job_on_a_standalone_s3_server_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let s3_port = free_port();
    let _moto = Proc {
        child: Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts"),
    };
    let prefix = unique("proc");
    let api_port = free_port();
    let env = [
        ("TRANSCODER__AMQP__PREFIX", prefix.clone()),
        ("TRANSCODER__STORAGE__ENDPOINT", format!("http://127.0.0.1:{s3_port}")),
        ("TRANSCODER__STORAGE__BUCKET", unique("bucket")),
        ("TRANSCODER__STORAGE__ACCESS_KEY", "testing".into()),
        ("TRANSCODER__STORAGE__SECRET_KEY", "testing".into()),
        ("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{api_port}")),
        ("TRANSCODER__WORKER__SCRATCH_DIR", dir.path().join("scratch").display().to_string()),
    ];
    let spawn = |role: &str| crate::procs::spawn_role(role, &env);
    let http = http_client();
    let mut api = spawn("api");
    let address = format!("http://127.0.0.1:{api_port}");
    crate::procs::wait_ready(&address).await;
    let mut worker = spawn("worker");

    let mut sub = Subscriber::bind(&prefix, "default", "#").await;
    let clip = Clip::small(2).make(dir.path(), "clip.mp4");
    let response = http
        .post(format!("{address}/video/convert?height=120"))
        .header("Content-Type", "video/mp4")
        .body(std::fs::read(&clip).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let doc: serde_json::Value = response.json().await.unwrap();
    let id = doc["id"].as_str().unwrap().to_string();

    sub.wait_for(&format!("job.started.{id}"), JOB_TIMEOUT).await;
    let done = sub.wait_for(&format!("job.completed.{id}"), JOB_TIMEOUT).await;
    assert_eq!(done.body["data"]["output"]["height"], 120);
    let out = dir.path().join("out.mp4");
    let bytes = http.get(format!("{address}/video/download/{id}")).send().await.unwrap().bytes().await.unwrap();
    std::fs::write(&out, bytes).unwrap();
    assert_eq!(stream(&probe(&out), "video").unwrap()["codec_name"], "h264");

    assert!(api.terminate(Duration::from_secs(20)).await.success(), "api exit status");
    assert!(worker.terminate(Duration::from_secs(20)).await.success(), "worker exit status");
    delete_topology(&prefix);
}
