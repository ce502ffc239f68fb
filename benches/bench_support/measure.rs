//! Processes, clocks and CPU time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use transcoder::embedded_s3::{EmbeddedStore, DEV_ACCESS_KEY, DEV_SECRET_KEY};

/// The worker's steps, as labelled in `transcoder_job_phase_seconds`.
pub const PHASES: [&str; 4] = ["fetch", "probe", "ffmpeg", "store"];

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// What every scenario shares: a scratch folder and an S3-compatible store
/// served from this process (so the service's own processes measure alone).
pub struct BenchEnv {
    pub dir: tempfile::TempDir,
    pub store: EmbeddedStore,
    pub http: reqwest::Client,
}

impl BenchEnv {
    pub async fn new() -> BenchEnv {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::start(
            &dir.path().join("store"),
            0,
            DEV_ACCESS_KEY,
            DEV_SECRET_KEY,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        BenchEnv { dir, store, http: reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap() }
    }

    /// A client of the store, for baselines and clean-up.
    pub async fn storage(&self, bucket: &str) -> transcoder::storage::Storage {
        let mut s = transcoder::config::Settings::defaults().storage;
        s.access_key = DEV_ACCESS_KEY.into();
        s.secret_key = DEV_SECRET_KEY.into();
        s.bucket = bucket.into();
        let storage = transcoder::storage::Storage::new(&s, Some(&self.store.endpoint())).await;
        storage.ensure_bucket().await.unwrap();
        storage
    }
}

/// A service process (release build) under test.
pub struct Service {
    pub child: Child,
    pub address: String,
    pub prefix: String,
    pub bucket: String,
}

/// `transcoder <role>` on the benchmark's store, with `prefix` and `bucket`
/// and `extra` settings (after the common ones).
fn command(env: &BenchEnv, role: &str, prefix: &str, bucket: &str, extra: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_transcoder"));
    cmd.arg(role)
        .env("RUST_LOG", "warn")
        .env("TRANSCODER__AMQP__PREFIX", prefix)
        .env("TRANSCODER__STORAGE__ENDPOINT", env.store.endpoint())
        .env("TRANSCODER__STORAGE__BUCKET", bucket)
        .env("TRANSCODER__STORAGE__ACCESS_KEY", DEV_ACCESS_KEY)
        .env("TRANSCODER__STORAGE__SECRET_KEY", DEV_SECRET_KEY)
        .env("TRANSCODER__WORKER__SCRATCH_DIR", env.dir.path().join("scratch"))
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

impl Service {
    pub async fn start(env: &BenchEnv, role: &str, name: &str) -> Service {
        Service::start_with(env, role, name, &[]).await
    }

    /// Started with extra environment variables.
    pub async fn start_with(env: &BenchEnv, role: &str, name: &str, extra: &[(&str, String)]) -> Service {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let prefix = format!("bench-{name}-{suffix}");
        let bucket = format!("bench-{name}-{suffix}");
        let child = command(env, role, &prefix, &bucket, extra)
            .env("TRANSCODER__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("TRANSCODER__HTTP__MAX_UPLOAD_BYTES", (8u64 << 30).to_string())
            .env("TRANSCODER__HTTP__MAX_PENDING_JOBS_PER_CLIENT", "1000000")
            .env("TRANSCODER__HTTP__MAX_CONCURRENT_UPLOADS_PER_CLIENT", "1000")
            .spawn()
            .expect("the service starts");
        let address = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready =
                env.http.get(format!("{address}/readyz")).send().await.map(|r| r.status() == 200).unwrap_or(false);
            if ready || role == "worker" {
                break;
            }
            assert!(Instant::now() < deadline, "service not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Service { child, address, prefix, bucket }
    }

    /// A `transcoder worker` process on this service's broker prefix and
    /// bucket, with `extra` settings; killed when dropped.
    pub fn worker(&self, env: &BenchEnv, extra: &[(&str, String)]) -> Worker {
        let child = command(env, "worker", &self.prefix, &self.bucket, extra).spawn().expect("the worker starts");
        Worker(child)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds of the process and its waited-for children (ffmpeg).
    pub fn cpu_seconds(&self) -> f64 {
        process_cpu(self.pid())
    }

    /// CPU seconds of the service process alone, without ffmpeg.
    pub fn own_cpu_seconds(&self) -> f64 {
        process_own_cpu(self.pid())
    }

    /// Seconds spent so far in each transcode phase (fetch, probe, ffmpeg,
    /// store), from the `transcoder_job_phase_seconds` histogram.
    pub async fn phase_seconds(&self, http: &reqwest::Client) -> [f64; 4] {
        let text = http.get(format!("{}/metrics", self.address)).send().await.unwrap().text().await.unwrap();
        PHASES.map(|phase| {
            let label = format!("phase=\"{phase}\"");
            text.lines()
                .filter(|l| l.starts_with("transcoder_job_phase_seconds_sum") && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
    }

    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        kib / 1024.0
    }

    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        delete_topology(&self.prefix);
    }
}

/// A worker process of a [`Service`].
pub struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Fields 14–17 of `/proc/<pid>/stat` (utime, stime, cutime, cstime), in
/// seconds; `None` when the process is gone.
fn stat_times(pid: u32) -> Option<[f64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after "(comm) ": the state is field 3, so field n is at n - 3.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let at = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0) / ticks;
    Some([at(14), at(15), at(16), at(17)])
}

/// CPU seconds of a process and its waited-for children (ffmpeg).
pub fn process_cpu(pid: u32) -> f64 {
    stat_times(pid).map_or(0.0, |t| t.iter().sum())
}

/// CPU seconds of a process alone (its threads, not its children).
pub fn process_own_cpu(pid: u32) -> f64 {
    stat_times(pid).map_or(0.0, |t| t[0] + t[1])
}

/// CPU seconds of the local RabbitMQ node (the `beam.smp` process), or 0.
pub fn broker_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "beam.smp"))
        .map(process_own_cpu)
        .sum()
}

/// CPU seconds used by this process's waited-for children so far.
pub fn children_cpu() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU seconds of this process (threads included).
pub fn self_cpu() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Removes the run's queues and exchanges with `transcoder topology remove`.
pub fn delete_topology(prefix: &str) {
    let _ = Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["topology", "remove", "--yes"])
        .env("TRANSCODER__AMQP__PREFIX", prefix)
        .env("TRANSCODER__AMQP__URL", AMQP_URL)
        .stderr(std::process::Stdio::null())
        .status();
}

/// A 720p (or given size) test clip with audio, generated once.
pub fn clip(dir: &Path, seconds: u32, width: u32, height: u32) -> PathBuf {
    let path = dir.join(format!("clip-{seconds}s-{width}x{height}.mp4"));
    if !path.exists() {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={width}x{height}:rate=25:duration={seconds}"))
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=440:duration={seconds}"))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

pub fn ffmpeg_version() -> String {
    let out = Command::new("ffmpeg").arg("-version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string()
}
