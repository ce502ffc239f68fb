//! `transcoder submit FILE`: a resumable upload (tus, see [`super::upload`])
//! with a progress bar; with `--wait`, follow the job through its pushed
//! events and download the result (every file of a package).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use super::upload::{self, Source, Tuning};
use super::{problem_text, Events, Target};

#[derive(Debug, Clone)]
pub struct SubmitArgs {
    pub file: PathBuf,
    pub format: Option<String>,
    pub height: Option<u32>,
    pub priority: Option<u8>,
    /// Heights of a package's renditions (`720,360`).
    pub renditions: Option<String>,
    pub wait: bool,
    pub output: Option<PathBuf>,
}

/// Progress shown as bars on a terminal, as plain lines otherwise.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    /// When the last plain line about the upload was printed.
    last_line: Mutex<Option<Instant>>,
}

impl Progress {
    fn new(len: u64, unit: &str) -> Progress {
        let last_line = Mutex::new(None);
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None, last_line };
        }
        let template = match unit {
            "bytes" => "{msg:10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
            _ => "{msg:10} [{bar:40}] {pos}%",
        };
        let bar = ProgressBar::new(len);
        bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
        Progress { bar: Some(bar), last_line }
    }

    fn message(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => eprintln!("{msg}"),
        }
    }

    /// A line above the bar (or on its own without one).
    pub(super) fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// The bar, for the upload body to move as it is sent.
    pub(super) fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    pub(super) fn set(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    /// Bytes the service acknowledged: the bar, or a line at most every
    /// second (and the last one) without a terminal.
    pub(super) fn acknowledged(&self, done: u64, total: u64) {
        if self.bar.is_some() {
            return self.set(done);
        }
        let mut last = self.last_line.lock().expect("not poisoned");
        if done == total || last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            eprintln!("upload {done}/{total} bytes");
            *last = Some(Instant::now());
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
    let tuning = Tuning::from_env()?;
    // Subscribe before submitting, so no event can be missed.
    let mut events = if args.wait { Some(Events::subscribe(target, "job.*.*").await?) } else { None };
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;

    let progress = Progress::new(size, "bytes");
    progress.message("upload");
    let source = Source { path: &args.file, size, metadata: metadata(args) };
    let id = upload::upload(&http, target, &tuning, &source, &progress).await?;
    progress.finish();
    println!("{id}");
    let Some(events) = events.as_mut() else { return Ok(()) };

    let (kind, data) = follow(events, &id).await?;
    match kind.as_str() {
        "completed" => {}
        "failed" => {
            let message = data["error"]["message"].as_str().unwrap_or("unknown reason");
            bail!("job {id} failed: {message}");
        }
        _ => bail!("job {id} was cancelled"),
    }
    if let Some(manifest) = data["output"]["manifest"].as_str() {
        let dir = args.output.clone().unwrap_or_else(|| PathBuf::from(&id));
        let files = download_package(target, &http, &id, manifest, &dir).await?;
        eprintln!("saved {} files of the package in {}", files, dir.display());
        return Ok(());
    }
    let ext = data["output"]["format"].as_str().unwrap_or("mp4");
    let out = args.output.clone().unwrap_or_else(|| PathBuf::from(format!("{id}.{ext}")));
    download(target, &http, &format!("/video/download/{id}"), &out).await?;
    eprintln!("saved {}", out.display());
    Ok(())
}

/// Every file of a package (the manifest, the playlists and segments it
/// names, the poster and the storyboard) into `dir`; how many.
async fn download_package(
    target: &Target,
    http: &reqwest::Client,
    id: &str,
    manifest: &str,
    dir: &Path,
) -> anyhow::Result<usize> {
    use crate::transcode::manifest;
    use crate::transcode::previews::{POSTER, STORYBOARD_CUES, STORYBOARD_IMAGE};
    tokio::fs::create_dir_all(dir).await.with_context(|| format!("cannot create {}", dir.display()))?;
    let base = format!("/video/download/{id}");
    let fetch = |name: String| {
        let out = dir.join(&name);
        let path = format!("{base}/{name}");
        async move {
            download(target, http, &path, &out).await?;
            anyhow::Ok(out)
        }
    };
    let manifest_file = fetch(manifest.to_string()).await?;
    let text = tokio::fs::read_to_string(&manifest_file).await?;
    let mut names: Vec<String> = vec![POSTER.into(), STORYBOARD_IMAGE.into(), STORYBOARD_CUES.into()];
    let mut lists = Vec::new();
    let mut fetched = 1;
    if manifest.ends_with(".mpd") {
        for rep in 0..text.matches("<Representation ").count() {
            lists.push(manifest::dash_segments(&text, rep).context("the MPD's segment list cannot be read")?);
        }
    } else {
        for playlist in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let media = tokio::fs::read_to_string(fetch(playlist.to_string()).await?).await?;
            fetched += 1;
            lists.push(manifest::hls_segments(&media).context("a media playlist cannot be read")?);
        }
    }
    for list in lists {
        names.push(list.init);
        names.extend(list.files);
    }
    fetched += names.len();
    futures::stream::iter(names.into_iter().map(fetch))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(fetched)
}

/// `Upload-Metadata`: the file's name and the job options.
fn metadata(args: &SubmitArgs) -> String {
    let name = args.file.file_name().and_then(|n| n.to_str()).unwrap_or("upload").to_string();
    let mut pairs = vec![("filename", name)];
    if let Some(f) = &args.format {
        pairs.push(("format", f.clone()));
    }
    if let Some(h) = args.height {
        pairs.push(("height", h.to_string()));
    }
    if let Some(p) = args.priority {
        pairs.push(("priority", p.to_string()));
    }
    if let Some(r) = &args.renditions {
        pairs.push(("renditions", r.clone()));
    }
    upload::metadata(&pairs)
}

/// Shows the job's progress from its events until it ends; returns the
/// end (`completed`, `failed` or `cancelled`) and the event's data.
async fn follow(events: &mut Events, id: &str) -> anyhow::Result<(String, serde_json::Value)> {
    let encode = Progress::new(100, "percent");
    encode.message("queued");
    loop {
        let event = events.next().await?;
        if event.body["subject"].as_str() != Some(id) {
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
            "completed" => {
                encode.set(100);
                encode.message("done");
                encode.finish();
                return Ok((kind, data.clone()));
            }
            "failed" | "cancelled" => return Ok((kind, data.clone())),
            _ => {}
        }
    }
}

/// One download (`path` under the server) into `out`.
async fn download(target: &Target, http: &reqwest::Client, path: &str, out: &Path) -> anyhow::Result<()> {
    let mut request = http.get(format!("{}{path}", target.server.trim_end_matches('/')));
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
