//! One container under an OCI runtime (`runc`, else `crun`; both take the
//! same commands): `create` then `start` (timed apart), its output in one
//! log file, its exit seen as it happens, and `kill` + `delete -f` when the
//! [`Container`] is dropped, on every path.
//!
//! `runc create` leaves the container's init process behind when it exits;
//! imgbake makes itself a child subreaper first, so that process becomes
//! its child: its exit status is read with `waitpid` (runc's `state` only
//! says "stopped"), and it is reaped once deleted.

use serde::Deserialize;
use std::fs;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound for one runtime command (create, start, state, kill, delete).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Runtimes looked for, in order.
pub const RUNTIMES: &[&str] = &["runc", "crun"];

/// An installed OCI runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub name: &'static str,
    pub program: PathBuf,
}

/// The first of [`RUNTIMES`] on PATH (or in /usr/local/sbin, /usr/sbin, /sbin).
pub fn find_runtime() -> Option<Runtime> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> =
        std::env::split_paths(&path).chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from)).collect();
    find_runtime_in(&dirs)
}

/// The first of [`RUNTIMES`] that is an executable file in one of `dirs`.
pub fn find_runtime_in(dirs: &[PathBuf]) -> Option<Runtime> {
    RUNTIMES.iter().find_map(|name| {
        dirs.iter().map(|dir| dir.join(name)).find(|p| is_executable(p)).map(|program| Runtime { name, program })
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Failed { command: String, status: String, output: String },
    #[error("`{command}` did not finish within {seconds} s")]
    Hung { command: String, seconds: u64 },
    #[error("cannot open the container log `{path}`")]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Stopped, status unknown (the process was not imgbake's to reap).
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit status {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}"),
            Exit::Unknown => f.write_str("stopped"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct State {
    status: String,
    #[serde(default)]
    pid: i32,
}

/// A created container; killed and deleted when dropped.
pub struct Container {
    runtime: Runtime,
    pub id: String,
    pub log: PathBuf,
    pid: Option<i32>,
    exit: Option<Exit>,
    deleted: bool,
}

/// Makes this process the reaper of its orphaned descendants (the
/// container's init once `runc create` exits). Idempotent.
fn become_subreaper() {
    // SAFETY: a plain prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

impl Container {
    /// `runtime create` of the bundle at `bundle`, its output appended to `log`.
    pub fn create(runtime: &Runtime, bundle: &Path, id: &str, log: &Path) -> Result<Container, RuncError> {
        become_subreaper();
        // A leftover of the same id (an earlier run killed hard) would make create fail.
        let _ = run(runtime, &["delete", "-f", id], None);
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| RuncError::Log { path: log.to_path_buf(), source })?;
        let stderr = file.try_clone().map_err(|source| RuncError::Log { path: log.to_path_buf(), source })?;
        let bundle = bundle.to_string_lossy().into_owned();
        let mut container = Container {
            runtime: runtime.clone(),
            id: id.to_string(),
            log: log.to_path_buf(),
            pid: None,
            exit: None,
            deleted: false,
        };
        // The container's stdout and stderr are create's: the log file.
        run(runtime, &["create", "--bundle", &bundle, id], Some((file, stderr))).map_err(|error| {
            // Its own complaint went to the log: show it.
            match error {
                RuncError::Failed { command, status, .. } => {
                    RuncError::Failed { command, status, output: container.tail(10).join("\n") }
                }
                other => other,
            }
        })?;
        container.pid = container.state().ok().map(|s| s.pid).filter(|pid| *pid > 0);
        Ok(container)
    }

    /// `runtime start`: the image's process begins.
    pub fn start(&mut self) -> Result<(), RuncError> {
        run(&self.runtime, &["start", &self.id], None).map(|_| ())
    }

    fn state(&self) -> Result<State, RuncError> {
        let output = run(&self.runtime, &["state", &self.id], None)?;
        serde_json::from_slice(&output).map_err(|e| RuncError::Failed {
            command: format!("{} state {}", self.runtime.name, self.id),
            status: "unreadable".into(),
            output: e.to_string(),
        })
    }

    /// How the process ended, or `None` while it runs.
    pub fn exited(&mut self) -> Option<Exit> {
        if self.exit.is_some() {
            return self.exit;
        }
        if let Some(pid) = self.pid {
            let mut status = 0;
            // SAFETY: waitpid on a pid this process reaps (subreaper), without blocking.
            let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if reaped == pid {
                self.exit = Some(if libc::WIFEXITED(status) {
                    Exit::Code(libc::WEXITSTATUS(status))
                } else {
                    Exit::Signal(libc::WTERMSIG(status))
                });
                return self.exit;
            }
            if reaped == 0 {
                return None;
            }
        }
        // Not our child: ask the runtime.
        match self.state() {
            Ok(state) if state.status == "stopped" => {
                self.exit = Some(Exit::Unknown);
                self.exit
            }
            Ok(_) => None,
            Err(_) => {
                self.exit = Some(Exit::Unknown);
                self.exit
            }
        }
    }

    /// The last `count` lines of the container's output.
    pub fn tail(&self, count: usize) -> Vec<String> {
        tail_lines(&self.log, count, |_| true)
    }

    /// Kills and deletes the container, and reaps its process.
    pub fn destroy(&mut self) {
        if self.deleted {
            return;
        }
        let _ = run(&self.runtime, &["kill", &self.id, "KILL"], None);
        let _ = run(&self.runtime, &["delete", "-f", &self.id], None);
        if let (Some(pid), None) = (self.pid, self.exit) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let mut status = 0;
                // SAFETY: as in `exited`.
                let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if reaped != 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.deleted = true;
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// The last `count` lines of `path` that `keep`, read from its end (a log can be large).
pub fn tail_lines(path: &Path, count: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    const WINDOW: u64 = 256 << 10;
    let Ok(mut file) = fs::File::open(path) else { return Vec::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(WINDOW);
    if file.seek(io::SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // cut in the middle
    }
    let kept: Vec<String> = lines.into_iter().filter(|l| keep(l)).map(str::to_string).collect();
    kept[kept.len().saturating_sub(count)..].to_vec()
}

/// Runs `runtime args…`, bounded by [`COMMAND_TIMEOUT`]; returns its stdout.
/// With `stdio`, its stdout and stderr go there instead (and are not returned).
fn run(runtime: &Runtime, args: &[&str], stdio: Option<(fs::File, fs::File)>) -> Result<Vec<u8>, RuncError> {
    let command = format!("{} {}", runtime.name, args.join(" "));
    let mut builder = Command::new(&runtime.program);
    builder.args(args).stdin(Stdio::null());
    let captured = stdio.is_none();
    match stdio {
        Some((out, err)) => builder.stdout(out).stderr(err),
        None => builder.stdout(Stdio::piped()).stderr(Stdio::piped()),
    };
    let mut child = builder.spawn().map_err(|source| RuncError::Spawn { command: command.clone(), source })?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) =
            child.try_wait().map_err(|source| RuncError::Spawn { command: command.clone(), source })?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RuncError::Hung { command, seconds: COMMAND_TIMEOUT.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let output = if captured { String::from_utf8_lossy(&stderr).trim().to_string() } else { String::new() };
        return Err(RuncError::Failed { command, status: status.to_string(), output });
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_is_preferred_to_crun_and_only_executables_count() {
        use std::os::unix::fs::PermissionsExt;
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dirs = [first.path().to_path_buf(), second.path().to_path_buf()];
        assert_eq!(find_runtime_in(&dirs), None);
        let write = |path: PathBuf, mode| {
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        write(first.path().join("runc"), 0o644);
        let crun = write(second.path().join("crun"), 0o755);
        assert_eq!(find_runtime_in(&dirs), Some(Runtime { name: "crun", program: crun }));
        let runc = write(second.path().join("runc"), 0o755);
        assert_eq!(find_runtime_in(&dirs), Some(Runtime { name: "runc", program: runc }));
    }

    #[test]
    fn the_tail_keeps_the_last_lines_that_pass_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let text: String = (1..=30).map(|i| format!("line {i}\nimport time: {i} | {i} | m\n")).collect();
        fs::write(&log, text).unwrap();
        let tail = tail_lines(&log, 3, |l| !l.starts_with("import time:"));
        assert_eq!(tail, ["line 28", "line 29", "line 30"]);
        assert!(tail_lines(&dir.path().join("missing"), 3, |_| true).is_empty());
    }
}
