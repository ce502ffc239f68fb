//! Resumable uploads: refusals leave nothing behind, a retried last PATCH
//! makes one job, and the sweeper removes expired uploads and the parts of
//! uploads whose API process was killed (tus and `POST /video/convert`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::HeaderMap;
use transcoder::config::Settings;

use crate::helpers::*;
use crate::procs::Proc;

const MIB: usize = 1 << 20;

fn meta(pairs: &[(&str, &str)]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    pairs.iter().map(|(k, v)| format!("{k} {}", b64.encode(v))).collect::<Vec<_>>().join(",")
}

/// POST /video/uploads; returns the response.
async fn create(
    http: &reqwest::Client,
    base: &str,
    length: usize,
    metadata: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .post(format!("{base}/video/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", metadata);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// Creates an upload and returns its absolute URL.
async fn created(http: &reqwest::Client, base: &str, length: usize, key: Option<&str>) -> String {
    let response = create(http, base, length, &meta(&[("filename", "clip.mp4")]), key).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    format!("{base}{}", header(response.headers(), "location"))
}

async fn patch(
    http: &reqwest::Client,
    url: &str,
    offset: usize,
    body: Vec<u8>,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap().to_string()
}

/// The job id in `Link: </video/status/{id}>; rel="monitor"`.
fn monitor(headers: &HeaderMap) -> String {
    let link = header(headers, "link");
    link.strip_prefix("</video/status/").and_then(|l| l.split('>').next()).unwrap().to_string()
}

/// A real clip followed by `pad` bytes: it sniffs and decodes as MP4.
fn padded_clip(dir: &Path, pad: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(Clip::small(1).make(dir, "clip.mp4")).unwrap();
    bytes.extend((0..pad).map(|i| (i * 7 % 251) as u8));
    bytes
}

/// Multipart uploads still open in an embedded store's folder (s3s-fs
/// keeps each as `.upload-<id>.json` with `.upload_id-<id>.part-N` files).
fn open_multipart_files(store_dir: &Path) -> Vec<String> {
    std::fs::read_dir(store_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(".upload"))
                .collect()
        })
        .unwrap_or_default()
}

fn short_expiry(s: &mut Settings) {
    s.http.upload_expiry_seconds = 2;
}

