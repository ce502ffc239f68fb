//! Supervised child processes, ffmpeg and ffprobe alike: a minimal
//! environment, a process group of their own (so the whole tree can be
//! killed), death with the worker (`PR_SET_PDEATHSIG`), and a kill of the
//! group on a time limit, on cancellation or when the future that waits for
//! them is dropped.
//!
//! No pid-reuse race: the group is signalled only while its leader is not
//! yet reaped, and reaping happens under the same lock. The waiting thread
//! first waits for the exit without reaping (`waitid` with `WNOWAIT`), so a
//! kill never waits behind a blocking `wait`.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::CHILD_PATH;

/// A running child; clones share it.
#[derive(Clone)]
pub struct Supervised {
    state: Arc<Mutex<State>>,
    pid: u32,
}

struct State {
    child: Child,
    status: Option<ExitStatus>,
}

/// The pipes the caller reads.
pub struct Pipes {
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Supervised {
    /// Starts `cmd` with a cleared environment (`PATH` only), stdin closed,
    /// stderr piped and stdout piped when `capture_stdout` (else discarded),
    /// in `cwd` when given, in a process group of its own.
    pub fn spawn(cmd: &mut Command, cwd: Option<&Path>, capture_stdout: bool) -> std::io::Result<(Supervised, Pipes)> {
        use std::os::unix::process::CommandExt;
        cmd.env_clear().env("PATH", CHILD_PATH).process_group(0);
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        cmd.stdout(if capture_stdout { Stdio::piped() } else { Stdio::null() });
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pipes = Pipes { stdout: child.stdout.take(), stderr: child.stderr.take() };
        let pid = child.id();
        Ok((Supervised { state: Arc::new(Mutex::new(State { child, status: None })), pid }, pipes))
    }

    /// Kills the whole group with SIGKILL, unless it has been reaped.
    pub fn kill(&self) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.status.is_none() {
            // SAFETY: plain syscall; a negative pid addresses the group,
            // whose leader is unreaped (the lock is held), so the id is ours.
            unsafe {
                libc::kill(-(self.pid as i32), libc::SIGKILL);
            }
        }
    }

    /// Blocks until the child exits, then reaps it (call from a blocking
    /// thread).
    pub fn wait_blocking(&self) -> std::io::Result<ExitStatus> {
        wait_for_exit(self.pid);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = state.status {
            return Ok(status);
        }
        let status = state.child.wait()?;
        state.status = Some(status);
        Ok(status)
    }
}

/// Waits, without reaping, until `pid` has exited.
fn wait_for_exit(pid: u32) {
    loop {
        // SAFETY: waitid writes only into `info`, which lives on this stack.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Kills the child's group when dropped: a future that stops waiting (its
/// task aborted, a timeout around it) leaves nothing running.
pub struct KillOnDrop(pub Supervised);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// What a child printed, and how it ended.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why [`output`] has no output.
#[derive(Debug)]
pub enum Failed {
    /// It could not be started.
    Start(std::io::Error),
    /// It ran past the limit and was killed.
    TimedOut,
}

/// Runs `cmd` to its end within `limit`, collecting what it prints (for
/// ffprobe and short ffmpeg queries).
pub async fn output(cmd: &mut Command, limit: Duration) -> Result<Output, Failed> {
    let (child, pipes) = Supervised::spawn(cmd, None, true).map_err(Failed::Start)?;
    let guard = KillOnDrop(child.clone());
    let collect = tokio::task::spawn_blocking(move || {
        let stdout = pipes.stdout.map(|mut out| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = out.read_to_end(&mut bytes);
                bytes
            })
        });
        let mut stderr = Vec::new();
        if let Some(mut err) = pipes.stderr {
            let _ = err.read_to_end(&mut stderr);
        }
        let stdout = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
        child.wait_blocking().map(|status| Output { status, stdout, stderr })
    });
    match tokio::time::timeout(limit, collect).await {
        Ok(Ok(Ok(out))) => Ok(out),
        Ok(Ok(Err(e))) => Err(Failed::Start(e)),
        Ok(Err(e)) => Err(Failed::Start(std::io::Error::other(e.to_string()))),
        Err(_) => {
            drop(guard);
            Err(Failed::TimedOut)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_some_and(|state| state != "Z"))
    }

    #[tokio::test]
    async fn output_collects_both_streams_and_the_status() {
        let out = output(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[tokio::test]
    async fn a_child_past_its_limit_is_killed_with_its_whole_group() {
        // The shell starts a grandchild and prints its pid, then both sleep.
        let marker = tempfile::NamedTempFile::new().unwrap();
        let script = format!("sleep 30 & echo $! > {}; wait", marker.path().display());
        let result = output(Command::new("sh").args(["-c", &script]), Duration::from_millis(500)).await;
        assert!(matches!(result, Err(Failed::TimedOut)));
        let grandchild: u32 = std::fs::read_to_string(marker.path()).unwrap().trim().parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while alive(grandchild) {
            assert!(std::time::Instant::now() < deadline, "the grandchild outlived the kill");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_reaped_child_is_not_signalled() {
        let (child, _pipes) = Supervised::spawn(&mut Command::new("true"), None, false).unwrap();
        assert!(child.wait_blocking().unwrap().success());
        // The pid may belong to another process by now: kill must not touch it.
        child.kill();
        assert!(child.state.lock().unwrap().status.is_some());
    }
}
