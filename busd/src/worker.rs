//! Worker processes: every job runs the `spirit` binary (DESIGN.md, "The engine
//! processes"), never ptrace in the daemon. The worker's stderr carries the protocol
//! (`progress DONE TOTAL`, `result {json}`, `error CODE MESSAGE`, plus free-form
//! messages), read here line by line on a helper thread; its stdout may carry a pid
//! (restore --detach) or be taken by the caller (an image stream).
//!
//! No file descriptor beyond 0, 1 and 2 is passed, so no raw descriptor is handled: the
//! progress protocol goes on fd 2 (`--progress-fd 2`) and a migration's verdict on fd
//! 0 (`--verdict-fd 0`).

use crate::auth::Identity;
use crate::ctx::Ctx;
use crate::job::{ResultMap, Val};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// How a worker failed; `what` names the work ("checkpoint of pid 7").
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start the worker {program:?}: {source}")]
    Start {
        program: OsString,
        source: io::Error,
    },
    #[error("{what}: the worker's exit status was lost")]
    StatusLost { what: String },
    /// It said why (an `error` line, or its last message).
    #[error("{what} failed: {message} (spirit exit code {code})")]
    Failed {
        what: String,
        message: String,
        code: i32,
    },
    #[error(
        "{what} failed: the worker was killed by signal {signal} (crashed?); see the daemon log"
    )]
    Killed { what: String, signal: i32 },
    #[error("{what} failed: the worker exited with status {code}")]
    Exited { what: String, code: i32 },
}

enum Line {
    Err(String),
    Out(String),
}

/// A running worker.
pub struct Worker {
    pub child: Child,
    lines: Receiver<Line>,
    what: String,
}

/// What a worker said and how it ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub result: Option<serde_json::Value>,
    pub error: Option<(i32, String)>,
    pub last_message: Option<String>,
    pub stdout: Vec<String>,
    pub status: Option<ExitStatus>,
}

fn read_lines(r: impl Read + Send + 'static, tx: Sender<Line>, out: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let l = if out {
                Line::Out(line)
            } else {
                Line::Err(line)
            };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
}

impl Worker {
    /// Start `cmd` (stdin and stdout as the caller set them; stderr is taken here, and
    /// stdout too unless the caller takes it from `child` first via `take_stdout`).
    pub fn spawn(mut cmd: Command, what: &str) -> Result<Worker, WorkerError> {
        cmd.stderr(Stdio::piped()).current_dir("/");
        let mut child = cmd.spawn().map_err(|source| WorkerError::Start {
            program: cmd.get_program().to_owned(),
            source,
        })?;
        let (tx, rx) = channel();
        if let Some(e) = child.stderr.take() {
            read_lines(e, tx, false);
        }
        tracing::debug!("{what}: worker pid {}", child.id());
        Ok(Worker {
            child,
            lines: rx,
            what: what.to_string(),
        })
    }

