//! The HTTP API against its own OpenAPI description (`GET /openapi.json`),
//! property-based, with schemathesis from the venv of scripts/prereqs.sh.
//! Every setting of the run (checks, examples per operation, phases, seed,
//! timeouts, hooks, reports) is in `schemathesis.toml` at the crate root;
//! this test gives it a service, the ids of two finished jobs and a place
//! for the reports (target/schemathesis/), then reads the NDJSON report.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// A run that takes longer than this is stopped and fails.
const RUN_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The first bytes of an MP4 file and nothing a decoder can use: the service
/// takes it (its signature is MP4) and the worker fails the job.
fn broken_mp4() -> Vec<u8> {
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    bytes.extend(std::iter::repeat_n(0u8, 1000));
    bytes
}

fn schemathesis_bin() -> PathBuf {
    let candidates = [
        std::env::var("TRANSCODER_TEST_PYTHON").ok().map(|py| Path::new(&py).with_file_name("schemathesis")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/schemathesis")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .expect("schemathesis not found: ./scripts/schemathesis.sh (or ./scripts/test.sh) installs it in target/pyenv")
}

/// Writes to the process's stderr, past the test harness's capture, so that
/// the summary shows whether the test passes or not.
fn show(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What the NDJSON report says: cases, answers with a 5xx status, failed
/// checks by name (schemathesis records a failure once per scenario, not for
/// every case that repeats it), and the statuses each documented operation
/// got.
#[derive(Default)]
struct Report {
    cases: usize,
    server_errors: usize,
    failures: BTreeMap<String, usize>,
    operations: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Report {
    fn read(path: &Path) -> Report {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
        let mut report = Report::default();
        for line in text.lines() {
            let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else { continue };
            let Some(finished) = event.get("ScenarioFinished") else { continue };
            let recorder = &finished["recorder"];
            let empty = serde_json::Map::new();
            let cases = recorder["cases"].as_object().unwrap_or(&empty);
            report.cases += cases.len();
            for (case_id, node) in cases {
                let case = &node["value"];
                let status = recorder["interactions"][case_id]["response"]["status_code"].as_u64();
                if status.is_some_and(|s| s >= 500) {
                    report.server_errors += 1;
                }
                // Probes of undocumented methods are not operations of the document.
                if case["meta"]["phase"]["data"]["scenario"] == "unspecified_http_method" {
                    continue;
                }
                let operation =
                    format!("{} {}", case["method"].as_str().unwrap_or("?"), case["path"].as_str().unwrap_or("?"));
                let status = status.map_or("none".to_string(), |s| s.to_string());
                *report.operations.entry(operation).or_default().entry(status).or_default() += 1;
            }
            for checks in recorder["checks"].as_object().unwrap_or(&empty).values() {
                for check in checks.as_array().into_iter().flatten() {
                    if check["status"] == "failure" {
                        let name = check["name"].as_str().unwrap_or("?").to_string();
                        *report.failures.entry(name).or_default() += 1;
                    }
                }
            }
        }
        report
    }

    fn failed(&self, check: &str) -> usize {
        self.failures.get(check).copied().unwrap_or(0)
    }
}

/// "METHOD /path" of every operation the document describes.
fn documented_operations(document: &Value) -> BTreeSet<String> {
    let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("the document has paths") {
        for method in methods.iter().filter(|m| item.get(**m).is_some()) {
            operations.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis (target/pyenv) and loads the machine; ./scripts/test.sh and ./scripts/schemathesis.sh run it"]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let schemathesis = schemathesis_bin();
    let version = std::process::Command::new(&schemathesis).arg("--version").output().expect("schemathesis runs");
    let version =
        String::from_utf8_lossy(&version.stdout).trim().trim_start_matches("schemathesis, version ").to_string();
    assert!(version.starts_with("4."), "schemathesis.toml is written for schemathesis 4, found {version}");

    let app = spawn_app_with(|s| {
        s.http.max_upload_bytes = 1 << 20;
        s.worker.shutdown_grace_seconds = 5;
    })
    .await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /openapi.json");
    let document: Value = response.json().await.expect("GET /openapi.json is JSON");
    let documented = documented_operations(&document);

    // One done and one failed job, for the job-id operations to draw from.
    let mut sub = Subscriber::bind(&app.prefix, "default", "#").await;
    let clip = Clip::small(1).make(app.dir.path(), "clip.mp4");
    let done_id = app.submit(&clip, "?format=webm&height=64").await;
    let response = app.submit_bytes(broken_mp4(), "application/octet-stream", "?priority=9").await;
    assert_eq!(response.status(), 202, "the broken clip is taken: {}", response.text().await.unwrap());
    let failed_id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    sub.wait_for(&format!("job.completed.{done_id}"), JOB_TIMEOUT).await;
    sub.wait_for(&format!("job.failed.{failed_id}"), JOB_TIMEOUT).await;

    // The paths below are the ones schemathesis.toml names.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run_dir = root.join("target/schemathesis");
    std::fs::create_dir_all(&run_dir).unwrap();
    for entry in std::fs::read_dir(&run_dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "xml" || e == "ndjson") {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(run_dir.join("job-ids.dict"), format!("\"{done_id}\"\n\"{failed_id}\"\n")).unwrap();

    let output_path = run_dir.join("schemathesis.out");
    let output = std::fs::File::create(&output_path).unwrap();
    let mut child = tokio::process::Command::new(&schemathesis)
        .current_dir(root)
        .args(["--config-file", "schemathesis.toml", "run"])
        .arg(app.url("/openapi.json"))
        .env("TRANSCODER_SCHEMATHESIS_BASE", &app.address)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .kill_on_drop(true)
        .spawn()
        .expect("schemathesis starts");
    let status = match tokio::time::timeout(RUN_LIMIT, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = child.kill().await;
            panic!("schemathesis did not finish within {RUN_LIMIT:?}; its output is in {}", output_path.display());
        }
    };
    // Shown by the harness when the test fails.
    println!("{}", std::fs::read_to_string(&output_path).unwrap_or_default());

    let ndjson = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .expect("schemathesis wrote an NDJSON report");
    let report = Report::read(&ndjson);
    show(&format!("schemathesis {version}, {} operations documented:", documented.len()));
    for (operation, statuses) in &report.operations {
        let answers: Vec<String> = statuses.iter().map(|(status, n)| format!("{status}x{n}")).collect();
        let total: usize = statuses.values().sum();
        show(&format!("  {operation}: {total} cases ({})", answers.join(" ")));
    }
    let server_errors = report.server_errors;
    let violations = report.failed("response_schema_conformance");
    if !report.failures.is_empty() {
        show(&format!("  failed checks: {:?}", report.failures));
    }
    show(&format!(
        "schemathesis: {} cases, {server_errors} server errors, {violations} schema violations",
        report.cases
    ));

    let healthz = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200, "the service is alive after the run");
    // schemathesis leaves out the operation its document came from, which
    // this test read itself above.
    let untested: Vec<&String> =
        documented.iter().filter(|op| *op != "GET /openapi.json" && !report.operations.contains_key(*op)).collect();
    assert!(untested.is_empty(), "operations without a case: {untested:?}");
    assert_eq!(server_errors, 0, "server errors; the report is {}", ndjson.display());
    assert_eq!(violations, 0, "responses the document does not describe; the report is {}", ndjson.display());
    assert!(
        status.success(),
        "schemathesis failed ({status}): failed checks {:?}; its output is in {}",
        report.failures,
        output_path.display()
    );
    app.stop().await;
}
