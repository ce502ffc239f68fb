//! Signed webhooks: retried through the broker after the configured waits,
//! verified by the Standard Webhooks library, surviving a kill -9 of the
//! process that delivers them, refused for loopback unless allowed.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::helpers::*;
use crate::procs::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A webhook receiver on loopback answering with `script` in turn (then
/// 200; 0 never answers).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Default::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let connections: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let (g, c) = (got.clone(), connections.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (got, script) = (g.clone(), script.clone());
                async move {
                    got.lock().unwrap().push(Received { at: Instant::now(), headers, body: body.to_vec() });
                    let status = script.lock().unwrap().pop_front().unwrap_or(200);
                    if status == 0 {
                        // A receiver that never answers.
                        std::future::pending::<()>().await;
                    }
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let app = app.clone();
                tokio::spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { url, got, connections }
    }

    async fn until(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "only {} of {n} webhook requests arrived", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(dir: &Path, url: &str, retry: &str, allow_private: bool) -> std::path::PathBuf {
    let path = dir.join("webhooks.toml");
    std::fs::write(
        &path,
        format!(
            "[webhooks]\nretry_seconds = {retry}\nallow_private_networks = {allow_private}\n\
             [clients.default]\nwebhook_url = \"{url}\"\nwebhook_secret = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    path
}

async fn submit(address: &str, dir: &Path) -> String {
    let r = http_client()
        .post(format!("{address}/video/convert"))
        .header("Content-Type", "video/mp4")
        .body(std::fs::read(Clip::small(1).make(dir, "c.mp4")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

/// The Standard Webhooks reference library verifies the request.
fn verify_with_standardwebhooks(dir: &Path, r: &Received) {
    let python = std::env::var("TRANSCODER_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/target/pyenv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let body = dir.join("body.json");
    std::fs::write(&body, &r.body).unwrap();
    let h = |k: &str| r.headers[k].to_str().unwrap().to_string();
    let out = std::process::Command::new(python)
        .args(["-c", "import sys; from standardwebhooks.webhooks import Webhook; \
             body = open(sys.argv[2], 'rb').read(); \
             Webhook(sys.argv[1]).verify(body, {'webhook-id': sys.argv[3], 'webhook-timestamp': sys.argv[4], 'webhook-signature': sys.argv[5]}); \
             print('verified')"])
        .arg(SECRET)
        .arg(&body)
        .args([h("webhook-id"), h("webhook-timestamp"), h("webhook-signature")])
        .output()
        .expect("python with standardwebhooks (./scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_event_again_after_each_wait_with_the_same_id_and_a_valid_signature() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[500, 500, 200]).await;
    let prefix = unique("hook");
    let file = config(dir.path(), &receiver.url, "[1, 2]", true);
    let (mut serve, address) =
        spawn_serve(dir.path(), &prefix, &[("TRANSCODER_CONFIG", file.display().to_string())]).await;
    let id = submit(&address, dir.path()).await;
    let got = receiver.until(3).await;
    for r in &got {
        assert_eq!(r.headers["webhook-id"], format!("{id}.completed"));
        let event: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(event["type"], "video.transcode.completed");
        assert_eq!(event["subject"], id.as_str());
        verify_with_standardwebhooks(dir.path(), r);
    }
    let (first, second) = (got[1].at - got[0].at, got[2].at - got[1].at);
    println!("webhook attempts: waits {first:?} and {second:?} (configured 1 s, 2 s)");
    assert!(first >= Duration::from_millis(950) && second >= Duration::from_millis(1950), "{first:?} {second:?}");
    assert!(serve.terminate(Duration::from_secs(20)).await.success());
    remove_topology(&prefix, &[("TRANSCODER__WEBHOOKS__RETRY_SECONDS", "[1, 2]".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_waiting_for_its_retry_survives_a_kill_9_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[500]).await;
    let prefix = unique("hook");
    let file = config(dir.path(), &receiver.url, "[3]", true);
    let env = [("TRANSCODER_CONFIG", file.display().to_string())];
    let (mut serve, address) = spawn_serve(dir.path(), &prefix, &env).await;
    let id = submit(&address, dir.path()).await;
    receiver.until(1).await;
    // The retry is in the wait queue once the broker holds it.
    let conn = lapin::Connection::connect(AMQP_URL, Default::default()).await.unwrap();
    let wait = format!("{prefix}.webhooks.default.wait.3s");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ch = conn.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let q = ch.queue_declare(wait.as_str().into(), passive, Default::default()).await.unwrap();
        if q.message_count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the retry never reached {wait}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.kill9();
    // Only the webhook role comes back.
    let _webhooks = Proc {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
            .arg("webhooks")
            .env("TRANSCODER__AMQP__PREFIX", &prefix)
            .env("TRANSCODER_CONFIG", &file)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    };
    let got = receiver.until(2).await;
    assert_eq!(got[1].headers["webhook-id"], format!("{id}.completed"));
    verify_with_standardwebhooks(dir.path(), &got[1]);
    let _ = conn.close(200, "".into()).await;
    remove_topology(&prefix, &[("TRANSCODER__WEBHOOKS__RETRY_SECONDS", "[3]".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_url_is_refused_without_a_connection_unless_private_networks_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[]).await;
    let prefix = unique("hook");
    let file = config(dir.path(), &receiver.url, "[1]", false);
    let log = dir.path().join("serve.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut serve = Proc {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
            .arg("serve")
            .env("TRANSCODER_CONFIG", &file)
            .env("TRANSCODER__AMQP__PREFIX", &prefix)
            .env("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("TRANSCODER__STORAGE__DATA_DIR", dir.path().join("store"))
            .env("TRANSCODER__WORKER__SCRATCH_DIR", dir.path().join("scratch"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    };
    let address = format!("http://127.0.0.1:{port}");
    wait_ready(&address).await;
    let id = submit(&address, dir.path()).await;
    let deadline = Instant::now() + JOB_TIMEOUT;
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("webhook not sent") && l.contains(&id)) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no refusal logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("allow_private_networks"), "{line}");
    assert_eq!(receiver.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "a connection was made");
    assert!(serve.terminate(Duration::from_secs(20)).await.success());
    remove_topology(&prefix, &[("TRANSCODER__WEBHOOKS__RETRY_SECONDS", "[1]".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_does_not_delay_another_clients_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (silent, good) = (Receiver::start(&[0]).await, Receiver::start(&[]).await);
    let prefix = unique("hook");
    let file = dir.path().join("two.toml");
    std::fs::write(
        &file,
        format!(
            "[auth.keys]\n\"key-alpha\" = \"alpha\"\n\"key-beta\" = \"beta\"\n\
             [webhooks]\nretry_seconds = [1]\nallow_private_networks = true\n\
             [clients.alpha]\nwebhook_url = \"{}\"\nwebhook_secret = \"{SECRET}\"\n\
             [clients.beta]\nwebhook_url = \"{}\"\nwebhook_secret = \"{SECRET}\"\n",
            silent.url, good.url
        ),
    )
    .unwrap();
    let (mut serve, address) =
        spawn_serve(dir.path(), &prefix, &[("TRANSCODER_CONFIG", file.display().to_string())]).await;
    let clip = std::fs::read(Clip::small(1).make(dir.path(), "c.mp4")).unwrap();
    let post = |key: &'static str| {
        let request = http_client()
            .post(format!("{address}/video/convert"))
            .header("Content-Type", "video/mp4")
            .bearer_auth(key)
            .body(clip.clone());
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    post("key-alpha").await;
    let hanging = silent.until(1).await;
    let beta = post("key-beta").await;
    let got = good.until(1).await;
    assert_eq!(got[0].headers["webhook-id"], format!("{beta}.completed"));
    // alpha's receiver still holds its first request: beta did not wait for it.
    let held = got[0].at - hanging[0].at;
    assert_eq!(silent.got.lock().unwrap().len(), 1);
    println!("beta's webhook arrived while alpha's receiver had held its request for {held:?}");
    assert!(held < Duration::from_secs(10), "alpha's request timed out first ({held:?})");
    assert!(serve.terminate(Duration::from_secs(30)).await.success());
    remove_topology(&prefix, &[("TRANSCODER__WEBHOOKS__RETRY_SECONDS", "[1]".into())]);
}