    /// Read the worker's stdout lines too (restore --detach prints the pid there).
    pub fn collect_stdout(&mut self) {
        if let Some(o) = self.child.stdout.take() {
            // A second sender into the same channel.
            let (tx, rx) = channel();
            read_lines(o, tx.clone(), true);
            let old = std::mem::replace(&mut self.lines, rx);
            std::thread::spawn(move || {
                for l in old {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
    }

    /// Follow the worker until it exits, passing progress on. Lines still in flight
    /// after the exit are collected for a short while (a process restored by the
    /// worker may keep its pipes open, so end-of-file is not waited for).
    pub fn wait(mut self, mut on_progress: impl FnMut(u64, u64)) -> Outcome {
        let mut out = Outcome::default();
        let mut exited_at: Option<std::time::Instant> = None;
        loop {
            let timeout = Duration::from_millis(100);
            match self.lines.recv_timeout(timeout) {
                Ok(Line::Out(l)) => out.stdout.push(l),
                Ok(Line::Err(l)) => self.take_line(&l, &mut out, &mut on_progress),
                Err(RecvTimeoutError::Disconnected) => {
                    if out.status.is_none() {
                        out.status = self.child.wait().ok();
                    }
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if out.status.is_none() {
                if let Ok(Some(st)) = self.child.try_wait() {
                    out.status = Some(st);
                    exited_at = Some(std::time::Instant::now());
                }
            }
            if exited_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) {
                break;
            }
        }
        out
    }

    fn take_line(&self, l: &str, out: &mut Outcome, on_progress: &mut impl FnMut(u64, u64)) {
        if let Some(rest) = l.strip_prefix("progress ") {
            let mut it = rest.split_whitespace().map(|s| s.parse::<u64>());
            if let (Some(Ok(d)), Some(Ok(t))) = (it.next(), it.next()) {
                on_progress(d, t);
            }
        } else if let Some(json) = l.strip_prefix("result ") {
            out.result = serde_json::from_str(json).ok();
        } else if let Some(rest) = l.strip_prefix("error ") {
            let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            out.error = Some((code.parse().unwrap_or(1), msg.to_string()));
        } else {
            tracing::debug!("{}: {l}", self.what);
            let l = l.strip_prefix("spirit: ").unwrap_or(l);
            out.last_message = Some(l.strip_prefix("error: ").unwrap_or(l).to_string());
        }
    }
}

impl Outcome {
    /// Success, or a message saying how the worker failed.
    pub fn check(&self, what: &str) -> Result<(), WorkerError> {
        let what = what.to_string();
        let Some(st) = self.status else {
            return Err(WorkerError::StatusLost { what });
        };
        if st.success() {
            return Ok(());
        }
        if let Some((code, msg)) = &self.error {
            return Err(WorkerError::Failed {
                what,
                message: msg.clone(),
                code: *code,
            });
        }
        if let Some(signal) = st.signal() {
            return Err(WorkerError::Killed { what, signal });
        }
        let code = st.code().unwrap_or(-1);
        match &self.last_message {
            Some(m) => Err(WorkerError::Failed {
                what,
                message: m.clone(),
                code,
            }),
            None => Err(WorkerError::Exited { what, code }),
        }
    }
}

/// The base command for a worker run as `who`.
pub fn command(ctx: &Ctx, who: &Identity) -> Command {
    let mut cmd = Command::new(&ctx.worker);
    who.apply(&mut cmd);
    cmd.env_remove("SPIRIT_LOG");
    cmd
}

/// `DumpStats` JSON (from `spirit dump --progress-fd`) as `Result` entries.
pub fn dump_result(v: &serde_json::Value) -> ResultMap {
    let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let dur_us = |k: &str| {
        v.get(k)
            .map(|d| {
                let s = d.get("secs").and_then(|x| x.as_u64()).unwrap_or(0);
                let n = d.get("nanos").and_then(|x| x.as_u64()).unwrap_or(0);
                s * 1_000_000 + n / 1000
            })
            .unwrap_or(0)
    };
    vec![
        ("pid".into(), Val::U32(u("pid") as u32)),
        ("threads".into(), Val::U32(u("threads") as u32)),
        ("vmas".into(), Val::U32(u("vmas") as u32)),
        ("page_bytes".into(), Val::U64(u("page_bytes"))),
        ("image_bytes".into(), Val::U64(u("image_bytes"))),
        ("frozen_usec".into(), Val::U64(dur_us("frozen"))),
        ("total_usec".into(), Val::U64(dur_us("total"))),
        (
            "resumed".into(),
            Val::Bool(v.get("resumed").and_then(|x| x.as_bool()).unwrap_or(false)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_are_understood() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(
            "echo 'progress 5 10' >&2; echo 'result {\"pid\":7,\"frozen\":{\"secs\":1,\"nanos\":5000}}' >&2; echo 'error 3 no such process' >&2; exit 3",
        );
        cmd.stdout(Stdio::null()).stdin(Stdio::null());
        let w = Worker::spawn(cmd, "test").unwrap();
        let mut seen = vec![];
        let out = w.wait(|d, t| seen.push((d, t)));
        assert_eq!(seen, vec![(5, 10)]);
        let r = dump_result(out.result.as_ref().unwrap());
        assert!(r.contains(&("frozen_usec".into(), Val::U64(1_000_005))));
        let e = out.check("checkpoint").unwrap_err().to_string();
        assert!(
            e.contains("no such process") && e.contains("exit code 3"),
            "{e}"
        );
    }

    #[test]
    fn a_crash_is_reported() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("kill -SEGV $$");
        cmd.stdout(Stdio::null()).stdin(Stdio::null());
        let out = Worker::spawn(cmd, "test").unwrap().wait(|_, _| {});
        let e = out.check("checkpoint").unwrap_err().to_string();
        assert!(e.contains("signal 11"), "{e}");
    }
}
