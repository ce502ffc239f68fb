//! Running ffmpeg (a supervised child): progress from its log, a stop on a
//! stall, the time limit or cancellation, and why it failed.

use std::collections::VecDeque;
use std::path::Path;

use std::process::ExitStatus;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use ffmpeg_sidecar::log_parser::FfmpegLogParser;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::child::{KillOnDrop, Pipes, Supervised};
use super::{tidy, Limits, TranscodeError};

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
    Progress(Progress),
    Ended(std::io::Result<ExitStatus>, Vec<String>),
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
    let mut cmd = FfmpegCommand::new_with_path("ffmpeg");
    cmd.args(&args);
    let (child, pipes) = Supervised::spawn(cmd.as_inner_mut(), Some(scratch), false)
        .map_err(|e| TranscodeError::Internal(format!("could not start ffmpeg: {e}")))?;
    let guard = KillOnDrop(child.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    let reader = tokio::task::spawn_blocking(move || read_until_exit(child, pipes, tx));

    let hard_deadline = Instant::now() + limits.timeout;
    let mut stall_deadline = Instant::now() + limits.stall;
    let ended = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Err(TranscodeError::Cancelled),
            _ = tokio::time::sleep_until(hard_deadline) => break Err(TranscodeError::TimedOut(limits.timeout.as_secs())),
            _ = tokio::time::sleep_until(stall_deadline) => break Err(TranscodeError::Stalled(limits.stall.as_secs())),
            report = rx.recv() => match report {
                Some(Report::Progress(p)) => {
                    stall_deadline = Instant::now() + limits.stall;
                    on_progress(p);
                }
                Some(Report::Ended(status, errors)) => break Ok((status, errors)),
                None => break Err(TranscodeError::Internal("the ffmpeg reader stopped".into())),
            },
        }
    };
    let (status, errors) = match ended {
        Ok(ended) => ended,
        Err(reason) => {
            drop(guard);
            // Reap it: the reader ends once the killed group's pipes close.
            let _ = reader.await;
            return Err(reason);
        }
    };
    let status = status.map_err(|e| TranscodeError::Internal(format!("waiting for ffmpeg: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let scratch = scratch.display().to_string();
    Err(match classify_failure(status, &errors) {
        TranscodeError::InvalidMedia(m) => TranscodeError::InvalidMedia(m.replace(&scratch, ".")),
        TranscodeError::Resources(m) => TranscodeError::Resources(m.replace(&scratch, ".")),
        other => other,
    })
}

/// Parses ffmpeg's log until it closes, reporting progress, then reaps it
/// and reports how it ended with its last error lines.
fn read_until_exit(child: Supervised, pipes: Pipes, tx: mpsc::UnboundedSender<Report>) {
    let mut errors: VecDeque<String> = VecDeque::new();
    if let Some(stderr) = pipes.stderr {
        let mut log = FfmpegLogParser::new(stderr);
        loop {
            match log.parse_next_event() {
                Ok(FfmpegEvent::LogEOF) => break,
                Ok(FfmpegEvent::Progress(p)) => {
                    let report = Progress { encoded_seconds: parse_clock(&p.time).unwrap_or(0.0), speed: p.speed };
                    let _ = tx.send(Report::Progress(report));
                }
                Ok(FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line) | FfmpegEvent::Error(line)) => {
                    if errors.len() == 4 {
                        errors.pop_front();
                    }
                    errors.push_back(line);
                }
                Ok(_) => {}
                Err(e) => {
                    errors.push_back(e.to_string());
                    break;
                }
            }
        }
    }
    let status = child.wait_blocking();
    let _ = tx.send(Report::Ended(status, errors.into()));
}

/// `HH:MM:SS.cc` → seconds.
pub fn parse_clock(s: &str) -> Option<f64> {
    let mut total = 0.0;
    for part in s.trim().split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    (total >= 0.0).then_some(total)
}
