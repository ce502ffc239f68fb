//! `transcoder submit FILE`: upload with a progress bar; with `--wait`,
//! follow the job through its pushed events and download the result.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use super::{problem_text, Events, Target};

#[derive(Debug, Clone)]
pub struct SubmitArgs {
    pub file: PathBuf,
    pub format: Option<String>,
    pub height: Option<u32>,
    pub priority: Option<u8>,
    pub wait: bool,
    pub output: Option<PathBuf>,
}

/// Progress shown as bars on a terminal, as plain lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(len: u64, unit: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let template = match unit {
            "bytes" => "{msg:10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
            _ => "{msg:10} [{bar:40}] {pos}%",
        };
        let bar = ProgressBar::new(len);
        bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
        Progress { bar: Some(bar) }
    }

    fn message(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => eprintln!("{msg}"),
        }
    }

    fn set(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

pub async fn submit(target: &Target, args: &SubmitArgs) -> anyhow::Result<()> {
    let size =
        tokio::fs::metadata(&args.file).await.with_context(|| format!("cannot read {}", args.file.display()))?.len();
    // Subscribe before submitting, so no event can be missed.
    let mut events = if args.wait { Some(Events::subscribe(target, "job.*.*").await?) } else { None };

    let mut query = Vec::new();
    if let Some(f) = &args.format {
        query.push(("format", f.clone()));
    }
    if let Some(h) = args.height {
        query.push(("height", h.to_string()));
    }
    if let Some(p) = args.priority {
        query.push(("priority", p.to_string()));
    }
    let upload = Progress::new(size, "bytes");
    upload.message("upload");
    let file = tokio::fs::File::open(&args.file).await?;
    let bar = upload.bar.clone();
    let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).inspect(move |chunk| {
        if let (Ok(c), Some(b)) = (chunk, &bar) {
            b.inc(c.len() as u64);
        }
    });
    let name = args.file.file_name().and_then(|n| n.to_str()).unwrap_or("upload").replace('"', "");
    let http = reqwest::Client::new();
    let mut request = http
        .post(format!("{}/video/convert", target.server.trim_end_matches('/')))
        .query(&query)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", size)
        .header("Content-Disposition", format!("attachment; filename=\"{name}\""))
        .body(reqwest::Body::wrap_stream(body));
    if let Some(key) = &target.api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.with_context(|| format!("cannot reach the service at {}", target.server))?;
    upload.finish();
    if response.status() != reqwest::StatusCode::ACCEPTED {
        bail!("submission refused: {}", problem_text(response).await);
    }
    let doc: serde_json::Value = response.json().await?;
    let id = doc["id"].as_str().context("the service returned no job id")?.to_string();
    println!("{id}");
    let Some(events) = events.as_mut() else { return Ok(()) };

    let encode = Progress::new(100, "percent");
    encode.message("queued");
    let terminal = loop {
        let event = events.next().await?;
        if event.body["subject"].as_str() != Some(id.as_str()) {
            continue;
        }
        let data = &event.body["data"];
        let kind = event.routing_key.split('.').nth(1).unwrap_or("").to_string();
        match kind.as_str() {
            "started" => encode.message("encoding"),
            "progress" => {
                let p = data["progress-percent"].as_u64().unwrap_or(0);
                encode.set(p);
                if encode.bar.is_none() {
                    eprintln!("encoding {p}%");
                }
            }
            "completed" | "failed" | "cancelled" => break (kind, data.clone()),
            _ => {}
        }
    };
    match terminal.0.as_str() {
        "completed" => {
            encode.set(100);
            encode.message("done");
            encode.finish();
        }
        "failed" => {
            let message = terminal.1["error"]["message"].as_str().unwrap_or("unknown reason");
            bail!("job {id} failed: {message}");
        }
        _ => bail!("job {id} was cancelled"),
    }
    let ext = terminal.1["output"]["format"].as_str().unwrap_or("mp4");
    let out = args.output.clone().unwrap_or_else(|| PathBuf::from(format!("{id}.{ext}")));
    download(target, &http, &id, &out).await?;
    eprintln!("saved {}", out.display());
    Ok(())
}

async fn download(target: &Target, http: &reqwest::Client, id: &str, out: &Path) -> anyhow::Result<()> {
    let mut request = http.get(format!("{}/video/download/{id}", target.server.trim_end_matches('/')));
    if let Some(key) = &target.api_key {
        request = request.bearer_auth(key);
    }
    let response = request.timeout(Duration::from_secs(3600)).send().await?;
    if !response.status().is_success() {
        bail!("download failed: {}", problem_text(response).await);
    }
    let mut file = tokio::fs::File::create(out).await.with_context(|| format!("cannot write {}", out.display()))?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        file.write_all(&chunk?).await?;
    }
    file.flush().await?;
    Ok(())
}