#[tokio::test]
async fn refusals_leave_nothing_in_the_store() {
    let app = spawn_app_with(|s| s.http.max_upload_bytes = 64 * MIB as u64).await;
    let base = app.address.clone();
    let http = &app.http;

    // Upload-Length over the limit: 413; bad options: 422; no record made.
    let too_long = create(http, &base, 65 * MIB, "", None).await;
    assert_eq!(too_long.status(), 413);
    let bad = create(http, &base, 1000, &meta(&[("format", "gif")]), None).await;
    assert_eq!(bad.status(), 422, "{}", bad.text().await.unwrap());
    let bad_height = create(http, &base, 1000, &meta(&[("height", "7")]), None).await;
    assert_eq!(bad_height.status(), 422);
    let no_version = http.post(app.url("/video/uploads")).header("Upload-Length", "10").send().await.unwrap();
    assert_eq!(no_version.status(), 412);
    assert_eq!(header(no_version.headers(), "tus-version"), "1.0.0");
    assert!(app.keys("uploads/").await.is_empty(), "{:?}", app.keys("uploads/").await);

    // A wrong offset: 409, and the upload is as it was.
    let clip = padded_clip(app.dir.path(), 0);
    let url = created(http, &base, clip.len(), None).await;
    let wrong = patch(http, &url, 100, clip[100..].to_vec(), None).await;
    assert_eq!(wrong.status(), 409);
    let head = http.head(&url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(head.headers(), "upload-offset"), "0");
    assert_eq!(header(head.headers(), "cache-control"), "no-store");
    assert_eq!(app.keys("uploads/").await.len(), 1, "only the record");

    // Text as video: 415 at the first bytes, and the upload is gone, the
    // multipart upload of a large one with it.
    let text = b"this is not a video at all, only words. ".repeat(300_000);
    let text_url = created(http, &base, text.len(), None).await;
    let refused = patch(http, &text_url, 0, text, None).await;
    assert_eq!(refused.status(), 415);
    let gone = http.head(&text_url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(gone.status(), 404);

    // DELETE: 204, then nothing of it (record, tail, parts) is left.
    let big = padded_clip(app.dir.path(), 20 * MIB);
    let big_url = created(http, &base, big.len(), None).await;
    let stored = patch(http, &big_url, 0, big[..9 * MIB].to_vec(), None).await;
    assert_eq!(stored.status(), 204);
    assert_eq!(header(stored.headers(), "upload-offset"), (9 * MIB).to_string());
    let store_dir = app.settings.storage.data_dir.clone();
    assert!(!open_multipart_files(&store_dir).is_empty(), "a part was stored");
    let deleted = http.delete(&big_url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let after = http.head(&big_url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(after.status(), 404);

    // Only the first, untouched upload's record remains.
    let left = app.keys("uploads/").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(url.ends_with(left[0].trim_start_matches("uploads/default/").trim_end_matches(".json")));
    assert!(app.keys("inputs/").await.is_empty());
    assert!(open_multipart_files(&store_dir).is_empty(), "{:?}", open_multipart_files(&store_dir));
}

#[tokio::test]
async fn uploads_belong_to_their_client() {
    let app = spawn_app_with(|s| {
        s.auth.keys.insert("key-alpha".into(), "alpha".into());
        s.auth.keys.insert("key-beta".into(), "beta".into());
    })
    .await;
    let http = &app.http;
    let no_key = create(http, &app.address, 1000, "", None).await;
    assert_eq!(no_key.status(), 401);
    let url = created(http, &app.address, 1000, Some("key-alpha")).await;
    let head = |key: &'static str| http.head(&url).header("Tus-Resumable", "1.0.0").bearer_auth(key).send();
    assert_eq!(head("key-beta").await.unwrap().status(), 404);
    assert_eq!(patch(http, &url, 0, vec![0; 10], Some("key-beta")).await.status(), 404);
    let delete = http.delete(&url).header("Tus-Resumable", "1.0.0").bearer_auth("key-beta").send().await.unwrap();
    assert_eq!(delete.status(), 404);
    assert_eq!(head("key-alpha").await.unwrap().status(), 200, "the owner still has it");
}

#[tokio::test]
async fn a_retried_last_patch_gives_the_same_job() {
    let app = spawn_app().await;
    let http = &app.http;
    let clip = padded_clip(app.dir.path(), 0);
    let half = clip.len() / 2;
    let url = created(http, &app.address, clip.len(), None).await;
    assert_eq!(patch(http, &url, 0, clip[..half].to_vec(), None).await.status(), 204);
    let last = patch(http, &url, half, clip[half..].to_vec(), None).await;
    assert_eq!(last.status(), 204);
    let job = monitor(last.headers());
    let again = patch(http, &url, half, clip[half..].to_vec(), None).await;
    assert_eq!(again.status(), 204);
    assert_eq!(monitor(again.headers()), job, "the same job");
    let head = http.head(&url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(monitor(head.headers()), job);
    assert_eq!(app.keys("jobs/").await.len(), 1, "one job: {:?}", app.keys("jobs/").await);
    let mut sub = Subscriber::bind(&app.prefix, "default", &format!("job.*.{job}")).await;
    if app.status(&job).await["status"] != "done" {
        sub.wait_for(&format!("job.completed.{job}"), JOB_TIMEOUT).await;
    }
    assert_eq!(app.status(&job).await["input"]["size-bytes"], clip.len());
}

#[tokio::test]
async fn an_expired_upload_is_swept_with_its_parts() {
    let app = spawn_app_with(short_expiry).await;
    let http = &app.http;
    let big = padded_clip(app.dir.path(), 20 * MIB);
    let url = created(http, &app.address, big.len(), None).await;
    assert_eq!(patch(http, &url, 0, big[..(9 * MIB + 5)].to_vec(), None).await.status(), 204);
    let store_dir = app.settings.storage.data_dir.clone();
    assert!(!app.keys("uploads/").await.is_empty());
    assert!(!open_multipart_files(&store_dir).is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.keys("uploads/").await.is_empty() || !open_multipart_files(&store_dir).is_empty() {
        assert!(Instant::now() < deadline, "not swept: {:?}", app.keys("uploads/").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let head = http.head(&url).header("Tus-Resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 404);
    assert!(app.keys("inputs/").await.is_empty());
}

/// Where the store of the kill tests runs: outside the API process, so it
/// outlives the kill.
enum Store {
    /// The embedded store, started in the test process over a folder.
    Embedded(tempfile::TempDir),
    /// A standalone S3-compatible server (moto).
    Standalone(#[allow(dead_code)] Proc),
}

struct KillSetup {
    store: Store,
    endpoint: String,
    env: Vec<(&'static str, String)>,
    storage: transcoder::storage::Storage,
    address: String,
}

async fn kill_setup(standalone: bool) -> KillSetup {
    let (store, endpoint, access, secret) = if standalone {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let moto = Proc {
            child: Command::new(crate::processes::moto_server())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts"),
        };
        (Store::Standalone(moto), format!("http://127.0.0.1:{port}"), "testing".to_string(), "testing".to_string())
    } else {
        let dir = tempfile::tempdir().unwrap();
        let (access, secret) = (transcoder::embedded_s3::DEV_ACCESS_KEY, transcoder::embedded_s3::DEV_SECRET_KEY);
        let token = tokio_util::sync::CancellationToken::new();
        let store = transcoder::embedded_s3::EmbeddedStore::start(dir.path(), 0, access, secret, token).await.unwrap();
        let endpoint = store.endpoint();
        std::mem::forget(store);
        (Store::Embedded(dir), endpoint, access.to_string(), secret.to_string())
    };
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = Settings::defaults();
    settings.storage.bucket = unique("bucket");
    settings.storage.access_key = access.clone();
    settings.storage.secret_key = secret.clone();
    let env = vec![
        ("TRANSCODER__AMQP__PREFIX", unique("orphan")),
        ("TRANSCODER__STORAGE__ENDPOINT", endpoint.clone()),
        ("TRANSCODER__STORAGE__BUCKET", settings.storage.bucket.clone()),
        ("TRANSCODER__STORAGE__ACCESS_KEY", access),
        ("TRANSCODER__STORAGE__SECRET_KEY", secret),
        ("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{api_port}")),
        ("TRANSCODER__HTTP__UPLOAD_EXPIRY_SECONDS", "3".into()),
    ];
    let storage = transcoder::storage::Storage::new(&settings.storage, Some(&endpoint)).await;
    KillSetup { store, endpoint, env, storage, address: format!("http://127.0.0.1:{api_port}") }
}

impl KillSetup {
    async fn api(&self) -> Proc {
        let proc = crate::procs::spawn_role("api", &self.env);
        crate::procs::wait_ready(&self.address).await;
        proc
    }

    /// Multipart uploads the store still has: ListMultipartUploads on the
    /// standalone server; the embedded store (s3s-fs) has no such call, so
    /// its folder is read.
    async fn open_multipart_uploads(&self) -> usize {
        match &self.store {
            Store::Embedded(dir) => open_multipart_files(dir.path())
                .iter()
                .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
                .count(),
            Store::Standalone(_) => {
                let listed = self.storage.sdk().list_multipart_uploads().bucket(self.storage.bucket()).send().await;
                listed.unwrap().uploads().len()
            }
        }
    }

    /// Parts stored so far in the multipart upload an upload record names.
    async fn parts_of(&self, record_key: &str) -> usize {
        let Ok(Some(record)) = self.storage.get_json::<transcoder::storage::InProgress>(record_key).await else {
            return 0;
        };
        let Some(m) = record.multipart else { return 0 };
        let parts = self
            .storage
            .sdk()
            .list_parts()
            .bucket(self.storage.bucket())
            .key(&m.key)
            .upload_id(&m.upload_id)
            .send()
            .await;
        match parts {
            Ok(p) => p.parts().len(),
            // moto answers <ListPartsResponse>, which the SDK does not parse:
            // count the parts in the raw answer.
            Err(e) => e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .map(|b| String::from_utf8_lossy(b).matches("<PartNumber>").count())
                .unwrap_or(0),
        }
    }

    fn prefix(&self) -> &str {
        &self.env[0].1
    }
}

/// A request body that sends `first` at once, then nothing, until dropped.
fn stalled_body(first: Vec<u8>) -> (reqwest::Body, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let head =
        futures::stream::iter(first.chunks(MIB).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
    let tail = futures::stream::once(async move {
        let _ = stopped.await;
        Err::<Vec<u8>, _>(std::io::Error::other("stopped"))
    });
    (reqwest::Body::wrap_stream(futures::StreamExt::chain(head, tail)), stop)
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, limit: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn killed_uploads_are_swept(standalone: bool) {
    let setup = kill_setup(standalone).await;
    let dir = tempfile::tempdir().unwrap();
    let mut api = setup.api().await;
    let http = reqwest::Client::new();
    let clip = padded_clip(dir.path(), 40 * MIB);

    // A POST /video/convert that has sent 20 MiB, and a tus PATCH that has.
    let (body, _stop_post) = stalled_body(clip[..20 * MIB].to_vec());
    let post = http.post(format!("{}/video/convert", setup.address)).header("Content-Type", "video/mp4").body(body);
    let post = tokio::spawn(post.send());
    let url = created(&http, &setup.address, clip.len(), None).await;
    let (body, _stop_patch) = stalled_body(clip[..20 * MIB].to_vec());
    let patch = http
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(body);
    let patch = tokio::spawn(patch.send());

    let tus_record = format!("uploads/default/{}.json", url.rsplit('/').next().unwrap());
    let storage = &setup.storage;
    let direct_record =
        || async { storage.list("uploads/").await.unwrap().into_iter().find(|k| k.ends_with(".direct.json")) };
    wait_until("parts of both uploads stored", Duration::from_secs(60), || async {
        let Some(direct) = direct_record().await else { return false };
        setup.parts_of(&direct).await >= 1 && setup.parts_of(&tus_record).await >= 1
    })
    .await;
    assert_eq!(setup.open_multipart_uploads().await, 2);
    api.kill9();
    let _ = post.await;
    let _ = patch.await;
    assert!(!storage.list("uploads/").await.unwrap().is_empty(), "the killed process left its records");

    // A new API process sweeps them once they expired (3 s).
    let _api = setup.api().await;
    wait_until("every upload record, object and part removed", Duration::from_secs(30), || async {
        storage.list("uploads/").await.unwrap().is_empty()
            && storage.list("inputs/").await.unwrap().is_empty()
            && setup.open_multipart_uploads().await == 0
            && match &setup.store {
                Store::Embedded(dir) => open_multipart_files(dir.path()).is_empty(),
                Store::Standalone(_) => true,
            }
    })
    .await;
    println!("killed uploads swept on {} ({})", if standalone { "moto" } else { "the embedded store" }, setup.endpoint);
    delete_topology(setup.prefix());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_of_a_killed_api_are_swept_from_the_embedded_store() {
    killed_uploads_are_swept(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_of_a_killed_api_are_swept_from_a_standalone_s3_server() {
    killed_uploads_are_swept(true).await;
}

#[tokio::test]
async fn browsers_from_allowed_origins_may_upload_and_read_the_tus_headers() {
    let app = spawn_app_with(|s| s.http.cors_allowed_origins = vec!["https://app.example".into()]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/video/uploads"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "tus-resumable,upload-length,upload-metadata,authorization")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(header(allowed.headers(), "access-control-allow-origin"), "https://app.example");
    let allow_headers = header(allowed.headers(), "access-control-allow-headers");
    for name in ["tus-resumable", "upload-length", "upload-metadata", "authorization"] {
        assert!(allow_headers.contains(name), "{allow_headers}");
    }
    let other = preflight("https://elsewhere.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A plain OPTIONS is tus discovery, not a preflight.
    let discovery = app.http.request(reqwest::Method::OPTIONS, app.url("/video/uploads")).send().await.unwrap();
    assert_eq!(discovery.status(), 204);
    assert_eq!(header(discovery.headers(), "tus-version"), "1.0.0");
    assert!(header(discovery.headers(), "tus-extension").contains("creation-with-upload"));
    assert_eq!(header(discovery.headers(), "tus-max-size"), app.settings.http.max_upload_bytes.to_string());

    // The answers expose what a tus client reads.
    let created = app
        .http
        .post(app.url("/video/uploads"))
        .header("Origin", "https://app.example")
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1000")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let exposed = header(created.headers(), "access-control-expose-headers");
    for name in ["location", "upload-offset", "upload-expires", "link", "tus-resumable"] {
        assert!(exposed.contains(name), "{exposed}");
    }
}
