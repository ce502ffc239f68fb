//! Running ffmpeg: its own process group, progress from its output, a stop
//! on a stall, the time limit or cancellation, and why it failed.

use std::collections::VecDeque;
use std::path::Path;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{tidy, Limits, TranscodeError, CHILD_PATH};

/// What ffmpeg's last error lines say when the machine, not the input, is
/// at fault (the `strerror` texts of ENOSPC, ENOMEM, EDQUOT, EMFILE, EAGAIN).
const RESOURCE_ERRORS: [&str; 6] = [
    "No space left on device",
    "Cannot allocate memory",
    "Disk quota exceeded",
    "Too many open files",
    "Resource temporarily unavailable",
    "File too large",
];

/// Why an ffmpeg that ended with `status` failed: killed by a signal (the
/// OOM killer, an operator) or short of a resource is transient; anything
/// else is the input's fault.
pub fn classify_failure(status: std::process::ExitStatus, errors: &[String]) -> TranscodeError {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        return TranscodeError::Resources(format!("ffmpeg was killed by signal {signal}"));
    }
    let resource = errors.iter().rev().find(|line| RESOURCE_ERRORS.iter().any(|r| line.contains(r)));
    if let Some(line) = resource {
        return TranscodeError::Resources(format!("ffmpeg ran short of resources: {}", tidy(line)));
    }
    let reason = errors.last().cloned().unwrap_or_else(|| format!("ffmpeg exited with {status}"));
    TranscodeError::InvalidMedia(format!("the input could not be transcoded: {}", tidy(&reason)))
}

/// Progress as ffmpeg reports it.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Seconds of output encoded so far.
    pub encoded_seconds: f64,
    /// Encoding speed as a multiple of real time.
    pub speed: f32,
}

enum Report {
    Started(u32),
    Progress(Progress),
}

/// Runs ffmpeg with `args` until it ends, calling `on_progress` for each
/// progress line. Stops it on a stall, at the time limit or on `cancel`.
pub async fn run_ffmpeg(
    args: Vec<String>,
    scratch: &Path,
    limits: Limits,
    cancel: CancellationToken,
    mut on_progress: impl FnMut(Progress),
) -> Result<(), TranscodeError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    let scratch_owned = scratch.to_path_buf();
    let worker = tokio::task::spawn_blocking(move || run_blocking(args, &scratch_owned, tx));

    let hard_deadline = Instant::now() + limits.timeout;
    let mut stall_deadline = Instant::now() + limits.stall;
    let mut pid: Option<u32> = None;
    let stop_reason = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Some(TranscodeError::Cancelled),
            _ = tokio::time::sleep_until(hard_deadline) => break Some(TranscodeError::TimedOut(limits.timeout.as_secs())),
            _ = tokio::time::sleep_until(stall_deadline) => break Some(TranscodeError::Stalled(limits.stall.as_secs())),
            report = rx.recv() => match report {
                Some(Report::Started(p)) => pid = Some(p),
                Some(Report::Progress(p)) => {
                    stall_deadline = Instant::now() + limits.stall;
                    on_progress(p);
                }
                None => break None,
            },
        }
    };
    if let Some(reason) = stop_reason {
        if let Some(pid) = pid {
            kill_group(pid);
        }
        // Reap it: the blocking thread ends once ffmpeg's pipes close.
        let _ = worker.await;
        return Err(reason);
    }
    let outcome = worker.await.map_err(|e| TranscodeError::Internal(format!("ffmpeg thread: {e}")))?;
    let scratch = scratch.display().to_string();
    outcome.map_err(|e| match e {
        TranscodeError::InvalidMedia(m) => TranscodeError::InvalidMedia(m.replace(&scratch, ".")),
        TranscodeError::Resources(m) => TranscodeError::Resources(m.replace(&scratch, ".")),
        other => other,
    })
}

fn run_blocking(args: Vec<String>, scratch: &Path, tx: mpsc::UnboundedSender<Report>) -> Result<(), TranscodeError> {
    let mut cmd = FfmpegCommand::new_with_path("ffmpeg");
    cmd.args(&args);
    configure_child(cmd.as_inner_mut(), scratch);
    let mut child = cmd.spawn().map_err(|e| TranscodeError::Internal(format!("could not start ffmpeg: {e}")))?;
    let _ = tx.send(Report::Started(child.as_inner().id()));
    let mut errors: VecDeque<String> = VecDeque::new();
    match child.iter() {
        Ok(events) => {
            for event in events {
                match event {
                    FfmpegEvent::Progress(p) => {
                        let report = Progress { encoded_seconds: parse_clock(&p.time).unwrap_or(0.0), speed: p.speed };
                        let _ = tx.send(Report::Progress(report));
                    }
                    FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line) | FfmpegEvent::Error(line) => {
                        if errors.len() == 4 {
                            errors.pop_front();
                        }
                        errors.push_back(line);
                    }
                    _ => {}
                }
            }
        }
        Err(e) => errors.push_back(e.to_string()),
    }
    let status = child.wait().map_err(|e| TranscodeError::Internal(format!("waiting for ffmpeg: {e}")))?;
    if status.success() {
        return Ok(());
    }
    Err(classify_failure(status, errors.make_contiguous()))
}

/// Own process group (so the whole tree can be killed), a minimal
/// environment, the job's folder as working directory, and death with the
/// thread that started it.
fn configure_child(cmd: &mut std::process::Command, scratch: &Path) {
    use std::os::unix::process::CommandExt;
    cmd.env_clear().env("PATH", CHILD_PATH).current_dir(scratch).process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn kill_group(pid: u32) {
    // SAFETY: plain syscall; a negative pid addresses the process group.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

/// `HH:MM:SS.cc` → seconds.
pub fn parse_clock(s: &str) -> Option<f64> {
    let mut total = 0.0;
    for part in s.trim().split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    (total >= 0.0).then_some(total)
}
